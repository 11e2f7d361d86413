"""The occlusion sweep's throughput, against a per-step Python loop on the same seeds.

The full default sweep (7 rates from 0.048 to 24 mL/day, 1,000 seeds each, one simulated week
per seed: 19 pump-years per rate) is timed once. The baseline is the same work done the way a
firmware runs it, stroke by stroke and pump by pump (`scan_per_step` on the same plant's
samples), timed on a sample of seeds and extrapolated per sample; both in this run.

Goal: the full default sweep in under 60 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import report  # noqa: E402
from firmware_model.calibration import Mechanism  # noqa: E402
from firmware_model.occlusion import DetectorSettings, scan_per_step  # noqa: E402
from firmware_model.occlusion_sweep import DEFAULT_RATES_NL_PER_DAY, sweep  # noqa: E402
from firmware_model.plant import PlantParams, pressure_samples_pa, stored_volume_after_steps  # noqa: E402
from firmware_model.step_scheduler import StepScheduler, increment_for_rate  # noqa: E402
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_YEAR  # noqa: E402

SEEDS = 1000
DAYS = 7
BASELINE_SEEDS = 4
BASELINE_RATE = 1_000_000


def per_step_loop_seconds_per_sample() -> float:
    """A day at 1 mL/day for a few seeds, stroke by stroke: the plant's samples fed one at a time."""
    settings, plant, mech = DetectorSettings(), PlantParams(), Mechanism()
    ticks = StepScheduler(increment=increment_for_rate(BASELINE_RATE, mech.stroke_nl)).step_ticks(TICKS_PER_DAY)
    stored, _ = stored_volume_after_steps(0, 0, ticks, mech.stroke_nl, plant.open_tau_ticks)
    samples = pressure_samples_pa(plant, np.arange(BASELINE_SEEDS, dtype=np.int64), 0, ticks, stored)
    columns = [[int(v) for v in samples[:, j]] for j in range(BASELINE_SEEDS)]
    started = time.perf_counter()
    for column in columns:  # the oracle walks the samples one sensor interrupt at a time
        scan_per_step(settings, [], 0, column)
    return (time.perf_counter() - started) / (BASELINE_SEEDS * len(ticks))


def main() -> None:
    started = time.perf_counter()
    results = sweep(DEFAULT_RATES_NL_PER_DAY, SEEDS, DAYS)
    wall = time.perf_counter() - started
    samples = sum(r.steps_per_week for r in results) * SEEDS  # the clear-outlet week of every seed
    pump_years = len(results) * SEEDS * DAYS * TICKS_PER_DAY / TICKS_PER_YEAR
    per_sample = per_step_loop_seconds_per_sample()
    baseline = per_sample * samples
    for r in results:
        print(f"rate {r.rate_nl_per_day} nL/day: total occlusion found {r.total.detected}/{r.total.seeds}, "
              f"median {r.total.median_h * 60:.2f} min; false alarms {r.false_alarm_pumps}")
    report([
        ("occlusion_sweep_samples", samples, "samples"),
        ("occlusion_sweep_pump_years", pump_years, "pump-years"),
        ("per_step_loop_ns_per_sample", per_sample * 1e9, "ns"),
        ("occlusion_sweep_per_step_extrapolated", baseline, "s"),
        ("occlusion_sweep_wall", wall, "s"),
        ("occlusion_sweep_pump_years_per_s", pump_years / wall, "pump-years/s"),
        ("occlusion_sweep_speedup", baseline / wall, "x"),
    ])


if __name__ == "__main__":
    main()
