"""The wire mirrors the reference model one-to-one: enums, commands, responses, log records.

protocol/ may not import firmware_model, so it keeps its own copies; these tests fail the day
the two drift apart (a new alarm code, a renamed field, a changed default).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import firmware_model as fm
from firmware_model import alarms, commands
from firmware_model.event_log import LogCode, Record
from protocol import enums
from protocol import messages as m
from protocol.framing import decode_frame, encode_frame


@pytest.mark.parametrize("wire, model", [
    (enums.Mode, commands.Mode), (enums.BolusKind, commands.BolusKind), (enums.DenyReason, commands.DenyReason),
    (enums.AlarmCode, alarms.AlarmCode),
], ids=lambda e: e.__name__)
def test_enums_match_value_for_value(wire: type, model: type) -> None:
    assert {e.name: e.value for e in wire} == {e.name: e.value for e in model}


MIRRORED = [commands.GetStatus, *commands.COMMAND_IDS, commands.BolusGranted, commands.BolusDenied,
            commands.StatusReport]


@pytest.mark.parametrize("model_type", MIRRORED, ids=lambda t: t.__name__)
def test_each_model_command_and_response_has_a_message_with_its_fields(model_type: type) -> None:
    wire = m.BY_NAME[model_type.__name__].type
    model_fields = dataclasses.fields(model_type)
    assert wire._fields == tuple(f.name for f in model_fields)
    wire_defaults = wire._field_defaults
    model_defaults = {f.name: f.default for f in model_fields if f.default is not dataclasses.MISSING}
    assert wire_defaults == model_defaults
    assert m.BY_NAME[model_type.__name__].model == f"commands.{model_type.__name__}"


def test_command_ids_are_0x10_plus_the_models() -> None:
    for model_type, model_id in commands.COMMAND_IDS.items():
        assert m.BY_NAME[model_type.__name__].msg_id == 0x10 + model_id
    assert m.GetStatus.MSG_ID == 0x10


def test_accepted_maps_to_ack_and_ack_soft_limits() -> None:
    assert [f.name for f in dataclasses.fields(commands.Accepted)] == ["soft_limits"]
    assert m.AckSoftLimits._fields[-1] == "soft_limits" and m.Ack._fields == ("command_id",)


def to_wire(model_value: Any) -> Any:
    wire = m.BY_NAME[type(model_value).__name__].type
    return wire(*(getattr(model_value, f.name) for f in dataclasses.fields(model_value)))


def over_the_wire(message: Any) -> Any:
    return decode_frame(encode_frame(message, 1)[:-1]).message


@pytest.mark.parametrize("command", [
    commands.ProgramStopped(), commands.ProgramContinuous(250_000),
    commands.ProgramFlex(((0, 100_000), (8 * fm.TICKS_PER_HOUR, 400_000))), commands.ProgramMinimumRate(),
    commands.ClinicianBolus(500_000, fm.TICKS_PER_HOUR, 4 * fm.TICKS_PER_HOUR, 0), commands.ClinicianBolus(1, 2),
    commands.PrimingBolus(180_000, fm.TICKS_PER_HOUR), commands.ConfigurePatientBolus(100_000, 1, 2, 4),
    commands.PatientBolusRequest(), commands.Refill(1, 2, "baclofen", 2_000, 3, True),
    commands.Refill(1, 2, "morphine", 10_000), commands.SetLowReservoirAlarm(2_000_000),
    commands.AcknowledgeAlarm(alarms.AlarmCode.REFILL_DISCREPANCY), commands.SetClock(5), commands.GetStatus(),
    commands.BolusGranted(commands.BolusKind.PATIENT, 400, 100_000),
    commands.BolusDenied(commands.DenyReason.DAILY_COUNT, "4 of 4 today"),
], ids=lambda c: type(c).__name__)
def test_model_values_cross_the_wire_and_come_back_equal(command: Any) -> None:
    back = over_the_wire(to_wire(command))
    assert type(command)(*back) == command


def test_a_real_status_report_crosses_the_wire_unchanged() -> None:
    pump = fm.Controller()
    pump.handle(commands.Refill(0, 20_000_000, "morphine", 10_000), 0)
    pump.handle(commands.ProgramContinuous(250_000), 0)
    pump.handle(commands.ConfigurePatientBolus(100_000, 600 * 32_768, 3 * fm.TICKS_PER_HOUR, 4), 0)
    pump.handle(commands.PatientBolusRequest(), fm.TICKS_PER_HOUR)
    pump.advance(fm.TICKS_PER_HOUR + 60 * 32_768)
    status = pump.status()
    assert status.bolus_active is commands.BolusKind.PATIENT and status.steps > 0
    back = commands.StatusReport(*over_the_wire(to_wire(status)))
    assert back == status


def test_log_records_on_the_wire_are_the_bytes_in_flash() -> None:
    pump = fm.Controller()
    pump.handle(commands.Refill(0, 20_000_000, "morphine", 10_000), 0)
    records = list(pump.log.records())[:m.MAX_LOG_RECORDS]
    wire = m.LogRecords(pump.log.next_seq, tuple(
        m.LogRecord(r.seq, r.tick, int(r.code), r.aux, r.payload, 0xFFFF, int.from_bytes(r.pack()[-2:], "little"))
        for r in records))
    payload = m.LogRecords.SPEC.build(wire)
    assert payload[5:] == b"".join(r.pack() for r in records)
    back = over_the_wire(wire)
    assert [Record.unpack(m.LOG_RECORD.build(x._asdict())) for x in back.records] == records
    assert any(r.code is LogCode.REFILL for r in records)


@pytest.mark.parametrize("wire, model_type", [(m.InjectOcclusion, "Occlusion"), (m.InjectMri, "MriExposure")])
def test_fault_injections_mirror_the_plants_faults(wire: type, model_type: str) -> None:
    from firmware_model import plant

    model = getattr(plant, model_type)
    model_fields = dataclasses.fields(model)
    assert wire._fields == tuple(f.name for f in model_fields)
    assert wire._field_defaults == {f.name: f.default for f in model_fields if f.default is not dataclasses.MISSING}
    assert wire.SPEC.model == f"plant.{model_type}"
    example = model(*[5, 9, 4][:len(model_fields)])
    assert model(*over_the_wire(wire(*dataclasses.astuple(example)))) == example
