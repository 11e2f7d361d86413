"""`ithil model run`: the installed command, its JSON, its plot and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ITHIL = shutil.which("ithil", path=str(Path(sys.executable).parent)) or "ithil"


def ithil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITHIL, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_model_run_json_matches_the_tables_facts() -> None:
    proc = ithil("model", "run", "examples/morphine_continuous.toml", "--days", "70", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["days"] == 70 and out["drug"] == "morphine"
    assert out["patient_boluses"]["granted"] == 4 * 70
    assert out["patient_boluses"]["denied"] == {"LOCKOUT": 70}
    assert [a["alarm"] for a in out["alarms"]] == ["RESERVOIR_LOW", "RESERVOIR_LOW"]
    assert len(out["refills"]) == 2 and out["refused"] == []


def test_model_run_table_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    proc = ithil("model", "run", "examples/baclofen_flex.toml", "--days", "30", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "baclofen" in proc.stdout and "volume delivered" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_run_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[drug]\nname = "morphine"\nconcentration_mg_per_ml = 10\n[therapy]\nmode = "continuous"\n'
                   'dose_mg_per_day = "two"\n')
    proc = ithil("model", "run", str(bad))
    assert proc.returncode == 2
    assert "therapy.dose_mg_per_day" in proc.stderr and "expected a number" in proc.stderr


def test_model_run_rejects_invalid_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[drug\n")
    proc = ithil("model", "run", str(bad))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr


def test_protocol_docs_writes_the_checked_in_reference(tmp_path: Path) -> None:
    out = tmp_path / "protocol.md"
    proc = ithil("protocol", "docs", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (ROOT / "docs" / "protocol.md").read_text()


# ---- ithil run ------------------------------------------------------------------------------------

def test_run_passes_prints_the_verdicts_and_writes_junit(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    junit = tmp_path / "junit.xml"
    proc = ithil("run", "suites/standard/drug_library.toml", "suites/standard/occlusion_intermediate.toml",
                 "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout                             # not a terminal: plain text
    for req in ("REQ-LIBRARY-HARD", "REQ-LIBRARY-SOFT", "REQ-OCCLUSION-ALARM", "REQ-OCCLUSION-BOLUS"):
        assert req in proc.stdout
    assert "REQ-BATTERY" not in proc.stdout                       # only what the suites given cover
    assert "overall PASS" in proc.stdout
    root = ET.parse(junit).getroot()
    cases = [c.get("name") for c in root.iter("testcase")]
    assert "drug-library" in cases and "occlusion-intermediate" in cases
    assert root.get("failures") == "0" and root.get("errors") == "0"


def test_run_on_a_wrong_device_exits_1_and_names_the_divergence(tmp_path: Path) -> None:
    rig = (ROOT / "rigs" / "emulator" / "rig.toml").read_text()
    rig = rig.replace('test_mode = true ', 'test_mode = true\npump = { low_reservoir_nl = 2_500_000 } ')
    (tmp_path / "rig.toml").write_text(rig)
    proc = ithil("run", "--rig", str(tmp_path), "suites/standard/reservoir.toml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REQ-RESERVOIR-LOW" in proc.stdout and "fail" in proc.stdout
    assert "refill_due_tick" in proc.stdout                       # the first divergence, named


def test_run_with_a_malformed_suite_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nid = "x"\ntitle = "x"\ncovers = ["REQ-PB-LOCKOUT"]\n'
                   '[[step]]\nat = "soon"\ndo = "check"\n')
    proc = ithil("run", str(bad))
    assert proc.returncode == 2
    assert "step[0].at = 'soon': expected a duration" in proc.stderr
