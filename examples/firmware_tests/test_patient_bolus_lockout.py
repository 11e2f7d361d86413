"""Patient bolus: a press within the lockout is denied, one after it is granted (SR-1)."""

from firmware_model.commands import BolusDenied, BolusGranted, DenyReason
from firmware_model.event_log import LogCode
from firmware_model.units import TICKS_PER_HOUR, TICKS_PER_MINUTE

LOCKOUT = 3 * TICKS_PER_HOUR


def test_a_press_within_the_lockout_is_denied_and_logged(running_pump, reference):
    pump = running_pump
    pump.configure_patient_bolus(volume_nl=10_000, duration_ticks=10 * TICKS_PER_MINUTE,
                                 lockout_ticks=LOCKOUT, max_per_day=3)
    pump.advance_to(1 * TICKS_PER_HOUR)
    assert isinstance(pump.patient_bolus(), BolusGranted)

    pump.advance_to(2 * TICKS_PER_HOUR)               # 1 h after the first: inside the 3 h lockout
    answer = pump.patient_bolus()                      # the model was asked too, and agreed
    assert isinstance(answer, BolusDenied) and answer.reason is DenyReason.LOCKOUT
    assert reference.status().bolus_active is None     # nothing delivered for the denied press
    last = pump.read_log()[-1]
    assert last.code is LogCode.PATIENT_BOLUS_DENIED and last.args[0] == DenyReason.LOCKOUT


def test_a_press_after_the_lockout_is_granted(running_pump):
    pump = running_pump
    pump.configure_patient_bolus(volume_nl=10_000, duration_ticks=10 * TICKS_PER_MINUTE,
                                 lockout_ticks=LOCKOUT, max_per_day=3)
    pump.advance_to(1 * TICKS_PER_HOUR)
    pump.patient_bolus()
    pump.advance_to(1 * TICKS_PER_HOUR + LOCKOUT + TICKS_PER_MINUTE)
    granted = pump.patient_bolus()
    assert isinstance(granted, BolusGranted) and granted.volume_nl == 10_000
