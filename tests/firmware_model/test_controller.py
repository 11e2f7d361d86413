"""The controller's behaviour, example by example: delivery, flex, boluses, alarms, refill, bridge,
priming, battery, refusals, determinism, snapshots and the rebuild after a reset."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model import codec
from firmware_model.alarms import CATALOGUE, AlarmCode, AlarmSettings, Priority
from firmware_model.battery import BatterySpec
from firmware_model.commands import (Accepted, AcknowledgeAlarm, BolusDenied, BolusGranted, BolusKind,
                                     ClinicianBolus, ConfigurePatientBolus, DenyReason, GetStatus, Mode,
                                     PatientBolusRequest, PrimingBolus, ProgramContinuous, ProgramFlex,
                                     ProgramMinimumRate, ProgramStopped, Refill, SetClock,
                                     SetLowReservoirAlarm, StatusReport)
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import LimitExceeded, ModelError, NotAllowedNow, StateError
from firmware_model.event_log import EventLog, LogCode
from firmware_model.step_scheduler import (PHASE_ONE, effective_rate_nl_per_day, increment_for_rate,
                                           schedule_step_ticks)
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

D, H, M = TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE
STROKE = 250
PATH_NL = 370_000          # pump tubing + catheter of the default mechanism
FULL = 20_000_000


def pump(config: PumpConfig | None = None, *, drug: str = "morphine", conc: int = 10_000, fill: int = FULL,
         rate: int | None = None, prime: bool = False) -> Controller:
    """A pump filled at tick 0, optionally primed and running a continuous rate."""
    ctl = Controller(config)
    ctl.handle(Refill(0, fill, drug, conc), 0)
    if prime:
        ctl.handle(PrimingBolus(PATH_NL, 10 * M), 0)
        ctl.advance(H)
    if rate is not None:
        ctl.handle(ProgramContinuous(rate), ctl.state.tick)
    return ctl


def records(ctl: Controller, *codes: LogCode, since: int = 0):
    return [r for r in ctl.log.records() if r.code in codes and r.tick >= since]


def tones(events) -> list[tuple[int, AlarmCode, Priority]]:
    out = []
    for e in events:
        if e.code == LogCode.ALARM_TONE:
            code, priority, _ = e.args
            out.append((e.tick, AlarmCode(code), Priority(priority)))
    return out


def state_bytes(ctl: Controller) -> bytes:
    return codec.encode(dataclasses.replace(ctl.state, records_since_checkpoint=0))


# ---- continuous delivery ----------------------------------------------------------------------

@pytest.mark.parametrize("rate", [48_000, 250_000, 1_000_000, 3_333_333])
def test_continuous_delivery_follows_the_effective_rate(rate: int) -> None:
    ctl = pump(conc=1_000, rate=rate)
    days = min(30, 17_000_000 // rate)
    ctl.advance(days * D)
    s = ctl.status()
    increment = increment_for_rate(rate, STROKE)
    expected_steps = (days * D * increment) >> 32   # the program starts at tick 0 with phase 0
    assert s.steps == expected_steps
    assert s.delivered_nl == expected_steps * STROKE
    assert s.reservoir_nl == FULL - s.delivered_nl
    effective = effective_rate_nl_per_day(increment, STROKE)
    assert abs(s.delivered_nl - effective * days) < STROKE       # within one step of the effective rate
    assert s.programmed_rate_nl_per_day == rate
    assert s.effective_rate_nl_per_day == round(effective)
    assert abs(effective - rate) <= Fraction(STROKE * D, 2 * PHASE_ONE)
    # The path was not primed: the first 370 µL out of the tip carry no drug.
    assert s.dose_at_tip_ng == max(0, s.delivered_nl - PATH_NL) * 1_000 // 1_000
    assert s.mode == Mode.CONTINUOUS and not s.delivery_stopped and s.alarms == ()


def test_status_command_answers_and_changes_nothing() -> None:
    ctl = pump(rate=500_000)
    ctl.advance(3 * D)
    before = ctl.snapshot()
    (report,) = ctl.handle(GetStatus(), 3 * D)
    assert isinstance(report, StatusReport) and report == ctl.status()
    assert ctl.snapshot() == before


# ---- flex -------------------------------------------------------------------------------------

FLEX = ((0, 100_000), (6 * H, 400_000), (18 * H, 0), (22 * H, 200_000))


def flex_changes(table, offset: int, start: int, end: int) -> list[tuple[int, int]]:
    """(tick, increment) at `start` and at every boundary of the daily table up to `end`."""
    def rate_at(tick: int) -> int:
        tod = (tick + offset) % D
        return [r for s, r in table if s <= tod][-1]
    changes = [(start, rate_at(start))]
    day0 = (start + offset) // D
    for day in range(day0, (end + offset) // D + 1):
        for s, r in table:
            t = day * D + s - offset
            if start < t <= end:
                changes.append((t, r))
    changes.sort()
    return [(t, increment_for_rate(r, STROKE)) for t, r in changes]


def test_flex_rate_changes_at_the_table_boundaries() -> None:
    ctl = pump()
    ctl.handle(ProgramFlex(FLEX), 0)
    for day in range(3):
        for start, rate in FLEX:
            b = day * D + start
            if b:
                ctl.advance(b - 1)
                assert ctl.status().programmed_rate_nl_per_day != rate
            ctl.advance(b)
            s = ctl.status()
            assert s.programmed_rate_nl_per_day == rate
            assert ctl.state.basal.increment == increment_for_rate(rate, STROKE)
    end = 3 * D
    ctl.advance(end)
    expected = schedule_step_ticks(0, 0, flex_changes(FLEX, 0, 0, end), end)
    assert ctl.status().steps == len(expected)
    # Per day: 6 h at 0.1 + 12 h at 0.4 + 4 h at 0 + 2 h at 0.2 mL/day = 0.241667 mL, within a step.
    assert abs(ctl.status().delivered_nl - 3 * 241_667) <= 3 * STROKE


def test_flex_follows_the_clock_after_set_clock() -> None:
    ctl = pump()
    ctl.handle(ProgramFlex(FLEX), 0)
    t0 = 2 * D + 3 * H                     # the pump thinks it is 03:00
    ctl.advance(t0)
    assert ctl.status().programmed_rate_nl_per_day == 100_000
    steps0, phase0 = ctl.status().steps, ctl.state.basal.phase
    ctl.handle(SetClock(17 * H + 30 * M), t0)   # now it is 17:30
    assert ctl.status().programmed_rate_nl_per_day == 400_000
    assert records(ctl, LogCode.CLOCK_SET)[-1].args[1] == (17 * H + 30 * M - t0) % D // 32_768
    offset = (17 * H + 30 * M - t0) % D
    ctl.advance(t0 + 30 * M - 1)
    assert ctl.status().programmed_rate_nl_per_day == 400_000
    ctl.advance(t0 + 30 * M)                     # 18:00 on the pump's clock
    assert ctl.status().programmed_rate_nl_per_day == 0 and ctl.state.basal.increment == 0
    ctl.advance(t0 + 4 * H + 30 * M)             # 22:00
    assert ctl.status().programmed_rate_nl_per_day == 200_000
    ctl.advance(t0 + 6 * H + 30 * M)             # midnight
    assert ctl.status().programmed_rate_nl_per_day == 100_000
    end = t0 + 3 * D + 5 * H
    ctl.advance(end)
    expected = schedule_step_ticks(t0, phase0, flex_changes(FLEX, offset, t0, end), end)
    assert ctl.status().steps - steps0 == len(expected)


# ---- patient boluses ---------------------------------------------------------------------------

def _request(ctl: Controller, tick: int):
    (resp,) = ctl.handle(PatientBolusRequest(), tick)
    return resp


def test_patient_bolus_lockout_and_daily_count() -> None:
    ctl = pump(rate=250_000)
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, 3 * H, 3), 0)
    assert _request(ctl, H) == BolusGranted(BolusKind.PATIENT, 40, 10_000)
    denied = _request(ctl, 4 * H - 1)
    assert isinstance(denied, BolusDenied) and denied.reason == DenyReason.LOCKOUT
    assert str(4 * H) in denied.detail
    assert isinstance(_request(ctl, 4 * H), BolusGranted)          # the lockout is exactly 3 h
    assert isinstance(_request(ctl, 7 * H), BolusGranted)
    denied = _request(ctl, 10 * H)
    assert denied.reason == DenyReason.DAILY_COUNT and "3 of 3" in denied.detail
    denied = _request(ctl, D + H)                                   # the 01:00 grant is exactly 24 h old
    assert isinstance(denied, BolusGranted), "a grant leaves the rolling window after 24 h"
    assert _request(ctl, D + 2 * H).reason == DenyReason.LOCKOUT
    assert ctl.state.boluses_granted == 4 and ctl.state.boluses_denied == 3
    reasons = [r.args[0] for r in records(ctl, LogCode.PATIENT_BOLUS_DENIED)]
    assert reasons == [DenyReason.LOCKOUT, DenyReason.DAILY_COUNT, DenyReason.LOCKOUT]
    granted = records(ctl, LogCode.PATIENT_BOLUS_GRANTED)
    assert [(r.args[0], r.args[1]) for r in granted] == [(40, 1), (40, 2), (40, 3), (40, 3)]


def test_patient_bolus_daily_dose_counts_basal_and_every_bolus() -> None:
    """SR-2: basal 10 mg/day + a 4 mg clinician bolus + 1 mg patient boluses, limit 15 mg/day."""
    ctl = pump(conc=20_000, rate=500_000)                       # 10 mg/day
    responses = ctl.handle(ClinicianBolus(200_000, H), 0)       # 4 mg
    assert responses[1] == BolusGranted(BolusKind.CLINICIAN, 800, 200_000)
    ctl.handle(ConfigurePatientBolus(50_000, 10 * M, H, 5), 2 * H)   # 1 mg, 10 + 5 x 1 = 15 mg: allowed
    assert isinstance(_request(ctl, 2 * H), BolusGranted)       # 10 + 4 + 1 = 15 mg
    denied = _request(ctl, 4 * H)                               # 10 + 4 + 1 + 1 = 16 mg
    assert denied.reason == DenyReason.DAILY_DOSE and "hard limit" in denied.detail
    assert _request(ctl, D - 1).reason == DenyReason.DAILY_DOSE
    assert isinstance(_request(ctl, D), BolusGranted)           # the clinician bolus is 24 h old: out


def test_patient_bolus_other_denials() -> None:
    ctl = pump(rate=250_000)
    assert _request(ctl, 0).reason == DenyReason.NOT_CONFIGURED
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 4), 0)
    ctl.handle(ProgramStopped(), 0)
    assert _request(ctl, M).reason == DenyReason.THERAPY_STOPPED
    ctl.handle(ProgramContinuous(250_000), M)
    ctl.handle(PrimingBolus(PATH_NL, H), M)
    denied = _request(ctl, 2 * M)
    assert denied.reason == DenyReason.BOLUS_IN_PROGRESS and "priming" in denied.detail
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 0), 2 * M)   # max 0: off
    assert ctl.state.patient is None
    assert _request(ctl, 3 * M).reason == DenyReason.NOT_CONFIGURED


# ---- SR-6 and SR-7 -----------------------------------------------------------------------------

def test_sr6_clinician_bolus_is_suspended_by_a_patient_bolus_and_resumed() -> None:
    ctl = pump(rate=250_000)
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 4), 0)
    ctl.handle(ClinicianBolus(100_000, 2 * H), H)                  # 400 steps over 2 h
    ctl.advance(H + 30 * M)
    done_before = ctl.state.active_bolus.steps_done
    assert 0 < done_before < 400
    assert isinstance(_request(ctl, H + 30 * M), BolusGranted)
    s = ctl.state
    assert s.active_bolus.kind == BolusKind.PATIENT
    assert s.suspended_bolus.kind == BolusKind.CLINICIAN and s.suspended_bolus.steps_done == done_before
    assert ctl.status().bolus_active == BolusKind.PATIENT
    inc_patient, inc_clinician = s.active_bolus.increment, s.suspended_bolus.increment
    assert inc_patient == -(-40 * PHASE_ONE // (10 * M))
    ctl.advance(6 * H)
    # Every bolus runs from phase 0: the patient bolus ends 40 steps after it started, the
    # clinician bolus resumes then and ends its remaining steps later, to the tick.
    patient_end = H + 30 * M + -(-40 * PHASE_ONE // inc_patient)
    clinician_end = patient_end + -(-(400 - done_before) * PHASE_ONE // inc_clinician)
    assert [r.tick for r in records(ctl, LogCode.BOLUS_COMPLETED)] == [patient_end, clinician_end]
    started = [(r.args[0], r.args[1]) for r in records(ctl, LogCode.BOLUS_STARTED)]
    assert started == [(BolusKind.CLINICIAN, 400), (BolusKind.PATIENT, 40), (BolusKind.CLINICIAN, 400 - done_before)]
    completed = [(r.args[0], r.args[1]) for r in records(ctl, LogCode.BOLUS_COMPLETED)]
    assert completed == [(BolusKind.PATIENT, 40), (BolusKind.CLINICIAN, 400)]
    patient_done = records(ctl, LogCode.BOLUS_COMPLETED)[0].tick
    assert records(ctl, LogCode.BOLUS_STARTED)[2].tick == patient_done   # resumed at once
    assert ctl.state.bolus.steps == 440 and ctl.state.active_bolus is None
    assert ctl.state.suspended_bolus is None


def test_sr6_suspended_clinician_bolus_is_discarded_when_the_patient_bolus_is_halted() -> None:
    ctl = pump(rate=250_000)
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 4), 0)
    ctl.handle(ClinicianBolus(100_000, 2 * H), 0)
    assert isinstance(_request(ctl, 30 * M), BolusGranted)
    ctl.handle(ProgramStopped(), 35 * M)                            # SR-20: stop halts every bolus
    halted = records(ctl, LogCode.BOLUS_HALTED)
    assert [r.args[0] for r in halted] == [BolusKind.PATIENT, BolusKind.CLINICIAN]
    assert ctl.state.active_bolus is None and ctl.state.suspended_bolus is None
    steps = ctl.state.bolus.steps
    ctl.handle(ProgramContinuous(250_000), 40 * M)
    ctl.advance(5 * H)
    assert ctl.state.bolus.steps == steps and not records(ctl, LogCode.BOLUS_COMPLETED)


def test_sr7_basal_plus_bolus_is_capped_at_the_maximum_rate() -> None:
    ctl = pump(conc=100, rate=20_000_000)
    max_increment = increment_for_rate(24_000_000, STROKE)
    basal_increment = increment_for_rate(20_000_000, STROKE)
    ctl.handle(ClinicianBolus(1_000_000, M), H)                     # 1 mL in a minute: far too fast
    assert ctl.state.basal.increment == basal_increment
    assert ctl.state.basal.increment + ctl.state.bolus.increment == max_increment
    cap = max_increment - basal_increment
    # The bolus stretches: 4000 steps at the leftover increment, starting from phase 0.
    expected_end = H + -(-4_000 * PHASE_ONE // cap)
    ctl.advance(expected_end - 1)
    assert ctl.state.active_bolus is not None and ctl.state.active_bolus.steps_done == 3_999
    ctl.advance(expected_end)
    assert ctl.state.active_bolus is None
    assert records(ctl, LogCode.BOLUS_COMPLETED)[-1].tick == expected_end
    assert expected_end - H > 5 * H                                  # far longer than the minute asked for
    assert ctl.state.bolus.increment == 0


# ---- reservoir alarms ---------------------------------------------------------------------------

def test_low_reservoir_alarm_is_non_critical_and_therapy_continues() -> None:
    ctl = pump(fill=5_000_000, rate=1_000_000)
    increment = increment_for_rate(1_000_000, STROKE)
    low_tick = -(-12_000 * PHASE_ONE // increment)                  # 3 mL delivered: 2 mL left
    events = ctl.advance(low_tick - 1)
    assert not ctl.status().alarms and not tones(events)
    events = ctl.advance(low_tick)
    s = ctl.status()
    assert s.alarms == (AlarmCode.RESERVOIR_LOW,) and s.sounding == AlarmCode.RESERVOIR_LOW
    assert s.reservoir_nl == 2_000_000 and not s.delivery_stopped
    assert CATALOGUE[AlarmCode.RESERVOIR_LOW].priority == Priority.NON_CRITICAL
    assert tones(events) == [(low_tick, AlarmCode.RESERVOIR_LOW, Priority.NON_CRITICAL)]
    on = records(ctl, LogCode.ALARM_ON)[-1]
    assert on.tick == low_tick and on.args[:2] == (AlarmCode.RESERVOIR_LOW, Priority.NON_CRITICAL)
    ctl.advance(low_tick + 12 * H)
    assert ctl.status().steps > 12_000 + 1_000                       # therapy continues
    assert not records(ctl, LogCode.DELIVERY_STOPPED)


def test_empty_reservoir_stops_delivery_halts_boluses_and_refill_resumes() -> None:
    ctl = pump(fill=5_000_000, rate=1_000_000)
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 4), 0)
    increment = increment_for_rate(1_000_000, STROKE)
    empty_tick = -(-16_000 * PHASE_ONE // increment)                 # 4 mL delivered: 1 mL left
    ctl.handle(ClinicianBolus(100_000, 2 * D, 3 * D, 0), empty_tick - 3 * H)  # a slow periodic bolus
    ctl.advance(empty_tick + 2 * D)
    s = ctl.status()
    assert AlarmCode.RESERVOIR_EMPTY in s.alarms and s.sounding == AlarmCode.RESERVOIR_EMPTY
    assert s.delivery_stopped and s.reservoir_nl == 1_000_000 and s.delivered_nl == 4_000_000
    on = [r for r in records(ctl, LogCode.ALARM_ON) if r.args[0] == AlarmCode.RESERVOIR_EMPTY]
    assert on[0].args[1] == Priority.CRITICAL and on[0].tick < empty_tick     # the bolus hastened it
    halted = records(ctl, LogCode.BOLUS_HALTED)
    assert [r.args[0] for r in halted] == [BolusKind.CLINICIAN] and halted[0].tick == on[0].tick
    assert records(ctl, LogCode.DELIVERY_STOPPED)[0].args[0] == AlarmCode.RESERVOIR_EMPTY
    assert ctl.state.active_bolus is None
    assert _request(ctl, empty_tick + 2 * D).reason == DenyReason.DELIVERY_STOPPED
    with pytest.raises(NotAllowedNow, match="stopped by an alarm"):
        ctl.handle(PrimingBolus(PATH_NL, H), empty_tick + 2 * D)
    steps = s.steps
    ctl.advance(empty_tick + 3 * D)
    assert ctl.status().steps == steps                               # nothing moves while empty
    t = empty_tick + 3 * D
    ctl.handle(Refill(1_000_000, FULL, "morphine", 10_000), t)
    s = ctl.status()
    assert s.alarms == () and not s.delivery_stopped and s.sounding is None
    assert records(ctl, LogCode.DELIVERY_RESUMED)[-1].tick == t
    ctl.advance(t + D)
    assert ctl.status().steps > steps + 3_000


def test_refill_of_less_than_the_empty_level_raises_empty_at_once() -> None:
    ctl = pump(rate=250_000)
    ctl.handle(Refill(FULL, 1_000_000, "morphine", 10_000), H)
    s = ctl.status()
    assert AlarmCode.RESERVOIR_EMPTY in s.alarms and s.delivery_stopped


# ---- alarm tones ---------------------------------------------------------------------------------

def test_tones_repeat_every_10_min_critical_and_60_min_non_critical_until_acknowledged() -> None:
    ctl = pump(fill=5_000_000, rate=1_000_000)
    increment = increment_for_rate(1_000_000, STROKE)
    low_tick = -(-12_000 * PHASE_ONE // increment)
    empty_tick = -(-16_000 * PHASE_ONE // increment)
    events = ctl.advance(empty_tick - 1)
    low = tones(events)
    assert low[0] == (low_tick, AlarmCode.RESERVOIR_LOW, Priority.NON_CRITICAL)
    assert [t for t, _, _ in low] == list(range(low_tick, empty_tick, 60 * M))
    events = ctl.advance(empty_tick + 2 * H)
    crit = tones(events)
    assert all(c == AlarmCode.RESERVOIR_EMPTY and p == Priority.CRITICAL for _, c, p in crit)
    assert [t for t, _, _ in crit] == list(range(empty_tick, empty_tick + 2 * H + 1, 10 * M))
    ctl.handle(AcknowledgeAlarm(AlarmCode.RESERVOIR_EMPTY), empty_tick + 2 * H)
    # The low-reservoir alarm, not yet acknowledged, sounds on.
    assert ctl.status().sounding == AlarmCode.RESERVOIR_LOW
    events = ctl.advance(empty_tick + 6 * H)
    assert {c for _, c, _ in tones(events)} == {AlarmCode.RESERVOIR_LOW}
    ticks = [t for t, _, _ in tones(events)]
    assert all(b - a == 60 * M for a, b in zip(ticks, ticks[1:]))
    ctl.handle(AcknowledgeAlarm(AlarmCode.RESERVOIR_LOW), empty_tick + 6 * H)
    assert tones(ctl.advance(empty_tick + 10 * D)) == []
    s = ctl.status()
    assert s.sounding is None and set(s.alarms) == {AlarmCode.RESERVOIR_LOW, AlarmCode.RESERVOIR_EMPTY}
    assert s.delivery_stopped                                         # acknowledging does not refill
    acks = [r.args[0] for r in records(ctl, LogCode.ALARM_ACK)]
    assert acks == [AlarmCode.RESERVOIR_EMPTY, AlarmCode.RESERVOIR_LOW]


def test_tone_intervals_are_configurable() -> None:
    cfg = PumpConfig(alarms=AlarmSettings(critical_repeat_ticks=3 * M, non_critical_repeat_ticks=7 * M))
    ctl = pump(cfg, fill=1_100_000, rate=1_000_000)   # below the low level at once
    events = ctl.advance(30 * M)
    ticks = [t for t, c, _ in tones(events) if c == AlarmCode.RESERVOIR_LOW]
    assert ticks[:3] == [0, 7 * M, 14 * M]


# ---- refill discrepancy --------------------------------------------------------------------------

@pytest.mark.parametrize("capacity, threshold", [(20_000_000, 1_000_000), (40_000_000, 2_000_000)])
def test_refill_discrepancy_alarm_is_latched_until_acknowledged(capacity: int, threshold: int) -> None:
    cfg = PumpConfig(reservoir_capacity_nl=capacity)
    assert cfg.discrepancy_threshold_nl == threshold
    ctl = pump(cfg, fill=capacity, rate=500_000)
    t = 10 * D
    ctl.advance(t)
    expected = ctl.status().reservoir_nl
    ctl.handle(Refill(expected - threshold, capacity, "morphine", 10_000), t)   # exactly the threshold: fine
    assert ctl.status().alarms == ()
    refill = records(ctl, LogCode.REFILL)[-1]
    assert refill.args == (expected, expected - threshold, capacity)
    t = 20 * D
    ctl.advance(t)
    expected = ctl.status().reservoir_nl
    ctl.handle(Refill(expected + threshold + 1, capacity, "morphine", 10_000), t)
    s = ctl.status()
    assert s.alarms == (AlarmCode.REFILL_DISCREPANCY,) and s.sounding == AlarmCode.REFILL_DISCREPANCY
    assert not s.delivery_stopped                                      # it warns, it does not stop therapy
    assert CATALOGUE[AlarmCode.REFILL_DISCREPANCY].priority == Priority.CRITICAL
    # Latched: it stays through time and through a later good refill, sounding every 10 min.
    events = ctl.advance(t + 2 * H)
    assert [tt for tt, _, _ in tones(events)] == list(range(t, t + 2 * H + 1, 10 * M))
    t = 30 * D
    ctl.advance(t)
    ctl.handle(Refill(ctl.status().reservoir_nl, capacity, "morphine", 10_000), t)
    assert AlarmCode.REFILL_DISCREPANCY in ctl.status().alarms
    assert len(tones(ctl.advance(t + H))) >= 6
    ctl.handle(AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY), t + H)
    s = ctl.status()
    assert s.alarms == () and s.sounding is None
    assert records(ctl, LogCode.ALARM_OFF)[-1].args[0] == AlarmCode.REFILL_DISCREPANCY
    assert tones(ctl.advance(t + 2 * D)) == []
    # A later pocket fill, seen by the fill-level sensor, alarms again: a new alarm, a new tone.
    t2 = t + 2 * D
    events_before = len(records(ctl, LogCode.ALARM_ON))
    ctl.handle(Refill(ctl.status().reservoir_nl, capacity, "morphine", 10_000,
                      measured_after_nl=capacity - threshold - 1), t2)
    assert ctl.status().sounding == AlarmCode.REFILL_DISCREPANCY
    assert len(records(ctl, LogCode.ALARM_ON)) == events_before + 1
    ctl.handle(AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY), t2)
    ctl.handle(Refill(ctl.status().reservoir_nl, capacity, "morphine", 10_000,
                      measured_after_nl=capacity - threshold), t2 + D)     # exactly the threshold: fine
    assert ctl.status().alarms == ()


# ---- bridge and priming --------------------------------------------------------------------------

def _concentration_change(bridge: bool):
    """Morphine 10 -> 20 mg/mL at a primed pump running 0.5 mL/day (5 mg/day, then 10 mg/day)."""
    ctl = pump(rate=500_000, prime=True)
    assert ctl.state.path.old_drug_nl(10_000) == 0
    t = 10 * D
    ctl.advance(t)
    ctl.handle(Refill(ctl.status().reservoir_nl, FULL, "morphine", 20_000, None, bridge), t)
    return ctl, t


def test_bridge_bolus_keeps_the_new_dose_at_the_tip() -> None:
    ctl, t = _concentration_change(bridge=True)
    assert ctl.status().bolus_active == BolusKind.BRIDGE
    assert ctl.state.bridge.steps_left == PATH_NL // STROKE
    started = records(ctl, LogCode.BOLUS_STARTED, since=t)
    assert [(r.args[0], r.args[1]) for r in started] == [(BolusKind.BRIDGE, PATH_NL // STROKE)]
    # While the old drug is pushed through, the rate is scaled so the tip gets the new dose.
    assert ctl.state.basal.increment == increment_for_rate(1_000_000, STROKE)
    dose0 = ctl.status().dose_at_tip_ng
    ctl.advance(t + D)
    (done,) = records(ctl, LogCode.BOLUS_COMPLETED, since=t)
    bridge_end = done.tick
    assert done.args[0] == BolusKind.BRIDGE and t < bridge_end < t + D
    assert ctl.status().bolus_active is None
    assert ctl.state.basal.increment == increment_for_rate(500_000, STROKE)
    # Over the bridge: 370 µL at 10 mg/mL out of the tip = 3.7 mg, in the time the new program
    # (0.5 mL/day at 20 mg/mL = 10 mg/day) would take to deliver it.
    ctl2, _ = _concentration_change(bridge=True)
    ctl2.advance(bridge_end)
    bridge_dose = ctl2.status().dose_at_tip_ng - dose0
    expected = Fraction(10_000_000 * (bridge_end - t), D)           # ng at 10 mg/day
    assert bridge_dose == 3_700_000
    assert abs(bridge_dose - expected) / expected < Fraction(1, 100)
    # The whole first day after the change is the new program's 10 mg, to a stroke's dose.
    day_dose = ctl.status().dose_at_tip_ng - dose0
    assert abs(day_dose - 10_000_000) <= 2 * STROKE * 20_000 // 1_000   # two strokes at 20 mg/mL, in ng


@pytest.mark.parametrize("program, old_conc, new_conc", [
    (ProgramContinuous(48_000), 20_000, 10_000),   # the programmable minimum, half the strength
    (ProgramMinimumRate(), 10_000, 20_000),         # the safe rate, below the programmable range
    (ProgramContinuous(48_000), 10_000, 1_000),    # a tenth of the strength: a very slow flush
])
def test_bridge_stays_dose_true_at_low_rates(program, old_conc, new_conc) -> None:
    """The bridge rate is the program's rate scaled by new/old concentration, even when that is
    below the programmable minimum: raising it would give the old drug above the new dose."""
    ctl = pump(conc=old_conc, prime=True)
    ctl.handle(program, H)
    rate = ctl.status().programmed_rate_nl_per_day
    t = 3 * D
    ctl.advance(t)
    ctl.handle(Refill(ctl.status().reservoir_nl, FULL, "morphine", new_conc, None, True), t)
    bridge_rate = rate * new_conc // old_conc
    assert ctl.state.bridge is not None
    assert ctl.state.basal.increment == increment_for_rate(bridge_rate, STROKE)
    dose0 = ctl.status().dose_at_tip_ng
    ctl.advance(t + 2 * D)
    assert ctl.state.bridge is not None                              # still flushing the old drug
    per_day = Fraction(ctl.status().dose_at_tip_ng - dose0, 2)
    target = Fraction(rate * new_conc, 1_000)                        # ng/day of the new program
    assert abs(per_day - target) <= Fraction(STROKE * old_conc, 1_000)  # within one stroke's dose


def test_without_bridge_the_old_drug_reaches_the_tip_first() -> None:
    ctl, t = _concentration_change(bridge=False)
    assert ctl.state.bridge is None and ctl.status().bolus_active is None
    assert ctl.state.basal.increment == increment_for_rate(500_000, STROKE)
    dose0, steps0 = ctl.status().dose_at_tip_ng, ctl.status().steps
    # Advance until exactly the path volume has left the tip: all of it at the old 10 mg/mL.
    inc, phase = ctl.state.basal.increment, ctl.state.basal.phase
    path_out = t + -(-(PATH_NL // STROKE * PHASE_ONE - phase) // inc)
    ctl.advance(path_out)
    assert ctl.status().steps - steps0 == PATH_NL // STROKE
    assert ctl.status().dose_at_tip_ng - dose0 == PATH_NL * 10_000 // 1_000
    ctl.advance(t + D)
    day_dose = ctl.status().dose_at_tip_ng - dose0
    assert day_dose < 7_000_000                                       # 6.3 mg, not the programmed 10 mg
    assert records(ctl, LogCode.DRUG_CHANGED)[-1].args[1:] == (20_000, PATH_NL)


def test_priming_bolus_fills_the_path_so_drug_reaches_the_tip() -> None:
    ctl = pump()                                                      # stopped: only the bolus moves
    assert ctl.state.path.old_drug_nl(10_000) == PATH_NL
    assert ctl.handle(PrimingBolus(PATH_NL, 30 * M), 0) == [BolusGranted(BolusKind.PRIMING, 1_480, PATH_NL)]
    ctl.advance(H)
    s = ctl.status()
    assert s.delivered_nl == PATH_NL and s.dose_at_tip_ng == 0       # fluid pushed out, no drug yet
    assert ctl.state.path.old_drug_nl(10_000) == 0
    assert [r.args[0] for r in records(ctl, LogCode.BOLUS_COMPLETED)] == [BolusKind.PRIMING]
    ctl.handle(ProgramContinuous(500_000), H)
    ctl.advance(2 * D)
    s = ctl.status()
    assert s.dose_at_tip_ng == (s.delivered_nl - PATH_NL) * 10   # every step since carries 10 mg/mL


def test_without_priming_the_first_path_volume_carries_no_drug() -> None:
    ctl = pump(rate=500_000)
    inc = increment_for_rate(500_000, STROKE)
    ctl.advance(-(-1_480 * PHASE_ONE // inc))
    assert ctl.status().delivered_nl == PATH_NL and ctl.status().dose_at_tip_ng == 0
    ctl.advance(ctl.state.tick + -(-PHASE_ONE // inc) + 1)
    assert ctl.status().dose_at_tip_ng > 0


# ---- battery -------------------------------------------------------------------------------------

def _first_tick_at_or_above(threshold_nc: int, battery: BatterySpec, increment: int, lo: int, hi: int) -> int:
    """The oracle: the first tick whose charge drawn reaches a threshold (basal from tick 0)."""
    def used(t: int) -> int:
        return battery.used_nc((t * increment) >> 32, t)
    assert used(hi) >= threshold_nc > used(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if used(mid) >= threshold_nc else (mid, hi)
    return hi


def test_eri_by_charge_then_eos_90_days_later_stops_delivery() -> None:
    battery = BatterySpec(capacity_nc=111_000_000_000, eri_reserve_nc=100_000_000_000)
    ctl = pump(PumpConfig(battery=battery), rate=100_000)
    increment = increment_for_rate(100_000, STROKE)
    eri = _first_tick_at_or_above(battery.eri_threshold_nc, battery, increment, 0, 60 * D)
    events = ctl.advance(eri - 1)
    assert not ctl.status().eri
    events = ctl.advance(eri)
    s = ctl.status()
    assert s.eri and not s.eos and not s.delivery_stopped and s.sounding == AlarmCode.ELECTIVE_REPLACEMENT
    assert tones(events) == [(eri, AlarmCode.ELECTIVE_REPLACEMENT, Priority.NON_CRITICAL)]
    assert ctl.state.eri_tick == eri
    ctl.handle(AcknowledgeAlarm(AlarmCode.ELECTIVE_REPLACEMENT), eri)
    assert AlarmCode.ELECTIVE_REPLACEMENT in ctl.status().alarms        # latched: its condition stays
    eos = eri + 90 * D
    ctl.advance(eos - 1)
    assert not ctl.status().eos
    steps = ctl.status().steps
    events = ctl.advance(eos)
    s = ctl.status()
    assert s.eos and s.delivery_stopped and s.sounding == AlarmCode.END_OF_SERVICE
    assert (eos, AlarmCode.END_OF_SERVICE, Priority.CRITICAL) in tones(events)
    ctl.advance(eos + 30 * D)
    assert ctl.status().steps <= steps + 1
    before = ctl.snapshot()
    for cmd in (ProgramContinuous(100_000), Refill(0, FULL, "morphine", 10_000), PatientBolusRequest(),
                ProgramStopped(), SetClock(0)):
        with pytest.raises(NotAllowedNow, match="end of service"):
            ctl.handle(cmd, eos + 30 * D)
    assert ctl.snapshot() == before
    ctl.handle(AcknowledgeAlarm(AlarmCode.END_OF_SERVICE), eos + 30 * D)    # still allowed
    assert ctl.handle(GetStatus(), eos + 30 * D)[0].eos


def test_eos_when_the_charge_runs_out_before_90_days() -> None:
    battery = BatterySpec(capacity_nc=20_000_000_000, eri_reserve_nc=5_000_000_000)
    ctl = pump(PumpConfig(battery=battery), rate=100_000)
    increment = increment_for_rate(100_000, STROKE)
    eri = _first_tick_at_or_above(battery.eri_threshold_nc, battery, increment, 0, 100 * D)
    eos = _first_tick_at_or_above(battery.capacity_nc, battery, increment, eri, eri + 90 * D)
    ctl.advance(eos + D)
    assert ctl.state.eri_tick == eri
    (on,) = [r for r in records(ctl, LogCode.ALARM_ON) if r.args[0] == AlarmCode.END_OF_SERVICE]
    assert on.tick == eos < eri + 90 * D


def test_maximum_service_life_is_honoured() -> None:
    battery = BatterySpec(capacity_nc=10**18, max_service_ticks=200 * D)
    ctl = pump(PumpConfig(battery=battery), rate=48_000)
    ctl.advance(110 * D - 1)
    assert not ctl.status().eri
    assert ctl.status().battery_months_remaining == (90 * D + 1) * 48 // D // 1461
    ctl.advance(110 * D)
    assert ctl.status().eri and ctl.state.eri_tick == 110 * D        # so that EOS falls on the 200th day
    ctl.advance(200 * D - 1)
    assert not ctl.status().eos
    ctl.advance(200 * D)
    assert ctl.status().eos and ctl.status().delivery_stopped
    assert ctl.status().battery_months_remaining == 0


# ---- refusals ------------------------------------------------------------------------------------

def _running(conc: int = 10_000) -> Controller:
    ctl = pump(conc=conc, rate=250_000)
    ctl.handle(ConfigurePatientBolus(10_000, 10 * M, H, 4), 0)
    ctl.advance(D)
    return ctl


REFUSALS = [
    # (name, setup concentration, command, error type, texts the message must name)
    ("rate below range", 10_000, ProgramContinuous(47_999), LimitExceeded,
     ["rate_nl_per_day", "47999", "48000..24000000"]),
    ("rate above range", 10_000, ProgramContinuous(24_000_001), LimitExceeded,
     ["rate_nl_per_day", "24000001", "48000..24000000"]),
    ("daily dose over limit", 20_000, ProgramContinuous(800_000), LimitExceeded,
     ["morphine.daily_dose_ug", "16800", "<= 15000 µg/day"]),  # 16 mg basal + 4 x 0.2 mg boluses
    ("patient boluses over limit", 20_000, ConfigurePatientBolus(500_000, 10 * M, H, 2), LimitExceeded,
     ["morphine.daily_dose_ug", "25", "15000"]),
    ("unknown drug", 10_000, Refill(0, FULL, "aspirin", 100), NotAllowedNow,
     ["drug", "'aspirin'", "morphine, hydromorphone"]),
    ("concentration over limit", 10_000, Refill(0, FULL, "morphine", 20_001), LimitExceeded,
     ["morphine.concentration_ug_per_ml", "20001", "20000"]),
    ("bridge on drug change", 10_000, Refill(0, FULL, "hydromorphone", 1_000, None, True), NotAllowedNow,
     ["refill.bridge", "'morphine'", "'hydromorphone'", "bridge = false"]),
    ("injected over capacity", 10_000, Refill(0, FULL + 1, "morphine", 10_000), LimitExceeded,
     ["refill.injected_nl", "20000001", "0..20000000"]),
    ("flex not from midnight", 10_000, ProgramFlex(((5, 100_000),)), LimitExceeded,
     ["flex.steps[0].start_tick", "5", "0"]),
    ("flex not increasing", 10_000, ProgramFlex(((0, 100_000), (2 * H, 100_000), (H, 50_000))), LimitExceeded,
     ["flex.steps[2].start_tick", str(H), "increasing"]),
    ("flex past the day", 10_000, ProgramFlex(((0, 100_000), (D, 100_000))), LimitExceeded,
     ["flex.steps[1].start_tick", str(D), str(D - 1)]),
    ("flex rate", 10_000, ProgramFlex(((0, 100_000), (H, 1))), LimitExceeded,
     ["flex.steps[1].rate_nl_per_day", "1", "48000..24000000"]),
    ("flex too long", 10_000, ProgramFlex(tuple((i * H // 2, 100_000) for i in range(25))), LimitExceeded,
     ["flex.steps", "25", "1..24"]),
    ("flex empty", 10_000, ProgramFlex(()), LimitExceeded, ["flex.steps", "0", "1..24"]),
    ("lockout shorter than bolus", 10_000, ConfigurePatientBolus(10_000, H, H - 1, 4), LimitExceeded,
     ["patient_bolus.lockout_ticks", str(H - 1), str(H)]),
    ("lockout longer than the window", 10_000, ConfigurePatientBolus(10_000, H, D + 1, 1), LimitExceeded,
     ["patient_bolus.lockout_ticks", str(D + 1), str(D)]),
    ("too many boluses a day", 10_000, ConfigurePatientBolus(10_000, H, H, 25), LimitExceeded,
     ["patient_bolus.max_per_day", "25", "1..24"]),
    ("bolus below half a stroke", 10_000, ClinicianBolus(124, H), LimitExceeded,
     ["clinician_bolus.volume_nl", "124", "125"]),
    ("bolus duration", 10_000, ClinicianBolus(10_000, 0), LimitExceeded,
     ["clinician_bolus.duration_ticks", "0", "> 0"]),
    ("bolus period", 10_000, ClinicianBolus(10_000, H, H, 2), LimitExceeded,
     ["clinician_bolus.period_ticks", str(H), "> duration"]),
    ("single bolus count", 10_000, ClinicianBolus(10_000, H, 0, 2), LimitExceeded,
     ["clinician_bolus.count", "2", "1 for a single bolus"]),
    ("priming over capacity", 10_000, PrimingBolus(FULL + 250, H), LimitExceeded,
     ["priming_bolus.volume_nl", str(FULL + 250), "20000000"]),
    ("low alarm below range", 10_000, SetLowReservoirAlarm(999_999), LimitExceeded,
     ["low_reservoir_alarm.threshold_nl", "999999", "1000000..5000000"]),
    ("clock past the day", 10_000, SetClock(D), LimitExceeded,
     ["set_clock.time_of_day_ticks", str(D), str(D - 1)]),
    ("acknowledge an inactive alarm", 10_000, AcknowledgeAlarm(AlarmCode.RESERVOIR_EMPTY), NotAllowedNow,
     ["RESERVOIR_EMPTY", "not active", "none"]),
]


@pytest.mark.parametrize("name, conc, command, error, texts", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_commands_name_field_value_limit_and_change_nothing(name, conc, command, error, texts) -> None:
    ctl = _running(conc)
    tick = ctl.state.tick
    before = ctl.snapshot()
    log_before = ctl.log.to_bytes()
    with pytest.raises(error) as err:
        ctl.handle(command, tick)
    assert isinstance(err.value, ModelError)
    for text in texts:
        assert text in str(err.value), f"{text!r} not in {str(err.value)!r}"
    assert ctl.snapshot() == before
    assert ctl.log.to_bytes() == log_before
    assert ctl.advance(tick) == [], "a refusal leaves no event behind"


def test_commands_before_the_first_fill_are_refused() -> None:
    ctl = Controller()
    before = ctl.snapshot()
    for cmd in (ProgramContinuous(100_000), ProgramMinimumRate(), ClinicianBolus(10_000, H),
                PrimingBolus(PATH_NL, H), ConfigurePatientBolus(10_000, H, H, 1)):
        with pytest.raises(NotAllowedNow, match="no drug yet; expected a Refill first"):
            ctl.handle(cmd, 0)
    assert ctl.snapshot() == before
    ctl.handle(ProgramStopped(), 0)                                    # stopping is always fine


def test_time_only_moves_forward() -> None:
    ctl = _running()
    with pytest.raises(LimitExceeded, match="to_tick"):
        ctl.advance(ctl.state.tick - 1)
    with pytest.raises(LimitExceeded, match="time only moves forward"):
        ctl.handle(GetStatus(), ctl.state.tick - 1)


def test_a_refused_command_keeps_the_run_up_to_its_tick() -> None:
    """handle() first runs the pump to the command's tick; that run stands even if refused."""
    a, b = _running(), _running()
    with pytest.raises(LimitExceeded):
        a.handle(ProgramContinuous(1), 3 * D)
    b.advance(3 * D)
    assert a.snapshot() == b.snapshot()


def test_soft_limit_is_accepted_flagged_and_logged() -> None:
    ctl = pump(drug="ziconotide", conc=100)
    (resp,) = ctl.handle(ProgramContinuous(150_000), 0)              # 15 µg/day: above the 10 µg soft limit
    assert isinstance(resp, Accepted) and len(resp.soft_limits) == 1
    assert "ziconotide" in resp.soft_limits[0] and "15000" in resp.soft_limits[0]
    (rec,) = records(ctl, LogCode.SOFT_LIMIT)
    assert rec.args == (ctl.state.drug_index, 15_000, 10_000)
    with pytest.raises(LimitExceeded, match="19.2 µg/day"):
        ctl.handle(ProgramContinuous(200_000), 0)                      # 20 µg/day: above the hard limit


def test_program_change_is_logged_with_before_and_after() -> None:
    ctl = pump()
    ctl.handle(ProgramContinuous(250_000), 5)
    ctl.handle(ProgramMinimumRate(), 10)
    changes = [r.args for r in records(ctl, LogCode.PROGRAM_CHANGED)]
    assert changes == [(Mode.STOPPED, Mode.CONTINUOUS, 250_000), (Mode.CONTINUOUS, Mode.MINIMUM_RATE, 6_000)]
    assert ctl.status().programmed_rate_nl_per_day == 6_000


def test_drug_change_stops_the_old_program() -> None:
    ctl = _running()
    ctl.handle(Refill(ctl.status().reservoir_nl, FULL, "hydromorphone", 1_000), D)
    s = ctl.status()
    assert s.mode == Mode.STOPPED and s.drug == "hydromorphone" and ctl.state.patient is None
    assert records(ctl, LogCode.DRUG_CHANGED)[-1].args[:2] == (1, 1_000)
    # SR-25: the program change is logged with the mode it had before, not the one after.
    assert records(ctl, LogCode.PROGRAM_CHANGED)[-1].args == (Mode.CONTINUOUS, Mode.STOPPED, 0)
    ctl.handle(ProgramContinuous(100_000), D)                           # the new drug needs a new program
    assert ctl.status().programmed_rate_nl_per_day == 100_000


# ---- determinism, snapshots, rebuild -----------------------------------------------------------

def _scenario(config: PumpConfig | None = None):
    """A mixed year-ish of commands at their ticks: refills, flex, boluses, alarms, clock."""
    flex = ((0, 150_000), (7 * H, 300_000), (12 * H, 200_000), (21 * H, 100_000))
    cmds = [
        (0, Refill(0, FULL, "morphine", 10_000)),
        (0, PrimingBolus(PATH_NL, 20 * M)),
        (H, ProgramFlex(flex)),
        (H, ConfigurePatientBolus(10_000, 10 * M, 3 * H, 4)),
        (2 * H, ClinicianBolus(20_000, H, 12 * H, 6)),
        (3 * H, SetClock(8 * H)),
    ]
    for day in range(1, 70):
        for hour in (7, 11, 12, 20):
            cmds.append((day * D + hour * H + day * 77, PatientBolusRequest()))
        if day == 20:
            cmds.append((day * D + 9 * H, Refill(None, FULL, "morphine", 10_000)))
        if day == 40:  # a concentration change with a bridge, and a small fill that runs low
            cmds.append((day * D + 9 * H, Refill(None, 5_000_000, "morphine", 20_000, None, True)))
        if day == 62:  # a refill whose measured residual is 1.5 mL off: pocket fill suspected
            cmds.append((day * D + 9 * H, Refill(-1_500_000, FULL, "morphine", 20_000)))
        if day == 30:
            cmds.append((day * D + 10 * H, ProgramContinuous(200_000)))
        if day == 45:
            cmds.append((day * D + 10 * H, SetLowReservoirAlarm(4_000_000)))
        if day == 50:
            cmds.append((day * D + 10 * H, ProgramFlex(flex)))
    cmds.sort(key=lambda c: c[0])
    return cmds, 75 * D


def _play(ctl: Controller, cmds, end: int, splits=()) -> list:
    """Play the scenario; advance additionally at every split tick. Returns every event."""
    events = []
    pending = sorted(splits)
    for tick, cmd in cmds:
        while pending and pending[0] <= tick:
            events += ctl.advance(pending.pop(0))
        events += ctl.advance(tick)
        if isinstance(cmd, Refill) and cmd.measured_residual_nl is None:
            cmd = dataclasses.replace(cmd, measured_residual_nl=ctl.status().reservoir_nl)
        elif isinstance(cmd, Refill) and cmd.measured_residual_nl < 0:
            cmd = dataclasses.replace(cmd, measured_residual_nl=ctl.status().reservoir_nl - cmd.measured_residual_nl)
        try:
            ctl.handle(cmd, tick)
        except ModelError as exc:  # a refusal is part of the scenario: kept with the events
            events.append(("refused", tick, type(cmd).__name__, str(exc)))
        for alarm in ctl.status().alarms:
            if alarm in (AlarmCode.RESERVOIR_LOW, AlarmCode.REFILL_DISCREPANCY) and tick % 3 == 0:
                ctl.handle(AcknowledgeAlarm(alarm), tick)
    for t in pending:
        if t <= end:
            events += ctl.advance(t)
    events += ctl.advance(end)
    return events


def test_scenario_exercises_what_it_should() -> None:
    cmds, end = _scenario()
    ctl = Controller()
    _play(ctl, cmds, end)
    codes = {r.code for r in ctl.log.records()}
    assert {LogCode.PATIENT_BOLUS_GRANTED, LogCode.PATIENT_BOLUS_DENIED, LogCode.BOLUS_COMPLETED,
            LogCode.REFILL, LogCode.DRUG_CHANGED, LogCode.CLOCK_SET, LogCode.ALARM_ON} <= codes
    assert ctl.state.bridge is None and ctl.state.concentration_ug_per_ml == 20_000


@settings(max_examples=25, deadline=None)
@given(splits=st.lists(st.integers(0, 75 * D), max_size=30))
def test_advance_split_anywhere_gives_the_same_pump(splits: list[int]) -> None:
    cmds, end = _scenario()
    one, many = Controller(), Controller()
    events_one = _play(one, cmds, end)
    events_many = _play(many, cmds, end, splits)
    assert many.snapshot() == one.snapshot()
    assert events_many == events_one


def test_advance_tick_by_tick_around_events_gives_the_same_pump() -> None:
    """Thousands of tiny advances around a bolus and a flex boundary equal one big advance."""
    cmds = [(0, Refill(0, FULL, "morphine", 10_000)), (0, ProgramFlex(FLEX)),
            (6 * H - 1000, ClinicianBolus(2_500, 1_500))]
    one, many = Controller(), Controller()
    _play(one, cmds, 7 * H)
    _play(many, cmds, 7 * H, splits=range(6 * H - 1100, 6 * H + 1100, 1))
    assert many.snapshot() == one.snapshot()


def test_snapshot_restore_round_trip() -> None:
    cmds, end = _scenario()
    ctl = Controller()
    _play(ctl, cmds[:200], cmds[199][0])
    snap = ctl.snapshot()
    other = Controller()
    other.restore(snap)
    assert other.snapshot() == snap
    assert state_bytes(other) == state_bytes(ctl)
    # Both run on identically.
    rest = [(t, c) for t, c in cmds[200:]]
    _play(ctl, rest, end)
    _play(other, rest, end)
    assert other.snapshot() == ctl.snapshot()


def test_restore_refuses_another_config_and_bad_bytes() -> None:
    ctl = _running()
    snap = ctl.snapshot()
    other = Controller(PumpConfig(reservoir_capacity_nl=40_000_000))
    before = other.snapshot()
    with pytest.raises(StateError, match="another PumpConfig"):
        other.restore(snap)
    assert other.snapshot() == before
    with pytest.raises(StateError, match="another PumpConfig"):
        Controller(PumpConfig(low_reservoir_nl=3_000_000)).restore(snap)
    with pytest.raises(StateError, match="expected at least"):
        Controller().restore(snap[:10])
    with pytest.raises(StateError, match="header"):
        Controller().restore(b"XXXX" + snap[4:])
    with pytest.raises(StateError):
        Controller().restore(snap[:-1])


REBUILD_CONFIG = PumpConfig(log_capacity=256, checkpoint_records=64)


def _check_rebuild(ctl: Controller, reset_tick: int) -> Controller:
    """Run to the reset, rebuild from a copy of the flash, compare; returns the rebuilt pump."""
    ctl.advance(reset_tick)
    flash = ctl.log.to_bytes()
    rebuilt = Controller.rebuild(ctl.config, EventLog.from_bytes(flash), reset_tick)
    assert state_bytes(rebuilt) == state_bytes(ctl)
    kept, after = list(EventLog.from_bytes(flash).records()), list(rebuilt.log.records())
    assert after[:-1] == kept[len(kept) - (len(after) - 1):]
    last = after[-1]
    assert last.code == LogCode.POWER_ON and last.args[0] == 1 and last.tick == reset_tick
    return rebuilt


def test_rebuild_after_a_long_mixed_run_with_a_wrapped_ring() -> None:
    cmds, end = _scenario()
    ctl = Controller(REBUILD_CONFIG)
    _play(ctl, cmds, end)
    assert ctl.log.overwritten > 500
    assert sum(1 for r in ctl.log.records() if r.code == LogCode.CHECKPOINT) > 0
    rebuilt = _check_rebuild(ctl, end + 3 * H)
    # The rebuilt pump runs on as the original would have, and logs the same records.
    cont = [(end + 4 * H, PatientBolusRequest()), (end + 5 * H, ProgramContinuous(300_000)),
            (end + 6 * H, Refill(None, FULL, "morphine", 20_000))]
    seq = rebuilt.log.next_seq
    _play(rebuilt, cont, end + 30 * D)
    _play(ctl, cont, end + 30 * D)
    assert state_bytes(rebuilt) == state_bytes(ctl)
    # (Checkpoints may fall one record apart: the reset's POWER_ON counts towards the next one.)
    fresh = [(r.tick, r.code, r.aux, r.payload) for r in rebuilt.log.records()
             if r.seq >= seq and r.code != LogCode.CHECKPOINT]
    original = [(r.tick, r.code, r.aux, r.payload) for r in ctl.log.records()
                if r.tick > end + 3 * H and r.code != LogCode.CHECKPOINT]
    assert fresh and fresh[-len(original):] == original


@pytest.mark.parametrize("cut", [5, 50, 150, 200, 201, 250, 287])
def test_rebuild_at_many_points_of_the_run(cut: int) -> None:
    cmds, end = _scenario()
    ctl = Controller(REBUILD_CONFIG)
    tick = cmds[cut][0]
    _play(ctl, cmds[:cut], tick)
    _check_rebuild(ctl, tick + 17)


def test_rebuild_after_many_large_flex_programs() -> None:
    """A 24-step flex command fills many log records; the newest checkpoint must still be held."""
    ctl = pump(REBUILD_CONFIG)
    t = 0
    for i in range(60):
        t += H
        table = tuple((j * H, 100_000 + 1_000 * ((i + j) % 7)) for j in range(24))
        ctl.handle(ProgramFlex(table), t)
    assert ctl.log.overwritten > 0
    _check_rebuild(ctl, t + H)


def test_rebuild_without_a_checkpoint_is_refused() -> None:
    log = EventLog(64)
    log.append(0, LogCode.POWER_ON)
    with pytest.raises(StateError, match="no complete checkpoint"):
        Controller.rebuild(PumpConfig(), log, 10)
