"""The qemu-m3 firmware's pure C parts, built natively and checked against the Python reference.

tests/rigs/c/fw_driver.c links rigs/qemu-m3's cobs, crc32, sha256, hmac, frame and device
sources (with ASan and UBSan when gcc has them) and answers one line per command on stdin.
Each part is compared with what the project's Python does for the same input: the cobs package,
zlib, hashlib/hmac (and RFC 4231's vectors), protocol.framing and hil.device.EmulatedDevice.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import subprocess
import zlib

import pytest
from cobs.cobs import DecodeError, decode as cobs_decode, encode as cobs_encode

from firmware_build import build_driver
from hil.device import EmulatedDevice, default_test_keys
from protocol import Decoder, Key, Role, Signer, encode_frame, messages as m
from protocol.enums import NakReason
from protocol.errors import CrcError, LengthError, UnknownMessageError, VersionError
from protocol.framing import decode_inner, encode_payload, frame_bytes
from protocol.messages import CATALOGUE

CLINICIAN, PATIENT = default_test_keys()
HOUR = 3600 * 32768


class Driver:
    """The native driver as a line-by-line service."""

    def __init__(self, path) -> None:
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)

    def ask(self, *words: object) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the driver died (exit {self.proc.poll()}): a sanitizer report is on stderr"
        return line.rstrip("\n")

    def bytes_of(self, *words: object) -> bytes:
        answer = self.ask(*words)
        return b"" if answer == "-" else bytes.fromhex(answer)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def hx(data: bytes) -> str:
    return data.hex() or "-"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = Driver(build_driver(tmp_path_factory.mktemp("fw_native")))
    yield d
    d.close()
    assert d.proc.returncode == 0


# ---- COBS -----------------------------------------------------------------------------------------

def _cobs_cases() -> list[bytes]:
    rng = random.Random(10)
    cases = [b"", b"\x00", b"\x00\x00", b"\x01", b"a\x00b", b"\x00" * 300]
    for n in (253, 254, 255, 256, 508, 509, 1051):
        cases.append(bytes(rng.randrange(1, 256) for _ in range(n)))            # long runs without a zero
        cases.append(bytes(rng.randrange(1, 256) for _ in range(n)) + b"\x00")
        cases.append(b"\x00" + bytes(rng.randrange(1, 256) for _ in range(n)))
    for _ in range(40):
        cases.append(bytes(rng.choice((0, rng.randrange(256))) for _ in range(rng.randrange(1, 700))))
    return cases


def test_cobs_encodes_as_the_cobs_package_and_round_trips(driver):
    for data in _cobs_cases():
        encoded = driver.bytes_of("cobs_enc", hx(data))
        assert encoded == cobs_encode(data), f"{len(data)} bytes"
        assert 0 not in encoded
        assert driver.bytes_of("cobs_dec", hx(encoded)) == data


def test_cobs_254_and_255_byte_runs(driver):
    run = bytes(range(1, 255))                     # 254 non-zero bytes: exactly one full block
    assert driver.bytes_of("cobs_enc", run.hex()) == b"\xff" + run
    assert driver.bytes_of("cobs_enc", (run + b"\x01").hex()) == b"\xff" + run + b"\x02\x01"
    assert driver.bytes_of("cobs_enc", (run + b"\x00").hex()) == b"\xff" + run + b"\x01\x01"
    assert driver.bytes_of("cobs_dec", (b"\xff" + run).hex()) == run


def test_cobs_decode_refuses_what_the_cobs_package_refuses(driver):
    rng = random.Random(11)
    cases = [b"\x05\x01", b"\x02", b"\xff" + b"\x01" * 253, b"\x03\x00\x01", b"\x01\x00", b"\x02a\x01"]
    cases += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    for data in cases:
        try:
            expected = cobs_decode(data).hex() or "-"
        except DecodeError:
            expected = "error"
        assert driver.ask("cobs_dec", hx(data)) == expected, data.hex()


# ---- CRC, SHA-256, HMAC -------------------------------------------------------------------------------

def test_crc32_check_value_and_zlib(driver):
    assert driver.ask("crc", b"123456789".hex()) == "cbf43926"
    rng = random.Random(12)
    for n in (0, 1, 7, 64, 1051):
        data = rng.randbytes(n)
        assert int(driver.ask("crc", hx(data)), 16) == zlib.crc32(data)
    framed = b"header and payload"
    framed += zlib.crc32(framed).to_bytes(4, "little")
    assert driver.ask("crc", framed.hex()) == "2144df1c"   # the residue of a good frame


def test_sha256_against_hashlib(driver):
    assert driver.ask("sha", b"abc".hex()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert driver.ask("sha", "-") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    rng = random.Random(13)
    for n in (1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4000):
        data = rng.randbytes(n)
        assert driver.ask("sha", data.hex()) == hashlib.sha256(data).hexdigest(), n


RFC4231 = [   # (key, data, HMAC-SHA256) of RFC 4231 section 4, test cases 1-7 (5: first 128 bits)
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. The key "
     b"needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("case", range(1, 8))
def test_hmac_sha256_rfc4231(driver, case):
    key, data, expected = RFC4231[case - 1]
    mac = driver.ask("hmac", key.hex(), data.hex())
    assert mac.startswith(expected)
    assert mac == hmac.new(key, data, hashlib.sha256).hexdigest()


def test_hmac_with_64_byte_and_empty_keys(driver):
    for key in (b"k" * 64, b"k" * 65, b"\x00" * 32):
        data = b"ithil" * 40
        assert driver.ask("hmac", key.hex(), data.hex()) == hmac.new(key, data, hashlib.sha256).hexdigest()


# ---- frames ---------------------------------------------------------------------------------------

def _fixed_signer(key: Key, link_id: int = 3, stamp: int = 123_456_789) -> Signer:
    return Signer(key, link_id, clock=lambda: stamp)


FRAME_CASES = [
    (m.Hello(1, 1, "ithil PumpClient"), 1, None, 0),
    (m.GetStatus(), 0xBEEF, PATIENT, 0),
    (m.AdvanceTime(HOUR), 7, CLINICIAN, 0),
    (m.AdvanceTime(2**64 - 1), 0xFFFF, CLINICIAN, 0),
    (m.Ack(0x70), 9, None, 2),
    (m.Nak(0x10, NakReason.UNSIGNED, "", "", "x" * 255), 0, None, 0),
    (m.ProgramFlex(tuple((i * 1800 * 32768, 1000 + i) for i in range(48))), 300, CLINICIAN, 0),
]


@pytest.mark.parametrize("index", range(len(FRAME_CASES)))
def test_frame_build_equals_protocol_framing(driver, index):
    message, seq, key, flags = FRAME_CASES[index]
    payload = encode_payload(message)
    msg_id = type(message).SPEC.msg_id
    expected = frame_bytes(msg_id, payload, seq, _fixed_signer(key) if key else None, flags=flags)
    words = ["build", 1, flags, seq, msg_id, hx(payload)]
    if key is not None:
        words += [key.secret.hex(), 3, key.key_id, 123_456_789]
    assert driver.bytes_of(*words) == expected


@pytest.mark.parametrize("index", range(len(FRAME_CASES)))
def test_frame_parse_reads_what_protocol_framing_reads(driver, index):
    message, seq, key, flags = FRAME_CASES[index]
    signer = _fixed_signer(key) if key else None
    encoded = frame_bytes(type(message).SPEC.msg_id, encode_payload(message), seq, signer, flags=flags)
    frame = Decoder().feed(encoded)[0]
    fields = driver.ask("parse", encoded[:-1].hex()).split(" ")
    length = frame.inner[5] | frame.inner[6] << 8
    sig = frame.signature
    assert fields[:8] == ["0", str(frame.seq), str(type(message).SPEC.msg_id), str(length), str(int(sig is not None)),
                          str(sig.link_id if sig else 0), str(sig.key_id if sig else 0),
                          str(sig.timestamp_10us if sig else 0)]
    assert fields[8] == hx(frame.inner[7:7 + length])
    assert fields[9] == (sig.mac.hex() if sig else "-")


def _inner(msg_id: int, payload: bytes, seq: int = 5, version: int = 1, flags: int = 0) -> bytearray:
    return bytearray(cobs_decode(frame_bytes(msg_id, payload, seq, version=version, flags=flags)[:-1]))


def _with_crc(body: bytes) -> bytes:
    return bytes(body[:-4]) + zlib.crc32(bytes(body[:-4])).to_bytes(4, "little")


def _bad_frames() -> list[tuple[str, bytes]]:
    good = _inner(0x10, b"")
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x55
    long_len = bytearray(good)
    long_len[5] = 3
    return [
        ("crc", bytes(bad_crc)),
        ("version", bytes(_inner(0x10, b"", version=2))),
        ("flags", bytes(_inner(0x10, b"", flags=0x04))),
        ("length", _with_crc(long_len)),
        ("unknown", bytes(_inner(0x99, b"abc"))),
        ("size", bytes(_inner(0x10, b"\x01"))),
        ("short", b"\x01\x00\x05\x00\x10\x00\x00\x00\x00\x00"),
        ("signed_short", bytes(_inner(0x10, b"", flags=0x01))),
    ]


STATUS_OF = {CrcError: 3, VersionError: 4, LengthError: 5, UnknownMessageError: 6}


@pytest.mark.parametrize("name,inner", _bad_frames(), ids=[n for n, _ in _bad_frames()])
def test_frame_parse_refuses_as_decode_inner(driver, name, inner):
    with pytest.raises(Exception) as caught:
        decode_inner(inner)
    status = STATUS_OF[type(caught.value)]
    if status == 5 and len(inner) < 11:
        status = 2   # too short to hold a header: no Nak
    assert driver.ask("parse", cobs_encode(inner).hex()).split(" ")[0] == str(status)


def test_catalogue_equals_protocol_messages(driver):
    lines = []
    while True:
        line = driver.ask("catalogue") if not lines else driver.proc.stdout.readline().rstrip("\n")
        if line == "end":
            break
        lines.append(line)
    table = {int(w[0]): (int(w[1]), int(w[2]), int(w[3]), int(w[4]), w[5]) for w in (ln.split(" ") for ln in lines)}
    expected = {i: (-1 if s.info.size is None else s.info.size, int(s.access), int(s.test_mode),
                    int(s.direction.name == "TO_PUMP"), s.name) for i, s in CATALOGUE.items()}
    assert table == expected


# ---- the device against hil.device.EmulatedDevice ---------------------------------------------------

class Pair:
    """The C device (through the driver) and the emulated device, fed the same bytes."""

    def __init__(self, driver: Driver) -> None:
        assert driver.ask("reset", 1) == "ok"
        self.driver = driver
        # the firmware's period: a Telemetry frame every 15 min of pump time (device.h TELEMETRY_PERIOD_TICKS)
        self.emulator = EmulatedDevice(test_mode=True, telemetry_period_ticks=900 * 32768)
        self.clinician = Signer(CLINICIAN, 0, clock=iter(range(1000, 10**9, 10)).__next__)
        self.patient = Signer(PATIENT, 0, clock=iter(range(1000, 10**9, 10)).__next__)

    def feed(self, data: bytes) -> tuple[list, list]:
        ours = Decoder().feed(self.driver.bytes_of("feed", hx(data)))
        theirs = Decoder().feed(self.emulator.receive(data))
        return ours, theirs

    def state(self) -> list[int]:
        return [int(x) for x in self.driver.ask("state").split(" ")]


def _same_answers(ours, theirs) -> None:
    assert [(f.seq, type(f.message)) for f in ours] == [(f.seq, type(f.message)) for f in theirs]
    for a, b in zip(ours, theirs):
        if isinstance(a.message, m.Nak):
            assert (a.message.command_id, a.message.reason) == (b.message.command_id, b.message.reason)
        elif isinstance(a.message, m.HelloReply):
            assert a.message._replace(firmware="", serial_number=0) == b.message._replace(firmware="", serial_number=0)
            assert a.message.firmware == "ithil-qemu-m3 0.1.0"
        else:
            assert a.message == b.message
            assert a.inner == b.inner


def test_device_hello_status_and_advance_time_as_the_emulator(driver):
    p = Pair(driver)
    _same_answers(*p.feed(encode_frame(m.Hello(1, 1, "test"), 100)))
    _same_answers(*p.feed(encode_frame(m.GetStatus(), 101, p.patient)))
    _same_answers(*p.feed(encode_frame(m.AdvanceTime(HOUR), 102, p.clinician)))
    ours, theirs = p.feed(encode_frame(m.GetStatus(), 103, p.clinician))
    _same_answers(ours, theirs)
    assert ours[0].message.tick == HOUR
    _same_answers(*p.feed(encode_frame(m.Interrogate(), 104, p.patient)))
    _same_answers(*p.feed(encode_frame(m.AdvanceTime(HOUR - 1), 105, p.clinician)))  # LIMIT_EXCEEDED
    _same_answers(*p.feed(encode_frame(m.Hello(2, 3, "future"), 106)))                 # UNSUPPORTED_VERSION
    assert p.state()[0] == HOUR


def test_device_refusals_as_the_emulator(driver):
    p = Pair(driver)
    stranger = Key(CLINICIAN.key_id, hashlib.sha256(b"not the test key").digest(), Role.CLINICIAN)
    unknown = Key(9, CLINICIAN.secret, Role.CLINICIAN)
    bad_crc = bytearray(cobs_decode(encode_frame(m.GetStatus(), 7)[:-1]))
    bad_crc[-2] ^= 1
    cases = [
        encode_frame(m.GetStatus(), 1),                                       # UNSIGNED
        encode_frame(m.AdvanceTime(5), 2),                                    # UNSIGNED
        encode_frame(m.AdvanceTime(5), 3, Signer(stranger, 0, clock=lambda: 10**6)),   # BAD_SIGNATURE
        encode_frame(m.AdvanceTime(5), 4, Signer(unknown, 0, clock=lambda: 10**6)),    # BAD_SIGNATURE
        encode_frame(m.AdvanceTime(5), 5, p.patient),                         # ROLE_NOT_ALLOWED
        cobs_encode(bytes(bad_crc)) + b"\x00",                                # BAD_CRC
        frame_bytes(0x99, b"", 8),                                            # UNKNOWN_ID
        frame_bytes(0x10, b"", 9, version=2),                                 # UNSUPPORTED_VERSION
        frame_bytes(0x10, b"\x00", 10),                                       # MALFORMED (fixed size)
        frame_bytes(0x01, b"\x01\x01\x02\xff\xfe", 11),                       # MALFORMED (bad UTF-8)
        frame_bytes(0x01, b"\x01\x01\x05ab", 12),                             # MALFORMED (short text)
        encode_frame(m.Ack(0x10), 13),                                        # what a pump sends: ignored
        b"\x00\x00",                                                          # empty frames: ignored
        b"\x05\x01\x00",                                                      # not COBS: no answer
        b"\x02\x01\x00",                                                      # too short: no answer
    ]
    for data in cases:
        ours, theirs = p.feed(data)
        _same_answers(ours, theirs)
    # replayed timestamp on a new command
    _same_answers(*p.feed(encode_frame(m.AdvanceTime(5), 19, p.clinician)))   # Ack: the link is now at 1000+
    old = Signer(CLINICIAN, 0, clock=lambda: 5)
    _same_answers(*p.feed(encode_frame(m.AdvanceTime(5), 20, old)))   # REPLAY (the clinician link is past 5)
    naks = p.state()[13:]
    assert naks[NakReason.UNSIGNED - 1] == 2 and naks[NakReason.BAD_SIGNATURE - 1] == 2
    assert naks[NakReason.REPLAY - 1] == 1 and naks[NakReason.ROLE_NOT_ALLOWED - 1] == 1
    assert naks[NakReason.BAD_CRC - 1] == 1 and naks[NakReason.MALFORMED - 1] == 3


def test_device_answers_a_repeated_seq_from_its_window(driver):
    p = Pair(driver)
    p.feed(encode_frame(m.Hello(1, 1, "test"), 500))
    first = encode_frame(m.AdvanceTime(HOUR), 501, p.clinician)
    ours1, theirs1 = p.feed(first)
    retry = encode_frame(m.AdvanceTime(HOUR), 501, p.clinician)        # same seq, a new signature
    ours2, theirs2 = p.feed(retry)
    ours3, theirs3 = p.feed(first)                                      # an exact copy on the line
    for ours, theirs in ((ours1, theirs1), (ours2, theirs2), (ours3, theirs3)):
        _same_answers(ours, theirs)
    answer = [[f for f in ours if not isinstance(f.message, m.Telemetry)] for ours in (ours1, ours2, ours3)]
    assert len(ours1) == 1 + 4 and all(len(a) == 1 for a in answer)   # the hour's telemetry went out once
    assert answer[0][0].inner == answer[1][0].inner == answer[2][0].inner
    state = p.state()
    assert state[0] == HOUR and state[4] == 2           # tick, repeats
    # same seq, another payload: a new command
    ours, theirs = p.feed(encode_frame(m.AdvanceTime(2 * HOUR), 501, p.clinician))
    _same_answers(ours, theirs)
    assert p.state()[0] == 2 * HOUR
    # a new Hello seq opens a new session: the window is emptied
    p.feed(encode_frame(m.Hello(1, 1, "test"), 600))
    _same_answers(*p.feed(encode_frame(m.AdvanceTime(2 * HOUR), 501, p.clinician)))
    assert p.state()[4] == 2


def test_device_splits_any_chunking_and_drops_overlong_input(driver):
    p = Pair(driver)
    stream = b"".join(encode_frame(m.GetStatus(), s, p.patient) for s in range(1, 4))
    ours, theirs = [], []
    for i in range(0, len(stream), 7):
        a, b = p.feed(stream[i:i + 7])
        ours += a
        theirs += b
    _same_answers(ours, theirs)
    assert len(ours) == 3
    ours, theirs = p.feed(b"\x01" * 1200 + b"\x00" + encode_frame(m.GetStatus(), 9, p.patient))
    _same_answers(ours, theirs)
    assert len(ours) == 1
