"""The whole standard suite on the emulator rig: wall time, the pump time it covers, and the ratio.

Candidate: `ithil run`'s path exactly: the emulator rig as rigs/emulator/rig.toml describes it (the
emulated pump served on a real pty, the balance on its own TCP socket read through pyvisa), every
scenario on a fresh device beside the reference model. Baseline, in the same run: the same suite
with the rig's device reached through pyserial's in-process `emu://` port (no OS line, no server
thread), so the ratio shows what the pty costs on top of the two models' own work.

Prints, last, one figure per line. Goal: the suite in under 60 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import report  # noqa: E402
from firmware_model.units import TICK_HZ  # noqa: E402
from hil.rig import load_rig  # noqa: E402
from hil.rig_kinds import EmulatorRig  # noqa: E402
from hil.runner import run_suite  # noqa: E402
from hil.scenario import load_suite  # noqa: E402
from hil.verdicts import Verdict  # noqa: E402

SUITE = Path(__file__).resolve().parent.parent / "suites" / "standard"
ROUNDS = 2


def timed_suite(rig: EmulatorRig) -> tuple[float, int, int]:
    """Wall time, simulated ticks and passes of one run of the standard suite."""
    scenarios = load_suite([SUITE])
    started = time.perf_counter()
    results = run_suite(rig, scenarios)
    wall = time.perf_counter() - started
    failed = [r.scenario for r in results if r.verdict is not Verdict.PASS]
    if failed:
        raise SystemExit(f"the standard suite failed on {rig.name}: {failed}")
    return wall, sum(r.simulated_ticks for r in results), len(results)


def main() -> None:
    rig = load_rig("emulator")
    assert isinstance(rig, EmulatorRig)
    in_process = EmulatorRig(rig.config.with_device(listen="emu"))
    best: dict[str, float] = {}
    simulated = scenarios = 0
    for _ in range(ROUNDS):            # taking turns, so both see the same moments of a shared machine
        for name, candidate in (("pty", rig), ("emu", in_process)):
            wall, simulated, scenarios = timed_suite(candidate)
            best[name] = min(best.get(name, wall), wall)
    simulated_s = simulated / TICK_HZ
    print(f"{scenarios} scenarios, {simulated_s / 86400:.1f} days of pump time; best of {ROUNDS} (goal: under 60 s)")
    report([
        ("standard_suite_wall", best["pty"], "s"),
        ("standard_suite_simulated", simulated_s / 86400, "days"),
        ("standard_suite_simulated_vs_wall", simulated_s / best["pty"], "x"),
        ("standard_suite_in_process_wall", best["emu"], "s"),
        ("standard_suite_pty_vs_in_process", best["pty"] / best["emu"], "x"),
    ])


if __name__ == "__main__":
    main()
