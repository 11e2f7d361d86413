"""What a run found: checks, divergences, scenario results and a verdict per requirement.

A scenario result holds every check it made (an expectation of the scenario file, judged on what
the device did) and the first divergence between the device and the reference model (hil.compare).
A requirement's verdict is the worst over the scenarios that cover it: FAIL if any failed a check
tied to it or diverged from the model in a step that guards it, ERROR if one could not finish, NOT_RUN if none ran (a rig
without the fault a scenario needs), PASS only when every covering scenario ran and passed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


class Verdict(enum.Enum):
    """Ordered from best to worst; a requirement takes the worst of its scenarios'."""

    PASS = "pass"
    NOT_RUN = "not run"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Verdict).index(self)


@dataclass(frozen=True)
class Divergence:
    """The first place the device and the reference model disagree beyond the rig's tolerance."""

    tick: int
    quantity: str                # e.g. "telemetry.steps", "answer[0].reason", "log[12].code"
    expected: object             # the reference model's value
    got: object                  # the device's value
    tolerance: str = "exact"
    context: tuple[str, ...] = ()  # the frames around it, oldest first
    where: str = ""              # the step it came up in (or "at the end")
    requirements: tuple[str, ...] = ()  # what that step guards (empty: all the scenario covers)

    def message(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return (f"first divergence at tick {self.tick}{where}: {self.quantity}: expected {self.expected!r} "
                f"(reference model), got {self.got!r} (device); tolerance {self.tolerance}")


@dataclass(frozen=True)
class Check:
    """One expectation of a scenario, judged on the device: what, whether it held, the measured value."""

    step: str                    # the step's label (or "at <time>")
    what: str                    # e.g. "alarm OCCLUSION raised within 2 h"
    passed: bool
    measured: str                # what the device did, in words with units
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class TelemetryPoint:
    """One telemetry frame's quantities (the device's, or the model's at the same tick)."""

    tick: int
    steps: int
    reservoir_nl: int
    pressure_pa: int
    alarm_bits: int


@dataclass
class ScenarioTrace:
    """What a report plots of one scenario: device and model side by side at the device's
    telemetry ticks, the balance readings, the alarms the device logged, and the pump's scales."""

    stroke_nl: int = 0
    occlusion_threshold_pa: int | None = None
    device: list[TelemetryPoint] = field(default_factory=list)
    model: list[TelemetryPoint] = field(default_factory=list)        # at the same ticks as `device`
    balance: list[tuple[int, int, int]] = field(default_factory=list)  # (tick, device µg, model µg)
    alarms: list[tuple[int, str, bool]] = field(default_factory=list)  # (tick, alarm, on) from the device's log


@dataclass(frozen=True)
class DeviceIdentity:
    """Who answered hello: firmware, serial number, protocol version; and the tool that judged it."""

    firmware: str = ""
    serial_number: int = 0
    protocol_version: int = 0
    tool_version: str = ""


@dataclass
class ScenarioResult:
    """How one scenario went on one rig."""

    scenario: str                # its id
    title: str
    covers: tuple[str, ...]      # requirement ids
    verdict: Verdict = Verdict.PASS
    checks: list[Check] = field(default_factory=list)
    divergence: Divergence | None = None
    reason: str = ""             # why NOT_RUN or ERROR
    figures: dict[str, float] = field(default_factory=dict)  # measured figures (latency, errors, ...)
    gravimetric: dict[str, object] = field(default_factory=dict)  # step name -> hil.gravimetric.GravimetricResult
    trace: ScenarioTrace = field(default_factory=ScenarioTrace)
    device: DeviceIdentity | None = None
    simulated_ticks: int = 0
    wall_s: float = 0.0
    source: str = ""             # the scenario file

    def finish(self) -> "ScenarioResult":
        """Set the verdict from the checks and the divergence (ERROR and NOT_RUN stay)."""
        if self.verdict in (Verdict.ERROR, Verdict.NOT_RUN):
            return self
        failed = self.divergence is not None or any(not c.passed for c in self.checks)
        self.verdict = Verdict.FAIL if failed else Verdict.PASS
        return self

    def failures(self) -> list[str]:
        """Why it did not pass, first divergence first, in words."""
        out = [self.divergence.message()] if self.divergence is not None else []
        out += [f"{c.step}: {c.what}: got {c.measured}" for c in self.checks if not c.passed]
        if self.reason:
            out.append(self.reason)
        return out


@dataclass(frozen=True)
class Requirement:
    """One entry of the requirement catalogue (suites/requirements.toml)."""

    id: str
    title: str
    text: str
    hazard: str                  # over-delivery, under-delivery, wrong drug or concentration, ...
    source: str                  # domain.md section and SR-n where one fits
    sr: str = ""


@dataclass(frozen=True)
class RequirementVerdict:
    requirement: Requirement
    verdict: Verdict
    scenarios: tuple[str, ...]   # ids of the scenarios that cover it
    why: str                     # the first failure, or the reason it did not run


def requirement_verdicts(catalogue: Mapping[str, Requirement],
                         results: Sequence[ScenarioResult]) -> list[RequirementVerdict]:
    """A verdict per catalogued requirement, in catalogue order (see the module docstring)."""
    out = []
    for req in catalogue.values():
        verdict, why, covering = None, "", []
        for result in results:
            if req.id not in result.covers:
                continue
            covering.append(result.scenario)
            mine = verdict_for(result, req.id)
            if verdict is None or mine.rank > verdict.rank:
                verdict = mine
                why = f"{result.scenario}: " + "; ".join(why_for(result, req.id)) if mine is not Verdict.PASS else ""
        out.append(RequirementVerdict(req, verdict or Verdict.NOT_RUN, tuple(covering),
                                      why or ("no scenario covers it" if verdict is None else "")))
    return out


def verdict_for(result: ScenarioResult, req_id: str) -> Verdict:
    """What one scenario says of one requirement it covers."""
    if result.verdict in (Verdict.ERROR, Verdict.NOT_RUN):
        return result.verdict
    if result.divergence is not None and _guards(result.divergence, req_id):
        return Verdict.FAIL
    return Verdict.FAIL if any(not c.passed and req_id in c.requirements for c in result.checks) else Verdict.PASS


def why_for(result: ScenarioResult, req_id: str) -> list[str]:
    """Why a scenario does not pass a requirement, in words (empty when it does)."""
    if result.verdict in (Verdict.ERROR, Verdict.NOT_RUN):
        return [result.reason]
    out = [result.divergence.message()] if result.divergence is not None and _guards(result.divergence, req_id) else []
    return out + [f"{c.step}: {c.what}: got {c.measured}" for c in result.checks
                  if not c.passed and req_id in c.requirements]


def _guards(divergence: Divergence, req_id: str) -> bool:
    return not divergence.requirements or req_id in divergence.requirements


def overall(verdicts: Iterable[RequirementVerdict | ScenarioResult]) -> Verdict:
    """The worst verdict of a run (PASS for an empty one)."""
    worst = Verdict.PASS
    for v in verdicts:
        verdict = v.verdict
        if verdict.rank > worst.rank:
            worst = verdict
    return worst
