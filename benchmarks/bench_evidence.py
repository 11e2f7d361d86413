"""The standard suite on two workers against one, and a recording's replay against the live run.

Parallel: the standard suite's scenarios shared out to two worker processes, each with its own
emulated pump (as `pytest -n 2` gives each xdist worker its own device), against the same
scenarios one after the other in one process, in the same run. The speed-up is bounded by the
longest scenario (the 91-day battery run) and by the machine's two cores.

Replay: the suite run live on the emulator rig with --record, then the recording judged again by
`ithil replay`'s path (same runner and reference model, the device's side read from the file).

Prints, last, one figure per line.
"""

from __future__ import annotations

import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import report  # noqa: E402
from hil.recording import Recorder, read_recording  # noqa: E402
from hil.replay import replay  # noqa: E402
from hil.rig import load_rig  # noqa: E402
from hil.runner import run_scenario, run_suite  # noqa: E402
from hil.scenario import load_scenario, suite_files  # noqa: E402
from hil.verdicts import Verdict  # noqa: E402

SUITE = Path(__file__).resolve().parent.parent / "suites" / "standard"


def one(path: Path) -> tuple[str, str]:
    """Run one scenario on a fresh emulator in this (worker) process."""
    result = run_scenario(load_rig("emulator"), load_scenario(path))
    return result.scenario, result.verdict.value


def parallel(files: list[Path], workers: int) -> tuple[float, dict[str, str]]:
    started = time.perf_counter()
    longest_first = sorted(files, key=lambda p: p.stem != "battery")   # as xdist's load scheduling would end up
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        verdicts = dict(pool.map(one, longest_first))
    return time.perf_counter() - started, verdicts


def main() -> None:
    files = suite_files([SUITE])
    serial_s, serial_verdicts = parallel(files, 1)
    two_s, two_verdicts = parallel(files, 2)
    assert serial_verdicts == two_verdicts and set(two_verdicts.values()) == {"pass"}, two_verdicts

    rig = load_rig("emulator")
    scenarios = [load_scenario(p) for p in files]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.pcapng"
        started = time.perf_counter()
        with Recorder(path) as recorder:
            live = run_suite(rig, scenarios, recorder=recorder)
        live_s = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        again = replay(read_recording(path))
        replay_s = time.perf_counter() - started
    assert [r.verdict for r in live] == [r.verdict for r in again] == [Verdict.PASS] * len(scenarios)
    print(f"{len(files)} scenarios; recording {size_mb:.1f} MB")
    report([
        ("suite_one_worker_wall", serial_s, "s"),
        ("suite_two_workers_wall", two_s, "s"),
        ("suite_two_workers_speedup", serial_s / two_s, "x"),
        ("suite_live_recorded_wall", live_s, "s"),
        ("suite_replay_wall", replay_s, "s"),
        ("replay_vs_live", replay_s / live_s, "x"),
    ])


if __name__ == "__main__":
    main()
