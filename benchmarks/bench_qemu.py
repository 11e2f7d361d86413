"""The standard suite on the C firmware under QEMU (rigs/qemu-m3), against the emulator rig.

Candidate: `ithil run --rig qemu-m3`'s path exactly: a fresh qemu-system-arm per scenario, the
firmware reached over socket://, the bench fixture's plant fed from the firmware's own strokes
(FixtureAdvance round trips), the balance served from that plant. Baseline, in the same run: the
same suite on the emulator rig (rigs/emulator, the model behind a pty), so the ratio shows what a
real firmware build on an emulated board costs against the Python emulator. Also: the fixture's
round trips per simulated day and their mean cost.

Prints, last, one figure per line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "rigs"))

from _timing import report  # noqa: E402
from firmware_build import build_firmware  # noqa: E402
from firmware_model.units import TICK_HZ  # noqa: E402
from hil.fixture import FixtureClient  # noqa: E402
from hil.rig import Rig, load_rig  # noqa: E402
from hil.runner import run_suite  # noqa: E402
from hil.scenario import load_suite  # noqa: E402
from hil.verdicts import Verdict  # noqa: E402

SUITE = Path(__file__).resolve().parent.parent / "suites" / "standard"

exchanges = 0


def _count_exchanges() -> None:
    """Count FixtureAdvance round trips across every session the suite opens."""
    original = FixtureClient.close

    def close(self: FixtureClient) -> None:
        global exchanges
        exchanges += self.exchanges
        original(self)
    FixtureClient.close = close  # type: ignore[method-assign]


def timed_suite(rig: Rig) -> tuple[float, int, int]:
    """Wall time, simulated ticks and scenario count of one run of the standard suite."""
    scenarios = load_suite([SUITE])
    started = time.perf_counter()
    results = run_suite(rig, scenarios)
    wall = time.perf_counter() - started
    failed = [f"{r.scenario}: {r.verdict.name}" for r in results if r.verdict is not Verdict.PASS]
    if failed:
        raise SystemExit(f"the standard suite did not pass on {rig.name}: {failed}")
    return wall, sum(r.simulated_ticks for r in results), len(results)


def main() -> None:
    build_firmware(Path("/tmp"))
    _count_exchanges()
    qemu, emulator = load_rig("qemu-m3"), load_rig("emulator")
    qemu_wall, simulated, scenarios = timed_suite(qemu)
    emulator_wall, _, _ = timed_suite(emulator)
    days = simulated / TICK_HZ / 86400
    print(f"{scenarios} scenarios, {days:.1f} days of pump time, {exchanges} fixture round trips")
    report([
        ("qemu_suite_wall", qemu_wall, "s"),
        ("qemu_suite_simulated_vs_wall", simulated / TICK_HZ / qemu_wall, "x"),
        ("emulator_suite_wall", emulator_wall, "s"),
        ("qemu_vs_emulator_suite", qemu_wall / emulator_wall, "x"),
        ("fixture_round_trips_per_day", exchanges / days, "/day"),
    ])


if __name__ == "__main__":
    main()
