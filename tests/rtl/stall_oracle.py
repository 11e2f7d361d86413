"""The model's stall decision for a pattern of achieved and missed steps, from the controller itself.

firmware_model's controller counts commanded steps that the rotor did not make (the plant holds
the rotor under an MRI magnet) and declares a stall when `stall_detect_steps` of them come in a
row; a step that lands resets the count. To ask it about any pattern, each run of missed steps
becomes an MRI exposure that holds the rotor over exactly those steps' ticks: the plant holds
the rotor for the ticks (start, end], so a run from step a to step b is MriExposure(t_a - 1, t_b).
The controller then runs a continuous programme and logs STALL at the tick of the step that
declared it; its number among the steps is the answer.
"""

from __future__ import annotations

from typing import Sequence

from firmware_model import Controller, LogCode, ProgramContinuous, PumpConfig, Refill
from firmware_model.plant import MriExposure, Plant

RESERVOIR_NL = 20_000_000
CONCENTRATION_UG_PER_ML = 500  # low enough that 24 mL/day stays inside the drug library's daily limit


def _pump(rate_nl_per_day: int, detect_steps: int, mri: tuple[MriExposure, ...]) -> Controller:
    # No pressure detector: this pump judges only stall (a false occlusion alarm would stop it).
    config = PumpConfig(stall_detect_steps=detect_steps, detector=None)
    pump = Controller(config, plant=Plant(seed=1, mri=mri))
    pump.handle(Refill(0, RESERVOIR_NL, "morphine", CONCENTRATION_UG_PER_ML), 0)
    pump.handle(ProgramContinuous(rate_nl_per_day), 0)
    return pump


def step_ticks(rate_nl_per_day: int, count: int) -> list[int]:
    """The ticks of the first `count` steps of a continuous programme started at tick 0."""
    basal = _pump(rate_nl_per_day, 3, ()).state.basal
    if basal.increment == 0:
        raise ValueError(f"rate {rate_nl_per_day} nL/day makes no steps")
    return [basal.tick_of_step(k) for k in range(1, count + 1)]


def model_stall_step(rate_nl_per_day: int, missed: Sequence[bool], detect_steps: int) -> int | None:
    """The number (from 1) of the step at which the controller declares a stall, or None."""
    ticks = step_ticks(rate_nl_per_day, len(missed))
    exposures = []
    run_start = None
    for i, miss in enumerate([*missed, False]):
        if miss and run_start is None:
            run_start = i
        elif not miss and run_start is not None:
            exposures.append(MriExposure(ticks[run_start] - 1, ticks[i - 1]))
            run_start = None
    pump = _pump(rate_nl_per_day, detect_steps, tuple(exposures))
    events = pump.advance(ticks[-1] + 1)
    stalls = [e.tick for e in events if e.code == LogCode.STALL]
    if not stalls:
        return None
    return ticks.index(stalls[0]) + 1
