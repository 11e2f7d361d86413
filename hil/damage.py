"""Damaged frames: a command's frame broken in one named way, for a scenario step to send on purpose.

A pump must refuse what it cannot trust and lose nothing: a frame with a bad CRC, length, version,
id, payload or signature is dropped and answered with the Nak reason of docs/protocol.md's "Bad
frames" table (or not at all, when no header can be read), and changes no state; a retried command
is answered again and runs once. Each Damage says how to break the frame and what a conforming pump
answers, so the runner can judge the device without asking the model (which never sees the frame):

    frames = damaged_frames("crc", message, seq, signers)   # [(bytes to write, what must come back)]

What must come back is a NakReason, NO_ANSWER, or RUN_ONCE: the command's own answers, as the model
gives them for one run (a retry gets the same answers again, and the model runs it once).
ANOTHER_COMMAND writes nothing: the runner asks the status through the link in between (a retry
that comes back after another command must still find its answer in the pump's window).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cobs.cobs._cobs_ext import encode as cobs_encode

from protocol import Access, NakReason, Role, Signer
from protocol.crc import CRC_SIZE, crc32
from protocol.fields import Kind
from protocol.framing import DEFINED_FLAGS, DELIMITER, FLAG_SIGNED, MIN_FRAME, encode_payload
from protocol.messages import CATALOGUE, PROTOCOL_VERSION, SUPPORTED_VERSIONS
from protocol.signing import mac

from .errors import ScenarioError

NO_ANSWER = "no answer"          # the pump drops the frame silently: it has no header to answer
RUN_ONCE = "run once"            # the command's own answers; the model runs it once for all such frames
ANOTHER_COMMAND = "another command"   # no frame: a status request goes through the link in between
Expected = NakReason | str       # a NakReason, NO_ANSWER, RUN_ONCE or ANOTHER_COMMAND

_HEADER = struct.Struct("<BBHBH")   # version, flags, seq, msg_id, length (protocol.framing.HEADER)
_CRC = struct.Struct("<I")
UNKNOWN_KEY_ID = 0xEE            # a key id no rig gives a pump
BEYOND_UNICODE = b"\xf4\x90\x80\x80"     # U+110000: past the last code point
UNDEFINED_FLAG = 0x80
ACK_ID = next(i for i, spec in CATALOGUE.items() if spec.name == "Ack")
assert not UNDEFINED_FLAG & DEFINED_FLAGS


@dataclass(frozen=True)
class Damage:
    """One way to break a command's frame, and what a conforming pump does with it."""

    name: str
    what: str                    # in words, for reports and errors
    expected: tuple[Expected, ...]   # per frame sent: what must come back
    needs: str = ""              # "signed": a command that must be signed; "clinician": a CLINICIAN-only one;
                                 # "text": one with a text field of at least 4 bytes


@dataclass(frozen=True)
class _Parts:
    """A frame before its CRC: everything a damage may change."""

    version: int
    flags: int
    seq: int
    msg_id: int
    payload: bytes
    signer: Signer | None
    length: int | None = None    # the header's length field when it lies (default: len(payload))


def _inner(p: _Parts, *, timestamp: int | None = None, key_id: int | None = None, flip_mac: bool = False) -> bytes:
    """Header, payload, signature (MAVLink-style, over header and payload) and CRC, as the parts say."""
    flags = p.flags | (FLAG_SIGNED if p.signer is not None else 0)
    body = _HEADER.pack(p.version, flags, p.seq, p.msg_id, len(p.payload) if p.length is None else p.length)
    body += p.payload
    if p.signer is not None:
        signer = p.signer
        stamp = signer.next_timestamp() if timestamp is None else timestamp
        prefix = bytes([signer.link_id, signer.key.key_id if key_id is None else key_id]) + stamp.to_bytes(6, "little")
        tag = bytearray(mac(signer.key.secret, body + prefix))
        if flip_mac:
            tag[0] ^= 0x01
        body += prefix + bytes(tag)
    return body + _CRC.pack(crc32(body))


def _wire(inner: bytes) -> bytes:
    return cobs_encode(inner) + DELIMITER


def _bad_cobs(p: _Parts) -> bytes:
    """A COBS code byte that points past the frame's end (the decoder's `cobs` counter)."""
    encoded = bytearray(cobs_encode(_inner(p)))
    if len(encoded) + 1 > 0xFF:
        raise ScenarioError(f"damage 'cobs': a frame of {len(encoded)} encoded bytes; expected a command under 254 "
                            "bytes, so that a code byte can point past its end")
    encoded[0] = len(encoded) + 1
    return bytes(encoded) + DELIMITER


def _too_short(p: _Parts) -> bytes:
    return _wire(_inner(p)[:MIN_FRAME - 1])


def _crc(p: _Parts) -> bytes:
    inner = bytearray(_inner(p))
    inner[-CRC_SIZE] ^= 0x01
    return _wire(bytes(inner))


def _replace(p: _Parts, **changes: Any) -> _Parts:
    return _Parts(**{**p.__dict__, **changes})


def _unknown_id() -> int:
    return next(i for i in range(0x30, 0x100) if i not in CATALOGUE)


def _replayed(p: _Parts) -> bytes:
    """Signed with the last timestamp this signer already used: not newer than the last accepted."""
    signer = p.signer
    assert signer is not None
    if signer.last_timestamp < 0:
        raise ScenarioError("damage 'replayed': no earlier frame signed with this key to replay its timestamp; "
                            "expected the step after another signed command (a status check is one)")
    return _wire(_inner(p, timestamp=signer.last_timestamp))


def _text_span(message: Any) -> tuple[int, int]:
    """Where the bytes of the message's first text field lie in its payload: (start, length)."""
    spec = type(message).SPEC
    offset = 0
    for info, value in zip(spec.info.fields, message):
        if info.kind is Kind.TEXT:
            return offset + 1, len(value.encode("utf-8"))
        if info.size is None:
            break
        offset += info.size
    raise ScenarioError(f"{spec.name}: no text field after fixed-size ones; expected a command with one, e.g. refill "
                        "(drug)")


def _text(replacement: bytes) -> Callable[[_Parts, Any], bytes]:
    """The first bytes of the message's text field replaced by `replacement` (same length overall)."""
    def damage(p: _Parts, message: Any) -> bytes:
        start, length = _text_span(message)
        if length < len(replacement):
            raise ScenarioError(f"damage on text: the text field holds {length} bytes; expected at least "
                                f"{len(replacement)}")
        payload = p.payload[:start] + replacement + p.payload[start + len(replacement):]
        return _wire(_inner(_replace(p, payload=payload)))
    return damage


_MAKERS: dict[str, Callable[..., Any]] = {
    "cobs": lambda p, m, s: [_bad_cobs(p)],
    "too_short": lambda p, m, s: [_too_short(p)],
    "length": lambda p, m, s: [_wire(_inner(_replace(p, length=len(p.payload) + 1)))],
    "extra_byte": lambda p, m, s: [_wire(_inner(_replace(p, payload=p.payload + b"\x01")))],
    "crc": lambda p, m, s: [_crc(p)],
    "version": lambda p, m, s: [_wire(_inner(_replace(p, version=max(SUPPORTED_VERSIONS) + 1)))],
    "flags": lambda p, m, s: [_wire(_inner(_replace(p, flags=UNDEFINED_FLAG)))],
    "unknown_id": lambda p, m, s: [_wire(_inner(_replace(p, msg_id=_unknown_id())))],
    "unsigned": lambda p, m, s: [_wire(_inner(_replace(p, signer=None)))],
    "bad_mac": lambda p, m, s: [_wire(_inner(p, flip_mac=True))],
    "unknown_key": lambda p, m, s: [_wire(_inner(p, key_id=UNKNOWN_KEY_ID))],
    "replayed": lambda p, m, s: [_replayed(p)],
    "patient_key": lambda p, m, s: [_wire(_inner(_replace(p, signer=s[Role.PATIENT])))],
    "text_invalid": lambda p, m, s: [_text(b"\xff")(p, m)],
    "text_overlong": lambda p, m, s: [_text(b"\xc1\xbf")(p, m)],
    "text_surrogate": lambda p, m, s: [_text(b"\xed\xa0\x80")(p, m)],
    "text_beyond_unicode": lambda p, m, s: [_text(BEYOND_UNICODE)(p, m)],
    "text_cut_short": lambda p, m, s: [_text(b"\xe2\x82")(p, m)],
    "pump_message": lambda p, m, s: [_wire(_inner(_replace(p, msg_id=ACK_ID, payload=bytes([p.msg_id]), signer=None)))],
    "retry": lambda p, m, s: [frame := _wire(_inner(p)), frame],
    "retry_resigned": lambda p, m, s: [_wire(_inner(p)), _wire(_inner(p))],
    "retry_unsigned": lambda p, m, s: [_wire(_inner(p)), _wire(_inner(_replace(p, signer=None)))],
    "retry_later": lambda p, m, s: [frame := _wire(_inner(p)), b"", frame],
}

_BAD = NakReason.MALFORMED
DAMAGES: dict[str, Damage] = {d.name: d for d in (
    Damage("cobs", "a COBS code byte that points past the frame's end", (NO_ANSWER,)),
    Damage("too_short", "a frame too short to hold a header and a CRC", (NO_ANSWER,)),
    Damage("length", "a header length one more than the payload", (_BAD,)),
    Damage("extra_byte", "one byte more payload than the message has (length and CRC agree)", (_BAD,)),
    Damage("crc", "one bit of the CRC flipped", (NakReason.BAD_CRC,)),
    Damage("version", "a protocol version the pump does not speak", (NakReason.UNSUPPORTED_VERSION,)),
    Damage("flags", "a header flag that is not defined", (NakReason.UNSUPPORTED_VERSION,)),
    Damage("unknown_id", "a message id not in the catalogue", (NakReason.UNKNOWN_ID,)),
    Damage("unsigned", "no signature on a command that needs one", (NakReason.UNSIGNED,), "signed"),
    Damage("bad_mac", "one bit of the MAC flipped (the CRC agrees)", (NakReason.BAD_SIGNATURE,), "signed"),
    Damage("unknown_key", "signed under a key id the pump does not know", (NakReason.BAD_SIGNATURE,), "signed"),
    Damage("replayed", "a new command under the last timestamp already used", (NakReason.REPLAY,), "signed"),
    Damage("patient_key", "a clinician's command signed with the patient's key", (NakReason.ROLE_NOT_ALLOWED,),
           "clinician"),
    Damage("text_invalid", "a text field with a byte that is never UTF-8 (0xFF)", (_BAD,), "text"),
    Damage("text_overlong", "a text field with an overlong UTF-8 encoding (C1 BF)", (_BAD,), "text"),
    Damage("text_surrogate", "a text field with a UTF-16 surrogate encoded in UTF-8 (ED A0 80)", (_BAD,), "text"),
    Damage("text_beyond_unicode", "a text field with a code point past U+10FFFF (F4 90 80 80)", (_BAD,), "text"),
    Damage("text_cut_short", "a text field with a three-byte sequence cut after two (E2 82)", (_BAD,), "text"),
    Damage("pump_message", "an Ack of the command, a message only a pump sends, sent to the pump: ignored, never "
           "answered (two devices never ping-pong)", (NO_ANSWER,)),
    Damage("retry", "the same frame twice, as after a lost answer", (RUN_ONCE, RUN_ONCE)),
    Damage("retry_resigned", "the command again under its seq with a fresh signature", (RUN_ONCE, RUN_ONCE),
           "signed"),
    Damage("retry_later", "the same frame again after another command, as after an answer lost and a status asked",
           (RUN_ONCE, ANOTHER_COMMAND, RUN_ONCE)),
    Damage("retry_unsigned", "the command again under its seq without a signature", (RUN_ONCE, NakReason.UNSIGNED),
           "signed"),
)}
assert set(DAMAGES) == set(_MAKERS)


def check_damage(name: str, message_type: type, where: str) -> Damage:
    """The Damage of that name, if the message can take it; ScenarioError naming what was expected."""
    damage = DAMAGES.get(name)
    if damage is None:
        raise ScenarioError(f"{where} = {name!r}: expected one of {sorted(DAMAGES)}")
    spec = message_type.SPEC
    if damage.needs in ("signed", "clinician") and spec.access is Access.OPEN:
        raise ScenarioError(f"{where} = {name!r}: {spec.name} needs no signature; expected a command that must be "
                            "signed")
    if damage.needs == "clinician" and spec.access is not Access.CLINICIAN:
        raise ScenarioError(f"{where} = {name!r}: a patient may send {spec.name}; expected a clinician's command")
    if damage.needs == "text" and not any(info.kind is Kind.TEXT for info in spec.info.fields):
        raise ScenarioError(f"{where} = {name!r}: {spec.name} has no text field; expected a command with one, "
                            "e.g. refill")
    return damage


def damaged_frames(name: str, message: Any, seq: int, signers: Mapping[Role, Signer],
                   signer: Signer | None) -> list[tuple[bytes, Expected]]:
    """The frames to write for damage `name` of `message` under `seq`, each with what must come back.

    signers: the link's signers by role (patient_key needs the patient's); signer: the one the
    message goes out with (None for an OPEN message).
    """
    damage = check_damage(name, type(message), "damage")
    if damage.needs in ("signed", "clinician") and signer is None:
        raise ScenarioError(f"damage {name!r}: the rig gives the link no key to sign {type(message).SPEC.name} with; "
                            "expected [keys] in the rig file")
    if damage.needs == "clinician" and Role.PATIENT not in signers:
        raise ScenarioError(f"damage {name!r}: the rig gives no patient key; expected [keys] patient in the rig file")
    parts = _Parts(PROTOCOL_VERSION, 0, seq, type(message).SPEC.msg_id, encode_payload(message), signer)
    frames = _MAKERS[name](parts, message, signers)
    return list(zip(frames, damage.expected))


__all__ = ["Damage", "DAMAGES", "NO_ANSWER", "RUN_ONCE", "ANOTHER_COMMAND", "check_damage", "damaged_frames"]
