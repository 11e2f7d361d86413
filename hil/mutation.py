"""Mutation testing of a rig's firmware: does the scenario suite notice when the firmware is wrong?

A campaign (`ithil mutants`, `make mutants`):

1. the baseline: the rig folder is copied and built with the build command, and every scenario
   of the suite run on it (as many at once as there are workers, each within the timeout); a
   baseline that does not pass (a scenario that fails, errs or runs past the timeout) stops the
   campaign before any mutant is made, since a kill rate against a failing firmware means
   nothing, unless `allow_failing_baseline` (for development; then a scenario the original does
   not pass kills a mutant only when the mutant ends it otherwise: another verdict, first
   divergence, failed check or reason; one that timed out is left out). Scenarios the rig cannot
   run (NOT_RUN: a fault it cannot inject) are left out and named. The baseline's wall time per
   scenario orders the suite for the mutants: quickest first, so most mutants are killed before
   the long scenarios start;
2. universalmutator's `mutate FILE --noCheck` writes FILE.mutant.N.c for every source into a
   scratch folder (copies identical to the original or to another mutant are dropped). --noCheck
   does not compile them, and most do not (a syntax error, or a warning under -Werror);
3. the sample: each source's share of `sample_size` in proportion to its mutant count (allocate).
   With a compile command (`compile_command`, `--compile`; {folder}: the rig folder, {source}: a
   file, {object}: the object to write; the qemu-m3 Makefile's `object` target: the firmware's
   CFLAGS and -g0, so that moved lines do not change the object), the share counts mutants that
   COMPILE: each source's mutants are taken in a seeded order of their own and compiled alone,
   `jobs` at once, until its share compiles or it has no more (draw_compiling; the same seed gives
   the same draw however many compile at once). Each is compiled under the source's own file name
   in a folder of its own, as the original is, so that the objects compare byte for byte. A drawn
   mutant that does not compile is INVALID (counted as such, never given a worker); one whose
   object is the original's is equivalent by construction (trivial compiler equivalence): it
   SURVIVES unbuilt, explained as such (SAME_OBJECT), unless `run_identical`. Without a compile
   command the sample is drawn blind (sample_mutants) and the build sorts out the invalid ones;
4. each mutant to run gets a copy of the rig folder (of a snapshot taken at the start: build
   outputs left out, and the baseline and every mutant built from the same sources) with that one
   source replaced, built there with the build command (within BUILD_TIMEOUT_S): the copy's
   rig.toml starts the copy's firmware, since its device.start names it through "{folder}"
   (checked). A mutant that does not build is INVALID. If the build's artifact (`artifact`, e.g.
   build/firmware.bin) is byte for byte the original's, the mutant is equivalent by construction
   (it SURVIVES unrun, explained as such: SAME_BINARY) unless `run_identical`;
5. the ordered suite runs on it through hil.runner.run_scenario, stopping at the first scenario it
   does not pass: KILLED by that scenario, with the divergence or reason; a mutant whose scenarios
   still run `timeout_s` after the first one started is KILLED by the timeout, its worker's
   process group (QEMU included) killed; passing everything, it SURVIVED;
6. `jobs` worker processes run mutants at once, each in its own process group;
7. save_results writes every result as JSON beside the report (docs/mutation.json: the settings,
   versions, baseline runs, scenario order, source counts and every outcome with its mutant's
   file, number, line and text), once the sample is drawn and after every mutant; write_report
   writes the Markdown report (docs/mutation.md): drawn, invalid and built (the sample: killed +
   survived) counts, the kill rate killed / (killed + survived) and the non-equivalent kill rate
   killed / (killed + unexplained survivors), killed-by-scenario counts and every survivor with
   its diff and an explanation (the same object code, the same image, or an entry of the rig's
   equivalent_mutants.toml; survivors without one are flagged "unexplained").

From the saved results, without running anything, `ithil mutants --report-only docs/mutation.json`
writes the report again with equivalent_mutants.toml as it is now (load_results); `--resume`
carries on an interrupted campaign, and `--rerun` runs the unexplained survivors again against the
suite as it is now.

equivalent_mutants.toml, beside the rig.toml, explains survivors that are equivalent, so the
explanations survive regeneration:

    [[mutant]]
    file = "step_scheduler.c"          # the source, relative to the rig folder
    line = 42                          # the line of the original the mutant changes
    mutated = "return inc >> 1;"       # the mutated line's text (whitespace need not match)
    why = "..."                        # why no scenario can tell it from the original
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import html
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter, deque
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

from .errors import HilError

REPO = Path(__file__).resolve().parent.parent
STANDARD_SUITE = REPO / "suites" / "standard"
DEFAULT_SAMPLE = 300
DEFAULT_SEED = 1
DEFAULT_EXCLUDE = ("build",)          # build outputs in the rig folder: never copied
EQUIVALENTS_FILE = "equivalent_mutants.toml"
BUILD_TIMEOUT_S = 300.0
BASELINE_TIMEOUT_S = 600.0           # one scenario on the unmutated firmware, unless a timeout is given
MIN_TIMEOUT_S = 60.0

KILLED, SURVIVED, INVALID, ERROR = "killed", "survived", "invalid", "error"
TIMEOUT = "timeout"                   # the `scenario` of a mutant killed by the timeout
SAME_BINARY = "compiles to the same image as the original ({artifact} byte for byte): equivalent"
SAME_OBJECT = "compiles to the same object code as the original: equivalent (trivial compiler equivalence)"
UNEXPLAINED = "**unexplained**"


class MutationError(HilError):
    """A mutation campaign that cannot start or go on: a rig, source, build or tool that is not as
    expected (names it and what was expected)."""


class BaselineFailed(MutationError):
    """The unmutated firmware does not pass the suite: no mutant is made. `baseline` is its Outcome."""

    def __init__(self, message: str, baseline: "Outcome") -> None:
        super().__init__(message)
        self.baseline = baseline


# ---- mutants --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mutant:
    """One mutant of one source: universalmutator's FILE.mutant.N.c and what it changes."""

    source: str                  # the source's path relative to the rig folder, e.g. "crc32.c"
    number: int                  # universalmutator's N
    path: Path                   # the mutated file
    line: int                    # the first line of the original it changes (1-based)
    original: str                # the original line(s) it changes
    mutated: str                 # what stands there instead ("" when the line is gone)

    @property
    def name(self) -> str:
        return f"{self.source}#{self.number}"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def mutate_tool() -> str:
    """universalmutator's `mutate` command: beside this Python (the venv) or on PATH."""
    here = Path(sys.executable).with_name("mutate")
    if here.exists():
        return str(here)
    found = shutil.which("mutate")
    if found is None:
        raise MutationError("universalmutator's `mutate` command is not installed; expected it in the venv: "
                            "pip install -e '.[mutants]' (make mutants does it)")
    return found


class MutantFile(NamedTuple):
    """A mutant file before it is looked at: its source, universalmutator's N and its path."""

    source: str
    number: int
    path: Path


def mutant_files(rig_folder: Path, source: str, scratch: Path) -> tuple[int, list[MutantFile]]:
    """`mutate SOURCE --noCheck` into scratch/<source>/: how many files it wrote, and the distinct
    ones (a copy identical to the original or to an earlier mutant dropped), by number."""
    original = (rig_folder / source).resolve()
    out = scratch.resolve() / source.replace("/", "__")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    done = subprocess.run([mutate_tool(), str(original), "--noCheck", "--mutantDir", str(out)], cwd=out,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise MutationError(f"mutate {original} --noCheck exited with {done.returncode}: "
                            f"{(done.stderr or done.stdout).strip()[-500:]}")
    pattern = re.compile(re.escape(original.stem) + r"\.mutant\.(\d+)" + re.escape(original.suffix) + "$")
    files = sorted(((int(m.group(1)), p) for p in out.iterdir() if (m := pattern.match(p.name))),
                   key=lambda pair: pair[0])
    seen = {hashlib.sha256(original.read_bytes()).digest()}
    distinct = []
    for number, path in files:
        digest = hashlib.sha256(path.read_bytes()).digest()
        if digest not in seen:
            seen.add(digest)
            distinct.append(MutantFile(source, number, path))
    return len(files), distinct


def describe(rig_folder: Path, file: MutantFile) -> Mutant:
    """A mutant file with what it changes: the line, the original's text there and the mutant's."""
    line, before, after = _changed(_lines((rig_folder / file.source).read_bytes()), _lines(file.path.read_bytes()))
    return Mutant(file.source, file.number, file.path, line, before, after)


def generate_mutants(rig_folder: Path, source: str, scratch: Path) -> tuple[int, list[Mutant]]:
    """mutant_files, each described (a campaign describes only the mutants it samples)."""
    generated, files = mutant_files(rig_folder, source, scratch)
    return generated, [describe(rig_folder, f) for f in files]


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def _changed(original: list[str], mutated: list[str]) -> tuple[int, str, str]:
    """Where a mutant differs (universalmutator changes one line, maybe into several): the first
    line that differs (1-based), the original's lines there and the mutant's."""
    n = min(len(original), len(mutated))
    i = 0
    while i < n and original[i] == mutated[i]:
        i += 1
    if i == len(original) == len(mutated):
        return 0, "", ""
    tail = 0
    while tail < n - i and original[-1 - tail] == mutated[-1 - tail]:
        tail += 1
    i2, j2 = len(original) - tail, len(mutated) - tail
    if i == i2 and i > 0:        # lines added after a line (universalmutator: "}" -> "}\nbreak;"): that line too
        i -= 1
    return i + 1, "\n".join(original[i:i2]), "\n".join(mutated[i:j2])


def allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """How many of `size` to draw from each source, in proportion to its count (largest
    remainders get the rest; everything when size >= the total)."""
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    quotas = {s: size * c / total for s, c in counts.items()}
    out = {s: int(q) for s, q in quotas.items()}
    rest = size - sum(out.values())
    for s in sorted(counts, key=lambda s: (-(quotas[s] - out[s]), -counts[s], s))[:rest]:
        out[s] += 1
    return out


M = TypeVar("M", Mutant, MutantFile)


def sample_mutants(mutants: Mapping[str, Sequence[M]], size: int, seed: int) -> list[M]:
    """A seeded sample of `size` mutants (Mutant or MutantFile) spread over the sources in
    proportion to their counts; the same seed and mutants give the same sample. Ordered by source
    and number."""
    rng = random.Random(seed)
    quota = allocate({s: len(ms) for s, ms in mutants.items()}, size)
    chosen: list[M] = []
    for source in sorted(mutants):
        pool = sorted(mutants[source], key=lambda m: m.number)
        chosen += sorted(rng.sample(pool, quota[source]), key=lambda m: m.number)
    return chosen


# ---- drawing mutants that compile -----------------------------------------------------------------

def compile_source(command: Sequence[str], rig_folder: Path, source: str, text: bytes, scratch: Path,
                   timeout_s: float = BUILD_TIMEOUT_S) -> bytes | None:
    """Compile one version of one source with the compile command ({folder}: the rig folder,
    {source}: the file, {object}: the object to write): the object's bytes, or None when it does
    not compile. The file keeps the source's own name (an object records it), in a folder of its own."""
    where = Path(tempfile.mkdtemp(dir=scratch))
    try:
        path = where / Path(source).name
        path.write_bytes(text)
        obj = where / "out.o"
        fill = {"{folder}": str(rig_folder), "{source}": str(path), "{object}": str(obj)}
        argv = [_fill(a, fill) for a in command]
        try:
            done = subprocess.run(argv, cwd=where, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None
        except OSError as exc:
            raise MutationError(f"compile command {argv[0]!r}: cannot run it ({exc.strerror})") from None
        return obj.read_bytes() if done.returncode == 0 and obj.is_file() else None
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _fill(arg: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace(key, value)
    return arg


class Drawn(NamedTuple):
    """A mutant drawn for the sample, and what the compile check made of it."""

    file: MutantFile
    compiles: bool
    same_object: bool


def draw_compiling(pools: Mapping[str, Sequence[MutantFile]], size: int, seed: int,
                   check: Callable[[MutantFile], bytes | None], originals: Mapping[str, bytes],
                   workers: int = 1) -> list[Drawn]:
    """A seeded sample of `size` mutants that compile, spread over the sources in proportion to
    their mutant counts (allocate): each source's mutants in a seeded order of their own, checked
    (`check`: the object, or None) `workers` at once, until the source's quota compiles. Every
    mutant drawn on the way is returned, in that order; the same seed gives the same draw however
    many workers check it."""
    from concurrent.futures import ThreadPoolExecutor

    quota = allocate({s: len(ms) for s, ms in pools.items()}, size)
    drawn: list[Drawn] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for source in sorted(pools):
            order = sorted(pools[source], key=lambda m: m.number)
            random.Random(f"{seed}:{source}").shuffle(order)
            compiled, at = 0, 0
            while compiled < quota[source] and at < len(order):
                batch = order[at:at + max(1, workers) * 2]
                at += len(batch)
                for file, obj in zip(batch, pool.map(check, batch)):
                    if compiled == quota[source]:
                        break
                    drawn.append(Drawn(file, obj is not None, obj is not None and obj == originals[source]))
                    compiled += obj is not None
    return drawn


# ---- a copy of the rig folder --------------------------------------------------------------------

def copy_rig(rig_folder: Path, dest: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE,
             mutant: Mutant | None = None) -> Path:
    """The rig folder copied to `dest` (the names in `exclude` left out at every level), with the
    mutant's file in place of its source; `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(rig_folder, dest, ignore=shutil.ignore_patterns(*exclude), symlinks=True)
    if mutant is not None:
        target = dest / mutant.source
        if not target.is_file():
            raise MutationError(f"{mutant.source}: not in the copy of {rig_folder}; expected a source inside the "
                                "rig folder")
        shutil.copyfile(mutant.path, target)
    return dest


def check_starts_own_firmware(rig_folder: Path) -> None:
    """The rig's device.start must name its firmware through "{folder}" (and not by the folder's
    own path), so that a copy of the folder starts the copy's firmware."""
    from .rig import load_rig

    rig = load_rig(rig_folder / "rig.toml")
    start = rig.config.device.get("start")
    args = shlex.split(start) if isinstance(start, str) else list(start or [])
    if not any("{folder}" in a for a in args):
        raise MutationError(f"{rig_folder / 'rig.toml'}: device.start = {args!r} does not name the firmware through "
                            "\"{folder}\"; expected a rig that starts the firmware built in its own folder "
                            "(a copy of it must start the copy's)")
    own = str(rig_folder.resolve())
    if any(own in a for a in args):
        raise MutationError(f"{rig_folder / 'rig.toml'}: device.start names {own} itself; expected \"{{folder}}\"")


def build(folder: Path, command: Sequence[str], timeout_s: float = BUILD_TIMEOUT_S) -> tuple[bool, float, str]:
    """Run the build command in `folder` ("{folder}" in it filled in): built?, seconds, the output's
    last lines."""
    argv = [a.replace("{folder}", str(folder)) for a in command]
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - started, f"the build ran past {timeout_s:g} s"
    except OSError as exc:
        raise MutationError(f"build command {argv[0]!r}: cannot run it ({exc.strerror})") from None
    output = (done.stdout + done.stderr).strip()
    return done.returncode == 0, time.perf_counter() - started, _first_error(output)


def _first_error(output: str) -> str:
    lines = output.splitlines()
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors[0] if errors else "\n".join(lines[-3:]))[:300]


def digest_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# ---- running one firmware --------------------------------------------------------------------------

@dataclass(frozen=True)
class ScenarioRun:
    """How one scenario went on one firmware, in brief."""

    id: str
    verdict: str                 # hil.verdicts.Verdict's value: "pass", "fail", "error", "not run"
    wall_s: float
    failure: str                 # the first divergence, failed check or reason, in words ("" when it passed)
    signature: tuple[str, ...]   # what "ended the same way" compares (no ports, no times)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _stable(text: str) -> str:
    return _URL.sub("<url>", text)


def summarise(result: Any) -> ScenarioRun:
    """A hil.verdicts.ScenarioResult in brief."""
    failures = result.failures()
    divergence = result.divergence.message() if result.divergence is not None else ""
    checks = tuple(f"{c.step}: {c.what}: {c.measured}" for c in result.checks if not c.passed)
    signature = (result.verdict.value, divergence, *checks, _stable(result.reason))
    return ScenarioRun(result.scenario, result.verdict.value, round(result.wall_s, 3),
                       failures[0] if failures else "", signature)


def kills(run: ScenarioRun, original: ScenarioRun | None) -> bool:
    """Did this scenario tell the mutant from the original? Not passing what the original passes;
    or, for a scenario the original does not pass (allow_failing_baseline), ending otherwise."""
    if original is None or original.verdict == "pass":
        return run.verdict != "pass"
    return run.signature != original.signature


@dataclass(frozen=True)
class Job:
    """What a worker does: build a copy of the rig folder (with a mutant in it, or the original)
    and run scenarios on it."""

    name: str                    # the copy's folder name under work_root
    rig_folder: Path
    work_root: Path
    build_command: tuple[str, ...]
    suites: tuple[Path, ...]
    order: tuple[str, ...]       # the scenario ids to run, in order (empty: every scenario of the suites)
    mutant: Mutant | None = None
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    artifact: str | None = None  # the build output compared with the original's (relative to the copy)
    original_digest: str | None = None
    run_identical: bool = False
    originals: Mapping[str, ScenarioRun] = field(default_factory=dict)   # the baseline's runs
    stop_at_kill: bool = True
    keep: bool = False
    build_timeout_s: float = BUILD_TIMEOUT_S
    prebuilt: bool = False       # the folder is there and built (the baseline's): no copy, no build, kept

    @property
    def folder(self) -> Path:
        return self.work_root / self.name


@dataclass
class Outcome:
    """What came of one job: a mutant's verdict, or the baseline's runs."""

    mutant: Mutant | None
    status: str                  # KILLED, SURVIVED, INVALID or ERROR (the tool's own trouble)
    scenario: str = ""           # the scenario that killed it, or TIMEOUT
    reason: str = ""             # the divergence or reason; the build error of an invalid one
    same_binary: bool = False    # its build output is the original's (not run, unless run_identical)
    same_object: bool = False    # its source compiles to the original's object code (never built nor run)
    build_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0
    runs: list[ScenarioRun] = field(default_factory=list)
    digest: str | None = None    # the artifact's SHA-256


def run_job(job: Job, notify: Callable[[str], None] = lambda scenario: None) -> Outcome:
    """Copy, build and run one firmware (see Job); `notify` hears each scenario as it starts."""
    from .rig import load_rig
    from .runner import run_scenario
    from .scenario import load_suite

    started = time.perf_counter()
    outcome = Outcome(job.mutant, SURVIVED)
    folder = job.folder
    try:
        if not job.prebuilt:
            copy_rig(job.rig_folder, folder, job.exclude, job.mutant)
            built, outcome.build_s, log = build(folder, job.build_command, job.build_timeout_s)
            if not built:
                outcome.status, outcome.reason = INVALID, log
                return outcome
        if job.artifact is not None and not job.prebuilt:
            outcome.digest = digest_of(folder / job.artifact)
            if outcome.digest is None:
                raise MutationError(f"the build made no {job.artifact} in {folder}; expected the artifact named by "
                                    "--artifact")
        if job.mutant is not None and job.original_digest is not None and outcome.digest == job.original_digest:
            outcome.same_binary = True
            if not job.run_identical:
                return outcome
        rig = load_rig(folder / "rig.toml")
        scenarios = {s.id: s for s in load_suite(list(job.suites))}
        order = list(job.order) or list(scenarios)
        run_started = time.perf_counter()
        for scenario_id in order:
            notify(scenario_id)
            try:
                original = job.originals.get(scenario_id)
                quick = job.stop_at_kill and (original is None or original.verdict == "pass")   # the verdict is enough
                run = summarise(run_scenario(rig, scenarios[scenario_id], stop_at_failure=quick))
            except Exception as exc:   # noqa: BLE001 - the runner's own bug, brought out by this firmware
                text = f"the runner itself raised {type(exc).__name__}: {exc} (a host bug as well)"
                run = ScenarioRun(scenario_id, "error", 0.0, text, ("error", _stable(text)))
            outcome.runs.append(run)
            if job.stop_at_kill and kills(run, job.originals.get(scenario_id)):
                outcome.status, outcome.scenario = KILLED, scenario_id
                original = job.originals.get(scenario_id)
                outcome.reason = (run.failure or run.verdict) if original is None or original.verdict == "pass" else (
                    f"ends otherwise than on the original: {run.failure or run.verdict} (the original: "
                    f"{original.failure or original.verdict})")
                break
        outcome.run_s = time.perf_counter() - run_started
        return outcome
    finally:
        outcome.wall_s = time.perf_counter() - started
        if not (job.keep or job.prebuilt):
            shutil.rmtree(folder, ignore_errors=True)


# ---- worker processes ----------------------------------------------------------------------------

def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker: its own process group (so a timeout kills it with the QEMU it started), then
    jobs from the pipe until None."""
    os.setsid()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            outcome = run_job(job, lambda scenario: conn.send(("scenario", scenario)))
        except Exception as exc:   # noqa: BLE001 - the tool's own trouble, reported as such
            outcome = Outcome(job.mutant, ERROR, reason=f"{type(exc).__name__}: {exc}")
        conn.send(("done", outcome))


class _Worker:
    def __init__(self, context: Any) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), name="ithil-mutant-worker")
        self.process.start()
        child.close()
        self.job: Job | None = None
        self.deadline = 0.0
        self.started = 0.0
        self.scenario = ""

    def give(self, job: Job, timeout_s: float) -> None:
        """The job; its deadline: the build's own limit (and a minute to start the worker) until
        its first scenario starts, then `timeout_s` from there (see scenario_started)."""
        self.job, self.scenario, self.timeout_s = job, "", timeout_s
        self.started = time.monotonic()
        self.deadline = self.started + job.build_timeout_s + 60 + timeout_s
        self.conn.send(job)

    def scenario_started(self, scenario: str) -> None:
        if not self.scenario:
            self.deadline = time.monotonic() + self.timeout_s
        self.scenario = scenario

    def kill(self) -> None:
        """Kill the worker's process group (the worker, QEMU and whatever else it started)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass                   # not yet a group of its own: the worker alone
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):   # a worker that died has closed its pipe: join it anyway
            self.conn.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_jobs(jobs: Sequence[Job], workers: int, timeout_s: float,
             on_outcome: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Every job on `workers` worker processes at once; one whose scenarios run past `timeout_s`
    (counted from its first scenario's start: the build has its own limit, Job.build_timeout_s)
    is killed with its process group and comes back KILLED by TIMEOUT, naming the scenario it was
    in. Outcomes in the order of the jobs."""
    context = multiprocessing.get_context("spawn")
    pending = deque(enumerate(jobs))
    pool: list[_Worker] = []
    running: dict[int, int] = {}          # id(worker) -> the job's index
    outcomes: dict[int, Outcome] = {}

    def finish(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        on_outcome(outcome)

    try:
        while pending or running:
            for worker in pool:
                if worker.job is None and pending:
                    index, job = pending.popleft()
                    running[id(worker)] = index
                    worker.give(job, timeout_s)
            while len(pool) < max(1, workers) and pending:
                worker = _Worker(context)
                pool.append(worker)
                index, job = pending.popleft()
                running[id(worker)] = index
                worker.give(job, timeout_s)
            busy = [w for w in pool if w.job is not None]
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=wait_s)
            for worker in busy:
                job = worker.job
                assert job is not None
                if worker.conn in ready:
                    try:
                        kind, value = worker.conn.recv()
                    except (EOFError, OSError):
                        kind, value = "died", None
                    if kind == "scenario":
                        worker.scenario_started(value)
                        continue
                    index = running.pop(id(worker))
                    worker.job = None
                    if kind == "done":
                        finish(index, value)
                        continue
                    code = worker.process.exitcode
                    worker.kill()
                    pool.remove(worker)
                    _forget(job)
                    finish(index, Outcome(job.mutant, ERROR, reason=f"the worker process died (exit code {code})"))
                elif time.monotonic() >= worker.deadline:
                    index = running.pop(id(worker))
                    worker.kill()
                    pool.remove(worker)
                    _forget(job)
                    spent = time.monotonic() - worker.started
                    what = (f"still running {timeout_s:g} s after its first scenario started, in scenario "
                            f"{worker.scenario}" if worker.scenario else f"still building after {spent:.0f} s")
                    finish(index, Outcome(job.mutant, KILLED, TIMEOUT, f"{what}; killed (a hang counts as killed by "
                                          "the timeout)", wall_s=spent))
    finally:
        for worker in pool:
            if worker.job is not None:
                worker.kill()
                _forget(worker.job)
            else:
                worker.stop()
    return [outcomes[i] for i in range(len(jobs))]


def _forget(job: Job) -> None:
    if not (job.keep or job.prebuilt):
        shutil.rmtree(job.folder, ignore_errors=True)


# ---- a campaign ------------------------------------------------------------------------------------

@dataclass
class Settings:
    """What a campaign mutates, builds, runs and how."""

    rig_folder: Path
    sources: list[str]                    # relative to the rig folder
    build_command: tuple[str, ...] = ("make",)
    artifact: str | None = None           # e.g. "build/firmware.bin": same bytes as the original's -> equivalent
    suites: tuple[Path, ...] = (STANDARD_SUITE,)
    sample_size: int = DEFAULT_SAMPLE
    seed: int = DEFAULT_SEED
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout_s: float | None = None        # on a mutant's scenarios; None: from the baseline (see timeout_for)
    work_dir: Path | None = None          # None: a fresh temporary folder, removed at the end
    keep: bool = False
    allow_failing_baseline: bool = False
    run_identical: bool = False
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    versions_of: tuple[str, ...] = ()     # programs whose `--version` the report records
    compile_command: tuple[str, ...] = () # compiles one source to one object ({folder}, {source}, {object}):
                                          # the sample is then of mutants that compile, and a mutant with the
                                          # original's object code is equivalent unbuilt; () draws blind


@dataclass
class SourceCount:
    source: str
    generated: int               # files mutate wrote
    distinct: int                # after dropping copies
    sampled: int = 0             # in the sample: compiling ones when there is a compile check
    drawn: int = 0               # drawn to get them (those that do not compile included)


@dataclass
class Campaign:
    """A finished campaign: what was run and what came of it."""

    settings: Settings
    rig_name: str
    started: dt.datetime
    versions: dict[str, str]
    baseline: Outcome
    order: list[str]                       # the scenarios run on the mutants, in order
    left_out: list[ScenarioRun]            # scenarios not run on the mutants and why
    sources: list[SourceCount] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    timeout_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)   # baseline, generate, mutants, total
    reruns: list[str] = field(default_factory=list)           # survivors run again later (rerun_survivors), in words
    pending: list[Mutant] = field(default_factory=list)       # drawn, not yet run: an interrupted campaign (resume)

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def kill_rate(self) -> float | None:
        killed, survived = len(self.of(KILLED)), len(self.of(SURVIVED))
        return killed / (killed + survived) if killed + survived else None


def timeout_for(baseline: Outcome, order: Sequence[str]) -> float:
    """The default per-mutant limit on its scenarios: twice the baseline's (the mutants share the
    cores) and half a minute, at least a minute."""
    runs = {r.id: r.wall_s for r in baseline.runs}
    return float(max(MIN_TIMEOUT_S, round(2 * sum(runs.get(s, 0.0) for s in order) + 30)))


def tool_versions(rig_folder: Path, programs: Iterable[str]) -> dict[str, str]:
    """ithil, universalmutator, Python, the rig's device program and `programs`, each `--version`'s
    first line."""
    from .rig import load_rig

    out = {"ithil": _package_version("ithil"), "universalmutator": _package_version("universalmutator"),
           "python": platform.python_version()}
    start = load_rig(rig_folder / "rig.toml").config.device.get("start")
    args = shlex.split(start) if isinstance(start, str) else list(start or [])
    for program in ([args[0]] if args and "{" not in args[0] else []) + list(programs):
        if program in out:
            continue
        try:
            done = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
            line = (done.stdout or done.stderr).strip().splitlines()
            out[program] = line[0] if line else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[program] = "not found"
    return out


def _package_version(name: str) -> str:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return "not installed"


def normalise_sources(rig_folder: Path, sources: Iterable[str | Path]) -> list[str]:
    """Each source as a path relative to the rig folder (given relative to it, to the working
    folder, or absolute); MutationError for one that is not a file inside it."""
    root = rig_folder.resolve()
    out: list[str] = []
    for s in sources:
        path = Path(s)
        candidates = [path] if path.is_absolute() else [root / path, Path.cwd() / path]
        found = next((c.resolve() for c in candidates if c.is_file()), None)
        if found is None:
            raise MutationError(f"source {str(s)!r}: no such file in {rig_folder} (nor from here); expected a C "
                                "source of the rig's firmware")
        if not found.is_relative_to(root):
            raise MutationError(f"source {str(s)!r}: {found} is outside the rig folder {root}; expected a source "
                                "that the rig's build compiles")
        rel = found.relative_to(root).as_posix()
        if rel not in out:
            out.append(rel)
    if not out:
        raise MutationError(f"no sources to mutate; expected C files of {rig_folder}")
    return out


def run_baseline(settings: Settings, common: Mapping[str, Any], scenario_ids: Sequence[str]) -> Outcome:
    """The unmutated firmware: copied and built once (MutationError if it does not build), then each
    scenario as a job of its own on `settings.jobs` workers, each within the timeout (given, or
    BASELINE_TIMEOUT_S): one that runs past it is an error on the original (signature (TIMEOUT,)).
    An Outcome with every scenario's run, the build's time and the artifact's digest."""
    folder = copy_rig(common["rig_folder"], common["work_root"] / "baseline", settings.exclude)
    built, build_s, log = build(folder, settings.build_command)
    if not built:
        raise MutationError(f"the unmutated firmware does not build ({' '.join(settings.build_command)} in a copy of "
                            f"{common['rig_folder']}): {log}")
    digest = None
    if settings.artifact is not None:
        digest = digest_of(folder / settings.artifact)
        if digest is None:
            raise MutationError(f"the build made no {settings.artifact}; expected the artifact named by --artifact "
                                f"(relative to the rig folder)")
    started = time.perf_counter()
    jobs = [Job("baseline", order=(sid,), stop_at_kill=False, prebuilt=True, **common) for sid in scenario_ids]
    outcomes = run_jobs(jobs, settings.jobs, settings.timeout_s or BASELINE_TIMEOUT_S)
    runs = []
    for sid, outcome in zip(scenario_ids, outcomes):
        if outcome.runs:
            runs += outcome.runs
        elif outcome.scenario == TIMEOUT:
            runs.append(ScenarioRun(sid, "error", outcome.wall_s, f"on the original: {outcome.reason}", (TIMEOUT,)))
        else:
            raise MutationError(f"the baseline could not run {sid}: {outcome.reason}")
    return Outcome(None, SURVIVED, build_s=build_s, run_s=time.perf_counter() - started,
                   wall_s=build_s + time.perf_counter() - started, runs=runs, digest=digest)


@contextlib.contextmanager
def _workspace(settings: Settings) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A scratch folder (removed after, unless keep) holding one snapshot of the rig folder, from
    which the baseline and every mutant are built even if someone edits the folder meanwhile; the
    snapshot and the Job fields every job of the campaign shares."""
    work_root = Path(tempfile.mkdtemp(prefix="ithil-mutants-", dir=settings.work_dir))
    try:
        snapshot = copy_rig(settings.rig_folder.resolve(), work_root / "original", settings.exclude)
        yield snapshot, dict(rig_folder=snapshot, work_root=work_root, build_command=tuple(settings.build_command),
                             suites=tuple(settings.suites), exclude=tuple(settings.exclude),
                             artifact=settings.artifact, keep=settings.keep)
    finally:
        if not settings.keep:
            shutil.rmtree(work_root, ignore_errors=True)


def _baseline(settings: Settings, common: Mapping[str, Any], rig_name: str, scenarios: Sequence[Any],
              say: Callable[[str], None]) -> tuple[Outcome, list[ScenarioRun], list[str], float]:
    """The unmutated firmware on the suite (run_baseline), checked: BaselineFailed unless it passes
    (or allow_failing_baseline). The baseline, the scenarios left out, the order the mutants run
    the rest in (quickest first) and the per-mutant timeout."""
    say(f"baseline: building the unmutated firmware of {rig_name} and running {len(scenarios)} scenarios, "
        f"{settings.jobs} at once")
    baseline = run_baseline(settings, common, [s.id for s in scenarios])
    failing = [r for r in baseline.runs if r.verdict in ("fail", "error")]
    if failing and not settings.allow_failing_baseline:
        names = "; ".join(f"{r.id}: {r.verdict}: {_short(r.failure)}" for r in failing)
        raise BaselineFailed(f"the unmutated firmware does not pass the suite ({len(failing)} of {len(baseline.runs)} "
                             f"scenarios do not: {names}); no mutant was made: a kill rate against a failing "
                             "baseline means nothing (--allow-failing-baseline to go on anyway, for development)",
                             baseline)
    usable = [r for r in baseline.runs if r.verdict != "not run" and r.signature != (TIMEOUT,)]
    left_out = [r for r in baseline.runs if r not in usable]
    if not usable:
        raise MutationError("no scenario of the suite ran on the unmutated firmware (every one NOT_RUN); "
                            "expected scenarios this rig can run")
    order = [r.id for r in sorted(usable, key=lambda r: (r.wall_s, r.id))]
    timeout_s = settings.timeout_s if settings.timeout_s is not None else timeout_for(baseline, order)
    say(f"baseline: {sum(r.verdict == 'pass' for r in usable)} of {len(baseline.runs)} scenarios pass"
        f"{f', {len(failing)} do not (allowed)' if failing else ''}"
        f"{f', {len(left_out)} not run on this rig' if left_out else ''}; "
        f"build {baseline.build_s:.1f} s, scenarios {sum(r.wall_s for r in baseline.runs):.1f} s "
        f"({baseline.run_s:.1f} s on {settings.jobs} workers); per-mutant timeout {timeout_s:g} s")
    walls = {r.id: r.wall_s for r in usable}
    say("scenario order (quickest on the baseline first): " + ", ".join(f"{s} {walls[s]:.1f} s" for s in order))
    return baseline, left_out, order, timeout_s


def run_campaign(settings: Settings, say: Callable[[str], None] = lambda text: None,
                 on_outcome: Callable[[int, int, Outcome], None] | None = None,
                 save_to: Path | None = None) -> Campaign:
    """A whole campaign (see the module docstring). BaselineFailed when the original firmware does
    not pass the suite (unless settings.allow_failing_baseline); MutationError when the rig,
    sources or tools are not as expected. `save_to`: the results as JSON (save_results), written
    once the sample is drawn and again after every mutant, so that an interrupted campaign keeps
    what it ran and the rest can be run later (resume_campaign)."""
    from .rig import load_rig
    from .scenario import load_suite

    started_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    t0 = time.perf_counter()
    folder = settings.rig_folder.resolve()
    if not (folder / "rig.toml").is_file():
        raise MutationError(f"{settings.rig_folder}: no rig.toml there; expected a rig folder")
    rig_name = load_rig(folder / "rig.toml").name
    check_starts_own_firmware(folder)
    sources = normalise_sources(folder, settings.sources)
    scenarios = load_suite(list(settings.suites))
    if settings.sample_size < 1:
        raise MutationError(f"sample size {settings.sample_size}: expected at least 1")
    mutate_tool()                                       # fail before the baseline if it is missing
    versions = tool_versions(folder, settings.versions_of)

    with _workspace(settings) as (snapshot, common):
        work_root = common["work_root"]
        baseline, left_out, order, timeout_s = _baseline(settings, common, rig_name, scenarios, say)
        t_baseline = time.perf_counter() - t0

        t1 = time.perf_counter()
        counts, pools = [], {}
        for source in sources:
            generated, files = mutant_files(snapshot, source, work_root / "mutants")
            counts.append(SourceCount(source, generated, len(files)))
            pools[source] = files
        decided: list[Outcome] = []                    # mutants the compile check settles: never built
        if settings.compile_command:
            sample, decided = _draw_checked(settings, snapshot, sources, pools, work_root, say)
        else:
            sample = [describe(snapshot, f) for f in sample_mutants(pools, settings.sample_size, settings.seed)]
        drawn = Counter(o.mutant.source for o in decided if o.mutant is not None) + Counter(m.source for m in sample)
        built = Counter(m.source for m in sample) + Counter(o.mutant.source for o in decided
                                                             if o.mutant is not None and o.status != INVALID)
        for c in counts:
            c.sampled, c.drawn = built[c.source], drawn[c.source]
        if not settings.keep:                           # the rest are not needed: thousands of files
            chosen = {m.path for m in sample}
            for m in (m for ms in pools.values() for m in ms if m.path not in chosen):
                m.path.unlink(missing_ok=True)
        t_generate = time.perf_counter() - t1
        say(f"mutants: {sum(c.distinct for c in counts)} distinct of {sum(c.generated for c in counts)} generated; "
            f"drew {sum(drawn.values())} (seed {settings.seed}): {len(sample)} to build and run, {settings.jobs} at "
            f"once; {sum(o.status == INVALID for o in decided)} do not compile, "
            f"{sum(o.same_object for o in decided)} compile to the original's object code")

        campaign = Campaign(settings, rig_name, started_at, versions, baseline, order, left_out, counts, decided,
                            timeout_s, {"baseline": t_baseline, "generate": t_generate}, pending=list(sample))
        t2 = time.perf_counter()
        _run_pending(campaign, common, baseline, order, on_outcome, save_to)
        campaign.seconds.update(mutants=time.perf_counter() - t2, total=time.perf_counter() - t0)
    if save_to is not None:
        save_results(campaign, save_to)
    return campaign


def _mutant_jobs(mutants: Sequence[Mutant], baseline: Outcome, order: Sequence[str], common: Mapping[str, Any],
                 run_identical: bool) -> list[Job]:
    """A Job per mutant: built in the snapshot of `common`, run in `order`, judged against `baseline`."""
    originals = {r.id: r for r in baseline.runs if r.id in order}
    return [Job(f"{m.source.replace('/', '__')}.{m.number}", order=tuple(order), mutant=m,
                original_digest=baseline.digest, run_identical=run_identical, originals=originals, **common)
            for m in mutants]


def _run_pending(campaign: Campaign, common: Mapping[str, Any], baseline: Outcome, order: Sequence[str],
                 on_outcome: Callable[[int, int, Outcome], None] | None, save_to: Path | None) -> None:
    """Run the campaign's pending mutants (built in the snapshot of `common`) against the baseline
    of that snapshot, in `order`, each outcome added to the campaign as it comes and the results
    saved then (`save_to`)."""
    settings = campaign.settings
    jobs = _mutant_jobs(campaign.pending, baseline, order, common, settings.run_identical)
    if save_to is not None:
        save_results(campaign, save_to)
    done = [0]

    def each(outcome: Outcome) -> None:
        done[0] += 1
        campaign.outcomes.append(outcome)
        campaign.pending = [m for m in campaign.pending if (m.source, m.number) != (outcome.mutant.source,
                                                                                      outcome.mutant.number)]
        if save_to is not None:
            save_results(campaign, save_to)
        if on_outcome is not None:
            on_outcome(done[0], len(jobs), outcome)

    run_jobs(jobs, settings.jobs, campaign.timeout_s, each)


def resume_campaign(campaign: Campaign, say: Callable[[str], None] = lambda text: None,
                    on_outcome: Callable[[int, int, Outcome], None] | None = None,
                    save_to: Path | None = None) -> Campaign:
    """An interrupted campaign (its saved results) carried on: the unmutated firmware and the suite
    as they are now must pass first (the baseline is run again), then the mutants still pending
    are made again from their recorded change (rebuilt_mutant; MutationError if a source has moved
    on) and run, the results saved after each."""
    from .scenario import load_suite

    settings = campaign.settings
    t0 = time.perf_counter()
    with _workspace(settings) as (snapshot, common):
        made = []
        for m in campaign.pending:
            again = rebuilt_mutant(snapshot, m, common["work_root"] / "mutants")
            if again is None:
                raise MutationError(f"{m.where}: the source no longer holds the line mutant {m.number} changes; "
                                    "expected the sources the campaign drew from")
            made.append(again)
        baseline, _, order, _ = _baseline(settings, common, campaign.rig_name, load_suite(list(settings.suites)), say)
        if order != campaign.order:
            say(f"resume: the suite now runs {order}; the campaign ran {campaign.order}")
        say(f"resume: {len(made)} mutants still to run, {len(campaign.outcomes)} done")
        campaign.pending = made
        _run_pending(campaign, common, baseline, order, on_outcome, save_to)
        campaign.seconds["mutants"] = campaign.seconds.get("mutants", 0.0) + time.perf_counter() - t0
        campaign.seconds["total"] = campaign.seconds.get("total", 0.0) + time.perf_counter() - t0
    if save_to is not None:
        save_results(campaign, save_to)
    return campaign


def _draw_checked(settings: Settings, snapshot: Path, sources: Sequence[str], pools: Mapping[str, Sequence[MutantFile]],
                  work_root: Path, say: Callable[[str], None]) -> tuple[list[Mutant], list[Outcome]]:
    """draw_compiling with the campaign's compile command: the mutants to build and run, and the
    outcomes the check settles (INVALID: does not compile; SURVIVED, same_object: equivalent)."""
    command, scratch = settings.compile_command, work_root / "compile"
    scratch.mkdir(exist_ok=True)
    originals = {}
    for source in sources:
        obj = compile_source(command, snapshot, source, (snapshot / source).read_bytes(), scratch)
        if obj is None:
            raise MutationError(f"the unmutated {source} does not compile with {' '.join(command)!r}; expected the "
                                "compile command to build the original")
        originals[source] = obj
    started = time.perf_counter()
    drawn = draw_compiling(pools, settings.sample_size, settings.seed,
                           lambda f: compile_source(command, snapshot, f.source, f.path.read_bytes(), scratch),
                           originals, settings.jobs)
    say(f"compile check: {len(drawn)} drawn in {time.perf_counter() - started:.0f} s")
    sample, decided = [], []
    for d in drawn:
        mutant = describe(snapshot, d.file)
        if not d.compiles:
            decided.append(Outcome(mutant, INVALID, reason="does not compile (the compile check)"))
        elif d.same_object and not settings.run_identical:
            decided.append(Outcome(mutant, SURVIVED, same_object=True))
        else:
            sample.append(mutant)
    return sample, decided


# ---- survivors run again, against the suite as it is now ----------------------------------------------

def rebuilt_mutant(rig_folder: Path, mutant: Mutant, scratch: Path) -> Mutant | None:
    """The mutant made again from its recorded change, on the source as it is now (a mutant file
    in `scratch`), or None when the source no longer holds the original lines at that line."""
    lines = (rig_folder / mutant.source).read_text(encoding="utf-8").split("\n")
    before = mutant.original.split("\n")
    at = mutant.line - 1
    if lines[at:at + len(before)] != before:
        return None
    path = scratch / f"{Path(mutant.source).stem}.mutant.{mutant.number}{Path(mutant.source).suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    after = mutant.mutated.split("\n") if mutant.mutated else []
    path.write_text("\n".join(lines[:at] + after + lines[at + len(before):]), encoding="utf-8")
    return dataclasses.replace(mutant, path=path)


def rerun_survivors(campaign: Campaign, equivalents: Mapping[tuple[str, int, str], str],
                    say: Callable[[str], None] = lambda text: None,
                    on_outcome: Callable[[int, int, Outcome], None] | None = None) -> Campaign:
    """The campaign's unexplained survivors run again against the suite and the rig folder as they
    are now (a scenario added since to kill them): the unmutated firmware first (it must pass the
    suite now), then each survivor made again from its recorded change. One whose source has moved
    on (rebuilt_mutant) stays as it was. The campaign with the new outcomes, and a line in reruns
    that says when, against what and what came of it."""
    from .scenario import load_suite

    settings = campaign.settings
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    again = [o for o in campaign.of(SURVIVED) if explanation(o, equivalents, settings.artifact) is None]
    with _workspace(settings) as (snapshot, common):
        scenarios = load_suite(list(settings.suites))
        baseline, _, order, timeout_s = _baseline(settings, common, campaign.rig_name, scenarios, say)
        made = {id(o): rebuilt_mutant(snapshot, o.mutant, common["work_root"] / "mutants") for o in again if o.mutant}
        jobs = _mutant_jobs([m for m in made.values() if m is not None], baseline, order, common, False)
        say(f"rerun: {len(jobs)} of {len(again)} unexplained survivors made again on the sources as they are now; "
            f"{len(scenarios)} scenarios")
        done = [0]

        def report(outcome: Outcome) -> None:
            done[0] += 1
            if on_outcome is not None:
                on_outcome(done[0], len(jobs), outcome)

        fresh = iter(run_jobs(jobs, settings.jobs, timeout_s, report))
    new: dict[int, Outcome] = {}
    for o in again:
        if made.get(id(o)) is not None:
            n = next(fresh)
            new[id(o)] = dataclasses.replace(n, mutant=o.mutant)       # the recorded mutant, not the scratch file
    outcomes = [new.get(id(o), o) for o in campaign.outcomes]
    killed = sum(n.status == KILLED for n in new.values())
    note = (f"{when:%Y-%m-%d %H:%M UTC}: the {len(again)} unexplained survivors run again against the suite as it was "
            f"then ({len(order)} scenarios): {killed} killed, {len(new) - killed} survived"
            + (f", {len(again) - len(new)} not made again (their source has changed at that line)"
               if len(new) < len(again) else ""))
    say(note)
    return dataclasses.replace(campaign, outcomes=outcomes, reruns=[*campaign.reruns, note])


# ---- results, kept to report again ---------------------------------------------------------------------

def save_results(campaign: Campaign, path: Path) -> Path:
    """The campaign as JSON (everything write_report reads), so that the report can be written again
    with explanations added later, without running anything (load_results); `path`."""
    def plain(value: Any) -> Any:
        if isinstance(value, (Path, dt.datetime)):
            return _saved_path(value) if isinstance(value, Path) else value.isoformat()
        raise TypeError(f"{type(value).__name__} in a campaign: expected JSON-able fields")

    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")          # written whole, then put in place: never half a file
    part.write_text(json.dumps(dataclasses.asdict(campaign), default=plain, indent=1) + "\n", encoding="utf-8")
    os.replace(part, path)
    return path


def load_results(path: Path) -> Campaign:
    """A campaign saved by save_results; MutationError when the file is not one."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        st = data["settings"]
        settings = Settings(**{**st, "rig_folder": _loaded_path(st["rig_folder"]),
                               "suites": tuple(_loaded_path(p) for p in st["suites"]),
                               "work_dir": _loaded_path(st["work_dir"]) if st["work_dir"] else None,
                               **{k: tuple(st[k]) for k in ("build_command", "exclude", "versions_of",
                                                            "compile_command")}})

        def run(r: Mapping[str, Any]) -> ScenarioRun:
            return ScenarioRun(**{**r, "signature": tuple(r["signature"])})

        def outcome(o: Mapping[str, Any]) -> Outcome:
            m = o["mutant"]
            mutant = Mutant(**{**m, "path": _loaded_path(m["path"])}) if m is not None else None
            return Outcome(**{**o, "mutant": mutant, "runs": [run(r) for r in o["runs"]]})

        return Campaign(settings, data["rig_name"], dt.datetime.fromisoformat(data["started"]), data["versions"],
                        outcome(data["baseline"]), data["order"], [run(r) for r in data["left_out"]],
                        [SourceCount(**c) for c in data["sources"]], [outcome(o) for o in data["outcomes"]],
                        data["timeout_s"], data["seconds"], data.get("reruns", []),
                        [Mutant(**{**m, "path": _loaded_path(m["path"])}) for m in data.get("pending", [])])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MutationError(f"{path}: not the results of a mutation campaign ({type(exc).__name__}: {exc}); expected "
                            "the JSON `ithil mutants` writes beside its report") from None


def _saved_path(path: Path) -> str:
    """A path as the results keep it: relative to the repository when inside it (the results are
    checked in beside the report, and read again in another checkout), else absolute."""
    whole = path.resolve()
    return whole.relative_to(REPO).as_posix() if whole.is_relative_to(REPO) else str(path)


def _loaded_path(text: str) -> Path:
    """A path the results keep (_saved_path), absolute again."""
    path = Path(text)
    return path if path.is_absolute() else REPO / path


# ---- equivalent mutants and the report ---------------------------------------------------------------

def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _normal(text: str) -> str:
    return " ".join(text.split())


def load_equivalents(path: Path) -> dict[tuple[str, int, str], str]:
    """equivalent_mutants.toml (module docstring): (file, line, mutated text with its whitespace
    normalised) -> why. No file: none."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MutationError(f"{path}: cannot read it ({exc})") from None
    entries = data.get("mutant", [])
    unknown = set(data) - {"mutant"}
    if unknown or not isinstance(entries, list):
        raise MutationError(f"{path}: expected only [[mutant]] tables, got {sorted(unknown) or 'mutant = ' + repr(entries)}")
    out: dict[tuple[str, int, str], str] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: mutant[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"file", "line", "mutated", "why"}:
            raise MutationError(f"{where}: expected the keys file, line, mutated, why; got "
                                f"{sorted(entry) if isinstance(entry, dict) else entry!r}")
        if not (isinstance(entry["file"], str) and isinstance(entry["line"], int) and isinstance(entry["mutated"], str)
                and isinstance(entry["why"], str) and entry["why"].strip()):
            raise MutationError(f"{where}: expected file (text), line (integer), mutated (text) and why (text, "
                                "not empty)")
        out[(entry["file"], entry["line"], _normal(entry["mutated"]))] = entry["why"].strip()
    return out


def explanation(outcome: Outcome, equivalents: Mapping[tuple[str, int, str], str], artifact: str | None) -> str | None:
    """Why a mutant is equivalent: the checked-in explanation, or the same build output; None if
    nothing says so."""
    m = outcome.mutant
    if m is None:
        return None
    why = equivalents.get((m.source, m.line, _normal(m.mutated)))
    if why is not None:
        return why
    if outcome.same_object:
        return SAME_OBJECT
    if outcome.same_binary:
        return SAME_BINARY.format(artifact=artifact or "the build output")
    return None


def _code(text: str) -> str:
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>" if text else ""


def _diff(m: Mutant) -> str:
    lines = [_code("- " + ln.strip()) for ln in m.original.splitlines()]
    lines += [_code("+ " + ln.strip()) for ln in m.mutated.splitlines()] or [_code("+ (line removed)")]
    return "<br>".join(lines)


def _cell(text: str, limit: int = 300) -> str:
    return html.escape(_short(text, limit), quote=False).replace("|", "&#124;")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def write_report(campaign: Campaign, path: Path, equivalents: Mapping[tuple[str, int, str], str] | None = None,
                 equivalents_file: str = EQUIVALENTS_FILE) -> Path:
    """The Markdown report of a campaign (module docstring); its path."""
    s = campaign.settings
    equivalents = equivalents or {}
    killed, survived, invalid, errors = (campaign.of(k) for k in (KILLED, SURVIVED, INVALID, ERROR))
    explained = [(o, explanation(o, equivalents, s.artifact)) for o in survived]
    equivalent = [o for o, why in explained if why is not None]
    unexplained = [o for o, why in explained if why is None]
    non_eq = len(killed) / (len(killed) + len(unexplained)) if killed or unexplained else None
    timeouts = [o for o in killed if o.scenario == TIMEOUT]
    ran = [o for o in killed + survived if not (o.same_binary or o.same_object)]
    sampled = len(campaign.outcomes)
    baseline_runs = {r.id: r for r in campaign.baseline.runs}
    failing = [r for r in campaign.baseline.runs if r.verdict in ("fail", "error")]

    out: list[str] = []
    w = out.append
    w("# Mutation testing of the firmware\n")
    w(f"Written by `ithil mutants` (hil/mutation.py; `make mutants` for the qemu-m3 firmware); "
      f"regenerate it rather than editing it. Survivors are explained in `{_rel(s.rig_folder / equivalents_file)}` "
      "(file, line, mutated text and why), which this report reads.\n")
    if failing:
        w(f"> **The baseline does not pass the suite**: {len(failing)} of {len(campaign.baseline.runs)} scenarios fail or "
          "err on the unmutated firmware, and this development run went on with `--allow-failing-baseline`. A scenario "
          "the original does not pass killed a mutant only where the mutant ended it otherwise. The kill rate below is "
          "not the firmware's.\n")
    w("| | |\n|---|---|")
    rows = [("date", campaign.started.strftime("%Y-%m-%d %H:%M UTC")), ("rig", f"{campaign.rig_name} ({_rel(s.rig_folder)})"),
            ("seed", str(s.seed)),
            ("sample asked", f"{s.sample_size} " + ("that compile (each drawn mutant compiled alone first: "
                                                     f"`{' '.join(s.compile_command)}`)" if s.compile_command
                                                     else "drawn")),
            ("build", f"`{' '.join(s.build_command)}` in a copy of the rig folder"
                      + (f"; same-image check on `{s.artifact}`" if s.artifact else "")),
            ("jobs", f"{s.jobs} at once"), ("per-mutant timeout", f"{campaign.timeout_s:g} s on the scenarios (the build "
                                           f"has {BUILD_TIMEOUT_S:g} s)")]
    rows += [(f"version of {k}", _cell(v)) for k, v in campaign.versions.items()]
    for k, v in rows:
        w(f"| {k} | {v} |")
    w("")

    w("## Result\n")
    w("| | |\n|---|---|")
    same_object = [o for o in survived if o.same_object]
    same_image = [o for o in survived if o.same_binary and not o.same_object]
    for k, v in [("drawn", sampled), ("invalid (do not compile or build; not counted)", len(invalid)),
                 ("**built** (the sample: killed + survived)", f"**{len(killed) + len(survived)}**"),
                 ("killed", f"{len(killed)}" + (f" ({len(timeouts)} by the timeout)" if timeouts else "")),
                 ("survived", len(survived)),
                 ("of which the original's object code (not built further)", len(same_object)),
                 ("of which the original's image", len(same_image)),
                 ("of which explained as equivalent in " + equivalents_file,
                  len(equivalent) - len(same_object) - len(same_image)),
                 ("of which **unexplained**", len(unexplained)),
                 ("tool errors (not counted)", len(errors)),
                 ("**kill rate** killed / (killed + survived)", f"**{_pct(campaign.kill_rate)}**"),
                 ("**non-equivalent kill rate** killed / (killed + unexplained survivors)", f"**{_pct(non_eq)}**"),
                 ("time", _time(campaign.seconds, ran, killed, survived))]:
        w(f"| {k} | {v} |")
    w("")

    if campaign.pending:
        w(f"> **Interrupted**: {len(campaign.pending)} of the {len(campaign.pending) + len(ran_or_decided(campaign))} "
          f"mutants drawn to build are still to run; the figures below are of those that ran. Carry on with "
          f"`ithil mutants --resume {_rel(path.with_suffix('.json'))}`.\n")
    for note in campaign.reruns:
        w(f"Survivors run again: {note}. The kill rate counts those killed then.\n")

    w("## Sources\n")
    w("| source | mutants generated | distinct | drawn | invalid | built | killed | survived |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    by = Counter((o.mutant.source, o.status) for o in campaign.outcomes if o.mutant is not None)
    for c in campaign.sources:
        w(f"| `{c.source}` | {c.generated} | {c.distinct} | {c.drawn or c.sampled} | {by[c.source, INVALID]} "
          f"| {by[c.source, KILLED] + by[c.source, SURVIVED]} | {by[c.source, KILLED]} | {by[c.source, SURVIVED]} |")
    w("")

    w("## Killed, by scenario\n")
    w("The scenarios run on each mutant in this order (quickest on the baseline first), stopping at the first that "
      "tells it from the original; \"run on\": how many mutants got that far (a mutant killed by the timeout counts "
      "for none).\n")
    w("| # | scenario | baseline | baseline time | run on | kills | kills / run on |")
    w("|---:|---|---|---:|---:|---:|---:|")
    kills_by = Counter(o.scenario for o in killed)
    ran_on = Counter(r.id for o in campaign.outcomes for r in o.runs)
    for i, sid in enumerate(campaign.order, 1):
        r = baseline_runs[sid]
        share = f"{100 * kills_by[sid] / ran_on[sid]:.0f} %" if ran_on[sid] else "–"
        w(f"| {i} | {sid} | {r.verdict} | {r.wall_s:.1f} s | {ran_on[sid]} | {kills_by[sid]} | {share} |")
    if timeouts:
        w(f"| | (timeout) | | | | {len(timeouts)} | |")
    w("")
    if campaign.left_out:
        w("Left out (not run on the unmutated firmware, so on no mutant):\n")
        for r in campaign.left_out:
            w(f"- {r.id}: {_cell(r.failure or r.verdict)}")
        w("")

    w("## Survivors\n")
    if not survived:
        w("None.\n")
    else:
        w(f"Each survivor passed every scenario. Explain an equivalent one in `{_rel(s.rig_folder / equivalents_file)}`; "
          "for any other, add the scenario that kills it.\n")
        w("| mutant | where | diff | explanation |")
        w("|---|---|---|---|")
        for o, why in sorted(explained, key=lambda p: (p[0].mutant.source, p[0].mutant.line, p[0].mutant.number)):
            m = o.mutant
            w(f"| {m.number} | `{m.where}` | {_diff(m)} | {_cell(why, 600) if why is not None else UNEXPLAINED} |")
        w("")
    claimed = [o for o in killed if o.mutant is not None
               and (o.mutant.source, o.mutant.line, _normal(o.mutant.mutated)) in equivalents]
    if claimed:
        w("### Explained as equivalent, yet killed\n")
        w(f"These entries of `{equivalents_file}` are wrong: a scenario tells the mutant from the original.\n")
        for o in claimed:
            w(f"- `{o.mutant.where}` {_diff(o.mutant)}: killed by {o.scenario}")
        w("")

    if killed:
        w("## Killed mutants\n")
        w("<details><summary>every killed mutant, the scenario and the first divergence or reason</summary>\n")
        w("| mutant | where | diff | killed by | why |")
        w("|---|---|---|---|---|")
        for o in sorted(killed, key=lambda o: (o.mutant.source, o.mutant.line, o.mutant.number)):
            m = o.mutant
            w(f"| {m.number} | `{m.where}` | {_diff(m)} | {o.scenario} | {_cell(o.reason)} |")
        w("\n</details>\n")
    if errors:
        w("## Tool errors\n")
        for o in errors:
            w(f"- `{o.mutant.where if o.mutant else 'baseline'}`: {_cell(o.reason)}")
        w("")

    w("## Run it\n")
    w("```")
    if s.rig_folder.resolve() == REPO / "rigs" / "qemu-m3":
        w("make mutants                  # the full campaign (MUTANTS_SAMPLE=300, MUTANTS_FLAGS=... to change it)")
    suites = [] if list(s.suites) == [STANDARD_SUITE] else [f"--suite {_rel(p)}" for p in s.suites]
    sources = [c.source for c in campaign.sources] or s.sources
    w(" ".join([f"ithil mutants --rig {_rel(s.rig_folder)}", *(f"--source {x}" for x in sources), *suites,
                f"--build {shlex.quote(' '.join(s.build_command))}", f"--sample {s.sample_size} --seed {s.seed}",
                *([f"--artifact {s.artifact}"] if s.artifact else []),
                *([f"--compile {shlex.quote(' '.join(s.compile_command))}"] if s.compile_command else []),
                *(["--allow-failing-baseline"] if s.allow_failing_baseline else [])]))
    w(f"ithil mutants --report-only {_rel(path.with_suffix('.json'))}   # this report again, with the explanations "
      "as they are now")
    w(f"ithil mutants --rerun {_rel(path.with_suffix('.json'))}         # the unexplained survivors again, against "
      "the suite as it is now")
    w("```")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def ran_or_decided(campaign: Campaign) -> list[Outcome]:
    """The drawn mutants that compiled and have an outcome (run, or settled by their object code)."""
    return [o for o in campaign.outcomes if o.status != INVALID]


def _time(seconds: Mapping[str, float], ran: Sequence[Outcome], killed: Sequence[Outcome],
          survived: Sequence[Outcome]) -> str:
    parts = [f"{seconds.get('total', 0) / 60:.1f} min in all (baseline {seconds.get('baseline', 0):.0f} s, "
             f"mutants {seconds.get('mutants', 0):.0f} s)"]
    if ran:
        parts.append(f"{sum(o.wall_s for o in ran) / len(ran):.1f} s per mutant run (build and suite, one worker)")
    k = [o for o in killed if o.scenario != TIMEOUT]
    if k:
        parts.append(f"killed in {sum(o.wall_s for o in k) / len(k):.1f} s on average")
    s = [o for o in survived if not (o.same_binary or o.same_object)]
    if s:
        parts.append(f"survivors {sum(o.wall_s for o in s) / len(s):.1f} s")
    return "; ".join(parts)


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def summary_line(campaign: Campaign, equivalents: Mapping[tuple[str, int, str], str]) -> str:
    killed, survived, invalid = (campaign.of(k) for k in (KILLED, SURVIVED, INVALID))
    unexplained = [o for o in survived if explanation(o, equivalents, campaign.settings.artifact) is None]
    non_eq = len(killed) / (len(killed) + len(unexplained)) if killed or unexplained else None
    return (f"{len(campaign.outcomes)} sampled: {len(invalid)} invalid, {len(killed)} killed, {len(survived)} survived "
            f"({len(unexplained)} unexplained); kill rate {_pct(campaign.kill_rate)}, non-equivalent kill rate "
            f"{_pct(non_eq)}; {campaign.seconds.get('total', 0) / 60:.1f} min")


__all__ = ["resume_campaign", "rerun_survivors", "rebuilt_mutant", "save_results", "load_results", "compile_source", "draw_compiling", "Drawn", "SAME_OBJECT", "Mutant", "MutantFile", "mutant_files", "describe", "Outcome", "Job", "Settings", "Campaign", "ScenarioRun", "MutationError", "BaselineFailed",
           "generate_mutants", "allocate", "sample_mutants", "copy_rig", "check_starts_own_firmware", "build",
           "run_job", "run_jobs", "run_campaign", "load_equivalents", "explanation", "write_report", "kills",
           "summarise", "timeout_for", "normalise_sources", "summary_line", "KILLED", "SURVIVED", "INVALID",
           "ERROR", "TIMEOUT"]
