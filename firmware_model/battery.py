"""The battery: charge drawn per motor step and per tick, ERI, EOS, service life, months left.

Service life is 5-7 years depending on daily volume, 7 years at most, then the pump shuts off;
the ERI alarm sounds near end of service and the pump stops 90 days after ERI (domain.md §1.1
[V S8]). The charge figures are not published: the defaults are [D], chosen so that the service
life spans about 7.5 years at 0.1 mL/day down to about 5 years at 1 mL/day with 250 nL strokes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .units import TICKS_PER_DAY

DAYS_PER_MONTH_X4 = 1461  # 365.25 days/year / 12 months = 30.4375 days = 1461 / 48


@dataclass(frozen=True)
class BatterySpec:
    """Charge in nanocoulombs; times in ticks."""

    capacity_nc: int = 985_000_000_000
    step_charge_nc: int = 50_000
    quiescent_nc_per_day: int = 340_000_000
    eri_reserve_nc: int = 40_000_000_000
    eri_to_eos_ticks: int = 90 * TICKS_PER_DAY
    max_service_ticks: int = 2557 * TICKS_PER_DAY  # 7 years (domain.md §1.1 [V S8])

    def used_nc(self, steps: int, elapsed_ticks: int) -> int:
        """Charge drawn after `steps` motor steps over `elapsed_ticks` of service (exact, floored)."""
        return steps * self.step_charge_nc + elapsed_ticks * self.quiescent_nc_per_day // TICKS_PER_DAY

    @property
    def eri_threshold_nc(self) -> int:
        """Charge drawn at which the ERI is raised."""
        return self.capacity_nc - self.eri_reserve_nc

    @property
    def eri_latest_ticks(self) -> int:
        """ERI is raised by this age at the latest, so that EOS falls on the maximum service life."""
        return self.max_service_ticks - self.eri_to_eos_ticks

    def months_remaining(self, steps: int, elapsed_ticks: int, steps_per_day: int, drained_nc: int = 0) -> int:
        """Whole months until the charge or the service life runs out at the present step rate
        (drained_nc: charge a battery fault drew beyond the budget)."""
        left_nc = max(0, self.capacity_nc - self.used_nc(steps, elapsed_ticks) - drained_nc)
        per_day = steps_per_day * self.step_charge_nc + self.quiescent_nc_per_day
        days_by_charge_x48 = left_nc * 48 // per_day
        days_by_life_x48 = max(0, self.max_service_ticks - elapsed_ticks) * 48 // TICKS_PER_DAY
        return min(days_by_charge_x48, days_by_life_x48) // DAYS_PER_MONTH_X4
