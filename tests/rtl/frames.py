"""Byte streams for the UART bench: frames built by protocol/, corruptions, and what the protocol's
own streaming decoder makes of them, mapped to the hardware's frame-check verdicts.

Valid messages are drawn from the catalogue's field descriptions (every message, every field in
range), some signed; other frames carry any id and payload (the CRC is still right, so the
hardware accepts them and the firmware refuses them). Corruptions change, drop or add bytes;
the decoder (protocol.decoder.Decoder) is the oracle for each frame: the hardware checks what
the protocol checks before it trusts a header (COBS, the lengths, the CRC), and leaves to the
firmware what comes after (version, id, length field, payload, signature: a rejection that
carries a NAK).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from protocol import messages
from protocol.decoder import Decoder
from protocol.enums import Role
from protocol.errors import BadFrame
from protocol.fields import random_value
from protocol.framing import MAX_ENCODED_FRAME, cobs_decode, encode_frame, frame_bytes
from protocol.signing import Key, Signer


class Verdict(enum.IntEnum):
    """frame_check's verdict codes (VERDICT_* in frame_check.v)."""

    OK = 0
    COBS = 1
    LENGTH = 2
    CRC = 3
    UART = 4


@dataclass(frozen=True)
class Judged:
    """One frame as the hardware must judge it: its verdict, its bytes when accepted, and how many
    bytes of the stream have arrived when it is judged (at its delimiter, or at the first byte
    past MAX_ENCODED_FRAME, as the decoder drops an overlong tail)."""

    verdict: Verdict
    inner: bytes | None
    at_byte: int


def random_frame(rng: random.Random, signer: Signer) -> bytes:
    """A frame as protocol/ builds it: a catalogue message (a third of them signed), or any id
    and payload up to the largest (1,024 bytes)."""
    seq = rng.randrange(1 << 16)
    if rng.random() < 0.8:
        spec = rng.choice(list(messages.CATALOGUE.values()))
        return encode_frame(random_value(spec.info, rng), seq, signer if rng.random() < 0.33 else None)
    size = rng.choice([0, rng.randint(0, 64), rng.randint(0, 300), messages.MAX_PAYLOAD])
    return frame_bytes(rng.randrange(256), rng.randbytes(size), seq)


def corrupt(rng: random.Random, frame: bytes) -> bytes:
    """The frame with a byte flipped, dropped, added or duplicated, or its end cut off."""
    body = bytearray(frame[:-1])
    where = rng.randrange(len(body))
    op = rng.randrange(5)
    if op == 0:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(body))
            body[i] ^= 1 << rng.randrange(8)  # may make a zero: then two frames, as on a real line
    elif op == 1:
        del body[where]
    elif op == 2:
        body.insert(where, rng.randrange(256))
    elif op == 3:
        body.insert(where, body[where])
    else:
        del body[where:]
    return bytes(body) + b"\x00"


def signer_for_tests() -> Signer:
    """A clinician key with a fixed clock, so signed frames are reproducible."""
    counter = iter(range(1_000_000, 1 << 40))
    return Signer(Key(7, bytes(range(32)), Role.CLINICIAN), link_id=1, clock=lambda: next(counter))


def random_stream(rng: random.Random, frames: int) -> bytes:
    """Valid and corrupted frames, garbage, flushes (extra delimiters) and an overlong run."""
    signer = signer_for_tests()
    parts = [b"\x00"]
    for i in range(frames):
        frame = random_frame(rng, signer)
        r = rng.random()
        if r < 0.6:
            parts.append(frame)
        elif r < 0.9:
            parts.append(corrupt(rng, frame))
        elif r < 0.95:
            parts.append(rng.randbytes(rng.randint(1, 40)) + b"\x00")
        else:
            parts.append(b"\x00" * rng.randint(1, 3))
        if i == frames // 2:  # one frame too long: counted once, skipped to the delimiter
            parts.append(bytes(rng.randint(1, 255) for _ in range(MAX_ENCODED_FRAME + rng.randint(1, 80))) + b"\x00")
            # a valid COBS encoding, short enough, that decodes to more than a frame can hold
            parts.append(b"\x02\x41" * (MAX_ENCODED_FRAME // 2) + b"\x00")
    return b"".join(parts)


def judge_stream(stream: bytes) -> tuple[list[Judged], Decoder]:
    """What the hardware must say of each frame of a stream (ending with a delimiter), per the
    protocol's decoder fed the same bytes; and the decoder (its counts)."""
    if not stream.endswith(b"\x00"):
        raise ValueError("the stream must end with a delimiter (0x00)")
    decoder = Decoder()
    judged = []
    end = 0
    for part in stream.split(b"\x00")[:-1]:
        start, end = end, end + len(part) + 1
        seen, ok = decoder.frames_seen, decoder.frames_ok
        decoder.feed(part + b"\x00")
        if decoder.frames_seen == seen:
            continue  # an empty frame (a flush) is no frame
        at = start + MAX_ENCODED_FRAME + 1 if len(part) > MAX_ENCODED_FRAME else end
        if decoder.frames_ok > ok:
            judged.append(Judged(Verdict.OK, cobs_decode(part), at))
            continue
        rejection = decoder.rejections[-1]
        before_crc = rejection.reason in (BadFrame.COBS, BadFrame.CRC) or \
            (rejection.reason is BadFrame.LENGTH and rejection.nak is None)
        if before_crc:
            judged.append(Judged(Verdict[rejection.reason.name], None, at))
        else:  # the CRC vouched for the bytes: the firmware refuses the frame, not the hardware
            judged.append(Judged(Verdict.OK, cobs_decode(part), at))
    return judged, decoder
