"""The year's table: a rich rendering of a model run, for people (plain text when not a terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from firmware_model.simulate import RunResult
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_MINUTE


def when(tick: int) -> str:
    """A tick as 'day D HH:MM' of the run."""
    day, rest = divmod(tick, TICKS_PER_DAY)
    minutes = rest // TICKS_PER_MINUTE
    return f"day {day} {minutes // 60:02d}:{minutes % 60:02d}"


def render(result: RunResult, title: str, console: Console) -> None:
    """Print the summary, the alarms, the refills and anything the pump refused."""
    summary = Table(title=f"{title}: {result.days} days on the reference model", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("drug", f"{result.drug} {result.concentration_ug_per_ml} µg/mL")
    summary.add_row("volume delivered", f"{result.delivered_nl / 1e6:.3f} mL ({result.steps} steps)")
    summary.add_row("dose at the catheter tip", f"{result.dose_at_tip_ng / 1e6:.3f} mg")
    summary.add_row("mean daily dose", f"{result.dose_at_tip_ng / 1e3 / result.days:.1f} µg/day")
    denied = ", ".join(f"{k.lower()} {v}" for k, v in result.patient_boluses_denied.items()) or "none"
    summary.add_row("patient boluses granted", str(result.patient_boluses_granted))
    summary.add_row("patient boluses denied", f"{sum(result.patient_boluses_denied.values())} ({denied})")
    summary.add_row("clinician boluses", str(result.clinician_boluses))
    summary.add_row("refills", str(max(0, len(result.refills) - 1)))
    summary.add_row("reservoir at the end", f"{result.reservoir_nl / 1e6:.3f} mL")
    battery = f"{result.battery_months_remaining} months left"
    if result.eri_tick is not None:
        battery += f", ERI at {when(result.eri_tick)}"
    if result.eos:
        battery += ", END OF SERVICE"
    summary.add_row("battery", battery)
    for note in result.library_overrides:
        summary.add_row("drug library override", note)
    console.print(summary)

    if result.alarms:
        alarms = Table(title="alarms")
        for col in ("when", "alarm", "priority", "event"):
            alarms.add_column(col)
        for a in result.alarms:
            alarms.add_row(when(a.tick), a.alarm, a.priority.lower().replace("_", "-"), a.what)
        console.print(alarms)
    else:
        console.print("alarms: none")

    refills = Table(title="refills")
    for col in ("when", "expected residual mL", "measured residual mL", "injected mL"):
        refills.add_column(col, justify="right")
    for r in result.refills:
        refills.add_row(when(r.tick), f"{r.expected_residual_nl / 1e6:.3f}", f"{r.measured_residual_nl / 1e6:.3f}",
                        f"{r.injected_nl / 1e6:.3f}")
    console.print(refills)

    if result.refused:
        refused = Table(title="commands the pump refused")
        for col in ("when", "command", "reason"):
            refused.add_column(col)
        for tick, command, reason in result.refused:
            refused.add_row(when(tick), command, reason)
        console.print(refused)
