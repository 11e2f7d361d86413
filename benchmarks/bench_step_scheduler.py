"""Closed-form step scheduling versus the per-tick accumulator loop, at the motor's maximum rate.

The per-tick oracle (`PerTickAccumulator.run`) adds the increment on every tick of the 32,768 Hz
clock; the closed form counts the steps of a span in O(1) (`StepScheduler.steps_until`,
`StepScheduler.advance`) and lists their ticks in O(steps) (`StepScheduler.step_ticks`). Both
run over the same span at the maximum rate (`Mechanism().max_rate_nl_per_day`, 24 mL/day, with
250 nL strokes), the most steps per tick the motor makes, and must agree step for step.

Prints, last, one figure per line: the per-tick cost, the three closed-form costs and the
speedups (per-tick time / closed-form time over the same span). Goal: >= 10,000 x.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from _timing import best_of, calls_for, report  # noqa: E402
from firmware_model.calibration import Mechanism  # noqa: E402
from firmware_model.step_scheduler import (PerTickAccumulator, StepScheduler,  # noqa: E402
                                           increment_for_rate)

SPAN_TICKS = 2_000_000   # ~61 s of pump time; enough for the per-tick loop to be measurable
START_PHASE = 0x9E3779B9  # any phase in [0, 2^32): the span does not start on a step boundary
REPEAT = 5


def main() -> None:
    mech = Mechanism()
    assert mech.stroke_nl == 250
    increment = increment_for_rate(mech.max_rate_nl_per_day, mech.stroke_nl)

    # Baseline: the per-tick loop over the span (best of 3; each run is ~0.1-0.3 s).
    def per_tick() -> list[int]:
        return PerTickAccumulator(increment, START_PHASE, 0).run(SPAN_TICKS)

    t_tick, oracle = best_of(per_tick, repeat=3)
    oracle_ticks = np.asarray(oracle, dtype=np.int64)

    # Closed form, O(1) count without moving the state.
    sched = StepScheduler(increment=increment, phase=START_PHASE, tick=0)

    def count() -> int:
        return sched.steps_until(SPAN_TICKS)

    n = calls_for(count)
    t_count, counted = best_of(count, repeat=REPEAT, number=n)

    # Closed form, O(1) advance, which moves the state: each call rewinds the scheduler to the
    # span's start first (two attribute stores, timed too, so the figure is conservative).
    moving = StepScheduler(increment=increment, phase=START_PHASE, tick=0)

    def advance() -> int:
        moving.tick, moving.phase = 0, START_PHASE
        return moving.advance(SPAN_TICKS)

    n = calls_for(advance)
    t_advance, advanced = best_of(advance, repeat=REPEAT, number=n)

    # Closed form, O(steps) vectorised listing of the step ticks.
    def listing() -> np.ndarray:
        return sched.step_ticks(SPAN_TICKS)

    n = calls_for(listing)
    t_list, listed = best_of(listing, repeat=REPEAT, number=n)

    # A benchmark that computes something wrong is worthless: all four must agree.
    assert counted == advanced == len(oracle), (counted, advanced, len(oracle))
    assert np.array_equal(listed, oracle_ticks), "step_ticks disagrees with the per-tick oracle"
    end = StepScheduler(increment=increment, phase=START_PHASE, tick=0)
    end.advance(SPAN_TICKS)
    acc = PerTickAccumulator(increment, START_PHASE, 0)
    acc.run(SPAN_TICKS)
    assert (end.phase, end.tick, end.steps) == (acc.phase, acc.tick, acc.steps), "final phase differs"
    assert len(oracle) > 0

    print(f"span: {SPAN_TICKS} ticks at {mech.max_rate_nl_per_day} nL/day "
          f"(increment {increment}), {len(oracle)} steps; all methods agree")
    report([
        ("span_ticks", SPAN_TICKS, "ticks"),
        ("span_steps", len(oracle), "steps"),
        ("per_tick_span_time", t_tick * 1e3, "ms"),
        ("per_tick_ns_per_tick", t_tick / SPAN_TICKS * 1e9, "ns"),
        ("closed_form_count_time", t_count * 1e9, "ns"),
        ("closed_form_advance_time", t_advance * 1e9, "ns"),
        ("closed_form_listing_time", t_list * 1e9, "ns"),
        ("closed_form_count_speedup", t_tick / t_count, "x"),
        ("closed_form_advance_speedup", t_tick / t_advance, "x"),
        ("closed_form_listing_speedup", t_tick / t_list, "x"),
    ])


if __name__ == "__main__":
    main()
