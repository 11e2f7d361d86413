"""The pytest plugin as a firmware team uses it: a test project of its own, run by pytest in a
subprocess (the plugin loads through its pytest11 entry point) with -n 2, on the emulator rig and
on a rig whose device differs from the pump it declares; and the choice of a board per
pytest-xdist worker on a serial rig."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from firmware_model.alarms import AlarmCode
from firmware_model.event_log import LogCode
from firmware_model.units import TICKS_PER_HOUR
from hil.client import PumpClient
from hil.errors import PumpRefused, RigConfigError, RigError
from hil.rig import load_rig
from hil.rig_kinds import SerialRig, worker_url
from hil.twin import TwinPump

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
EMULATOR_RIG = (REPO / "rigs" / "emulator" / "rig.toml").read_text(encoding="utf-8")
# the same rig, but its device raises the low-reservoir alarm at 3 mL where the model says 2 mL
WRONG_RIG = EMULATOR_RIG.replace("[device]\n", "[device]\npump = { low_reservoir_nl = 2_500_000 }\n", 1)

TESTS = '''
import os
from pathlib import Path

import pytest

from firmware_model.units import TICKS_PER_HOUR
from hil.errors import PumpRefused

SEEN = Path(__file__).parent / "devices"


def record(pump):
    """Which worker ran this test, and on which device (the emulator runs in the worker's process)."""
    SEEN.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(SEEN / f"{worker}.txt", "a") as out:
        out.write(f"{os.getpid()} {pump.device.url}\\n")


@pytest.mark.parametrize("hours", [3, 6, 9, 12])
def test_the_device_delivers_as_the_model_predicts(pump, reference, rig, hours):
    record(pump)
    assert rig.config.kind == "emulator" and reference is pump.reference
    pump.refill(measured_residual_nl=0, injected_nl=20_000_000, drug="morphine", concentration_ug_per_ml=10_000)
    pump.program_continuous(rate_nl_per_day=1_000_000)
    pump.advance(hours * TICKS_PER_HOUR)
    assert pump.status().reservoir_nl == reference.status().reservoir_nl < 20_000_000


def test_a_hard_limit_refusal_is_the_devices_own(pump):
    record(pump)
    pump.refill(measured_residual_nl=0, injected_nl=20_000_000, drug="morphine", concentration_ug_per_ml=10_000)
    with pytest.raises(PumpRefused):
        pump.program_continuous(rate_nl_per_day=2_000_000)


def test_the_rig_alone(rig):
    assert rig.variant.pump == rig.config.pump          # the emulated device is built as the rig declares
'''


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)   # this run's own worker: not the inner run's
    monkeypatch.delenv("ITHIL_RIG", raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makepyfile(test_hil=TESTS)
    (pytester.path / "wrong").mkdir()
    (pytester.path / "wrong" / "rig.toml").write_text(WRONG_RIG, encoding="utf-8")
    return pytester


def test_two_workers_each_drive_their_own_emulated_device_and_the_tests_pass(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["ithil rig: emulator (kind emulator, */rigs/emulator/rig.toml)"])
    seen = {p.stem: p.read_text().split("\n")[:-1] for p in (project.path / "devices").glob("*.txt")}
    assert set(seen) == {"gw0", "gw1"}, seen
    pids = {worker: {line.split()[0] for line in lines} for worker, lines in seen.items()}
    assert all(len(p) == 1 for p in pids.values()) and pids["gw0"] != pids["gw1"]   # a device per process
    assert pids["gw0"] != {str(os.getpid())}
    urls = [line.split()[1] for lines in seen.values() for line in lines]
    assert all(url.startswith("/dev/pts/") for url in urls)                          # each on its own pty


def test_a_device_that_differs_from_the_model_fails_its_tests_with_the_divergence_named(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITHIL_RIG", "no-such-rig")                  # --rig wins over the environment
    wrong = project.path / "wrong" / "rig.toml"
    result = project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--rig", str(wrong), timeout=120)
    result.assert_outcomes(passed=1, failed=5)   # a refusal leaves the status where the two agree
    result.stdout.fnmatch_lines([
        f"ithil rig: {wrong} (kind emulator, {wrong})",
        "*PumpDiverged: first divergence at tick 0 (after ProgramContinuous at tick 0): status.refill_due_tick: "
        "expected * (reference model), got * (device); tolerance exact",
        "*frames before it, oldest first:",
        "*-> seq *: ProgramContinuous(rate_nl_per_day=1000000)",
    ])


def test_the_rig_comes_from_the_option_else_the_environment_else_the_emulator(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from hil.pytest_plugin import pytest_report_header, rig_name

    monkeypatch.delenv("ITHIL_RIG", raising=False)
    assert rig_name(pytester.parseconfig()) == "emulator"
    monkeypatch.setenv("ITHIL_RIG", "rtl")
    config = pytester.parseconfig()
    assert rig_name(config) == "rtl"
    assert pytest_report_header(config) == f"ithil rig: rtl (kind rtl, {REPO / 'rigs' / 'rtl' / 'rig.toml'})"
    mine = pytester.parseconfig("--rig", "mine")
    assert rig_name(mine) == "mine"
    assert "mine/rig.toml cannot be read: [Errno 2] No such file" in pytest_report_header(mine)  # header only


def test_the_firmware_team_examples_pass_on_the_emulator(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", str(REPO / "examples" / "firmware_tests"),
                                          timeout=120)
    result.assert_outcomes(passed=8)


# ---- a board per worker on a serial rig ------------------------------------------------------------

BOARDS = ["rfc2217://lab:4001", "rfc2217://lab:4002"]


def test_each_worker_gets_its_own_url_in_order() -> None:
    assert worker_url(BOARDS, "gw0") == "rfc2217://lab:4001"
    assert worker_url(BOARDS, "gw1") == "rfc2217://lab:4002"
    assert worker_url(BOARDS, "") == "rfc2217://lab:4001"            # no xdist: the first board
    assert worker_url(["/dev/ttyACM0"], "gw7") == "/dev/ttyACM0"     # one URL: as before, every worker


def test_too_few_urls_for_the_workers_is_an_error_naming_both() -> None:
    with pytest.raises(RigError, match=r"lists 2 URLs .* worker gw2 needs URL number 3.*-n 2 or fewer"):
        worker_url(BOARDS, "gw2")
    with pytest.raises(RigError, match="'tester': cannot tell its index"):
        worker_url(BOARDS, "tester")


def _serial_rig(tmp_path: Path, url: str) -> SerialRig:
    (tmp_path / "rig.toml").write_text(f'[rig]\nkind = "serial"\n\n[device]\nurl = {url}\n', encoding="utf-8")
    rig = load_rig(tmp_path)
    assert isinstance(rig, SerialRig)
    return rig


def test_a_serial_rig_opens_the_board_of_its_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = _serial_rig(tmp_path, '["socket://127.0.0.1:{port}", "socket://10.0.0.2:4001"]')
    assert rig.urls == ["socket://127.0.0.1:{port}", "socket://10.0.0.2:4001"]
    opened = []

    def connect(url: str, process: object) -> None:
        opened.append(url)
        raise RigError("stop here")
    monkeypatch.setattr(rig, "_connect", connect)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    with pytest.raises(RigError, match="stop here"):
        rig.open()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    with pytest.raises(RigError, match="stop here"):
        rig.open()
    assert opened[0] == "socket://10.0.0.2:4001"
    assert opened[1].startswith("socket://127.0.0.1:") and "{port}" not in opened[1]   # its port filled in


def test_a_single_url_still_reads_and_a_bad_list_is_refused(tmp_path: Path) -> None:
    assert _serial_rig(tmp_path, '"/dev/ttyACM0"').urls == ["/dev/ttyACM0"]
    for bad in ("[]", "[1, 2]", '["/dev/ttyACM0", ""]'):
        with pytest.raises(RigConfigError, match=r"device.url = .*expected a URL, or a list of URLs"):
            _serial_rig(tmp_path, bad)


# ---- the twin the pump fixture gives -----------------------------------------------------------------

H = TICKS_PER_HOUR


def test_the_twin_has_the_clients_methods_with_their_signatures() -> None:
    for name in ("status", "interrogate", "program_stopped", "program_continuous", "program_flex",
                 "program_minimum_rate", "bolus", "priming_bolus", "configure_patient_bolus", "patient_bolus",
                 "refill", "set_low_reservoir_alarm", "ack_alarm", "set_clock", "execute", "read_log", "telemetry",
                 "advance", "advance_to", "inject_occlusion", "inject_mri", "inject_stall", "inject_battery_drain",
                 "inject_reset"):
        assert inspect.signature(getattr(TwinPump, name)) == inspect.signature(getattr(PumpClient, name)), name


def test_every_fault_reaches_device_and_model_in_step() -> None:
    with TwinPump.open(load_rig("emulator")) as pump:
        pump.refill(0, 20_000_000, "morphine", 10_000)
        pump.program_continuous(1_000_000)
        pump.inject_mri(1 * H, 2 * H)
        pump.advance_to(2 * H + H // 2)
        pump.interrogate()                               # releases the telemetry-mode latch of the scan
        pump.inject_stall(3 * H, 4 * H)
        pump.inject_occlusion(5 * H)                     # open-ended ...
        pump.advance_to(6 * H)
        pump.inject_occlusion(5 * H, 7 * H)              # ... cleared at 7 h
        pump.inject_battery_drain(8 * H, 1_000_000)      # both run to 8 h first
        pump.inject_reset(9 * H)
        pump.advance_to(12 * H)
        codes = {r.code for r in pump.read_log()}        # the whole log, compared record by record
        assert {LogCode.TELEMETRY_MODE, LogCode.STALL, LogCode.OCCLUSION_DETECTED, LogCode.BATTERY_DRAIN,
                LogCode.POWER_ON} <= codes
        assert pump.reference.resets == 1 and pump.now == 12 * H and pump.divergence is None
        with pytest.raises(PumpRefused, match="at_tick"):
            pump.inject_reset(1 * H)                     # in the past: the device and the model both refuse


def test_an_operator_fault_is_asked_for_at_its_tick(tmp_path: Path) -> None:
    (tmp_path / "rig.toml").write_text(EMULATOR_RIG.replace('occlusion = "test-mode"', 'occlusion = { method = '
                                       '"operator", instructions = "clamp the catheter" }'), encoding="utf-8")
    asked: list[str] = []

    def operator(text: str) -> None:                    # here the "operator" clamps through the test-mode message
        asked.append(text)
        pump.device.inject_occlusion(2 * H + 1)          # a fault starts after the present tick
    pump = TwinPump.open(load_rig(tmp_path), operator)
    with pump:
        pump.refill(0, 20_000_000, "morphine", 500)
        pump.program_continuous(1_000_000)
        pump.inject_occlusion(2 * H)
        assert not asked                                 # not yet: at its tick
        pump.advance_to(4 * H)
        assert asked == [f"occlusion start at tick {2 * H}: clamp the catheter"]
        assert AlarmCode.OCCLUSION in pump.status().alarms
