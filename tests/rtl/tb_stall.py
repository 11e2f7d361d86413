"""cocotb bench: stall detection, the step that declares a stall against firmware_model's controller.

Each stream is a random pattern of commanded steps whose rotor feedback comes in the window, comes
late, or never comes. The model's answer comes from the controller itself (stall_oracle: each run
of missed steps is an MRI exposure holding the rotor); the RTL must declare the stall at the same
step, or not at all. Python sends the commands and the feedback edges; it waits with one timer
per action, never per clock edge. Settings (environment): ITHIL_RTL_STALL_STREAMS (default 120).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import cocotb

from firmware_model.calibration import Mechanism

from rtl_harness import Toggle, cycles, reset_section, start_section
from rtl_registers import stall_registers
from stall_oracle import model_stall_step

FEEDBACK_HIGH_CYCLES = 2
SYNC_CYCLES = 2   # the detector's feedback synchroniser: an edge written d cycles after the
                  # command is judged at age d + 2, inside the window when d + 2 <= window


@dataclass(frozen=True)
class Step:
    """One commanded step: when its feedback rises (cycles after the command, None: never) and
    how long until the next command."""

    feedback_delay: int | None
    gap: int
    achieved: bool


def random_stream(rng: random.Random, window: int) -> list[Step]:
    """Steps whose feedback is on time, late (after the window) or missing, in runs."""
    miss_rate = rng.choice([0.1, 0.35, 0.6, 0.85])
    steps = []
    for _ in range(rng.randint(1, 40)):
        if rng.random() >= miss_rate:
            delay = rng.randint(0, window - SYNC_CYCLES)
            steps.append(Step(delay, delay + 4 + rng.randint(0, window + 10), True))
        elif rng.random() < 0.5:  # late: the edge comes after the window closed, before the next step
            delay = rng.randint(window - SYNC_CYCLES + 1, window + 6)
            steps.append(Step(delay, delay + 4 + rng.randint(0, 10), False))
        else:  # never: the window expires, or the next command comes first
            steps.append(Step(None, rng.randint(2, window + 20), False))
    return steps


class StallBench:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.step = Toggle(dut.stall_step_toggle)
        self.clear = Toggle(dut.stall_clear_toggle)
        dut.stall_feedback.value = 0

    def configure(self, detect_steps: int, window: int) -> None:
        regs = stall_registers(detect_steps, window)
        self.dut.stall_window_ticks.value = regs.window_ticks
        self.dut.stall_detect_steps.value = regs.detect_steps

    async def send(self, steps: list[Step]) -> None:
        """Command each step, raise its feedback when due, and wait for the next command."""
        for step in steps:
            self.step.pulse()
            waited = 0
            if step.feedback_delay is not None:
                if step.feedback_delay:
                    await cycles(step.feedback_delay)
                self.dut.stall_feedback.value = 1
                await cycles(FEEDBACK_HIGH_CYCLES)
                self.dut.stall_feedback.value = 0
                waited = step.feedback_delay + FEEDBACK_HIGH_CYCLES
            if step.gap > waited:
                await cycles(step.gap - waited)

    def state(self) -> tuple[int, int, int, int]:
        d = self.dut
        return (int(d.stall_flag.value), int(d.stall_step_number.value), int(d.stall_missed_steps.value),
                int(d.stall_steps_commanded.value))


def trailing_misses(missed: list[bool]) -> int:
    count = 0
    for miss in missed:
        count = count + 1 if miss else 0
    return min(count, 255)


@cocotb.test()
async def stall_declared_at_the_models_step(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED)
    mech = Mechanism()
    bench = StallBench(dut)
    bench.configure(3, 16)
    await start_section(dut, "stall")
    streams = int(os.environ.get("ITHIL_RTL_STALL_STREAMS", "120"))
    stalls = 0
    for n in range(streams):
        detect = rng.choice([1, 2, 3, 3, 3, 4, 5])
        window = rng.randint(6, 48)
        rate = rng.randint(mech.min_rate_nl_per_day, mech.max_rate_nl_per_day)
        steps = random_stream(rng, window)
        missed = [not s.achieved for s in steps]
        want = model_stall_step(rate, missed, detect)
        bench.configure(detect, window)
        await reset_section(dut, "stall")
        await bench.send(steps)
        await cycles(window + 8)  # the last window closes
        flag, number, misses, commanded = bench.state()
        pattern = "".join("x" if m else "." for m in missed)
        where = f"stream {n}: detect {detect}, window {window}, rate {rate} nL/day, steps {pattern}"
        assert commanded == len(steps), f"{where}: RTL counted {commanded} commanded steps"
        assert (flag, number if flag else None) == (want is not None, want), \
            f"{where}: RTL stall {bool(flag)} at step {number}; model stall at step {want}"
        assert misses == trailing_misses(missed), f"{where}: RTL {misses} consecutive misses at the end"
        stalls += want is not None
    assert 0 < stalls < streams, f"{stalls} of {streams} streams stalled: the patterns test only one outcome"
    dut._log.info("%d streams, %d with a stall, each at the model's step", streams, stalls)


@cocotb.test()
async def the_window_edge_and_the_recovery(dut: Any) -> None:
    """Feedback d cycles after the command counts while d + 2 <= window; clear forgets the stall."""
    bench = StallBench(dut)
    window = 10
    bench.configure(1, window)
    await start_section(dut, "stall")
    last_in = window - SYNC_CYCLES
    await bench.send([Step(last_in, last_in + 6, True)])
    await cycles(window)
    assert bench.state()[:3] == (0, 0, 0), f"feedback at {last_in} cycles is in a {window}-cycle window"
    await bench.send([Step(last_in + 1, last_in + 7, False)])
    await cycles(window)
    assert bench.state()[:3] == (1, 2, 1), f"feedback at {last_in + 1} cycles is late: step 2 stalls"
    bench.clear.pulse()
    await cycles(2)
    assert bench.state()[:3] == (0, 0, 0), "clear forgets the stall and the misses"
    # Detection of 3: two misses, a landed step, three misses: the stall is the sixth step's.
    bench.configure(3, window)
    await bench.send([Step(None, window + 3, False)] * 2 + [Step(1, 8, True)] + [Step(None, 3, False)] * 3)
    await cycles(window + 4)
    assert bench.state() == (1, 8, 3, 8), f"stall, step, misses, commanded: {bench.state()}"
    # 300 misses in a row after a recovery: declared at the third, the count saturates at 255.
    bench.clear.pulse()
    await cycles(2)
    await bench.send([Step(None, 3, False)] * 300)
    await cycles(window + 4)
    assert bench.state() == (1, 11, 255, 308), f"stall, step, misses, commanded: {bench.state()}"


@cocotb.test()
async def a_feedback_line_stuck_high_hides_no_stall(dut: Any) -> None:
    """Feedback is an edge per step: a sensor stuck high achieves one step, not the ones after."""
    bench = StallBench(dut)
    bench.configure(3, 12)
    await start_section(dut, "stall")
    bench.step.pulse()
    await cycles(2)
    dut.stall_feedback.value = 1              # rises once, then stays high
    await cycles(20)
    await bench.send([Step(None, 20, False)] * 3)
    await cycles(20)
    assert bench.state() == (1, 4, 3, 4), f"stall, step, misses, commanded: {bench.state()}"
