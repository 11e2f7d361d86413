"""`ithil mutants`: mutation testing of a rig's C firmware against the scenario suite (hil.mutation)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

from .errors import HilError
from .mutation import (DEFAULT_SAMPLE, DEFAULT_SEED, EQUIVALENTS_FILE, KILLED, STANDARD_SUITE, SURVIVED, TIMEOUT,
                       BaselineFailed, Outcome, Settings, explanation, load_equivalents, load_results, rerun_survivors,
                       resume_campaign, run_campaign, save_results, summary_line, write_report)
from .rig import rig_path


def mutants(
    rig: str = typer.Option("qemu-m3", "--rig", help="A rig in rigs/ or a path to a rig folder or rig.toml; its "
                                                    "device.start must name the firmware through {folder}."),
    sources: list[Path] = typer.Option([], "--source", "-s", help="A C source to mutate (repeat the option); relative "
                                       "to the rig folder or to here. Default: every *.c of the rig folder."),
    build_command: str = typer.Option("make", "--build", help="The build command, run in each copy of the rig folder "
                                      "({folder} is the copy)."),
    compile_command: str = typer.Option("", "--compile", help="Compiles one source to one object ({folder}: the "
                                        "rig folder, {source}, {object}); given, the sample is of mutants that "
                                        "compile, and one with the original's object code is equivalent unbuilt."),
    report_only: Path | None = typer.Option(None, "--report-only", help="Write the report again from a campaign's "
                                            "saved results (the .json beside its report) with the explanations as "
                                            "they are now; nothing is run."),
    resume: Path | None = typer.Option(None, "--resume", help="Carry on an interrupted campaign from its saved "
                                       "results (the .json beside its report, written after every mutant)."),
    rerun: Path | None = typer.Option(None, "--rerun", help="Run a campaign's unexplained survivors again (its saved "
                                      "results) against the suite and sources as they are now, after adding the "
                                      "scenarios that kill them; the results and the report are updated."),
    artifact: str | None = typer.Option(None, "--artifact", help="A build output (relative to the rig folder, e.g. "
                                        "build/firmware.bin): a mutant whose output is the original's byte for byte "
                                        "is equivalent and is not run."),
    suites: list[Path] = typer.Option([], "--suite", help="Scenario files or folders (default: the standard suite)."),
    sample: int = typer.Option(DEFAULT_SAMPLE, "--sample", min=1, help="How many mutants to build: that "
                               "compile, with --compile (else how many to draw)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="The sample's seed (recorded in the report)."),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="Mutants run at once."),
    timeout: float | None = typer.Option(None, "--timeout", min=1, help="Seconds one mutant's scenarios may take "
                                         "(from the first one's start) before it counts as killed by the timeout. "
                                         "Default: from the baseline."),
    out: Path = typer.Option(Path("docs/mutation.md"), "--out", help="Where to write the report."),
    equivalents: Path | None = typer.Option(None, "--equivalents", help=f"Explanations of equivalent survivors "
                                            f"(default: {EQUIVALENTS_FILE} in the rig folder)."),
    allow_failing_baseline: bool = typer.Option(False, "--allow-failing-baseline", help="Go on when the unmutated "
                                                "firmware does not pass the suite (development only)."),
    run_identical: bool = typer.Option(False, "--run-identical", help="Run mutants whose build output is the "
                                       "original's too."),
    work_dir: Path | None = typer.Option(None, "--work-dir", help="Where the scratch folders go (default: the "
                                         "system's temporary folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the scratch folders (copies, builds, mutant files)."),
    version_of: list[str] = typer.Option([], "--version-of", help="A program whose --version the report records "
                                         "(repeat the option), e.g. the compiler."),
    fail_under: float | None = typer.Option(None, "--fail-under", min=0, max=100, help="Exit 1 when the "
                                            "non-equivalent kill rate is below this percentage."),
) -> None:
    """Mutate the firmware's C sources with universalmutator, run the suite on a seeded sample of
    mutants (the unmutated firmware first: it must pass), and write the kill rate and the survivors."""
    folder = rig_path(rig).parent
    if not (folder / "rig.toml").is_file():
        typer.echo(f"error: rig {rig!r}: no rig.toml in {folder}; expected a rig in rigs/ or a rig folder", err=True)
        raise typer.Exit(2)
    src = [str(s) for s in sources] or sorted(p.name for p in folder.glob("*.c"))
    saved = rerun or resume or report_only
    settings = Settings(folder, src, tuple(shlex.split(build_command)), artifact, tuple(suites or [STANDARD_SUITE]),
                        sample, seed, jobs, timeout, work_dir, keep, allow_failing_baseline, run_identical,
                        versions_of=tuple(version_of), compile_command=tuple(shlex.split(compile_command)))

    def say(text: str) -> None:
        typer.echo(text, err=True)

    try:
        # a saved campaign is explained from its own rig folder (not --rig's), unless --equivalents
        campaign = load_results(saved) if saved is not None else None
        explained_file = equivalents or (campaign.settings.rig_folder if campaign else folder) / EQUIVALENTS_FILE
        explained = load_equivalents(explained_file)
        artifact = campaign.settings.artifact if campaign else artifact

        def progress(done: int, total: int, outcome: Outcome) -> None:
            m = outcome.mutant
            what = (f"KILLED by {outcome.scenario}" if outcome.status == KILLED and outcome.scenario != TIMEOUT
                    else "KILLED by the timeout" if outcome.status == KILLED
                    else "SURVIVED (same object code)" if outcome.same_object
                    else "SURVIVED (same image)" if outcome.same_binary
                    else ("SURVIVED" + ("" if explanation(outcome, explained, artifact) else ", unexplained"))
                    if outcome.status == SURVIVED else outcome.status.upper())
            say(f"[{done:>{len(str(total))}}/{total}] {m.where if m else 'baseline'} #{m.number if m else ''}: {what} "
                f"({outcome.wall_s:.1f} s)")

        results = out.with_suffix(".json")
        if rerun is not None:
            campaign = rerun_survivors(campaign, explained, say, progress)
            save_results(campaign, results)
        elif resume is not None:
            campaign = resume_campaign(campaign, say, progress, save_to=results)
        elif report_only is None:
            campaign = run_campaign(settings, say, progress, save_to=results)
        if report_only is None:
            say(f"results saved to {results}")
    except BaselineFailed as exc:
        say(f"error: {exc}")
        raise typer.Exit(1) from None
    except HilError as exc:
        say(f"error: {exc}")
        raise typer.Exit(2) from None
    assert campaign is not None                         # run, resumed, rerun or loaded above
    path = write_report(campaign, out, explained, explained_file.name)
    say(summary_line(campaign, explained))
    say(f"report written to {path}")
    if fail_under is not None:
        killed = len(campaign.of(KILLED))
        unexplained = sum(explanation(o, explained, artifact) is None for o in campaign.of(SURVIVED))
        rate = 100 * killed / (killed + unexplained) if killed + unexplained else 0.0
        if rate < fail_under:
            say(f"the non-equivalent kill rate {rate:.1f} % is below {fail_under:g} %")
            raise typer.Exit(1)
