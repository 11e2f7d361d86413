"""Shared fixtures of our firmware's HIL tests. `pump`, `reference` and `rig` come from ithil's
pytest plugin (installed with ithil); here we only add a pump filled and running, as most tests
start from one."""

import pytest

MORPHINE_UG_PER_ML = 10_000          # 10 mg/mL
FULL_NL = 20_000_000                 # our 20 mL reservoir
BASAL_NL_PER_DAY = 480_000           # 4.8 mg/day


@pytest.fixture
def running_pump(pump):
    """A fresh pump filled with morphine and delivering a continuous basal rate."""
    pump.refill(measured_residual_nl=0, injected_nl=FULL_NL, drug="morphine",
                concentration_ug_per_ml=MORPHINE_UG_PER_ML)
    pump.program_continuous(rate_nl_per_day=BASAL_NL_PER_DAY)
    return pump
