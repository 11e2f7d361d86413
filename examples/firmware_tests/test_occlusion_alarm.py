"""A total catheter occlusion raises the occlusion alarm within 30 min and the motor makes no step
after it (IEC 60601-2-24 201.12.4.4.104; SR-16)."""

from firmware_model.alarms import AlarmCode
from firmware_model.event_log import LogCode
from firmware_model.units import TICKS_PER_HOUR, TICKS_PER_MINUTE


def test_an_occlusion_alarms_within_30_min_and_stops_the_motor(pump):
    pump.refill(measured_residual_nl=0, injected_nl=20_000_000, drug="morphine", concentration_ug_per_ml=500)
    pump.program_continuous(rate_nl_per_day=1_000_000)
    occluded_at = TICKS_PER_HOUR + TICKS_PER_MINUTE
    pump.inject_occlusion(occluded_at)                 # total, until cleared: the rig's way, and the model's

    pump.advance_to(2 * TICKS_PER_HOUR)
    alarm_on = [r for r in pump.read_log() if r.code is LogCode.ALARM_ON and r.args[0] == AlarmCode.OCCLUSION]
    assert alarm_on, "no occlusion alarm"
    assert alarm_on[0].tick - occluded_at <= 30 * TICKS_PER_MINUTE
    status = pump.status()
    assert AlarmCode.OCCLUSION in status.alarms and status.delivery_stopped

    pump.advance_to(3 * TICKS_PER_HOUR)
    assert pump.status().steps == status.steps           # not one step while the alarm stands
