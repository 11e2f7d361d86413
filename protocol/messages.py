"""The message catalogue: every message as a construct definition, with a stable id.

Protocol version 1. Ids never change meaning: a new message takes a new id; a message whose
layout must change becomes a new message (or a new protocol version). Ranges: 0x01-0x0F session,
0x10-0x2F commands to the pump (0x11-0x1F are 0x10 + the model's COMMAND_IDS; 0x10 is GetStatus,
which the model does not log), 0x40-0x4F answers, 0x50 telemetry, 0x70-0x7F test mode (emulated
rigs only; refused outside test mode).

Each message is a Python class (a named tuple that never equals another message) whose fields,
order, units and defaults mirror the reference model's command or response of the same name, so
the mapping in hil/ is one-to-one: `firmware_model.ProgramContinuous(*wire_message)`. Integers
are little-endian; ticks (of the 32,768 Hz crystal) are u64 because they pass 2^32 after 36
hours; volumes are u32 nL (a reservoir holds at most 40 mL) except lifetime totals (u64).

Drugs travel by name (`Text`, at most 32 bytes), not by index: an index depends on the order of
a drug library that a clinic may override or extend, a name means the same drug on every pump.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

from construct import (Bytes, Construct, Default, Flag, FocusedSeq, Int8ul, Int16ul, Int32sl, Int32ul, Int64ul,
                       StreamError, Struct, Terminated, TerminatedError)

from .enums import Access, AlarmCode, BolusKind, DenyReason, Direction, Mode, NakReason
from .errors import CatalogueError, EncodeError
from .fields import (EnumField, FieldInfo, ListOf, OptionalInt, Text, check, describe, from_parsed, record,
                     struct_info, to_buildable)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_PAYLOAD = 1024          # bytes; every message's largest form fits (checked below)
DRUG_NAME_BYTES = 32
MAX_FLEX_STEPS = 48         # the wire's limit; the pump's own (24 by default) refuses beyond it
MAX_LOG_RECORDS = 31        # 32-byte records per LOG_RECORDS frame
MAX_FIXTURE_SAMPLES = 120   # stroke samples per FixtureAdvance, stroke ticks per FixtureReport
MAX_FIXTURE_LINES = 8       # sensor-line changes announced ahead per FixtureAdvance
LOG_RECORD_SIZE = 32

TO_PUMP, TO_HOST = Direction.TO_PUMP, Direction.TO_HOST
OPEN, PATIENT, CLINICIAN = Access.OPEN, Access.PATIENT, Access.CLINICIAN


@dataclass(frozen=True)
class MessageSpec:
    """One catalogue entry: id, name, direction, who may send it, its payload and what it mirrors.

    model: the firmware_model counterpart (for docs and the hil mapping), "" when wire-only.
    answers: the messages a pump may answer it with (TO_PUMP messages); a command with several
    answers (the model returns a list) gets them all under its seq, all but the last flagged MORE.
    """

    msg_id: int
    name: str
    direction: Direction
    access: Access
    summary: str
    payload: Struct
    info: FieldInfo
    test_mode: bool
    model: str
    answers: tuple[str, ...]
    whole: Construct = field(repr=False, compare=False)  # the payload, then the end of the bytes

    @property
    def type(self) -> type:
        """The message's Python class."""
        return self.info.record  # type: ignore[return-value]

    def check(self, message: Any) -> None:
        """Raise EncodeError unless `message` is this message with every field in range."""
        if type(message) is not self.type:
            raise EncodeError(f"{self.name}: expected a {self.name} message, got {type(message).__name__}")
        for info, value in zip(self.info.fields, message):
            check(info, value, f"{self.name}.{info.name}")

    @functools.cached_property
    def compiled_payload(self) -> Construct:
        """construct's compiled form of the payload (about 3x faster); it sees only checked values."""
        return self.payload.compile()


    def build(self, message: Any) -> bytes:
        """The payload bytes of `message`, through construct's compiled form (checked first, so
        errors are clear; tests/protocol prove compiled and interpreted forms build alike)."""
        self.check(message)
        return self.compiled_payload.build(to_buildable(self.info, message))

    def parse(self, payload: bytes) -> Any:
        """The message in `payload`, through construct's compiled form; the whole payload must be
        used. Only for bytes whose CRC was checked (framing.decode_inner checks it first).

        Raises construct's errors (or UnicodeDecodeError) on a malformed payload; the framing
        layer turns them into PayloadError.
        """
        stream = _ExactReads(payload)
        parsed = self.compiled_payload.parse_stream(stream)
        left = len(payload) - stream.tell()
        if left:
            raise TerminatedError(f"{left} bytes after the {self.name} payload; expected its end")
        return from_parsed(self.info, parsed)


class _ExactReads(io.BytesIO):
    """A payload for construct's compiled parser. Its generated code reads with io.read(n) and takes
    a short read as data (a Flag cut off reads as True, a Bytes or a text comes back short), where
    the interpreted form raises; here a short read raises too, so a payload cut short is refused."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size >= 0 and len(data) != size:
            raise StreamError(f"the payload ends {size - len(data)} bytes short of its next field")
        return data


_CATALOGUE: dict[int, MessageSpec] = {}


def message(msg_id: int, name: str, direction: Direction, access: Access, summary: str,
            *fields: Construct, test_mode: bool = False, model: str = "",
            answers: tuple[str, ...] = ()) -> type:
    """Define a message: enter it in the catalogue and return its class."""
    if not 0 < msg_id <= 0xFF:
        raise CatalogueError(f"{name}: msg_id = {msg_id}: expected 1..255 (a u8)")
    if msg_id in _CATALOGUE:
        raise CatalogueError(f"{name}: msg_id {msg_id:#04x} is already {_CATALOGUE[msg_id].name}")
    if any(spec.name == name for spec in _CATALOGUE.values()):
        raise CatalogueError(f"message name {name!r} is defined twice")
    if direction is TO_HOST and access is not OPEN:
        raise CatalogueError(f"{name}: messages the pump sends need no signature (access OPEN)")
    payload = Struct(*fields)
    infos = tuple(describe(f) for f in payload.subcons)
    info = struct_info(name, infos, summary, payload)
    if info.max_size > MAX_PAYLOAD:
        raise CatalogueError(f"{name}: its largest payload is {info.max_size} bytes; expected <= {MAX_PAYLOAD}")
    spec = MessageSpec(msg_id, name, direction, access, summary, payload, info, test_mode, model, answers,
                       FocusedSeq("payload", "payload" / payload, Terminated))
    cls = info.record
    cls.SPEC = spec  # type: ignore[union-attr]
    cls.MSG_ID = msg_id  # type: ignore[union-attr]
    _CATALOGUE[msg_id] = spec
    return cls  # type: ignore[return-value]


# ---- field shorthands -----------------------------------------------------------------------------

u8, u16, u32, u64, i32 = Int8ul, Int16ul, Int32ul, Int64ul, Int32sl


def drug() -> Construct:
    return "drug" / Text(DRUG_NAME_BYTES) * "drug name as in the drug library (e.g. \"morphine\"); \"\" when none"


FLEX_STEP = record(
    "FlexStep",
    "start_tick" / u64 * "start of this rate, in ticks since midnight of the pump's clock; the first is 0",
    "rate_nl_per_day" / u32 * "basal rate from this start to the next",
)

SENSOR_LINE = record(
    "SensorLine",
    "tick" / u64 * "from this tick on (the first may be the present tick: the level now)",
    "rotor_held" / Flag * "the rotor cannot turn (a magnet or a jam): strokes do not land",
    "emi" / Flag * "a scanner's field reaches the telemetry coil",
)

LOG_RECORD = record(
    "LogRecord",
    "seq" / u32 * "record sequence number (modulo 2^32)",
    "tick" / u64 * "when it was written",
    "code" / u16 * "what it says (firmware_model.event_log.LogCode)",
    "aux" / u16 * "blob chunk index; bit 15 marks the last chunk",
    "payload" / Bytes(12) * "three i32 arguments, or a chunk of a blob",
    "reserved" / u16 * "0xFFFF (erased flash)",
    "crc" / u16 * "CRC-16/IBM-3740 (init 0xFFFF, check 0x29B1) of the first 30 bytes",
)


# ---- session ------------------------------------------------------------------------------------

Hello = message(
    0x01, "Hello", TO_PUMP, OPEN,
    "Open a session and negotiate the protocol version. Always sent with header version 1: the "
    "header's first byte and the layouts of Hello, HelloReply and Nak never change.",
    "min_version" / u8 * "oldest protocol version the host speaks",
    "max_version" / u8 * "newest protocol version the host speaks",
    "client" / Text(64) * "the host program and its version, for the pump's log",
    answers=("HelloReply", "Nak"),
)

HelloReply = message(
    0x02, "HelloReply", TO_HOST, OPEN,
    "The pump's answer to Hello: the version chosen (the newest both speak) and what the pump is.",
    "version" / u8 * "protocol version for the rest of the session",
    "firmware" / Text(64) * "firmware name and version",
    "serial_number" / u32 * "the pump's serial number",
    "test_mode" / Flag * "an emulated rig that accepts test-mode messages",
    "tick_hz" / u32 * "the pump's clock: 32768",
    "reservoir_capacity_nl" / u32 * "20 mL or 40 mL",
    "stroke_nl" / u32 * "volume of one motor step",
)

# ---- commands (0x10 + the model's COMMAND_IDS) ----------------------------------------------------

GetStatus = message(
    0x10, "GetStatus", TO_PUMP, PATIENT,
    "Ask for the pump's status; changes nothing.",
    model="commands.GetStatus", answers=("StatusReport", "Nak"),
)

ProgramStopped = message(
    0x11, "ProgramStopped", TO_PUMP, CLINICIAN,
    "Stop the pump: no basal, every bolus halted (SR-20).",
    model="commands.ProgramStopped", answers=("Ack", "Nak"),
)

ProgramContinuous = message(
    0x12, "ProgramContinuous", TO_PUMP, CLINICIAN,
    "Simple continuous therapy: one rate all day.",
    "rate_nl_per_day" / u32 * "the basal rate",
    model="commands.ProgramContinuous", answers=("Ack", "AckSoftLimits", "Nak"),
)

ProgramFlex = message(
    0x13, "ProgramFlex", TO_PUMP, CLINICIAN,
    "Flexible dosing: a daily table of rate steps, repeated every day of the pump's clock.",
    "steps" / ListOf(FLEX_STEP, MAX_FLEX_STEPS) * "the table, in order of start_tick",
    model="commands.ProgramFlex", answers=("Ack", "AckSoftLimits", "Nak"),
)

ProgramMinimumRate = message(
    0x14, "ProgramMinimumRate", TO_PUMP, CLINICIAN,
    "Deliver the minimum safe rate that keeps the catheter open.",
    model="commands.ProgramMinimumRate", answers=("Ack", "Nak"),
)

ClinicianBolus = message(
    0x15, "ClinicianBolus", TO_PUMP, CLINICIAN,
    "A dose over a duration on top of the basal, once or periodically.",
    "volume_nl" / u32 * "volume of each bolus",
    "duration_ticks" / u64 * "time over which each bolus is delivered",
    "period_ticks" / Default(u64, 0) * "0: a single bolus; else the time from one start to the next",
    "count" / Default(u32, 1) * "boluses to deliver: 1 for a single one; 0 with a period: forever",
    model="commands.ClinicianBolus", answers=("Ack", "AckSoftLimits", "BolusGranted", "Nak"),
)

PrimingBolus = message(
    0x16, "PrimingBolus", TO_PUMP, CLINICIAN,
    "Fill the unfilled pump tubing and catheter after implant or revision.",
    "volume_nl" / u32 * "volume to deliver",
    "duration_ticks" / u64 * "time over which it is delivered",
    model="commands.PrimingBolus", answers=("BolusGranted", "Nak"),
)

ConfigurePatientBolus = message(
    0x17, "ConfigurePatientBolus", TO_PUMP, CLINICIAN,
    "Set the patient bolus: dose, duration, lockout, maximum per rolling 24 h (0: off).",
    "volume_nl" / u32 * "dose volume of one patient bolus",
    "duration_ticks" / u64 * "time over which one bolus is delivered",
    "lockout_ticks" / u64 * "least time from one granted bolus to the next",
    "max_per_day" / u8 * "most boluses per rolling 24 h; 0: patient bolus off",
    model="commands.ConfigurePatientBolus", answers=("Ack", "AckSoftLimits", "Nak"),
)

PatientBolusRequest = message(
    0x18, "PatientBolusRequest", TO_PUMP, PATIENT,
    "The patient presses the button (patient therapy manager).",
    model="commands.PatientBolusRequest", answers=("BolusGranted", "BolusDenied", "Nak"),
)

Refill = message(
    0x19, "Refill", TO_PUMP, CLINICIAN,
    "A refill: the residual withdrawn and measured, the new drug injected. The expected residual "
    "is the pump's own reservoir_nl at that moment (StatusReport before the refill); the pump "
    "compares it with the measured one, alarms on a discrepancy and logs both (LogCode.REFILL).",
    "measured_residual_nl" / u32 * "residual volume withdrawn and measured by the clinician",
    "injected_nl" / u32 * "volume of new drug injected",
    drug(),
    "concentration_ug_per_ml" / u32 * "concentration of the new drug",
    "measured_after_nl" / Default(OptionalInt(u32), None) * "fill level read after the refill, when the pump has a sensor",
    "bridge" / Default(Flag, False) * "after a concentration change, bridge the old drug still in the fluid path",
    model="commands.Refill", answers=("Ack", "AckSoftLimits", "Nak"),
)

SetLowReservoirAlarm = message(
    0x1A, "SetLowReservoirAlarm", TO_PUMP, CLINICIAN,
    "Set the reservoir volume at which the low-reservoir alarm sounds.",
    "threshold_nl" / u32 * "the low-reservoir threshold",
    model="commands.SetLowReservoirAlarm", answers=("Ack", "Nak"),
)

AcknowledgeAlarm = message(
    0x1B, "AcknowledgeAlarm", TO_PUMP, CLINICIAN,
    "Acknowledge (silence) an active alarm; a latched one whose condition is gone is removed.",
    "alarm" / EnumField(u8, AlarmCode) * "the alarm acknowledged",
    model="commands.AcknowledgeAlarm", answers=("Ack", "Nak"),
)

SetClock = message(
    0x1C, "SetClock", TO_PUMP, CLINICIAN,
    "Set the pump's time of day (the flex table follows it; rolling windows do not).",
    "time_of_day_ticks" / u64 * "ticks since midnight, < 86400 * 32768",
    model="commands.SetClock", answers=("Ack", "Nak"),
)

Interrogate = message(
    0x1D, "Interrogate", TO_PUMP, PATIENT,
    "A clinician or patient programmer interrogates the pump: the answer is the status, and after an "
    "MRI it releases the telemetry-mode latch that stopped delivery.",
    model="commands.Interrogate", answers=("StatusReport", "Nak"),
)

ReadLog = message(
    0x20, "ReadLog", TO_PUMP, CLINICIAN,
    f"Read event-log records by sequence number, oldest first, at most {MAX_LOG_RECORDS} per answer; "
    "records the ring has overwritten are skipped.",
    "first_seq" / u32 * "sequence number of the first record wanted",
    "count" / u8 * f"records wanted (the answer holds at most {MAX_LOG_RECORDS})",
    answers=("LogRecords", "Nak"),
)

# ---- answers --------------------------------------------------------------------------------------

Ack = message(
    0x40, "Ack", TO_HOST, OPEN,
    "The command took effect (model: Accepted with no soft-limit flags). The frame's seq is the command's.",
    "command_id" / u8 * "msg_id of the command answered",
    model="commands.Accepted",
)

AckSoftLimits = message(
    0x41, "AckSoftLimits", TO_HOST, OPEN,
    "The command took effect, above soft limits the programmer must show (model: Accepted with flags, SR-22).",
    "command_id" / u8 * "msg_id of the command answered",
    "soft_limits" / ListOf(Text(200), 4) * "one line per soft limit passed",
    model="commands.Accepted",
)

Nak = message(
    0x42, "Nak", TO_HOST, OPEN,
    "The frame or the command was refused; nothing changed. The frame's seq is the refused one's.",
    "command_id" / u8 * "msg_id of the frame refused (0 when unknown)",
    "reason" / EnumField(u8, NakReason) * "why",
    "field" / Text(64) * "the field refused, e.g. \"morphine.daily_dose_ug\"; \"\" when none",
    "value" / Text(64) * "the value refused, as text; \"\" when none",
    "expected" / Text(255) * "the limit or what was expected (for LIMIT_EXCEEDED: the limit and its source)",
)

BolusGranted = message(
    0x43, "BolusGranted", TO_HOST, OPEN,
    "A bolus was started (model: BolusGranted).",
    "kind" / EnumField(u8, BolusKind) * "which bolus",
    "steps" / u32 * "motor steps it will take",
    "volume_nl" / u32 * "volume it will deliver",
    model="commands.BolusGranted",
)

BolusDenied = message(
    0x44, "BolusDenied", TO_HOST, OPEN,
    "A patient bolus request was denied (model: BolusDenied).",
    "reason" / EnumField(u8, DenyReason) * "why",
    "detail" / Text(255) * "the rule and its figures, for the patient's programmer",
    model="commands.BolusDenied",
)

StatusReport = message(
    0x45, "StatusReport", TO_HOST, OPEN,
    "The pump's status (model: StatusReport, field for field).",
    "tick" / u64 * "the pump's present tick",
    "mode" / EnumField(u8, Mode) * "basal therapy mode",
    drug(),
    "concentration_ug_per_ml" / u32 * "concentration of the drug in the reservoir",
    "programmed_rate_nl_per_day" / u32 * "the basal rate programmed for now",
    "effective_rate_nl_per_day" / u32 * "the rate the motor's integer increment delivers",
    "reservoir_nl" / u32 * "volume in the reservoir",
    "delivered_nl" / u64 * "volume delivered since implant",
    "dose_at_tip_ng" / u64 * "drug delivered at the catheter tip since implant",
    "steps" / u64 * "motor steps since implant",
    "bolus_active" / EnumField(u8, BolusKind, optional=True) * "the bolus being delivered, if any",
    "alarms" / ListOf(EnumField(u8, AlarmCode), 16) * "active alarms in the order raised",
    "sounding" / EnumField(u8, AlarmCode, optional=True) * "the alarm whose tone sounds, if any",
    "delivery_stopped" / Flag * "delivery is stopped (an alarm, the telemetry latch, no drug, end of service)",
    "stalled" / Flag * "the motor is stalled: commanded steps are not achieved (an MRI magnet)",
    "telemetry_latched" / Flag * "EMI while an alarm sounded latched delivery off until an interrogation",
    "battery_months_remaining" / u16 * "whole months of battery at the present rate",
    "eri" / Flag * "elective replacement indicator raised",
    "eos" / Flag * "end of service: the pump has stopped for good",
    "refill_due_tick" / OptionalInt(u64) * "when the low-reservoir alarm is due if every allowed bolus is taken",
    model="commands.StatusReport",
)

LogRecords = message(
    0x46, "LogRecords", TO_HOST, OPEN,
    "Event-log records as they sit in flash (32 bytes each, firmware_model.event_log).",
    "next_seq" / u32 * "sequence number the next record will get (modulo 2^32)",
    "records" / ListOf(LOG_RECORD, MAX_LOG_RECORDS) * "the records, oldest first",
)

# ---- telemetry ------------------------------------------------------------------------------------

Telemetry = message(
    0x50, "Telemetry", TO_HOST, OPEN,
    "Periodic telemetry, unasked; its own counter shows a lost frame (the header's seq is 0).",
    "counter" / u32 * "telemetry frame number, +1 per frame (modulo 2^32)",
    "tick" / u64 * "the pump's present tick",
    "steps" / u64 * "motor steps since implant",
    "reservoir_nl" / u32 * "volume in the reservoir",
    "pressure_pa" / i32 * "latest outlet pressure sample",
    "active_alarms" / u32 * "bit n set: AlarmCode n is active",
    "battery_used_nc" / u64 * "charge drawn from the battery since implant",
)

FixtureReport = message(
    0x51, "FixtureReport", TO_HOST, OPEN,
    "Where a FixtureAdvance left the pump, and the ticks of the strokes it needs samples for next.",
    "tick" / u64 * "the pump's present tick: the run's target, or just before a stroke it has no sample for",
    "used" / u8 * "samples of the FixtureAdvance used (a prefix of them; the rest were for strokes not made)",
    "wanted" / ListOf(u64, MAX_FIXTURE_SAMPLES) * "ticks of the next strokes that need a sample (empty: the target was reached)",
)

# ---- test mode (emulated rigs) -------------------------------------------------------------------

AdvanceTime = message(
    0x70, "AdvanceTime", TO_PUMP, CLINICIAN,
    "Lockstep: run the emulated pump's virtual time to a tick (model: Controller.advance).",
    "to_tick" / u64 * "the tick to run to; never earlier than the present one",
    test_mode=True, answers=("Ack", "Nak"),
)

InjectOcclusion = message(
    0x71, "InjectOcclusion", TO_PUMP, CLINICIAN,
    "A catheter occlusion (model: plant.Occlusion).",
    "start_tick" / u64 * "when it starts",
    "end_tick" / Default(OptionalInt(u64), None) * "when it clears (none: never)",
    "factor" / Default(u16, 0) * "0: total; >= 2: partial, the outlet resistance times factor",
    test_mode=True, model="plant.Occlusion", answers=("Ack", "Nak"),
)

InjectMri = message(
    0x72, "InjectMri", TO_PUMP, CLINICIAN,
    "An MRI scan: the magnet holds the rotor (model: plant.MriExposure).",
    "start_tick" / u64 * "when the scan starts",
    "end_tick" / u64 * "when it ends",
    test_mode=True, model="plant.MriExposure", answers=("Ack", "Nak"),
)

InjectBatteryDrain = message(
    0x73, "InjectBatteryDrain", TO_PUMP, CLINICIAN,
    "Draw charge from the battery at once, to bring ERI or EOS near (model: Controller.drain_battery).",
    "at_tick" / u64 * "when the charge is drawn",
    "charge_nc" / u64 * "charge drawn",
    test_mode=True, answers=("Ack", "Nak"),
)

InjectStall = message(
    0x74, "InjectStall", TO_PUMP, CLINICIAN,
    "A mechanical motor stall: the rotor is jammed, not held by a magnet, so no EMI (model: plant.Jam).",
    "start_tick" / u64 * "when the rotor jams",
    "end_tick" / OptionalInt(u64) * "when it frees (none: never)",
    test_mode=True, model="plant.Jam", answers=("Ack", "Nak"),
)

InjectReset = message(
    0x75, "InjectReset", TO_PUMP, CLINICIAN,
    "A processor reset: the pump rebuilds its state from the event log (model: Controller.rebuild).",
    "at_tick" / u64 * "when the reset happens",
    test_mode=True, answers=("Ack", "Nak"),
)

FixtureAdvance = message(
    0x76, "FixtureAdvance", TO_PUMP, CLINICIAN,
    "Lockstep with a bench fixture for a pump without a plant: run to a tick, with the sensor "
    "samples of the strokes the pump asked for and the sensor lines ahead (hil.fixture).",
    "to_tick" / u64 * "the tick to run to; never earlier than the present one",
    "lines" / ListOf(SENSOR_LINE, MAX_FIXTURE_LINES) * "sensor-line levels from their ticks on, in tick order",
    "pressures_pa" / ListOf(i32, MAX_FIXTURE_SAMPLES) * "the outlet pressure just after each stroke the last FixtureReport wanted, in its order (a prefix of them)",
    test_mode=True, answers=("FixtureReport", "Nak"),
)


CATALOGUE: dict[int, MessageSpec] = dict(sorted(_CATALOGUE.items()))
BY_NAME: dict[str, MessageSpec] = {spec.name: spec for spec in CATALOGUE.values()}
MESSAGE_TYPES: tuple[type, ...] = tuple(spec.type for spec in CATALOGUE.values())


def spec_of(msg_id: int) -> MessageSpec | None:
    """The catalogue entry of an id, or None."""
    return CATALOGUE.get(msg_id)


def negotiate_version(min_version: int, max_version: int) -> int | None:
    """The version a pump chooses for a Hello: the newest both sides speak, or None (Nak)."""
    common = [v for v in SUPPORTED_VERSIONS if min_version <= v <= max_version]
    return max(common) if common else None


def record_type(definition: Struct) -> type:
    """The named-tuple type of a nested record definition (FlexStep, PatientBolusSettings, LogRecord)."""
    return describe(definition).record  # type: ignore[return-value]


FlexStep = record_type(FLEX_STEP)
SensorLine = record_type(SENSOR_LINE)
LogRecord = record_type(LOG_RECORD)


def _check_catalogue() -> None:
    if describe(LOG_RECORD).size != LOG_RECORD_SIZE:
        raise CatalogueError(f"a log record on the wire must be the {LOG_RECORD_SIZE} bytes it is in flash")
    for spec in CATALOGUE.values():
        for name in spec.answers:
            if name not in BY_NAME or BY_NAME[name].direction is not TO_HOST:
                raise CatalogueError(f"{spec.name}: answer {name!r} is not a message the pump sends")


_check_catalogue()
