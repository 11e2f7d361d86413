"""The event log: CRC-checked 32-byte records in a ring, blobs across records, flash images."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model.errors import StateError
from firmware_model.event_log import (LAST_CHUNK, RECORD_SIZE, EventLog, LogCode, Record, blobs,
                                      crc16)

CODES = st.sampled_from(list(LogCode))
I32 = st.integers(-2**31, 2**31 - 1)


def test_crc16_is_ibm_3740_by_its_check_value() -> None:
    """CRC-16/IBM-3740 (poly 0x1021, init 0xFFFF, no reflection, no xorout): check 0x29B1."""
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"123456789") == binascii.crc_hqx(b"123456789", 0xFFFF)
    assert crc16(b"\x00") != crc16(b"\x00\x00")


def _bitwise_crc(data: bytes) -> int:
    """The catalogue definition, bit by bit, as a second opinion on `binascii`."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@given(st.binary(max_size=64))
def test_crc16_equals_the_bitwise_definition(data: bytes) -> None:
    assert crc16(data) == _bitwise_crc(data)


@given(seq=st.integers(0, 2**32 - 1), tick=st.integers(0, 2**64 - 1), code=CODES,
       aux=st.integers(0, 0xFFFF), payload=st.binary(min_size=12, max_size=12))
def test_record_pack_unpack_round_trip(seq, tick, code, aux, payload) -> None:
    rec = Record(seq, tick, code, aux, payload)
    raw = rec.pack()
    assert len(raw) == RECORD_SIZE == 32
    assert raw[28:30] == b"\xff\xff"  # reserved: erased flash
    assert int.from_bytes(raw[30:], "little") == crc16(raw[:30])
    assert Record.unpack(raw) == rec


@given(a=I32, b=I32, c=I32)
def test_record_args_round_trip(a, b, c) -> None:
    log = EventLog(64)
    rec = log.append(123, LogCode.REFILL, a, b, c)
    assert rec.args == (a, b, c)
    (back,) = list(log.records())
    assert back.args == (a, b, c) and back.tick == 123 and back.code == LogCode.REFILL and back.seq == 0


@settings(max_examples=300)
@given(position=st.integers(0, RECORD_SIZE - 1), flip=st.integers(1, 255))
def test_any_corrupted_byte_raises_state_error(position: int, flip: int) -> None:
    raw = bytearray(Record(7, 2**40 + 3, LogCode.ALARM_ON, 0, bytes(range(12))).pack())
    raw[position] ^= flip
    with pytest.raises(StateError, match="CRC mismatch"):
        Record.unpack(bytes(raw))


def test_wrong_length_and_unknown_code_raise_state_error() -> None:
    raw = Record(1, 2, LogCode.POWER_ON, 0, bytes(12)).pack()
    with pytest.raises(StateError, match="32 bytes, got 31"):
        Record.unpack(raw[:-1])
    # A well-formed record (valid CRC) with a code the catalogue does not know.
    body = bytearray(raw[:30])
    body[12:14] = (999).to_bytes(2, "little")
    forged = bytes(body) + crc16(bytes(body)).to_bytes(2, "little")
    with pytest.raises(StateError, match="unknown code 999"):
        Record.unpack(forged)


def test_a_corrupted_record_in_the_ring_is_reported_on_read() -> None:
    log = EventLog(64)
    for i in range(10):
        log.append(i, LogCode.CLOCK_SET, i)
    image = bytearray(log.to_bytes())
    image[12 + 5 * RECORD_SIZE + 9] ^= 0x40  # a bit of record 5's tick
    broken = EventLog.from_bytes(bytes(image))
    with pytest.raises(StateError):
        list(broken.records())


@pytest.mark.parametrize("capacity, written", [(64, 10), (64, 64), (64, 65), (64, 200), (100, 1234)])
def test_ring_keeps_the_newest_records_in_order(capacity: int, written: int) -> None:
    log = EventLog(capacity)
    for i in range(written):
        log.append(1000 + i, LogCode.CLOCK_SET, i, -i, i * 3)
    records = list(log.records())
    kept = min(written, capacity)
    assert len(log) == len(records) == kept
    assert [r.seq for r in records] == list(range(written - kept, written))
    assert [r.args[0] for r in records] == list(range(written - kept, written))
    assert [r.tick for r in records] == [1000 + i for i in range(written - kept, written)]
    assert log.overwritten == max(0, written - capacity)
    assert log.next_seq == written
    assert len(log.raw_records()) == kept * RECORD_SIZE


def test_capacity_below_64_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        EventLog(63)


def test_flash_image_round_trip_and_bad_images() -> None:
    log = EventLog(64)
    for i in range(150):
        log.append(i, LogCode.ALARM_TONE if i % 2 else LogCode.ALARM_OFF, i)
    log.append_blob(200, LogCode.COMMAND, b"x" * 40)
    image = log.to_bytes()
    back = EventLog.from_bytes(image)
    assert back.to_bytes() == image
    assert list(back.records()) == list(log.records())
    assert (back.capacity, back.next_seq, back.overwritten) == (64, log.next_seq, log.overwritten)
    with pytest.raises(StateError, match="too short"):
        EventLog.from_bytes(image[:5])
    with pytest.raises(StateError, match="expected"):
        EventLog.from_bytes(image[:-1])


@settings(max_examples=200)
@given(payloads=st.lists(st.binary(max_size=80), min_size=1, max_size=6))
def test_blobs_reassemble_across_records(payloads: list[bytes]) -> None:
    log = EventLog(512)
    for i, data in enumerate(payloads):
        log.append(i, LogCode.POWER_ON)            # other records in between are ignored
        log.append_blob(i, LogCode.COMMAND, data)
        log.append_blob(i, LogCode.CHECKPOINT, data[::-1])
    records = list(log.records())
    got = list(blobs(records, LogCode.COMMAND))
    assert [data for _, _, data in got] == payloads
    assert [rec.tick for _, rec, _ in got] == list(range(len(payloads)))
    for index, rec, _ in got:
        assert records[index] is rec and rec.code == LogCode.COMMAND and rec.aux & ~LAST_CHUNK == 0
    assert [data for _, _, data in blobs(records, LogCode.CHECKPOINT)] == [p[::-1] for p in payloads]


def test_blob_chunks_mark_their_index_and_the_last_one() -> None:
    log = EventLog(64)
    log.append_blob(5, LogCode.CHECKPOINT, bytes(range(30)))  # 1 length byte + 30 = 31 bytes: 3 chunks
    recs = list(log.records())
    assert [r.aux for r in recs] == [0, 1, 2 | LAST_CHUNK]
    assert all(r.code == LogCode.CHECKPOINT and r.tick == 5 for r in recs)


def test_a_blob_whose_head_was_overwritten_is_skipped() -> None:
    log = EventLog(64)
    log.append_blob(1, LogCode.CHECKPOINT, bytes(range(100)))  # 101 bytes: 9 records
    for i in range(58):
        log.append(2, LogCode.CLOCK_SET, i)
    log.append_blob(3, LogCode.CHECKPOINT, b"newest")
    records = list(log.records())
    # 9 + 58 + 1 = 68 records: the first four (the blob's head) are gone, its tail remains.
    assert log.overwritten == 4
    assert records[0].code == LogCode.CHECKPOINT and records[0].aux == 4
    found = list(blobs(records, LogCode.CHECKPOINT))
    assert [data for _, _, data in found] == [b"newest"]
    assert found[0][1].tick == 3


def test_an_unfinished_blob_is_not_returned() -> None:
    log = EventLog(64)
    log.append_blob(1, LogCode.COMMAND, b"complete")
    records = list(log.records())
    head = Record(99, 2, LogCode.COMMAND, 0, b"\x20" + b"a" * 11)  # a head without its tail
    assert [d for _, _, d in blobs(records + [head], LogCode.COMMAND)] == [b"complete"]
    restarted = records + [head] + records  # a new head after an unfinished one
    assert [d for _, _, d in blobs(restarted, LogCode.COMMAND)] == [b"complete", b"complete"]
