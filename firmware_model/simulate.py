"""Runs a prescription on the reference controller for a number of days and sums up what happened.

The clinic's schedule (first fill, priming, therapy, the patient's bolus presses, refills,
clinician boluses) is played at its ticks; the pump answers as it would. A command the pump
refuses is kept in the result with the pump's reason, never dropped in silence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .alarms import CATALOGUE, AlarmCode
from .commands import AcknowledgeAlarm, BolusKind, Command, DenyReason, PatientBolusRequest, Refill
from .controller import Controller
from .errors import ModelError
from .event_log import LogCode, Record
from .prescription import Prescription
from .units import TICKS_PER_DAY


@dataclass
class AlarmEntry:
    tick: int
    alarm: str
    priority: str
    what: str  # "on", "off" or "acknowledged"


@dataclass
class RefillEntry:
    tick: int
    expected_residual_nl: int
    measured_residual_nl: int
    injected_nl: int


@dataclass
class RunResult:
    """The summary of a run, in the pump's units; `log` is the event log as it sits in flash."""

    days: int
    drug: str
    concentration_ug_per_ml: int
    delivered_nl: int
    dose_at_tip_ng: int
    steps: int
    reservoir_nl: int
    patient_boluses_granted: int
    patient_boluses_denied: dict[str, int]
    clinician_boluses: int
    alarms: list[AlarmEntry]
    refills: list[RefillEntry]
    refused: list[tuple[int, str, str]]
    battery_months_remaining: int
    eri_tick: int | None
    eos: bool
    library_overrides: tuple[str, ...]
    sample_ticks: list[int] = field(default_factory=list)
    sample_reservoir_nl: list[int] = field(default_factory=list)
    sample_dose_ng: list[int] = field(default_factory=list)
    log: bytes = b""

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON values (the log and the daily samples left out)."""
        return {
            "days": self.days, "drug": self.drug, "concentration_ug_per_ml": self.concentration_ug_per_ml,
            "delivered_nl": self.delivered_nl, "dose_at_tip_ng": self.dose_at_tip_ng, "steps": self.steps,
            "reservoir_nl": self.reservoir_nl,
            "patient_boluses": {"granted": self.patient_boluses_granted, "denied": self.patient_boluses_denied},
            "clinician_boluses": self.clinician_boluses,
            "alarms": [vars(a) for a in self.alarms],
            "refills": [vars(r) for r in self.refills],
            "refused": [{"tick": t, "command": c, "reason": r} for t, c, r in self.refused],
            "battery": {"months_remaining": self.battery_months_remaining, "eri_tick": self.eri_tick,
                        "eos": self.eos},
            "library_overrides": list(self.library_overrides),
        }


def _agenda(rx: Prescription, days: int) -> list[tuple[int, int, Any]]:
    """(tick, order, action) for everything the clinic and the patient do; actions are commands
    or refill plans (whose measured residual depends on the pump at that moment)."""
    items: list[tuple[int, int, Any]] = [(0, 0, "first-fill")]
    if rx.priming is not None:
        items.append((0, 1, rx.priming))
    items.append((0, 2, rx.therapy))
    if rx.patient_bolus is not None:
        items.append((0, 3, rx.patient_bolus))
    end = days * TICKS_PER_DAY
    for day in range(days):
        for at in rx.patient_request_ticks:
            if day * TICKS_PER_DAY + at > 0:
                items.append((day * TICKS_PER_DAY + at, 6, PatientBolusRequest()))
    for plan in rx.refills:
        refill_days = [plan.day] if plan.every_days == 0 else range(plan.every_days, days + 1, plan.every_days)
        for day in refill_days:
            items.append((day * TICKS_PER_DAY + plan.time_ticks, 4, plan))
    for at, bolus in rx.clinician_boluses:
        items.append((at, 5, bolus))
    return sorted((i for i in items if i[0] <= end), key=lambda i: (i[0], i[1]))


def run(rx: Prescription, days: int) -> RunResult:
    """Simulate `days` days of the prescription; deterministic."""
    if days < 1:
        raise ValueError(f"days = {days}: expected at least 1")
    pump = Controller(rx.config)
    refused: list[tuple[int, str, str]] = []
    refills: list[RefillEntry] = []
    alarms: list[AlarmEntry] = []
    denied: Counter[str] = Counter()
    clinician = 0
    samples: tuple[list[int], list[int], list[int]] = ([], [], [])

    def collect(events: list[Record]) -> None:
        nonlocal clinician
        for ev in events:
            if ev.code in (LogCode.ALARM_ON, LogCode.ALARM_OFF, LogCode.ALARM_ACK):
                code = AlarmCode(ev.args[0])
                what = {LogCode.ALARM_ON: "on", LogCode.ALARM_OFF: "off", LogCode.ALARM_ACK: "acknowledged"}[ev.code]
                alarms.append(AlarmEntry(ev.tick, code.name, CATALOGUE[code].priority.name, what))
            elif ev.code == LogCode.REFILL:
                refills.append(RefillEntry(ev.tick, *ev.args))
            elif ev.code == LogCode.BOLUS_STARTED and ev.args[0] == BolusKind.CLINICIAN:
                clinician += 1
            elif ev.code == LogCode.PATIENT_BOLUS_DENIED:
                denied[DenyReason(ev.args[0]).name] += 1

    def do(tick: int, command: Command) -> None:
        try:
            pump.handle(command, tick)
        except ModelError as exc:
            refused.append((tick, type(command).__name__, str(exc)))

    agenda = _agenda(rx, days)
    next_item = 0
    for day in range(1, days + 1):
        day_end = day * TICKS_PER_DAY
        while next_item < len(agenda) and agenda[next_item][0] < day_end:
            tick, _, action = agenda[next_item]
            next_item += 1
            if action == "first-fill":
                do(tick, Refill(0, rx.fill_nl, rx.drug, rx.concentration_ug_per_ml))
            elif hasattr(action, "fill_nl"):  # a RefillPlan
                collect(pump.advance(tick))
                measured = max(0, pump.state.reservoir_nl + action.residual_error_nl)
                do(tick, Refill(measured, action.fill_nl, rx.drug, action.concentration_ug_per_ml,
                                bridge=action.bridge))
                if action.therapy is not None:
                    do(tick, action.therapy)
                # The clinician reviews the pump at the visit and acknowledges what sounds.
                for code in [a.code for a in pump.state.alarms.active if not a.acknowledged]:
                    do(tick, AcknowledgeAlarm(code))
            else:
                do(tick, action)
        collect(pump.advance(day_end))
        status = pump.status()
        samples[0].append(day_end)
        samples[1].append(status.reservoir_nl)
        samples[2].append(status.dose_at_tip_ng)
    status = pump.status()
    return RunResult(
        days=days, drug=status.drug, concentration_ug_per_ml=status.concentration_ug_per_ml,
        delivered_nl=status.delivered_nl, dose_at_tip_ng=status.dose_at_tip_ng, steps=status.steps,
        reservoir_nl=status.reservoir_nl, patient_boluses_granted=pump.state.boluses_granted,
        patient_boluses_denied=dict(sorted(denied.items())), clinician_boluses=clinician,
        alarms=alarms, refills=refills, refused=refused,
        battery_months_remaining=status.battery_months_remaining, eri_tick=pump.state.eri_tick,
        eos=status.eos, library_overrides=rx.library_overrides,
        sample_ticks=samples[0], sample_reservoir_nl=samples[1], sample_dose_ng=samples[2],
        log=pump.log.raw_records())
