"""`ithil model run`: the installed command, its JSON, its plot and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ITHIL = shutil.which("ithil", path=str(Path(sys.executable).parent)) or "ithil"


def ithil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITHIL, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_model_run_json_matches_the_tables_facts() -> None:
    proc = ithil("model", "run", "examples/morphine_continuous.toml", "--days", "70", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["days"] == 70 and out["drug"] == "morphine"
    assert out["patient_boluses"]["granted"] == 4 * 70
    assert out["patient_boluses"]["denied"] == {"LOCKOUT": 70}
    assert [a["alarm"] for a in out["alarms"]] == ["RESERVOIR_LOW", "RESERVOIR_LOW"]
    assert len(out["refills"]) == 2 and out["refused"] == []


def test_model_run_table_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    proc = ithil("model", "run", "examples/baclofen_flex.toml", "--days", "30", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "baclofen" in proc.stdout and "volume delivered" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_run_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[drug]\nname = "morphine"\nconcentration_mg_per_ml = 10\n[therapy]\nmode = "continuous"\n'
                   'dose_mg_per_day = "two"\n')
    proc = ithil("model", "run", str(bad))
    assert proc.returncode == 2
    assert "therapy.dose_mg_per_day" in proc.stderr and "expected a number" in proc.stderr


def test_model_run_rejects_invalid_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[drug\n")
    proc = ithil("model", "run", str(bad))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr


def test_protocol_docs_writes_the_checked_in_reference(tmp_path: Path) -> None:
    out = tmp_path / "protocol.md"
    proc = ithil("protocol", "docs", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (ROOT / "docs" / "protocol.md").read_text()
