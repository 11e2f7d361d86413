"""`ithil run`: a suite of scenarios on a rig beside the reference model, and a verdict per requirement."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from .errors import HilError
from .requirements import DEFAULT_CATALOGUE, check_coverage, load_requirements
from .rig import DEFAULT_RIG, load_rig
from .run_report import RunProgress, print_verdicts, write_junit
from .runner import run_suite
from .scenario import load_suite
from .verdicts import Verdict, overall, requirement_verdicts

STANDARD_SUITE = Path(__file__).resolve().parent.parent / "suites" / "standard"
PLAIN_WIDTH = 140   # columns of the verdict table when the output is not a terminal (CI logs)


def run(
    suites: list[Path] = typer.Argument(None, help="Scenario files or folders of them (default: the standard suite)."),
    rig: str = typer.Option(DEFAULT_RIG, "--rig", help="A rig in rigs/ (emulator, ...) or a path to a rig.toml."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (for CI)."),
    requirements: Path = typer.Option(DEFAULT_CATALOGUE, "--requirements", help="The requirement catalogue."),
) -> None:
    """Run scenarios on a device and on the reference model side by side; print a verdict per
    requirement; exit 1 if any verdict is not pass (2 if the suite or the rig cannot be read)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=PLAIN_WIDTH)
    try:
        the_rig = load_rig(rig)
        catalogue = load_requirements(requirements)
        scenarios = load_suite(list(suites or [STANDARD_SUITE]))
        check_coverage(catalogue, scenarios)
    except HilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    started = time.perf_counter()
    with RunProgress(console, len(scenarios)) as progress:
        results = run_suite(the_rig, scenarios, progress)
    wall_s = time.perf_counter() - started
    verdicts = requirement_verdicts(catalogue, results)
    verdicts = [v for v in verdicts if v.scenarios]   # only what this run's suites cover
    print_verdicts(console, verdicts, results, the_rig.name, wall_s, sum(r.simulated_ticks for r in results))
    if junit is not None:
        suite_name = "+".join(p.stem for p in (suites or [STANDARD_SUITE]))
        write_junit(junit, results, verdicts, suite=suite_name, rig=the_rig.name)
        console.print(f"JUnit XML written to {junit}")
    if overall([*verdicts, *results]) is not Verdict.PASS:
        raise typer.Exit(1)
