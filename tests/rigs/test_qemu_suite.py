"""The standard suite on the C firmware under QEMU, judged against the model exactly as the emulator
is, through the rig file rigs/qemu-m3/rig.toml (socket://, the bench fixture on this host).

By default two smoke scenarios run: the processor reset (the event log in flash, the warm boot)
and the occlusion at 1 mL/day (the fixture's plant, its clamp, the firmware's detector, the
balance after the occlusion clears). The whole suite, and its verdicts set beside the emulator's,
is marked slow (`make test-slow`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_build import FIRMWARE_DIR, build_firmware
from hil.requirements import load_requirements
from hil.rig import load_rig
from hil.runner import run_scenario, run_suite
from hil.scenario import load_scenario, load_suite
from hil.verdicts import Verdict, requirement_verdicts

SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard"
SMOKE = ["reset", "occlusion_intermediate"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    assert build_firmware(tmp_path_factory.getbasetemp().parent).exists()
    return load_rig(FIRMWARE_DIR)


def _why(result) -> str:
    d = result.divergence
    where = f"; first divergence at tick {d.tick}: {d.quantity} expected {d.expected!r} got {d.got!r} ({d.where})" \
        if d is not None else ""
    return f"{result.scenario}: {result.verdict.name} {result.reason}{where}"


@pytest.mark.parametrize("name", SMOKE)
def test_a_smoke_scenario_passes_on_the_firmware_as_on_the_emulator(rig, name):
    scenario = load_scenario(SUITE / f"{name}.toml")
    on_firmware = run_scenario(rig, scenario)
    on_emulator = run_scenario(load_rig("emulator"), scenario)
    assert on_firmware.verdict is Verdict.PASS, _why(on_firmware)
    assert [(c.what, c.passed, c.measured) for c in on_firmware.checks] == \
        [(c.what, c.passed, c.measured) for c in on_emulator.checks]
    assert on_firmware.figures == on_emulator.figures


@pytest.mark.slow
def test_the_standard_suite_gives_the_emulators_verdicts_on_the_firmware(rig):
    scenarios = load_suite([SUITE])
    on_firmware = run_suite(rig, scenarios)
    on_emulator = run_suite(load_rig("emulator"), scenarios)
    assert [(r.scenario, r.verdict) for r in on_firmware] == [(r.scenario, r.verdict) for r in on_emulator], \
        "\n".join(_why(r) for r in on_firmware if r.verdict is not Verdict.PASS)
    assert all(r.verdict is Verdict.PASS for r in on_firmware)
    catalogue = load_requirements()
    firmware_reqs = {v.requirement.id: v.verdict for v in requirement_verdicts(catalogue, on_firmware)}
    emulator_reqs = {v.requirement.id: v.verdict for v in requirement_verdicts(catalogue, on_emulator)}
    assert firmware_reqs == emulator_reqs
