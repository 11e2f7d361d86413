"""The serial rig kind, as a bench uses it: a device started by a command, reached at a URL, its
balance a VISA resource. Here the device is `ithil emulate` in its own process on TCP, exactly as
a board behind a LAN-serial adapter (or QEMU's UART on a socket) is reached."""

from __future__ import annotations

import sys
from pathlib import Path

from hil.rig import load_rig
from hil.rig_kinds import SerialRig
from hil.runner import run_scenario
from hil.scenario import load_scenario
from hil.verdicts import Verdict

REPO = Path(__file__).resolve().parents[2]
ITHIL = Path(sys.executable).with_name("ithil")

RIG = f"""
[rig]
kind = "serial"
description = "ithil emulate in its own process over TCP, with its balance"

[device]
url = "socket://127.0.0.1:{{port}}"
start = ["{ITHIL}", "emulate", "--listen", "tcp:127.0.0.1:{{port}}", "--test-mode", "--telemetry", "300",
         "--seed", "7", "--balance", "tcp:127.0.0.1:{{balance_port}}"]
ready_timeout_s = 20

[keys]
clinician = "test"
patient = "test"

[plant]
seed = 7

[balance]
resource = "TCPIP::127.0.0.1::{{balance_port}}::SOCKET"

[faults]
occlusion = "test-mode"
"""


def test_a_device_started_by_its_rig_passes_a_scenario_over_tcp_with_its_balance(tmp_path: Path) -> None:
    (tmp_path / "rig.toml").write_text(RIG)
    rig = load_rig(tmp_path)
    assert isinstance(rig, SerialRig)
    result = run_scenario(rig, load_scenario(REPO / "suites" / "standard" / "occlusion_intermediate.toml"))
    assert result.verdict is Verdict.PASS, result.failures()
    assert 0 < result.figures["after-clear.mass_gain_ug"] < 10_000        # read over pyvisa from the process
    assert 0 < result.figures["alarmed.occlusion_latency_min"] < 30


def test_a_device_whose_start_command_fails_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    (tmp_path / "rig.toml").write_text(RIG.replace('"--test-mode",', '"--no-such-option",'))
    result = run_scenario(load_rig(tmp_path), load_scenario(REPO / "suites" / "standard" / "patient_bolus.toml"))
    assert result.verdict is Verdict.ERROR
    assert "start command exited" in result.reason and "no-such-option" in result.reason
