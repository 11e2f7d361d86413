"""The catalogue: stable ids, clear encode errors, limits, records, version negotiation."""

from __future__ import annotations

import pytest
from construct import Int8ul, Int32ub, Struct

from protocol import messages as m
from protocol.enums import Access, AlarmCode, Direction, Mode
from protocol.errors import CatalogueError, EncodeError
from protocol.fastpath import FAST_CODECS
from protocol.fields import Text, describe, unit_of
from protocol.framing import MAX_ENCODED_FRAME, MAX_FRAME, encode_frame

# The ids of protocol version 1. Never change a line of this table: add new messages at the end.
PINNED_IDS = {
    "Hello": 0x01, "HelloReply": 0x02,
    "GetStatus": 0x10, "ProgramStopped": 0x11, "ProgramContinuous": 0x12, "ProgramFlex": 0x13,
    "ProgramMinimumRate": 0x14, "ClinicianBolus": 0x15, "PrimingBolus": 0x16, "ConfigurePatientBolus": 0x17,
    "PatientBolusRequest": 0x18, "Refill": 0x19, "SetLowReservoirAlarm": 0x1A, "AcknowledgeAlarm": 0x1B,
    "SetClock": 0x1C, "Interrogate": 0x1D, "ReadLog": 0x20,
    "Ack": 0x40, "AckSoftLimits": 0x41, "Nak": 0x42, "BolusGranted": 0x43, "BolusDenied": 0x44,
    "StatusReport": 0x45, "LogRecords": 0x46,
    "Telemetry": 0x50,
    "AdvanceTime": 0x70, "InjectOcclusion": 0x71, "InjectMri": 0x72, "InjectBatteryDrain": 0x73,
    "InjectStall": 0x74, "InjectReset": 0x75,
    "FixtureReport": 0x51, "FixtureAdvance": 0x76,
}


def test_the_ids_are_stable() -> None:
    assert {spec.name: spec.msg_id for spec in m.CATALOGUE.values()} == PINNED_IDS
    assert m.PROTOCOL_VERSION == 1 and m.SUPPORTED_VERSIONS == (1,)


def test_every_message_fits_the_frame_and_only_pump_messages_are_open() -> None:
    for spec in m.CATALOGUE.values():
        assert spec.info.max_size <= m.MAX_PAYLOAD
        if not spec.info.fields:
            assert spec.build(spec.type()) == b"" and spec.info.size == 0
        if spec.direction is Direction.TO_HOST:
            assert spec.access is Access.OPEN and not spec.test_mode
        elif spec.name != "Hello":
            assert spec.access in (Access.PATIENT, Access.CLINICIAN)
    assert MAX_FRAME == 7 + 1024 + 16 + 4 and MAX_ENCODED_FRAME == MAX_FRAME + 5


def test_the_access_of_patient_and_test_mode_messages() -> None:
    patient = {s.name for s in m.CATALOGUE.values() if s.access is Access.PATIENT}
    assert patient == {"GetStatus", "PatientBolusRequest", "Interrogate"}
    test_mode = {s.name for s in m.CATALOGUE.values() if s.test_mode}
    assert test_mode == {"AdvanceTime", "InjectOcclusion", "InjectMri", "InjectBatteryDrain", "InjectStall",
                         "InjectReset", "FixtureAdvance"}


def test_the_hot_messages_have_a_fast_path() -> None:
    assert m.Telemetry.MSG_ID in FAST_CODECS and m.Ack.MSG_ID in FAST_CODECS
    assert FAST_CODECS[m.Telemetry.MSG_ID].struct.format == "<LQQLlLQ"


@pytest.mark.parametrize("message, expected", [
    (m.ProgramContinuous(-1), "ProgramContinuous.rate_nl_per_day = -1: expected an integer in 0..4294967295 (u32)"),
    (m.ProgramContinuous(1 << 32), "ProgramContinuous.rate_nl_per_day = 4294967296: expected an integer"),
    (m.ProgramContinuous(2.5), "rate_nl_per_day = 2.5: expected an integer"),
    (m.ProgramContinuous(True), "rate_nl_per_day = True: expected an integer"),
    (m.SetClock(1 << 64), "SetClock.time_of_day_ticks = 18446744073709551616: expected an integer in "
                          "0..18446744073709551615 (u64)"),
    (m.AcknowledgeAlarm(99), "AcknowledgeAlarm.alarm = 99: expected a member of AlarmCode (1 RESERVOIR_LOW"),
    (m.AcknowledgeAlarm([1]), "AcknowledgeAlarm.alarm = [1]: expected a member of AlarmCode"),
    (m.AcknowledgeAlarm("RESERVOIR_LOW"), "AcknowledgeAlarm.alarm = 'RESERVOIR_LOW': expected a member"),
    (m.Refill(0, 1, "x" * 33, 5), "Refill.drug = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': expected a str of at most 32"),
    (m.Refill(0, 1, "morphine", 5, measured_after_nl=0xFFFFFFFF), "Refill.measured_after_nl = 4294967295: "
                                                                  "expected an integer in 0..4294967294"),
    (m.Refill(0, 1, "morphine", 5, bridge=1), "Refill.bridge = 1: expected True or False"),
    (m.ProgramFlex(tuple(m.FlexStep(i, 1) for i in range(49))), "ProgramFlex.steps = "),
    (m.ProgramFlex(((0, 1, 2),)), "ProgramFlex.steps[0] = (0, 1, 2): expected a FlexStep (start_tick, rate_nl_per_day)"),
    (m.ProgramFlex(((0, -5),)), "ProgramFlex.steps[0].rate_nl_per_day = -5"),
    (m.LogRecords(0, (m.LogRecord(0, 0, 0, 0, b"short", 0, 0),)), "LogRecords.records[0].payload = b'short': "
                                                                   "expected 12 bytes"),
])
def test_a_bad_message_names_the_field_the_value_and_what_was_expected(message: object, expected: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode_frame(message)
    assert expected in str(info.value)


def test_not_a_message() -> None:
    with pytest.raises(EncodeError, match="is not a protocol message"):
        encode_frame((1, 2))


def test_defaults_and_optional_fields_mirror_the_model() -> None:
    bolus = m.ClinicianBolus(volume_nl=1, duration_ticks=2)
    assert (bolus.period_ticks, bolus.count) == (0, 1)
    refill = m.Refill(1, 2, "morphine", 3)
    assert refill.measured_after_nl is None and refill.bridge is False
    assert m.Refill.SPEC.parse(m.Refill.SPEC.build(refill)) == refill


def test_records_equal_their_own_type_and_plain_tuples_only() -> None:
    assert m.Ack(5) != m.ProgramContinuous(5) and m.Ack(5) == m.Ack(5)
    assert m.FlexStep(0, 100) == (0, 100) and (0, 100) == m.FlexStep(0, 100)
    assert m.ProgramFlex(((0, 100),)) == m.ProgramFlex((m.FlexStep(0, 100),))
    assert len({m.Ack(5), m.Ack(5)}) == 1
    assert m.GetStatus() == m.GetStatus() and m.GetStatus() != m.Interrogate()



def test_enums_come_back_as_enums_and_none_stays_none() -> None:
    status = m.StatusReport(1, Mode.FLEX, "", 0, 0, 0, 0, 0, 0, 0, None, (AlarmCode.RESERVOIR_EMPTY,),
                            AlarmCode.RESERVOIR_EMPTY, True, False, False, 1, False, False, None)
    back = m.StatusReport.SPEC.parse(m.StatusReport.SPEC.build(status))
    assert back.mode is Mode.FLEX and back.alarms == (AlarmCode.RESERVOIR_EMPTY,)
    assert back.bolus_active is None and back.refill_due_tick is None and back.delivery_stopped is True


def test_version_negotiation_picks_the_newest_common_version() -> None:
    assert m.negotiate_version(1, 1) == 1
    assert m.negotiate_version(1, 7) == 1
    assert m.negotiate_version(2, 3) is None


def test_units_are_read_from_the_names() -> None:
    assert [unit_of(n) for n in ("rate_nl_per_day", "volume_nl", "duration_ticks", "tick", "to_tick",
                                 "concentration_ug_per_ml", "pressure_pa", "charge_nc", "dose_at_tip_ng",
                                 "count", "timestamp_10us")] == [
        "nL/day", "nL", "ticks", "ticks", "ticks", "µg/mL", "Pa", "nC", "ng", "", "10 µs"]


def test_the_catalogue_refuses_what_breaks_its_rules() -> None:
    with pytest.raises(CatalogueError, match="0x12 is already ProgramContinuous"):
        m.message(0x12, "Twice", Direction.TO_PUMP, Access.CLINICIAN, "dup")
    with pytest.raises(CatalogueError, match="need no signature"):
        m.message(0xF0, "SignedAnswer", Direction.TO_HOST, Access.CLINICIAN, "bad")
    with pytest.raises(CatalogueError, match="not a little-endian integer"):
        describe("x" / Int32ub)
    with pytest.raises(CatalogueError, match="must be made with record"):
        describe("x" / Struct("a" / Int8ul))
    with pytest.raises(CatalogueError, match="expected 1..255"):
        Text(300)
    assert 0xF0 not in m.CATALOGUE
