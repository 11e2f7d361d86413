"""A deterministic binary form for the model's dataclasses: snapshots and logged commands.

Integers are zigzag varints, so a command fits in one or two 12-byte log payloads; the layout
follows the dataclass field order and type hints, so the same value always gives the same bytes.
Supported: int, bool, str, bytes, IntEnum, Optional[X], tuple[X, ...], tuple[X, Y], list[X],
collections.deque[X] and nested dataclasses.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import types
import typing
from typing import Any

from .errors import StateError


def _put_uint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _put_int(out: bytearray, value: int) -> None:
    _put_uint(out, (value << 1) if value >= 0 else ((-value << 1) - 1))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise StateError(f"encoded value ends early at byte {self.pos}; expected more varint bytes")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def int(self) -> int:
        raw = self.uint()
        return (raw >> 1) if not raw & 1 else -((raw + 1) >> 1)

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise StateError(f"encoded value ends early: wanted {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


@functools.cache
def _hints(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


def _encode(out: bytearray, tp: Any, value: Any) -> None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            out.append(0)
            return
        out.append(1)
        _encode(out, args[0], value)
    elif origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            _put_uint(out, len(value))
            for item in value:
                _encode(out, args[0], item)
        else:
            for sub, item in zip(args, value, strict=True):
                _encode(out, sub, item)
    elif origin in (list, collections.deque):
        (arg,) = typing.get_args(tp)
        _put_uint(out, len(value))
        for item in value:
            _encode(out, arg, item)
    elif dataclasses.is_dataclass(tp):
        for name, sub in _hints(tp):
            _encode(out, sub, getattr(value, name))
    elif tp is bool:
        out.append(1 if value else 0)
    elif isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        _put_uint(out, int(value))
    elif tp is int:
        _put_int(out, value)
    elif tp is str:
        data = value.encode("utf-8")
        _put_uint(out, len(data))
        out += data
    elif tp is bytes:
        _put_uint(out, len(value))
        out += value
    else:
        raise TypeError(f"codec cannot encode type {tp!r}")


def _decode(reader: _Reader, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if reader.raw(1)[0] == 0 else _decode(reader, args[0])
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(reader, args[0]) for _ in range(reader.uint()))
        return tuple(_decode(reader, sub) for sub in args)
    if origin in (list, collections.deque):
        (arg,) = typing.get_args(tp)
        items = [_decode(reader, arg) for _ in range(reader.uint())]
        return collections.deque(items) if origin is collections.deque else items
    if dataclasses.is_dataclass(tp):
        return tp(**{name: _decode(reader, sub) for name, sub in _hints(tp)})
    if tp is bool:
        return reader.raw(1)[0] != 0
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        raw = reader.uint()
        try:
            return tp(raw)
        except ValueError:
            raise StateError(f"{tp.__name__} has no member {raw}") from None
    if tp is int:
        return reader.int()
    if tp is str:
        return reader.raw(reader.uint()).decode("utf-8")
    if tp is bytes:
        return reader.raw(reader.uint())
    raise TypeError(f"codec cannot decode type {tp!r}")


def encode(value: Any, tp: Any = None) -> bytes:
    """The bytes of a dataclass value (or of a value of the type `tp`)."""
    out = bytearray()
    _encode(out, type(value) if tp is None else tp, value)
    return bytes(out)


def decode(data: bytes, tp: Any) -> Any:
    """Read back what `encode` wrote; raises StateError when the bytes do not fit the type."""
    reader = _Reader(data)
    try:
        value = _decode(reader, tp)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot decode {getattr(tp, '__name__', tp)}: {exc}") from exc
    if reader.pos != len(data):
        raise StateError(f"{len(data) - reader.pos} bytes left over after decoding {getattr(tp, '__name__', tp)}")
    return value


def length_prefixed(data: bytes) -> bytes:
    """`data` behind its length as a varint, so padding after it can be told apart."""
    out = bytearray()
    _put_uint(out, len(data))
    return bytes(out) + data


def strip_length_prefix(data: bytes) -> bytes:
    """The bytes `length_prefixed` wrapped, ignoring whatever padding follows them."""
    return split_length_prefixed(data)[0]


def split_length_prefixed(data: bytes) -> tuple[bytes, bytes]:
    """The bytes `length_prefixed` wrapped, and what follows them."""
    reader = _Reader(data)
    head = reader.raw(reader.uint())
    return head, data[reader.pos:]
