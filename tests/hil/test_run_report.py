"""hil.run_report: the JUnit XML CI reads, the console tables and the live progress of `ithil run`."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from firmware_model.units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR
from hil.run_report import RunProgress, format_ticks, format_wall, print_verdicts, real_time_ratio, write_junit
from hil.verdicts import Check, Divergence, Requirement, ScenarioResult, Verdict, requirement_verdicts

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NASTY = 'quote " apostrophe \' <tag> & µL\nsecond line'   # what device strings may hold


def catalogue() -> dict[str, Requirement]:
    reqs = [
        Requirement("REQ-FLOW-1", "Flow within ±15 % over 24 h", "The delivered volume ...", "under-delivery", "§4"),
        Requirement("REQ-OCC-1", "Occlusion alarm <2 h & latched", "An occlusion ...", "under-delivery", "§5", "SR-3"),
        Requirement("REQ-MRI-1", "Stall detected and recovered", "An MRI ...", "over-delivery", "§6"),
        Requirement("REQ-BAT-1", "ERI raised", "The battery ...", "loss of therapy", "§7"),
        Requirement("REQ-LIB-1", "Hard limits refuse", "A prescription ...", "over-delivery", "§3"),
    ]
    return {r.id: r for r in reqs}


def results() -> list[ScenarioResult]:
    passed = ScenarioResult(
        "flow-accuracy", "Flow accuracy at 0.5 mL/day", ("REQ-FLOW-1",),
        checks=[Check("at 24 h", "volume within 15 %", True, "-0.31 %", ("REQ-FLOW-1",))],
        figures={"mean_flow_error_pct": -0.312}, simulated_ticks=26 * TICKS_PER_HOUR, wall_s=1.25).finish()
    failed = ScenarioResult(
        "occlusion-total", "Total occlusion", ("REQ-OCC-1", "REQ-FLOW-1"),
        checks=[Check("at 2 h", "alarm OCCLUSION raised within 2 h", False, "no alarm after 2 h 13 min",
                      ("REQ-OCC-1",)),
                Check("at 1 h", "steps continue", True, "1,920 steps", ("REQ-FLOW-1",))],
        divergence=Divergence(1_234_567, "telemetry.pressure_pa", 12_000, "x" * 300 + NASTY, "±100 Pa",
                              ("tick 1234500 telemetry steps=10", "tick 1234567 " + NASTY)),
        figures={"occlusion_latency_h": 1.23}, simulated_ticks=40 * TICKS_PER_DAY, wall_s=30.5,
        source="suites/standard/occlusion.toml").finish()
    error = ScenarioResult("mri", "MRI stall", ("REQ-MRI-1",), verdict=Verdict.ERROR,
                           reason="device stopped answering \x07: " + NASTY, simulated_ticks=TICKS_PER_HOUR, wall_s=5.0)
    not_run = ScenarioResult("battery", "Battery ERI", ("REQ-BAT-1",), verdict=Verdict.NOT_RUN,
                             reason="rig has no battery fault injection")
    return [passed, failed, error, not_run]


def parse(tmp_path: Path) -> ET.Element:
    res = results()
    path = tmp_path / "reports" / "junit.xml"
    write_junit(path, res, requirement_verdicts(catalogue(), res), suite="standard", rig="emulator")
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert not list(path.parent.glob("*.part"))
    return ET.parse(path).getroot()


def counts(el: ET.Element) -> tuple[str, ...]:
    return tuple(el.get(k) for k in ("tests", "failures", "errors", "skipped", "time"))


def test_junit_counts_on_each_suite_and_the_root(tmp_path: Path) -> None:
    root = parse(tmp_path)
    scenarios, requirements = root.findall("testsuite")
    assert root.tag == "testsuites"
    assert scenarios.get("name") == "standard scenarios on emulator"
    assert requirements.get("name") == "requirements on emulator"
    assert counts(scenarios) == ("4", "1", "1", "1", "36.750")
    # FLOW and OCC fail (the divergence fails everything the scenario covers), MRI errs, BAT and LIB not run
    assert counts(requirements) == ("5", "2", "1", "2", "36.750")
    assert counts(root) == ("9", "3", "2", "3", "36.750")
    assert len(scenarios.findall("testcase")) == 4 and len(requirements.findall("testcase")) == 5


def test_junit_scenario_cases(tmp_path: Path) -> None:
    cases = {c.get("name"): c for c in parse(tmp_path).find("testsuite").findall("testcase")}
    assert set(cases) == {"flow-accuracy", "occlusion-total", "mri", "battery"}
    assert {c.get("classname") for c in cases.values()} == {"standard.emulator"}
    assert cases["occlusion-total"].get("time") == "30.500"

    passed = cases["flow-accuracy"]
    assert passed.find("failure") is None and passed.find("error") is None and passed.find("skipped") is None
    assert "pass  at 24 h: volume within 15 %: -0.31 %" in passed.find("system-out").text

    failure = cases["occlusion-total"].find("failure")
    assert failure.get("type") == "divergence"
    assert failure.get("message").startswith("first divergence at tick 1234567: telemetry.pressure_pa: expected 12000")
    text = failure.text
    assert "at 2 h: alarm OCCLUSION raised within 2 h: got no alarm after 2 h 13 min" in text
    assert "FAIL  at 2 h" in text and "pass  at 1 h: steps continue" in text      # every check, not only failures
    assert "  tick 1234500 telemetry steps=10\n" in text                         # the divergence's context frames
    assert "suites/standard/occlusion.toml" in text

    error = cases["mri"].find("error")
    assert error is not None and cases["mri"].find("failure") is None
    assert error.get("message").startswith("device stopped answering")
    skipped = cases["battery"].find("skipped")
    assert skipped is not None and skipped.get("message") == "rig has no battery fault injection"


def test_junit_properties_carry_requirements_and_figures(tmp_path: Path) -> None:
    cases = {c.get("name"): c for c in parse(tmp_path).find("testsuite").findall("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["occlusion-total"].find("properties")}
    assert props["requirements"] == "REQ-OCC-1, REQ-FLOW-1"
    assert float(props["figure:occlusion_latency_h"]) == 1.23
    assert int(props["simulated_ticks"]) == 40 * TICKS_PER_DAY
    suite_props = {p.get("name"): p.get("value") for p in parse(tmp_path).find("testsuite").find("properties")}
    assert suite_props["rig"] == "emulator" and suite_props["tick_hz"] == str(TICK_HZ)


def test_junit_requirement_cases(tmp_path: Path) -> None:
    cases = {c.get("name"): c for c in parse(tmp_path).findall("testsuite")[1].findall("testcase")}
    assert {c.get("classname") for c in cases.values()} == {"requirements.emulator"}
    occ = cases["REQ-OCC-1: Occlusion alarm <2 h & latched"]
    assert occ.find("failure").get("message").startswith("occlusion-total: first divergence at tick 1234567")
    assert occ.get("time") == "30.500"
    flow = cases["REQ-FLOW-1: Flow within ±15 % over 24 h"]
    assert flow.get("time") == "31.750"                       # both covering scenarios
    assert "pass    flow-accuracy" in flow.find("failure").text
    assert cases["REQ-MRI-1: Stall detected and recovered"].find("error") is not None
    battery = cases["REQ-BAT-1: ERI raised"].find("skipped")
    assert battery.get("message") == "battery: rig has no battery fault injection"
    assert cases["REQ-LIB-1: Hard limits refuse"].find("skipped").get("message") == "no scenario covers it"


def test_junit_special_characters_round_trip(tmp_path: Path) -> None:
    root = parse(tmp_path)
    cases = {c.get("name"): c for c in root.find("testsuite").findall("testcase")}
    # quotes, <, &, µ and a newline survive in attributes and in text
    assert cases["mri"].find("error").get("message") == "device stopped answering \\x07: " + NASTY
    assert "tick 1234567 " + NASTY in cases["occlusion-total"].find("failure").text
    assert repr("x" * 300 + NASTY) in cases["occlusion-total"].find("failure").get("message")
    # a control character XML cannot carry is spelled out, not written raw (the file still parses)
    assert "\x07" not in cases["mri"].find("error").text and "\\x07" in cases["mri"].find("error").text


def render_verdicts(width: int = 100) -> str:
    res = results()
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False)
    print_verdicts(console, requirement_verdicts(catalogue(), res), res, "emulator", wall_s=38.1,
                   simulated_ticks=41 * TICKS_PER_DAY + 5 * TICKS_PER_HOUR)
    return out.getvalue()


def cells_by_requirement(text: str, column: int) -> dict[str, str]:
    """One column of the requirement table, its wrapped lines joined, by requirement id."""
    out: dict[str, str] = {}
    req_id = ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) < 7 or cells[1] == "requirement":
            continue
        req_id = cells[1] or req_id
        out[req_id] = (out.get(req_id, "") + " " + cells[column]).strip()
    return out


def test_print_verdicts_names_everything_on_a_plain_console() -> None:
    text = render_verdicts()
    assert not ANSI.search(text)
    for req_id in catalogue():
        assert req_id in text
    for word in ("pass", "fail", "error", "not run"):
        assert word in text
    assert "overall ERROR: 0 pass, 2 not run, 2 fail, 1 error of 5 requirements" in text
    assert "3 of 4 scenarios run" in text
    assert "simulated 41.2 d in 38.1 s: 93,400× real time" in text
    # the reason keeps the key facts of the divergence and cuts the 300-character value
    reason = cells_by_requirement(text, 5)
    assert reason["REQ-OCC-1"].startswith("occlusion-total: tick 1234567 (37.7 s): telemetry.pressure_pa: "
                                          "expected 12000, got 'xxx")
    assert reason["REQ-OCC-1"].endswith("(tolerance ±100 Pa) (+1 more)")
    assert "x" * 60 not in text
    assert reason["REQ-FLOW-1"].startswith("occlusion-total: tick 1234567")   # the failing one of its two scenarios
    assert reason["REQ-MRI-1"].startswith("mri: device stopped answering")
    assert reason["REQ-LIB-1"] == "no scenario covers it"
    assert "under-delivery" in cells_by_requirement(text, 3)["REQ-OCC-1"]     # the hazard, under the title
    # the figures table
    assert "occlusion_latency_h" in text and "1.23" in text and "-0.312" in text


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_verdict_column_stays_whole_on_narrow_consoles(width: int) -> None:
    rows = [line for line in render_verdicts(width).splitlines() if line.startswith("│ REQ-")]
    expected = {"REQ-FLOW-1": "fail", "REQ-OCC-1": "fail", "REQ-MRI-1": "error", "REQ-BAT-1": "not run",
                "REQ-LIB-1": "not run"}
    assert len(rows) == len(expected)
    for row in rows:
        cells = [c.strip() for c in row.split("│")]
        assert cells[2] == expected[cells[1]], row
        assert len(row) <= width


@pytest.mark.parametrize("ticks, text", [
    (0, "0 s"), (45 * TICK_HZ, "45 s"), (TICKS_PER_HOUR, "60 min"), (26 * TICKS_PER_HOUR, "26 h"),
    (41 * TICKS_PER_DAY + 5 * TICKS_PER_HOUR, "41.2 d"), (7 * 365 * TICKS_PER_DAY, "7 y")])
def test_format_ticks(ticks: int, text: str) -> None:
    assert format_ticks(ticks) == text


def test_wall_time_and_ratio() -> None:
    assert format_wall(38.14) == "38.1 s" and format_wall(723) == "12 min 03 s" and format_wall(7320) == "2 h 02 min"
    assert real_time_ratio(41 * TICKS_PER_DAY + 5 * TICKS_PER_HOUR, 38.1) == "93,400×"
    assert real_time_ratio(TICK_HZ * 12, 1.0) == "12×"
    assert real_time_ratio(TICK_HZ, 2.0) == "0.5×"
    assert real_time_ratio(TICK_HZ, 0.0) == "∞×"


def run_suite(console: Console, advances: int = 1_000) -> RunProgress:
    res = results()
    with RunProgress(console, total_scenarios=len(res)) as progress:
        for r in res[:3]:
            progress.scenario_started(r.scenario, r.title, r.simulated_ticks)
            for i in range(advances):
                progress.advanced(r.simulated_ticks * i // advances)
            progress.scenario_finished(r)
        progress.scenario_finished(res[3])          # not run: finished without being started
    return progress


def test_run_progress_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    run_suite(Console(file=out, width=100, force_terminal=False))
    text = out.getvalue()
    assert not ANSI.search(text) and "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "1/4 start   flow-accuracy: Flow accuracy at 0.5 mL/day (26 h of pump time)"
    assert lines[1].startswith("1/4 ✓ pass    flow-accuracy  1.2 s wall, 26 h simulated")
    assert lines[3].startswith("2/4 ✗ fail    occlusion-total  30.5 s wall, 40 d simulated  tick 1234567")
    assert lines[3].endswith("(+1 more)")                       # one line each, however long
    assert lines[5].startswith("3/4 ✗ error   mri")
    assert lines[6].startswith("4/4 ○ not run battery") and "rig has no battery fault injection" in lines[6]
    assert len(lines) == 7


def test_run_progress_on_a_terminal_prints_the_finished_lines() -> None:
    out = io.StringIO()
    run_suite(Console(file=out, width=100, force_terminal=True))
    text = ANSI.sub("", out.getvalue())
    for line in ("1/4 ✓ pass    flow-accuracy", "2/4 ✗ fail    occlusion-total", "3/4 ✗ error   mri",
                 "4/4 ○ not run battery"):
        assert line in text
    assert "h of 26 h" in text                                   # the scenario bar in simulated time
    assert "\x1b[" in out.getvalue()                             # and it did draw


def test_run_progress_throttles_advanced() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    with RunProgress(console, total_scenarios=1) as progress:
        progress.scenario_started("long", "a long one", 7 * 365 * TICKS_PER_DAY)
        updates = []
        real_update = progress._progress.update
        progress._progress.update = lambda *a, **k: (updates.append(k), real_update(*a, **k))
        for tick in range(0, 7 * 365 * TICKS_PER_DAY, 7 * 365 * TICKS_PER_DAY // 100_000):
            progress.advanced(tick)
    assert 100 <= len(updates) <= RunProgress.UPDATES_PER_SCENARIO + 1
    assert updates[-1]["detail"].endswith("of 7 y")
