"""`ithil run` and `ithil replay`: a suite on a rig beside the reference model, or a recording of
one judged again; a verdict per requirement, JUnit XML, an HTML report, a recording."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console

from .errors import HilError
from .requirements import DEFAULT_CATALOGUE, check_coverage, load_requirements
from .rig import DEFAULT_RIG, load_rig
from .run_report import RunProgress, print_verdicts, write_junit
from .runner import run_suite
from .scenario import load_suite
from .verdicts import RequirementVerdict, ScenarioResult, Verdict, overall, requirement_verdicts

STANDARD_SUITE = Path(__file__).resolve().parent.parent / "suites" / "standard"
PLAIN_WIDTH = 140   # columns of the verdict table when the output is not a terminal (CI logs)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PLAIN_WIDTH)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _report(console: Console, results: list[ScenarioResult], requirements: Path, rig: str, suite: str,
            wall_s: float, junit: Path | None, html: Path | None) -> None:
    """The verdict table, JUnit and HTML; exit 1 unless every verdict is pass."""
    verdicts: list[RequirementVerdict] = [v for v in requirement_verdicts(load_requirements(requirements), results)
                                          if v.scenarios]   # only what this run covers
    print_verdicts(console, verdicts, results, rig, wall_s, sum(r.simulated_ticks for r in results))
    if junit is not None:
        write_junit(junit, results, verdicts, suite=suite, rig=rig)
        console.print(f"JUnit XML written to {junit}")
    if html is not None:
        from .html_report import write_html

        console.print(f"HTML report written to {write_html(html, results, verdicts, suite=suite, rig=rig, wall_s=wall_s)}")
    if overall([*verdicts, *results]) is not Verdict.PASS:
        raise typer.Exit(1)


@contextlib.contextmanager
def _recording(path: Path | None) -> Iterator[object]:
    if path is None:
        yield None
        return
    from .recording import Recorder

    with Recorder(path) as recorder:
        yield recorder


def run(
    suites: list[Path] = typer.Argument(None, help="Scenario files or folders of them (default: the standard suite)."),
    rig: str = typer.Option(DEFAULT_RIG, "--rig", help="A rig in rigs/ (emulator, ...) or a path to a rig.toml."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (for CI)."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    record: Path | None = typer.Option(None, "--record", help="Record every frame both ways here (pcapng), "
                                                                "for ithil replay, Wireshark and tshark."),
    requirements: Path = typer.Option(DEFAULT_CATALOGUE, "--requirements", help="The requirement catalogue."),
) -> None:
    """Run scenarios on a device and on the reference model side by side; print a verdict per
    requirement; exit 1 if any verdict is not pass (2 if the suite or the rig cannot be read)."""
    console = _console()
    try:
        the_rig = load_rig(rig)
        scenarios = load_suite(list(suites or [STANDARD_SUITE]))
        check_coverage(load_requirements(requirements), scenarios)
    except HilError as exc:
        raise _fail(exc) from None
    started = time.perf_counter()
    with _recording(record) as recorder, RunProgress(console, len(scenarios)) as progress:
        results = run_suite(the_rig, scenarios, progress, recorder=recorder)
    if record is not None:
        console.print(f"recording written to {record}")
    suite_name = "+".join(p.stem for p in (suites or [STANDARD_SUITE]))
    _report(console, results, requirements, the_rig.name, suite_name, time.perf_counter() - started, junit, html)


def replay_command(
    recording: Path = typer.Argument(..., help="A recording made by ithil run --record."),
    rig: str | None = typer.Option(None, "--rig", help="Judge with this rig's model and tolerances instead of "
                                                       "the recorded rig's (a name in rigs/ or a path)."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    requirements: Path = typer.Option(DEFAULT_CATALOGUE, "--requirements", help="The requirement catalogue."),
) -> None:
    """Judge a recording again without the device, against the current model and tolerances."""
    from .recording import read_recording
    from .replay import replay

    console = _console()
    try:
        config = load_rig(rig).config if rig is not None else None
        held = read_recording(recording)
        started = time.perf_counter()
        with RunProgress(console, len(held.sections)) as progress:
            results = replay(held, config, progress)
    except HilError as exc:
        raise _fail(exc) from None
    problem = held.problem
    if problem:
        console.print(f"[bold red]the recording is damaged[/]: {problem}; judged what it holds", markup=True)
    name = results[0].device.firmware if results and results[0].device else "recording"
    _report(console, results, requirements, f"replay of {recording.name}", name, time.perf_counter() - started,
            junit, html)
    if problem:
        raise typer.Exit(1)
