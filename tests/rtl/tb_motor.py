"""cocotb bench: the step generator and the coil sequencer, every step against firmware_model.

A random programme (motor_plan) of rates, phases, directions and step modes runs for
ITHIL_RTL_CYCLES cycles (default 10^6). The harness applies each load at its exact tick and logs
every step as {coils, tick}; Python wakes only to arm the next load and to read the log once
per 1,024 steps, and checks each block as it comes: the step's cycle must be the model's tick
(StepScheduler) and the coils the stepper sequence's pattern, for every step, bit for bit.
Settings (environment): ITHIL_RTL_CYCLES; ITHIL_RTL_REPORT, a JSON file for the figures;
ITHIL_RTL_SKEW_STEP=k moves the model's k-th step (from 0) one tick later, so the check must fail.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge, ValueChange

from motor_plan import Expected, Load, expected_steps, load_in_force, random_plan
from rtl_harness import between_edges, cycles, start_section

LOG_DEPTH = 1024
LOG_BITS = 36
_TICK_WEIGHTS = (1 << np.arange(32, dtype=np.uint64)).astype(np.uint64)
_COIL_WEIGHTS = np.array([1, 2, 4, 8], dtype=np.uint64)


def decode_log(value: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` entries of the step log vector: (ticks, coils)."""
    raw = np.frombuffer(value.to_bytes(LOG_DEPTH * LOG_BITS // 8, "little"), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little").reshape(LOG_DEPTH, LOG_BITS)[:count].astype(np.uint64)
    return (bits[:, :32] @ _TICK_WEIGHTS).astype(np.int64), (bits[:, 32:] @ _COIL_WEIGHTS).astype(np.int64)


class StepChecker:
    """Compares logged steps with the model's, block by block, and fails at the first difference."""

    def __init__(self, plan: list[Load], expected: Expected) -> None:
        self.plan, self.expected, self.checked = plan, expected, 0

    def check(self, ticks: np.ndarray, coils: np.ndarray) -> None:
        start, n = self.checked, len(ticks)
        want_ticks = self.expected.ticks[start:start + n]
        want_coils = self.expected.coils[start:start + n]
        if len(want_ticks) < n:
            extra = int(ticks[len(want_ticks)])
            raise AssertionError(f"step {start + len(want_ticks) + 1} at tick {extra}: the model makes only "
                                 f"{len(self.expected.ticks)} steps ({self._context(extra)})")
        bad = np.flatnonzero((ticks != want_ticks) | (coils != want_coils))
        if len(bad):
            i = int(bad[0])
            k = start + i
            raise AssertionError(
                f"step {k + 1}: RTL tick {int(ticks[i])} coils {int(coils[i]):04b}, model tick "
                f"{int(want_ticks[i])} coils {int(want_coils[i]):04b} ({self._context(int(want_ticks[i]))}); "
                f"previous model ticks {self.expected.ticks[max(0, k - 3):k].tolist()}")
        self.checked += n

    def _context(self, tick: int) -> str:
        load = load_in_force(self.plan, tick)
        return f"load in force: {load}" if load else "before the first load"


async def drive(dut: Any, plan: list[Load]) -> None:
    """Arm each load and wait until the harness has applied it at its tick."""
    arm = 0
    for load in plan:
        dut.sched_tick.value = load.tick
        dut.sched_increment.value = load.increment or 0
        dut.sched_phase.value = load.phase or 0
        dut.sched_flags.value = load.flags
        arm = (arm + 1) & 0xFF
        dut.sched_arm.value = arm
        while int(dut.sched_done.value) != arm:
            await ValueChange(dut.sched_done)


async def collect(dut: Any, checker: StepChecker) -> None:
    """Check every full block of the step log when the harness says it is full."""
    while True:
        await RisingEdge(dut.step_log_full)
        await ReadOnly()
        checker.check(*decode_log(dut.step_log.value.to_unsigned(), LOG_DEPTH))


async def run_programme(dut: Any, total_cycles: int, seed: int) -> dict[str, float]:
    """Run a random programme and check it; return the figures (cycles, steps, seconds)."""
    plan = random_plan(random.Random(seed), total_cycles)
    expected = expected_steps(plan)
    skew = os.environ.get("ITHIL_RTL_SKEW_STEP")
    if skew:  # the suite's own check that a one-tick difference fails (and leaves a waveform)
        expected.ticks[int(skew)] += 1
    checker = StepChecker(plan, expected)
    end = plan[-1].tick
    dut.sched_tick.value = 0
    dut.sched_increment.value = 0
    dut.sched_phase.value = 0
    dut.sched_flags.value = 0
    dut.sched_arm.value = 0
    await start_section(dut, "motor")
    t0 = time.perf_counter()
    collector = cocotb.start_soon(collect(dut, checker))
    await drive(dut, plan)              # returns at the edge of the last load: tick `end`
    await between_edges(dut, "motor")
    await cycles(3)                     # the last steps reach the log a cycle after their pulse
    collector.cancel()
    ticks, coils = decode_log(dut.step_log.value.to_unsigned(), int(dut.step_log_count.value))
    keep = ticks <= end
    checker.check(ticks[keep], coils[keep])
    seconds = time.perf_counter() - t0
    assert checker.checked == len(expected.ticks), \
        f"the RTL made {checker.checked} steps up to tick {end}; the model {len(expected.ticks)}"
    now = int(dut.motor_tick.value)
    sched = expected.scheduler
    sched.advance(now)
    assert int(dut.motor_phase.value) == sched.phase, \
        f"phase after tick {now}: RTL {int(dut.motor_phase.value):#010x}, model {sched.phase:#010x}"
    return {"cycles": end, "steps": len(expected.ticks), "loads": len(plan), "seconds": seconds}


def report(figures: dict[str, float]) -> None:
    path = os.environ.get("ITHIL_RTL_REPORT")
    if path:
        with open(path, "w") as handle:
            json.dump(figures, handle)


@cocotb.test()
async def every_step_on_the_models_tick_with_its_coils(dut: Any) -> None:
    total = int(os.environ.get("ITHIL_RTL_CYCLES", "1000000"))
    figures = await run_programme(dut, total, cocotb.RANDOM_SEED)
    dut._log.info("checked %d cycles, %d steps, %d loads in %.2f s: %.0f cycles/s", figures["cycles"],
                  figures["steps"], figures["loads"], figures["seconds"], figures["cycles"] / figures["seconds"])
    report(figures)
