"""The RTL rig's description, rigs/rtl/rig.toml, loaded and checked (a clear error names the key).

The benches and the build take the sources, the toplevel and the clock from it, so the file the
standard suite names is the one the tests run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RIG_FILE = REPO / "rigs" / "rtl" / "rig.toml"


class RigError(ValueError):
    """rig.toml is missing a key or holds a wrong value; the message names the key."""


@dataclass(frozen=True)
class Rig:
    """What the benches need of the rig: the clock, the simulators, the sources and the scenarios."""

    name: str
    clock_hz: int
    simulator: str
    simulators: tuple[str, ...]
    toplevel: str
    harness: Path
    sources: tuple[Path, ...]
    phase_bits: int
    history_samples: int
    tolerances: dict[str, int]
    scenarios: dict[str, str]
    faults: dict[str, str]


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise RigError(f"{where}.{key}: missing; expected a {kind.__name__}")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RigError(f"{where}.{key} = {value!r}: expected a {kind.__name__}")
    return value


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    return _get(data, key, dict, "rig.toml")


def load_rig(path: Path = RIG_FILE, folder: Path | None = None) -> Rig:
    """Read and check rig.toml: every key present with its type, every file there.
    folder: where its relative paths start (default: the file's folder)."""
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise RigError(f"{path}: not valid TOML ({exc})") from None
    rig, device = _table(data, "rig"), _table(data, "device")
    mechanism, tolerances = _table(data, "mechanism"), _table(data, "tolerances")
    scenarios, faults = _table(data, "scenarios"), _table(data, "faults")
    kind = _get(rig, "kind", str, "rig")
    if kind != "rtl":
        raise RigError(f"rig.kind = {kind!r}: expected 'rtl'")
    clock_hz = _get(rig, "clock_hz", int, "rig")
    if clock_hz <= 0:
        raise RigError(f"rig.clock_hz = {clock_hz}: expected > 0")
    simulators = tuple(_get(device, "simulators", list, "device"))
    simulator = _get(device, "simulator", str, "device")
    if simulator not in simulators:
        raise RigError(f"device.simulator = {simulator!r}: expected one of device.simulators {list(simulators)}")
    folder = folder or path.parent
    harness = (folder / _get(device, "harness", str, "device")).resolve()
    sources = tuple((folder / name).resolve() for name in _get(device, "sources", list, "device"))
    for file, key in [(harness, "device.harness"), *((s, "device.sources") for s in sources)]:
        if not file.is_file():
            raise RigError(f"{key}: {file} does not exist")
    for where, table, value_kind in (("tolerances", tolerances, int), ("scenarios", scenarios, str),
                                     ("faults", faults, str)):
        for key in table:
            _get(table, key, value_kind, where)
    return Rig(
        name=_get(rig, "name", str, "rig"),
        clock_hz=clock_hz,
        simulator=simulator,
        simulators=simulators,
        toplevel=_get(device, "toplevel", str, "device"),
        harness=harness,
        sources=sources,
        phase_bits=_get(mechanism, "phase_bits", int, "mechanism"),
        history_samples=_get(mechanism, "history_samples", int, "mechanism"),
        tolerances=dict(tolerances),
        scenarios=dict(scenarios),
        faults=dict(faults),
    )
