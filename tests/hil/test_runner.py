"""The scenario runner on the emulator rig: the standard suite passes, and deliberately wrong
devices fail the verdicts they should, naming the first divergence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from firmware_model.commands import ConfigurePatientBolus
from firmware_model.controller import Controller
from hil.requirements import check_coverage, load_requirements
from hil.rig import load_rig
from hil.rig_kinds import EmulatorRig
from hil.runner import run_scenario, run_suite
from hil.scenario import load_scenario, load_suite, scenario_from
from hil.verdicts import Verdict, requirement_verdicts

SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard"
SCENARIOS = sorted(SUITE.glob("*.toml"))


@pytest.fixture(scope="module")
def rig() -> EmulatorRig:
    return load_rig("emulator")  # type: ignore[return-value]


def test_the_standard_suite_covers_every_catalogued_requirement() -> None:
    catalogue = load_requirements()
    scenarios = load_suite([SUITE])
    check_coverage(catalogue, scenarios)
    covered = {r for s in scenarios for r in s.covers}
    assert covered == set(catalogue), set(catalogue) - covered


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_standard_scenario_passes_on_the_emulator(rig: EmulatorRig, path: Path) -> None:
    result = run_scenario(rig, load_scenario(path))
    assert result.verdict is Verdict.PASS, result.failures()
    assert result.checks and all(c.passed for c in result.checks)
    assert result.simulated_ticks > 0 and result.divergence is None


# ---- three deliberately wrong devices ------------------------------------------------------------

class ShortLockoutController(Controller):
    """A firmware whose patient-bolus lockout runs an hour short of what was programmed."""

    def handle(self, command, tick):  # type: ignore[no-untyped-def]
        if isinstance(command, ConfigurePatientBolus):
            command = ConfigurePatientBolus(command.volume_nl, command.duration_ticks,
                                            command.lockout_ticks - 3600 * 32768, command.max_per_day)
        return super().handle(command, tick)


def wrong(rig: EmulatorRig, **device: object) -> EmulatorRig:
    return EmulatorRig(rig.config.with_device(**device))


def verdicts_of(rig: EmulatorRig, *names: str) -> tuple[dict[str, Verdict], list]:
    results = run_suite(rig, [load_scenario(SUITE / f"{n}.toml") for n in names])
    found = requirement_verdicts(load_requirements(), results)
    return {v.requirement.id: v.verdict for v in found if v.scenarios}, results


def test_a_device_with_another_mechanism_calibration_fails_flow_conformance(rig: EmulatorRig) -> None:
    device = wrong(rig, mechanism={"stroke_nl": 260, "min_rate_nl_per_day": 48_000,
                                   "max_rate_nl_per_day": 24_000_000})
    verdicts, results = verdicts_of(device, "flow_accuracy_intermediate")
    assert verdicts["REQ-FLOW-CONFORM"] is Verdict.FAIL
    divergence = results[0].divergence
    assert divergence is not None
    assert divergence.quantity == "status.effective_rate_nl_per_day"   # the increment follows the stroke
    assert "first divergence at tick 0" in divergence.message() and divergence.context


def test_a_device_with_a_short_lockout_fails_the_lockout_verdict_only(rig: EmulatorRig) -> None:
    device = wrong(rig, controller=f"{__name__}:ShortLockoutController")
    verdicts, results = verdicts_of(device, "patient_bolus", "drug_library")
    assert verdicts["REQ-PB-LOCKOUT"] is Verdict.FAIL
    assert verdicts["REQ-LIBRARY-HARD"] is Verdict.PASS and verdicts["REQ-LIBRARY-SOFT"] is Verdict.PASS
    bolus = results[0]
    found = bolus.divergence
    assert found is not None and found.quantity == "answer[0].detail" and found.tick == 2 * 3600 * 32768
    # the press at 2 h is denied by both, but the device's lockout ends an hour early (3 h, not 4 h)
    assert found.expected == f"lockout until tick {4 * 3600 * 32768}"
    assert found.got == f"lockout until tick {3 * 3600 * 32768}"
    assert "REQ-PB-LOCKOUT" in found.requirements and "step 5 (patient_bolus)" in found.message()
    assert any("PatientBolusRequest" in f for f in found.context)   # the frames around it
    failed = [c for c in bolus.checks if not c.passed]
    assert failed and all("REQ-PB-LOCKOUT" in c.requirements for c in failed)


def test_a_device_with_another_low_reservoir_threshold_fails_the_low_reservoir_verdict(rig: EmulatorRig) -> None:
    device = wrong(rig, pump={"low_reservoir_nl": 2_500_000})       # the scenario fills 3 mL
    verdicts, results = verdicts_of(device, "reservoir", "drug_library")
    assert verdicts["REQ-RESERVOIR-LOW"] is Verdict.FAIL
    assert verdicts["REQ-LIBRARY-HARD"] is Verdict.PASS
    reservoir = results[0]
    assert reservoir.divergence is not None
    assert reservoir.divergence.quantity == "status.refill_due_tick"   # the forecast follows the threshold
    assert reservoir.divergence.requirements == ("REQ-FLOW-CONFORM",)    # found at the program step
    early = [c for c in reservoir.checks if not c.passed and "RESERVOIR_LOW not active" in c.what]
    assert early, "the device's alarm sounded before 50 min and the check says so"


def test_a_scenario_needing_a_fault_the_rig_lacks_does_not_run(rig: EmulatorRig) -> None:
    config = rig.config
    no_mri = EmulatorRig(type(config)(**{**config.__dict__, "faults": {k: v for k, v in config.faults.items()
                                                                        if k != "mri"}}))
    result = run_scenario(no_mri, load_scenario(SUITE / "mri_stall.toml"))
    assert result.verdict is Verdict.NOT_RUN and "mri" in result.reason


def test_an_expectation_the_device_does_not_meet_fails_with_what_it_did(rig: EmulatorRig) -> None:
    doc = {"scenario": {"id": "x", "title": "x", "covers": ["REQ-PB-LOCKOUT"]},
           "step": [{"at": "0 s", "do": "refill", "with": {"measured_residual_nl": 0, "injected_nl": 20_000_000,
                                                          "drug": "morphine", "concentration_ug_per_ml": 10_000}},
                    {"at": "1 h", "do": "patient_bolus", "expect": {"answer": "BolusGranted"}}]}
    result = run_scenario(rig, scenario_from(doc))
    assert result.verdict is Verdict.FAIL and result.divergence is None
    assert result.failures() == ["step 2 (patient_bolus): answered BolusGranted: got BolusDenied(NOT_CONFIGURED)"]


def test_a_run_that_stops_at_its_first_failure_ends_there_with_that_failure(rig: EmulatorRig) -> None:
    device = wrong(rig, controller=f"{__name__}:ShortLockoutController")
    scenario = load_scenario(SUITE / "patient_bolus.toml")
    whole = run_scenario(device, scenario)
    short = run_scenario(device, scenario, stop_at_failure=True)
    assert short.verdict is whole.verdict is Verdict.FAIL
    assert short.divergence is not None and whole.divergence is not None
    assert dataclasses.replace(short.divergence, context=()) == dataclasses.replace(whole.divergence, context=())
    assert len(short.checks) < len(whole.checks) and short.simulated_ticks < whole.simulated_ticks
