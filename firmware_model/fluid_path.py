"""The fluid path from the pump to the catheter tip, as a FIFO of concentration segments.

After a drug or concentration change the old drug still fills the pump tubing and the catheter
and reaches the tip first; the dose the patient gets is the one leaving the tip (domain.md §2,
bridge bolus [D]). Before priming, the path holds no drug (concentration 0).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .units import dose_pg


@dataclass(slots=True)
class Segment:
    """A run of fluid of one concentration."""

    volume_nl: int
    concentration_ug_per_ml: int


@dataclass(slots=True)
class FluidPath:
    """Segments from the tip (left) to the pump outlet (right); the total volume never changes."""

    segments: deque[Segment] = field(default_factory=deque)

    @classmethod
    def unprimed(cls, volume_nl: int) -> "FluidPath":
        """A path full of drug-free fluid, as after implant or catheter revision."""
        return cls(deque([Segment(volume_nl, 0)]) if volume_nl > 0 else deque())

    @property
    def volume_nl(self) -> int:
        return sum(s.volume_nl for s in self.segments)

    def push(self, volume_nl: int, concentration_ug_per_ml: int) -> int:
        """Push `volume_nl` in at the pump; the same volume leaves the tip. Returns its dose in pg."""
        if volume_nl <= 0:
            return 0
        segs = self.segments
        if segs and segs[-1].concentration_ug_per_ml == concentration_ug_per_ml:
            segs[-1].volume_nl += volume_nl
        else:
            segs.append(Segment(volume_nl, concentration_ug_per_ml))
        out_pg, left = 0, volume_nl
        while left:
            tip = segs[0]
            take = min(left, tip.volume_nl)
            out_pg += dose_pg(take, tip.concentration_ug_per_ml)
            left -= take
            if take == tip.volume_nl:
                segs.popleft()
            else:
                tip.volume_nl -= take
        return out_pg

    def old_drug_nl(self, concentration_ug_per_ml: int) -> int:
        """Volume in the path that is not at the given (reservoir) concentration."""
        return sum(s.volume_nl for s in self.segments if s.concentration_ug_per_ml != concentration_ug_per_ml)
