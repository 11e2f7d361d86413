"""The closed-form step scheduler against the per-tick accumulator, bit for bit.

`PerTickAccumulator` is the literal loop a firmware timer interrupt runs (phase += increment; on
overflow of 2^32, one step). Every closed form of `StepScheduler` (step counts, the tick of the
k-th step, the listing of step ticks, advancing, changing the rate with the phase carried) must
give exactly what that loop gives, including at ticks far beyond int64.
"""

from __future__ import annotations

import random
from fractions import Fraction
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware_model import step_scheduler
from firmware_model.calibration import Mechanism
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import LimitExceeded
from firmware_model.step_scheduler import (PHASE_ONE, PerTickAccumulator, StepScheduler,
                                           combined_steps_until, effective_rate_nl_per_day,
                                           increment_for_rate, schedule_step_ticks,
                                           tick_of_combined_step)
from firmware_model.units import TICKS_PER_DAY

INT64_MAX = 2**63 - 1
MAX_SPAN = 5_000

STROKES = st.sampled_from([1, 50, 100, 250, 500, 1_000])
# Rates in the programmable range (0.048-24 mL/day) and a few outside it, that still fit one
# step per tick for the sampled strokes.
RATES = st.one_of(st.integers(48_000, 24_000_000), st.integers(100, 48_000), st.sampled_from([48_000, 24_000_000]))


@st.composite
def rate_increments(draw) -> int:
    """The increment of a real rate (a motor that is not stopped)."""
    stroke = draw(STROKES)
    rate = draw(RATES)
    return increment_for_rate(max(rate, stroke * TICKS_PER_DAY // PHASE_ONE + 1), stroke)


INCREMENTS = st.one_of(
    st.just(1),
    st.just(PHASE_ONE - 1),
    st.just(PHASE_ONE // 2),
    st.integers(1, PHASE_ONE - 1),
    st.integers(PHASE_ONE - 1_000, PHASE_ONE - 1),   # about one step per tick: many steps per span
    rate_increments(),
)
INCREMENTS_OR_STOP = st.one_of(st.just(0), INCREMENTS)
PHASES = st.one_of(st.just(0), st.just(PHASE_ONE - 1), st.integers(0, PHASE_ONE - 1))
# Start ticks: near zero, past 2^40 (years of 32 kHz ticks), near the top of int64 (where the
# vectorised listing still works) and beyond int64 (closed forms only: Python integers).
STARTS_INT64 = st.one_of(st.integers(0, 10**6), st.integers(2**40, 2**40 + 10**12),
                         st.integers(2**62, INT64_MAX - 2 * MAX_SPAN))
STARTS_BEYOND = st.integers(2**64, 2**80)
STARTS = st.one_of(STARTS_INT64, STARTS_BEYOND)
SPANS = st.integers(0, MAX_SPAN)


def brute(increment: int, phase: int, start: int, end: int) -> tuple[list[int], int]:
    """The oracle's step ticks in (start, end] and its phase at `end`."""
    acc = PerTickAccumulator(increment, phase, start)
    ticks = acc.run(end)
    assert acc.steps == len(ticks) and acc.tick == end
    return ticks, acc.phase


@settings(max_examples=1000, deadline=None)
@given(increment=INCREMENTS_OR_STOP, phase=PHASES, start=STARTS, span=SPANS, probe=st.integers(0, MAX_SPAN))
@example(increment=1, phase=PHASE_ONE - 1, start=0, span=1, probe=1)            # the very first tick steps
@example(increment=PHASE_ONE - 1, phase=0, start=2**70, span=MAX_SPAN, probe=2)  # nearly every tick steps
@example(increment=PHASE_ONE - 1, phase=1, start=0, span=3, probe=1)             # exactly every tick steps
def test_one_rate_equals_per_tick_loop(increment: int, phase: int, start: int, span: int, probe: int) -> None:
    end = start + span
    ticks, phase_end = brute(increment, phase, start, end)
    sched = StepScheduler(increment=increment, phase=phase, tick=start)

    assert sched.steps_until(end) == len(ticks)
    # Counts at an intermediate tick, and never for a tick in the past.
    mid = start + min(probe, span)
    assert sched.steps_until(mid) == sum(1 for t in ticks if t <= mid)
    assert sched.steps_until(start) == 0 and sched.steps_until(start - 7) == 0
    # The tick of every step, and the first step after the span falls after it.
    assert [sched.tick_of_step(k) for k in range(1, len(ticks) + 1)] == ticks
    if increment:
        assert sched.tick_of_step(len(ticks) + 1) > end
    else:
        assert sched.tick_of_step(1) is None
    # The vectorised listing (int64) wherever the ticks fit.
    if end <= INT64_MAX:
        listed = sched.step_ticks(end)
        assert listed.dtype == np.int64
        assert listed.tolist() == ticks
    # Listing and counting never move the state.
    assert (sched.tick, sched.phase, sched.steps) == (start, phase, 0)

    assert sched.advance(end) == len(ticks)
    assert (sched.tick, sched.phase, sched.steps) == (end, phase_end, len(ticks))
    assert 0 <= sched.phase < PHASE_ONE


@st.composite
def rate_change_plans(draw, starts=STARTS_INT64):
    """A start, a phase and [(tick, increment), ...] at non-decreasing ticks, then an end tick."""
    start = draw(starts)
    phase = draw(PHASES)
    n = draw(st.integers(0, 8))
    offsets = sorted(draw(st.lists(st.integers(0, MAX_SPAN), min_size=n + 1, max_size=n + 1)))
    changes = [(start + off, draw(INCREMENTS_OR_STOP)) for off in offsets[:-1]]
    return start, phase, changes, start + offsets[-1]


def brute_plan(start: int, phase: int, changes: list[tuple[int, int]], end: int) -> tuple[list[int], int]:
    acc = PerTickAccumulator(0, phase, start)
    ticks: list[int] = []
    for at, increment in changes:
        ticks += acc.run(at)
        acc.increment = increment
    ticks += acc.run(end)
    return ticks, acc.phase


@settings(max_examples=1000, deadline=None)
@given(plan=rate_change_plans())
def test_rate_changes_carry_the_phase_like_the_per_tick_loop(plan) -> None:
    start, phase, changes, end = plan
    ticks, phase_end = brute_plan(start, phase, changes, end)
    assert schedule_step_ticks(start, phase, changes, end).tolist() == ticks


@settings(max_examples=1000, deadline=None)
@given(plan=rate_change_plans(starts=STARTS), probes=st.lists(st.integers(0, MAX_SPAN), max_size=4))
def test_manual_advance_and_set_increment_equal_the_per_tick_loop(plan, probes) -> None:
    """The same plan driven by hand: counts and tick_of_step before every change, exact past int64."""
    start, phase, changes, end = plan
    sched = StepScheduler(increment=0, phase=phase, tick=start)
    acc = PerTickAccumulator(0, phase, start)
    for at, increment in [*changes, (end, None)]:
        # Before moving: what the closed forms predict for this constant-rate piece.
        probe_ticks = sorted(min(at, sched.tick + p) for p in probes)
        expected_counts = []
        oracle = PerTickAccumulator(acc.increment, acc.phase, acc.tick)
        seen: list[int] = []
        for t in probe_ticks:
            seen += oracle.run(t)
            expected_counts.append(len(seen))
        assert [sched.steps_until(t) for t in probe_ticks] == expected_counts
        piece = acc.run(at)
        assert [sched.tick_of_step(k) for k in range(1, len(piece) + 1)] == piece
        assert sched.advance(at) == len(piece)
        assert (sched.tick, sched.phase, sched.steps) == (acc.tick, acc.phase, acc.steps)
        if increment is not None:
            sched.set_increment(increment)
            acc.increment = increment
    assert sched.steps == len(brute_plan(start, phase, changes, end)[0])


@settings(max_examples=300, deadline=None)
@given(increment=INCREMENTS, phase=PHASES, start=STARTS_INT64, span=SPANS,
       chunk=st.integers(1, 40))
def test_chunked_listing_equals_per_tick_loop(increment: int, phase: int, start: int, span: int, chunk: int) -> None:
    """The listing rebases every chunk of steps; with a tiny chunk it crosses many boundaries."""
    ticks, _ = brute(increment, phase, start, start + span)
    with mock.patch.object(step_scheduler, "_CHUNK_STEPS", chunk):
        listed = StepScheduler(increment=increment, phase=phase, tick=start).step_ticks(start + span)
    assert listed.tolist() == ticks


@pytest.mark.parametrize("increment, phase, start, steps_wanted", [
    (PHASE_ONE - 1, 0, 0, (1 << 20) + 5_000),                 # just past the first chunk
    (PHASE_ONE - 1, PHASE_ONE - 1, 2**40 + 17, 3 * (1 << 20) + 11),  # three chunk boundaries
    (PHASE_ONE // 3 + 1, 12_345, 2**41, (1 << 20) + 1),       # one step every ~3 ticks
])
def test_listing_across_the_real_chunk_boundary(increment: int, phase: int, start: int, steps_wanted: int) -> None:
    """More than 2^20 steps (too many for the per-tick loop): compare with tick_of_step(k)."""
    sched = StepScheduler(increment=increment, phase=phase, tick=start)
    end = sched.tick_of_step(steps_wanted)
    listed = sched.step_ticks(end)
    assert len(listed) == steps_wanted == sched.steps_until(end)
    assert listed[-1] == end
    assert bool(np.all(np.diff(listed) > 0))
    rng = random.Random(steps_wanted)
    boundary = 1 << 20
    ks = {1, 2, steps_wanted}
    for b in range(boundary, steps_wanted + 1, boundary):
        ks |= {b - 1, b, b + 1}
    ks |= {rng.randint(1, steps_wanted) for _ in range(300)}
    for k in sorted(k for k in ks if 1 <= k <= steps_wanted):
        assert int(listed[k - 1]) == sched.tick_of_step(k), k


def test_listing_forty_days_at_the_maximum_rate() -> None:
    """24 mL/day in 250 nL strokes for 40 days: 3.8 million steps in four chunks, all exact."""
    increment = increment_for_rate(24_000_000, 250)
    sched = StepScheduler(increment=increment, phase=PHASE_ONE - 1, tick=5)
    end = 5 + 40 * TICKS_PER_DAY
    listed = sched.step_ticks(end)
    assert len(listed) == sched.steps_until(end)
    assert abs(len(listed) - 40 * 96_000) <= 40 * 96_000 // 1000  # quantisation well under 0.1 %
    for k in (1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20), 3 * (1 << 20) + 1, len(listed)):
        assert int(listed[k - 1]) == sched.tick_of_step(k)
    assert bool(np.all(np.diff(listed) > 0)) and listed[-1] <= end
    assert sched.advance(end) == len(listed)


def test_steps_until_is_exact_far_beyond_int64() -> None:
    """A count over 2^100 ticks: no float, no overflow."""
    sched = StepScheduler(increment=PHASE_ONE - 1, phase=5, tick=2**90)
    span = 2**100
    assert sched.steps_until(2**90 + span) == (5 + span * (PHASE_ONE - 1)) >> 32
    k = span - 2**68
    t = sched.tick_of_step(k)
    assert sched.steps_until(t) == k and sched.steps_until(t - 1) == k - 1


# ---- several accumulators on one motor ------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(incs=st.tuples(INCREMENTS_OR_STOP, INCREMENTS_OR_STOP), phases=st.tuples(PHASES, PHASES),
       start=STARTS, span=st.integers(0, 3_000), k=st.integers(1, 6_000))
def test_combined_channels_equal_two_per_tick_loops(incs, phases, start, span, k) -> None:
    end = start + span
    a, _ = brute(incs[0], phases[0], start, end)
    b, _ = brute(incs[1], phases[1], start, end)
    merged = sorted(a + b)
    scheds = [StepScheduler(incs[i], phases[i], start) for i in range(2)]
    assert combined_steps_until(scheds, end) == len(merged)
    got = tick_of_combined_step(scheds, k, end)
    if k <= len(merged):
        assert got == merged[k - 1]
    else:
        assert got is None


# ---- quantisation and limits ---------------------------------------------------------------

@settings(max_examples=1000, deadline=None)
@given(stroke=st.integers(1, 10_000), rate=st.integers(0, 10**12))
def test_increment_for_rate_is_within_half_a_quantum(stroke: int, rate: int) -> None:
    """The effective rate is the programmed one within half an accumulator quantum, or refused."""
    den = stroke * TICKS_PER_DAY
    exact = Fraction(rate * PHASE_ONE, den)            # the ideal (fractional) increment
    half_quantum = Fraction(den, 2 * PHASE_ONE)        # nL/day of half an increment
    if exact + Fraction(1, 2) >= PHASE_ONE:            # rounds to one step per tick or more
        with pytest.raises(LimitExceeded) as err:
            increment_for_rate(rate, stroke)
        assert err.value.field == "rate_nl_per_day" and err.value.value == rate
        return
    if rate > 0 and exact < Fraction(1, 2):            # rounds to a stopped motor
        with pytest.raises(LimitExceeded):
            increment_for_rate(rate, stroke)
        return
    increment = increment_for_rate(rate, stroke)
    assert 0 <= increment < PHASE_ONE
    assert abs(increment - exact) <= Fraction(1, 2)
    effective = effective_rate_nl_per_day(increment, stroke)
    assert abs(effective - rate) <= half_quantum
    assert (increment == 0) == (rate == 0)


def test_quantisation_at_the_minimum_rate_is_reported() -> None:
    """0.048 mL/day at 250 nL steps: a quantum is about 0.3 % of the rate (DESIGN.md); the
    effective rate is off by at most half of it, and it is reported exactly, not rounded away."""
    quantum = Fraction(250 * TICKS_PER_DAY, PHASE_ONE)
    assert Fraction(3, 1000) < quantum / 48_000 < Fraction(4, 1000)
    increment = increment_for_rate(48_000, 250)
    effective = effective_rate_nl_per_day(increment, 250)
    assert effective == increment * quantum and effective != 48_000
    assert abs(effective - 48_000) <= quantum / 2


@pytest.mark.parametrize("stroke", [1, 250, 1_000])
def test_more_than_one_step_per_tick_is_refused(stroke: int) -> None:
    one_per_tick = stroke * TICKS_PER_DAY
    for rate in (one_per_tick, one_per_tick + 1, 2 * one_per_tick, 10**15):
        with pytest.raises(LimitExceeded) as err:
            increment_for_rate(rate, stroke)
        assert "one step per tick" in str(err.value) and str(rate) in str(err.value)
    # The boundary is exact: the fastest accepted rate rounds to just under one step per tick,
    # one nL/day more is refused.
    fastest = -(-(one_per_tick * 2 * PHASE_ONE - one_per_tick) // (2 * PHASE_ONE)) - 1
    assert PHASE_ONE - 2 <= increment_for_rate(fastest, stroke) <= PHASE_ONE - 1
    with pytest.raises(LimitExceeded):
        increment_for_rate(fastest + 1, stroke)


def test_negative_rate_and_too_small_rate_are_refused() -> None:
    with pytest.raises(LimitExceeded, match="rate_nl_per_day = -1"):
        increment_for_rate(-1, 250)
    half_quantum = Fraction(250 * TICKS_PER_DAY, 2 * PHASE_ONE)  # about 82.4 nL/day
    with pytest.raises(LimitExceeded, match="half an accumulator quantum"):
        increment_for_rate(int(half_quantum) - 1, 250)
    assert increment_for_rate(int(half_quantum) + 1, 250) == 1


@pytest.mark.parametrize("increment", [-1, PHASE_ONE, PHASE_ONE + 1])
def test_set_increment_refuses_more_than_one_step_per_tick(increment: int) -> None:
    sched = StepScheduler(increment=5, phase=7, tick=9)
    with pytest.raises(LimitExceeded) as err:
        sched.set_increment(increment)
    assert err.value.field == "increment" and err.value.value == increment
    assert (sched.increment, sched.phase, sched.tick) == (5, 7, 9)


def test_controller_refuses_a_mechanism_faster_than_one_step_per_tick() -> None:
    mech = Mechanism(stroke_nl=1, min_rate_nl_per_day=48_000, max_rate_nl_per_day=2 * TICKS_PER_DAY)
    with pytest.raises(LimitExceeded, match="one step per tick"):
        Controller(PumpConfig(mechanism=mech))


def test_advance_backwards_is_refused() -> None:
    sched = StepScheduler(increment=10, phase=0, tick=100)
    with pytest.raises(ValueError, match="backwards"):
        sched.advance(99)
    assert sched.tick == 100 and sched.steps == 0


def test_stopped_scheduler_lists_nothing() -> None:
    sched = StepScheduler(increment=0, phase=PHASE_ONE - 1, tick=0)
    assert sched.steps_until(10**9) == 0
    assert sched.step_ticks(10**9).tolist() == []
    assert sched.tick_of_step(1) is None
    assert schedule_step_ticks(0, 0, [], 100).tolist() == []
