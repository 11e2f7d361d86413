"""The step-generator check on the RTL, in cycles per second, on Icarus Verilog and on Verilator,
against a testbench that awaits every clock edge in Python.

The check (tests/rtl/tb_motor.py) runs a random programme of rates, phases and rate changes and
compares every step's cycle and coils with firmware_model; Python wakes only to arm a load and
to read the step log once per 1,024 steps, and the clock runs in the simulator. The baseline
(tests/rtl/tb_motor_per_edge.py) checks the same thing with Python on every clock edge. Both run
in this process's run, on the same builds, and the ratio is taken per simulator. Goal: 10^7
cycles checked in under 60 s on Verilator.

Cycles per second are measured inside the simulation (from the first load to the last check);
the wall time of the 10^7-cycle run also counts the simulator's start and the model's
expectation. Builds are done first and not timed (their time is printed for information).

Prints, last, one figure per line: cycles checked, cycles per second for the check and the
per-edge baseline on each simulator, their ratio, and the 10^7-cycle wall time on Verilator.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "rtl"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rtl_sim  # noqa: E402
from _timing import best_of, report  # noqa: E402

CHECK_CYCLES = {"icarus": 1_000_000, "verilator": 10_000_000}
PER_EDGE_CYCLES = 100_000
SEED = 7


def run_bench(sim: str, bench: str, cycles: int, tag: str) -> dict[str, float]:
    """One bench run; the figures it wrote (cycles, steps, seconds inside the simulation)."""
    figures_file = rtl_sim.BUILD_ROOT / f"bench-{bench}-{sim}-{tag}.json"
    figures_file.unlink(missing_ok=True)
    rtl_sim.run(sim, bench, seed=SEED, tag=tag,
                env={"ITHIL_RTL_CYCLES": str(cycles), "ITHIL_RTL_REPORT": str(figures_file)})
    return json.loads(figures_file.read_text())


def best_run(sim: str, bench: str, cycles: int, repeat: int) -> tuple[float, dict[str, float]]:
    """Best wall time of `repeat` runs, and the figures of the run with the best in-sim rate."""
    runs: list[dict[str, float]] = []
    wall, _ = best_of(lambda: runs.append(run_bench(sim, bench, cycles, "bench")), repeat=repeat)
    return wall, max(runs, key=lambda f: f["cycles"] / f["seconds"])


def main() -> None:
    figures: list[tuple[str, float, str]] = []
    build_s = {}
    for sim in rtl_sim.SIMULATORS:
        t0 = time.perf_counter()
        rtl_sim.build(sim)
        build_s[sim] = time.perf_counter() - t0
    rates = {}
    for sim in rtl_sim.SIMULATORS:
        cycles = CHECK_CYCLES[sim]
        wall, check = best_run(sim, "tb_motor", cycles, repeat=1 if sim == "verilator" else 2)
        _, edge = best_run(sim, "tb_motor_per_edge", PER_EDGE_CYCLES, repeat=2)
        rates[sim] = (check["cycles"] / check["seconds"], edge["cycles"] / edge["seconds"])
        print(f"{sim}: checked {check['cycles']} cycles, {check['steps']} steps, {check['loads']} loads in "
              f"{check['seconds']:.1f} s ({wall:.1f} s wall); per-edge baseline {edge['cycles']} cycles in "
              f"{edge['seconds']:.1f} s; build {build_s[sim]:.1f} s (not timed)")
        figures.append((f"{sim}_cycles_checked", check["cycles"], "cycles"))
        figures.append((f"{sim}_steps_checked", check["steps"], "steps"))
        if sim == "verilator":
            figures.append(("verilator_1e7_cycles_wall_time", wall, "s"))
    for sim, (check_rate, edge_rate) in rates.items():
        figures.append((f"{sim}_check_cycles_per_s", check_rate, "cycles/s"))
        figures.append((f"{sim}_per_edge_cycles_per_s", edge_rate, "cycles/s"))
        figures.append((f"{sim}_check_vs_per_edge", check_rate / edge_rate, "x"))
    report(figures)


if __name__ == "__main__":
    main()
