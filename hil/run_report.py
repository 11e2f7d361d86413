"""What `ithil run` shows and writes: live progress, the verdict tables and JUnit XML for CI.

On a terminal: rich progress bars and coloured tables; elsewhere (CI, pipes) plain lines without
control codes. The JUnit file has a test case per scenario and one per requirement.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from firmware_model.units import TICK_HZ
from hil.verdicts import Divergence, RequirementVerdict, ScenarioResult, Verdict, overall

VERDICT_STYLE = {Verdict.PASS: "green", Verdict.FAIL: "red", Verdict.ERROR: "magenta", Verdict.NOT_RUN: "yellow"}
_MARK = {Verdict.PASS: "✓", Verdict.FAIL: "✗", Verdict.ERROR: "✗", Verdict.NOT_RUN: "○"}
# largest unit first; a span is shown in the largest unit it holds at least twice
_UNITS_S = (("y", 365 * 86_400), ("d", 86_400), ("h", 3_600), ("min", 60))
_REASON_CHARS = 200          # a reason in the console table or a progress line
_VALUE_CHARS = 40            # an expected or measured value inside a reason


# ---------------------------------------------------------------------------------------------
# time and text formatting

def _number(x: float) -> str:
    """One decimal, without a trailing '.0' ('26', '3.2')."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _unit_for(seconds: float) -> tuple[str, int]:
    for name, size_s in _UNITS_S:
        if seconds >= 2 * size_s:
            return name, size_s
    return "s", 1


def format_ticks(ticks: int) -> str:
    """A span of pump time in the unit that reads best ('45 s', '3.2 h', '41.2 d', '7 y')."""
    seconds = ticks / TICK_HZ
    name, size_s = _unit_for(seconds)
    return f"{_number(seconds / size_s)} {name}"


def _span(done_ticks: int, planned_ticks: int) -> str:
    """Progress through a scenario in the planned span's unit: '3.2 h of 26 h'."""
    name, size_s = _unit_for(planned_ticks / TICK_HZ)
    return f"{_number(done_ticks / TICK_HZ / size_s)} {name} of {_number(planned_ticks / TICK_HZ / size_s)} {name}"


def format_wall(wall_s: float) -> str:
    """Wall-clock time: '38.1 s', '12 min 03 s', '1 h 02 min'."""
    if wall_s < 120:
        return f"{wall_s:.1f} s"
    minutes, seconds = divmod(int(round(wall_s)), 60)
    if minutes < 120:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def real_time_ratio(simulated_ticks: int, wall_s: float) -> str:
    """How many times faster than real time, to three significant figures: '93,400×', '0.52×'."""
    if wall_s <= 0:
        return "∞×" if simulated_ticks > 0 else "0×"
    ratio = simulated_ticks / TICK_HZ / wall_s
    if ratio == 0:
        return "0×"
    if ratio >= 100:
        rounded = round(ratio, 2 - int(math.floor(math.log10(ratio))))
        return f"{rounded:,.0f}×"
    return f"{ratio:.3g}×" if ratio >= 1 else f"{ratio:.2g}×"


def _truncate(text: str, limit: int) -> str:
    """One line of at most limit characters (a device's text may hold newlines)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _short(value: object) -> str:
    return _truncate(repr(value), _VALUE_CHARS)


def _divergence_brief(d: Divergence) -> str:
    """The key facts of a divergence, with long values cut: tick, quantity, expected, got."""
    tolerance = "" if d.tolerance == "exact" else f" (tolerance {d.tolerance})"
    return (f"tick {d.tick} ({format_ticks(d.tick)}): {d.quantity}: expected {_short(d.expected)}, "
            f"got {_short(d.got)}{tolerance}")


def _first_failure(result: ScenarioResult) -> str:
    """The first reason a scenario did not pass, short enough for one line ('' if it passed)."""
    if result.verdict is Verdict.PASS:
        return ""
    failures = result.failures()
    if result.divergence is not None:
        first = _divergence_brief(result.divergence)
    else:
        first = failures[0] if failures else result.verdict.value
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return _truncate(first, _REASON_CHARS - len(more)) + more


def _reason(rv: RequirementVerdict, results_by_id: dict[str, ScenarioResult]) -> str:
    """Why a requirement did not pass, for the console: its worst scenario's first failure."""
    if rv.verdict is Verdict.PASS:
        return ""
    scenario_id = rv.why.partition(": ")[0]
    result = results_by_id.get(scenario_id) if scenario_id in rv.scenarios else None
    if result is None or rv.verdict is not Verdict.FAIL:
        return _truncate(rv.why, _REASON_CHARS)
    failed = [f"{c.step}: {c.what}: got {c.measured}" for c in result.checks
              if not c.passed and rv.requirement.id in c.requirements]
    items = ([_divergence_brief(result.divergence)] if result.divergence is not None else []) + failed
    if not items:
        return _truncate(rv.why, _REASON_CHARS)
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return _truncate(f"{scenario_id}: {items[0]}", _REASON_CHARS - len(more)) + more


def _result_line(result: ScenarioResult, done: int, total: int) -> Text:
    """One line per finished scenario: mark, verdict, id, wall and simulated time, first failure."""
    style = VERDICT_STYLE[result.verdict]
    line = Text(f"{done}/{total} ")
    line.append(f"{_MARK[result.verdict]} {result.verdict.value:<7}", style=f"bold {style}")
    line.append(f" {result.scenario}", style="bold")
    line.append(f"  {format_wall(result.wall_s)} wall, {format_ticks(result.simulated_ticks)} simulated")
    failure = _first_failure(result)
    if failure:
        line.append(f"  {failure}", style=style)
    return line


# ---------------------------------------------------------------------------------------------
# live progress

class RunProgress:
    """Progress of a suite while it runs: bars on a terminal, a plain line per start and finish elsewhere.

    The runner calls scenario_started, advanced (as often as it likes) and scenario_finished.
    """

    UPDATES_PER_SCENARIO = 400   # bar updates at most, however often advanced() is called

    def __init__(self, console: Console, total_scenarios: int) -> None:
        self.console = console
        self.total_scenarios = total_scenarios
        self._live = console.is_terminal and not console.is_dumb_terminal
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._scenario: TaskID | None = None
        self._planned_ticks = 0
        self._step_ticks = 1
        self._next_tick: float = math.inf   # advanced() ignores ticks below this
        self._done = 0
        self._verdicts: Counter[Verdict] = Counter()

    def __enter__(self) -> "RunProgress":
        if self._live:
            self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                      TextColumn("{task.fields[detail]}", markup=False), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._overall = self._progress.add_task("scenarios", total=max(1, self.total_scenarios),
                                                    detail=self._overall_detail())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._drop_scenario_bar()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _overall_detail(self) -> str:
        bad = sum(n for v, n in self._verdicts.items() if v in (Verdict.FAIL, Verdict.ERROR))
        return f"{self._done}/{self.total_scenarios}" + (f", {bad} failed" if bad else "")

    def _drop_scenario_bar(self) -> None:
        if self._progress is not None and self._scenario is not None:
            self._progress.remove_task(self._scenario)
        self._scenario = None
        self._next_tick = math.inf

    def scenario_started(self, scenario_id: str, title: str, simulated_ticks: int) -> None:
        """A scenario begins; simulated_ticks is its planned span of pump time."""
        self._planned_ticks = max(1, simulated_ticks)
        if self._progress is None:
            self.console.print(Text(f"{self._done + 1}/{self.total_scenarios} start   {scenario_id}: {title} "
                                    f"({format_ticks(simulated_ticks)} of pump time)"), soft_wrap=True)
            return
        self._drop_scenario_bar()
        self._step_ticks = max(1, self._planned_ticks // self.UPDATES_PER_SCENARIO)
        self._next_tick = self._step_ticks
        self._scenario = self._progress.add_task(_truncate(f"{scenario_id}  {title}", 48),
                                                 total=self._planned_ticks, detail=_span(0, self._planned_ticks))

    def advanced(self, to_tick: int) -> None:
        """The pump's virtual clock reached to_tick in the current scenario (cheap: most calls return at once)."""
        if to_tick < self._next_tick:
            return
        self._next_tick = to_tick + self._step_ticks
        assert self._progress is not None and self._scenario is not None
        self._progress.update(self._scenario, completed=min(to_tick, self._planned_ticks),
                              detail=_span(to_tick, self._planned_ticks))

    def scenario_finished(self, result: ScenarioResult) -> None:
        """A scenario ended (or was not run): print its result line and move the overall bar."""
        self._done += 1
        self._verdicts[result.verdict] += 1
        self._drop_scenario_bar()
        if self._progress is not None and self._overall is not None:
            self._progress.update(self._overall, completed=self._done, detail=self._overall_detail())
        self.console.print(_result_line(result, self._done, self.total_scenarios), soft_wrap=not self._live)


# ---------------------------------------------------------------------------------------------
# the console tables

def print_verdicts(console: Console, verdicts: list[RequirementVerdict], results: list[ScenarioResult],
                   rig: str, wall_s: float, simulated_ticks: int) -> None:
    """A verdict per requirement, each scenario's measured figures, and a summary line with the speed."""
    by_id = {r.scenario: r for r in results}
    widths = _column_widths(console.width, verdicts)
    table = Table(title=f"requirements on {rig}", title_justify="left")
    table.add_column("requirement", no_wrap=True, style="bold", width=widths[0])
    table.add_column("verdict", no_wrap=True, width=widths[1])
    table.add_column("title / hazard", width=widths[2])
    table.add_column("scenarios", width=widths[3], overflow="fold")
    table.add_column("reason", width=widths[4], overflow="fold")
    for rv in verdicts:
        req = rv.requirement
        table.add_row(Text(req.id), Text(rv.verdict.value, style=f"bold {VERDICT_STYLE[rv.verdict]}"),
                      Text.assemble(req.title, "\n", (req.hazard, "italic")), Text(_scenario_list(rv.scenarios)),
                      Text(_reason(rv, by_id), style=VERDICT_STYLE[rv.verdict]))
    console.print(table)

    figures = [(r.scenario, name, value) for r in results for name, value in r.figures.items()]
    if figures:
        fig_table = Table(title="measured figures", title_justify="left")
        fig_table.add_column("scenario", overflow="fold")
        fig_table.add_column("figure", overflow="fold")
        fig_table.add_column("value", justify="right", no_wrap=True)
        previous = None
        for scenario, name, value in figures:
            fig_table.add_row(Text(scenario if scenario != previous else ""), Text(name), _figure(value))
            previous = scenario
        console.print(fig_table)

    counts = Counter(rv.verdict for rv in verdicts)
    worst = overall(verdicts)
    summary = Text("overall ")
    summary.append(worst.value.upper(), style=f"bold {VERDICT_STYLE[worst]}")
    summary.append(": ")
    for i, verdict in enumerate(Verdict):
        summary.append(", " if i else "")
        summary.append(f"{counts[verdict]} {verdict.value}", style=VERDICT_STYLE[verdict] if counts[verdict] else "")
    ran = sum(r.verdict is not Verdict.NOT_RUN for r in results)
    summary.append(f" of {len(verdicts)} requirements; {ran} of {len(results)} scenarios run; "
                   f"simulated {format_ticks(simulated_ticks)} in {format_wall(wall_s)}: "
                   f"{real_time_ratio(simulated_ticks, wall_s)} real time")
    console.print(summary, soft_wrap=not console.is_terminal)


def _column_widths(console_width: int, verdicts: list[RequirementVerdict]) -> tuple[int, ...]:
    """Content widths of the requirement table's columns, so the verdict is never squeezed.

    Requirement, verdict and scenarios take what they need (up to a limit); title and reason share
    the rest 2 : 3; on a narrow console the scenario ids fold first.
    """
    def longest(texts: list[str], header: str, cap: int) -> int:
        return min(cap, max([len(header), *map(len, texts)]))

    req_w = longest([rv.requirement.id for rv in verdicts], "requirement", 24)
    verdict_w = max(len(v.value) for v in Verdict)
    scenarios_w = longest([s for rv in verdicts for s in rv.scenarios], "scenarios", 24)
    free_w = console_width - (3 * 5 + 1)   # a border and two spaces of padding per column, one border more
    short_w = max(0, 36 - (free_w - req_w - verdict_w - scenarios_w))
    scenarios_w -= min(short_w, scenarios_w - len("scenarios"))
    rest_w = free_w - req_w - verdict_w - scenarios_w
    title_w = max(12, rest_w * 2 // 5)
    return req_w, verdict_w, title_w, scenarios_w, max(12, rest_w - title_w)


def _figure(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4g}"


# ---------------------------------------------------------------------------------------------
# JUnit XML

# characters XML 1.0 cannot carry, even escaped (and lone surrogates, which UTF-8 cannot)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: object) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: _xml(v) for k, v in attrs.items()})
    if text:
        el.text = _xml(text)
    return el


def _properties(parent: ET.Element, props: list[tuple[str, object]]) -> None:
    if props:
        holder = _element(parent, "properties")
        for name, value in props:
            _element(holder, "property", name=name, value=value)


def _counts(verdicts: list[Verdict], wall_s: float) -> dict[str, str]:
    n = Counter(verdicts)
    return {"tests": str(len(verdicts)), "failures": str(n[Verdict.FAIL]), "errors": str(n[Verdict.ERROR]),
            "skipped": str(n[Verdict.NOT_RUN]), "time": f"{wall_s:.3f}"}


def _scenario_details(r: ScenarioResult) -> str:
    """Everything CI shows under a scenario: failures, every check, the frames around the divergence."""
    lines = []
    failures = r.failures()
    if failures:
        lines += ["failures:"] + [f"  {f}" for f in failures]
    if r.checks:
        lines.append("checks:")
        lines += [f"  {'pass' if c.passed else 'FAIL'}  {c.step}: {c.what}: {c.measured}"
                  + (f"  [{', '.join(c.requirements)}]" if c.requirements else "") for c in r.checks]
    if r.divergence is not None and r.divergence.context:
        lines.append(f"frames around the first divergence (tick {r.divergence.tick}, oldest first):")
        lines += [f"  {frame}" for frame in r.divergence.context]
    lines.append(f"simulated {format_ticks(r.simulated_ticks)} ({r.simulated_ticks} ticks of {TICK_HZ} Hz) "
                 f"in {r.wall_s:.3f} s wall")
    if r.source:
        lines.append(f"scenario file: {r.source}")
    return "\n".join(lines)


def _outcome(case: ET.Element, verdict: Verdict, message: str, details: str, failure_type: str) -> None:
    """The failure, error or skipped element of a test case (nothing for a pass but its output)."""
    if verdict is Verdict.FAIL:
        _element(case, "failure", details, message=message or "failed", type=failure_type)
    elif verdict is Verdict.ERROR:
        _element(case, "error", details, message=message or "error", type="error")
    elif verdict is Verdict.NOT_RUN:
        _element(case, "skipped", message=message or "not run")
    else:
        _element(case, "system-out", details)


def write_junit(path: Path, results: list[ScenarioResult], verdicts: list[RequirementVerdict], *,
                suite: str, rig: str) -> None:
    """JUnit XML for CI: a test suite of scenarios and one of requirements, with failures in full."""
    by_id = {r.scenario: r for r in results}
    wall_s = sum(r.wall_s for r in results)
    all_verdicts = [r.verdict for r in results] + [rv.verdict for rv in verdicts]
    root = ET.Element("testsuites", {"name": _xml(f"{suite} on {rig}"), **_counts(all_verdicts, wall_s)})
    # the requirement cases re-count the scenarios' wall time, so the root's time is the scenarios' alone

    scenarios = _element(root, "testsuite", name=f"{suite} scenarios on {rig}",
                         **_counts([r.verdict for r in results], wall_s))
    _properties(scenarios, [("suite", suite), ("rig", rig),
                            ("simulated_ticks", sum(r.simulated_ticks for r in results)), ("tick_hz", TICK_HZ)])
    for r in results:
        case = _element(scenarios, "testcase", classname=f"{suite}.{rig}", name=r.scenario, time=f"{r.wall_s:.3f}")
        # "requirements" as a comma-separated list is the property Xray and similar trace tools read
        _properties(case, [("title", r.title), ("requirements", ", ".join(r.covers)),
                           ("simulated_ticks", r.simulated_ticks)]
                    + [(f"figure:{name}", value) for name, value in r.figures.items()])
        failures = r.failures()
        message = r.reason if r.verdict in (Verdict.ERROR, Verdict.NOT_RUN) and r.reason else \
            (failures[0] if failures else "")
        _outcome(case, r.verdict, message, _scenario_details(r),
                 "divergence" if r.divergence is not None else "check")

    requirements = _element(root, "testsuite", name=f"requirements on {rig}",
                            **_counts([rv.verdict for rv in verdicts], wall_s))
    _properties(requirements, [("suite", suite), ("rig", rig)])
    for rv in verdicts:
        req = rv.requirement
        covering = [by_id[s] for s in rv.scenarios if s in by_id]
        case = _element(requirements, "testcase", classname=f"requirements.{rig}", name=f"{req.id}: {req.title}",
                        time=f"{sum(r.wall_s for r in covering):.3f}")
        _properties(case, [("hazard", req.hazard), ("source", req.source)] + ([("sr", req.sr)] if req.sr else [])
                    + [("scenarios", ", ".join(rv.scenarios))])
        lines = [f"requirement: {req.text}", f"hazard: {req.hazard}", "scenarios:"]
        for r in covering:
            lines.append(f"  {r.verdict.value:<7} {r.scenario}: {r.title}")
            lines += [f"      {f}" for f in r.failures()]
        if not covering:
            lines.append("  none")
        _outcome(case, rv.verdict, rv.why, "\n".join(lines), "requirement")

    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    ET.ElementTree(root).write(partial, encoding="utf-8", xml_declaration=True)
    os.replace(partial, path)   # a CI job never reads half a file


def _scenario_list(scenarios: tuple[str, ...], shown: int = 3) -> str:
    """The covering scenarios, one per line; a long list ends in "+N more" (JUnit has them all)."""
    if not scenarios:
        return "-"
    if len(scenarios) <= shown + 1:
        return "\n".join(scenarios)
    return "\n".join(scenarios[:shown]) + f"\n+{len(scenarios) - shown} more"
