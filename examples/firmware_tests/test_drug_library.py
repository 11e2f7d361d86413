"""Drug-library hard limits (SR-22): a program above a hard limit is refused, names the field,
and changes nothing."""

import pytest

from hil.errors import PumpRefused
from protocol import NakReason


def test_a_rate_above_the_hard_limit_is_refused_and_changes_nothing(running_pump):
    pump = running_pump
    before = pump.status()
    with pytest.raises(PumpRefused) as refused:
        pump.program_continuous(rate_nl_per_day=2_000_000)   # 20 mg/day of morphine: above its 15 mg/day
    assert refused.value.reason == NakReason.LIMIT_EXCEEDED
    assert refused.value.field                                # the pump names what was over the limit
    assert pump.status() == before                            # still the old program, same tick


def test_a_concentration_above_the_hard_limit_is_refused(running_pump):
    pump = running_pump
    with pytest.raises(PumpRefused) as refused:
        pump.refill(measured_residual_nl=20_000_000, injected_nl=0, drug="morphine",
                    concentration_ug_per_ml=30_000)
    assert refused.value.reason == NakReason.LIMIT_EXCEEDED
    assert pump.status().concentration_ug_per_ml == 10_000
