"""Refill accounting (SR-10): a refill (residual withdrawn, new drug injected) sets the reservoir
to what was injected; a residual far from the pump's own count raises the refill-discrepancy alarm."""

from firmware_model.alarms import AlarmCode
from firmware_model.units import TICKS_PER_DAY


def test_a_refill_sets_the_reservoir(pump):
    pump.refill(measured_residual_nl=0, injected_nl=20_000_000, drug="morphine", concentration_ug_per_ml=10_000)
    assert pump.status().reservoir_nl == 20_000_000
    pump.program_continuous(rate_nl_per_day=1_000_000)
    pump.advance(TICKS_PER_DAY)
    left = pump.status().reservoir_nl
    assert 18_990_000 <= left <= 19_010_000

    pump.refill(measured_residual_nl=left, injected_nl=20_000_000, drug="morphine", concentration_ug_per_ml=10_000)
    status = pump.status()
    assert status.reservoir_nl == 20_000_000
    assert AlarmCode.REFILL_DISCREPANCY not in status.alarms


def test_a_pocket_fill_suspicion_raises_the_discrepancy_alarm(running_pump):
    pump = running_pump
    pump.advance(TICKS_PER_DAY)
    held = pump.status().reservoir_nl
    pump.refill(measured_residual_nl=held - 2_500_000, injected_nl=3_000_000, drug="morphine",
                concentration_ug_per_ml=10_000)
    assert AlarmCode.REFILL_DISCREPANCY in pump.status().alarms
