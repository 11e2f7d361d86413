"""Plant.outflow_nl_at: what has left the catheter tip by a tick (what a balance under it weighs)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model import Controller, ProgramContinuous, Refill
from firmware_model.errors import LimitExceeded
from firmware_model.plant import Occlusion, Plant
from firmware_model.units import TICK_HZ, TICKS_PER_HOUR, TICKS_PER_MINUTE

RATE_NL_PER_DAY = 1_000_000  # 1 mL/day: a 250 nL stroke every 21.6 s


def running_pump(plant: Plant) -> Controller:
    pump = Controller(plant=plant)
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(ProgramContinuous(RATE_NL_PER_DAY), 0)
    return pump


def stroke(plant: Plant, *ticks: int) -> None:
    plant.commit(plant.strokes(np.array(ticks, dtype=np.int64)))


def test_outflow_is_monotone_in_tick_while_the_pump_runs() -> None:
    plant = Plant(seed=3)
    pump = running_pump(plant)
    readings = []
    for tick in range(0, 2 * TICKS_PER_HOUR, 7 * TICK_HZ):  # not a multiple of the stroke interval
        pump.advance(tick)
        readings.append(plant.outflow_nl_at(tick))
        # Between strokes, on one state: nondecreasing too.
        later = [plant.outflow_nl_at(tick + dt) for dt in range(0, 7 * TICK_HZ, TICK_HZ // 4)]
        assert later == sorted(later)
    assert readings == sorted(readings)
    assert readings[-1] > 0


def test_outflow_at_the_last_update_is_the_committed_outflow() -> None:
    plant = Plant(seed=1, occlusions=(Occlusion(10 * TICK_HZ, 40 * TICK_HZ, factor=4),))
    stroke(plant, 2 * TICK_HZ, 5 * TICK_HZ)
    assert plant.outflow_nl_at(plant.state.last_tick) == plant.state.outflow_nl
    plant.settle(10 * TICK_HZ)  # an occlusion boundary: the drain is taken to it
    assert plant.state.last_tick == 10 * TICK_HZ
    assert plant.outflow_nl_at(10 * TICK_HZ) == plant.state.outflow_nl
    stroke(plant, 12 * TICK_HZ, 13 * TICK_HZ)
    assert plant.outflow_nl_at(13 * TICK_HZ) == plant.state.outflow_nl


def test_total_occlusion_holds_the_outflow() -> None:
    start = 30 * TICKS_PER_MINUTE
    plant = Plant(seed=2, occlusions=(Occlusion(start, None, factor=0),))
    pump = running_pump(plant)
    pump.advance(start)
    held = plant.outflow_nl_at(start)
    assert held > 0
    for tick in range(start, start + 20 * TICKS_PER_MINUTE, 13 * TICK_HZ):
        pump.advance(tick)  # strokes go on (until the alarm stops them) but none reach the tip
        assert plant.outflow_nl_at(tick) == held
    assert plant.outflow_nl_at(start + 1000 * TICKS_PER_HOUR) == held
    assert plant.state.stored_nl > 0


def test_after_many_strokes_and_a_long_wait_everything_has_left() -> None:
    plant = Plant(seed=5)
    ticks = np.arange(1, 401, dtype=np.int64) * (TICK_HZ // 2)  # strokes faster than the outlet drains
    plant.commit(plant.strokes(ticks))
    pushed = 400 * plant.stroke_nl
    assert plant.state.stored_nl > 0
    last = int(ticks[-1])
    waits = [plant.outflow_nl_at(last + k * plant.params.open_tau_ticks) for k in range(0, 70)]
    assert waits == sorted(waits)
    assert waits[0] == plant.state.outflow_nl < pushed
    assert pushed - waits[1] < pushed - waits[0]
    assert waits[-1] == pushed  # the compliance has emptied: every stroke reached the tip


def test_a_tick_before_the_last_update_is_refused_naming_the_field() -> None:
    plant = Plant()
    stroke(plant, 100)
    before = (plant.state.outflow_nl, plant.state.stored_nl, plant.state.last_tick)
    with pytest.raises(LimitExceeded) as caught:
        plant.outflow_nl_at(99)
    assert caught.value.field == "plant.outflow_nl_at.tick" and "100" in caught.value.limit
    assert (plant.state.outflow_nl, plant.state.stored_nl, plant.state.last_tick) == before


def test_it_changes_no_state() -> None:
    plant = Plant(occlusions=(Occlusion(5 * TICK_HZ, 9 * TICK_HZ),))
    stroke(plant, TICK_HZ, 2 * TICK_HZ)
    before = (plant.state.outflow_nl, plant.state.stored_nl, plant.state.last_tick, list(plant.state.releases),
              plant.present_tick)
    plant.outflow_nl_at(20 * TICK_HZ)
    assert (plant.state.outflow_nl, plant.state.stored_nl, plant.state.last_tick, list(plant.state.releases),
            plant.present_tick) == before


@settings(max_examples=150, deadline=None)
@given(stroke_gaps=st.lists(st.integers(1, 20 * TICK_HZ), min_size=0, max_size=12),
       start_after=st.integers(1, 30 * TICK_HZ), length=st.integers(1, 60 * TICK_HZ),
       factor=st.sampled_from([0, 2, 5, 40]), clears=st.booleans(), read_after=st.integers(0, 90 * TICK_HZ))
def test_outflow_across_occlusion_boundaries_equals_a_plant_settled_at_them(
        stroke_gaps: list[int], start_after: int, length: int, factor: int, clears: bool, read_after: int) -> None:
    ticks = np.cumsum(np.array(stroke_gaps, dtype=np.int64))
    last = int(ticks[-1]) if len(ticks) else 0
    start = last + start_after
    occlusion = Occlusion(start, start + length if clears else None, factor)
    lazy, settled = Plant(occlusions=(occlusion,)), Plant(occlusions=(occlusion,))
    for plant in (lazy, settled):
        if len(ticks):
            stroke(plant, *ticks.tolist())
    tick = last + read_after
    # The settled plant is run as the controller runs it: settled at each boundary up to `tick`.
    for boundary in (occlusion.start_tick, occlusion.end_tick):
        if boundary is not None and boundary <= tick:
            settled.settle(boundary)
    assert lazy.outflow_nl_at(tick) == settled.outflow_nl_at(tick)
    if tick in (occlusion.start_tick, occlusion.end_tick):
        assert lazy.outflow_nl_at(tick) == settled.state.outflow_nl


def test_outflow_matches_a_controller_that_ran_to_each_reading() -> None:
    """One plant read lazily at a tick after its last stroke equals one whose controller ran the
    whole way there (settling at the occlusion's start and end) and read at once."""
    occ = Occlusion(20 * TICKS_PER_MINUTE + 5, 20 * TICKS_PER_MINUTE + 5 * TICK_HZ, factor=6)
    for read_tick in (20 * TICKS_PER_MINUTE + 3 * TICK_HZ, 20 * TICKS_PER_MINUTE + 9 * TICK_HZ):
        a, b = Plant(seed=9, occlusions=(occ,)), Plant(seed=9, occlusions=(occ,))
        pump_a, pump_b = running_pump(a), running_pump(b)
        last_stroke = 20 * TICKS_PER_MINUTE  # 1 mL/day strokes every 21.6 s: none in the next 9 s
        pump_a.advance(last_stroke)
        pump_b.advance(read_tick)
        assert a.state.steps == b.state.steps
        assert a.outflow_nl_at(read_tick) == b.outflow_nl_at(read_tick)
