"""The pump mechanism's calibration: what one motor step moves and how fast the motor may go."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitExceeded


@dataclass(frozen=True)
class Mechanism:
    """Calibration of the drive and the fluid path; every default is a placeholder to override.

    - stroke_nl: volume per motor step. The real figure was not found (domain.md §1.1, [M]);
      250 nL is the design's example (DESIGN.md, firmware_model).
    - min_rate_nl_per_day / max_rate_nl_per_day: the programmable range 0.048–24 mL/day
      (domain.md §1.1 and §6, [M]). The maximum also caps basal plus bolus (SR-7, domain.md §4.5).
    - safe_rate_nl_per_day: the "very low level" flow after a serious fault (domain.md §1.1 [V S4];
      the 0.006 mL/day value is [M]).
    - pump_tubing_nl / catheter_nl: the fluid path that a priming or bridge bolus must push
      through (domain.md §2: per-model volumes not retrieved, [M]); 0.22 mL of pump tubing and
      68 cm of catheter at about 2.2 µL/cm are placeholders.
    """

    stroke_nl: int = 250
    min_rate_nl_per_day: int = 48_000
    max_rate_nl_per_day: int = 24_000_000
    safe_rate_nl_per_day: int = 6_000
    pump_tubing_nl: int = 220_000
    catheter_nl: int = 150_000

    def __post_init__(self) -> None:
        for name in ("stroke_nl", "max_rate_nl_per_day", "min_rate_nl_per_day", "safe_rate_nl_per_day"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise LimitExceeded(f"mechanism.{name}", value, "a positive integer")
        for name in ("pump_tubing_nl", "catheter_nl"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise LimitExceeded(f"mechanism.{name}", value, "a non-negative integer")
        if not self.min_rate_nl_per_day <= self.max_rate_nl_per_day:
            raise LimitExceeded("mechanism.min_rate_nl_per_day", self.min_rate_nl_per_day,
                                f"<= max_rate_nl_per_day ({self.max_rate_nl_per_day})")

    @property
    def fluid_path_nl(self) -> int:
        """Pump tubing plus catheter: the priming and bridge volume (domain.md §2)."""
        return self.pump_tubing_nl + self.catheter_nl

    def steps_for(self, volume_nl: int) -> int:
        """Whole motor steps nearest to a volume."""
        return (2 * volume_nl + self.stroke_nl) // (2 * self.stroke_nl)
