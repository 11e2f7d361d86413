"""Scenario files: timed actions and expectations, each scenario naming the requirements it covers.

    [scenario]
    id = "patient-bolus"                  # unique in a suite
    title = "Patient bolus: lockout and maximum per 24 h"
    covers = ["REQ-PB-LOCKOUT", ...]      # ids from the requirement catalogue
    end = "26 h"                          # optional: run on to this time after the last step

    [[step]]
    at = "1 h"                            # pump time from the start (see firmware_model.toml_table)
    label = "first-press"                 # optional; later expectations may refer to it
    do = "patient_bolus"                  # an action (below)
    with = { ... }                        # its arguments
    expect = { answer = "BolusGranted" }  # optional: what the device must do (below)
    req = ["REQ-PB-LOCKOUT"]              # optional: the requirements these expectations guard
                                          # (default: all the scenario covers)

Actions (`do`):
- a pump command, with the model command's fields as arguments (durations accepted for every
  *_ticks field, alarm names for `alarm`): refill, program_continuous, program_flex (steps =
  [["00:00", rate_nl_per_day], ["08:00", ...]]), program_stopped, program_minimum_rate,
  clinician_bolus, priming_bolus, configure_patient_bolus, patient_bolus,
  set_low_reservoir_alarm, ack_alarm, set_clock, interrogate, status;
  with `damage = NAME` the command's frame goes out broken in that way (hil.damage: cobs,
  too_short, length, extra_byte, crc, version, flags, unknown_id, unsigned, bad_mac, unknown_key,
  replayed, patient_key, text_*; retry, retry_resigned, retry_unsigned send it twice): the device
  must answer as docs/protocol.md's "Bad frames" says (or not at all) and change nothing, or run
  a retried command once and answer it again; the model runs only what must run;
- a fault, at `at`: occlusion (factor = 0 total, >= 2 partial; duration, or open until a
  clear_occlusion), clear_occlusion, mri (duration), stall (duration, or open), battery_drain
  (charge_nc), reset;
- a measurement: weigh (read the balance), gravimetric (the IEC 60601-2-24 accuracy method: with
  rate_nl_per_day (the set rate r), interval = "30 s", duration = "2 h", analysis_from = "1 h");
- check (nothing happens; the expectations are judged at `at`).

Expectations (`expect`), judged on what the device did (the comparison with the reference model
is made on every step anyway):
- answer = "Accepted" | "BolusGranted" | "BolusDenied" | "StatusReport" | "refused" | "none" (no
  answer at all: a damaged frame with no header to answer);
  reason = the DenyReason or NakReason name; soft_limits = true | false;
- status = { field = value | { min = , max = } } on the device's StatusReport now (enums and
  alarms by name, "none" for an empty optional field);
- alarms_active = [names], alarms_inactive = [names];
- logged = [LogCode names] and not_logged = [...]: records since the step named by `since`
  (default: the previous step);
- alarm_raised = { alarm = NAME, since = LABEL, within = DURATION }: its ALARM_ON record falls
  within that time of the labelled step (the latency is reported as a figure);
- no_steps_after_alarm = NAME: the motor made no step after that alarm was raised (SR-19);
- mass_gain_ug = { since = LABEL, min = , max = }: the balance's gain since a labelled weigh;
- mean_error_pct = { max_abs = N }: a gravimetric step's mean flow error E over the analysis period.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from firmware_model import commands as c
from firmware_model.alarms import AlarmCode
from firmware_model.event_log import LogCode
from firmware_model.toml_table import Table, duration_ticks, read_toml, time_of_day

from .damage import check_damage
from .errors import ScenarioError
from .wire_model import WIRE_TYPES

COMMANDS: dict[str, type] = {
    "refill": c.Refill, "program_continuous": c.ProgramContinuous, "program_flex": c.ProgramFlex,
    "program_stopped": c.ProgramStopped, "program_minimum_rate": c.ProgramMinimumRate,
    "clinician_bolus": c.ClinicianBolus, "priming_bolus": c.PrimingBolus,
    "configure_patient_bolus": c.ConfigurePatientBolus, "patient_bolus": c.PatientBolusRequest,
    "set_low_reservoir_alarm": c.SetLowReservoirAlarm, "ack_alarm": c.AcknowledgeAlarm,
    "set_clock": c.SetClock, "interrogate": c.Interrogate, "status": c.GetStatus,
}
FAULT_ACTIONS = {"occlusion": "occlusion", "clear_occlusion": "occlusion", "mri": "mri", "stall": "stall",
                 "battery_drain": "battery_drain", "reset": "reset"}
MEASUREMENTS = {"weigh", "gravimetric", "check"}
ACTIONS = set(COMMANDS) | set(FAULT_ACTIONS) | MEASUREMENTS
ANSWERS = ("Accepted", "BolusGranted", "BolusDenied", "StatusReport", "refused", "none")
EXPECTATIONS = {"answer", "reason", "soft_limits", "status", "alarms_active", "alarms_inactive", "logged",
                "not_logged", "since", "alarm_raised", "no_steps_after_alarm", "mass_gain_ug", "mean_error_pct"}
_FAULT_ARGS = {"occlusion": {"factor", "duration"}, "clear_occlusion": set(), "mri": {"duration"},
               "stall": {"duration"}, "battery_drain": {"charge_nc"}, "reset": set()}
_MEASUREMENT_ARGS = {"weigh": set(), "check": set(),
                     "gravimetric": {"rate_nl_per_day", "interval", "duration", "analysis_from", "windows_min"}}


@dataclass(frozen=True)
class Step:
    """One timed action of a scenario, with its checked arguments and expectations."""

    index: int
    at_tick: int
    label: str
    do: str
    args: Mapping[str, Any]          # a command: the model command itself under "command"
    expect: Mapping[str, Any]
    requirements: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.label or f"step {self.index + 1} ({self.do})"

    @property
    def fault(self) -> str | None:
        """The rig fault this step needs, if it is one."""
        return FAULT_ACTIONS.get(self.do)


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    covers: tuple[str, ...]
    steps: tuple[Step, ...]
    end_tick: int
    source: str = ""
    description: str = ""
    labels: Mapping[str, Step] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)   # the parsed file, kept for recordings

    @property
    def faults(self) -> set[str]:
        return {s.fault for s in self.steps if s.fault is not None}

    @property
    def needs_balance(self) -> bool:
        return any(s.do in ("weigh", "gravimetric") for s in self.steps)


def load_scenario(path: Path | str) -> Scenario:
    """A scenario file, checked; ScenarioError names the file, the key and what was expected."""
    path = Path(path)
    data = read_toml(path, ScenarioError)
    try:
        return scenario_from(data, str(path))
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def scenario_from(data: Mapping[str, Any], source: str = "scenario") -> Scenario:
    """A parsed scenario document, checked."""
    doc = Table(data, "scenario file", {"scenario", "step"}, ScenarioError)
    head = Table(doc.raw("scenario"), "scenario", {"id", "title", "covers", "end", "description"}, ScenarioError)
    covers = head.strings("covers")
    if not covers:
        raise ScenarioError("scenario.covers = []: expected the ids of the requirements it covers")
    raw_steps = doc.raw("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError("[[step]]: expected at least one step")
    steps: list[Step] = []
    labels: dict[str, Step] = {}
    for i, raw in enumerate(raw_steps):
        step = _step(Table(raw, f"step[{i}]", {"at", "label", "do", "with", "damage", "expect", "req"},
                           ScenarioError), i, covers, labels)
        if steps and step.at_tick < steps[-1].at_tick:
            raise ScenarioError(f"step[{i}].at: {step.at_tick} ticks is before the step before it "
                                f"({steps[-1].at_tick}); expected steps in time order")
        if step.fault is not None and steps and step.at_tick == steps[-1].at_tick and step.do != "reset":
            raise ScenarioError(f"step[{i}].at: a fault must come after the step before it (a fault is set up "
                                "ahead of its tick); expected a later time")
        if step.label:
            if step.label in labels:
                raise ScenarioError(f"step[{i}].label = {step.label!r}: used twice; expected unique labels")
            labels[step.label] = step
        steps.append(step)
    end = max([head.duration("end", 0)] + [s.at_tick + s.args.get("duration_ticks", 0) for s in steps
                                            if s.do == "gravimetric"] + [steps[-1].at_tick])
    return Scenario(head.text("id"), head.text("title"), covers, tuple(steps), end, source,
                    head.text("description", ""), labels, dict(data))


def _step(t: Table, index: int, covers: tuple[str, ...], labels: Mapping[str, Step]) -> Step:
    do = t.text("do")
    if do not in ACTIONS:
        raise ScenarioError(f"{t.name}.do = {do!r}: expected one of {sorted(ACTIONS)}")
    where = f"{t.name}.with"
    if t.has("damage") and do not in COMMANDS:
        raise ScenarioError(f"{t.name}.damage: step does {do!r}; expected a command step (its frame is damaged)")
    if do in COMMANDS:
        args: dict[str, Any] = {"command": _command(COMMANDS[do], t.raw("with", {}), where)}
        if t.has("damage"):
            args["damage"] = check_damage(t.text("damage"), WIRE_TYPES[COMMANDS[do]], f"{t.name}.damage").name
    else:
        allowed = _FAULT_ARGS.get(do) or _MEASUREMENT_ARGS.get(do, set())
        w = Table(t.raw("with", {}), where, allowed, ScenarioError)
        args = {}
        if do in ("occlusion", "mri", "stall") and w.has("duration"):
            args["duration_ticks"] = w.duration("duration")
        if do == "mri" and "duration_ticks" not in args:
            raise ScenarioError(f"{where}.duration: missing; an MRI scan needs its duration")
        if do == "occlusion":
            args["factor"] = w.integer("factor", 0)
            if args["factor"] == 1:
                raise ScenarioError(f"{where}.factor = 1: expected 0 (total) or >= 2 (partial)")
        if do == "battery_drain":
            args["charge_nc"] = w.integer("charge_nc", minimum=1)
        if do == "gravimetric":
            args.update(rate_nl_per_day=w.integer("rate_nl_per_day", minimum=1),
                        interval_ticks=w.duration("interval", "30 s"), duration_ticks=w.duration("duration", "2 h"),
                        analysis_from_ticks=w.duration("analysis_from", "1 h"))
            windows = w.raw("windows_min", [2, 5, 11, 19, 31])
            if not isinstance(windows, list) or not all(isinstance(x, (int, float)) and x > 0 for x in windows):
                raise ScenarioError(f"{where}.windows_min = {windows!r}: expected a list of minutes")
            args["windows_min"] = tuple(windows)
            if not 0 < args["interval_ticks"] <= args["analysis_from_ticks"] < args["duration_ticks"]:
                raise ScenarioError(f"{where}: expected 0 < interval <= analysis_from < duration")
    expect = _expect(Table(t.raw("expect", {}), f"{t.name}.expect", EXPECTATIONS, ScenarioError), do, labels)
    req = t.strings("req", list(covers))
    unknown = set(req) - set(covers)
    if unknown:
        raise ScenarioError(f"{t.name}.req = {sorted(unknown)}: not among scenario.covers; expected some of "
                            f"{list(covers)}")
    return Step(index, t.duration("at"), t.text("label", ""), do, args, expect, tuple(req))


def _command(cls: type, raw: Any, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    w = Table(raw, where, set(fields), ScenarioError)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if not w.has(name):
            if f.default is dataclasses.MISSING:
                raise ScenarioError(f"{where}.{name}: missing; {cls.__name__} needs it")
            continue
        value = w.raw(name)
        if name.endswith("_ticks"):
            values[name] = duration_ticks(value, f"{where}.{name}", ScenarioError)
        elif name == "alarm":
            values[name] = _enum(AlarmCode, value, f"{where}.{name}")
        elif name == "steps":
            values[name] = _flex_steps(value, f"{where}.{name}")
        elif name == "drug":
            values[name] = w.text(name)
        elif name == "bridge":
            values[name] = w.flag(name)
        else:
            values[name] = w.integer(name)
    return cls(**values)


def _flex_steps(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(f"{where} = {value!r}: expected a list of [\"HH:MM\", rate_nl_per_day]")
    out = []
    for i, item in enumerate(value):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], int)):
            raise ScenarioError(f"{where}[{i}] = {item!r}: expected [\"HH:MM\", rate_nl_per_day]")
        out.append((time_of_day(item[0], f"{where}[{i}][0]", ScenarioError), item[1]))
    return tuple(out)


def _enum(enum_type: type, value: Any, where: str) -> Any:
    try:
        return enum_type[value]
    except (KeyError, TypeError):
        raise ScenarioError(f"{where} = {value!r}: expected one of {[m.name for m in enum_type]}") from None


def _expect(t: Table, do: str, labels: Mapping[str, Step]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.has("answer"):
        if do not in COMMANDS:
            raise ScenarioError(f"{t.name}.answer: step does {do!r}, which has no answer; expected a command step")
        out["answer"] = t.text("answer", choices=ANSWERS)
    if t.has("reason"):
        out["reason"] = t.text("reason")
    if t.has("soft_limits"):
        out["soft_limits"] = t.flag("soft_limits")
    if t.has("status"):
        status = t.raw("status")
        fields = {f.name for f in dataclasses.fields(c.StatusReport)}
        Table(status, f"{t.name}.status", fields, ScenarioError)
        out["status"] = dict(status)
    for key in ("alarms_active", "alarms_inactive"):
        if t.has(key):
            out[key] = tuple(_enum(AlarmCode, a, f"{t.name}.{key}") for a in t.strings(key))
    for key in ("logged", "not_logged"):
        if t.has(key):
            out[key] = tuple(_enum(LogCode, a, f"{t.name}.{key}") for a in t.strings(key))
    if t.has("since"):
        out["since"] = _label(t.text("since"), labels, f"{t.name}.since")
    if t.has("alarm_raised"):
        a = t.sub("alarm_raised", {"alarm", "since", "within"})
        out["alarm_raised"] = (_enum(AlarmCode, a.text("alarm"), f"{a.name}.alarm"),
                               _label(a.text("since"), labels, f"{a.name}.since"), a.duration("within"))
    if t.has("no_steps_after_alarm"):
        out["no_steps_after_alarm"] = _enum(AlarmCode, t.text("no_steps_after_alarm"), f"{t.name}.no_steps_after_alarm")
    if t.has("mass_gain_ug"):
        if do != "weigh":
            raise ScenarioError(f"{t.name}.mass_gain_ug: expected on a weigh step")
        g = t.sub("mass_gain_ug", {"since", "min", "max"})
        since = _label(g.text("since"), labels, f"{g.name}.since")
        if since.do != "weigh":
            raise ScenarioError(f"{g.name}.since = {since.label!r}: expected the label of a weigh step")
        lo, hi = (g.integer(k, minimum=-(1 << 40)) if g.has(k) else None for k in ("min", "max"))
        out["mass_gain_ug"] = (since, lo, hi)
    if t.has("mean_error_pct"):
        if do != "gravimetric":
            raise ScenarioError(f"{t.name}.mean_error_pct: expected on a gravimetric step")
        out["mean_error_pct"] = t.sub("mean_error_pct", {"max_abs"}).number("max_abs")
    return out


def _label(label: str, labels: Mapping[str, Step], where: str) -> Step:
    if label not in labels:
        raise ScenarioError(f"{where} = {label!r}: no earlier step has that label; expected one of {sorted(labels)}")
    return labels[label]


# ---- suites ---------------------------------------------------------------------------------------

def suite_files(paths: list[Path]) -> list[Path]:
    """The scenario files of suites given as folders (every *.toml but requirements.toml) or files."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.glob("*.toml") if f.name != "requirements.toml")
        elif p.exists():
            out.append(p)
        else:
            raise ScenarioError(f"suite {str(p)!r}: no such file or folder; expected a scenario file or a folder "
                                "of them")
    return out


def load_suite(paths: list[Path]) -> list[Scenario]:
    """Every scenario of the suites, checked; ids must be unique."""
    scenarios = [load_scenario(f) for f in suite_files(paths)]
    seen: dict[str, str] = {}
    for s in scenarios:
        if s.id in seen:
            raise ScenarioError(f"{s.source}: scenario.id = {s.id!r} is also the id of {seen[s.id]}; expected unique ids")
        seen[s.id] = s.source
    return scenarios
