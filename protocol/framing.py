"""Frames: a header, the payload, an optional signature and a CRC, COBS-encoded, ending in 0x00.

    COBS( header(7) | payload(length) | signature(16, if flags & SIGNED) | CRC-32/ISO-HDLC(4) ) 0x00

COBS leaves no zero byte inside a frame, so the 0x00 delimiter resynchronises a receiver after
any corruption: at worst it loses the frame in which the error fell. The CRC (crc.py) covers
the header, the payload and the signature; a signature's MAC (signing.py) covers the header,
the payload and the signature's own link id, key id and timestamp. Everything little-endian.

`decode_frame` is the reference: construct parses header, payload and signature after the CRC
has been checked (construct must never see bytes the CRC has not vouched for); each failure
raises the FrameError subclass the streaming decoder counts.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Protocol

# the cobs package's C extension, by name: never its pure-Python fallback
from cobs.cobs._cobs_ext import DecodeError as CobsDecodeError
from cobs.cobs._cobs_ext import decode as cobs_decode
from cobs.cobs._cobs_ext import encode as cobs_encode
from construct import Bytes, BytesInteger, Int8ul, Int16ul

from .crc import CRC_SIZE, GOOD_FRAME_CRC, crc32
from .enums import NakReason
from .errors import CobsError, CrcError, EncodeError, LengthError, PayloadError, UnknownMessageError, VersionError
from .fastpath import FAST_CODECS, struct_of
from .fields import describe, from_parsed, record
from .messages import CATALOGUE, MAX_PAYLOAD, PROTOCOL_VERSION, SUPPORTED_VERSIONS

DELIMITER = b"\x00"
FLAG_SIGNED = 0x01
FLAG_MORE = 0x02  # more answers to this seq follow (a command the model answers with several responses)
DEFINED_FLAGS = FLAG_SIGNED | FLAG_MORE

HEADER = record(
    "FrameHeader",
    "version" / Int8ul * "protocol version of this frame (1)",
    "flags" / Int8ul * "bit 0: signed (a signature follows the payload); bit 1: more answers to this seq follow",
    "seq" / Int16ul * "sequence number: a command's, echoed by its answer; 0 in telemetry",
    "msg_id" / Int8ul * "the message's id in the catalogue",
    "length" / Int16ul * f"payload bytes (at most {MAX_PAYLOAD})",
)

MAC_SIZE = 8
SIGNATURE = record(
    "Signature",
    "link_id" / Int8ul * "the sender's link (a channel of one key); timestamps are monotonic per key and link",
    "key_id" / Int8ul * "which shared secret signed the frame (and so which role)",
    "timestamp_10us" / BytesInteger(6, swapped=True) * "48-bit, strictly increasing per key and link",
    "mac" / Bytes(MAC_SIZE) * "HMAC-SHA256(secret, header | payload | link_id | key_id | timestamp), first 8 bytes",
)

HEADER_INFO = describe(HEADER)
SIGNATURE_INFO = describe(SIGNATURE)
FrameHeader = HEADER_INFO.record
Signature = SIGNATURE_INFO.record
HEADER_SIZE: int = HEADER_INFO.size  # type: ignore[assignment]
SIGNATURE_SIZE: int = SIGNATURE_INFO.size  # type: ignore[assignment]
SIGNED_PREFIX_SIZE = SIGNATURE_SIZE - MAC_SIZE  # link_id, key_id, timestamp
MIN_FRAME = HEADER_SIZE + CRC_SIZE
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + SIGNATURE_SIZE + CRC_SIZE
MAX_ENCODED_FRAME = MAX_FRAME + (MAX_FRAME + 253) // 254  # COBS adds one byte per 254, at most
_HEADER_STRUCT: struct.Struct = struct_of(HEADER_INFO)  # type: ignore[assignment]
_CRC_STRUCT = struct.Struct("<I")


class Frame(NamedTuple):
    """A decoded frame: its sequence number, its message, its signature (or None) and its bytes.

    inner: the frame after COBS decoding, header to CRC, which a verifier needs to check the MAC.
    """

    seq: int
    message: Any
    signature: Any
    inner: bytes

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def more(self) -> bool:
        """More answers to this seq follow (flag bit 1); the last answer has it clear."""
        return bool(self.inner[1] & FLAG_MORE)


class SignsFrames(Protocol):
    """What encode_frame needs of a signer (signing.Signer)."""

    def signature_block(self, header_and_payload: bytes) -> bytes: ...


def encode_payload(message: Any) -> bytes:
    """The payload bytes of a message (checked; through the fast path when it has one)."""
    spec = getattr(type(message), "SPEC", None)
    if spec is None:
        raise EncodeError(f"{message!r} is not a protocol message; expected an instance of a protocol.messages class")
    codec = FAST_CODECS.get(spec.msg_id)
    return codec.pack(message) if codec is not None else spec.build(message)


def encode_frame(message: Any, seq: int = 0, signer: SignsFrames | None = None, more: bool = False) -> bytes:
    """A message as it goes on the wire: COBS-encoded frame and 0x00 delimiter.

    more: this answer is not the last one to its command's seq.
    """
    payload = encode_payload(message)
    return frame_bytes(type(message).SPEC.msg_id, payload, seq, signer, flags=FLAG_MORE if more else 0)


def frame_bytes(msg_id: int, payload: bytes, seq: int = 0, signer: SignsFrames | None = None,
                version: int = PROTOCOL_VERSION, flags: int = 0) -> bytes:
    """Frame any payload under any header (tests build unknown ids and other versions with it)."""
    if not 0 <= seq <= 0xFFFF:
        raise EncodeError(f"seq = {seq}: expected 0..65535 (u16)")
    if not 0 <= msg_id <= 0xFF or not 0 <= version <= 0xFF or not 0 <= flags <= 0xFF:
        raise EncodeError(f"header msg_id = {msg_id}, version = {version}, flags = {flags}: expected u8 each")
    if len(payload) > MAX_PAYLOAD:
        raise EncodeError(f"payload of {len(payload)} bytes: expected at most {MAX_PAYLOAD}")
    if signer is not None:
        flags |= FLAG_SIGNED
    header = _HEADER_STRUCT.pack(version, flags, seq, msg_id, len(payload))
    body = header + payload
    if signer is not None:
        body += signer.signature_block(body)
    body += _CRC_STRUCT.pack(crc32(body))
    return cobs_encode(body) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """Decode one COBS-encoded frame (without its delimiter), or raise the FrameError that says why."""
    if len(encoded) > MAX_ENCODED_FRAME:
        raise LengthError(f"frame of {len(encoded)} encoded bytes: expected at most {MAX_ENCODED_FRAME}")
    try:
        inner = cobs_decode(encoded)
    except CobsDecodeError as exc:
        raise CobsError(f"not a COBS encoding ({exc})") from None
    return decode_inner(inner)


def decode_inner(inner: bytes) -> Frame:
    """Check and parse a frame after COBS decoding: length, CRC, version, id, payload, signature."""
    n = len(inner)
    if n < MIN_FRAME:
        raise LengthError(f"frame of {n} bytes: expected at least {MIN_FRAME} (header and CRC)")
    if n > MAX_FRAME:
        raise LengthError(f"frame of {n} bytes: expected at most {MAX_FRAME}")
    seq, msg_id = inner[2] | inner[3] << 8, inner[4]  # not yet vouched for: only to answer a NAK
    if crc32(inner) != GOOD_FRAME_CRC:
        got = _CRC_STRUCT.unpack_from(inner, n - CRC_SIZE)[0]
        raise CrcError(f"CRC-32/ISO-HDLC is {got:#010x}; expected {crc32(inner[:-CRC_SIZE]):#010x}",
                       nak=NakReason.BAD_CRC, seq=seq, msg_id=msg_id)
    header = HEADER.parse(inner)
    if header.version not in SUPPORTED_VERSIONS:
        raise VersionError(f"protocol version {header.version}; expected one of {list(SUPPORTED_VERSIONS)}",
                           nak=NakReason.UNSUPPORTED_VERSION, seq=seq, msg_id=msg_id)
    if header.flags & ~DEFINED_FLAGS:
        raise VersionError(f"flags {header.flags:#04x}: version {header.version} defines only {DEFINED_FLAGS:#04x}",
                           nak=NakReason.UNSUPPORTED_VERSION, seq=seq, msg_id=msg_id)
    signed = bool(header.flags & FLAG_SIGNED)
    expected = n - HEADER_SIZE - CRC_SIZE - (SIGNATURE_SIZE if signed else 0)
    if header.length != expected:
        raise LengthError(f"header says {header.length} payload bytes; the {'signed ' if signed else ''}frame of "
                          f"{n} bytes holds {expected}", nak=NakReason.MALFORMED, seq=seq, msg_id=msg_id)
    spec = CATALOGUE.get(msg_id)
    if spec is None:
        raise UnknownMessageError(f"message id {msg_id:#04x} is not in the catalogue of version {header.version}",
                                  nak=NakReason.UNKNOWN_ID, seq=seq, msg_id=msg_id)
    if spec.info.size is not None and header.length != spec.info.size:
        raise LengthError(f"{spec.name} payload of {header.length} bytes; expected {spec.info.size}",
                          nak=NakReason.MALFORMED, seq=seq, msg_id=msg_id)
    payload = inner[HEADER_SIZE:HEADER_SIZE + header.length]
    try:
        message = spec.parse(payload)
    except Exception as exc:  # construct raises many types on a malformed payload; all mean the same here
        detail = str(exc).replace("\n", " ")
        raise PayloadError(f"{spec.name} payload does not parse: {detail}",
                           nak=NakReason.MALFORMED, seq=seq, msg_id=msg_id) from None
    signature = None
    if signed:
        start = HEADER_SIZE + header.length
        signature = from_parsed(SIGNATURE_INFO, SIGNATURE.parse(inner[start:start + SIGNATURE_SIZE]))
    return Frame(seq, message, signature, bytes(inner))
