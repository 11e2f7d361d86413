"""hil.client.PumpClient end to end: every test runs over a real pty, a real TCP socket and emu://.

Behind each URL is the emulated pump (hil.emulator_server / emu://); beside it runs the reference
model, fed the same commands at the same ticks, and what the pump answers through the client
must be what the model answers. Refusals (limits, signatures, roles, test mode) must change nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Iterator

import pytest

from firmware_model import commands as c
from firmware_model.alarms import AlarmCode
from firmware_model.controller import Controller, PumpConfig
from firmware_model.event_log import EventLog, LogCode
from firmware_model.plant import Jam, MriExposure, Occlusion, Plant
from firmware_model.units import TICK_HZ, TICKS_PER_DAY
from hil.client import PumpClient
from hil.device import default_test_keys
from hil.emulator_server import start_emulator_thread
from hil.errors import HilError, LinkTimeout, PumpRefused, TransportError
from hil.urlhandler import protocol_emu
from protocol import Key, NakReason, Role
from protocol.messages import MAX_LOG_RECORDS

CLINICIAN_KEY, PATIENT_KEY = default_test_keys()
KINDS = ["pty", "tcp", "emu"]
TELEMETRY_S = 60                      # one Telemetry frame per minute of pump time
MINUTE = 60 * TICK_HZ
_names = itertools.count()


@contextlib.contextmanager
def emulated_pump(kind: str, test_mode: bool = True) -> Iterator[str]:
    """An emulated pump's URL; every client opened on it reaches the same pump."""
    if kind == "emu":
        name = f"client-test-{os.getpid()}-{next(_names)}"
        try:
            yield f"emu://{name}?test_mode={int(test_mode)}&telemetry_ticks={TELEMETRY_S * TICK_HZ}"
        finally:
            protocol_emu.forget(name)
        return
    with start_emulator_thread("pty" if kind == "pty" else "tcp:127.0.0.1:0", test_mode=test_mode,
                               telemetry_period_s=TELEMETRY_S) as emulator:
        yield emulator.url


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with emulated_pump(request.param) as pump_url:
        yield pump_url


@pytest.fixture
def pump(url: str) -> Iterator[PumpClient]:
    with PumpClient(url, clinician_key=CLINICIAN_KEY, patient_key=PATIENT_KEY) as client:
        client.hello()
        yield client


def reference(*faults: Occlusion | MriExposure | Jam) -> Controller:
    """The reference model as the emulator builds its pump (default config, plant seed 0)."""
    config = PumpConfig()
    return Controller(config, Plant(stroke_nl=config.mechanism.stroke_nl,
                                    occlusions=tuple(f for f in faults if isinstance(f, Occlusion)),
                                    mri=tuple(f for f in faults if isinstance(f, MriExposure)),
                                    jams=tuple(f for f in faults if isinstance(f, Jam))))


def advance(pump: PumpClient, model: Controller, ticks: int) -> int:
    """Run pump and model `ticks` on; the model through every telemetry tick on the way, as the
    emulated pump does (its plant's pressure samples depend on where an advance stops)."""
    tick = pump.advance(ticks)
    period = TELEMETRY_S * TICK_HZ
    for due in range((model.state.tick // period + 1) * period, tick + 1, period):
        model.advance(due)
    model.advance(tick)
    return tick


def set_up(pump: PumpClient, model: Controller, rate_nl_per_day: int = 480_000) -> None:
    for command in (c.Refill(0, 20_000_000, "morphine", 10_000), c.ProgramContinuous(rate_nl_per_day)):
        assert pump.execute(command) == model.handle(command, model.state.tick)


# ---- a session: the pump answers what the model answers -----------------------------------------------

def test_hello_says_what_the_pump_is(pump: PumpClient) -> None:
    reply = pump.hello()
    assert (reply.version, reply.test_mode, reply.tick_hz, reply.stroke_nl) == (1, True, TICK_HZ, 250)
    assert reply.reservoir_capacity_nl == 20_000_000 and pump.pump == reply


def test_every_therapy_command_answers_as_the_model_does(pump: PumpClient) -> None:
    model = reference()
    set_up(pump, model)
    tick = 0

    def same(answer: object, command: c.Command) -> None:
        expected = model.handle(command, tick)
        assert (answer if isinstance(answer, list) else [answer]) == expected

    same(pump.program_flex([(0, 480_000), (8 * 3600 * TICK_HZ, 960_000)]),
         c.ProgramFlex(((0, 480_000), (8 * 3600 * TICK_HZ, 960_000))))
    same(pump.set_clock(7 * 3600 * TICK_HZ), c.SetClock(7 * 3600 * TICK_HZ))
    same(pump.configure_patient_bolus(10_000, MINUTE, 30 * MINUTE, 6),
         c.ConfigurePatientBolus(10_000, MINUTE, 30 * MINUTE, 6))
    same(pump.patient_bolus(), c.PatientBolusRequest())
    tick = advance(pump, model, 5 * MINUTE)
    same(pump.patient_bolus(), c.PatientBolusRequest())                  # denied: lockout
    tick = advance(pump, model, 40 * MINUTE)
    same(pump.bolus(20_000, 10 * MINUTE), c.ClinicianBolus(20_000, 10 * MINUTE))
    same(pump.set_low_reservoir_alarm(3_000_000), c.SetLowReservoirAlarm(3_000_000))
    same(pump.program_minimum_rate(), c.ProgramMinimumRate())
    same(pump.program_stopped(), c.ProgramStopped())
    same(pump.interrogate(), c.Interrogate())
    assert pump.status() == model.status()
    assert pump.read_log() == list(model.log.records())
    assert pump.stats.retried == 0 and pump.stats.timed_out == 0


def test_bolus_answers_acceptance_then_grant(pump: PumpClient) -> None:
    model = reference()
    set_up(pump, model)
    accepted, granted = pump.bolus(20_000, 10 * MINUTE)
    assert accepted == c.Accepted() and granted == c.BolusGranted(c.BolusKind.CLINICIAN, 80, 20_000)
    assert pump.status().bolus_active is c.BolusKind.CLINICIAN


def test_a_priming_bolus_is_granted(pump: PumpClient) -> None:
    set_up(pump, reference())
    assert pump.priming_bolus(50_000, 30 * MINUTE) == c.BolusGranted(c.BolusKind.PRIMING, 200, 50_000)


def test_read_log_pages_through_the_log_by_sequence_number(pump: PumpClient) -> None:
    model = reference()
    set_up(pump, model)
    for rate in [960_000, 480_000] * 6:
        tick = advance(pump, model, 30 * MINUTE)
        command = c.ProgramContinuous(rate)
        assert pump.execute(command) == model.handle(command, tick)
    records = list(model.log.records())
    assert len(records) > MAX_LOG_RECORDS + 2                        # more than one ReadLog answer holds
    assert pump.read_log() == records
    assert pump.read_log(2, MAX_LOG_RECORDS + 1) == records[2:MAX_LOG_RECORDS + 3]
    assert pump.read_log(len(records)) == []
    assert pump.read_log(len(records) - 2, 10) == records[-2:]


def test_telemetry_comes_once_a_minute_of_pump_time_and_none_is_lost(pump: PumpClient) -> None:
    set_up(pump, reference())
    start = pump.status().tick
    end = pump.advance(10 * MINUTE)
    got = list(pump.telemetry(wait_s=0.05))
    assert [t.tick for t in got] == list(range(start + MINUTE, end + 1, MINUTE))
    assert [t.counter for t in got] == list(range(got[0].counter, got[0].counter + 10))
    assert got[-1].reservoir_nl == pump.status().reservoir_nl
    assert pump.stats.telemetry_received == 10 and pump.stats.telemetry_lost == 0


# ---- fault injection (test mode) ------------------------------------------------------------------------

def test_an_injected_mri_stalls_the_motor_as_in_the_model(pump: PumpClient) -> None:
    scan = MriExposure(10 * MINUTE, 40 * MINUTE)
    model = reference(scan)
    set_up(pump, model, rate_nl_per_day=1_000_000)
    pump.inject_mri(scan.start_tick, scan.end_tick)
    advance(pump, model, 60 * MINUTE)
    assert pump.status() == model.status()
    assert any(r.code is LogCode.STALL for r in pump.read_log())


def test_an_injected_occlusion_raises_the_alarm_as_in_the_model(pump: PumpClient) -> None:
    occlusion = Occlusion(MINUTE)
    model = reference(occlusion)
    set_up(pump, model, rate_nl_per_day=1_000_000)
    pump.inject_occlusion(occlusion.start_tick)
    tick = advance(pump, model, TICKS_PER_DAY)
    status = pump.status()
    assert status == model.status() and AlarmCode.OCCLUSION in status.alarms
    assert pump.ack_alarm(AlarmCode.OCCLUSION) == model.handle(c.AcknowledgeAlarm(AlarmCode.OCCLUSION), tick)[0]
    assert pump.status() == model.status()


def test_an_injected_reset_mid_bolus_rebuilds_the_pump_from_its_log(pump: PumpClient) -> None:
    model = reference()
    set_up(pump, model)
    command = c.ClinicianBolus(20_000, 10 * MINUTE)
    assert pump.execute(command) == model.handle(command, 0)
    tick = advance(pump, model, 3 * MINUTE)                          # the bolus is under way
    pump.inject_reset(tick)
    model = Controller.rebuild(model.config, EventLog.from_bytes(model.log.to_bytes()), tick, model.plant)
    model.advance(tick)
    assert pump.status() == model.status()
    advance(pump, model, 30 * MINUTE)
    status = pump.status()
    assert status == model.status() and status.bolus_active is None
    assert pump.read_log() == list(model.log.records())
    assert sum(1 for r in pump.read_log() if r.code is LogCode.POWER_ON) == 2


def test_an_injected_battery_drain_brings_the_elective_replacement_indicator(pump: PumpClient) -> None:
    model = reference()
    set_up(pump, model)
    charge_nc = model.config.battery.eri_threshold_nc          # a battery fault takes the reserve at once
    pump.inject_battery_drain(MINUTE, charge_nc)
    model.drain_battery(charge_nc, MINUTE)
    advance(pump, model, 10 * MINUTE)
    status = pump.status()
    assert status == model.status() and status.eri and AlarmCode.ELECTIVE_REPLACEMENT in status.alarms


def test_an_injected_jam_stalls_the_motor_as_in_the_model(pump: PumpClient) -> None:
    jam = Jam(10 * MINUTE, 70 * MINUTE)
    model = reference(jam)
    set_up(pump, model, rate_nl_per_day=1_000_000)
    pump.inject_stall(jam.start_tick, jam.end_tick)
    advance(pump, model, 40 * MINUTE)
    status = pump.status()
    assert status == model.status() and status.stalled
    advance(pump, model, 3 * 60 * MINUTE)
    assert pump.status() == model.status() and not pump.status().stalled
    assert pump.read_log() == list(model.log.records())


# ---- refusals change nothing ----------------------------------------------------------------------------
# A pump serves one host at a time (a new TCP connection replaces the last; two hosts on one pty
# would race for its bytes), so a second client opens only after the first has closed.

@contextlib.contextmanager
def clinician(url: str) -> Iterator[PumpClient]:
    with PumpClient(url, clinician_key=CLINICIAN_KEY) as client:
        client.hello()
        yield client


@contextlib.contextmanager
def unchanged(url: str) -> Iterator[None]:
    """Checks, in clinician sessions before and after, that the block changed nothing on the pump."""
    with clinician(url) as pump:
        status, records = pump.status(), pump.read_log()
    yield
    with clinician(url) as pump:
        assert pump.status() == status and pump.read_log() == records


def test_a_limit_refusal_names_field_value_and_limit(pump: PumpClient) -> None:
    set_up(pump, reference())
    status, records = pump.status(), pump.read_log()
    with pytest.raises(PumpRefused) as info:
        pump.program_continuous(1_000_000_000)
    assert pump.status() == status and pump.read_log() == records
    err = info.value
    assert (err.command, err.reason, err.field, err.value) == (
        "ProgramContinuous", NakReason.LIMIT_EXCEEDED, "rate_nl_per_day", "1000000000")
    assert "48000..24000000" in err.expected and "rate_nl_per_day = 1000000000" in str(err)


def test_a_command_the_pump_cannot_take_now_is_refused(pump: PumpClient) -> None:
    set_up(pump, reference())
    pump.bolus(20_000, 10 * MINUTE)
    status = pump.status()
    with pytest.raises(PumpRefused, match="ClinicianBolus refused by the pump: NOT_ALLOWED_NOW"):
        pump.bolus(20_000, 10 * MINUTE)
    assert pump.status() == status


@pytest.mark.parametrize("keys, reason", [
    ({}, NakReason.UNSIGNED),
    ({"clinician_key": Key(CLINICIAN_KEY.key_id, bytes(32), Role.CLINICIAN)}, NakReason.BAD_SIGNATURE),
    ({"clinician_key": Key(9, CLINICIAN_KEY.secret, Role.CLINICIAN)}, NakReason.BAD_SIGNATURE),
    ({"patient_key": PATIENT_KEY}, NakReason.ROLE_NOT_ALLOWED),
], ids=["unsigned", "wrong-secret", "unknown-key", "patient-key"])
def test_programming_without_the_right_signature_is_refused(url: str, keys: dict, reason: NakReason) -> None:
    with clinician(url) as pump:
        set_up(pump, reference())
    with unchanged(url), PumpClient(url, **keys) as intruder:
        intruder.hello()
        for attempt in (lambda: intruder.program_continuous(960_000), lambda: intruder.bolus(20_000, MINUTE),
                        lambda: intruder.advance_to(TICKS_PER_DAY), lambda: intruder.read_log()):
            with pytest.raises(PumpRefused) as info:
                attempt()
            assert info.value.reason is reason
        assert intruder.stats.refused == 4 and intruder.stats.naks == {reason: 4}


def test_a_replayed_signature_is_refused(url: str) -> None:
    with clinician(url) as pump:
        set_up(pump, reference())
    stale = itertools.count(1_000).__next__          # a clock far behind the one the pump has seen
    with unchanged(url), PumpClient(url, clinician_key=CLINICIAN_KEY, clock=stale, max_attempts=2) as replayer:
        with pytest.raises(PumpRefused, match="ProgramContinuous refused by the pump: REPLAY") as info:
            replayer.program_continuous(960_000)
    assert info.value.reason is NakReason.REPLAY


def test_a_patient_may_ask_for_a_bolus_and_read_the_status_only(url: str) -> None:
    model = reference()
    with clinician(url) as pump:
        set_up(pump, model)
        command = c.ConfigurePatientBolus(10_000, MINUTE, 30 * MINUTE, 6)
        assert pump.execute(command) == model.handle(command, 0)
    with PumpClient(url, patient_key=PATIENT_KEY) as patient:
        assert patient.patient_bolus() == model.handle(c.PatientBolusRequest(), 0)[0]
        assert patient.status() == model.status()
        with pytest.raises(PumpRefused, match="ConfigurePatientBolus refused by the pump: ROLE_NOT_ALLOWED"):
            patient.configure_patient_bolus(50_000, MINUTE, MINUTE, 24)
    with clinician(url) as pump:
        assert pump.status() == model.status()


@pytest.mark.parametrize("kind", KINDS)
def test_test_mode_messages_are_refused_outside_test_mode(kind: str) -> None:
    with emulated_pump(kind, test_mode=False) as url, PumpClient(url, clinician_key=CLINICIAN_KEY) as pump:
        assert pump.hello().test_mode is False
        for attempt in (lambda: pump.advance_to(MINUTE), lambda: pump.inject_occlusion(MINUTE),
                        lambda: pump.inject_mri(MINUTE, 2 * MINUTE), lambda: pump.inject_reset(0)):
            with pytest.raises(PumpRefused, match="refused by the pump: NOT_IN_TEST_MODE") as info:
                attempt()
            assert info.value.reason is NakReason.NOT_IN_TEST_MODE
        assert pump.status().tick == 0


# ---- the port ------------------------------------------------------------------------------------------

def test_close_releases_the_port_for_the_next_client(url: str) -> None:
    for _ in range(2):
        with PumpClient(url, clinician_key=CLINICIAN_KEY) as client:
            assert client.hello().version == 1
        assert not client.transport.is_open


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_a_pump_that_has_gone_is_a_clear_error(kind: str) -> None:
    with emulated_pump(kind) as url:
        client = PumpClient(url, clinician_key=CLINICIAN_KEY, answer_timeout_s=0.02, max_attempts=2)
        client.hello()
    try:
        with pytest.raises((LinkTimeout, TransportError)) as info:
            client.status()
        assert isinstance(info.value, HilError) and url in str(info.value)
    finally:
        client.close()
