"""The streaming decoder: bytes in any chunking in, frames out, every bad frame counted.

`Decoder.feed(data)` splits on the 0x00 delimiter, keeps the unfinished tail for the next call
and returns the good frames. Nothing raises out of it: each bad frame is counted under its
`BadFrame` reason and recorded (with the NAK a pump answers it with) in `rejections`, a bounded
queue the pump drains. Input without a zero byte never holds more than `MAX_ENCODED_FRAME`
bytes: past that the tail is dropped, counted once as a LENGTH error, and the rest up to the next
zero is skipped. Empty frames (two delimiters in a row, a sender's way to flush) are not frames.

Invariant: `frames_seen == frames_ok + sum(counts.values())`.

With `fast=True` (default) a frame of a message with a struct codec (fastpath.py), of exactly
its size, version 1, and no flag but possibly "signed", is decoded by struct after the CRC check
(its signature block too, then verified as any other); every other frame, and every frame with
`fast=False`, goes through `framing.decode_inner` (construct). Both give the same frames and the
same counts (tests/protocol prove it on random streams, signed frames included).
"""

from __future__ import annotations

import collections
import struct
import zlib
from typing import NamedTuple, Protocol

from .crc import CRC_SIZE, GOOD_FRAME_CRC
from .enums import Access, NakReason, Role
from .errors import BadFrame, FrameError
from .fastpath import FAST_CODECS
from .framing import (FLAG_SIGNED, HEADER_SIZE, MAX_ENCODED_FRAME, MIN_FRAME, SIGNATURE_SIZE, CobsDecodeError,
                      Frame, Signature, cobs_decode, decode_inner)
from .messages import CATALOGUE, PROTOCOL_VERSION


_SIGNATURE_STRUCT = struct.Struct("<BB6s8s")  # link_id, key_id, 48-bit timestamp, MAC: framing.SIGNATURE
assert _SIGNATURE_STRUCT.size == SIGNATURE_SIZE


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
        # msg_id -> (frame size, payload size, payload unpack_from, message type); only OPEN
        # messages when frames are verified (the others must be signed, so never take this path)
        self._fast_table = {
            msg_id: (HEADER_SIZE + codec.size + CRC_SIZE, codec.size, codec.struct.unpack_from, codec.type)
            for msg_id, codec in FAST_CODECS.items()
            if fast and (verifier is None or CATALOGUE[msg_id].access is Access.OPEN)
        }
        # the same for signed frames of every fast message (the verifier checks them after)
        self._fast_signed_table = {
            msg_id: (HEADER_SIZE + codec.size + SIGNATURE_SIZE + CRC_SIZE, codec.size, codec.struct.unpack_from,
                     codec.type)
            for msg_id, codec in FAST_CODECS.items() if fast
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
        unpack_signature = _SIGNATURE_STRUCT.unpack_from
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
                        link_id, key_id, stamp, mac = unpack_signature(inner, HEADER_SIZE + payload_size)
                        signature = new(Signature, (link_id, key_id, int.from_bytes(stamp, "little"), mac))
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
