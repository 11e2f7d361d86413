"""The event log: fixed-size binary records in a ring, as a firmware keeps them in flash.

A record is 32 bytes, little-endian: sequence number (u32), tick (u64), code (u16), aux (u16),
a 12-byte payload (three i32 arguments, or a chunk of a blob), two reserved bytes (0xFFFF,
erased flash) and a CRC-16/IBM-3740 (`binascii.crc_hqx` seeded with 0xFFFF; check value 0x29B1
for b"123456789") over the first 30 bytes. Blobs (logged commands, state checkpoints) span
consecutive records: aux holds the chunk index, bit 15 marks the last chunk, and the blob
starts with its length as a varint. When the ring is full the oldest record is overwritten and
counted. The log is what survives a reset (SR-25, domain.md §4.5; items from domain.md §6).
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass
from typing import Iterator

from .codec import length_prefixed, strip_length_prefix
from .errors import StateError

RECORD = struct.Struct("<IQHH12sH")
RECORD_SIZE = RECORD.size + 2  # + CRC
assert RECORD_SIZE == 32
ARGS = struct.Struct("<iii")
_CRC = struct.Struct("<H")
CRC_INIT = 0xFFFF
LAST_CHUNK = 0x8000
DEFAULT_CAPACITY = 8192  # 256 KiB of flash [D]
_HEADER = struct.Struct("<III")  # capacity, next sequence number, overwritten count


def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 (a.k.a. CCITT-FALSE): poly 0x1021, init 0xFFFF, check 0x29B1."""
    return binascii.crc_hqx(data, CRC_INIT)


class LogCode(enum.IntEnum):
    """What a record says; args are (a0, a1, a2)."""

    POWER_ON = 1             # a0: 1 after a reset rebuilt from the log
    CHECKPOINT = 2           # blob: the controller's state
    COMMAND = 3              # blob: an accepted command, replayed on rebuild
    PROGRAM_CHANGED = 10     # a0 mode before, a1 mode after, a2 basal nL/day after (0 for flex)
    SOFT_LIMIT = 11          # a0 drug index, a1 value (ng/day), a2 soft limit (ng/day)
    REFILL = 12              # a0 expected residual nL, a1 measured residual nL, a2 injected nL
    DRUG_CHANGED = 13        # a0 drug index, a1 concentration µg/mL, a2 path volume of old drug nL
    CLOCK_SET = 14           # a0 old offset s, a1 new offset s
    BOLUS_STARTED = 20       # a0 kind, a1 steps, a2 increment
    BOLUS_COMPLETED = 21     # a0 kind, a1 steps delivered
    BOLUS_HALTED = 22        # a0 kind, a1 steps delivered, a2 steps not delivered
    PATIENT_BOLUS_GRANTED = 23   # a0 steps, a1 granted today (rolling 24 h)
    PATIENT_BOLUS_DENIED = 24    # a0 reason
    ALARM_ON = 30            # a0 alarm code, a1 priority
    ALARM_OFF = 31           # a0 alarm code
    ALARM_ACK = 32           # a0 alarm code
    ALARM_TONE = 33          # a0 alarm code, a1 priority (reported by advance, never logged)
    DELIVERY_STOPPED = 40    # a0 reason (alarm code)
    DELIVERY_RESUMED = 41
    STALL = 50               # a0 commanded steps not achieved
    STALL_RECOVERED = 51     # a0 seconds from the stall to the detected recovery
    OCCLUSION_DETECTED = 52  # a0 rule, a1 pressure Pa, a2 steps since delivery (re)started
    TELEMETRY_MODE = 53      # a0 1 on / 0 off (EMI), a1 1 when it latched delivery off
    INTERROGATION = 54       # a0 1 when it released the telemetry latch
    OUTLET_RELEASE = 55      # a0 nL released when an occlusion cleared (the plant's report, never logged)
    BATTERY_DRAIN = 56       # a0 mC drawn by a battery fault beyond the model's budget


@dataclass(frozen=True)
class Record:
    """One decoded record."""

    seq: int
    tick: int
    code: LogCode
    aux: int
    payload: bytes

    @property
    def args(self) -> tuple[int, int, int]:
        return ARGS.unpack(self.payload)

    def pack(self) -> bytes:
        body = RECORD.pack(self.seq, self.tick, int(self.code), self.aux, self.payload, 0xFFFF)
        return body + _CRC.pack(crc16(body))

    @classmethod
    def unpack(cls, raw: bytes) -> "Record":
        if len(raw) != RECORD_SIZE:
            raise StateError(f"a log record is {RECORD_SIZE} bytes, got {len(raw)}")
        body, (crc,) = raw[:-2], _CRC.unpack(raw[-2:])
        if crc16(body) != crc:
            raise StateError(f"log record CRC mismatch: stored {crc:#06x}, computed {crc16(body):#06x}")
        seq, tick, code, aux, payload, _ = RECORD.unpack(body)
        try:
            log_code = LogCode(code)
        except ValueError:
            raise StateError(f"log record {seq} has unknown code {code}") from None
        return cls(seq, tick, log_code, aux, payload)


class EventLog:
    """A ring of records; `append` never fails, the oldest record gives way."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 64:
            raise ValueError(f"log capacity = {capacity}: expected at least 64 records")
        self.capacity = capacity
        self.next_seq = 0
        self.overwritten = 0
        self._ring = bytearray(b"\xff" * (capacity * RECORD_SIZE))
        self._view = memoryview(self._ring)

    def __len__(self) -> int:
        return min(self.next_seq, self.capacity)

    def append(self, tick: int, code: LogCode, a0: int = 0, a1: int = 0, a2: int = 0, aux: int = 0) -> Record:
        return self._write(tick, code, aux, ARGS.pack(a0, a1, a2))

    def append_blob(self, tick: int, code: LogCode, blob: bytes) -> None:
        """Write a blob over as many records as it needs."""
        data = length_prefixed(blob)
        chunks = [data[i:i + 12] for i in range(0, len(data), 12)]
        for i, chunk in enumerate(chunks):
            aux = i | (LAST_CHUNK if i == len(chunks) - 1 else 0)
            self._write(tick, code, aux, chunk.ljust(12, b"\x00"))

    def _write(self, tick: int, code: LogCode, aux: int, payload: bytes) -> Record:
        seq = self.next_seq & 0xFFFFFFFF
        offset = (self.next_seq % self.capacity) * RECORD_SIZE
        if self.next_seq >= self.capacity:
            self.overwritten += 1
        ring = self._ring
        RECORD.pack_into(ring, offset, seq, tick, code, aux, payload, 0xFFFF)
        _CRC.pack_into(ring, offset + RECORD.size, crc16(self._view[offset:offset + RECORD.size]))
        self.next_seq += 1
        return Record(seq, tick, code, aux, payload)

    def raw_records(self) -> bytes:
        """The records held, oldest first, as they sit in flash."""
        n = len(self)
        if self.next_seq <= self.capacity:
            return bytes(self._ring[:n * RECORD_SIZE])
        cut = (self.next_seq % self.capacity) * RECORD_SIZE
        return bytes(self._ring[cut:] + self._ring[:cut])

    def records(self) -> Iterator[Record]:
        """The records held, oldest first (each CRC-checked)."""
        raw = self.raw_records()
        for i in range(0, len(raw), RECORD_SIZE):
            yield Record.unpack(raw[i:i + RECORD_SIZE])

    def to_bytes(self) -> bytes:
        return _HEADER.pack(self.capacity, self.next_seq, self.overwritten) + bytes(self._ring)

    @classmethod
    def from_bytes(cls, data: bytes) -> "EventLog":
        if len(data) < _HEADER.size:
            raise StateError("event log image too short for its header")
        capacity, next_seq, overwritten = _HEADER.unpack_from(data)
        if len(data) != _HEADER.size + capacity * RECORD_SIZE:
            raise StateError(f"event log image is {len(data)} bytes; expected {_HEADER.size + capacity * RECORD_SIZE} for {capacity} records")
        log = cls(capacity)
        log.next_seq, log.overwritten = next_seq, overwritten
        log._ring[:] = data[_HEADER.size:]
        return log


def blobs(records: list[Record], code: LogCode) -> Iterator[tuple[int, Record, bytes]]:
    """Reassemble the complete blobs of one code: (index of the first record, it, the bytes).

    A blob whose start was overwritten by the ring is skipped.
    """
    start, parts = None, []
    for i, rec in enumerate(records):
        if rec.code != code:
            continue
        index = rec.aux & ~LAST_CHUNK
        if index == 0:
            start, parts = i, [rec.payload]
        elif start is not None and index == len(parts):
            parts.append(rec.payload)
        else:
            start, parts = None, []
            continue
        if rec.aux & LAST_CHUNK and start is not None:
            data = strip_length_prefix(b"".join(parts))
            yield start, records[start], data
            start, parts = None, []
