"""Motor stall under an MRI magnet: detection, recovery, and the telemetry-mode latch
(domain.md §1.1 [V S3, S15])."""

from __future__ import annotations

from firmware_model import (AcknowledgeAlarm, AlarmCode, Controller, Interrogate, LogCode, ProgramContinuous,
                            ProgramStopped, PumpConfig, Refill)
from firmware_model.plant import MriExposure, Plant
from firmware_model.units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

SCAN_START = TICKS_PER_DAY
SCAN_END = TICKS_PER_DAY + 45 * TICKS_PER_MINUTE
STALL_CODES = (LogCode.TELEMETRY_MODE, LogCode.STALL, LogCode.ALARM_ON, LogCode.STALL_RECOVERED,
               LogCode.ALARM_OFF, LogCode.INTERROGATION, LogCode.DELIVERY_RESUMED, LogCode.DELIVERY_STOPPED)


def pump_in_scanner(rate_nl_per_day: int = 1_000_000, scan=(SCAN_START, SCAN_END)) -> tuple[Controller, Plant]:
    plant = Plant(seed=4, mri=(MriExposure(*scan),))
    pump = Controller(plant=plant)
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(ProgramContinuous(rate_nl_per_day), 0)
    return pump, plant


def story(events):
    return [(e.code, e.args[:2]) for e in events if e.code in STALL_CODES]


def test_stall_in_mri_is_logged_recovered_and_latched_until_interrogation() -> None:
    pump, _ = pump_in_scanner()
    pump.advance(SCAN_START - 1)
    reservoir = pump.state.reservoir_nl
    events = pump.advance(SCAN_START + 6 * TICKS_PER_HOUR)
    stall = AlarmCode.MOTOR_STALL
    assert story(events) == [
        (LogCode.TELEMETRY_MODE, (1, 0)),        # EMI: telemetry mode, nothing sounding yet
        (LogCode.STALL, (3, 0)),                 # three commanded steps without feedback
        (LogCode.ALARM_ON, (stall, 2)),          # critical, two-tone
        (LogCode.DELIVERY_STOPPED, (stall, 0)),
        (LogCode.TELEMETRY_MODE, (1, 1)),        # an alarm sounds in telemetry mode: latched
        (LogCode.TELEMETRY_MODE, (0, 1)),        # the scan ends
        (LogCode.STALL_RECOVERED, (7200, 0)),    # found at the first retry, 2 h after the stall
        (LogCode.ALARM_OFF, (stall, 0)),
    ]
    status = pump.status()
    assert status.delivery_stopped and status.telemetry_latched and not status.stalled
    # Nothing was delivered while the rotor was held; one test stroke landed at the recovery.
    assert pump.state.reservoir_nl == reservoir - 250
    recovered = [e.tick for e in events if e.code == LogCode.STALL_RECOVERED][0]
    assert recovered - SCAN_END <= pump.config.stall_retry_ticks  # the delay before recovery is seen
    events = pump.handle(Interrogate(), SCAN_START + 6 * TICKS_PER_HOUR)
    events = pump.advance(SCAN_START + 7 * TICKS_PER_HOUR)
    assert story(events) == [(LogCode.INTERROGATION, (1, 0)), (LogCode.DELIVERY_RESUMED, (0, 0))]
    assert pump.state.reservoir_nl < reservoir - 250  # therapy runs again


def test_recovery_waits_for_the_magnet_to_go() -> None:
    pump, _ = pump_in_scanner(scan=(SCAN_START, SCAN_START + 5 * TICKS_PER_HOUR))
    events = pump.advance(SCAN_START + 8 * TICKS_PER_HOUR)
    stall = [e.tick for e in events if e.code == LogCode.STALL][0]
    recovered = [e.tick for e in events if e.code == LogCode.STALL_RECOVERED][0]
    # Retries at +2 h and +4 h still find the rotor held; +6 h finds it free.
    assert recovered - stall == 3 * pump.config.stall_retry_ticks


def test_short_scan_at_a_low_rate_misses_no_more_than_a_stroke_and_latches_nothing() -> None:
    # 0.048 mL/day is a stroke every 7.5 min: a 5 min scan can hold at most one.
    pump, _ = pump_in_scanner(48_000, scan=(SCAN_START, SCAN_START + 5 * TICKS_PER_MINUTE))
    events = pump.advance(SCAN_START + TICKS_PER_HOUR)
    assert story(events) == [(LogCode.TELEMETRY_MODE, (1, 0)), (LogCode.TELEMETRY_MODE, (0, 0))]
    assert not pump.status().delivery_stopped and pump.state.missed_steps == 0


def test_stopped_pump_in_the_scanner_detects_no_stall() -> None:
    """Programming "stopped" before an MRI hides the stall (domain.md §1.1 [V S3])."""
    pump, _ = pump_in_scanner()
    pump.handle(ProgramStopped(), SCAN_START - TICKS_PER_MINUTE)
    events = pump.advance(SCAN_END + TICKS_PER_HOUR)
    assert LogCode.STALL not in [e.code for e in events]
    assert not pump.status().telemetry_latched


def test_alarm_sounding_when_the_scan_starts_latches_too() -> None:
    pump, _ = pump_in_scanner()
    pump.handle(Refill(20_000_000, 1_500_000, "morphine", 10_000), SCAN_START - TICK_HZ)  # below 2 mL: low alarm sounds
    events = pump.advance(SCAN_START + TICK_HZ)
    assert (LogCode.TELEMETRY_MODE, (1, 1)) in story(events) or (LogCode.TELEMETRY_MODE, (1, 0)) in story(events)
    assert pump.status().telemetry_latched
    pump.handle(AcknowledgeAlarm(AlarmCode.RESERVOIR_LOW), SCAN_START + 2 * TICK_HZ)
    assert pump.status().telemetry_latched  # acknowledging is not an interrogation


def test_snapshot_keeps_the_outlet() -> None:
    pump, plant = pump_in_scanner()
    pump.advance(SCAN_START - TICKS_PER_HOUR)
    data = pump.snapshot()
    twin_plant = Plant(seed=4, mri=plant.mri)
    twin = Controller(PumpConfig(), plant=twin_plant)
    twin.restore(data)
    assert twin_plant.state == plant.state and twin.snapshot() == data
    assert [e.code for e in pump.advance(SCAN_END)] == [e.code for e in twin.advance(SCAN_END)]
