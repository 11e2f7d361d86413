"""Rewrite the golden event logs from the examples. Run only for a deliberate change of the model
or the log format, and say why in the commit: `python tests/golden/regenerate.py`."""

from __future__ import annotations

import tomllib
from pathlib import Path

from firmware_model.prescription import load_prescription
from firmware_model.simulate import run

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXAMPLES = ("morphine_continuous", "baclofen_flex", "ziconotide_concentration_change")
DAYS = 365


def golden_log(name: str) -> bytes:
    """The event log of a year of one example, as it sits in flash."""
    path = ROOT / "examples" / f"{name}.toml"
    rx = load_prescription(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
    return run(rx, DAYS).log


if __name__ == "__main__":
    for name in EXAMPLES:
        data = golden_log(name)
        (GOLDEN / f"{name}.log").write_bytes(data)
        print(f"{name}.log: {len(data)} bytes, {len(data) // 32} records")
