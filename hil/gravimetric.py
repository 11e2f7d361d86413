"""The IEC 60601-2-24 gravimetric flow analysis: start-up curve, mean error and trumpet curve.

A balance weighs the delivered fluid every Δt (0.5 min in the standard) for T = 120 min (domain.md
§4.1). With W_i the i-th reading and d the density, the flow of interval i is
Q_i = (W_i − W_{i−1}) / (d·Δt). The start-up curve is Q_i over the whole run (the first hour, T1,
is where the pump settles); over the analysis period T2 (the second hour) the mean percentage
error is E = 100·(Q_mean − r)/r for the set rate r, and for each observation window P (2, 5, 11,
19, 31 min) the trumpet curve gives Ep(max) and Ep(min), the largest and smallest over window
positions j in T2 of (100/(P/Δt))·Σ_{i=j}^{j+P/Δt−1} (Q_i − r)/r.

This is the host's analysis of measured data, so floats are fine; everything here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from firmware_model.units import TICKS_PER_DAY, TICKS_PER_MINUTE

from .errors import GravimetricError

IEC_WINDOWS_MIN: tuple[float, ...] = (2, 5, 11, 19, 31)  # domain.md §4.1 [V S93]


@dataclass(frozen=True)
class StartupPoint:
    """One interval of the start-up curve: its end (min from the first reading) and its flow."""

    time_min: float
    flow_nl_per_day: float
    percent_of_rate: float


@dataclass(frozen=True)
class TrumpetPoint:
    """One observation window of the trumpet curve: P in minutes, P/Δt intervals, and the largest
    and smallest mean percentage error of any P-long window in T2."""

    window_min: float
    intervals: int
    max_error_percent: float
    min_error_percent: float


@dataclass(frozen=True)
class GravimetricResult:
    """The analysis of one gravimetric run; T2 is [analysis_start_tick, analysis_end_tick]."""

    rate_nl_per_day: float
    interval_ticks: int
    startup: tuple[StartupPoint, ...]
    analysis_start_tick: int
    analysis_end_tick: int
    analysis_intervals: int
    mean_flow_nl_per_day: float
    mean_error_percent: float
    trumpet: tuple[TrumpetPoint, ...]


def interval_flows_nl_per_day(ticks: np.ndarray, masses_ug: np.ndarray, density_ug_per_ul: float) -> np.ndarray:
    """Q_i of each interval between consecutive readings, in nL/day (µg / (µg/µL) = µL)."""
    volumes_nl = np.diff(masses_ug.astype(np.float64)) * 1000.0 / density_ug_per_ul
    return volumes_nl * TICKS_PER_DAY / np.diff(ticks).astype(np.float64)


def window_intervals(window_min: float, interval_ticks: int) -> int:
    """How many sampling intervals make the window P; GravimetricError unless a whole number >= 1."""
    try:
        exact = Fraction(window_min) * TICKS_PER_MINUTE / interval_ticks
    except (TypeError, ValueError) as exc:
        raise GravimetricError(f"window {window_min!r} min: expected a positive number of minutes") from exc
    if exact.denominator != 1 or exact < 1:
        raise GravimetricError(
            f"window {window_min} min is {float(exact):g} sampling intervals of {interval_ticks / TICKS_PER_MINUTE:g} "
            f"min; expected a whole number >= 1 of intervals")
    return int(exact)


def moving_mean(values: np.ndarray, length: int) -> np.ndarray:
    """The mean of every run of `length` consecutive values (a vectorised moving sum)."""
    sums = np.concatenate(([0.0], np.cumsum(values)))
    return (sums[length:] - sums[:-length]) / length


def _regular_interval(ticks: np.ndarray) -> int:
    """The sampling interval in ticks; GravimetricError unless every reading follows the one
    before by the same positive number of ticks."""
    if len(ticks) < 2:
        raise GravimetricError(f"{len(ticks)} balance readings: expected at least 2 at a regular interval")
    steps = np.diff(ticks)
    interval = int(steps[0])
    if interval <= 0:
        raise GravimetricError(f"balance readings at ticks {int(ticks[0])} then {int(ticks[1])}: expected increasing ticks")
    irregular = np.flatnonzero(steps != interval)
    if len(irregular):
        k = int(irregular[0])
        raise GravimetricError(
            f"balance readings {k} and {k + 1} (ticks {int(ticks[k])}, {int(ticks[k + 1])}) are {int(steps[k])} ticks "
            f"apart; expected {interval}, the interval between the first two (regular sampling)")
    return interval


def analyse(samples: Sequence[tuple[int, int]], rate_nl_per_day: float, density_ug_per_ul: float,
            analysis_start_tick: int, analysis_end_tick: int | None = None,
            windows_min: Sequence[float] = IEC_WINDOWS_MIN) -> GravimetricResult:
    """Start-up curve, mean error and trumpet curve of balance readings (tick, mass_ug) taken at a
    regular interval; T2 holds the intervals from analysis_start_tick to analysis_end_tick
    (default: the last reading). GravimetricError names whatever does not fit the method."""
    if not rate_nl_per_day > 0:
        raise GravimetricError(f"set rate {rate_nl_per_day!r} nL/day: expected > 0")
    if not density_ug_per_ul > 0:
        raise GravimetricError(f"density {density_ug_per_ul!r} µg/µL: expected > 0 (water: 998)")
    table = np.asarray(samples, dtype=np.int64).reshape(-1, 2) if len(samples) else np.empty((0, 2), np.int64)
    ticks, masses = table[:, 0], table[:, 1]
    interval = _regular_interval(ticks)
    end_tick = int(ticks[-1]) if analysis_end_tick is None else analysis_end_tick
    if not int(ticks[0]) <= analysis_start_tick < end_tick <= int(ticks[-1]):
        raise GravimetricError(
            f"analysis period T2 from tick {analysis_start_tick} to {end_tick}: expected "
            f"{int(ticks[0])} <= start < end <= {int(ticks[-1])} (within the readings)")
    flows = interval_flows_nl_per_day(ticks, masses, density_ug_per_ul)
    starts, ends = ticks[:-1], ticks[1:]
    in_t2 = (starts >= analysis_start_tick) & (ends <= end_tick)
    errors_t2 = (flows[in_t2] - rate_nl_per_day) / rate_nl_per_day  # (Q_i − r)/r over T2
    lengths = [window_intervals(p, interval) for p in windows_min]
    if not lengths or max(lengths) > len(errors_t2):
        raise GravimetricError(
            f"analysis period T2 holds {len(errors_t2)} intervals of {interval / TICKS_PER_MINUTE:g} min; expected at "
            f"least one window and at least as many intervals as the largest window ({max(lengths, default=0)})")
    trumpet = []
    for window, length in zip(windows_min, lengths):
        means = 100.0 * moving_mean(errors_t2, length)
        trumpet.append(TrumpetPoint(float(window), length, float(means.max()), float(means.min())))
    mean_flow = float(flows[in_t2].mean())
    startup = tuple(StartupPoint(float((end - ticks[0]) / TICKS_PER_MINUTE), float(q), float(100.0 * q / rate_nl_per_day))
                    for end, q in zip(ends, flows))
    return GravimetricResult(
        rate_nl_per_day=float(rate_nl_per_day), interval_ticks=interval, startup=startup,
        analysis_start_tick=analysis_start_tick, analysis_end_tick=end_tick, analysis_intervals=len(errors_t2),
        mean_flow_nl_per_day=mean_flow, mean_error_percent=100.0 * (mean_flow - rate_nl_per_day) / rate_nl_per_day,
        trumpet=tuple(trumpet))
