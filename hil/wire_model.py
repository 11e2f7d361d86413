"""The one mapping between wire messages (protocol.messages) and the reference model's values.

The protocol mirrors the model field for field (tests/protocol/test_model_mirror.py keeps it so),
so a command crosses as `ModelType(*wire_message)` and back as `WireType(*model_fields)`; only
the enums change class (protocol.enums mirrors firmware_model's value for value) and the flex
table's steps become plain (start_tick, rate) pairs. Both sides use this module: the emulated
device to run what arrives, the host to build what it sends and to read what comes back.

    command_from_wire / command_to_wire     the 14 model commands
    answers_to_wire / response_from_wire    Accepted -> Ack or AckSoftLimits; BolusGranted, BolusDenied, StatusReport
    refusal_to_nak / refusal_from_nak       LimitExceeded, NotAllowedNow <-> Nak
    log_records / record_from_wire          the event log's 32-byte records
    telemetry_message                       the periodic Telemetry of a controller
    occlusion_from_wire / mri_from_wire     test-mode faults as plant faults
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from firmware_model import alarms, commands
from firmware_model.commands import Accepted, BolusDenied, BolusGranted, Command, Response, StatusReport
from firmware_model.controller import Controller
from firmware_model.errors import CommandRefused, LimitExceeded, NotAllowedNow
from firmware_model.event_log import RECORD_SIZE, EventLog, Record
from firmware_model.plant import MriExposure, Occlusion
from protocol import enums
from protocol import messages as m
from protocol.fields import FieldInfo, Kind
from protocol.messages import MAX_LOG_RECORDS

from .errors import WireMappingError

_ENUMS_TO_MODEL: dict[type, type] = {
    enums.Mode: commands.Mode, enums.BolusKind: commands.BolusKind,
    enums.DenyReason: commands.DenyReason, enums.AlarmCode: alarms.AlarmCode,
}
_ENUMS_TO_WIRE: dict[type, type] = {model: wire for wire, model in _ENUMS_TO_MODEL.items()}

# wire message type <-> model command type, read from the catalogue's `model` names
COMMAND_TYPES: dict[type, type] = {
    spec.type: getattr(commands, spec.model.removeprefix("commands."))
    for spec in m.CATALOGUE.values()
    if spec.direction is enums.Direction.TO_PUMP and spec.model.startswith("commands.")
}
WIRE_TYPES: dict[type, type] = {model: wire for wire, model in COMMAND_TYPES.items()}

NAK_FIELD_BYTES, NAK_VALUE_BYTES, NAK_EXPECTED_BYTES = 64, 64, 255
SOFT_LIMIT_BYTES, MAX_SOFT_LIMITS = 200, 4
DENY_DETAIL_BYTES = 255
_RECORD_FIELDS = len(m.LogRecord._fields)


def _convert(value: Any, table: dict[type, type]) -> Any:
    """A model value with every enum member swapped for its twin in `table`; tuples stay tuples."""
    if isinstance(value, enum.IntEnum):
        twin = table.get(type(value))
        return twin(value.value) if twin is not None else value
    if isinstance(value, tuple):
        return tuple(_convert(v, table) for v in value)
    return value


def _to_model(info: FieldInfo, value: Any) -> Any:
    """A field's wire value as the model holds it, read by the field's definition (so a message
    built with plain integers maps as one the decoder made): enums become the model's, records
    and lists plain tuples."""
    if value is None:
        return None
    if info.kind is Kind.ENUM:
        twin = _ENUMS_TO_MODEL.get(info.enum_type)  # type: ignore[arg-type]
        return twin(value) if twin is not None else value
    if info.kind is Kind.LIST:
        return tuple(_to_model(info.element, v) for v in value)  # type: ignore[arg-type]
    if info.kind is Kind.STRUCT:
        return tuple(_to_model(f, v) for f, v in zip(info.fields, value))
    return value


def _message_to_model(model_type: type, message: Any) -> Any:
    return model_type(*(_to_model(f, v) for f, v in zip(type(message).SPEC.info.fields, message)))


def fit_text(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes (never inside a character), "..." marking a cut."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes - 3].decode("utf-8", errors="ignore") + "..."


def _fields(value: Any) -> tuple[Any, ...]:
    return tuple(getattr(value, f.name) for f in dataclasses.fields(value))


# ---- commands ---------------------------------------------------------------------------------

def command_from_wire(message: Any) -> Command:
    """The model command a wire command message carries (GetStatus, Program..., Refill, ...)."""
    model_type = COMMAND_TYPES.get(type(message))
    if model_type is None:
        raise WireMappingError(f"{type(message).__name__} is not a model command; expected one of "
                               f"{sorted(t.__name__ for t in COMMAND_TYPES)}")
    return _message_to_model(model_type, message)


def command_to_wire(command: Command) -> Any:
    """The wire message of a model command (checked by the catalogue when it is encoded)."""
    wire_type = WIRE_TYPES.get(type(command))
    if wire_type is None:
        raise WireMappingError(f"{type(command).__name__} is not a model command; expected one of "
                               f"{sorted(t.__name__ for t in WIRE_TYPES)}")
    return wire_type(*_convert(_fields(command), _ENUMS_TO_WIRE))


# ---- answers ----------------------------------------------------------------------------------

def response_to_wire(response: Response, command_id: int) -> Any:
    """One model response as its wire answer; `command_id` is the msg_id of the command answered."""
    if isinstance(response, Accepted):
        if not response.soft_limits:
            return m.Ack(command_id)
        flags = [fit_text(f, SOFT_LIMIT_BYTES) for f in response.soft_limits]
        if len(flags) > MAX_SOFT_LIMITS:
            flags = flags[:MAX_SOFT_LIMITS - 1] + [f"and {len(flags) - MAX_SOFT_LIMITS + 1} more soft limits"]
        return m.AckSoftLimits(command_id, tuple(flags))
    if isinstance(response, BolusGranted):
        return m.BolusGranted(*_convert(_fields(response), _ENUMS_TO_WIRE))
    if isinstance(response, BolusDenied):
        return m.BolusDenied(enums.DenyReason(response.reason), fit_text(response.detail, DENY_DETAIL_BYTES))
    if isinstance(response, StatusReport):
        return m.StatusReport(*_convert(_fields(response), _ENUMS_TO_WIRE))
    raise WireMappingError(f"{type(response).__name__} is not a model response; expected Accepted, "
                           "BolusGranted, BolusDenied or StatusReport")


def answers_to_wire(responses: list[Response], command_id: int) -> list[Any]:
    """What the model answered a command, as the wire answers sent under the command's seq."""
    return [response_to_wire(r, command_id) for r in responses]


def response_from_wire(message: Any) -> Response:
    """The model response a wire answer stands for (Ack and AckSoftLimits are both Accepted)."""
    if isinstance(message, m.Ack):
        return Accepted()
    if isinstance(message, m.AckSoftLimits):
        return Accepted(tuple(message.soft_limits))
    if isinstance(message, m.BolusGranted):
        return _message_to_model(BolusGranted, message)
    if isinstance(message, m.BolusDenied):
        return _message_to_model(BolusDenied, message)
    if isinstance(message, m.StatusReport):
        return _message_to_model(StatusReport, message)
    raise WireMappingError(f"{type(message).__name__} is not an answer the model gives; expected Ack, "
                           "AckSoftLimits, BolusGranted, BolusDenied or StatusReport")


def status_to_wire(status: StatusReport) -> Any:
    """The model's StatusReport as the wire's."""
    return m.StatusReport(*_convert(_fields(status), _ENUMS_TO_WIRE))


# ---- refusals ---------------------------------------------------------------------------------

def refusal_to_nak(refusal: CommandRefused, command_id: int) -> Any:
    """A model refusal as a Nak: LIMIT_EXCEEDED names field, value and the limit with its source;
    NOT_ALLOWED_NOW carries the model's sentence (what was refused and what was expected)."""
    if isinstance(refusal, LimitExceeded):
        limit = refusal.limit + (f" ({refusal.source})" if refusal.source else "")
        return m.Nak(command_id, enums.NakReason.LIMIT_EXCEEDED, fit_text(refusal.field, NAK_FIELD_BYTES),
                     fit_text(str(refusal.value), NAK_VALUE_BYTES), fit_text(limit, NAK_EXPECTED_BYTES))
    return m.Nak(command_id, enums.NakReason.NOT_ALLOWED_NOW, "", "", fit_text(str(refusal), NAK_EXPECTED_BYTES))


def refusal_from_nak(nak: Any) -> CommandRefused | None:
    """The model refusal a Nak reports (LimitExceeded or NotAllowedNow), None for a link-level Nak."""
    if nak.reason == enums.NakReason.LIMIT_EXCEEDED:
        return LimitExceeded(nak.field, nak.value, nak.expected)
    if nak.reason == enums.NakReason.NOT_ALLOWED_NOW:
        return NotAllowedNow(nak.expected)
    return None


# ---- the event log ----------------------------------------------------------------------------

def log_records(log: EventLog, first_seq: int, count: int) -> Any:
    """A LogRecords answer: the records held from `first_seq` on (older ones the ring overwrote are
    skipped), at most `count` and at most MAX_LOG_RECORDS, oldest first, as they sit in flash."""
    oldest = log.next_seq - len(log)
    start = max(first_seq, oldest)
    n = max(0, min(count, MAX_LOG_RECORDS, log.next_seq - start))
    raw = log.raw_records()
    offset = (start - oldest) * RECORD_SIZE
    records = tuple(record_to_wire_raw(raw[offset + i * RECORD_SIZE:offset + (i + 1) * RECORD_SIZE]) for i in range(n))
    return m.LogRecords(log.next_seq & 0xFFFFFFFF, records)


def record_to_wire_raw(raw: bytes) -> Any:
    """A wire LogRecord from the 32 bytes of a record in flash (CRC and reserved bytes as stored)."""
    rec = Record.unpack(raw)  # checks the CRC: a damaged record in flash is an error, not an answer
    return m.LogRecord(rec.seq, rec.tick, int(rec.code), rec.aux, rec.payload, 0xFFFF,
                       int.from_bytes(raw[-2:], "little"))


def record_to_wire(record: Record) -> Any:
    """A wire LogRecord of a model record."""
    return record_to_wire_raw(record.pack())


def record_from_wire(record: Any) -> Record:
    """The model record a wire LogRecord holds; raises the model's StateError on a bad CRC or code."""
    if len(record) != _RECORD_FIELDS:
        raise WireMappingError(f"{record!r}: expected a LogRecord of {_RECORD_FIELDS} fields")
    seq, tick, code, aux, payload, reserved, crc = record
    raw = (seq.to_bytes(4, "little") + tick.to_bytes(8, "little") + code.to_bytes(2, "little")
           + aux.to_bytes(2, "little") + payload + reserved.to_bytes(2, "little") + crc.to_bytes(2, "little"))
    return Record.unpack(raw)


# ---- telemetry --------------------------------------------------------------------------------

def alarm_bits(codes: tuple[alarms.AlarmCode, ...] | list[alarms.AlarmCode]) -> int:
    """Telemetry's active_alarms: bit n set when AlarmCode n is active."""
    bits = 0
    for code in codes:
        bits |= 1 << int(code)
    return bits


def alarms_of_bits(bits: int) -> tuple[alarms.AlarmCode, ...]:
    """The alarm codes a Telemetry active_alarms word holds, in code order."""
    return tuple(code for code in alarms.AlarmCode if bits >> int(code) & 1)


def telemetry_message(controller: Controller, counter: int) -> Any:
    """Telemetry of a controller at its present tick.

    pressure_pa is the latest sample the pump's occlusion detector holds (0 before the first
    stroke after an implant or a reset, and on a pump without a detector): the firmware reports
    what it measured, not the plant's truth. battery_used_nc follows BatterySpec.used_nc.
    """
    st = controller.state
    history = st.detector.history_pa
    return m.Telemetry(counter & 0xFFFFFFFF, st.tick, st.steps_total, st.reservoir_nl,
                       int(history[-1]) if history else 0, alarm_bits([a.code for a in st.alarms.active]),
                       controller.config.battery.used_nc(st.steps_total, st.tick))


# ---- test-mode faults -------------------------------------------------------------------------

def occlusion_from_wire(message: Any) -> Occlusion:
    """The plant occlusion an InjectOcclusion describes (raises LimitExceeded on factor 1 or an end
    not after the start)."""
    return Occlusion(message.start_tick, message.end_tick, message.factor)


def mri_from_wire(message: Any) -> MriExposure:
    """The plant MRI exposure an InjectMri describes."""
    return MriExposure(message.start_tick, message.end_tick)

