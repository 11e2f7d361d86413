"""The wire between a host and a pump: one definition of every byte, in construct.

    crc.py        the frame check, CRC-32/ISO-HDLC (check 0xCBF43926)
    enums.py      enumerations on the wire (the model's, mirrored; NAK reasons; roles)
    fields.py     field types and what is derived from a definition (checks, records, docs)
    messages.py   the catalogue: every message with its stable id
    fastpath.py   codecs generated from the definitions (struct runs, enums, texts, lists): the fast path
    wireshark.py  a Wireshark Lua dissector generated from the definitions (ithil protocol wireshark)
    framing.py    header, signature block, CRC, COBS; encode_frame and decode_frame
    signing.py    keys, signer and verifier (MAVLink 2 style, HMAC-SHA256)
    decoder.py    the streaming decoder: any chunking in, frames out, bad frames counted
    docs.py       docs/protocol.md, rendered from the definitions

It imports construct, cobs and the standard library only; the mapping to firmware_model's
commands lives in hil/.
"""

from . import messages
from .decoder import Decoder, Rejection
from .enums import Access, AlarmCode, BolusKind, DenyReason, Direction, Mode, NakReason, Role
from .errors import (BadFrame, CatalogueError, CobsError, CrcError, EncodeError, FrameError, LengthError,
                     PayloadError, ProtocolError, SignatureError, SigningError, UnknownMessageError, VersionError)
from .framing import Frame, decode_frame, encode_frame
from .messages import CATALOGUE, PROTOCOL_VERSION
from .signing import Key, Signer, Verifier

__all__ = [
    "messages", "Decoder", "Rejection", "Access", "AlarmCode", "BolusKind", "DenyReason", "Direction", "Mode",
    "NakReason", "Role", "BadFrame", "CatalogueError", "CobsError", "CrcError", "EncodeError", "FrameError",
    "LengthError", "PayloadError", "ProtocolError", "SignatureError", "SigningError", "UnknownMessageError",
    "VersionError", "Frame", "decode_frame", "encode_frame", "CATALOGUE", "PROTOCOL_VERSION", "Key", "Signer",
    "Verifier",
]
