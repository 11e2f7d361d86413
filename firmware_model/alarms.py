"""The alarm catalogue and the panel of active alarms: priority, latching, repeat, acknowledgement.

Two audible alarms: a three-second two-tone (critical) and a one-second single tone
(non-critical) (domain.md §1.1 [V S4]; the mapping is [M]). Low Battery Reset and EOS are
critical, ERI non-critical (§1.1 [V S10]); motor stall is two-tone (§1.1 [V S3]); empty
reservoir is critical and low reservoir non-critical (§1.1, [M]). Repeat intervals were not
found: critical every 10 min and non-critical every 60 min, both configurable (§1.1, §6 [D]).
Several alarms may be active at once; only the highest priority sounds (SR-24, §4.5).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .units import TICKS_PER_MINUTE


class Priority(enum.IntEnum):
    NON_CRITICAL = 1  # single tone, 1 s
    CRITICAL = 2      # two-tone, 3 s


class AlarmCode(enum.IntEnum):
    RESERVOIR_LOW = 1
    RESERVOIR_EMPTY = 2
    ELECTIVE_REPLACEMENT = 3   # ERI
    END_OF_SERVICE = 4         # EOS
    REFILL_DISCREPANCY = 5     # pocket fill or leak suspected at refill (domain.md §3.4)
    OCCLUSION = 6              # the outlet holds back what the pump pushes (domain.md §5)
    MOTOR_STALL = 7            # commanded steps not achieved, e.g. an MRI magnet (domain.md §1.1)


@dataclass(frozen=True)
class AlarmSpec:
    """One catalogue entry.

    latching: stays active after its condition clears, until acknowledged.
    stops_delivery: the motor stops while it is active (and any bolus is halted, SR-5).
    """

    code: AlarmCode
    priority: Priority
    latching: bool
    stops_delivery: bool
    source: str


CATALOGUE: dict[AlarmCode, AlarmSpec] = {
    s.code: s
    for s in (
        AlarmSpec(AlarmCode.RESERVOIR_LOW, Priority.NON_CRITICAL, False, False,
                  "SR-11: non-critical, therapy continues (domain.md §4.5, §1.1 [M])"),
        AlarmSpec(AlarmCode.RESERVOIR_EMPTY, Priority.CRITICAL, False, True,
                  "SR-12: critical, delivery stops until refill (domain.md §4.5, §6 [M])"),
        AlarmSpec(AlarmCode.ELECTIVE_REPLACEMENT, Priority.NON_CRITICAL, True, False,
                  "ERI non-critical (domain.md §1.1 [V S10])"),
        AlarmSpec(AlarmCode.END_OF_SERVICE, Priority.CRITICAL, True, True,
                  "EOS critical, the pump stops (domain.md §1.1 [V S8, S10])"),
        AlarmSpec(AlarmCode.REFILL_DISCREPANCY, Priority.CRITICAL, True, False,
                  "possible pocket fill or leak: overdose risk, clinician must acknowledge "
                  "(domain.md §3.4 [V S54, partial])"),
        AlarmSpec(AlarmCode.OCCLUSION, Priority.CRITICAL, True, True,
                  "SR-16: high priority, flow stops until acknowledged (domain.md §4.1 [V S59], §4.5)"),
        AlarmSpec(AlarmCode.MOTOR_STALL, Priority.CRITICAL, False, True,
                  "two-tone on stall; clears when recovery is detected (domain.md §1.1 [V S3])"),
    )
}


@dataclass(frozen=True)
class AlarmSettings:
    """Repeat intervals (domain.md §6 [D]: critical 10 min, non-critical 60 min, programmable)."""

    critical_repeat_ticks: int = 10 * TICKS_PER_MINUTE
    non_critical_repeat_ticks: int = 60 * TICKS_PER_MINUTE

    def repeat_ticks(self, priority: Priority) -> int:
        return self.critical_repeat_ticks if priority == Priority.CRITICAL else self.non_critical_repeat_ticks


@dataclass(slots=True)
class ActiveAlarm:
    code: AlarmCode
    raised_tick: int
    condition: bool = True
    acknowledged: bool = False


@dataclass(slots=True)
class AlarmPanel:
    """Active alarms in the order they were raised, and the tick of the next tone."""

    active: list[ActiveAlarm] = field(default_factory=list)
    next_tone_tick: int | None = None

    def find(self, code: AlarmCode) -> ActiveAlarm | None:
        for a in self.active:
            if a.code == code:
                return a
        return None

    def is_active(self, code: AlarmCode) -> bool:
        return self.find(code) is not None

    @property
    def delivery_stopped(self) -> bool:
        return bool(self.active) and any(CATALOGUE[a.code].stops_delivery for a in self.active)

    def sounding(self) -> ActiveAlarm | None:
        """The unacknowledged alarm of highest priority (the earliest raised among equals)."""
        best = None
        for a in self.active:
            if a.acknowledged:
                continue
            if best is None or CATALOGUE[a.code].priority > CATALOGUE[best.code].priority:
                best = a
        return best

    def raise_alarm(self, code: AlarmCode, tick: int) -> bool:
        """Raise (or re-arm) an alarm; returns True when it was not active before."""
        alarm = self.find(code)
        if alarm is not None:
            alarm.condition = True
            return False
        self.active.append(ActiveAlarm(code, tick))
        return True

    def clear_condition(self, code: AlarmCode) -> bool:
        """The condition is gone; returns True when the alarm is removed (non-latching or acked)."""
        alarm = self.find(code)
        if alarm is None:
            return False
        alarm.condition = False
        if not CATALOGUE[code].latching or alarm.acknowledged:
            self.active.remove(alarm)
            return True
        return False

    def acknowledge(self, code: AlarmCode) -> bool:
        """Silence an alarm; a latched one whose condition is gone is removed. True if removed."""
        alarm = self.find(code)
        if alarm is None:
            return False
        alarm.acknowledged = True
        if not alarm.condition:
            self.active.remove(alarm)
            return True
        return False
