"""cocotb bench, the baseline for benchmarks/bench_rtl.py: the same check as tb_motor, written the
usual way, with Python awaiting every clock edge to look for a step.

Python wakes at every falling edge of the motor clock (mid-cycle, values settled), notes a step
pulse and its tick, and reads the step's coils on the next cycle; the loads are applied by the
harness exactly as in tb_motor. The result must be the same; only the cost differs.
Settings (environment): ITHIL_RTL_CYCLES (default 20,000); ITHIL_RTL_REPORT.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from motor_plan import expected_steps, random_plan
from rtl_harness import start_section
from tb_motor import StepChecker, drive, report


@cocotb.test()
async def every_step_checked_on_every_edge(dut: Any) -> None:
    total = int(os.environ.get("ITHIL_RTL_CYCLES", "20000"))
    plan = random_plan(random.Random(cocotb.RANDOM_SEED), total)
    expected = expected_steps(plan)
    checker = StepChecker(plan, expected)
    end = plan[-1].tick
    for name in ("sched_tick", "sched_increment", "sched_phase", "sched_flags", "sched_arm"):
        getattr(dut, name).value = 0
    await start_section(dut, "motor")
    t0 = time.perf_counter()
    driver = cocotb.start_soon(drive(dut, plan))
    edge = FallingEdge(dut.motor_clk)
    ticks: list[int] = []
    coils: list[int] = []
    pending: int | None = None
    while True:
        await edge
        tick = int(dut.motor_tick.value)
        if pending is not None:          # the coils of last cycle's step are on the outputs now
            ticks.append(pending)
            coils.append(int(dut.motor_coils.value))
            pending = None
        if tick > end:
            break
        if int(dut.motor_step.value):
            pending = tick
    seconds = time.perf_counter() - t0
    await driver
    checker.check(np.array(ticks, dtype=np.int64), np.array(coils, dtype=np.int64))
    assert checker.checked == len(expected.ticks), f"{checker.checked} steps; the model makes {len(expected.ticks)}"
    dut._log.info("per-edge check: %d cycles, %d steps in %.2f s: %.0f cycles/s", end, len(ticks), seconds,
                  end / seconds)
    report({"cycles": end, "steps": len(ticks), "loads": len(plan), "seconds": seconds})
