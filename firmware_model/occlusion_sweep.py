"""How fast the occlusion detector alarms, and how often it alarms for nothing, rate by rate.

For each rate, a thousand pumps (seeds) run one simulated week each, with posture changes and
sensor noise: without an occlusion (false alarms per pump-year), and with a partial and a total
occlusion from day 1 (time from the occlusion to the alarm, and the volume the outlet holds,
which a clearing would release as a bolus). The stored-volume trace of a rate and a scenario is
the same for every seed (the plant is deterministic; seeds differ in noise and posture), so it is
computed once; the detector runs vectorised over steps and seeds, in chunks.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .calibration import Mechanism
from .occlusion import DetectorSettings, scan
from .plant import PlantParams, pressure_samples_pa, stored_volume_after_steps
from .step_scheduler import StepScheduler, increment_for_rate
from .units import NL_PER_ML, TICKS_PER_DAY, TICKS_PER_YEAR

DEFAULT_RATES_NL_PER_DAY = (48_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000, 24_000_000)
PARTIAL_FACTOR = 20
OCCLUSION_START_DAY = 1
CHUNK_STEPS = 256


@dataclass(frozen=True)
class Latency:
    """Time from the occlusion to the alarm over the seeds (hours), and what stayed undetected."""

    detected: int
    seeds: int
    median_h: float | None
    p95_h: float | None
    max_h: float | None
    median_stored_nl: int | None  # held back in the outlet at the alarm: released if it clears


@dataclass(frozen=True)
class RateResult:
    rate_nl_per_day: int
    steps_per_week: int
    false_alarm_pumps: int
    pump_years: float
    total: Latency
    partial: Latency

    @property
    def false_alarms_per_pump_year(self) -> float:
        return self.false_alarm_pumps / self.pump_years


def _step_ticks(rate_nl_per_day: int, mech: Mechanism, days: int) -> np.ndarray:
    sched = StepScheduler(increment=increment_for_rate(rate_nl_per_day, mech.stroke_nl))
    return sched.step_ticks(days * TICKS_PER_DAY)


def _stored(step_ticks: np.ndarray, stroke_nl: int, plant: PlantParams, clear: np.ndarray, start_tick: int,
            factor: int) -> np.ndarray:
    """Stored volume after each step: the clear outlet's trace until `start_tick`, then occluded
    (factor 0: total)."""
    cut = int(np.searchsorted(step_ticks, start_tick, side="right"))
    last_v = int(clear[cut - 1]) if cut else 0
    last_t = int(step_ticks[cut - 1]) if cut else 0
    tau = 0 if factor == 0 else plant.open_tau_ticks * factor
    after, _ = stored_volume_after_steps(last_v, last_t, step_ticks[cut:], stroke_nl, tau)
    return np.concatenate([clear[:cut], after])


def _scan_range(settings: DetectorSettings, plant: PlantParams, seeds: np.ndarray, step_ticks: np.ndarray,
                stored: np.ndarray, lo: int, hi: int, history: np.ndarray, cusum: np.ndarray,
                until_all: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each seed's first alarm among steps [lo, hi) (-1: none), and the detector state after
    them; with until_all, it stops once every seed has alarmed."""
    first = np.full(len(seeds), -1, dtype=np.int64)
    for start in range(lo, hi, CHUNK_STEPS):
        end = min(hi, start + CHUNK_STEPS)
        samples = pressure_samples_pa(plant, seeds, start, step_ticks[start:end], stored[start:end])
        idx, _, history, cusum = scan(settings, history, cusum, samples)
        new = (first < 0) & (idx >= 0)
        first[new] = idx[new] + start
        if until_all and (first >= 0).all():
            break
    return first, history, cusum


@dataclass(frozen=True)
class _Part:
    """Raw figures of one rate over a range of seeds (parts of a rate are joined by _join)."""

    steps: int
    false_alarm: np.ndarray      # bool per seed
    hours: dict[str, np.ndarray]   # per scenario, hours from occlusion to alarm (nan: none)
    stored_nl: dict[str, np.ndarray]  # per scenario, volume held in the outlet at the alarm


def _rate_part(rate_nl_per_day: int, seed_lo: int, seed_hi: int, days: int, settings: DetectorSettings,
               plant: PlantParams, mech: Mechanism) -> _Part:
    ticks = _step_ticks(rate_nl_per_day, mech, days)
    seed_ids = np.arange(seed_lo, seed_hi, dtype=np.int64)
    start_tick = OCCLUSION_START_DAY * TICKS_PER_DAY
    start_step = int(np.searchsorted(ticks, start_tick, side="right"))
    pumps = len(seed_ids)
    empty, zero = np.empty((0, pumps), dtype=np.int32), np.zeros(pumps, dtype=np.int32)
    clear, _ = stored_volume_after_steps(0, 0, ticks, mech.stroke_nl, plant.open_tau_ticks)
    # The day before the occlusion is the same for all three runs: scan it once, keep the state.
    before, history, cusum = _scan_range(settings, plant, seed_ids, ticks, clear, 0, start_step, empty, zero, False)
    after, _, _ = _scan_range(settings, plant, seed_ids, ticks, clear, start_step, len(ticks), history, cusum, False)
    hours, stored_at = {}, {}
    for name, factor in (("total", 0), ("partial", PARTIAL_FACTOR)):
        stored = _stored(ticks, mech.stroke_nl, plant, clear, start_tick, factor)
        first, _, _ = _scan_range(settings, plant, seed_ids, ticks, stored, start_step, len(ticks),
                                  history, cusum, True)
        hit = first >= 0
        hours[name] = np.where(hit, (ticks[first] - start_tick) / (TICKS_PER_DAY / 24), np.nan)
        stored_at[name] = np.where(hit, stored[first], -1)
    return _Part(len(ticks), (before >= 0) | (after >= 0), hours, stored_at)


def _join(rate_nl_per_day: int, parts: list[_Part], days: int) -> RateResult:
    false_alarm = np.concatenate([p.false_alarm for p in parts])
    seeds = len(false_alarm)
    latencies = {}
    for name in ("total", "partial"):
        hours = np.concatenate([p.hours[name] for p in parts])
        stored = np.concatenate([p.stored_nl[name] for p in parts])
        hit = ~np.isnan(hours)
        if not hit.any():
            latencies[name] = Latency(0, seeds, None, None, None, None)
            continue
        h = hours[hit]
        latencies[name] = Latency(int(hit.sum()), seeds, float(np.median(h)), float(np.percentile(h, 95)),
                                  float(h.max()), int(np.median(stored[hit])))
    return RateResult(rate_nl_per_day, parts[0].steps, int(false_alarm.sum()),
                      seeds * days * TICKS_PER_DAY / TICKS_PER_YEAR, latencies["total"], latencies["partial"])


def sweep_rate(rate_nl_per_day: int, seeds: int, days: int = 7, settings: DetectorSettings | None = None,
               plant: PlantParams | None = None, mech: Mechanism | None = None) -> RateResult:
    """One rate: false alarms without occlusion, latency of a total and a partial occlusion."""
    part = _rate_part(rate_nl_per_day, 0, seeds, days, settings or DetectorSettings(), plant or PlantParams(),
                      mech or Mechanism())
    return _join(rate_nl_per_day, [part], days)


def sweep(rates_nl_per_day: tuple[int, ...] = DEFAULT_RATES_NL_PER_DAY, seeds: int = 1000, days: int = 7,
          settings: DetectorSettings | None = None, plant: PlantParams | None = None,
          workers: int | None = None) -> list[RateResult]:
    """Every rate of the sweep, each rate's seeds split over `workers` processes (default: one
    per core). A seed's figures depend only on the seed, so the split changes no figure."""
    settings, plant, mech = settings or DetectorSettings(), plant or PlantParams(), Mechanism()
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return [sweep_rate(r, seeds, days, settings, plant) for r in rates_nl_per_day]
    bounds = [(seeds * i // workers, seeds * (i + 1) // workers) for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {r: [pool.submit(_rate_part, r, lo, hi, days, settings, plant, mech) for lo, hi in bounds]
                   for r in sorted(rates_nl_per_day, reverse=True)}
        return [_join(r, [f.result() for f in futures[r]], days) for r in rates_nl_per_day]


def ml_per_day(rate_nl_per_day: int) -> float:
    return rate_nl_per_day / NL_PER_ML
