"""Rig files and scenario files: what loads, and that every malformed one names the key and what
was expected."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from hil.errors import RigConfigError, RigError, ScenarioError
from hil.requirements import load_requirements
from hil.rig import RIG_KINDS, Rig, available_rigs, known_rig_kinds, load_rig, register_rig_kind, rig_config
from hil.rig_kinds import EmulatorRig, RtlRig
from hil.scenario import scenario_from

REPO = Path(__file__).resolve().parents[2]
EMULATOR_TOML = tomllib.loads((REPO / "rigs" / "emulator" / "rig.toml").read_text())


def test_the_rigs_in_the_repository_load_as_their_kinds() -> None:
    assert {"emulator", "rtl"} <= set(available_rigs())
    assert isinstance(load_rig("emulator"), EmulatorRig)
    rtl = load_rig("rtl")
    assert isinstance(rtl, RtlRig)
    with pytest.raises(RigError, match="no protocol link"):
        rtl.open()


def test_a_rig_kind_registers_by_name() -> None:
    @register_rig_kind
    class BenchRig(Rig):
        kind = "bench-test-kind"
        device_keys = {"url"}

        def open(self, prompt=None):  # type: ignore[no-untyped-def]
            raise RigError("a rig kind registered for this test only: it opens nothing")

    try:
        doc = copy.deepcopy(EMULATOR_TOML)
        doc["rig"]["kind"] = "bench-test-kind"
        doc["device"] = {"url": "socket://10.0.0.7:4001"}
        assert "bench-test-kind" in known_rig_kinds()
        rig = BenchRig(rig_config(doc, REPO / "rigs" / "emulator"))
        assert rig.config.device["url"] == "socket://10.0.0.7:4001"
    finally:
        del RIG_KINDS["bench-test-kind"]


def _write(tmp_path: Path, doc: dict) -> Path:
    def value(v: object) -> str:
        if isinstance(v, str):
            return '"' + v.replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)
    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    path = tmp_path / "rig.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_RIGS = [
    (("rig", "kind", "oscilloscope"), "rig.kind = 'oscilloscope': no such rig kind; expected one of"),
    (("rig", "time_mode", "realtime"), "rig.time_mode = 'realtime': expected one of 'lockstep'"),
    (("device", "listen", "udp:1"), "device.listen: --listen 'udp:1': expected pty or tcp:HOST:PORT"),
    (("device", "speed", 3), "[device]: unknown key(s) ['speed']; expected some of"),
    (("pump", "low_reservoir_nl", 9_000_000), "[pump]: low_reservoir_nl = 9000000 is outside"),
    (("pump", "reservoir_capacity_nl", "20 mL"), "pump.reservoir_capacity_nl = '20 mL': expected an integer"),
    (("mechanism", "stroke_nl", 0), "[mechanism]: mechanism.stroke_nl = 0 is outside"),
    (("tolerances", "steps", -1), "tolerances.steps = -1: expected an integer >= 0"),
    (("tolerances", "log", "fuzzy"), "tolerances.log = 'fuzzy': expected one of 'exact', 'codes'"),
    (("keys", "clinician", {"id": 1, "secret_hex": "abcd"}), "keys.clinician: the secret is not 32 bytes of hex"),
    (("faults", "occlusion", {"method": "magic"}), "faults.occlusion.method = 'magic': expected one of"),
    (("faults", "earthquake", "test-mode"), "[faults]: unknown key(s) ['earthquake']"),
    (("balance", "resource", "TCPIP::1.2.3.4::4001::SOCKET"), "balance.resource = 'TCPIP::1.2.3.4::4001::SOCKET': "
                                                              "an emulator rig serves its own balance"),
    (("faults", "occlusion", "fixture"), "faults ['occlusion'] = \"fixture\": expected device.fixture = true"),
    (("faults", "reset", "fixture"), "faults.reset = \"fixture\": a bench fixture's plant injects only"),
]

QEMU_TOML = tomllib.loads((REPO / "rigs" / "qemu-m3" / "rig.toml").read_text())


@pytest.mark.parametrize("change, message", [
    (("device", "fixture", False), "faults ['mri', 'occlusion', 'stall'] = \"fixture\": expected device.fixture"),
    (("device", "fixture", "yes"), "device.fixture = 'yes': expected true or false"),
], ids=["fixture-faults-need-a-fixture", "fixture-is-a-flag"])
def test_a_malformed_fixture_rig_names_the_key(tmp_path: Path, change: tuple, message: str) -> None:
    doc = copy.deepcopy(QEMU_TOML)
    section, key, value = change
    doc[section][key] = value
    path = _write(tmp_path, doc)
    with pytest.raises(RigConfigError) as caught:
        load_rig(path)
    assert message in str(caught.value), str(caught.value)


def test_a_served_balance_needs_a_fixture_on_a_serial_rig(tmp_path: Path) -> None:
    doc = copy.deepcopy(QEMU_TOML)
    doc["device"]["fixture"] = False
    for fault in ("occlusion", "mri", "stall"):
        doc["faults"][fault] = "test-mode"
    with pytest.raises(RigConfigError, match="only a rig with device.fixture = true serves its balance"):
        load_rig(_write(tmp_path, doc))


@pytest.mark.parametrize("change, message", BAD_RIGS, ids=[".".join(c[0][:2]) for c in BAD_RIGS])
def test_a_malformed_rig_file_names_the_key(tmp_path: Path, change: tuple, message: str) -> None:
    doc = copy.deepcopy(EMULATOR_TOML)
    section, key, value = change
    doc.setdefault(section, {})[key] = value
    path = _write(tmp_path, doc)
    with pytest.raises(RigConfigError) as caught:
        load_rig(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value), str(caught.value)


def test_a_rig_file_that_is_not_toml_or_missing_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "rig.toml"
    bad.write_text("[rig\nkind = ")
    with pytest.raises(RigConfigError, match="not valid TOML"):
        load_rig(bad)
    with pytest.raises(RigConfigError, match="does not exist; expected a rig folder with a rig.toml"):
        load_rig("no-such-rig")


GOOD = {"scenario": {"id": "s", "title": "t", "covers": ["REQ-PB-LOCKOUT"]},
        "step": [{"at": "0 s", "do": "refill", "with": {"measured_residual_nl": 0, "injected_nl": 20_000_000,
                                                       "drug": "morphine", "concentration_ug_per_ml": 10_000}},
                 {"at": "1 h", "label": "press", "do": "patient_bolus", "expect": {"answer": "BolusDenied"}}]}

BAD_SCENARIOS = [
    (("step", 1, "do", "press_button"), "step[1].do = 'press_button': expected one of"),
    (("step", 1, "at", "1 hour"), "step[1].at = '1 hour': expected a duration such as"),
    (("step", 1, "at", "0.00001 s"), "not a whole number of ticks"),
    (("step", 0, "with", {"injected_nl": 1}), "step[0].with.measured_residual_nl: missing; Refill needs it"),
    (("step", 0, "with", {"measured_residual_nl": 0, "injected_nl": "lots", "drug": "m",
                          "concentration_ug_per_ml": 1}), "step[0].with.injected_nl = 'lots': expected an integer"),
    (("step", 1, "expect", {"answer": "Granted"}), "step[1].expect.answer = 'Granted': expected one of"),
    (("step", 1, "expect", {"status": {"volume": 1}}), "[step[1].expect.status]: unknown key(s) ['volume']"),
    (("step", 1, "expect", {"alarms_active": ["FIRE"]}), "step[1].expect.alarms_active = 'FIRE': expected one of"),
    (("step", 1, "expect", {"since": "later"}), "step[1].expect.since = 'later': no earlier step has that label"),
    (("step", 1, "req", ["REQ-OTHER"]), "step[1].req = ['REQ-OTHER']: not among scenario.covers"),
    (("step", 1, "at", "-1 s"), "expected a duration"),
    (("scenario", None, "covers", []), "scenario.covers = []: expected the ids of the requirements it covers"),
]


@pytest.mark.parametrize("change, message", BAD_SCENARIOS, ids=[f"{c[0][0]}.{c[0][2]}-{i}"
                                                                 for i, c in enumerate(BAD_SCENARIOS)])
def test_a_malformed_scenario_names_the_key(change: tuple, message: str) -> None:
    doc = copy.deepcopy(GOOD)
    section, index, key, value = change
    (doc[section][index] if index is not None else doc[section])[key] = value
    with pytest.raises(ScenarioError) as caught:
        scenario_from(doc)
    assert message in str(caught.value), str(caught.value)


def test_steps_out_of_order_and_a_fault_at_the_tick_of_the_step_before_are_refused() -> None:
    doc = copy.deepcopy(GOOD)
    doc["step"][1]["at"] = "0 s"
    doc["step"].append({"at": "0 s", "do": "occlusion"})
    with pytest.raises(ScenarioError, match=r"step\[2\].at: a fault must come after the step before it"):
        scenario_from(doc)
    doc["step"][2] = {"at": "30 min", "do": "check"}
    doc["step"][1]["at"] = "2 h"
    with pytest.raises(ScenarioError, match=r"before the step before it"):
        scenario_from(doc)


def test_a_good_scenario_reads_durations_as_ticks() -> None:
    scenario = scenario_from(GOOD)
    assert [s.at_tick for s in scenario.steps] == [0, 3600 * 32768]
    assert scenario.labels["press"].do == "patient_bolus" and scenario.end_tick == 3600 * 32768


def test_the_requirement_catalogue_cites_domain_md_and_names_hazards() -> None:
    catalogue = load_requirements()
    assert len(catalogue) >= 15
    assert all("domain.md" in r.source and r.hazard for r in catalogue.values())
    assert {r.sr for r in catalogue.values()} >= {"SR-1", "SR-3", "SR-4", "SR-11", "SR-12", "SR-16", "SR-19", "SR-22"}
