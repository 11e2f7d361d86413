"""hil.html_report: the single-file HTML report, rendered by headless Chromium from real runs on the
emulator (three passing scenarios and a deliberately wrong device that diverges)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hil.html_report import alarm_spans, decimate, write_html
from hil.requirements import load_requirements
from hil.rig import load_rig
from hil.rig_kinds import EmulatorRig
from hil.runner import run_scenario
from hil.scenario import load_scenario
from hil.verdicts import (Check, Divergence, RequirementVerdict, ScenarioResult, ScenarioTrace, TelemetryPoint,
                          Verdict, requirement_verdicts)

SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard"
PASSING = ("occlusion_intermediate", "flow_accuracy_intermediate", "drug_library")
CHROMIUM = shutil.which("chromium") or "chromium"   # make test installs it (Debian chromium)
CHROMIUM_TIMEOUT_S = 60
MAX_REPORT_BYTES = 1_500_000     # four scenarios; a whole suite stays well under 5 MB
# marks each SVG with the size the browser laid it out at, so the dumped DOM shows it was rendered
SIZE_PROBE = ("<script>for (const s of document.querySelectorAll('svg')) { const r = s.getBoundingClientRect();"
              " s.setAttribute('data-rendered', r.width + 'x' + r.height); }</script>")



@dataclass
class Report:
    path: Path
    results: list[ScenarioResult]
    verdicts: list[RequirementVerdict]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    rig = load_rig("emulator")
    results = [run_scenario(rig, load_scenario(SUITE / f"{name}.toml")) for name in PASSING]
    wrong = EmulatorRig(rig.config.with_device(pump={"low_reservoir_nl": 2_500_000}))
    results.append(run_scenario(wrong, load_scenario(SUITE / "reservoir.toml")))
    verdicts = [v for v in requirement_verdicts(load_requirements(), results) if v.scenarios]
    path = tmp_path_factory.mktemp("html") / "out" / "report.html"
    assert write_html(path, results, verdicts, suite="standard", rig="emulator", wall_s=1.5) == path
    return Report(path, results, verdicts)


def expected_svgs(result: ScenarioResult) -> int:
    """The plots a result's data calls for: volume, pressure and reservoir with any telemetry, flow
    with two frames or more, alarms, two per gravimetric step, balance."""
    t = result.trace
    return (3 * bool(t.device) + (len(t.device) >= 2) + bool(t.alarms) + 2 * len(result.gravimetric)
            + bool(t.balance))


# ---- the DOM ------------------------------------------------------------------------------------

@dataclass
class Svg:
    attrs: dict[str, str]
    paths: int = 0


@dataclass
class Dom(HTMLParser):
    """What the tests look at in a page: SVGs and their paths, ids, references, the text of the
    divergence box, and all text."""

    svgs: list[Svg] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    refs: list[tuple[str, str, str]] = field(default_factory=list)   # (tag, attribute, value)
    divergence_text: str = ""
    text: str = ""
    _svg_depth: int = 0
    _box_depth: int = 0

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        self.refs += [(tag, k, v) for k, v in a.items() if k in ("src", "href", "xlink:href", "action", "data")]
        if tag == "svg":
            if self._svg_depth == 0:
                self.svgs.append(Svg(a))
            self._svg_depth += 1
        elif tag == "path" and self._svg_depth:
            self.svgs[-1].paths += 1
        if tag == "div" and (self._box_depth or "divergence" in a.get("class", "").split()):
            self._box_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg_depth -= 1
        elif tag == "div" and self._box_depth:
            self._box_depth -= 1

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._box_depth:
            self.divergence_text += data


def parse(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    dom.close()
    return dom


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", *args],
                          capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=True)


# ---- in a browser -------------------------------------------------------------------------------

def test_chromium_renders_a_page_that_is_not_blank(report: Report, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    png = tmp_path / "report.png"
    chromium("--hide-scrollbars", f"--screenshot={png}", "--window-size=1280,4000", report.path.as_uri())
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int32)
    assert len(rgb) == 1280 * 4000
    not_white = float((rgb.min(axis=1) < 245).mean())
    colours = len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))
    assert not_white > 0.05, f"{not_white:.1%} of the screenshot is not white"
    assert colours > 200, f"{colours} distinct colours"
    r, g, b = rgb.T
    # the FAIL badge and the verdict colours are on screen: some strongly red and green pixels
    assert ((r > 180) & (g < 80) & (b < 80)).any()
    assert ((g > 100) & (r < 60) & (b < 90)).any()


def test_dom_has_every_requirement_and_every_plot_rendered(report: Report, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    probe.write_text(report.path.read_text(encoding="utf-8").replace("</body>", SIZE_PROBE + "</body>"),
                     encoding="utf-8")
    dom = parse(chromium("--dump-dom", probe.as_uri()).stdout)
    for rv in report.verdicts:
        assert rv.requirement.id in dom.text, rv.requirement.id
    want = sum(expected_svgs(r) for r in report.results)
    assert want >= 20          # the runs did make traces: every kind of plot is drawn at least once
    assert len(dom.svgs) == want
    for i, svg in enumerate(dom.svgs):
        width, _, height = svg.attrs.get("data-rendered", "0x0").partition("x")
        assert float(width) > 100 and float(height) > 30, f"svg {i} laid out at {width} x {height}"
        assert float(svg.attrs["width"].removesuffix("pt")) > 0 and float(svg.attrs["height"].removesuffix("pt")) > 0
        assert svg.paths > 3, f"svg {i} has {svg.paths} paths"
    assert "status.refill_due_tick" in dom.divergence_text


# ---- the file itself ------------------------------------------------------------------------------

def sections(html: str) -> dict[str, str]:
    """Each scenario's section of the page, by scenario id."""
    parts = html.split('<section class="scenario" id="scenario-')[1:]
    return {part.partition('"')[0]: part for part in parts}


def test_every_plot_the_traces_call_for(report: Report) -> None:
    by_id = sections(report.path.read_text(encoding="utf-8"))
    assert set(by_id) == {r.scenario for r in report.results}
    for r in report.results:
        assert by_id[r.scenario].count("<svg") == expected_svgs(r), r.scenario
    flow, occlusion, drugs = by_id["flow-accuracy-intermediate"], by_id["occlusion-intermediate"], by_id["drug-library"]
    assert "start-up curve" in flow and "trumpet curve" in flow and "mean error E = " in flow
    assert "balance mass" in occlusion and "alarms logged" in drugs and "occlusion threshold" in occlusion


def test_the_first_divergence_is_highlighted(report: Report) -> None:
    html = report.path.read_text(encoding="utf-8")
    dom = parse(html)
    wrong = next(r for r in report.results if r.divergence is not None)
    d = wrong.divergence
    assert wrong.scenario == "reservoir" and wrong.verdict is Verdict.FAIL
    assert d is not None and d.quantity == "status.refill_due_tick"
    box = " ".join(dom.divergence_text.split())
    for fact in (d.quantity, f"{d.tick:,}", repr(d.expected), repr(d.got), d.tolerance, d.where):
        assert fact in box, fact
    assert "ProgramContinuous" in box                  # the context frames
    assert re.search(r'<div class="divergence"[^>]*>.*?<pre>', html, re.S)
    # the red line at the divergence's tick, in the legend of every (time) plot of the failing scenario
    plots = re.findall(r"<svg.*?</svg>", sections(html)["reservoir"], re.S)
    assert len(plots) == expected_svgs(wrong)
    assert all("first divergence" in svg for svg in plots)
    assert not any("first divergence" in svg for s, part in sections(html).items() if s != "reservoir"
                   for svg in re.findall(r"<svg.*?</svg>", part, re.S))


def test_self_contained_and_light(report: Report) -> None:
    html = report.path.read_text(encoding="utf-8")
    dom = parse(html)
    outside = [(tag, k, v) for tag, k, v in dom.refs if not v.startswith("#")]
    assert outside == []
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?https?:", html) and "@import" not in html and "<script" not in html
    assert "<link" not in html and "<iframe" not in html
    assert 50_000 < report.path.stat().st_size < MAX_REPORT_BYTES
    assert not list(report.path.parent.glob("*.part"))


def test_links_ids_and_header(report: Report) -> None:
    html = report.path.read_text(encoding="utf-8")
    dom = parse(html)
    assert len(dom.ids) == len(set(dom.ids)), "an id is used twice (SVG ids must be unique per plot)"
    targets = {v[1:] for _, _, v in dom.refs if v.startswith("#")}
    assert targets <= set(dom.ids), targets - set(dom.ids)
    for r in report.results:   # each scenario has a section, and the trace links to it
        assert f'href="#scenario-{r.scenario}"' in html and f'id="scenario-{r.scenario}"' in html
    device = report.results[0].device
    assert device is not None
    text = " ".join(dom.text.split())
    for fact in ("standard on emulator", "FAIL", device.firmware, str(device.serial_number), "protocol version",
                 f"ithil {device.tool_version}", "scenarios 4 of 4 run", "real time", "scenario file",
                 "suites/standard/reservoir.toml"):
        assert fact.lower() in text.lower(), fact
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", text)                  # the date
    # a failing requirement names the reason in the trace
    low = next(v for v in report.verdicts if v.requirement.id == "REQ-RESERVOIR-LOW")
    assert low.verdict is Verdict.FAIL
    assert "alarm RESERVOIR_LOW not active" in text


# ---- pieces, without a run ------------------------------------------------------------------------

NASTY = '<script>alert("x")</script> & µL $x_1$'


def test_untrusted_text_is_escaped_and_empty_results_render(tmp_path: Path) -> None:
    catalogue = load_requirements()
    req = next(iter(catalogue))
    broken = ScenarioResult("odd id/é", NASTY, (req,), verdict=Verdict.ERROR, reason=NASTY)
    skipped = ScenarioResult("skipped", "not on this rig", (req,), verdict=Verdict.NOT_RUN, reason="no balance")
    diverged = ScenarioResult(
        "diverged", "diverged", (req,),
        checks=[Check("s", NASTY, False, NASTY, (req,))],
        divergence=Divergence(5, "log[0].code", NASTY, "</pre>" + NASTY, context=(NASTY,)),
        trace=ScenarioTrace(stroke_nl=250, device=[TelemetryPoint(5, 1, 10, 0, 0)],
                            model=[TelemetryPoint(5, 1, 10, 0, 0)])).finish()
    results = [broken, skipped, diverged]
    verdicts = requirement_verdicts(catalogue, results)
    path = write_html(tmp_path / "r.html", results, verdicts, suite="s", rig="r", wall_s=0)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "</pre>&lt;" not in html
    assert html.count("<svg") == 3                   # one telemetry point: volume, pressure, reservoir
    dom = parse(html)
    assert len(dom.ids) == len(set(dom.ids))
    assert 'id="scenario-odd_id__"' in html and 'href="#scenario-odd_id__"' in html


def test_alarm_spans() -> None:
    alarms = [(10, "LOW", True), (30, "LOW", False), (20, "EMPTY", True), (40, "LOW", True), (5, "X", False),
              (50, "EMPTY", True)]
    assert alarm_spans(alarms, 100) == {"X": [], "LOW": [(10, 30), (40, 100)], "EMPTY": [(20, 100)]}


def test_decimate_keeps_the_ends_and_at_most_the_limit() -> None:
    assert list(decimate(5, 10)) == [0, 1, 2, 3, 4]
    kept = decimate(26_232, 2000)
    assert kept[0] == 0 and kept[-1] == 26_231 and len(kept) <= 2000 and all(kept[1:] > kept[:-1])
