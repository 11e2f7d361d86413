"""What a controller is told and what it answers: commands, responses and their enums.

Commands carry the pump's own units: rates in nL/day, volumes in nL, times in ticks. A
programmer converts a clinician's dose per day at a concentration into a rate
(`units.rate_for_daily_dose`), as the real clinician programmer does (domain.md §1.1 [V S12]).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .alarms import AlarmCode


class Mode(enum.IntEnum):
    """Basal therapy modes (domain.md §2)."""

    STOPPED = 0
    CONTINUOUS = 1
    FLEX = 2
    MINIMUM_RATE = 3


class BolusKind(enum.IntEnum):
    CLINICIAN = 1
    PATIENT = 2
    PRIMING = 3
    BRIDGE = 4


class DenyReason(enum.IntEnum):
    """Why a patient bolus request was denied (SR-1, SR-2, SR-3, domain.md §4.5)."""

    NOT_CONFIGURED = 1
    LOCKOUT = 2
    DAILY_COUNT = 3
    DAILY_DOSE = 4
    BOLUS_IN_PROGRESS = 5
    DELIVERY_STOPPED = 6
    THERAPY_STOPPED = 7


# ---- commands -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProgramStopped:
    """Stopped pump: no basal, every bolus halted (SR-20)."""


@dataclass(frozen=True)
class ProgramContinuous:
    """Simple continuous: one rate all day."""

    rate_nl_per_day: int


@dataclass(frozen=True)
class ProgramFlex:
    """Flexible dosing: a repeating daily table of (start tick of day, rate); the first starts at 0."""

    steps: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ProgramMinimumRate:
    """The minimum safe rate (domain.md §2: flow reset "to a very low level" [V S4])."""


@dataclass(frozen=True)
class ClinicianBolus:
    """A dose over a duration on top of the basal; periodic when period_ticks > 0 (count 0: forever)."""

    volume_nl: int
    duration_ticks: int
    period_ticks: int = 0
    count: int = 1


@dataclass(frozen=True)
class PrimingBolus:
    """Fills the unfilled pump tubing and catheter after implant or revision (domain.md §2)."""

    volume_nl: int
    duration_ticks: int


@dataclass(frozen=True)
class ConfigurePatientBolus:
    """Patient bolus settings: dose volume, duration, lockout, maximum per rolling 24 h (max 0: off)."""

    volume_nl: int
    duration_ticks: int
    lockout_ticks: int
    max_per_day: int


@dataclass(frozen=True)
class PatientBolusRequest:
    """The patient presses the button (myPTM / PTC)."""


@dataclass(frozen=True)
class Refill:
    """Residual withdrawn and measured, new drug injected (domain.md §3.4).

    measured_after_nl: the reservoir volume a fill-level sensor reads after the refill, when the
    rig has one; bridge: after a concentration change, deliver the old drug still in the fluid
    path at a rate that keeps the new program's dose at the catheter tip.
    """

    measured_residual_nl: int
    injected_nl: int
    drug: str
    concentration_ug_per_ml: int
    measured_after_nl: int | None = None
    bridge: bool = False


@dataclass(frozen=True)
class SetLowReservoirAlarm:
    threshold_nl: int


@dataclass(frozen=True)
class AcknowledgeAlarm:
    alarm: AlarmCode


@dataclass(frozen=True)
class SetClock:
    """Set the pump's time of day (the flex schedule follows it; rolling windows do not)."""

    time_of_day_ticks: int


@dataclass(frozen=True)
class Interrogate:
    """A clinician or patient programmer interrogates the pump; after an MRI this releases the
    telemetry-mode latch (domain.md §1.1 [V S15])."""


@dataclass(frozen=True)
class GetStatus:
    """Interrogation: answers a StatusReport, changes nothing."""


Command = (ProgramStopped | ProgramContinuous | ProgramFlex | ProgramMinimumRate | ClinicianBolus
           | PrimingBolus | ConfigurePatientBolus | PatientBolusRequest | Refill | SetLowReservoirAlarm
           | AcknowledgeAlarm | SetClock | Interrogate | GetStatus)

# Stable ids of the commands the event log keeps (never renumber; append only).
COMMAND_IDS: dict[type, int] = {
    ProgramStopped: 1, ProgramContinuous: 2, ProgramFlex: 3, ProgramMinimumRate: 4,
    ClinicianBolus: 5, PrimingBolus: 6, ConfigurePatientBolus: 7, PatientBolusRequest: 8,
    Refill: 9, SetLowReservoirAlarm: 10, AcknowledgeAlarm: 11, SetClock: 12, Interrogate: 13,
}
COMMAND_TYPES: dict[int, type] = {v: k for k, v in COMMAND_IDS.items()}


# ---- responses ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    """The command took effect; soft-limit flags the programmer must show (SR-22)."""

    soft_limits: tuple[str, ...] = ()


@dataclass(frozen=True)
class BolusGranted:
    kind: BolusKind
    steps: int
    volume_nl: int


@dataclass(frozen=True)
class BolusDenied:
    reason: DenyReason
    detail: str


@dataclass(frozen=True)
class StatusReport:
    tick: int
    mode: Mode
    drug: str
    concentration_ug_per_ml: int
    programmed_rate_nl_per_day: int
    effective_rate_nl_per_day: int
    reservoir_nl: int
    delivered_nl: int
    dose_at_tip_ng: int
    steps: int
    bolus_active: BolusKind | None
    alarms: tuple[AlarmCode, ...]
    sounding: AlarmCode | None
    delivery_stopped: bool
    stalled: bool
    telemetry_latched: bool
    battery_months_remaining: int
    eri: bool
    eos: bool
    refill_due_tick: int | None


Response = Accepted | BolusGranted | BolusDenied | StatusReport
