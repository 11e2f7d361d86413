"""Golden frames: one round-trip helper, as construct's own tests have, over a table of frames.

`common()` checks, for one message and its pinned frame bytes: construct parse, build and size;
construct's compiled form; the fast path (where the message has one) equal to construct; the
frame against an independent framing (struct, zlib and the pure-Python COBS of the `cobs`
package); `encode_frame`, `decode_frame` and both streaming decoders. The table covers every
message in the catalogue (a test says so). Run this file as a script to print the table's
frames after a deliberate change of the wire, and review the diff.
"""

from __future__ import annotations

import binascii
import functools
import struct
import zlib
from typing import Any, NamedTuple

import pytest

from cobs.cobs import _cobs_py  # the pure-Python COBS: an independent oracle
from construct import Construct

from protocol import messages as m
from protocol.decoder import Decoder
from protocol.enums import AlarmCode, BolusKind, DenyReason, Mode, NakReason, Role
from protocol.fastpath import FAST_CODECS
from protocol.fields import from_parsed, to_buildable
from protocol.framing import Frame, Signature, decode_frame, encode_frame
from protocol.signing import Key, Signer

TICK_HZ = 32_768
HOUR = 3600 * TICK_HZ
CLINICIAN_KEY = Key(7, bytes(range(32)), Role.CLINICIAN)
PATIENT_KEY = Key(9, bytes(range(32, 64)), Role.PATIENT)
TIMESTAMP = 0x12_3456_789A  # fixed signing time, so signed frames are golden too


def log_record(seq: int, tick: int, code: int, a0: int, a1: int = 0, a2: int = 0) -> Any:
    """A LogRecord as firmware_model.event_log writes it (CRC-16/IBM-3740 over the first 30 bytes)."""
    body = struct.pack("<IQHH12sH", seq, tick, code, 0, struct.pack("<iii", a0, a1, a2), 0xFFFF)
    return m.LogRecord(seq, tick, code, 0, body[16:28], 0xFFFF, binascii.crc_hqx(body, 0xFFFF))


class Golden(NamedTuple):
    message: Any
    seq: int
    key: Key | None
    more: bool

    @property
    def label(self) -> str:
        return f"{type(self.message).__name__} seq {self.seq}"


def g(message: Any, seq: int, key: Key | None = None, more: bool = False) -> Golden:
    return Golden(message, seq, key, more)


GOLDEN: list[Golden] = [
    g(m.Hello(1, 1, "ithil 0.1.0"), 1),
    g(m.HelloReply(1, "ithil-emulator 0.1.0", 4242, True, 32768, 20_000_000, 250), 1),
    g(m.GetStatus(), 2, PATIENT_KEY),
    g(m.ProgramStopped(), 3, CLINICIAN_KEY),
    g(m.ProgramContinuous(250_000), 4, CLINICIAN_KEY),
    g(m.ProgramFlex((m.FlexStep(0, 100_000), m.FlexStep(8 * HOUR, 400_000))), 5, CLINICIAN_KEY),
    g(m.ProgramMinimumRate(), 6, CLINICIAN_KEY),
    g(m.ClinicianBolus(500_000, HOUR // 2), 7, CLINICIAN_KEY),
    g(m.ClinicianBolus(250_000, 600 * TICK_HZ, period_ticks=4 * HOUR, count=0), 8, CLINICIAN_KEY),
    g(m.PrimingBolus(180_000, HOUR), 9, CLINICIAN_KEY),
    g(m.ConfigurePatientBolus(100_000, 600 * TICK_HZ, 3 * HOUR, 4), 10, CLINICIAN_KEY),
    g(m.PatientBolusRequest(), 11, PATIENT_KEY),
    g(m.Refill(1_950_000, 20_000_000, "morphine", 10_000), 12, CLINICIAN_KEY),
    g(m.Refill(980_000, 19_500_000, "baclofen", 2_000, measured_after_nl=19_490_000, bridge=True), 13, CLINICIAN_KEY),
    g(m.SetLowReservoirAlarm(2_000_000), 14, CLINICIAN_KEY),
    g(m.AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY), 15, CLINICIAN_KEY),
    g(m.SetClock(8 * HOUR + 30 * 60 * TICK_HZ), 16, CLINICIAN_KEY),
    g(m.Interrogate(), 17, PATIENT_KEY),
    g(m.ReadLog(100, 31), 18, CLINICIAN_KEY),
    g(m.Ack(0x12), 4),
    g(m.Ack(0x15), 7, more=True),
    g(m.AckSoftLimits(0x12, ("bupivacaine: daily_dose_ng = 12000000 is above the soft limit 10000000",)), 4),
    g(m.Nak(0x12, NakReason.LIMIT_EXCEEDED, "morphine.daily_dose_ug", "20",
            "<= 15 µg/day (domain.md §3.1, PACC [M])"), 4),
    g(m.Nak(0, NakReason.BAD_CRC, "", "", ""), 0x1234),
    g(m.BolusGranted(BolusKind.PATIENT, 400, 100_000), 11),
    g(m.BolusDenied(DenyReason.LOCKOUT, "lockout: 3 h between boluses; next at 10:30"), 11),
    g(m.StatusReport(
        tick=40 * 24 * HOUR + 5, mode=Mode.CONTINUOUS, drug="morphine", concentration_ug_per_ml=10_000,
        programmed_rate_nl_per_day=250_000, effective_rate_nl_per_day=250_000, reservoir_nl=9_750_000,
        delivered_nl=10_250_000, dose_at_tip_ng=102_000_000, steps=41_000, bolus_active=BolusKind.PATIENT,
        alarms=(AlarmCode.RESERVOIR_LOW, AlarmCode.REFILL_DISCREPANCY), sounding=AlarmCode.REFILL_DISCREPANCY,
        delivery_stopped=False, stalled=False, telemetry_latched=False, battery_months_remaining=77, eri=False, eos=False,
        refill_due_tick=70 * 24 * HOUR), 2),
    g(m.StatusReport(
        tick=0, mode=Mode.STOPPED, drug="", concentration_ug_per_ml=0, programmed_rate_nl_per_day=0,
        effective_rate_nl_per_day=0, reservoir_nl=0, delivered_nl=0, dose_at_tip_ng=0, steps=0,
        bolus_active=None, alarms=(AlarmCode.MOTOR_STALL,), sounding=AlarmCode.MOTOR_STALL, delivery_stopped=True,
        stalled=True, telemetry_latched=True, battery_months_remaining=84, eri=False, eos=False,
        refill_due_tick=None), 3),
    g(m.LogRecords(102, (log_record(100, 5 * HOUR, 12, 1_950_000, 1_940_000, 20_000_000),
                         log_record(101, 5 * HOUR, 30, 5, 2))), 18),
    g(m.Telemetry(counter=86_400, tick=86_400 * TICK_HZ, steps=1_000, reservoir_nl=19_750_000,
                  pressure_pa=-150, active_alarms=1 << AlarmCode.RESERVOIR_LOW, battery_used_nc=123_456_789_012), 0),
    g(m.AdvanceTime(1 << 40), 19, CLINICIAN_KEY),
    g(m.InjectOcclusion(2 * HOUR, None, 0), 20, CLINICIAN_KEY),
    g(m.InjectOcclusion(2 * HOUR, 3 * HOUR, 4), 21, CLINICIAN_KEY),
    g(m.InjectMri(HOUR, HOUR + 45 * 60 * TICK_HZ), 22, CLINICIAN_KEY),
    g(m.InjectBatteryDrain(HOUR, 900_000_000_000), 23, CLINICIAN_KEY),
    g(m.InjectStall(HOUR, None), 24, CLINICIAN_KEY),
    g(m.InjectReset(10 * HOUR), 25, CLINICIAN_KEY),
    g(m.FixtureReport(HOUR + 7, 2, (HOUR + 9_000, HOUR + 9_000, HOUR + 18_000)), 26),
    g(m.FixtureAdvance(2 * HOUR, (m.SensorLine(HOUR, False, False), m.SensorLine(HOUR + 60, True, True)),
                       (1_234, -56)), 26, CLINICIAN_KEY),
]


# label, then the whole frame as it goes on the wire (COBS, delimiter included), in hex
FRAMES = """
Hello seq 1                  0201020103010e1301010b697468696c20302e312e30208736c100
HelloReply seq 1             02010201030227190114697468696c2d656d756c61746f7220302e312e30921001020102800101052d3101fa01010573d78f1100
GetStatus seq 2              040101020210010801099a785634120db3ee5a6316525df3a27e422700
ProgramStopped seq 3         040101030211010801079a785634120d820234935796a325f07e252500
ProgramContinuous seq 4      040101040312040490d0030801079a785634120d7fb012fe8421aa4729f8c4fc00
ProgramFlex seq 5            0401010503131902020101010101010104a08601010103403801010104801a060801079a785634120d9648f4475a2a6738c3e06cc300
ProgramMinimumRate seq 6     040101060214010801079a785634120dbcd613d0cb9a87519af6b10400
ClinicianBolus seq 7         040101070315180420a10701010384030101010101010101010101020101010801079a785634120d2e0fbfbd7262a92c29ef4e5a00
ClinicianBolus seq 8         040101080315180490d0030101032c01010101010103201c010101010101010801079a785634120de65f6117630def3258d13b3c00
PrimingBolus seq 9           0401010903160c0420bf0201010308070101010801079a785634120d7426b36bdc8e652813059ef000
ConfigurePatientBolus seq 10 0401010a03171504a086010101032c010101010101031815010101090401079a785634120d5b67c6969344a9ad8cbe865300
PatientBolusRequest seq 11   0401010b0218010801099a785634120d159ca845770c770d9f24134500
Refill seq 12                0401010c03191a0430c11d010f2d3101086d6f727068696e6510270105ffffffff0801079a785634120d1c34061f54e9332a610e75b500
Refill seq 13                0401010d03191a0420f40e10e08b2901086261636c6f66656ed007010dd06429010101079a785634120d896d1ebde2df61cc2b22571500
SetLowReservoirAlarm seq 14  0401010e031a040480841e0801079a785634120dddf14149cef9f0751de4a51700
AcknowledgeAlarm seq 15      0401010f031b01090501079a785634120d1a8ca6d080d71405513915c100
SetClock seq 16              04010110031c08010103c43b0101010801079a785634120db628878d17c80759e2dd500d00
Interrogate seq 17           04010111021d010801099a785634120d5c0a01b84b52112c1465276600
ReadLog seq 18               0401011203200502640101091f01079a785634120d695847fea71990245543a3ab00
Ack seq 4                    020102040340010612a3de765b00
Ack seq 7                    040102070340010615872819d400
AckSoftLimits seq 4          020102040341494e1201466275706976616361696e653a206461696c795f646f73655f6e67203d2031323030303030302069732061626f76652074686520736f6674206c696d69742031303030303030303c6e573a00
Nak seq 4                    020102040342464b1207166d6f727068696e652e6461696c795f646f73655f7567023230293c3d20313520c2b5672f6461792028646f6d61696e2e6d6420c2a7332e312c2050414343205b4d5d29c11a679400
Nak seq 4660                 02010534124205010201010105e74f628200
BolusGranted seq 11          0201020b034309040290010104a08601051962922700
BolusDenied seq 11           0201020b03442d30022b6c6f636b6f75743a20332068206265747765656e20626f6c757365733b206e6578742061742031303a3330367b02fc00
StatusReport seq 2           0201020203454e020501035e1a01010d01086d6f727068696e651027010490d0030490d00304f0c5940410679c0101010105806514060101010328a001010101010602020105050101024d010101010480242e0101058f192e0f00
StatusReport seq 3           02010203034545010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101080107070101015401010affffffffffffffff1403a1e800
LogRecords seq 18            020102120346450266010103026401010101032823010101020c01010430c11d04209a1d01092d3101ffff0b676501010101032823010101021e010102050101020201010101010109ffff3ef2d4f66d2a00
Telemetry seq 0              0201010103502804805101010103c0a801010103e80301010101010a705c2d016affffff02010106141a99be1c010105345c22c800
AdvanceTime seq 19           0401011303700801010101010201010801079a785634120d03b095d770ff618e9418b84b00
InjectOcclusion seq 20       04010114037112010103100e01010109ffffffffffffffff010801079a785634120d4602f4ce3a96d98dda3f5d5a00
InjectOcclusion seq 21       04010115037112010103100e010101010103181501010102040801079a785634120d3cb1e3ccebf7683ba22dbd6f00
InjectMri seq 22             0401011603721001010308070101010101034e0c0101010801079a785634120da6f3a7fe492738722eca620e00
InjectBatteryDrain seq 23    0401011703731001010308070101010105282e8cd101010801079a785634120d27e82b4aaf3a0338cf87b6d300
InjectStall seq 24           04010118037410010103080701010110ffffffffffffffff01079a785634120d8ca7cde81a350682d3a3b3f300
InjectReset seq 25           0401011903750801010350460101010801079a785634120d254c1b2c60f4ec2513b5dd8e00
FixtureReport seq 26         0201021a0351220207030807010101070203282308070101010528230807010101055046080701010105e65b0e6b00
FixtureAdvance seq 26        0401011a037626010103100e0101010202010308070101010101023c03080701010106010102d204010cc8ffffff01079a785634120df8564ab6e5107a91a537c87500
"""


@functools.cache
def compiled(msg_id: int) -> Construct:
    return m.CATALOGUE[msg_id].payload.compile()


def signer_for(key: Key | None) -> Signer | None:
    return None if key is None else Signer(key, link_id=1, clock=lambda: TIMESTAMP)


def common(message: Any, seq: int, frame: bytes, key: Key | None = None, more: bool = False) -> None:
    """Parse, build, size, compiled form and fast path agree for one message and its golden frame."""
    spec = type(message).SPEC

    # the frame, read by an independent framing: pure-Python COBS, struct, zlib
    assert frame[-1] == 0 and 0 not in frame[:-1]
    inner = _cobs_py.decode(frame[:-1])
    version, flags, header_seq, msg_id, length = struct.unpack_from("<BBHBH", inner)
    signed = key is not None
    assert (version, header_seq, msg_id) == (1, seq, spec.msg_id)
    assert flags == (1 if signed else 0) | (2 if more else 0)
    assert len(inner) == 7 + length + (16 if signed else 0) + 4
    assert struct.unpack_from("<I", inner, len(inner) - 4)[0] == zlib.crc32(inner[:-4])
    payload = inner[7:7 + length]

    # construct: parse, build, size
    assert spec.parse(payload) == message
    assert spec.build(message) == payload
    if spec.info.size is not None:
        assert spec.payload.sizeof() == len(payload) == spec.info.size
    else:
        assert spec.info.min_size <= len(payload) <= spec.info.max_size

    # construct's compiled form gives the same
    assert from_parsed(spec.info, compiled(spec.msg_id).parse(payload)) == message
    assert compiled(spec.msg_id).build(to_buildable(spec.info, message)) == payload

    # the fast path equals construct, both ways
    codec = FAST_CODECS.get(spec.msg_id)
    if codec is not None:
        assert codec.unpack(payload) == spec.parse(payload)
        assert codec.unpack_from(b"\xff" + payload + b"\xff", 1, 1 + len(payload)) == message
        assert codec.pack(message) == spec.build(message)
        assert codec.size in (None, len(payload)) and codec.min_size <= len(payload) <= codec.max_size

    # the frame: encode, decode, and the streaming decoders (fast and construct) in two chunks
    assert encode_frame(message, seq, signer_for(key), more) == frame
    signature = None
    if signed:
        assert key is not None
        signature = Signature(1, key.key_id, TIMESTAMP, inner[7 + length + 8:7 + length + 16])
    expected = Frame(seq, message, signature, inner)
    assert decode_frame(frame[:-1]) == expected
    assert expected.more is more and expected.signed is signed
    for fast in (True, False):
        decoder = Decoder(fast=fast)
        cut = len(frame) // 2
        assert decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]) == [expected]
        assert decoder.frames_seen == decoder.frames_ok == 1 and decoder.frames_bad == 0


def table_line(golden: Golden) -> str:
    frame = encode_frame(golden.message, golden.seq, signer_for(golden.key), golden.more)
    return f"{golden.label:28} {frame.hex()}"


def golden_frames() -> dict[str, bytes]:
    """FRAMES as {label: frame bytes}, in table order."""
    table: dict[str, bytes] = {}
    for line in FRAMES.strip().splitlines():
        label, frame_hex = line.rsplit(None, 1)
        table[label.strip()] = bytes.fromhex(frame_hex)
    return table


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda x: x.label.replace(" ", "-"))
def test_golden_frame(golden: Golden) -> None:
    common(golden.message, golden.seq, golden_frames()[golden.label], golden.key, golden.more)


def test_the_frame_table_lists_the_messages_in_order() -> None:
    assert list(golden_frames()) == [x.label for x in GOLDEN]


def test_the_table_covers_every_message() -> None:
    covered = {type(x.message).__name__ for x in GOLDEN}
    assert covered == set(m.BY_NAME), sorted(set(m.BY_NAME) - covered)


def test_the_hot_messages_are_in_the_table_with_their_fast_path() -> None:
    fast = {type(x.message).__name__ for x in GOLDEN if type(x.message).MSG_ID in FAST_CODECS}
    assert {"Telemetry", "Ack", "StatusReport"} <= fast


if __name__ == "__main__":  # print the frame table for the messages above (review the diff before pasting)
    print("\n".join(table_line(golden) for golden in GOLDEN))
