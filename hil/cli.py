"""The `ithil` command."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import typer
from rich.console import Console

from firmware_model.errors import ModelError
from firmware_model.prescription import load_prescription
from firmware_model.simulate import run

app = typer.Typer(help="ithil: firmware emulator and HIL test rig for implantable intrathecal drug pumps.",
                  no_args_is_help=True)
model_app = typer.Typer(help="The reference model on its own.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("run")
def model_run(
    prescription: Path = typer.Argument(..., help="A prescription TOML file (see examples/)."),
    days: int = typer.Option(365, "--days", min=1, help="Days to simulate."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw reservoir volume and cumulative dose to this PNG."),
) -> None:
    """Simulate a prescription on the reference model and print what the pump did."""
    try:
        data = tomllib.loads(prescription.read_text(encoding="utf-8"))
    except OSError as exc:
        typer.echo(f"error: cannot read {prescription}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except tomllib.TOMLDecodeError as exc:
        typer.echo(f"error: {prescription} is not valid TOML: {exc}", err=True)
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
