"""The `ithil` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from firmware_model.errors import ModelError
from firmware_model.units import NL_PER_ML

from .cli_emulate import emulate
from .cli_mutants import mutants
from .cli_run import replay_command
from .cli_run import run as run_suite_command
from firmware_model.prescription import load_prescription
from firmware_model.toml_table import read_toml
from firmware_model.simulate import run

app = typer.Typer(help="ithil: firmware emulator and HIL test rig for implantable intrathecal drug pumps.",
                  no_args_is_help=True)
model_app = typer.Typer(help="The reference model on its own.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.command("emulate")(emulate)
app.command("run")(run_suite_command)
app.command("replay")(replay_command)
app.command("mutants")(mutants)
protocol_app = typer.Typer(help="The wire protocol.", no_args_is_help=True)
app.add_typer(protocol_app, name="protocol")


@protocol_app.command("docs")
def protocol_docs(out: Path = typer.Option(Path("docs/protocol.md"), "--out", help="Where to write it.")) -> None:
    """Write the protocol reference (every message, field, unit, id, NAK reason) from the definitions."""
    from protocol.docs import write_protocol_doc

    typer.echo(f"wrote {write_protocol_doc(out)}")


@protocol_app.command("wireshark")
def protocol_wireshark(out: Path = typer.Option(Path("ithil.lua"), "--out", help="Where to write it.")) -> None:
    """Write a Wireshark dissector (Lua) for recordings, generated from the protocol definitions."""
    from protocol.wireshark import write_dissector

    try:
        path = write_dissector(out)
    except OSError as exc:
        typer.echo(f"error: cannot write {out}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}\n"
               f"use it: wireshark -X lua_script:{path} rec.pcapng  (or tshark -X lua_script:{path} -r rec.pcapng)\n"
               f"or for good: copy it into ~/.local/lib/wireshark/plugins/; "
               "recordings come from ithil run --record")


@model_app.command("run")
def model_run(
    prescription: Path = typer.Argument(..., help="A prescription TOML file (see examples/)."),
    days: int = typer.Option(365, "--days", min=1, help="Days to simulate."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw reservoir volume and cumulative dose to this PNG."),
) -> None:
    """Simulate a prescription on the reference model and print what the pump did."""
    try:
        data = read_toml(prescription)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        rx = load_prescription(data, str(prescription))
        result = run(rx, days)
    except ModelError as exc:
        typer.echo(f"error: {prescription}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from .model_report import render
        render(result, prescription.stem, Console())
    if plot is not None:
        from .plots import plot_run
        plot_run(result, f"{prescription.stem}: {days} days", plot)
        typer.echo(f"plot written to {plot}", err=True)


@model_app.command("occlusion-sweep")
def occlusion_sweep(
    rates: list[float] = typer.Option([], "--rates", help="Rates in mL/day (repeat the option); "
                                      "default 0.048 0.1 0.3 1 3 10 24."),
    seeds: int = typer.Option(1000, "--seeds", min=1, help="Pumps (seeds) per rate, one simulated week each."),
    out: Path = typer.Option(Path("out"), "--out", help="Folder for occlusion_sweep.png and occlusion_sweep.md."),
    cusum_h_pa: int | None = typer.Option(None, "--cusum-h-pa", help="CUSUM alarm level (Pa) to try instead of the default."),
    cusum_kappa_pa: int | None = typer.Option(None, "--cusum-kappa-pa", help="CUSUM allowance (Pa) to try instead of the default."),
) -> None:
    """Time to occlusion alarm (total and partial) and false alarms per pump-year, rate by rate."""
    import dataclasses
    import time

    from firmware_model.occlusion import DetectorSettings
    from firmware_model.occlusion_sweep import DEFAULT_RATES_NL_PER_DAY, sweep

    from .occlusion_report import markdown_table, plot_latency, print_table

    settings = DetectorSettings()
    changes = {k: v for k, v in (("cusum_h_pa", cusum_h_pa), ("cusum_kappa_pa", cusum_kappa_pa)) if v is not None}
    try:
        settings = dataclasses.replace(settings, **changes)
        rates_nl = tuple(round(r * NL_PER_ML) for r in rates) or DEFAULT_RATES_NL_PER_DAY
        started = time.perf_counter()
        results = sweep(rates_nl, seeds, settings=settings)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console = Console()
    print_table(results, console if console.is_terminal else Console(width=160))
    out.mkdir(parents=True, exist_ok=True)
    (out / "occlusion_sweep.md").write_text(markdown_table(results), encoding="utf-8")
    plot_latency(results, out / "occlusion_sweep.png")
    typer.echo(f"{len(results)} rates x {seeds} seeds x 7 days in {time.perf_counter() - started:.1f} s; "
               f"wrote {out / 'occlusion_sweep.md'} and {out / 'occlusion_sweep.png'}", err=True)
