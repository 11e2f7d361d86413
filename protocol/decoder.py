"""The streaming decoder: bytes in any chunking in, frames out, every bad frame counted.

`Decoder.feed(data)` splits on the 0x00 delimiter, keeps the unfinished tail for the next call
and returns the good frames. Nothing raises out of it: each bad frame is counted under its
`BadFrame` reason and recorded (with the NAK a pump answers it with) in `rejections`, a bounded
queue the pump drains. Input without a zero byte never holds more than `MAX_ENCODED_FRAME`
bytes: past that the tail is dropped, counted once as a LENGTH error, and the rest up to the next
zero is skipped. Empty frames (two delimiters in a row, a sender's way to flush) are not frames.

Invariant: `frames_seen == frames_ok + sum(counts.values())`.

With `fast=True` (default) a frame of version 1, with no flag but possibly "signed", of a message
with a fast codec (fastpath.py) and a payload size within that message's range, is decoded by
the fast codec after the CRC check (its signature block too, then verified as any other): plain
integer payloads by their struct inline, the other flat ones (StatusReport, Nak, ...) by their
generated reader, which must use the payload exactly. A payload the fast codec refuses, every
other frame, and every frame with `fast=False`, go through `framing.decode_inner` (construct),
whose verdict and reason count. Both give the same frames and the same counts (tests/protocol
prove it on random streams and on mutated payloads, signed frames included).
"""

from __future__ import annotations

import collections
import struct
import zlib
from typing import NamedTuple, Protocol

from .crc import CRC_SIZE, GOOD_FRAME_CRC
from .enums import Access, NakReason, Role
from .errors import BadFrame, FrameError
from .fastpath import FAST_CODECS, MALFORMED
from .framing import (FLAG_SIGNED, HEADER_SIZE, MAX_ENCODED_FRAME, MIN_FRAME, SIGNATURE_SIZE, CobsDecodeError,
                      Frame, Signature, cobs_decode, decode_inner)
from .messages import CATALOGUE, PROTOCOL_VERSION


_SIGNATURE_STRUCT = struct.Struct("<BB6s8s")  # link_id, key_id, 48-bit timestamp, MAC: framing.SIGNATURE
assert _SIGNATURE_STRUCT.size == SIGNATURE_SIZE


def _signature_at(inner: bytes, offset: int) -> Signature:
    """The signature block at `offset` of a frame, read by struct (as construct reads SIGNATURE)."""
    link_id, key_id, stamp, mac = _SIGNATURE_STRUCT.unpack_from(inner, offset)
    return tuple.__new__(Signature, (link_id, key_id, int.from_bytes(stamp, "little"), mac))


class Rejection(NamedTuple):
    """A dropped frame: why, the NAK to answer with (None: do not answer), and its header if read."""

    reason: BadFrame
    nak: NakReason | None
    seq: int | None
    msg_id: int | None
    detail: str


class ChecksFrames(Protocol):
    """What the decoder needs of a verifier (signing.Verifier)."""

    def check(self, frame: Frame) -> Role | None: ...


class Decoder:
    """Turns a byte stream into frames; counts and records what it drops."""

    def __init__(self, verifier: ChecksFrames | None = None, fast: bool = True, max_rejections: int = 64) -> None:
        self.verifier = verifier
        self.fast = fast
        self.counts: dict[BadFrame, int] = {reason: 0 for reason in BadFrame}
        self.frames_seen = 0
        self.frames_ok = 0
        self.rejections: collections.deque[Rejection] = collections.deque(maxlen=max_rejections)
        self._pending = b""
        self._skipping = False
        # plain payloads (a struct each): msg_id -> (frame size, payload size, payload unpack_from,
        # message type); only OPEN messages when frames are verified (the others must be signed,
        # so never take this path)
        plain = {msg_id: codec for msg_id, codec in FAST_CODECS.items() if fast and codec.struct is not None}
        self._fast_table = {
            msg_id: (HEADER_SIZE + codec.size + CRC_SIZE, codec.size, codec.struct.unpack_from, codec.type)
            for msg_id, codec in plain.items() if verifier is None or CATALOGUE[msg_id].access is Access.OPEN
        }
        # the same for signed frames of every plain message (the verifier checks them after)
        self._fast_signed_table = {
            msg_id: (HEADER_SIZE + codec.size + SIGNATURE_SIZE + CRC_SIZE, codec.size, codec.struct.unpack_from,
                     codec.type)
            for msg_id, codec in plain.items()
        }
        # the other flat payloads: flags << 8 | msg_id -> (frame bytes besides the payload, least and
        # most payload bytes, unpack_from(inner, start, end)), unsigned (OPEN only when frames are
        # verified, as above) and signed
        self._flat_table = {
            flags << 8 | msg_id: (HEADER_SIZE + CRC_SIZE + (SIGNATURE_SIZE if flags else 0), codec.min_size,
                                  codec.max_size, codec.unpack_from)
            for msg_id, codec in FAST_CODECS.items() if fast and codec.struct is None
            for flags in (0, FLAG_SIGNED)
            if flags or verifier is None or CATALOGUE[msg_id].access is Access.OPEN
        }

    @property
    def frames_bad(self) -> int:
        """Frames dropped, all reasons together."""
        return sum(self.counts.values())

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet ended (never more than MAX_ENCODED_FRAME)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Take the next bytes of the stream; return the frames they complete."""
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._skipping:
            end = data.find(0)
            if end < 0:
                return []
            data = data[end + 1:]
            self._skipping = False
        if self._pending:
            data = self._pending + data
        parts = data.split(b"\x00")
        tail = parts.pop()
        if len(tail) > MAX_ENCODED_FRAME:
            self._pending = b""
            self._skipping = True
            self.frames_seen += 1
            self._reject(BadFrame.LENGTH, None, None, None,
                         f"{len(tail)} bytes without a delimiter; a frame is at most {MAX_ENCODED_FRAME} encoded bytes")
        else:
            self._pending = tail
        if not parts:
            return []

        out: list[Frame] = []
        append = out.append
        self.frames_seen += len(parts) - parts.count(b"")
        fast_get = self._fast_table.get
        fast_signed_get = self._fast_signed_table.get
        flat_get = self._flat_table.get
        signature_at = _signature_at
        new = tuple.__new__
        crc32 = zlib.crc32
        verify = self.verifier.check if self.verifier is not None else None
        for part in parts:
            if not part:
                continue
            if len(part) > MAX_ENCODED_FRAME:
                self._reject(BadFrame.LENGTH, None, None, None,
                             f"frame of {len(part)} encoded bytes: expected at most {MAX_ENCODED_FRAME}")
                continue
            try:
                inner = cobs_decode(part)
            except CobsDecodeError as exc:
                self._reject(BadFrame.COBS, None, None, None, f"not a COBS encoding ({exc})")
                continue
            n = len(inner)
            frame = None
            if n >= MIN_FRAME:
                entry = fast_get(inner[4])
                if entry is not None:
                    size, payload_size, unpack_from, message_type = entry
                    if (n == size and inner[0] == PROTOCOL_VERSION and not inner[1]
                            and inner[5] | inner[6] << 8 == payload_size and crc32(inner) == GOOD_FRAME_CRC):
                        message = new(message_type, unpack_from(inner, HEADER_SIZE))
                        append(new(Frame, (inner[2] | inner[3] << 8, message, None, inner)))
                        continue
                entry = fast_signed_get(inner[4]) if inner[1] == FLAG_SIGNED else None
                if entry is not None:
                    size, payload_size, unpack_from, message_type = entry
                    if (n == size and inner[0] == PROTOCOL_VERSION
                            and inner[5] | inner[6] << 8 == payload_size and crc32(inner) == GOOD_FRAME_CRC):
                        message = new(message_type, unpack_from(inner, HEADER_SIZE))
                        signature = signature_at(inner, HEADER_SIZE + payload_size)
                        frame = new(Frame, (inner[2] | inner[3] << 8, message, signature, inner))
                entry = flat_get(inner[1] << 8 | inner[4]) if frame is None else None
                if entry is not None:
                    overhead, least, most, read = entry
                    length = inner[5] | inner[6] << 8
                    if (least <= length <= most and n == overhead + length and inner[0] == PROTOCOL_VERSION
                            and crc32(inner) == GOOD_FRAME_CRC):
                        try:
                            message = read(inner, HEADER_SIZE, HEADER_SIZE + length)
                        except MALFORMED:
                            pass  # construct reads it below: its verdict and its reason
                        else:
                            signature = signature_at(inner, HEADER_SIZE + length) if inner[1] else None
                            frame = new(Frame, (inner[2] | inner[3] << 8, message, signature, inner))
            try:
                if frame is None:
                    frame = decode_inner(inner)
                if verify is not None:
                    verify(frame)
            except FrameError as exc:
                self._reject(exc.reason, NakReason(exc.nak) if exc.nak is not None else None,
                             exc.seq, exc.msg_id, str(exc))
                continue
            append(frame)
        self.frames_ok += len(out)
        return out

    def _reject(self, reason: BadFrame, nak: NakReason | None, seq: int | None, msg_id: int | None,
                detail: str) -> None:
        self.counts[reason] += 1
        self.rejections.append(Rejection(reason, nak, seq, msg_id, detail))
