"""hil.device.EmulatedDevice: real frames in, real frames out; the model behind them.

Every frame here is built with protocol.encode_frame and signed with a protocol.Signer, as a host
does; the answers are read back with the protocol's streaming decoder.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest

from firmware_model import (AlarmCode, BolusKind, Controller, LogCode, ProgramContinuous, PumpConfig, Refill,
                            TICKS_PER_HOUR, TICKS_PER_MINUTE)
from firmware_model.commands import ClinicianBolus
from firmware_model.plant import Occlusion, Plant
from firmware_model.units import TICK_HZ
from hil import wire_model as wm
from hil.device import WINDOW_SIZE, EmulatedDevice, default_test_keys
from hil.errors import DeviceStateError, EmulatorConfigError
from protocol import Decoder, Frame, Key, NakReason, Role, Signer, encode_frame
from protocol import messages as m
from protocol.framing import cobs_decode, cobs_encode, frame_bytes

H, MIN = TICKS_PER_HOUR, TICKS_PER_MINUTE
CLINICIAN, PATIENT = default_test_keys()
FULL = 20_000_000


def counter_clock(start: int = 1_000) -> Any:
    """A signing clock that moves on by one per signature: deterministic timestamps."""
    return itertools.count(start).__next__


class Host:
    """A bare host: numbers, signs and frames messages, and decodes what the device answers."""

    def __init__(self, device: EmulatedDevice, link_id: int = 0) -> None:
        self.device = device
        self.clinician = Signer(CLINICIAN, link_id, clock=counter_clock())
        self.patient = Signer(PATIENT, link_id, clock=counter_clock())
        self.decoder = Decoder()
        self.seq = itertools.count(1)

    def frame(self, message: Any, seq: int | None = None, signer: Signer | None | str = "clinician") -> bytes:
        if signer == "clinician":
            signer = self.clinician
        elif signer == "patient":
            signer = self.patient
        return encode_frame(message, next(self.seq) if seq is None else seq, signer)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> list[Frame]:
        return self.decoder.feed(self.device.receive(data))

    def send(self, message: Any, seq: int | None = None, signer: Signer | None | str = "clinician") -> list[Any]:
        """The answers (messages, telemetry left out) to one command."""
        return [f.message for f in self.feed(self.frame(message, seq, signer)) if type(f.message) is not m.Telemetry]

    def one(self, message: Any, **kw: Any) -> Any:
        answers = self.send(message, **kw)
        assert len(answers) == 1, answers
        return answers[0]


def fresh(**kw: Any) -> tuple[EmulatedDevice, Host]:
    """A device and its host; without telemetry unless asked (a frame per simulated second costs
    the model a run per second, which long lockstep advances do not need here)."""
    kw.setdefault("telemetry_period_ticks", None)
    device = EmulatedDevice(**kw)
    return device, Host(device)


def filled(**kw: Any) -> tuple[EmulatedDevice, Host]:
    device, host = fresh(**kw)
    assert host.one(m.Refill(0, FULL, "morphine", 10_000)) == m.Ack(m.Refill.MSG_ID)
    assert host.one(m.ProgramContinuous(1_000_000)) == m.Ack(m.ProgramContinuous.MSG_ID)
    return device, host


# ---- the session and every command ------------------------------------------------------------

def test_hello_answers_what_the_pump_is() -> None:
    device, host = fresh(test_mode=True)
    reply = host.one(m.Hello(1, 3, "pytest"), signer=None)
    assert reply == m.HelloReply(1, reply.firmware, device.serial_number, True, 32_768, FULL, 250)
    assert "ithil" in reply.firmware
    nak = host.one(m.Hello(2, 5, "from the future"), signer=None)
    assert nak.reason == NakReason.UNSUPPORTED_VERSION and nak.value == "2..5" and "[1]" in nak.expected


def test_every_command_type_runs_on_the_model_as_a_twin_controller_runs_it() -> None:
    """Each of the 14 model commands (and ReadLog) over the wire gives the answers the model gives."""
    device, host = fresh(test_mode=True)
    twin = Controller(plant=Plant())
    script = [
        (0, m.GetStatus()), (0, m.Refill(0, FULL, "morphine", 10_000)), (0, m.PrimingBolus(370_000, 20 * MIN)),
        (H, m.ProgramContinuous(1_000_000)), (H, m.ConfigurePatientBolus(50_000, 10 * MIN, 2 * H, 4)),
        (2 * H, m.PatientBolusRequest()), (2 * H + 1, m.PatientBolusRequest()),
        (3 * H, m.ClinicianBolus(100_000, H, 8 * H, 2)), (4 * H, m.SetClock(8 * H)),
        (5 * H, m.ProgramFlex(((0, 500_000), (12 * H, 1_500_000)))), (6 * H, m.ProgramMinimumRate()),
        (7 * H, m.SetLowReservoirAlarm(5_000_000)), (8 * H, m.Refill(19_000_000, 4_000_000, "morphine", 10_000)),
        (8 * H, m.AcknowledgeAlarm(AlarmCode.RESERVOIR_LOW)), (9 * H, m.Interrogate()),
        (9 * H, m.ProgramContinuous(99_000_000)), (10 * H, m.ProgramStopped()), (11 * H, m.GetStatus()),
    ]
    kinds = set()
    for tick, message in script:
        host.send(m.AdvanceTime(tick))
        twin.advance(tick)
        got = host.send(message)
        try:
            expected = wm.answers_to_wire(twin.handle(wm.command_from_wire(message), tick), message.MSG_ID)
        except Exception as exc:  # the model refused: the device must Nak it the same way
            expected = [wm.refusal_to_nak(exc, message.MSG_ID)]  # type: ignore[arg-type]
        assert got == expected, type(message).__name__
        kinds.add(type(message))
    assert kinds == set(wm.COMMAND_TYPES)
    twin.advance(11 * H)
    assert device.controller.snapshot() == twin.snapshot()
    log = host.one(m.ReadLog(0, 31))
    assert [wm.record_from_wire(r) for r in log.records] == list(twin.log.records())[:31]


def test_a_command_with_several_answers_flags_all_but_the_last_more() -> None:
    device, host = filled()
    frames = host.feed(host.frame(m.ClinicianBolus(100_000, H), seq=40))
    assert [type(f.message) for f in frames] == [m.Ack, m.BolusGranted]
    assert [f.seq for f in frames] == [40, 40] and [f.more for f in frames] == [True, False]


def test_bytes_in_any_chunking_give_the_same_answers() -> None:
    stream = []
    _, host = fresh()
    for message in (m.Refill(0, FULL, "morphine", 10_000), m.ProgramContinuous(1_000_000), m.GetStatus(),
                    m.ClinicianBolus(100_000, H)):
        stream.append(host.frame(message))
    data = b"".join(stream)
    whole = EmulatedDevice().receive(data)
    bytewise = EmulatedDevice()
    assert b"".join(bytewise.receive(data[i:i + 1]) for i in range(len(data))) == whole
    odd = EmulatedDevice()
    assert b"".join(odd.receive(data[i:i + 7]) for i in range(0, len(data), 7)) == whole
    assert [f.message for f in Decoder().feed(whole)][-1] == m.BolusGranted(BolusKind.CLINICIAN, 400, 100_000)


# ---- signatures, roles, test mode: refused, and nothing changes ---------------------------------

def refused(device: EmulatedDevice, host: Host, data: bytes, reason: NakReason, seq: int) -> m.Nak:
    before = device.controller.snapshot()
    frames = host.feed(data)
    assert len(frames) == 1 and frames[0].seq == seq
    nak = frames[0].message
    assert type(nak) is m.Nak and nak.reason == reason, nak
    assert device.controller.snapshot() == before
    return nak


def test_unsigned_programming_is_refused_with_unsigned() -> None:
    device, host = filled()
    nak = refused(device, host, host.frame(m.ProgramContinuous(2_000_000), seq=50, signer=None), NakReason.UNSIGNED, 50)
    assert nak.command_id == m.ProgramContinuous.MSG_ID and "came unsigned" in nak.expected


def test_wrongly_signed_programming_is_refused_with_bad_signature() -> None:
    device, host = filled()
    guess = Key(CLINICIAN.key_id, hashlib.sha256(b"a guess").digest(), Role.CLINICIAN)
    forged = Signer(guess, clock=counter_clock(10**9))
    nak = refused(device, host, host.frame(m.ProgramContinuous(2_000_000), seq=51, signer=forged),
                  NakReason.BAD_SIGNATURE, 51)
    assert "does not verify" in nak.expected
    stranger = Signer(Key(99, b"\x01" * 32, Role.CLINICIAN))
    nak = refused(device, host, host.frame(m.ProgramStopped(), seq=52, signer=stranger), NakReason.BAD_SIGNATURE, 52)
    assert "key id 99" in nak.expected


def test_a_captured_frame_sent_late_is_refused_as_a_replay() -> None:
    device, host = filled()
    captured = host.frame(m.ProgramContinuous(1_400_000), seq=60)   # signed first, held back
    assert host.send(m.ProgramContinuous(1_200_000), seq=61) == [m.Ack(m.ProgramContinuous.MSG_ID)]
    nak = refused(device, host, captured, NakReason.REPLAY, 60)
    assert "replayed or stale" in nak.expected
    assert device.status().programmed_rate_nl_per_day == 1_200_000


def test_an_old_frame_replayed_in_a_new_session_is_refused_as_a_replay() -> None:
    device, host = filled()
    old = host.frame(m.ClinicianBolus(100_000, H), seq=70)
    assert len(host.feed(old)) == 2
    host.send(m.Hello(1, 1, "a new session"), seq=1000, signer=None)  # empties the window
    refused(device, host, old, NakReason.REPLAY, 70)
    assert device.executed["ClinicianBolus"] == 1


def test_a_patient_key_may_not_program_role_escalation_is_refused() -> None:
    device, host = filled()
    nak = refused(device, host, host.frame(m.ProgramContinuous(5_000_000), seq=80, signer="patient"),
                  NakReason.ROLE_NOT_ALLOWED, 80)
    assert "needs a clinician key" in nak.expected
    refused(device, host, host.frame(m.InjectReset(0), seq=81, signer="patient"), NakReason.ROLE_NOT_ALLOWED, 81)
    # What the patient may send, it may.
    assert type(host.one(m.GetStatus(), signer="patient")) is m.StatusReport
    assert type(host.one(m.PatientBolusRequest(), signer="patient")) is m.BolusDenied  # not configured


TEST_MODE_MESSAGES = [m.AdvanceTime(10), m.InjectOcclusion(10), m.InjectMri(10, 20), m.InjectBatteryDrain(10, 5),
                      m.InjectStall(10, None), m.InjectReset(0)]


@pytest.mark.parametrize("message", TEST_MODE_MESSAGES, ids=lambda x: type(x).__name__)
def test_test_mode_messages_are_refused_outside_test_mode(message: Any) -> None:
    device, host = filled()
    plant = (device.plant.occlusions, device.plant.mri)
    nak = refused(device, host, host.frame(message, seq=90), NakReason.NOT_IN_TEST_MODE, 90)
    assert nak.command_id == message.MSG_ID and "--test-mode" in nak.expected
    assert (device.plant.occlusions, device.plant.mri) == plant and device.resets == 0


def test_a_hard_limit_is_refused_with_field_value_and_limit_and_changes_nothing() -> None:
    device, host = filled()
    nak = refused(device, host, host.frame(m.ProgramContinuous(30_000_000), seq=95), NakReason.LIMIT_EXCEEDED, 95)
    assert (nak.field, nak.value) == ("rate_nl_per_day", "30000000") and "nL/day" in nak.expected


# ---- bad frames ---------------------------------------------------------------------------------

def test_bad_frames_get_the_decoders_nak_and_garbage_gets_nothing() -> None:
    device, host = filled()
    inner = bytearray(cobs_decode(host.frame(m.GetStatus(), seq=300)[:-1]))
    inner[-1] ^= 0x40  # a flipped bit in the CRC
    nak = refused(device, host, cobs_encode(bytes(inner)) + b"\x00", NakReason.BAD_CRC, 300)
    assert nak.command_id == m.GetStatus.MSG_ID
    refused(device, host, frame_bytes(0xEE, b"", seq=301), NakReason.UNKNOWN_ID, 301)
    refused(device, host, frame_bytes(m.ProgramContinuous.MSG_ID, b"\x01", seq=302), NakReason.MALFORMED, 302)
    refused(device, host, frame_bytes(m.GetStatus.MSG_ID, b"", seq=303, version=9), NakReason.UNSUPPORTED_VERSION, 303)
    assert host.feed(b"\x01\x02\x00" + b"\xff" * 5000 + b"\x00") == []  # no header to answer
    assert device.decoder.counts["length"] >= 1


def test_messages_the_pump_sends_are_dropped_unanswered() -> None:
    device, host = fresh()
    assert host.feed(encode_frame(m.Ack(1), 5)) == []
    assert host.feed(encode_frame(m.Telemetry(0, 0, 0, 0, 0, 0, 0))) == []
    assert device.ignored == 2


# ---- the link window: a repeated seq runs once ---------------------------------------------------

def bolus_starts(device: EmulatedDevice) -> int:
    return sum(1 for r in device.controller.log.records()
               if r.code == LogCode.BOLUS_STARTED and r.args[0] == BolusKind.CLINICIAN)


def test_a_retried_bolus_is_answered_identically_and_delivered_once() -> None:
    device, host = filled(test_mode=True)
    first = device.receive(host.frame(m.ClinicianBolus(100_000, H), seq=500))
    retry = host.frame(m.ClinicianBolus(100_000, H), seq=500)  # same seq, a fresh signature
    assert device.receive(retry) == first
    assert device.receive(retry) == first  # and an exact copy on the line (the verifier's "replay")
    assert device.executed["ClinicianBolus"] == 1 and bolus_starts(device) == 1 and device.repeats == 2
    assert [type(f.message) for f in Decoder().feed(first)] == [m.Ack, m.BolusGranted]
    host.send(m.AdvanceTime(2 * H))
    assert device.status().delivered_nl == 100_000 + 1_000_000 * 2 // 24 // 250 * 250


def test_a_retried_refusal_gets_the_same_refusal() -> None:
    device, host = filled()
    first = device.receive(host.frame(m.ClinicianBolus(100_000, 0), seq=501))
    assert device.receive(host.frame(m.ClinicianBolus(100_000, 0), seq=501)) == first
    assert device.executed["ClinicianBolus"] == 1


def test_same_seq_with_another_command_is_a_new_command() -> None:
    device, host = filled()
    host.send(m.ProgramContinuous(1_200_000), seq=600)
    host.send(m.ProgramContinuous(1_400_000), seq=600)
    assert device.status().programmed_rate_nl_per_day == 1_400_000


def test_each_key_and_link_has_its_own_numbers() -> None:
    device, host = filled()
    other_link = Host(device, link_id=1)
    host.send(m.GetStatus(), seq=700)
    assert type(other_link.one(m.PatientBolusRequest(), seq=700, signer="patient")) is m.BolusDenied
    assert device.executed["PatientBolusRequest"] == 1


def test_the_window_forgets_the_oldest_and_seq_wraps() -> None:
    device, host = filled()
    host.send(m.ProgramContinuous(1_200_000), seq=65_535)
    host.send(m.ProgramContinuous(1_300_000), seq=0)  # after 65535 comes 0: a new command
    assert device.status().programmed_rate_nl_per_day == 1_300_000
    for seq in range(1, WINDOW_SIZE + 1):
        host.send(m.GetStatus(), seq=seq)
    assert len(device.window) == WINDOW_SIZE
    host.send(m.ProgramContinuous(1_200_000), seq=65_535)  # its entry has left the window: it runs
    assert device.executed["ProgramContinuous"] == 4
    assert device.status().programmed_rate_nl_per_day == 1_200_000


def test_a_repeated_hello_keeps_the_window_a_new_one_empties_it() -> None:
    device, host = filled()
    host.send(m.Hello(1, 1, "host"), seq=10, signer=None)
    host.send(m.ClinicianBolus(100_000, H), seq=11)
    host.send(m.Hello(1, 1, "host"), seq=10, signer=None)   # a late copy of the session's Hello
    host.send(m.ClinicianBolus(100_000, H), seq=11)          # a retry: answered, not run
    assert device.executed["ClinicianBolus"] == 1 and device.executed["Hello"] == 1
    host.send(m.Hello(1, 1, "host"), seq=20, signer=None)   # a new session
    assert len(device.window) == 1


# ---- time and telemetry ------------------------------------------------------------------------

def test_lockstep_advance_sends_a_telemetry_frame_per_second_then_its_ack() -> None:
    device, host = filled(test_mode=True, telemetry_period_ticks=TICK_HZ)
    frames = host.feed(host.frame(m.AdvanceTime(10 * TICK_HZ + 5), seq=900))
    telemetry = [f.message for f in frames[:-1]]
    assert frames[-1].message == m.Ack(m.AdvanceTime.MSG_ID) and frames[-1].seq == 900
    assert [t.counter for t in telemetry] == list(range(10)) and all(f.seq == 0 for f in frames[:-1])
    assert [t.tick for t in telemetry] == [s * TICK_HZ for s in range(1, 11)]
    assert telemetry[-1].reservoir_nl == FULL - 250 * telemetry[-1].steps
    assert device.now == 10 * TICK_HZ + 5
    # a retry of the AdvanceTime gets its Ack again, not the telemetry, and time does not move
    assert [f.message for f in host.feed(host.frame(m.AdvanceTime(10 * TICK_HZ + 5), seq=900))] == [frames[-1].message]
    nak = host.one(m.AdvanceTime(5), seq=901)
    assert nak.reason == NakReason.LIMIT_EXCEEDED and nak.field == "to_tick"
    assert "time only moves forward" in nak.expected


def test_advance_to_for_a_wall_clock_returns_the_telemetry_due() -> None:
    device, host = filled(test_mode=True, lockstep=False, telemetry_period_ticks=TICK_HZ)
    frames = Decoder().feed(device.advance_to(3 * TICK_HZ))
    assert [f.message.counter for f in frames] == [0, 1, 2]
    assert device.advance_to(TICK_HZ) == b"" and device.now == 3 * TICK_HZ
    nak = host.one(m.AdvanceTime(10 * TICK_HZ))
    assert nak.reason == NakReason.NOT_ALLOWED_NOW and "lockstep" in nak.expected
    quiet = EmulatedDevice(telemetry_period_ticks=None)
    assert quiet.advance_to(10 * TICK_HZ) == b""
    single = Decoder().feed(quiet.telemetry(11 * TICK_HZ))[0].message
    assert (single.counter, single.tick) == (0, 11 * TICK_HZ)


# ---- faults -----------------------------------------------------------------------------------

def test_injected_occlusion_alarms_and_clearing_it_releases_the_outlet() -> None:
    device, host = filled(test_mode=True)
    start = 2 * H
    assert host.one(m.InjectOcclusion(start, None, 0)) == m.Ack(m.InjectOcclusion.MSG_ID)
    host.send(m.AdvanceTime(start + 6 * H))
    status = host.one(m.GetStatus())
    assert AlarmCode.OCCLUSION in status.alarms and status.delivery_stopped
    assert device.plant.state.stored_nl > 0
    assert host.one(m.InjectOcclusion(start, start + 7 * H, 0)) == m.Ack(m.InjectOcclusion.MSG_ID)  # clears it
    host.send(m.AdvanceTime(start + 8 * H))
    assert device.plant.state.releases and device.plant.state.releases[-1][0] == start + 7 * H
    nak = host.one(m.InjectOcclusion(start, start + 9 * H, 4))
    assert nak.reason == NakReason.LIMIT_EXCEEDED and nak.field == "occlusion.factor"
    nak = host.one(m.InjectOcclusion(start - H))
    assert nak.reason == NakReason.LIMIT_EXCEEDED and nak.field == "occlusion.start_tick"
    assert device.plant.occlusions == (Occlusion(start, start + 7 * H),)


def test_injected_mri_stalls_the_motor() -> None:
    device, host = filled(test_mode=True)
    assert host.one(m.InjectMri(H, 2 * H)) == m.Ack(m.InjectMri.MSG_ID)
    host.send(m.AdvanceTime(H + 30 * MIN))
    status = host.one(m.GetStatus())
    assert status.stalled and AlarmCode.MOTOR_STALL in status.alarms


def test_injected_jam_stalls_without_emi_and_recovers_after_it_frees() -> None:
    device, host = filled(test_mode=True)
    assert host.one(m.InjectStall(H, 3 * H)) == m.Ack(m.InjectStall.MSG_ID)
    host.send(m.AdvanceTime(H + 30 * MIN))
    status = host.one(m.GetStatus())
    assert status.stalled and status.delivery_stopped and not status.telemetry_latched  # no EMI: no latch
    host.send(m.AdvanceTime(6 * H))
    status = host.one(m.GetStatus())
    assert not status.stalled and not status.delivery_stopped  # recovered at a retry after 3 h


def test_injected_battery_drain_brings_eri_and_eos() -> None:
    device, host = filled(test_mode=True)
    battery = device.controller.config.battery
    assert host.one(m.InjectBatteryDrain(H, battery.eri_threshold_nc)) == m.Ack(m.InjectBatteryDrain.MSG_ID)
    status = host.one(m.GetStatus())
    assert status.eri and not status.eos and AlarmCode.ELECTIVE_REPLACEMENT in status.alarms
    host.send(m.AdvanceTime(H + 1))
    assert host.one(m.InjectBatteryDrain(H + 1, battery.capacity_nc)) == m.Ack(m.InjectBatteryDrain.MSG_ID)
    status = host.one(m.GetStatus())
    assert status.eos and status.delivery_stopped


def test_reset_during_an_occlusion_keeps_the_alarm_and_the_stop() -> None:
    device, host = filled(test_mode=True)
    assert host.one(m.InjectOcclusion(H)) == m.Ack(m.InjectOcclusion.MSG_ID)
    host.send(m.AdvanceTime(2 * H))
    assert AlarmCode.OCCLUSION in host.one(m.GetStatus()).alarms
    assert host.one(m.InjectReset(2 * H + MIN)) == m.Ack(m.InjectReset.MSG_ID)
    status = host.one(m.GetStatus())
    assert AlarmCode.OCCLUSION in status.alarms and status.delivery_stopped


def test_reset_in_the_middle_of_a_bolus_agrees_with_a_pump_that_never_reset() -> None:
    device, host = filled(test_mode=True)
    twin = Controller(plant=Plant())
    twin.handle(Refill(0, FULL, "morphine", 10_000), 0)
    twin.handle(ProgramContinuous(1_000_000), 0)
    bolus_at, reset_at, end = H, H + 20 * MIN, 4 * H
    host.send(m.AdvanceTime(bolus_at))
    bolus = host.frame(m.ClinicianBolus(200_000, H), seq=1500)
    answer = device.receive(bolus)
    twin.advance(bolus_at)
    twin.handle(ClinicianBolus(200_000, H), bolus_at)
    assert host.one(m.InjectReset(reset_at)) == m.Ack(m.InjectReset.MSG_ID)
    assert device.resets == 1 and device.status().bolus_active == BolusKind.CLINICIAN
    assert device.receive(host.frame(m.ClinicianBolus(200_000, H), seq=1500)) == answer  # a retry after the reset
    host.send(m.AdvanceTime(end))
    twin.advance(end)
    assert device.status().delivered_nl == twin.status().delivered_nl
    assert device.status() == twin.status()
    assert bolus_starts(device) == 1 and device.executed["ClinicianBolus"] == 1

    def story(ctl: Controller) -> list[tuple]:
        return [(r.tick, r.code, r.aux, r.payload) for r in ctl.log.records()
                if r.code not in (LogCode.CHECKPOINT, LogCode.POWER_ON)]
    assert story(device.controller) == story(twin)
    power_on = [r for r in device.controller.log.records() if r.code == LogCode.POWER_ON]
    assert [(r.tick, r.args[0]) for r in power_on] == [(0, 0), (reset_at, 1)]


# ---- the state file ----------------------------------------------------------------------------

def test_state_file_survives_a_restart_and_keeps_the_window_and_the_replay_guard(tmp_path: Path) -> None:
    path = tmp_path / "pump.state"
    device, host = filled(test_mode=True, state_path=path)
    assert path.exists()
    bolus = host.frame(m.ClinicianBolus(100_000, H), seq=2000)
    answer = device.receive(bolus)
    host.send(m.AdvanceTime(30 * MIN))
    before = device.status()
    records = list(device.controller.log.records())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pump.state"]  # no temp file left behind

    again = EmulatedDevice(test_mode=True, state_path=path, telemetry_period_ticks=None)  # power comes back
    after = list(again.controller.log.records())
    assert after[:-1] == records and after[-1].code == LogCode.POWER_ON and after[-1].args[0] == 1
    assert again.status() == before
    host.device = again
    assert again.receive(host.frame(m.ClinicianBolus(100_000, H), seq=2000)) == answer  # answered, not run
    assert again.receive(bolus) == answer
    assert bolus_starts(again) == 1 and again.executed["ClinicianBolus"] == 0
    host.send(m.Hello(1, 1, "new session"), signer=None)
    assert Decoder().feed(again.receive(bolus))[0].message.reason == NakReason.REPLAY  # timestamps kept
    host.send(m.AdvanceTime(2 * H))
    assert again.status().bolus_active is None and again.status().delivered_nl >= 100_000


def test_a_state_file_of_another_pump_or_of_garbage_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "pump.state"
    EmulatedDevice(state_path=path)
    with pytest.raises(DeviceStateError, match="another configuration"):
        EmulatedDevice(PumpConfig(reservoir_capacity_nl=40_000_000), state_path=path)
    path.write_bytes(b"not a pump")
    with pytest.raises(DeviceStateError, match=r"pump.state: not a readable pump state file .*expected"):
        EmulatedDevice(state_path=path)


def test_a_telemetry_period_below_one_tick_is_refused_by_name() -> None:
    with pytest.raises(EmulatorConfigError, match="telemetry_period_ticks = 0: expected >= 1 tick, or None"):
        EmulatedDevice(telemetry_period_ticks=0)


def test_a_state_file_in_a_missing_folder_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(DeviceStateError, match="cannot write the pump's state file there"):
        EmulatedDevice(state_path=tmp_path / "no such folder" / "pump.state")
