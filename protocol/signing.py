"""Signed frames, as MAVLink 2 signs them: key id, 48-bit monotonic timestamp, truncated MAC.

A signed frame carries, after its payload, a 16-byte block: link id, key id, a 48-bit timestamp
and the first 8 bytes of HMAC-SHA256(secret, header | payload | link id | key id | timestamp).
Differences from MAVLink 2, on purpose: an HMAC rather than SHA-256 of secret-then-message,
8 MAC bytes rather than 6, and a key id so that a pump can hold several keys with different
roles. The timestamp counts 10 µs since 2015-01-01 00:00 UTC as MAVLink's does (`mavlink_clock`)
unless the signer is given another clock; a signer never repeats or goes back, even if its
clock does.

A pump's `Verifier` accepts a frame only if: it is signed, unless the message is OPEN (Hello and
what the pump sends); the key id is known and the MAC verifies; the timestamp is newer than the
last one accepted for that key on that link (no replay, no stale frame); and the key's role may
send the message (patient: GetStatus and PatientBolusRequest; clinician: everything). A host that
retries a command sends the same seq with a new signature (a newer timestamp): the pump accepts
it and, seeing the seq again, answers without doing the command twice.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .crc import CRC_SIZE
from .enums import Access, NakReason, Role
from .errors import SignatureError, SigningError
from .framing import MAC_SIZE, Frame

SECRET_SIZE = 32
TIMESTAMP_LIMIT = 1 << 48
MAVLINK_EPOCH_UNIX_S = 1_420_070_400  # 2015-01-01 00:00:00 UTC
_PREFIX = struct.Struct("<BB")


def mavlink_clock() -> int:
    """Now, in 10 µs units since 2015-01-01 00:00 UTC (MAVLink 2's signing timestamp)."""
    return (time.time_ns() // 10_000) - MAVLINK_EPOCH_UNIX_S * 100_000


@dataclass(frozen=True)
class Key:
    """A shared secret, its id (0..255) and the role it grants."""

    key_id: int
    secret: bytes = field(repr=False)
    role: Role

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise SigningError(f"key_id = {self.key_id}: expected 0..255 (u8)")
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_SIZE:
            size = len(self.secret) if isinstance(self.secret, (bytes, bytearray)) else type(self.secret).__name__
            raise SigningError(f"key {self.key_id}: secret of {size} bytes; expected {SECRET_SIZE} bytes")
        if not isinstance(self.role, Role):
            raise SigningError(f"key {self.key_id}: role = {self.role!r}; expected a Role")


def mac(secret: bytes, signed: bytes) -> bytes:
    """The truncated MAC: the first 8 bytes of HMAC-SHA256(secret, signed)."""
    return hmac.new(secret, signed, hashlib.sha256).digest()[:MAC_SIZE]


class Signer:
    """Signs the frames one sender sends on one link with one key."""

    def __init__(self, key: Key, link_id: int = 0, clock: Callable[[], int] = mavlink_clock) -> None:
        if not 0 <= link_id <= 0xFF:
            raise SigningError(f"link_id = {link_id}: expected 0..255 (u8)")
        self.key = key
        self.link_id = link_id
        self.clock = clock
        self.last_timestamp = -1

    def next_timestamp(self) -> int:
        """The clock's time, or one more than the last timestamp if the clock has not moved on."""
        stamp = max(int(self.clock()), self.last_timestamp + 1)
        if not 0 <= stamp < TIMESTAMP_LIMIT:
            raise SigningError(f"signing timestamp {stamp}: expected 0..2^48-1")
        self.last_timestamp = stamp
        return stamp

    def signature_block(self, header_and_payload: bytes) -> bytes:
        """The 16 bytes that follow the payload: link id, key id, timestamp, MAC."""
        prefix = _PREFIX.pack(self.link_id, self.key.key_id) + self.next_timestamp().to_bytes(6, "little")
        return prefix + mac(self.key.secret, header_and_payload + prefix)


class Verifier:
    """A pump's check of who sent a frame and whether they may: signature, freshness, role.

    last_timestamps: the newest accepted timestamp per (key id, link id); a firmware keeps it in
    non-volatile memory so that a reset does not reopen the door to replays.
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys: dict[int, Key] = {}
        for key in keys:
            if key.key_id in self.keys:
                raise SigningError(f"key id {key.key_id} is given twice")
            self.keys[key.key_id] = key
        self.last_timestamps: dict[tuple[int, int], int] = {}

    def check(self, frame: Frame) -> Role | None:
        """The role that signed an acceptable frame (None: unsigned and OPEN); else SignatureError.

        The error's `nak` says which rule failed: UNSIGNED, BAD_SIGNATURE, REPLAY or
        ROLE_NOT_ALLOWED. A frame with a valid, fresh signature moves the key's timestamp on
        even when its role is refused, so it cannot be replayed either.
        """
        spec = type(frame.message).SPEC
        sig = frame.signature
        where = dict(seq=frame.seq, msg_id=spec.msg_id)
        if sig is None:
            if spec.access is Access.OPEN:
                return None
            raise SignatureError(f"{spec.name} must be signed by a {spec.access.name.lower()} or clinician key; "
                                 "it came unsigned", nak=NakReason.UNSIGNED, **where)
        key = self.keys.get(sig.key_id)
        if key is None:
            raise SignatureError(f"{spec.name} signed with key id {sig.key_id}; expected one of {sorted(self.keys)}",
                                 nak=NakReason.BAD_SIGNATURE, **where)
        signed = frame.inner[:len(frame.inner) - CRC_SIZE - MAC_SIZE]
        if not hmac.compare_digest(mac(key.secret, signed), sig.mac):
            raise SignatureError(f"{spec.name}: the MAC does not verify with key {key.key_id}",
                                 nak=NakReason.BAD_SIGNATURE, **where)
        stream = (sig.key_id, sig.link_id)
        last = self.last_timestamps.get(stream)
        if last is not None and sig.timestamp_10us <= last:
            raise SignatureError(f"{spec.name}: timestamp {sig.timestamp_10us} of key {key.key_id} on link "
                                 f"{sig.link_id}; expected newer than {last} (replayed or stale)",
                                 nak=NakReason.REPLAY, **where)
        self.last_timestamps[stream] = sig.timestamp_10us
        if key.role < spec.access:
            raise SignatureError(f"{spec.name} needs a {spec.access.name.lower()} key; key {key.key_id} is "
                                 f"{key.role.name.lower()}'s", nak=NakReason.ROLE_NOT_ALLOWED, **where)
        return key.role
