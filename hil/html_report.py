"""The single-file HTML report of a run: header, requirement -> scenario -> verdict trace, and per
scenario its checks, figures, first divergence and plots (flow, pressure, reservoir, alarms,
gravimetric start-up and trumpet curves, balance), all inline so it opens offline anywhere.

The page is rendered from templates/report.html.j2 with autoescaping on; the only markup not
escaped is the SVG that matplotlib draws here. Each plot is a small inline SVG (text as <text>,
long series decimated, ids made unique per plot) so a whole suite stays a few hundred kilobytes.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import jinja2
import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from firmware_model.units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

from .gravimetric import GravimetricResult
from .run_report import format_ticks, format_wall, real_time_ratio
from .verdicts import RequirementVerdict, ScenarioResult, ScenarioTrace, Verdict, verdict_for, why_for, overall

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
FIGSIZE_IN = (7.0, 2.6)          # every plot: small, so a suite's report stays light
MAX_POINTS = 2000                # a series longer than this is decimated before it is drawn
REASON_CHARS = 400               # a reason in the trace table (the scenario's section has it all)
# the model a wide pale band under the device's thin line: where they agree, a line in a halo
DEVICE_STYLE = dict(color="#1f77b4", linewidth=1.1, label="device", zorder=3)
MODEL_STYLE = dict(color="#ff7f0e", linewidth=3.2, alpha=0.45, label="reference model", zorder=2)
DIVERGENCE_STYLE = dict(color="#d62728", linewidth=1.2, label="first divergence")
_RC = {"svg.fonttype": "none", "svg.hashsalt": "ithil", "font.family": "sans-serif",
       "font.sans-serif": ["DejaVu Sans"], "font.size": 8, "axes.titlesize": 8,
       "legend.fontsize": 7, "legend.framealpha": 0.92, "axes.grid": True, "grid.alpha": 0.3}


@dataclass(frozen=True)
class Plot:
    """One drawn plot: what it shows (a caption) and the inline SVG markup."""

    caption: str
    svg: Markup


# ---------------------------------------------------------------------------------------------
# the page

def write_html(path: Path, results: list[ScenarioResult], verdicts: list[RequirementVerdict], *,
               suite: str, rig: str, wall_s: float) -> Path:
    """Write the self-contained HTML report of a run to `path` (atomically); returns the path."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    ids = _Ids()
    page = env.get_template(TEMPLATE).render(
        header=_header(results, verdicts, suite, rig, wall_s),
        requirements=[_requirement_view(rv, results) for rv in verdicts],
        scenarios=[_scenario_view(r, ids) for r in results],
        verdict_class=_verdict_class,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)     # a reader never sees half a report
    return path


def scenario_anchor(scenario_id: str) -> str:
    """The id of a scenario's section (what the trace links to)."""
    return "scenario-" + _slug(scenario_id)


def requirement_anchor(requirement_id: str) -> str:
    """The id of a requirement's table in the trace."""
    return "req-" + _slug(requirement_id)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _verdict_class(verdict: Verdict) -> str:
    return "v-" + verdict.name.lower().replace("_", "-")


def _header(results: Sequence[ScenarioResult], verdicts: Sequence[RequirementVerdict], suite: str, rig: str,
            wall_s: float) -> dict[str, object]:
    simulated_ticks = sum(r.simulated_ticks for r in results)
    device = next((r.device for r in results if r.device is not None), None)
    req_counts, scenario_counts = Counter(v.verdict for v in verdicts), Counter(r.verdict for r in results)
    return dict(
        suite=suite, rig=rig, overall=overall([*verdicts, *results]),
        requirement_counts=[(v, req_counts[v]) for v in Verdict],
        scenario_counts=[(v, scenario_counts[v]) for v in Verdict],
        requirements=len(verdicts), scenarios=len(results),
        scenarios_run=sum(r.verdict is not Verdict.NOT_RUN for r in results),
        wall=format_wall(wall_s), simulated=format_ticks(simulated_ticks), simulated_ticks=simulated_ticks,
        ratio=real_time_ratio(simulated_ticks, wall_s), tick_hz=TICK_HZ, device=device,
        date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def _truncate(text: str, limit: int = REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _requirement_view(rv: RequirementVerdict, results: Sequence[ScenarioResult]) -> dict[str, object]:
    """A requirement with a row per covering scenario: its verdict for this requirement and why."""
    by_id = {r.scenario: r for r in results}
    rows = []
    for scenario_id in rv.scenarios:
        result = by_id.get(scenario_id)
        if result is None:
            rows.append(dict(id=scenario_id, anchor=None, title="", verdict=Verdict.NOT_RUN, overall=None,
                             reason="not in this run"))
            continue
        verdict = verdict_for(result, rv.requirement.id)
        reason = "; ".join(why_for(result, rv.requirement.id)) if verdict is not Verdict.PASS else ""
        rows.append(dict(id=scenario_id, anchor=scenario_anchor(scenario_id), title=result.title, verdict=verdict,
                         overall=result.verdict if result.verdict is not verdict else None,
                         reason=_truncate(reason) if reason else ""))
    return dict(req=rv.requirement, anchor=requirement_anchor(rv.requirement.id), verdict=rv.verdict,
                why=_truncate(rv.why) if not rv.scenarios else "", rows=rows)


def _scenario_view(r: ScenarioResult, ids: "_Ids") -> dict[str, object]:
    d = r.divergence
    return dict(
        result=r, anchor=scenario_anchor(r.scenario), wall=format_wall(r.wall_s),
        simulated=format_ticks(r.simulated_ticks),
        covers=[(req, requirement_anchor(req)) for req in r.covers],
        figures=[(name, _figure(value)) for name, value in r.figures.items()],
        failures=r.failures(),
        divergence=None if d is None else dict(
            d=d, time=format_ticks(d.tick), seconds=f"{d.tick / TICK_HZ:,.3f}",
            expected=repr(d.expected), got=repr(d.got)),
        plots=scenario_plots(r, ids),
    )


def _figure(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4g}"


# ---------------------------------------------------------------------------------------------
# the plots

def scenario_plots(result: ScenarioResult, ids: "_Ids | None" = None) -> list[Plot]:
    """Every plot the result's trace has data for, in report order: delivered volume, flow,
    pressure, reservoir, alarms, each gravimetric step's start-up and trumpet curves, balance."""
    ids = ids or _Ids()
    trace, d = result.trace, result.divergence
    div_tick = d.tick if d is not None else None
    span = max([result.simulated_ticks, *(p.tick for p in trace.device), *(b[0] for b in trace.balance),
                *(a[0] for a in trace.alarms)], default=0)
    unit = _TimeUnit.for_span(span)
    plots = []
    with matplotlib.rc_context(_RC):
        if trace.device:
            plots.append(Plot("delivered volume (steps × stroke), device vs model",
                              ids.svg(_volume_figure(trace, unit, div_tick))))
        if len(trace.device) >= 2:
            plots.append(Plot("flow between successive telemetry frames, device vs model",
                              ids.svg(_flow_figure(trace, unit, div_tick))))
        if trace.device:
            plots.append(Plot("outlet pressure, device vs model", ids.svg(_pressure_figure(trace, unit, div_tick))))
            plots.append(Plot("reservoir volume, device vs model", ids.svg(_reservoir_figure(trace, unit, div_tick))))
        if trace.alarms:
            plots.append(Plot("alarms logged by the device (on to off)",
                              ids.svg(_alarm_figure(trace, unit, div_tick, span))))
        for step, found in result.gravimetric.items():
            if isinstance(found, GravimetricResult) and found.startup:
                plots.append(Plot(f"{step}: start-up curve (IEC 60601-2-24)",
                                  ids.svg(_startup_figure(found, div_tick))))
                plots.append(Plot(f"{step}: trumpet curve, mean error E = {found.mean_error_percent:+.2f} %",
                                  ids.svg(_trumpet_figure(found))))
        if trace.balance:
            plots.append(Plot("balance mass, device vs model", ids.svg(_balance_figure(trace, unit, div_tick))))
    return plots


@dataclass(frozen=True)
class _TimeUnit:
    name: str
    ticks: int

    @staticmethod
    def for_span(span_ticks: int) -> "_TimeUnit":
        """Days for a run of two days or more, hours otherwise."""
        return _TimeUnit("day", TICKS_PER_DAY) if span_ticks >= 2 * TICKS_PER_DAY else _TimeUnit("h", TICKS_PER_HOUR)

    def of(self, ticks: np.ndarray | int) -> np.ndarray:
        return np.asarray(ticks, dtype=np.float64) / self.ticks


def decimate(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most about `limit` of n points, evenly spread, the first and last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _columns(points: Sequence[object], *names: str) -> list[np.ndarray]:
    keep = decimate(len(points))
    return [np.array([getattr(points[i], name) for i in keep], dtype=np.float64) for name in names]


def _figure_axes(height_in: float = FIGSIZE_IN[1], left_in: float = 0.75) -> tuple[Figure, Axes]:
    """A figure of one axes with fixed margins (a layout engine would double the drawing time)."""
    fig = Figure(figsize=(FIGSIZE_IN[0], height_in))
    fig.subplots_adjust(left=left_in / FIGSIZE_IN[0], right=0.97, bottom=0.48 / height_in, top=1 - 0.1 / height_in)
    return fig, fig.subplots()


def _finish_time_axes(ax: Axes, unit: _TimeUnit, div_tick: int | None, ylabel: str) -> None:
    if div_tick is not None:
        ax.axvline(float(unit.of(div_tick)), **DIVERGENCE_STYLE)
    ax.set_xlabel(f"time ({unit.name})")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")


def _device_model(ax: Axes, x_dev: np.ndarray, y_dev: np.ndarray, x_mod: np.ndarray, y_mod: np.ndarray,
                  **kwargs: object) -> None:
    ax.plot(x_dev, y_dev, **DEVICE_STYLE, **kwargs)
    ax.plot(x_mod, y_mod, **MODEL_STYLE, **kwargs)


def _volume_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    (td, sd), (tm, sm) = _columns(trace.device, "tick", "steps"), _columns(trace.model, "tick", "steps")
    ul = trace.stroke_nl / 1000.0
    _device_model(ax, unit.of(td), sd * ul, unit.of(tm), sm * ul)
    _finish_time_axes(ax, unit, div_tick, "delivered (µL)")
    return fig


def _flows_ul_per_h(ticks: np.ndarray, steps: np.ndarray, stroke_nl: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow over each interval between telemetry frames (µL/h) at the interval's end; NaN where the
    step counter went back (a reset) or no time passed."""
    dt_h = np.diff(ticks) / TICKS_PER_HOUR
    dv_ul = np.diff(steps) * stroke_nl / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        flow = np.where((dt_h > 0) & (dv_ul >= 0), dv_ul / np.where(dt_h > 0, dt_h, 1), np.nan)
    return ticks[1:], flow


def _flow_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    td, fd = _flows_ul_per_h(*_columns(trace.device, "tick", "steps"), trace.stroke_nl)
    tm, fm = _flows_ul_per_h(*_columns(trace.model, "tick", "steps"), trace.stroke_nl)
    _device_model(ax, unit.of(td), fd, unit.of(tm), fm, drawstyle="steps-pre")
    _finish_time_axes(ax, unit, div_tick, "flow (µL/h)")
    return fig


def _pressure_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    (td, pd), (tm, pm) = _columns(trace.device, "tick", "pressure_pa"), _columns(trace.model, "tick", "pressure_pa")
    _device_model(ax, unit.of(td), pd, unit.of(tm), pm)
    if trace.occlusion_threshold_pa is not None:
        ax.axhline(trace.occlusion_threshold_pa, color="#9467bd", linewidth=1, linestyle=":",
                   label=f"occlusion threshold {trace.occlusion_threshold_pa:,} Pa")
    _finish_time_axes(ax, unit, div_tick, "pressure (Pa)")
    return fig


def _reservoir_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    (td, rd), (tm, rm) = _columns(trace.device, "tick", "reservoir_nl"), _columns(trace.model, "tick", "reservoir_nl")
    _device_model(ax, unit.of(td), rd / 1e6, unit.of(tm), rm / 1e6)
    _finish_time_axes(ax, unit, div_tick, "reservoir (mL)")
    return fig


def alarm_spans(alarms: Sequence[tuple[int, str, bool]], end_tick: int) -> dict[str, list[tuple[int, int]]]:
    """Per alarm, in order of first appearance, its (on, off) tick spans; one still on at the end
    runs to end_tick; an off without an on is ignored."""
    spans: dict[str, list[tuple[int, int]]] = {}
    open_at: dict[str, int] = {}
    for tick, name, on in sorted(alarms, key=lambda a: a[0]):
        spans.setdefault(name, [])
        if on and name not in open_at:
            open_at[name] = tick
        elif not on and name in open_at:
            spans[name].append((open_at.pop(name), tick))
    for name, start in open_at.items():
        spans[name].append((start, max(start, end_tick)))
    return spans


def _alarm_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None, end_tick: int) -> Figure:
    spans = alarm_spans(trace.alarms, end_tick)
    longest = max(map(len, spans))
    fig, ax = _figure_axes(min(FIGSIZE_IN[1], 0.9 + 0.3 * len(spans)), left_in=0.2 + 0.068 * longest)
    min_width = max(end_tick, 1) / unit.ticks / 300     # an alarm on and off at once stays visible
    for row, (name, pairs) in enumerate(spans.items()):
        bars = [(float(unit.of(on)), max(float(unit.of(off - on)), min_width)) for on, off in pairs]
        ax.broken_barh(bars, (row - 0.35, 0.7), facecolors="#ff9896", edgecolors="#d62728", linewidth=0.8)
    ax.set_yticks(range(len(spans)), list(spans))
    ax.set_ylim(-0.6, len(spans) - 0.4)
    ax.set_xlim(0, max(float(unit.of(end_tick)), min_width))
    ax.grid(True, axis="y", alpha=0)
    if div_tick is not None:
        ax.axvline(float(unit.of(div_tick)), **DIVERGENCE_STYLE)
        ax.legend(loc="best")
    ax.set_xlabel(f"time ({unit.name})")
    return fig


def _startup_first_tick(found: GravimetricResult) -> int:
    """The tick of the first balance reading (the runner analyses up to the last reading)."""
    return found.analysis_end_tick - round(found.startup[-1].time_min * TICKS_PER_MINUTE)


def _startup_figure(found: GravimetricResult, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    t0 = _startup_first_tick(found)
    keep = decimate(len(found.startup))
    minutes = np.array([found.startup[i].time_min for i in keep])
    flow_ul_h = np.array([found.startup[i].flow_nl_per_day for i in keep]) / 1000.0 / 24.0
    ax.axvspan((found.analysis_start_tick - t0) / TICKS_PER_MINUTE, (found.analysis_end_tick - t0) / TICKS_PER_MINUTE,
               color="#2ca02c", alpha=0.08, label="analysis period T2")
    ax.plot(minutes, flow_ul_h, **{**DEVICE_STYLE, "label": "Q_i (balance)"})
    ax.axhline(found.rate_nl_per_day / 1000.0 / 24.0, color="#7f7f7f", linewidth=1, linestyle="--",
               label="set rate")
    if div_tick is not None and t0 <= div_tick <= found.analysis_end_tick:
        ax.axvline((div_tick - t0) / TICKS_PER_MINUTE, **DIVERGENCE_STYLE)
    ax.set_xlabel("time from the first reading (min)")
    ax.set_ylabel("flow (µL/h)")
    ax.legend(loc="best")
    return fig


def _trumpet_figure(found: GravimetricResult) -> Figure:
    fig, ax = _figure_axes()
    windows = [p.window_min for p in found.trumpet]
    ax.plot(windows, [p.max_error_percent for p in found.trumpet], marker="^", color="#d62728", linewidth=1.2,
            label="Ep(max)")
    ax.plot(windows, [p.min_error_percent for p in found.trumpet], marker="v", color="#1f77b4", linewidth=1.2,
            label="Ep(min)")
    ax.axhline(found.mean_error_percent, color="#2ca02c", linewidth=1.2, linestyle="--",
               label=f"E = {found.mean_error_percent:+.2f} %")
    ax.axhline(0, color="#7f7f7f", linewidth=0.6)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("error (%)")
    ax.set_xticks(windows)
    ax.legend(loc="best")
    return fig


def _balance_figure(trace: ScenarioTrace, unit: _TimeUnit, div_tick: int | None) -> Figure:
    fig, ax = _figure_axes()
    keep = decimate(len(trace.balance))
    table = np.array([trace.balance[i] for i in keep], dtype=np.float64).reshape(-1, 3)
    x = unit.of(table[:, 0])
    dots = dict(marker=".", markersize=3) if len(table) <= 60 else {}   # each marker is an SVG element
    _device_model(ax, x, table[:, 1] / 1000.0, x, table[:, 2] / 1000.0, **dots)
    _finish_time_axes(ax, unit, div_tick, "mass on the balance (mg)")
    return fig


# ---------------------------------------------------------------------------------------------
# SVG for inlining

_XML_PROLOGUE = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*", re.S)
_BETWEEN_TAGS = re.compile(r">\s+<")
_GEOMETRY = re.compile(r'(\s(?:d|x|y|transform)=")([^"]*)"')
_DECIMALS = re.compile(r"(\d\.\d\d)\d+")
_ID = re.compile(r' id="([^"]+)"')
_REF = re.compile(r'#([A-Za-z_][\w.-]*)(?=["\)])')     # url(#p1a2b) and xlink:href="#m3c4d"


class _Ids:
    """Draws figures to SVG for inlining, each with its ids prefixed so that no two plots of a
    page share one (matplotlib derives clip-path and marker ids from their content)."""

    def __init__(self) -> None:
        self.count = 0

    def svg(self, fig: Figure) -> Markup:
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        self.count += 1
        return Markup(_prefix_ids(_compact(buf.getvalue()), f"p{self.count}-"))


def _compact(svg: str) -> str:
    """The SVG without prologue, metadata and indentation, coordinates to 0.01 pt (a third the size)."""
    svg = _BETWEEN_TAGS.sub("><", _XML_PROLOGUE.sub("", svg)).strip()
    return _GEOMETRY.sub(lambda m: m.group(1) + _DECIMALS.sub(r"\1", " ".join(m.group(2).split())) + '"', svg)


def _prefix_ids(svg: str, prefix: str) -> str:
    """Prefix the ids that the SVG refers to (url(#id), href="#id"); drop the others (unused)."""
    referenced = set(_REF.findall(svg)) & set(_ID.findall(svg))   # not colours such as #ff7f0e

    def rename_id(m: re.Match[str]) -> str:
        return f' id="{prefix}{m.group(1)}"' if m.group(1) in referenced else ""

    def rename_ref(m: re.Match[str]) -> str:
        return "#" + prefix + m.group(1) if m.group(1) in referenced else m.group(0)

    return _REF.sub(rename_ref, _ID.sub(rename_id, svg))
