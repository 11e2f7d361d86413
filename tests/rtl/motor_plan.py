"""Random motor programmes for the step generator and coil sequencer, and what the model says of them.

A programme is a list of loads, each applied at a tick: a new increment (a rate), a new phase,
and the coil sequencer's direction, half/full stepping and enable. The step ticks the model
predicts come from firmware_model.step_scheduler.StepScheduler (closed form, no tick loop):
advance to the load's tick, set the increment, set the phase, exactly the harness's semantics.
The coil patterns follow the stepper's half-step table (rtl_registers.COIL_PATTERNS).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from firmware_model.calibration import Mechanism
from firmware_model.step_scheduler import PHASE_MASK, PHASE_ONE, StepScheduler, increment_for_rate

from rtl_registers import COIL_PATTERNS, full_step_stride

FIRST_LOAD_TICK = 2
MIN_GAP_TICKS = 2  # the harness takes the next load a tick after applying one


@dataclass(frozen=True)
class Load:
    """What the harness applies at `tick`: the increment for the ticks after it and the phase after
    it (None: keep), and the coil sequencer's settings for the steps from it on."""

    tick: int
    increment: int | None
    phase: int | None
    direction: bool = True
    half_step: bool = False
    enable: bool = True

    @property
    def flags(self) -> int:
        """tb_pump sched_flags: {enable, half_step, direction, load_phase, load_inc}."""
        return ((self.increment is not None) | (self.phase is not None) << 1 | self.direction << 2
                | self.half_step << 3 | self.enable << 4)


def random_increment(rng: random.Random) -> int:
    """An increment from the pump's programmable range, the whole 32-bit range, or its edges."""
    kind = rng.random()
    if kind < 0.3:
        mech = Mechanism()
        rate = rng.randint(mech.min_rate_nl_per_day, mech.max_rate_nl_per_day)
        return increment_for_rate(rate, mech.stroke_nl)
    if kind < 0.6:
        return min(PHASE_MASK, int(2 ** rng.uniform(0, 32)))
    if kind < 0.75:
        return rng.randint(PHASE_ONE // 2, PHASE_MASK)  # a step at least every other tick
    if kind < 0.9:
        return rng.choice([0, 1, 2, PHASE_MASK, PHASE_MASK - 1, PHASE_ONE // 2, PHASE_ONE // 2 - 1,
                           PHASE_ONE // 2 + 1, PHASE_ONE // 3, 0x9E37_79B9])
    return rng.randint(0, PHASE_MASK)


def random_phase(rng: random.Random) -> int:
    return rng.choice([0, 1, PHASE_MASK, PHASE_ONE // 2, rng.randint(0, PHASE_MASK), rng.randint(0, PHASE_MASK)])


def random_plan(rng: random.Random, cycles: int) -> list[Load]:
    """Loads from tick FIRST_LOAD_TICK to `cycles`; the last one, at `cycles`, changes nothing
    and marks the end. Segments last 2 to 16,384 ticks (log-uniform)."""
    if cycles < FIRST_LOAD_TICK + MIN_GAP_TICKS:
        raise ValueError(f"cycles = {cycles}: expected at least {FIRST_LOAD_TICK + MIN_GAP_TICKS}")
    plan = [Load(FIRST_LOAD_TICK, random_increment(rng), random_phase(rng), rng.random() < 0.5,
                 rng.random() < 0.5, True)]
    tick = FIRST_LOAD_TICK
    while True:
        tick += max(MIN_GAP_TICKS, int(2 ** rng.uniform(1, 14)))
        if tick > cycles - MIN_GAP_TICKS:
            break
        previous = plan[-1]
        plan.append(Load(
            tick,
            random_increment(rng) if rng.random() < 0.8 else None,
            random_phase(rng) if rng.random() < 0.25 else None,
            previous.direction if rng.random() < 0.7 else not previous.direction,
            previous.half_step if rng.random() < 0.8 else not previous.half_step,
            rng.random() < 0.9,
        ))
    last = plan[-1]
    plan.append(Load(cycles, None, None, last.direction, last.half_step, last.enable))
    return plan


@dataclass(frozen=True)
class Expected:
    """The model's steps for a programme: their ticks, the coil pattern after each, and the state
    after the last load's tick."""

    ticks: np.ndarray   # int64
    coils: np.ndarray   # int64
    scheduler: StepScheduler


def expected_steps(plan: list[Load]) -> Expected:
    """Step ticks from the model's scheduler, coil patterns from the stepper's sequence."""
    sched = StepScheduler(increment=0, phase=0, tick=0)
    parts = []
    for load in plan:
        parts.append(sched.step_ticks(load.tick))
        sched.advance(load.tick)
        if load.increment is not None:
            sched.set_increment(load.increment)
        if load.phase is not None:
            sched.phase = load.phase
    ticks = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    # Coils: the settings of the last load at or before each step's tick.
    load_ticks = np.array([load.tick for load in plan], dtype=np.int64)
    in_force = np.searchsorted(load_ticks, ticks, side="right") - 1
    coils = np.empty(len(ticks), dtype=np.int64)
    position = 0
    for i, index in enumerate(in_force.tolist()):
        load = plan[index]
        if load.enable:
            stride = full_step_stride(position, load.half_step)
            position = (position + stride if load.direction else position - stride) % 8
            coils[i] = COIL_PATTERNS[position]
        else:
            coils[i] = 0
    return Expected(ticks, coils, sched)


def load_in_force(plan: list[Load], tick: int) -> Load | None:
    """The last load applied at or before `tick` (for failure messages)."""
    found = None
    for load in plan:
        if load.tick > tick:
            break
        found = load
    return found
