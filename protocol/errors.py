"""Errors of the wire protocol.

Every message names what was wrong (the field, the value, the frame's byte count) and what was
expected. Frame errors carry the `BadFrame` reason the streaming decoder counts them under, and
the NAK reason a device answers them with.

    ProtocolError                 base of every error raised by protocol/
    ├── CatalogueError            a message definition that breaks the catalogue's rules
    ├── EncodeError               a message that cannot be put on the wire (type, range, length)
    ├── SigningError              a key, signer or verifier set up wrongly (key size, id range)
    └── FrameError                a frame that cannot be accepted; `.reason`, `.nak`, `.seq`
        ├── CobsError             not a valid COBS encoding                       (BadFrame.COBS)
        ├── LengthError           too short, too long, or lengths that disagree   (BadFrame.LENGTH)
        ├── CrcError              the CRC-32/ISO-HDLC does not match              (BadFrame.CRC)
        ├── VersionError          a protocol version or flag this side does not speak (BadFrame.VERSION)
        ├── UnknownMessageError   a message id not in the catalogue               (BadFrame.UNKNOWN_ID)
        ├── PayloadError          a payload that does not parse as its message    (BadFrame.PAYLOAD)
        └── SignatureError        unsigned, unknown key, bad MAC, replay, role    (BadFrame.SIGNATURE)
"""

from __future__ import annotations

import enum


class ProtocolError(Exception):
    """Base of every error the protocol package raises."""


class CatalogueError(ProtocolError):
    """A message definition that breaks the catalogue's rules (duplicate id, unsupported field)."""


class EncodeError(ProtocolError):
    """A message that cannot be encoded: names the message, the field, the value and the range."""


class SigningError(ProtocolError):
    """A signing key, signer or verifier that is set up wrongly."""


class BadFrame(str, enum.Enum):
    """Why the streaming decoder dropped a frame; each has its own counter."""

    COBS = "cobs"
    LENGTH = "length"
    CRC = "crc"
    VERSION = "version"
    UNKNOWN_ID = "unknown_id"
    PAYLOAD = "payload"
    SIGNATURE = "signature"


class FrameError(ProtocolError):
    """A frame that cannot be accepted.

    reason: the decoder's counter; nak: the `NakReason` value a device answers with (None when
    the frame is too damaged to answer); seq, msg_id: from the header when it could be read
    (before the CRC check they are not to be trusted).
    """

    reason: BadFrame

    def __init__(self, message: str, *, nak: int | None = None, seq: int | None = None,
                 msg_id: int | None = None) -> None:
        super().__init__(message)
        self.nak = nak
        self.seq = seq
        self.msg_id = msg_id


class CobsError(FrameError):
    """Not a valid COBS encoding (a code byte points past the frame's end)."""

    reason = BadFrame.COBS


class LengthError(FrameError):
    """Too short for a header and CRC, too long, a header length that disagrees with the frame, or the
    wrong size for a fixed-size message.
    """

    reason = BadFrame.LENGTH


class CrcError(FrameError):
    """The CRC-32/ISO-HDLC over header, payload and signature does not match."""

    reason = BadFrame.CRC


class VersionError(FrameError):
    """A protocol version, or a header flag, that this side does not speak."""

    reason = BadFrame.VERSION


class UnknownMessageError(FrameError):
    """A message id that is not in the catalogue."""

    reason = BadFrame.UNKNOWN_ID


class PayloadError(FrameError):
    """A payload that does not parse as its message: an enum value out of range, bad UTF-8, a list or
    text over its limit, bytes left over.
    """

    reason = BadFrame.PAYLOAD


class SignatureError(FrameError):
    """Refused by the verifier: unsigned where a signature is needed, unknown key, bad MAC, replayed
    or stale timestamp, or a role that may not send the message.
    """

    reason = BadFrame.SIGNATURE
