"""Faults added to the plant while the pump runs (an emulated rig's test mode): the same pump as one
built with the fault in its schedule, and refusals that change nothing."""

from __future__ import annotations

import pytest

from firmware_model import Controller, LimitExceeded, LogCode, ProgramContinuous, Refill
from firmware_model.plant import MriExposure, Occlusion, Plant
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_HOUR

H = TICKS_PER_HOUR
START = TICKS_PER_DAY // 4


def running_pump(plant: Plant) -> Controller:
    pump = Controller(plant=plant)
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(ProgramContinuous(1_000_000), 0)
    return pump


def in_time_order(events: list) -> list:
    """Events by tick: the model batches alarm tones per span, so where a run stops may move a tone
    before or after the plant's release report of the same span; what happened and when is the same."""
    return sorted(events, key=lambda e: (e.tick, e.code, e.payload))


def twins(scheduled: Plant, injected: Plant, inject, inject_at: int, end: int) -> tuple[Controller, Controller]:
    """Run a pump whose plant had the fault from the start beside one that gets it at `inject_at`."""
    a, b = running_pump(scheduled), running_pump(injected)
    events_a = a.advance(end)
    events_b = b.advance(inject_at)
    inject(injected)
    events_b += b.advance(end)
    assert in_time_order(events_b) == in_time_order(events_a)
    assert b.snapshot() == a.snapshot()
    return a, b


def test_injected_total_occlusion_runs_as_a_scheduled_one() -> None:
    occlusion = Occlusion(START, START + 3 * H)
    a, _ = twins(Plant(seed=3, occlusions=(occlusion,)), Plant(seed=3),
                 lambda p: p.add_occlusion(occlusion), START - H, START + 5 * H)
    assert LogCode.OCCLUSION_DETECTED in [r.code for r in a.log.records()]


def test_injected_partial_occlusion_runs_as_a_scheduled_one() -> None:
    occlusion = Occlusion(START, None, 8)
    twins(Plant(seed=5, occlusions=(occlusion,)), Plant(seed=5),
          lambda p: p.add_occlusion(occlusion), START - 1, START + 6 * H)


def test_open_ended_occlusion_cleared_later_runs_as_one_scheduled_with_its_end() -> None:
    end = START + 3 * H
    scheduled = Plant(seed=7, occlusions=(Occlusion(START, end),))
    injected = Plant(seed=7)
    a, b = running_pump(scheduled), running_pump(injected)
    events_a = a.advance(START + 6 * H)
    events_b = b.advance(START - H)
    injected.add_occlusion(Occlusion(START))
    events_b += b.advance(START + 2 * H)  # occluded, no end known yet
    assert injected.set_occlusion_end(START, end) == Occlusion(START, end)
    events_b += b.advance(START + 6 * H)
    assert in_time_order(events_b) == in_time_order(events_a) and b.snapshot() == a.snapshot()
    release = [e for e in events_b if e.code == LogCode.OUTLET_RELEASE]
    assert len(release) == 1 and release[0].tick == end and release[0].args[0] > 0


def test_injected_mri_runs_as_a_scheduled_one() -> None:
    scan = MriExposure(START, START + H)
    a, _ = twins(Plant(seed=1, mri=(scan,)), Plant(seed=1), lambda p: p.add_mri(scan), START - 5, START + 4 * H)
    assert LogCode.STALL in [r.code for r in a.log.records()]


def test_overlapping_scans_are_allowed() -> None:
    plant = Plant(mri=(MriExposure(100, 200),))
    plant.add_mri(MriExposure(150, 300))
    assert [m.start_tick for m in plant.mri] == [100, 150]
    assert plant.rotor_held(250) and not plant.rotor_held(300)


@pytest.mark.parametrize("inject, match", [
    (lambda p: p.add_occlusion(Occlusion(1_000)), r"occlusion.start_tick = 1000 .*> the plant's present tick 1000"),
    (lambda p: p.add_occlusion(Occlusion(500, 2_000)), r"occlusion.start_tick = 500 "),
    (lambda p: p.add_occlusion(Occlusion(4_000, 6_000)), r"outside the one already scheduled from 5000 to never"),
    (lambda p: p.add_occlusion(Occlusion(9_000)), r"outside the one already scheduled from 5000"),
    (lambda p: p.add_mri(MriExposure(999, 5_000)), r"mri.start_tick = 999 "),
    (lambda p: p.set_occlusion_end(4_000, 6_000), r"the start of a scheduled occlusion: \[5000\]"),
    (lambda p: p.set_occlusion_end(5_000, 1_000), r"occlusion.end_tick = 1000 .*present tick 1000"),
], ids=["start-now", "start-past", "overlap-before", "overlap-after", "mri-past", "unknown-start", "end-past"])
def test_faults_in_the_past_or_overlapping_are_refused_and_change_nothing(inject, match: str) -> None:
    plant = Plant(occlusions=(Occlusion(5_000),))
    plant.settle(1_000)
    before = (plant.occlusions, plant.mri)
    with pytest.raises(LimitExceeded, match=match):
        inject(plant)
    assert (plant.occlusions, plant.mri) == before


def test_an_occlusion_that_has_cleared_cannot_be_re_timed() -> None:
    plant = Plant(occlusions=(Occlusion(100, 200),))
    plant.settle(300)
    with pytest.raises(LimitExceeded, match="the one from 100 cleared at 200"):
        plant.set_occlusion_end(100, 400)
    assert plant.occlusions == (Occlusion(100, 200),)


def test_re_timing_keeps_the_factor_and_may_reopen() -> None:
    plant = Plant(occlusions=(Occlusion(100, 200, 4),))
    assert plant.set_occlusion_end(100, None) == Occlusion(100, None, 4)
    assert plant.occlusions == (Occlusion(100, None, 4),)
