"""The IEC 60601-2-24 gravimetric analysis (domain.md §4.1): start-up curve, E, trumpet curve."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model import Controller, ProgramContinuous, Refill
from firmware_model.plant import Plant
from firmware_model.units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_MINUTE
from hil.balance import BalanceReader, BalanceServer, BalanceSpec
from hil.errors import GravimetricError, HilError
from hil.gravimetric import IEC_WINDOWS_MIN, analyse

DT_TICKS = 30 * TICK_HZ                 # Δt = 0.5 min
RUN_TICKS = 120 * TICKS_PER_MINUTE      # T = 120 min
T2_START = 60 * TICKS_PER_MINUTE        # T2: the second hour
WATER_UG_PER_UL = 998


def trumpet_by_definition(samples: list[tuple[int, int]], rate_nl_per_day: float, density_ug_per_ul: float,
                          start_tick: int, windows_min) -> tuple[float, list[tuple[float, float]]]:
    """E and [(Ep(max), Ep(min)) per window], straight from the definition with plain loops."""
    flows = []
    for (t0, m0), (t1, m1) in zip(samples, samples[1:]):
        if t0 >= start_tick:
            volume_nl = (m1 - m0) * 1000 / density_ug_per_ul
            flows.append(volume_nl / ((t1 - t0) / TICKS_PER_DAY))
    q_mean = sum(flows) / len(flows)
    dt_min = (samples[1][0] - samples[0][0]) / TICKS_PER_MINUTE
    curve = []
    for p in windows_min:
        n = round(p / dt_min)
        errors = []
        for j in range(len(flows) - n + 1):
            total = 0.0
            for i in range(j, j + n):
                total += (flows[i] - rate_nl_per_day) / rate_nl_per_day
            errors.append(100 / n * total)
        curve.append((max(errors), min(errors)))
    return 100 * (q_mean - rate_nl_per_day) / rate_nl_per_day, curve


def running_pump(rate_nl_per_day: int) -> tuple[Controller, Plant]:
    plant = Plant(seed=4)
    pump = Controller(plant=plant)
    pump.handle(Refill(0, 20_000_000, "morphine", 1_000), 0)
    pump.handle(ProgramContinuous(rate_nl_per_day), 0)
    return pump, plant


def pump_samples(rate_nl_per_day: int) -> list[tuple[int, int]]:
    """What a perfect balance under the catheter of the reference pump reads every 30 s for 2 h:
    250 nL strokes at a steady rate, through the outlet's compliance."""
    pump, plant = running_pump(rate_nl_per_day)
    samples = []
    for tick in range(0, RUN_TICKS + 1, DT_TICKS):
        pump.advance(tick)
        samples.append((tick, plant.outflow_nl_at(tick) * WATER_UG_PER_UL // 1000))
    return samples


def assert_matches_definition(samples, rate, density, start_tick, windows) -> None:
    result = analyse(samples, rate, density, start_tick, windows_min=windows)
    e, curve = trumpet_by_definition(samples, rate, density, start_tick, windows)
    scale = max([1.0] + [abs(v) for pair in curve for v in pair])
    assert result.mean_error_percent == pytest.approx(e, rel=1e-9, abs=1e-9 * scale)
    got = [v for p in result.trumpet for v in (p.max_error_percent, p.min_error_percent)]
    assert got == pytest.approx([v for pair in curve for v in pair], rel=1e-9, abs=1e-9 * scale)


# ---- (a) the trumpet curve equals the definition --------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(data=st.data(), interval_s=st.sampled_from([15, 30, 60]), rate=st.integers(1_000, 24_000_000),
       density=st.sampled_from([998, 1000, 1_050]))
def test_trumpet_equals_the_definition_on_random_series(data, interval_s: int, rate: int, density: int) -> None:
    increments = data.draw(st.lists(st.integers(-500, 200_000), min_size=3, max_size=150))
    masses = [0]
    for inc in increments:
        masses.append(masses[-1] + inc)
    samples = [(1_000 + k * interval_s * TICK_HZ, m) for k, m in enumerate(masses)]
    first_t2 = data.draw(st.integers(0, len(increments) - 1))
    in_t2 = len(increments) - first_t2
    lengths = data.draw(st.lists(st.integers(1, in_t2), min_size=1, max_size=5))
    windows = [n * interval_s / 60 for n in lengths]
    assert_matches_definition(samples, rate, density, samples[first_t2][0], windows)


@pytest.mark.parametrize("rate_nl_per_day", [500_000, 1_000_000, 3_000_000])
def test_trumpet_equals_the_definition_on_a_pulsatile_pump(rate_nl_per_day: int) -> None:
    samples = pump_samples(rate_nl_per_day)
    assert_matches_definition(samples, rate_nl_per_day, WATER_UG_PER_UL, T2_START, IEC_WINDOWS_MIN)
    result = analyse(samples, rate_nl_per_day, WATER_UG_PER_UL, T2_START)
    two, thirty_one = result.trumpet[0], result.trumpet[-1]
    assert (two.window_min, two.intervals, thirty_one.window_min, thirty_one.intervals) == (2, 4, 31, 62)
    # Strokes are discrete: short windows see them, long ones average them out (the trumpet).
    assert two.max_error_percent > thirty_one.max_error_percent > 0 > thirty_one.min_error_percent > two.min_error_percent
    assert abs(result.mean_error_percent) < 1.5  # a stroke of 250 nL in an hour's ~40 µL, plus quantisation
    assert result.analysis_intervals == 120 and len(result.startup) == 240
    assert result.startup[0].time_min == 0.5 and result.startup[-1].time_min == 120


# ---- (b), (c) known flows --------------------------------------------------------------------------

def steady_samples(ug_per_interval: int, count: int = 241) -> list[tuple[int, int]]:
    return [(k * DT_TICKS, k * ug_per_interval) for k in range(count)]


RATE_1000_NL_PER_INTERVAL = 1_000 * TICKS_PER_DAY // DT_TICKS  # 2.88 mL/day: 1000 nL every 30 s


def test_perfect_constant_flow_has_no_error_at_all() -> None:
    result = analyse(steady_samples(1_000), RATE_1000_NL_PER_INTERVAL, 1_000, T2_START)
    assert result.mean_error_percent == 0 and result.mean_flow_nl_per_day == RATE_1000_NL_PER_INTERVAL
    assert all(p.max_error_percent == 0 == p.min_error_percent for p in result.trumpet)
    assert [p.window_min for p in result.trumpet] == [2, 5, 11, 19, 31]
    assert all(s.percent_of_rate == 100 for s in result.startup)


def test_ten_percent_over_delivery_is_an_error_of_ten_percent() -> None:
    result = analyse(steady_samples(1_100), RATE_1000_NL_PER_INTERVAL, 1_000, T2_START)
    assert result.mean_error_percent == pytest.approx(10, abs=1e-9)
    assert all(p.max_error_percent == pytest.approx(10) == p.min_error_percent for p in result.trumpet)
    # The same with water's density and integer balance readings: E within the readings' rounding.
    masses = [(k * DT_TICKS, k * 1_100 * WATER_UG_PER_UL // 1000) for k in range(241)]
    assert analyse(masses, RATE_1000_NL_PER_INTERVAL, WATER_UG_PER_UL, T2_START).mean_error_percent == \
        pytest.approx(10, abs=0.01)


def test_start_up_curve_shows_a_pump_that_settles() -> None:
    # No flow for the first 10 minutes, then the set rate: the start-up curve shows 0 %, then 100 %.
    samples = [(k * DT_TICKS, max(0, k - 20) * 1_000) for k in range(241)]
    result = analyse(samples, RATE_1000_NL_PER_INTERVAL, 1_000, T2_START)
    percents = [s.percent_of_rate for s in result.startup]
    assert percents[:20] == [0] * 20 and percents[20:] == [100] * 220
    assert result.mean_error_percent == 0


def test_analysis_end_tick_limits_t2() -> None:
    samples = [(k * DT_TICKS, k * (1_000 if k <= 200 else 2_000)) for k in range(241)]
    ended = analyse(samples, RATE_1000_NL_PER_INTERVAL, 1_000, T2_START, analysis_end_tick=200 * DT_TICKS)
    assert ended.analysis_intervals == 80 and ended.mean_error_percent == 0
    assert analyse(samples, RATE_1000_NL_PER_INTERVAL, 1_000, T2_START).mean_error_percent > 0


# ---- end to end: the reference pump, the emulated balance, pyvisa, the analysis ------------------

def test_a_gravimetric_run_through_the_emulated_balance() -> None:
    rate = 1_000_000
    pump, plant = running_pump(rate)
    now = [0]
    with BalanceServer(lambda: plant.outflow_nl_at(now[0]), BalanceSpec(seed=2)) as balance, \
            BalanceReader(balance.resource) as reader:
        reader.tare()
        samples = []
        for tick in range(0, RUN_TICKS + 1, DT_TICKS):
            pump.advance(tick)
            now[0] = tick
            samples.append((tick, reader.mass_ug()))
    result = analyse(samples, rate, WATER_UG_PER_UL, T2_START)
    assert abs(result.mean_error_percent) < 2  # balance noise (15 µg) on ~40 mg in the hour, and strokes
    assert_matches_definition(samples, rate, WATER_UG_PER_UL, T2_START, IEC_WINDOWS_MIN)


# ---- (d) inputs the method cannot take ------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (dict(samples=[(k * DT_TICKS + (1 if k == 50 else 0), k) for k in range(241)]), "ticks apart"),
    (dict(samples=[(0, 0)]), "at least 2"),
    (dict(samples=[(k * -DT_TICKS, k) for k in range(241)]), "increasing"),
    (dict(windows_min=(2, 5.25)), "5.25 min is 10.5 sampling intervals"),
    (dict(windows_min=(0,)), "whole number >= 1"),
    (dict(windows_min=()), "at least one window"),
    (dict(analysis_start_tick=105 * TICKS_PER_MINUTE), "largest window (62)"),
    (dict(analysis_start_tick=RUN_TICKS), "within the readings"),
    (dict(analysis_end_tick=RUN_TICKS + 1), "within the readings"),
    (dict(rate_nl_per_day=0), "set rate"),
    (dict(density_ug_per_ul=-1), "density"),
])
def test_unfit_inputs_are_refused_saying_what_was_expected(change: dict, words: str) -> None:
    args = dict(samples=steady_samples(1_000), rate_nl_per_day=RATE_1000_NL_PER_INTERVAL, density_ug_per_ul=1_000,
                analysis_start_tick=T2_START)
    args.update(change)
    with pytest.raises(GravimetricError, match="expected") as caught:
        analyse(**args)
    assert words in str(caught.value)
    assert isinstance(caught.value, HilError)
