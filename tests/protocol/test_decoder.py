"""The streaming decoder: chunking, every bad-frame reason, bounded memory, resynchronisation.

The last test fuzzes it with hypothesis (random bytes, bit flips, truncations, duplications,
bad CRCs ending in zero, stale and replayed signed frames); tests/protocol/fuzz_decoder.py does
the same under atheris for `make fuzz`.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from cobs import cobs
from hypothesis import given, settings, strategies as st

from protocol import messages as m
from protocol.decoder import Decoder
from protocol.enums import NakReason, Role
from protocol.errors import BadFrame
from protocol.framing import MAX_ENCODED_FRAME, MAX_FRAME, Frame, decode_frame, encode_frame, frame_bytes
from protocol.signing import Key, Signer, Verifier
from stream_oracle import chunked, frames_expected

KEY = Key(4, bytes(range(100, 132)), Role.CLINICIAN)
TELEMETRY = m.Telemetry(counter=7, tick=1 << 33, steps=10, reservoir_nl=5_000_000, pressure_pa=1_300,
                        active_alarms=0, battery_used_nc=99)
GOOD = encode_frame(TELEMETRY)


def raw_frame(header: tuple[int, int, int, int, int], payload: bytes, crc: int | None = None) -> bytes:
    """A frame with any header and any CRC (None: the right one)."""
    inner = struct.pack("<BBHBH", *header) + payload
    crc = zlib.crc32(inner) if crc is None else crc
    return cobs.encode(inner + struct.pack("<I", crc)) + b"\x00"


def bad_crc_ending_in_zero(frame: bytes) -> bytes:
    """The frame with a wrong CRC whose last byte is 0x00 (COBS must hide it from the framer)."""
    inner = cobs.decode(frame[:-1])
    crc = bytearray(inner[-4:])
    crc[3] = 0x00
    if bytes(crc) == inner[-4:]:
        crc[0] ^= 0xFF
    return cobs.encode(inner[:-4] + bytes(crc)) + b"\x00"


def feed_all(decoder: Decoder, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        assert decoder.buffered <= MAX_ENCODED_FRAME
    return out


def test_one_byte_at_a_time_gives_the_same_frames() -> None:
    frames = [encode_frame(m.Ack(i), i) for i in range(5)] + [GOOD]
    stream = b"".join(frames)
    decoder = Decoder()
    got = feed_all(decoder, [stream[i:i + 1] for i in range(len(stream))])
    assert [f.message for f in got] == [m.Ack(i) for i in range(5)] + [TELEMETRY]
    assert [f.seq for f in got] == [0, 1, 2, 3, 4, 0]
    assert decoder.frames_seen == decoder.frames_ok == 6


def test_each_bad_frame_is_counted_under_its_reason_with_its_nak() -> None:
    alarm_99 = raw_frame((1, 0, 11, 0x1B, 1), b"\x63")
    cases: list[tuple[bytes, BadFrame, NakReason | None]] = [
        (b"\x05\x01\x00", BadFrame.COBS, None),
        (cobs.encode(b"\x01\x00\x00") + b"\x00", BadFrame.LENGTH, None),
        (b"\x01" * (MAX_ENCODED_FRAME + 1) + b"\x00", BadFrame.LENGTH, None),
        (cobs.encode(bytes(MAX_FRAME + 1)) + b"\x00", BadFrame.LENGTH, None),
        (raw_frame((1, 0, 3, 0x40, 1), b"\x12", crc=0xDEADBEEF), BadFrame.CRC, NakReason.BAD_CRC),
        (raw_frame((2, 0, 4, 0x40, 1), b"\x12"), BadFrame.VERSION, NakReason.UNSUPPORTED_VERSION),
        (raw_frame((1, 0x80, 5, 0x40, 1), b"\x12"), BadFrame.VERSION, NakReason.UNSUPPORTED_VERSION),
        (raw_frame((1, 0, 6, 0x40, 2), b"\x12"), BadFrame.LENGTH, NakReason.MALFORMED),
        (raw_frame((1, 0, 7, 0x99, 1), b"\x12"), BadFrame.UNKNOWN_ID, NakReason.UNKNOWN_ID),
        (raw_frame((1, 0, 8, 0x50, 39), bytes(39)), BadFrame.LENGTH, NakReason.MALFORMED),
        (alarm_99, BadFrame.PAYLOAD, NakReason.MALFORMED),
        (raw_frame((1, 0, 12, 0x44, 4), b"\x02\x02\xff\xfe"), BadFrame.PAYLOAD, NakReason.MALFORMED),
        (raw_frame((1, 0, 13, 0x44, 4), b"\x02\x01a!"), BadFrame.PAYLOAD, NakReason.MALFORMED),
        (raw_frame((1, 1, 14, 0x40, 1), b"\x12"), BadFrame.LENGTH, NakReason.MALFORMED),  # signed, no room
    ]
    for fast in (True, False):
        decoder = Decoder(fast=fast)
        for frame, reason, nak in cases:
            before = dict(decoder.counts)
            assert decoder.feed(frame) == []
            assert decoder.counts[reason] == before[reason] + 1, (frame, reason)
            assert decoder.rejections[-1].reason is reason and decoder.rejections[-1].nak is nak
        assert decoder.feed(GOOD) == [decode_frame(GOOD[:-1])]
        assert decoder.frames_seen == len(cases) + 1 == decoder.frames_ok + decoder.frames_bad
    seqs = [r.seq for r in decoder.rejections if r.nak is not None]
    assert seqs == [3, 4, 5, 6, 7, 8, 11, 12, 13, 14]
    assert "AlarmCode" in decoder.rejections[10].detail and "99" in decoder.rejections[10].detail


def test_a_bad_crc_that_ends_in_zero_is_one_crc_error_and_the_next_frame_survives() -> None:
    bad = bad_crc_ending_in_zero(GOOD)
    assert bad.count(0) == 1
    decoder = Decoder()
    assert decoder.feed(bad + GOOD) == [decode_frame(GOOD[:-1])]
    assert decoder.counts[BadFrame.CRC] == 1 and decoder.frames_seen == 2


def test_garbage_without_a_zero_cannot_grow_memory_and_the_stream_recovers() -> None:
    decoder = Decoder()
    chunk = bytes(range(1, 256)) * 64  # no zero byte
    for _ in range(100):  # 1.6 MB
        assert decoder.feed(chunk) == []
        assert decoder.buffered <= MAX_ENCODED_FRAME
    assert decoder.counts[BadFrame.LENGTH] == 1 and decoder.frames_seen == 1
    assert decoder.feed(b"garbage\x00" + GOOD) == [decode_frame(GOOD[:-1])]
    assert decoder.frames_seen == 2 == decoder.frames_ok + decoder.frames_bad


def test_a_valid_frame_after_garbage_and_a_zero_is_decoded() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x13\x37\x42\x99\x00" + GOOD) == [decode_frame(GOOD[:-1])]
    assert decoder.frames_bad == 1


def test_empty_frames_are_not_frames() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x00\x00" + GOOD + b"\x00") == [decode_frame(GOOD[:-1])]
    assert decoder.frames_seen == 1 and decoder.frames_bad == 0


def test_rejections_keep_the_newest_and_counts_keep_all() -> None:
    decoder = Decoder(max_rejections=3)
    decoder.feed(b"\x05\x01\x00" * 10)
    assert decoder.counts[BadFrame.COBS] == 10 and len(decoder.rejections) == 3


def test_the_more_flag_is_read_and_takes_the_construct_path_alike() -> None:
    frames = encode_frame(m.Ack(0x15), 9, more=True) + encode_frame(m.BolusGranted(1, 2, 500), 9)
    for fast in (True, False):
        got = Decoder(fast=fast).feed(frames)
        assert [(f.seq, f.more) for f in got] == [(9, True), (9, False)]


def test_frame_bytes_checks_its_header() -> None:
    import pytest

    from protocol.errors import EncodeError
    with pytest.raises(EncodeError, match="seq = 70000"):
        frame_bytes(0x40, b"\x01", seq=70000)
    with pytest.raises(EncodeError, match="payload of 1025 bytes"):
        frame_bytes(0x40, bytes(1025))


# ---- fuzzing ---------------------------------------------------------------------------------------

def signed_pool() -> list[bytes]:
    """Signed programming frames with rising timestamps (out of order: stale; twice: replayed)."""
    signer = Signer(KEY, link_id=2, clock=lambda: 0)
    return [encode_frame(m.ProgramContinuous(100_000 + i), 100 + i, signer) for i in range(4)]


POOL = [GOOD, encode_frame(m.Ack(0x12), 3), encode_frame(m.StatusReport(
    5, m.Mode.FLEX, "baclofen", 2_000, 1, 2, 3, 4, 5, 6, None, (m.AlarmCode.RESERVOIR_LOW,), None, False, False,
    False, 70, False, False, None), 8), *signed_pool()]
VALID_INNERS = {cobs.decode(f[:-1]) for f in POOL}
SENTINEL = encode_frame(m.Telemetry(0xFFFFFFFF, 1, 2, 3, 4, 5, 6))


def _segment(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["garbage", "frame", "flip", "truncate", "duplicate", "badcrc"]))
    if kind == "garbage":
        return draw(st.binary(max_size=80))
    frame = draw(st.sampled_from(POOL))
    if kind == "frame":
        return frame
    if kind == "duplicate":
        return frame + frame
    if kind == "badcrc":
        return bad_crc_ending_in_zero(frame)
    if kind == "truncate":
        return frame[:draw(st.integers(0, len(frame) - 1))]
    flipped = bytearray(frame)
    bit = draw(st.integers(0, 8 * len(frame) - 1))
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@st.composite
def streams(draw: Any) -> tuple[bytes, list[int]]:
    stream = b"".join(_segment(draw) for _ in range(draw(st.integers(0, 12))))
    if draw(st.booleans()):
        stream += b"\x01" * draw(st.integers(MAX_ENCODED_FRAME - 8, MAX_ENCODED_FRAME + 8))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, cuts


@settings(max_examples=400, deadline=None)
@given(streams())
def test_fuzz_no_exception_counts_add_up_and_a_valid_frame_after_garbage_is_decoded(
        case: tuple[bytes, list[int]]) -> None:
    stream, cuts = case
    chunks = chunked(stream, cuts)
    expected_seen = frames_expected(stream)
    outcomes = []
    for fast in (True, False):
        decoder = Decoder(verifier=Verifier([KEY]), fast=fast)
        frames = feed_all(decoder, chunks)
        assert decoder.frames_seen == expected_seen
        assert decoder.frames_seen == decoder.frames_ok + sum(decoder.counts.values())
        assert all(f.inner in VALID_INNERS for f in frames)
        last = feed_all(decoder, [b"\x00", SENTINEL])  # the zero may also end a frame cut short of its own
        assert last[-1] == decode_frame(SENTINEL[:-1]) and all(f.inner in VALID_INNERS for f in last[:-1])
        outcomes.append((frames, dict(decoder.counts)))
    assert outcomes[0] == outcomes[1]
