"""The occlusion sweep for people: a table (console and markdown) and a latency-versus-rate plot."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from firmware_model.occlusion_sweep import PARTIAL_FACTOR, Latency, RateResult
from firmware_model.units import NL_PER_ML

COLUMNS = ("mL/day", "steps/week", "total: found", "median min", "p95 min", "max min", "held µL",
           f"partial x{PARTIAL_FACTOR}: found", "median min", "false alarms/pump-year")


def _h(hours: float | None) -> str:
    """Hours as minutes for the table."""
    if hours is None:
        return "-"
    minutes = hours * 60
    return f"{minutes:.2f}" if minutes < 10 else f"{minutes:.0f}"


def rows(results: list[RateResult]) -> list[tuple[str, ...]]:
    """One row of text per rate, in COLUMNS order."""
    out = []
    for r in results:
        def detected(lat: Latency) -> str:
            return f"{lat.detected}/{lat.seeds}"
        held = "-" if r.total.median_stored_nl is None else f"{r.total.median_stored_nl / 1000:.2f}"
        fa = f"{r.false_alarms_per_pump_year:.3f}" if r.false_alarm_pumps else f"0 (< {1 / r.pump_years:.3f})"
        out.append((f"{r.rate_nl_per_day / NL_PER_ML:g}", str(r.steps_per_week), detected(r.total), _h(r.total.median_h),
                    _h(r.total.p95_h), _h(r.total.max_h), held, detected(r.partial), _h(r.partial.median_h), fa))
    return out


def print_table(results: list[RateResult], console: Console) -> None:
    table = Table(title="time from occlusion to alarm, and false alarms without one")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for row in rows(results):
        table.add_row(*row)
    console.print(table)


def markdown_table(results: list[RateResult]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines) + "\n"


def plot_latency(results: list[RateResult], path: Path) -> None:
    """Median and 95th-percentile latency against rate, both axes logarithmic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for name, colour in (("total", "tab:red"), ("partial", "tab:orange")):
        pts = [(r.rate_nl_per_day / NL_PER_ML, getattr(r, name)) for r in results]
        pts = [(x, lat) for x, lat in pts if lat.median_h is not None]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        label = "total occlusion" if name == "total" else f"partial occlusion (R x{PARTIAL_FACTOR})"
        ax.plot(xs, [lat.median_h for _, lat in pts], "o-", color=colour, label=f"{label}, median")
        ax.plot(xs, [lat.p95_h for _, lat in pts], "v--", color=colour, alpha=0.6, label=f"{label}, 95th percentile")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("programmed rate (mL/day)")
    ax.set_ylabel("time from occlusion to alarm (h)")
    ax.set_title("occlusion alarm latency of the reference pump")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
