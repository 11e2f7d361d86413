"""Recordings judged again without the device: the same verdicts, a changed tolerance or model
changes them accordingly, and a damaged recording is judged as far as it goes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hil.errors import RecordingError
from hil.recording import Recorder, read_recording
from hil.replay import replay
from hil.rig import Tolerances, load_rig
from hil.rig_kinds import EmulatorRig
from hil.runner import run_suite
from hil.scenario import load_scenario
from hil.verdicts import Verdict

SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard"
NAMES = ["occlusion_intermediate", "patient_bolus", "link", "flow_accuracy_intermediate"]


def record(path: Path, rig: EmulatorRig, names: list[str] = NAMES) -> list:
    with Recorder(path) as recorder:
        return run_suite(rig, [load_scenario(SUITE / f"{n}.toml") for n in names], recorder=recorder)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("rec") / "run.pcapng"
    return path, record(path, load_rig("emulator"))  # type: ignore[arg-type]


def test_a_recording_replayed_gives_the_same_verdicts_checks_and_figures(recorded: tuple[Path, list]) -> None:
    path, live = recorded
    held = read_recording(path)
    assert held.problem == "" and len(held.sections) == len(NAMES)
    again = replay(held)
    assert [r.verdict for r in again] == [r.verdict for r in live] == [Verdict.PASS] * len(NAMES)
    for a, b in zip(live, again):
        assert a.figures == b.figures and a.simulated_ticks == b.simulated_ticks
        assert [(c.what, c.passed, c.measured) for c in a.checks] == [(c.what, c.passed, c.measured) for c in b.checks]
        assert b.device == a.device                     # who answered hello, from the recording


def test_a_tighter_tolerance_changes_the_verdict_of_what_the_balance_weighed(recorded: tuple[Path, list]) -> None:
    path, _ = recorded
    config = load_rig("emulator").config
    exact_balance = dataclasses.replace(config, tolerances=Tolerances(mass_ug=0))
    again = {r.scenario: r for r in replay(read_recording(path), exact_balance)}
    assert again["patient-bolus"].verdict is Verdict.PASS          # weighs nothing
    for weighed in ("occlusion-intermediate", "flow-accuracy-intermediate"):
        found = again[weighed].divergence
        assert again[weighed].verdict is Verdict.FAIL and found is not None
        assert found.quantity == "balance mass_ug" and found.tolerance == "±0"


def test_a_wrong_device_recorded_passes_against_a_model_that_declares_what_it_does(tmp_path: Path) -> None:
    rig = load_rig("emulator")
    wrong = EmulatorRig(rig.config.with_device(pump={"low_reservoir_nl": 2_500_000}))
    path = tmp_path / "wrong.pcapng"
    live = record(path, wrong, ["reservoir"])
    assert live[0].verdict is Verdict.FAIL
    pump = dataclasses.replace(rig.config.pump, low_reservoir_nl=2_500_000)
    declared = dataclasses.replace(rig.config, pump=pump)
    again = replay(read_recording(path), declared)[0]
    assert again.divergence is None                          # the model now predicts what the device did
    assert any(not c.passed and "RESERVOIR_LOW not active" in c.what for c in again.checks)  # the scenario still objects


def test_a_truncated_recording_is_judged_as_far_as_it_goes(recorded: tuple[Path, list], tmp_path: Path) -> None:
    path, _ = recorded
    data = path.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:int(len(data) * 0.8) // 4 * 4 + 2])   # blocks are 4-byte aligned: this one is cut
    held = read_recording(cut)
    assert held.problem and len(held.sections) == len(NAMES)
    again = replay(held)
    assert [r.verdict for r in again[:-1]] == [Verdict.PASS] * (len(NAMES) - 1)
    last = again[-1]
    assert last.verdict is Verdict.ERROR and "the recording ends" in last.reason
    assert last.checks, "what the recording held was judged before it ended"


def test_a_corrupted_frame_is_named_and_the_rest_judged(recorded: tuple[Path, list], tmp_path: Path) -> None:
    path, _ = recorded
    held = read_recording(path)
    section = held.sections[1]                                # patient-bolus
    index = next(i for i, p in enumerate(section.packets)
                 if p.interface == "pump" and not p.outbound and len(p.data) > 40)
    packet = section.packets[index]
    section.packets[index] = dataclasses.replace(packet, data=packet.data[:10] + b"\x55" + packet.data[11:])
    again = replay(held)
    assert again[0].verdict is Verdict.PASS and again[2].verdict is Verdict.PASS
    assert again[1].verdict is Verdict.ERROR and "recording" in again[1].reason


def test_a_file_that_is_not_a_recording_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(RecordingError, match="expected"):
        read_recording(bad)
