"""Rigs at a distance: the emulated pump's pty exported by ser2net over RFC 2217, as a lab exports
a bench board, judged through rfc2217:// with no code change; it passes the same scenarios with
the same figures as the emulator on a direct pty."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.rig import load_rig
from hil.runner import run_suite
from hil.scenario import load_scenario
from hil.verdicts import Verdict

SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard"
SAME = ["occlusion_intermediate", "patient_bolus", "flow_accuracy_intermediate", "reset"]


@pytest.fixture(scope="module")
def both() -> tuple[list, list]:
    scenarios = [load_scenario(SUITE / f"{name}.toml") for name in SAME]
    return run_suite(load_rig("emulator"), scenarios), run_suite(load_rig("emulator-rfc2217"), scenarios)


def test_the_rig_reaches_the_pump_through_ser2net(both: tuple[list, list]) -> None:
    rig = load_rig("emulator-rfc2217")
    assert rig.config.device["url"].startswith("rfc2217://")
    _, exported = both
    assert all(r.device is not None and r.device.firmware.startswith("ithil-emulator") for r in exported)


def test_ser2net_passes_the_same_scenarios_with_the_same_figures(both: tuple[list, list]) -> None:
    direct, exported = both
    assert [r.verdict for r in direct] == [r.verdict for r in exported] == [Verdict.PASS] * len(SAME), \
        [r.failures() for r in exported]
    for d, e in zip(direct, exported):
        assert d.figures == e.figures and d.simulated_ticks == e.simulated_ticks
        assert [c.measured for c in d.checks] == [c.measured for c in e.checks]
