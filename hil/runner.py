"""The scenario runner: the device and the reference model, driven side by side on one virtual clock.

For each scenario the rig opens a session with a fresh device, and the runner builds a fresh
reference pump from the rig's declared pump, calibration and patient. Then, step by step, both get
the same inputs at the same tick: the runner moves the device's clock (AdvanceTime: lockstep rigs)
and the model's to the step, checking every Telemetry frame the device sent on the way against the
model at that frame's tick; it sends the step's command to both and compares the answers; it sets
a fault up on both (a plant fault ahead of its tick, a battery drain or a reset at it); it reads
the balance and compares the mass with the model's outflow; it compares the device's status with
the model's; and it judges the step's expectations on what the device did. At the end it compares
the event logs. The first divergence is kept with the frames around it (hil.compare); the
expectations' checks and the measured figures go into the ScenarioResult.
"""

from __future__ import annotations

import dataclasses
import time
from importlib.metadata import version as _version
from typing import Any, Callable, Protocol, Sequence

from firmware_model.alarms import AlarmCode
from firmware_model.commands import Accepted, BolusDenied, StatusReport
from firmware_model.errors import ModelError
from firmware_model.event_log import LogCode, Record
from firmware_model.plant import Jam, MriExposure, Occlusion
from firmware_model.units import TICK_HZ, TICKS_PER_MINUTE
from protocol import messages as m

from .balance import mass_of_volume_ug
from .compare import compare_answers, compare_logs, compare_values
from .errors import HilError, RigError
from .gravimetric import analyse
from .lockstep import InStep, Refusal
from .rig import Rig
from .scenario import Scenario, Step
from .session import RigSession
from .verdicts import Check, DeviceIdentity, Divergence, ScenarioResult, TelemetryPoint, Verdict

AHEAD_FAULTS = ("occlusion", "clear_occlusion", "mri", "stall")   # plant faults: set up before their tick
TOOL_VERSION = _version("ithil")


class Progress(Protocol):
    def scenario_started(self, scenario_id: str, title: str, simulated_ticks: int) -> None: ...
    def advanced(self, to_tick: int) -> None: ...
    def scenario_finished(self, result: ScenarioResult) -> None: ...


class _Failed(Exception):
    """The run's first failure, when the caller asked to stop there (run_scenario's stop_at_failure)."""


def run_scenario(rig: Rig, scenario: Scenario, progress: Progress | None = None,
                 prompt: Callable[[str], None] | None = None, recorder: Any = None,
                 stop_at_failure: bool = False) -> ScenarioResult:
    """Run one scenario on a fresh device of `rig` beside the reference model; its result.
    `recorder` (a hil.recording.Recorder): every frame and balance line of the run goes into a
    section of its own, with the scenario and the rig, so `ithil replay` can judge it again.
    `stop_at_failure`: end the run at its first divergence or failed check (a FAIL with just that),
    for a caller that needs only the verdict: a mutation campaign, where a wrong firmware may
    otherwise run on for long (a bolus every two ticks)."""
    result = ScenarioResult(scenario.id, scenario.title, scenario.covers, source=scenario.source)
    config = rig.config
    missing = sorted(f for f in scenario.faults if f not in config.faults)
    if missing:
        result.verdict, result.reason = Verdict.NOT_RUN, (f"rig {config.name!r} cannot inject {missing} "
                                                          "(its rig.toml [faults])")
        return result
    if scenario.needs_balance and config.balance is None:
        result.verdict, result.reason = Verdict.NOT_RUN, f"rig {config.name!r} has no balance ([balance])"
        return result
    started = time.perf_counter()
    try:
        with rig.open(prompt) as session:
            if recorder is not None:
                recorder.start_section(recording_meta(rig, scenario, session))
                session.client.transport.record(recorder)
                if session.balance is not None:
                    session.balance.recorder = recorder
            _Run(rig, scenario, session, result, progress, stop_at_failure).run()
    except _Failed:
        pass
    except (HilError, ModelError, OSError) as exc:
        result.verdict, result.reason = Verdict.ERROR, f"{type(exc).__name__}: {exc}"
    result.wall_s = time.perf_counter() - started
    return result.finish()


def run_suite(rig: Rig, scenarios: Sequence[Scenario], progress: Progress | None = None,
              prompt: Callable[[str], None] | None = None, recorder: Any = None) -> list[ScenarioResult]:
    """Every scenario, one after the other, each on a fresh device."""
    results = []
    for scenario in scenarios:
        if progress is not None:
            progress.scenario_started(scenario.id, scenario.title, scenario.end_tick)
        result = run_scenario(rig, scenario, progress, prompt, recorder)
        if progress is not None:
            progress.scenario_finished(result)
        results.append(result)
    return results


def recording_meta(rig: Rig, scenario: Scenario, session: RigSession) -> dict[str, Any]:
    """What a recording's section keeps beside the frames: the scenario and the rig as parsed (the
    rig's keys left out: a recording may travel), where the device was, and the tool."""
    config = rig.config
    return {"scenario": {"id": scenario.id, "source": scenario.source, "document": dict(scenario.document)},
            "rig": {"name": config.name, "kind": config.kind, "folder": str(config.folder),
                    "document": {k: v for k, v in config.document.items() if k != "keys"}},
            "url": session.client.url, "device": session.description, "ithil": TOOL_VERSION}


class _Run(InStep):
    """One scenario on one session (see the module docstring)."""

    def __init__(self, rig: Rig, scenario: Scenario, session: RigSession, result: ScenarioResult,
                 progress: Progress | None, stop_at_failure: bool = False) -> None:
        super().__init__(session, rig.config)
        self.stop_at_failure = stop_at_failure
        config = rig.config
        self.scenario, self.result, self.progress = scenario, result, progress
        self.client = session.client
        self.density = config.balance.density_ug_per_ul if config.balance is not None else 0
        self.weighed: dict[str, int] = {}             # label -> the device's balance reading, µg
        self.telemetry: list[Any] = []                # the device's Telemetry frames, in order
        self.device_log: list[Record] = []
        self.device_status: StatusReport | None = None
        self.open_occlusion: tuple[int, int] | None = None  # (start tick, factor) of one with no end
        self.where, self.guards = "at the start", scenario.covers    # the step under way and what it guards

    # ---- the scenario ---------------------------------------------------------------------------

    def run(self) -> None:
        hello = self.client.hello()
        self.result.device = DeviceIdentity(hello.firmware, hello.serial_number, hello.version, TOOL_VERSION)
        trace = self.result.trace
        trace.stroke_nl = self.reference.config.mechanism.stroke_nl
        detector = self.reference.config.detector
        trace.occlusion_threshold_pa = detector.threshold_pa if detector is not None else None
        self.compare_status()
        previous: Step | None = None
        for step in self.scenario.steps:
            self.where, self.guards = step.name, step.requirements
            if step.do in AHEAD_FAULTS:
                self.fault_ahead(step)
            self.advance(step.at_tick)
            if step.fault is not None and step.do not in AHEAD_FAULTS:
                self.fault_at(step)
            answers = self.perform(step)
            self.compare_status()
            self.judge(step, previous, answers)
            previous = step
        self.where, self.guards = "at the end", self.scenario.covers
        self.advance(self.scenario.end_tick)
        self.compare_status()
        self.compare_log()
        self.result.simulated_ticks = self.now
        trace.alarms = [(r.tick, _alarm_name(r.args[0]), r.code == LogCode.ALARM_ON) for r in self.device_log
                        if r.code in (LogCode.ALARM_ON, LogCode.ALARM_OFF)]

    def diverged(self, divergence: Divergence) -> None:
        """The first divergence is the result's; the scenario goes on, its expectations judged
        (unless it stops at its first failure)."""
        self.result.divergence = self.divergence
        if self.stop_at_failure:
            raise _Failed

    def check(self, found: Divergence | None) -> None:
        """A comparison made in the step under way (only the first divergence counts)."""
        if self.divergence is None:
            self.found(found, self.where, tuple(self.guards))

    # ---- time -----------------------------------------------------------------------------------

    def advance(self, to_tick: int) -> None:
        """Both pumps to `to_tick` (InStep.advance_to), the progress told."""
        self.advance_to(to_tick)
        if self.progress is not None:
            self.progress.advanced(to_tick)

    def on_telemetry(self, frame: Any, expected: Any | None) -> None:
        self.telemetry.append(frame)
        if expected is not None:
            self.result.trace.device.append(_point(frame))
            self.result.trace.model.append(_point(expected))

    # ---- faults ---------------------------------------------------------------------------------

    def fault_ahead(self, step: Step) -> None:
        """A plant fault (occlusion, its clearing, MRI, stall), set up on both before its tick."""
        t, a, ref = step.at_tick, step.args, self.reference
        end = t + a["duration_ticks"] if "duration_ticks" in a else None
        if step.do == "occlusion":
            self._fault("occlusion", m.InjectOcclusion, dict(start_tick=t, end_tick=end, factor=a["factor"]),
                        lambda: ref.occlusion(Occlusion(t, end, a["factor"])), t, end)
            self.open_occlusion = (t, a["factor"]) if end is None else None
        elif step.do == "clear_occlusion":
            if self.open_occlusion is None:
                raise RigError(f"{step.name}: clear_occlusion with no open occlusion before it")
            start, factor = self.open_occlusion
            self._fault("occlusion", m.InjectOcclusion, dict(start_tick=start, end_tick=t, factor=factor),
                        lambda: ref.occlusion(Occlusion(start, t, factor)), None, t)
            self.open_occlusion = None
        elif step.do == "mri":
            self._fault("mri", m.InjectMri, dict(start_tick=t, end_tick=end),
                        lambda: ref.mri(MriExposure(t, end)), t, end)  # type: ignore[arg-type]
        elif step.do == "stall":
            self._fault("stall", m.InjectStall, dict(start_tick=t, end_tick=end), lambda: ref.stall(Jam(t, end)),
                        t, end)

    def fault_at(self, step: Step) -> None:
        """A battery drain or a reset, at the step's tick (both pumps are there)."""
        t, ref = step.at_tick, self.reference
        if step.do == "battery_drain":
            charge = step.args["charge_nc"]
            self._fault("battery_drain", m.InjectBatteryDrain, dict(at_tick=t, charge_nc=charge),
                        lambda: ref.battery_drain(t, charge), t, None)
        else:
            self._fault("reset", m.InjectReset, dict(at_tick=t), lambda: ref.reset(t), t, None)

    def _fault(self, fault: str, message: Any, values: dict[str, Any], on_model: Callable[[], None],
               start: int | None, end: int | None) -> None:
        refused = self.fault(fault, message, values, on_model, start, end, self.where, tuple(self.guards))
        if refused is not None and self.divergence is None:
            raise refused           # both refused the scenario's fault: the scenario is wrong, not the device

    # ---- actions --------------------------------------------------------------------------------

    def perform(self, step: Step) -> list[Any]:
        """Do the step's action on both; the device's answers (empty for faults and measurements)."""
        if "damage" in step.args:
            got = []
            for i, (expected, got) in enumerate(self.damaged(step.args["command"], step.args["damage"])):
                found = compare_answers(expected, got, self.tol, self.now)
                if found is not None:
                    found = dataclasses.replace(found, quantity=f"frame {i + 1} ({step.args['damage']}): {found.quantity}")
                self.check(found)
            return got
        if "command" in step.args:
            expected, got, _ = self.both(step.args["command"])
            self.check(compare_answers(expected, got, self.tol, self.now))
            return got
        if step.do == "weigh":
            self.weighed[step.label or step.name] = self.weigh()
        elif step.do == "gravimetric":
            self.gravimetric(step)
        return []

    def weigh(self) -> int:
        """A balance reading, checked against the model's outflow at this tick."""
        balance = self.session.balance
        if balance is None:
            raise RigError("this scenario weighs, but the rig has no balance")
        got = balance.mass_ug()
        expected = mass_of_volume_ug(self.reference.outflow_nl(), self.density)
        self.result.trace.balance.append((self.now, got, expected))
        if abs(got - expected) > self.tol.mass_ug:
            self.check(Divergence(self.now, "balance mass_ug", expected, got, f"±{self.tol.mass_ug}"))
        return got

    def gravimetric(self, step: Step) -> None:
        """The IEC 60601-2-24 accuracy test: a reading every interval for the duration; start-up
        curve, mean error over the analysis period and trumpet curve, on the device's readings."""
        a, t0 = step.args, step.at_tick
        samples = [(t0, self.weigh())]
        for k in range(1, a["duration_ticks"] // a["interval_ticks"] + 1):
            self.advance(t0 + k * a["interval_ticks"])
            samples.append((self.now, self.weigh()))
        found = analyse(samples, a["rate_nl_per_day"], self.density, t0 + a["analysis_from_ticks"],
                        windows_min=a["windows_min"])
        name = step.label or step.name
        figures = self.result.figures
        figures[f"{name}.mean_error_pct"] = round(found.mean_error_percent, 3)
        for point in found.trumpet:
            figures[f"{name}.Ep_max_{point.window_min:g}min_pct"] = round(point.max_error_percent, 2)
            figures[f"{name}.Ep_min_{point.window_min:g}min_pct"] = round(point.min_error_percent, 2)
        self.result.gravimetric[name] = found

    # ---- observations ---------------------------------------------------------------------------

    def compare_status(self) -> None:
        self.device_status = got = self.client.status()
        self.check(compare_values("status", self.reference.status(), got, self.tol, self.now))

    def read_device_log(self) -> list[Record]:
        """The device's log, read on from where the last read stopped."""
        first = self.device_log[-1].seq + 1 if self.device_log else 0
        self.device_log += self.client.read_log(first)
        return self.device_log

    def compare_log(self) -> None:
        """The device's log against the model's, over what the model's ring still holds (records
        read earlier may since have been overwritten there)."""
        expected = list(self.reference.controller.log.records())
        first = expected[0].seq if expected else 0
        got = [r for r in self.read_device_log() if r.seq >= first]
        self.check(compare_logs(expected, got, self.tol, self.now))

    # ---- expectations ---------------------------------------------------------------------------

    def judge(self, step: Step, previous: Step | None, answers: list[Any]) -> None:
        e = step.expect
        if not e:
            return
        checks = self.result.checks

        def check(what: str, passed: bool, measured: Any) -> None:
            checks.append(Check(step.name, what, bool(passed), str(measured), step.requirements))
            if self.stop_at_failure and not passed:
                raise _Failed

        answer = answers[-1] if answers else None
        if "answer" in e:
            kind = "refused" if isinstance(answer, Refusal) else "none" if answer is None else type(answer).__name__
            check(f"answered {e['answer']}", kind == e["answer"] or (e["answer"] == "Accepted" and
                                                                     any(isinstance(a, Accepted) for a in answers)),
                  _answer_text(answers))
        if "reason" in e:
            reason = (answer.reason if isinstance(answer, Refusal) else
                      answer.reason.name if isinstance(answer, BolusDenied) else None)
            check(f"reason {e['reason']}", reason == e["reason"], reason)
        if "soft_limits" in e:
            flagged = any(isinstance(a, Accepted) and a.soft_limits for a in answers)
            check(f"soft limits flagged: {e['soft_limits']}", flagged == e["soft_limits"], _answer_text(answers))
        status = self.device_status
        assert status is not None
        for name, want in e.get("status", {}).items():
            value = getattr(status, name)
            shown = _plain(value)
            if isinstance(want, dict):
                lo, hi = want.get("min"), want.get("max")
                ok = (lo is None or shown >= lo) and (hi is None or shown <= hi)
                check(f"status.{name} in [{lo}, {hi}]", ok, shown)
            else:
                wanted = None if want == "none" else want      # TOML has no null: "none" stands for it
                check(f"status.{name} = {want!r}", shown == wanted, shown)
        for alarm in e.get("alarms_active", ()):
            check(f"alarm {alarm.name} active", alarm in status.alarms, [a.name for a in status.alarms])
        for alarm in e.get("alarms_inactive", ()):
            check(f"alarm {alarm.name} not active", alarm not in status.alarms, [a.name for a in status.alarms])
        if "logged" in e or "not_logged" in e:
            since = e["since"].at_tick if "since" in e else (previous.at_tick if previous else 0)
            codes = {r.code for r in self.read_device_log() if since <= r.tick <= self.now}
            for code in e.get("logged", ()):
                check(f"{code.name} logged since tick {since}", code in codes, sorted(c.name for c in codes))
            for code in e.get("not_logged", ()):
                check(f"{code.name} not logged since tick {since}", code not in codes, sorted(c.name for c in codes))
        if "alarm_raised" in e:
            alarm, since_step, within = e["alarm_raised"]
            raised = self.alarm_on_tick(alarm, since_step.at_tick)
            latency = None if raised is None else raised - since_step.at_tick
            if latency is not None:
                self.result.figures[f"{step.name}.{alarm.name.lower()}_latency_min"] = round(latency / TICKS_PER_MINUTE, 2)
            check(f"alarm {alarm.name} raised within {_minutes(within)} of {since_step.name}",
                  latency is not None and latency <= within,
                  "never" if latency is None else f"after {_minutes(latency)}")
        if "no_steps_after_alarm" in e:
            alarm = e["no_steps_after_alarm"]
            raised = self.alarm_on_tick(alarm, 0)
            after = [f.steps for f in self.telemetry if raised is not None and f.tick >= raised]
            moved = None if not after else status.steps - after[0]
            check(f"no motor step after {alarm.name}", moved == 0,
                  "alarm never raised" if raised is None else "no telemetry after the alarm" if moved is None
                  else f"{moved} steps after it")
        if "mass_gain_ug" in e:
            since_step, lo, hi = e["mass_gain_ug"]
            gain = self.weighed[step.label or step.name] - self.weighed[since_step.label]
            self.result.figures[f"{step.name}.mass_gain_ug"] = gain
            check(f"balance gain since {since_step.name} in [{lo}, {hi}] µg",
                  (lo is None or gain >= lo) and (hi is None or gain <= hi), f"{gain} µg")
        if "mean_error_pct" in e:
            error = self.result.figures[f"{step.label or step.name}.mean_error_pct"]
            check(f"mean flow error |E| <= {e['mean_error_pct']:g} %", abs(error) <= e["mean_error_pct"], f"{error:+.2f} %")

    def alarm_on_tick(self, alarm: AlarmCode, since: int) -> int | None:
        """The tick of the device's first ALARM_ON record of `alarm` at or after `since`."""
        for r in self.read_device_log():
            if r.code == LogCode.ALARM_ON and r.tick >= since and r.args[0] == alarm:
                return r.tick
        return None


def _point(frame: Any) -> TelemetryPoint:
    return TelemetryPoint(frame.tick, frame.steps, frame.reservoir_nl, frame.pressure_pa, frame.active_alarms)


def _alarm_name(code: int) -> str:
    try:
        return AlarmCode(code).name
    except ValueError:
        return f"alarm {code}"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value.name if hasattr(value, "name") and not isinstance(value, str) else value


def _answer_text(answers: list[Any]) -> str:
    return ", ".join(type(a).__name__ + (f"({a.reason})" if isinstance(a, Refusal) else
                                        f"({a.reason.name})" if isinstance(a, BolusDenied) else "")
                     for a in answers) or "no answer"


def _minutes(ticks: int) -> str:
    return f"{ticks / TICKS_PER_MINUTE:.2f} min" if ticks < 120 * TICKS_PER_MINUTE else f"{ticks / TICK_HZ / 3600:.2f} h"
