"""Time and volume units of the model: integer ticks of the 32,768 Hz crystal, nanolitres.

Time is counted in ticks of the 32,768 Hz watch crystal an implant's MCU runs its timers from
(DESIGN.md, firmware_model). Volumes are integer nanolitres, concentrations integer µg/mL, so a
dose is exact in picograms: 1 nL x 1 µg/mL = 1 pg.
"""

from __future__ import annotations

TICK_HZ = 32_768
TICKS_PER_SECOND = TICK_HZ
TICKS_PER_MINUTE = 60 * TICK_HZ
TICKS_PER_HOUR = 3_600 * TICK_HZ
TICKS_PER_DAY = 86_400 * TICK_HZ
TICKS_PER_YEAR = 365 * TICKS_PER_DAY

NL_PER_ML = 1_000_000
PG_PER_UG = 1_000_000


def dose_pg(volume_nl: int, concentration_ug_per_ml: int) -> int:
    """Drug mass in a volume: nL x µg/mL is exactly picograms."""
    return volume_nl * concentration_ug_per_ml


def rate_for_daily_dose(dose_ug_per_day: int, concentration_ug_per_ml: int) -> int:
    """The flow (nL/day) that carries a daily dose at a concentration, rounded to the nearest nL.

    V_day = D_day / C (domain.md §2, derived arithmetic).
    """
    if concentration_ug_per_ml <= 0:
        raise ValueError("concentration_ug_per_ml must be positive")
    num = dose_ug_per_day * NL_PER_ML
    return (2 * num + concentration_ug_per_ml) // (2 * concentration_ug_per_ml)


def volume_for_dose(dose_ug: int, concentration_ug_per_ml: int) -> int:
    """The volume (nL) that carries a dose at a concentration, rounded to the nearest nL."""
    return rate_for_daily_dose(dose_ug, concentration_ug_per_ml)


def days(ticks: int) -> float:
    """Ticks as days, for reports only (never for state)."""
    return ticks / TICKS_PER_DAY
