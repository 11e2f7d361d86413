"""hil.wire_model: every model command, answer, refusal, log record and telemetry crosses real
frames and comes back as the model's own value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from firmware_model import (AcknowledgeAlarm, AlarmCode, ClinicianBolus, ConfigurePatientBolus, Controller, GetStatus,
                            Interrogate, LimitExceeded, LogCode, NotAllowedNow, PatientBolusRequest, PrimingBolus,
                            ProgramContinuous, ProgramFlex, ProgramMinimumRate, ProgramStopped, PumpConfig, Refill,
                            SetClock, SetLowReservoirAlarm, TICKS_PER_HOUR)
from firmware_model import commands
from firmware_model.commands import Accepted, BolusDenied, BolusGranted, BolusKind, DenyReason, StatusReport
from firmware_model.plant import MriExposure, Occlusion
from hil import wire_model as wm
from hil.errors import WireMappingError
from protocol import Decoder, NakReason, encode_frame
from protocol import messages as m

H = TICKS_PER_HOUR


def over_the_wire(message: Any, seq: int = 7) -> Any:
    """A message framed, then decoded by the streaming decoder: what the other side gets."""
    frames = Decoder().feed(encode_frame(message, seq))
    assert len(frames) == 1 and frames[0].seq == seq
    return frames[0].message


ALL_COMMANDS = [
    ProgramStopped(), ProgramContinuous(250_000),
    ProgramFlex(((0, 100_000), (8 * H, 400_000), (20 * H, 48_000))), ProgramMinimumRate(),
    ClinicianBolus(500_000, H, 4 * H, 0), ClinicianBolus(1, 2), PrimingBolus(180_000, H),
    ConfigurePatientBolus(100_000, 10, 3 * H, 4), PatientBolusRequest(),
    Refill(1, 2, "baclofen", 2_000, 3, True), Refill(1, 2, "morphine", 10_000), SetLowReservoirAlarm(2_000_000),
    AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY), SetClock(5), Interrogate(), GetStatus(),
]


def test_the_mapping_covers_every_model_command() -> None:
    assert set(wm.WIRE_TYPES) == {*commands.COMMAND_IDS, GetStatus}
    assert {type(c) for c in ALL_COMMANDS} == set(wm.WIRE_TYPES)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_crosses_the_wire_and_comes_back_equal(command: Any) -> None:
    wire = wm.command_to_wire(command)
    assert type(wire).__name__ == type(command).__name__
    back = wm.command_from_wire(over_the_wire(wire))
    assert back == command and type(back) is type(command)
    for f in dataclasses.fields(back):  # the model's own enums and plain tuples, never the wire's
        value = getattr(back, f.name)
        assert type(value).__module__.split(".")[0] != "protocol", (f.name, type(value))
    if isinstance(back, ProgramFlex):
        assert all(type(step) is tuple for step in back.steps)


def test_wire_enums_become_model_enums() -> None:
    back = wm.command_from_wire(m.AcknowledgeAlarm(6))
    assert back.alarm is AlarmCode.OCCLUSION


def test_what_is_not_a_command_is_refused_by_name() -> None:
    with pytest.raises(WireMappingError, match="Ack is not a model command; expected one of"):
        wm.command_from_wire(m.Ack(5))
    with pytest.raises(WireMappingError, match="Accepted is not a model command"):
        wm.command_to_wire(Accepted())


def running_pump() -> Controller:
    pump = Controller()
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(ProgramContinuous(1_000_000), 0)
    pump.handle(ConfigurePatientBolus(50_000, 600, H, 4), 0)
    return pump


def test_a_real_status_crosses_the_wire_field_for_field() -> None:
    pump = running_pump()
    pump.handle(SetLowReservoirAlarm(5_000_000), 0)
    pump.handle(PatientBolusRequest(), 10)
    status = pump.status()
    assert status.bolus_active is BolusKind.PATIENT and status.refill_due_tick is not None
    pump.advance(400 * 24 * H)  # the reservoir runs low and empty: alarms and a sounding one
    for status in (status, pump.status()):
        back = wm.response_from_wire(over_the_wire(wm.status_to_wire(status)))
        assert back == status and isinstance(back, StatusReport)
    late = pump.status()
    assert late.alarms and late.sounding is not None
    assert wm.response_from_wire(over_the_wire(wm.response_to_wire(late, 0x10))).alarms[0] is AlarmCode.RESERVOIR_LOW


def test_accepted_becomes_ack_or_ack_soft_limits_naming_the_command() -> None:
    assert over_the_wire(wm.response_to_wire(Accepted(), 0x12)) == m.Ack(0x12)
    flagged = over_the_wire(wm.response_to_wire(Accepted(("morphine: 30 mg/day over the soft limit",)), 0x12))
    assert flagged == m.AckSoftLimits(0x12, ("morphine: 30 mg/day over the soft limit",))
    assert wm.response_from_wire(flagged) == Accepted(("morphine: 30 mg/day over the soft limit",))
    assert wm.response_from_wire(m.Ack(0x12)) == Accepted()


def test_many_or_long_soft_limit_flags_still_fit_the_message() -> None:
    flags = tuple(f"flag {i}: " + "x" * 300 for i in range(6))
    wire = over_the_wire(wm.response_to_wire(Accepted(flags), 0x17))
    assert len(wire.soft_limits) == 4 and wire.soft_limits[-1] == "and 3 more soft limits"
    assert all(len(f.encode()) <= 200 for f in wire.soft_limits) and wire.soft_limits[0].endswith("...")


@pytest.mark.parametrize("response", [
    BolusGranted(BolusKind.CLINICIAN, 400, 100_000), BolusDenied(DenyReason.LOCKOUT, "lockout until tick 99"),
], ids=lambda r: type(r).__name__)
def test_bolus_answers_round_trip(response: Any) -> None:
    back = wm.response_from_wire(over_the_wire(wm.answers_to_wire([response], 0x15)[0]))
    enum_value = back.kind if isinstance(back, BolusGranted) else back.reason
    assert back == response and type(enum_value).__module__ == "firmware_model.commands"


def test_a_real_command_answers_list_maps_in_order() -> None:
    pump = running_pump()
    responses = pump.handle(ClinicianBolus(100_000, H), 0)
    wire = wm.answers_to_wire(responses, m.ClinicianBolus.MSG_ID)
    assert [type(w) for w in wire] == [m.Ack, m.BolusGranted]
    assert [wm.response_from_wire(over_the_wire(w)) for w in wire] == responses


def test_an_unknown_answer_is_refused_by_name() -> None:
    with pytest.raises(WireMappingError, match="Telemetry is not an answer the model gives"):
        wm.response_from_wire(m.Telemetry(0, 0, 0, 0, 0, 0, 0))
    with pytest.raises(WireMappingError, match="str is not a model response"):
        wm.response_to_wire("yes", 1)  # type: ignore[arg-type]


# ---- refusals -----------------------------------------------------------------------------------

def test_a_hard_limit_refusal_becomes_a_nak_naming_field_value_and_limit() -> None:
    pump = running_pump()
    with pytest.raises(LimitExceeded) as caught:
        pump.handle(ProgramContinuous(30_000_000), 0)
    nak = over_the_wire(wm.refusal_to_nak(caught.value, m.ProgramContinuous.MSG_ID))
    assert nak.reason == NakReason.LIMIT_EXCEEDED and nak.command_id == 0x12
    assert (nak.field, nak.value) == ("rate_nl_per_day", "30000000")
    assert "24000000 nL/day" in nak.expected and "domain.md" in nak.expected
    back = wm.refusal_from_nak(nak)
    assert isinstance(back, LimitExceeded) and (back.field, back.value) == ("rate_nl_per_day", "30000000")


def test_a_state_refusal_becomes_not_allowed_now_with_the_models_sentence() -> None:
    with pytest.raises(NotAllowedNow) as caught:
        Controller().handle(ProgramContinuous(500_000), 0)
    nak = over_the_wire(wm.refusal_to_nak(caught.value, 0x12))
    assert nak.reason == NakReason.NOT_ALLOWED_NOW and "expected a Refill first" in nak.expected
    assert isinstance(wm.refusal_from_nak(nak), NotAllowedNow)
    assert wm.refusal_from_nak(m.Nak(0x12, NakReason.BAD_CRC, "", "", "")) is None


def test_long_refusal_texts_are_cut_to_fit_never_inside_a_character() -> None:
    refusal = LimitExceeded("é" * 50, "ü" * 40, "limit " * 60, "source")
    nak = over_the_wire(wm.refusal_to_nak(refusal, 1))
    assert len(nak.field.encode()) <= 64 and nak.field.endswith("...") and nak.field.startswith("é")
    assert len(nak.value.encode()) <= 64 and len(nak.expected.encode()) <= 255
    assert wm.fit_text("short", 10) == "short"


# ---- the log, telemetry, faults -----------------------------------------------------------------

def test_log_records_are_the_flash_records_and_come_back_as_model_records() -> None:
    pump = running_pump()
    pump.handle(ClinicianBolus(100_000, H), 0)
    for i in range(20):
        pump.handle(ProgramContinuous(500_000 + i), 2 * H + i)
    held = list(pump.log.records())
    answer = over_the_wire(wm.log_records(pump.log, 0, 255))
    assert answer.next_seq == pump.log.next_seq
    assert len(answer.records) == m.MAX_LOG_RECORDS < len(held)
    assert [wm.record_from_wire(r) for r in answer.records] == held[:m.MAX_LOG_RECORDS]
    assert all(len(wm.record_to_wire(r)) == 7 and wm.record_from_wire(wm.record_to_wire(r)) == r for r in held)
    tail = over_the_wire(wm.log_records(pump.log, pump.log.next_seq - 3, 10))
    assert [wm.record_from_wire(r).seq for r in tail.records] == [pump.log.next_seq - 3 + i for i in range(3)]
    assert over_the_wire(wm.log_records(pump.log, pump.log.next_seq, 10)).records == ()


def test_records_the_ring_overwrote_are_skipped() -> None:
    pump = Controller(PumpConfig(log_capacity=64, checkpoint_records=16))
    pump.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    for i in range(40):
        pump.handle(ProgramContinuous(100_000 + i), i)
    assert pump.log.overwritten > 0
    oldest = pump.log.next_seq - len(pump.log)
    answer = wm.log_records(pump.log, 0, 5)
    assert [r.seq for r in answer.records] == list(range(oldest, oldest + 5))


def test_a_damaged_wire_record_is_refused_by_the_models_check() -> None:
    pump = running_pump()
    record = wm.log_records(pump.log, 0, 1).records[0]
    damaged = record._replace(tick=record.tick + 1)
    with pytest.raises(Exception, match="CRC mismatch"):
        wm.record_from_wire(damaged)
    with pytest.raises(WireMappingError, match="expected a LogRecord of 7 fields"):
        wm.record_from_wire((1, 2, 3))


def test_telemetry_reports_the_pump_and_its_alarms_as_bits() -> None:
    pump = running_pump()
    pump.handle(SetLowReservoirAlarm(5_000_000), 0)
    pump.advance(400 * 24 * H)
    status = pump.status()
    wire = over_the_wire(wm.telemetry_message(pump, 2**32 + 5), seq=0)
    assert wire.counter == 5 and wire.tick == status.tick and wire.steps == status.steps
    assert wire.reservoir_nl == status.reservoir_nl
    assert wm.alarms_of_bits(wire.active_alarms) == tuple(sorted(status.alarms))
    assert wire.active_alarms == wm.alarm_bits(status.alarms) and wire.active_alarms & (1 << AlarmCode.RESERVOIR_LOW)
    assert wire.battery_used_nc == pump.config.battery.used_nc(status.steps, status.tick)
    assert wire.pressure_pa == 0  # no plant, no detector samples: nothing measured


def test_test_mode_faults_become_plant_faults() -> None:
    assert wm.occlusion_from_wire(over_the_wire(m.InjectOcclusion(10, None, 4))) == Occlusion(10, None, 4)
    assert wm.occlusion_from_wire(m.InjectOcclusion(10)) == Occlusion(10, None, 0)
    assert wm.mri_from_wire(over_the_wire(m.InjectMri(5, 9))) == MriExposure(5, 9)
    with pytest.raises(LimitExceeded, match="occlusion.factor = 1"):
        wm.occlusion_from_wire(m.InjectOcclusion(10, None, 1))


def test_log_codes_fit_the_wire_record() -> None:
    assert max(LogCode) < 2**16
