"""The fast path: `struct.Struct` codecs derived from the catalogue's construct definitions.

A payload made only of plain integers and bools (Telemetry, Ack, most commands) has a struct
format that follows from its construct field list (fields.FieldInfo.fmt: Int32ul -> "L",
Int64ul -> "Q", Flag -> "?"); packing and unpacking through it gives the very bytes and values
construct gives (tests/protocol prove it for every such message, golden and random). The
decoder uses it only after the CRC check, and only for an unsigned frame of exactly the
expected size; anything else goes the construct way.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import CatalogueError
from .fields import FieldInfo
from .messages import CATALOGUE, MessageSpec

HOT_MESSAGES = ("Telemetry", "Ack")  # must have a fast path (checked below)


def struct_of(info: FieldInfo) -> struct.Struct | None:
    """The little-endian struct of a record made only of plain integer and bool fields, else None."""
    return struct.Struct("<" + info.fmt) if info.fmt is not None else None


class FastCodec:
    """Pack and unpack one message's payload with a derived struct."""

    __slots__ = ("spec", "struct", "size", "type")

    def __init__(self, spec: MessageSpec, compiled: struct.Struct) -> None:
        self.spec = spec
        self.struct = compiled
        self.size = compiled.size
        self.type = spec.type  # made with tuple.__new__(type, values): C only, unlike namedtuple's _make

    def pack(self, message: Any) -> bytes:
        """The payload of `message` (checked as construct's path checks it)."""
        self.spec.check(message)
        return self.struct.pack(*message)

    def unpack(self, payload: bytes) -> Any:
        """The message in a payload of exactly `size` bytes (struct.error otherwise)."""
        return tuple.__new__(self.type, self.struct.unpack(payload))


FAST_CODECS: dict[int, FastCodec] = {}
for _spec in CATALOGUE.values():
    _compiled = struct_of(_spec.info)
    if _compiled is not None:
        FAST_CODECS[_spec.msg_id] = FastCodec(_spec, _compiled)

_missing = [name for name in HOT_MESSAGES if not any(c.spec.name == name for c in FAST_CODECS.values())]
if _missing:
    raise CatalogueError(f"hot messages without a fast path: {_missing}; keep their fields plain integers")
