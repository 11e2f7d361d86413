"""The plant, the occlusion detector and its alarm (issue: what the pump feels)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model import (AcknowledgeAlarm, AlarmCode, Controller, LogCode, ProgramContinuous, Refill)
from firmware_model.occlusion import (SHORT_SPAN, DetectorSettings, DetectorState, Rule, scan, scan_one,
                                      scan_one_vectorised, scan_per_step)
from firmware_model.occlusion_sweep import OCCLUSION_START_DAY, _rate_part, sweep_rate
from firmware_model.plant import (Q30, Occlusion, Plant, PlantParams, decay_q30, noise_pa,
                                  pressure_samples_pa, stored_volume_after_steps)
from firmware_model.units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR

INTERMEDIATE_NL_PER_DAY = 1_000_000  # 1 mL/day: mid-range of 0.048-24 mL/day on a log scale


def running_pump(plant: Plant, rate_nl_per_day: int = INTERMEDIATE_NL_PER_DAY) -> Controller:
    pump = Controller(plant=plant)
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(ProgramContinuous(rate_nl_per_day), 0)
    return pump


def codes(events, *keep):
    return [e.code for e in events if e.code in keep]


# ---- the plant ------------------------------------------------------------------------------

def test_decay_factor_is_exact_integer_and_close_to_the_exponential() -> None:
    assert decay_q30(100, 0) == Q30  # total occlusion: nothing drains
    assert decay_q30(0, 1000) == Q30
    values = [decay_q30(dt, 65_536) for dt in (1, 10, 1000, 65_536, 200_000)]
    assert values == sorted(values, reverse=True)
    assert abs(decay_q30(65_536, 65_536) / Q30 - np.exp(-1)) < 1e-4
    assert decay_q30(65 * 65_536, 65_536) == 0


def test_volume_is_conserved_stroke_by_stroke() -> None:
    ticks = np.arange(1, 2001, dtype=np.int64) * 700
    for tau in (0, 65_536, 65_536 * 20):
        stored, outflow = stored_volume_after_steps(0, 0, ticks, 250, tau)
        assert int(stored[-1]) + outflow == 250 * len(ticks)
    stored, outflow = stored_volume_after_steps(0, 0, ticks, 250, 0)
    assert outflow == 0 and list(stored[:3]) == [250, 500, 750]


def test_released_bolus_equals_what_the_compliance_stored() -> None:
    start, end = TICKS_PER_DAY, TICKS_PER_DAY + TICKS_PER_HOUR
    plant = Plant(seed=1, occlusions=(Occlusion(start, end, factor=0),))
    pump = running_pump(plant)
    pump.advance(start + 10 * 60 * TICK_HZ)  # the alarm stops the pump within minutes
    held = plant.state.stored_nl
    assert held > 250 * 5
    events = pump.advance(end)
    released = [ev.args[0] for ev in events if ev.code == LogCode.OUTLET_RELEASE]
    # Nothing drains through a total occlusion, so what is released is exactly what was held.
    assert released == [held] and plant.state.releases == [(end, held)]
    # And nothing is lost: strokes pushed = reached the patient + still in the outlet.
    assert pump.state.delivered_nl == plant.state.outflow_nl + plant.state.stored_nl


def test_same_seed_same_pressure_trace_however_chunked() -> None:
    params = PlantParams()
    ticks = np.cumsum(np.full(3000, 21_600 * TICK_HZ // 1000, dtype=np.int64))
    stored, _ = stored_volume_after_steps(0, 0, ticks, 250, params.open_tau_ticks)
    seeds = np.array([7, 8], dtype=np.int64)
    whole = pressure_samples_pa(params, seeds, 0, ticks, stored)
    parts = np.concatenate([pressure_samples_pa(params, seeds, lo, ticks[lo:lo + 700], stored[lo:lo + 700])
                            for lo in range(0, 3000, 700)])
    assert np.array_equal(whole, parts)
    alone = pressure_samples_pa(params, np.array([8], dtype=np.int64), 0, ticks, stored)
    assert np.array_equal(alone[:, 0], whole[:, 1])  # a seed's trace ignores its neighbours
    assert not np.array_equal(whole[:, 0], whole[:, 1])
    noise = noise_pa(params, np.arange(200, dtype=np.int64), 0, 2000)
    assert abs(noise.std() - params.noise_pa) < 0.05 * params.noise_pa and abs(noise.mean()) < 2


def test_controller_pressure_trace_is_deterministic() -> None:
    traces = []
    for _ in range(2):
        plant = Plant(seed=42, occlusions=(Occlusion(TICKS_PER_DAY // 2, factor=20),))
        pump = running_pump(plant)
        pump.advance(TICKS_PER_DAY // 2)
        ticks = pump._stroke_ticks(TICKS_PER_DAY)
        traces.append(plant.strokes(ticks).samples_pa.tobytes())
    assert traces[0] == traces[1]


# ---- the detector ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.data())
def test_vectorised_scan_equals_the_per_step_oracle(data) -> None:
    s = DetectorSettings(threshold_pa=data.draw(st.sampled_from([None, 3_000])),
                         rise_pa=data.draw(st.sampled_from([None, 400])), rise_steps=data.draw(st.integers(1, 5)),
                         cusum_h_pa=data.draw(st.sampled_from([None, 300, 600])),
                         cusum_kappa_pa=data.draw(st.integers(0, 80)), cusum_clip_pa=data.draw(st.integers(50, 300)),
                         deficit_nl=data.draw(st.sampled_from([None, 500])), deficit_steps=data.draw(st.integers(1, 7)),
                         compliance_nl_per_kpa=2_000)
    pumps = data.draw(st.integers(1, 3))
    h = data.draw(st.integers(0, s.history_steps))
    n = data.draw(st.integers(0, 40))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    history = rng.integers(1000, 1500, size=(h, pumps))
    cusum = rng.integers(0, 200, size=pumps)
    samples = np.cumsum(rng.integers(-150, 200, size=(n, pumps)), axis=0) + 1200
    first, rule, hist, cus = scan(s, history, cusum, samples)
    for j in range(pumps):
        f, r, hh, cc = scan_per_step(s, [int(v) for v in history[:, j]], int(cusum[j]),
                                     [int(v) for v in samples[:, j]])
        assert (f, r) == (first[j], rule[j])
        if s.cusum_h_pa is not None:
            assert cc == cus[j]
        assert [int(v) for v in hist[:, j]] == hh[-len(hist):]


@given(st.data())
def test_scan_one_of_a_short_span_equals_the_vectorised_scan(data) -> None:
    """The controller scans short spans sample by sample: the same alarm, rule and state."""
    s = DetectorSettings(rise_steps=data.draw(st.integers(1, 6)), deficit_steps=data.draw(st.integers(1, 8)),
                         cusum_h_pa=data.draw(st.sampled_from([None, 300, 1000])),
                         threshold_pa=data.draw(st.sampled_from([None, 2_500])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    history = [int(v) for v in rng.integers(1000, 1500, size=data.draw(st.integers(0, s.history_steps)))]
    state = DetectorState(history, data.draw(st.integers(0, 900)) if s.cusum_h_pa else 0)
    samples = [int(v) for v in np.cumsum(rng.integers(-150, 250, size=data.draw(st.integers(0, SHORT_SPAN)))) + 1200]
    index, rule, after = scan_one(s, state, samples)
    v_index, v_rule, v_after = scan_one_vectorised(s, state, np.asarray(samples, dtype=np.int64))
    assert (index, rule) == (v_index, v_rule)
    assert after.history_pa == v_after.history_pa and after.cusum_pa == v_after.cusum_pa


def test_scan_one_keeps_the_state_at_the_alarm() -> None:
    s = DetectorSettings(threshold_pa=2_000, rise_pa=None, cusum_h_pa=None, deficit_nl=None)
    index, rule, state = scan_one(s, DetectorState(), [1_000, 1_500, 2_100, 900, 800])
    assert (index, rule) == (2, Rule.THRESHOLD)
    assert state.history_pa[-1] == 2_100


def test_total_occlusion_at_the_intermediate_rate_alarms_as_the_sweep_says() -> None:
    seeds = 24
    sweep = sweep_rate(INTERMEDIATE_NL_PER_DAY, seeds, days=2)
    per_seed = _rate_part(INTERMEDIATE_NL_PER_DAY, 0, seeds, 2, DetectorSettings(), PlantParams(),
                          Controller().mech).hours["total"]
    start = OCCLUSION_START_DAY * TICKS_PER_DAY
    for seed in (0, 5, 23):
        plant = Plant(seed=seed, occlusions=(Occlusion(start),))
        pump = running_pump(plant)
        events = pump.advance(2 * TICKS_PER_DAY)
        alarm = [ev for ev in events if ev.code == LogCode.ALARM_ON and ev.args[0] == AlarmCode.OCCLUSION]
        assert len(alarm) == 1
        hours = (alarm[0].tick - start) / TICKS_PER_HOUR
        assert hours <= sweep.total.max_h
        assert abs(hours - per_seed[seed]) < 1e-9  # the same plant, detector and seed: the same stroke
        status = pump.status()
        assert status.delivery_stopped and AlarmCode.OCCLUSION in status.alarms
        # A high-priority alarm (SR-16) that stays until acknowledged, and the released bolus
        # stays under the 0.5 mL ECRI recommends (domain.md §5, [V S89]).
        assert plant.state.stored_nl < 500_000


def test_no_occlusion_alarm_in_two_weeks_without_occlusion() -> None:
    for seed in (1, 2):
        pump = running_pump(Plant(seed=seed))
        events = pump.advance(14 * TICKS_PER_DAY)
        assert LogCode.OCCLUSION_DETECTED not in [ev.code for ev in events]
        assert not pump.status().delivery_stopped


def test_acknowledged_occlusion_resumes_and_realarms_while_it_persists() -> None:
    start = TICKS_PER_DAY // 4
    plant = Plant(seed=9, occlusions=(Occlusion(start, start + 3 * TICKS_PER_HOUR),))
    pump = running_pump(plant)
    pump.advance(start + TICKS_PER_HOUR)
    delivered = pump.state.delivered_nl
    pump.advance(start + 2 * TICKS_PER_HOUR)
    assert pump.state.delivered_nl == delivered  # stopped: nothing is pushed into the blockage
    pump.handle(AcknowledgeAlarm(AlarmCode.OCCLUSION), start + 2 * TICKS_PER_HOUR)
    events = pump.advance(start + 2 * TICKS_PER_HOUR + TICKS_PER_HOUR // 2)
    assert codes(events, LogCode.DELIVERY_RESUMED, LogCode.OCCLUSION_DETECTED) == [
        LogCode.DELIVERY_RESUMED, LogCode.OCCLUSION_DETECTED]
    pump.handle(AcknowledgeAlarm(AlarmCode.OCCLUSION), start + 4 * TICKS_PER_HOUR)  # cleared by now
    before = pump.state.delivered_nl
    events = pump.advance(start + 5 * TICKS_PER_HOUR)
    assert LogCode.OCCLUSION_DETECTED not in [ev.code for ev in events]
    # No catch-up of the missed hours: one hour at 1 mL/day is about 41.7 µL.
    assert abs((pump.state.delivered_nl - before) - 1_000_000 // 24) <= 250


def test_where_advance_stops_never_changes_the_outlet() -> None:
    """A bolus, an occlusion that starts and clears: one advance or many give the same bytes."""
    from firmware_model import ClinicianBolus, codec

    def pump() -> tuple[Controller, Plant]:
        plant = Plant(seed=11, occlusions=(Occlusion(45 * TICK_HZ, 200 * TICK_HZ, factor=20),))
        ctl = running_pump(plant, 480_000)
        ctl.handle(ClinicianBolus(20_000, 60 * TICK_HZ), 0)
        return ctl, plant

    (one, plant_one), (many, plant_many) = pump(), pump()
    one.advance(300 * TICK_HZ)
    for s in range(7, 301, 7):
        many.advance(s * TICK_HZ)
    many.advance(300 * TICK_HZ)
    assert codec.encode(one.state) == codec.encode(many.state)
    assert plant_one.state == plant_many.state
    assert one.snapshot() == many.snapshot()


@given(st.data())
def test_plain_integer_pressure_of_a_short_span_equals_the_vectorised_one(data) -> None:
    """One seed and a few strokes go through plain integers: the same samples, bit for bit."""
    from firmware_model.plant import SHORT_SPAN, noise_pa, posture_pa, pressure_samples_pa

    params = PlantParams(noise_pa=data.draw(st.sampled_from([0, 60, 500])),
                         posture_changes_per_day=data.draw(st.integers(0, 96)))
    seed = data.draw(st.integers(0, 2**63 - 1))
    first = data.draw(st.integers(0, 2**40))
    n = data.draw(st.integers(1, SHORT_SPAN))
    start = data.draw(st.integers(0, 400 * TICKS_PER_DAY))
    ticks = np.cumsum(np.asarray(data.draw(st.lists(st.integers(1, 10 * TICKS_PER_DAY), min_size=n, max_size=n)),
                                 dtype=np.int64)) + start
    stored = np.asarray(data.draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), dtype=np.int64)
    seeds = np.array([seed], dtype=np.int64)
    short = pressure_samples_pa(params, seeds, first, ticks, stored)
    vectorised = (noise_pa(params, seeds, first, n) + (params.icp_pa + params.pressure_of_volume_pa(stored))
                  .astype(np.int32)[:, None] + posture_pa(params, seeds, ticks).astype(np.int32))
    assert short.dtype == np.int32 and short.shape == (n, 1)
    assert short.tolist() == vectorised.tolist()
