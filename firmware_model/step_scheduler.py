"""The motor's step generator: a 32-bit phase accumulator (numerically controlled oscillator).

Every tick of the 32,768 Hz clock adds `increment` to a 32-bit phase; each overflow of 2^32 is
one motor step (DESIGN.md, firmware_model). The accumulator has a closed form, so this module
never loops over ticks: after n ticks the phase has gained n*increment, the step count is
floor((phase + n*increment) / 2^32) and the k-th step falls on tick
ceil((k*2^32 - phase) / increment). A span costs O(1) to count and O(steps) to list.
Python integers keep all of it exact past int64; the vectorised listing works in chunks that
stay inside int64. `PerTickAccumulator` is the literal per-tick loop, kept as the oracle.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

from .errors import LimitExceeded
from .units import TICKS_PER_DAY

PHASE_BITS = 32
PHASE_ONE = 1 << PHASE_BITS
PHASE_MASK = PHASE_ONE - 1
# Steps listed per vectorised chunk: k * 2^32 stays far below 2^63.
_CHUNK_STEPS = 1 << 20


@functools.lru_cache(maxsize=4096)
def increment_for_rate(rate_nl_per_day: int, stroke_nl: int) -> int:
    """The accumulator increment nearest to a flow; it quantises the rate (see effective_rate).

    Pure, so cached: the controller asks it again at every event."""
    if rate_nl_per_day < 0:
        raise LimitExceeded("rate_nl_per_day", rate_nl_per_day, ">= 0")
    num = rate_nl_per_day * PHASE_ONE
    den = stroke_nl * TICKS_PER_DAY
    increment = (2 * num + den) // (2 * den)
    if increment >= PHASE_ONE:
        raise LimitExceeded("rate_nl_per_day", rate_nl_per_day,
                            f"below one step per tick ({stroke_nl * TICKS_PER_DAY} nL/day)")
    if rate_nl_per_day > 0 and increment == 0:
        raise LimitExceeded("rate_nl_per_day", rate_nl_per_day,
                            "at least half an accumulator quantum "
                            f"({Fraction(den, 2 * PHASE_ONE)} nL/day)")
    return increment


def effective_rate_nl_per_day(increment: int, stroke_nl: int) -> Fraction:
    """The flow an increment really delivers: increment * stroke * ticks/day / 2^32, exact."""
    return Fraction(increment * stroke_nl * TICKS_PER_DAY, PHASE_ONE)


@dataclass(slots=True)
class StepScheduler:
    """One phase accumulator: its increment, its phase after `tick`, and the steps it has made."""

    increment: int = 0
    phase: int = 0
    tick: int = 0
    steps: int = 0

    def steps_until(self, to_tick: int) -> int:
        """Steps in the ticks (tick, to_tick]; O(1)."""
        span = to_tick - self.tick
        if span <= 0 or self.increment == 0:
            return 0
        return (self.phase + span * self.increment) >> PHASE_BITS

    def tick_of_step(self, k: int) -> int | None:
        """The tick of the k-th step from now (k >= 1), or None when the motor is stopped."""
        if self.increment == 0:
            return None
        need = k * PHASE_ONE - self.phase
        return self.tick + -(-need // self.increment)

    def advance(self, to_tick: int) -> int:
        """Move to `to_tick` and return the steps made on the way; O(1)."""
        span = to_tick - self.tick
        if span < 0:
            raise ValueError(f"cannot advance backwards from tick {self.tick} to {to_tick}")
        total = self.phase + span * self.increment
        made = total >> PHASE_BITS
        self.phase = total & PHASE_MASK
        self.tick = to_tick
        self.steps += made
        return made

    def set_increment(self, increment: int) -> None:
        """Change the rate now; the phase carries over, so no step is lost or doubled."""
        if not 0 <= increment < PHASE_ONE:
            raise LimitExceeded("increment", increment, f"0 <= increment < 2^{PHASE_BITS}")
        self.increment = increment

    def step_ticks(self, to_tick: int) -> np.ndarray:
        """Ticks of every step in (tick, to_tick], as int64, without moving the state."""
        count = self.steps_until(to_tick)
        out = np.empty(count, dtype=np.int64)
        if count == 0:
            return out
        base_tick, phase, done = self.tick, self.phase, 0
        inc = self.increment
        while done < count:
            n = min(_CHUNK_STEPS, count - done)
            k = np.arange(1, n + 1, dtype=np.int64)
            need = (k << PHASE_BITS) - phase
            out[done:done + n] = base_tick + (need + (inc - 1)) // inc
            # Rebase on the chunk's last step so the next chunk's k * 2^32 stays small.
            last = base_tick + -(-(n * PHASE_ONE - phase) // inc)
            phase = (phase + (last - base_tick) * inc) & PHASE_MASK
            base_tick = last
            done += n
        return out


def combined_steps_until(schedulers: Sequence[StepScheduler], to_tick: int) -> int:
    """Steps of several accumulators driving one motor, in (now, to_tick]."""
    return sum(s.steps_until(to_tick) for s in schedulers)


def tick_of_combined_step(schedulers: Sequence[StepScheduler], k: int, horizon: int) -> int | None:
    """The first tick by which the accumulators together have made k steps, if it is <= horizon.

    The combined count is monotone in time, so a binary search over O(1) counts finds it.
    """
    if combined_steps_until(schedulers, horizon) < k:
        return None
    lo = schedulers[0].tick  # count(lo) == 0 < k
    hi = horizon
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if combined_steps_until(schedulers, mid) >= k:
            hi = mid
        else:
            lo = mid
    return hi


class PerTickAccumulator:
    """The oracle: the accumulator exactly as a firmware timer interrupt runs it, tick by tick."""

    def __init__(self, increment: int = 0, phase: int = 0, tick: int = 0) -> None:
        self.increment = increment
        self.phase = phase
        self.tick = tick
        self.steps = 0

    def run(self, to_tick: int) -> list[int]:
        """Tick to `to_tick`, one tick at a time; return the ticks of the steps made."""
        made: list[int] = []
        phase, inc = self.phase, self.increment
        for t in range(self.tick + 1, to_tick + 1):
            phase += inc
            if phase >= PHASE_ONE:
                phase -= PHASE_ONE
                made.append(t)
        self.phase, self.tick = phase, max(self.tick, to_tick)
        self.steps += len(made)
        return made


def schedule_step_ticks(start_tick: int, phase: int, changes: Iterable[tuple[int, int]],
                        end_tick: int) -> np.ndarray:
    """Step ticks over a span with rate changes [(tick, increment), ...] that carry the phase."""
    sched = StepScheduler(increment=0, phase=phase, tick=start_tick)
    parts = []
    for at, increment in changes:
        parts.append(sched.step_ticks(at))
        sched.advance(at)
        sched.set_increment(increment)
    parts.append(sched.step_ticks(end_tick))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
