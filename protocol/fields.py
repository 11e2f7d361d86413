"""Field types of the catalogue, and what is derived from a definition: checks, records, docs.

Messages are construct definitions built from construct's own types (Int8ul..Int64ul, Int32sl,
Flag, Bytes, BytesInteger, Struct, Default) and four small adapters that carry the protocol's
rules over construct's PascalString and PrefixedArray: `EnumField` (a Python IntEnum, optionally
with 0 meaning none), `OptionalInt` (all ones meaning none), `Text` (UTF-8 with a byte limit) and
`ListOf` (a counted list with an item limit). `describe()` reads a definition into a `FieldInfo`
tree; the encoder's checks, the message records (named tuples), the fast path, the reference
documentation and the tests' random messages are all computed from it, never written by hand.
"""

from __future__ import annotations

import collections
import enum
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from construct import (Adapter, Bytes, BytesInteger, Construct, Default, Flag, FormatField, Int8ul,
                       PascalString, PrefixedArray, Renamed, Struct, ValidationError)

from .errors import CatalogueError, EncodeError

MISSING: Any = object()  # no default


class Kind(enum.Enum):
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"
    TEXT = "text"
    BYTES = "bytes"
    LIST = "list"
    STRUCT = "struct"


# ---- the adapters -----------------------------------------------------------------------------

class EnumField(Adapter):
    """An integer on the wire, a member of `enum_type` in Python; with optional=True, 0 is None."""

    def __init__(self, subcon: Construct, enum_type: type[enum.IntEnum], optional: bool = False) -> None:
        super().__init__(subcon)
        self.enum_type = enum_type
        self.optional = optional
        if optional and 0 in enum_type._value2member_map_:
            raise CatalogueError(f"optional enum {enum_type.__name__} uses 0 for none, but 0 is one of its members")

    def _decode(self, obj: int, context: Any, path: str) -> enum.IntEnum | None:
        if self.optional and obj == 0:
            return None
        member = self.enum_type._value2member_map_.get(obj)
        if member is None:
            raise ValidationError(f"{obj} is not a {self.enum_type.__name__}: expected one of "
                                  f"{_enum_values(self.enum_type, self.optional)}", path=path)
        return member  # type: ignore[return-value]

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        if obj is None and self.optional:
            return 0
        member = (self.enum_type._value2member_map_.get(obj)
                  if isinstance(obj, int) and not isinstance(obj, bool) else None)
        if member is None:
            raise ValidationError(f"{obj!r} is not a {self.enum_type.__name__}", path=path)
        return int(member)  # type: ignore[call-overload]


class OptionalInt(Adapter):
    """An unsigned integer whose all-ones value stands for None (not measured, not known)."""

    def __init__(self, subcon: FormatField) -> None:
        super().__init__(subcon)
        fmt = subcon.fmtstr[1:]
        if fmt not in ("B", "H", "I", "L", "Q"):
            raise CatalogueError(f"OptionalInt needs an unsigned integer field, got format {subcon.fmtstr!r}")
        self.none_value = (1 << (8 * struct.calcsize("<" + fmt))) - 1

    def _decode(self, obj: int, context: Any, path: str) -> int | None:
        return None if obj == self.none_value else obj

    def _encode(self, obj: int | None, context: Any, path: str) -> int:
        if obj is None:
            return self.none_value
        if obj == self.none_value:
            raise ValidationError(f"{obj} is reserved for none", path=path)
        return obj


class Text(Adapter):
    """A short UTF-8 string: a u8 byte count, then the bytes; at most `max_bytes` of them."""

    def __init__(self, max_bytes: int) -> None:
        if not 0 < max_bytes <= 255:
            raise CatalogueError(f"Text(max_bytes={max_bytes}): expected 1..255 (a u8 length)")
        super().__init__(PascalString(Int8ul, "utf8"))
        self.max_bytes = max_bytes

    def _decode(self, obj: str, context: Any, path: str) -> str:
        if len(obj.encode("utf8")) > self.max_bytes:
            raise ValidationError(f"text of {len(obj.encode('utf8'))} bytes: expected at most {self.max_bytes}", path=path)
        return obj

    def _encode(self, obj: str, context: Any, path: str) -> str:
        if not isinstance(obj, str) or len(obj.encode("utf8")) > self.max_bytes:
            raise ValidationError(f"{obj!r}: expected a str of at most {self.max_bytes} UTF-8 bytes", path=path)
        return obj


class ListOf(Adapter):
    """A u8 item count, then the items; at most `max_items` of them."""

    def __init__(self, element: Construct, max_items: int) -> None:
        if not 0 < max_items <= 255:
            raise CatalogueError(f"ListOf(max_items={max_items}): expected 1..255 (a u8 count)")
        super().__init__(PrefixedArray(Int8ul, element))
        self.element = element
        self.max_items = max_items

    def _decode(self, obj: list, context: Any, path: str) -> list:
        if len(obj) > self.max_items:
            raise ValidationError(f"{len(obj)} items: expected at most {self.max_items}", path=path)
        return obj

    def _encode(self, obj: Any, context: Any, path: str) -> list:
        items = list(obj)
        if len(items) > self.max_items:
            raise ValidationError(f"{len(items)} items: expected at most {self.max_items}", path=path)
        return items


def record(name: str, *subcons: Construct) -> Struct:
    """A named Struct: nested records (a flex step, a log record) become named tuples of this name."""
    definition = Struct(*subcons)
    definition.record_name = name
    return definition


# ---- records ------------------------------------------------------------------------------------

class RecordBase(tuple):
    """Base of every message and nested record: a named tuple that never equals another record type.

    It equals a record of its own type, or a plain tuple of the same values (so a FlexStep is the
    model's `(start_tick, rate_nl_per_day)` pair); never a record of another type, so Ack(5) is
    not ProgramContinuous(5).
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(self) is type(other) or type(other) is tuple:
            return tuple.__eq__(self, other)  # type: ignore[arg-type]
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = tuple.__hash__


def _record_type(name: str, infos: tuple["FieldInfo", ...], doc: str) -> type:
    defaults = [f.default for f in infos]
    first_default = next((i for i, d in enumerate(defaults) if d is not MISSING), len(defaults))
    if any(d is MISSING for d in defaults[first_default:]):
        raise CatalogueError(f"{name}: fields with defaults must come last, as in the model's dataclasses")
    base = collections.namedtuple(name, [f.name for f in infos], defaults=defaults[first_default:] or None)
    cls = type(name, (RecordBase, base), {"__slots__": (), "__doc__": doc, "__module__": "protocol.messages"})
    return cls


# ---- describing a definition --------------------------------------------------------------------

UNITS: tuple[tuple[str, str], ...] = (
    # (name ends with, unit): the pump's units, read from the field's name
    ("_nl_per_day", "nL/day"),
    ("_ug_per_ml", "µg/mL"),
    ("_nl", "nL"),
    ("_ng", "ng"),
    ("_nc", "nC"),
    ("_pa", "Pa"),
    ("_10us", "10 µs"),
    ("_ticks", "ticks"),
    ("_tick", "ticks"),
    ("tick", "ticks"),
    ("_hz", "Hz"),
    ("_months_remaining", "months"),
)


def unit_of(name: str) -> str:
    """The unit a field's name carries (`rate_nl_per_day` -> nL/day), or "" for counts and codes."""
    for suffix, unit in UNITS:
        if name.endswith(suffix):
            return unit
    return ""


@dataclass(frozen=True)
class FieldInfo:
    """What one field (or a whole payload) is, derived from its construct definition.

    size: bytes when fixed, else None (then min_size..max_size); fmt: the `struct` format of a
    plain integer or bool field, or of a payload made only of those (None otherwise); lo..hi: the
    values an INT (or the raw integers an ENUM) may take; optional: None is a valid value;
    max_len: the byte limit of TEXT, the item limit of LIST, the size of BYTES.
    """

    name: str
    kind: Kind
    doc: str
    type_name: str
    size: int | None
    min_size: int
    max_size: int
    fmt: str | None = None
    lo: int = 0
    hi: int = 0
    optional: bool = False
    enum_type: type[enum.IntEnum] | None = None
    max_len: int = 0
    element: "FieldInfo | None" = None
    fields: tuple["FieldInfo", ...] = ()
    record: type | None = None
    default: Any = MISSING
    none_value: int | None = None
    construct: Construct | None = field(default=None, repr=False, compare=False)

    @property
    def unit(self) -> str:
        return unit_of(self.name)


_INT_NAMES = {"B": "u8", "H": "u16", "I": "u32", "L": "u32", "Q": "u64",
              "b": "i8", "h": "i16", "i": "i32", "l": "i32", "q": "i64"}


def _int_range(fmt: str) -> tuple[int, int]:
    bits = 8 * struct.calcsize("<" + fmt)
    return (0, (1 << bits) - 1) if fmt.isupper() else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _enum_values(enum_type: type[enum.IntEnum], optional: bool) -> str:
    names = ", ".join(f"{m.value} {m.name}" for m in enum_type)
    return f"0 (none), {names}" if optional else names


def describe(subcon: Construct, name: str = "", doc: str = "") -> FieldInfo:
    """Read a construct definition into a FieldInfo; refuse any construct the catalogue does not use."""
    default = MISSING
    while True:
        if isinstance(subcon, Renamed):
            name = subcon.name or name
            doc = subcon.docs or doc
            subcon = subcon.subcon
        elif isinstance(subcon, Default):
            default = subcon.value
            subcon = subcon.subcon
        else:
            break
    common = dict(name=name, doc=doc, default=default, construct=subcon)
    if isinstance(subcon, FormatField):
        if subcon.fmtstr[0] != "<" or subcon.fmtstr[1:] not in _INT_NAMES:
            raise CatalogueError(f"field {name!r}: format {subcon.fmtstr!r} is not a little-endian integer")
        fmt = subcon.fmtstr[1:]
        lo, hi = _int_range(fmt)
        size = struct.calcsize("<" + fmt)
        return FieldInfo(kind=Kind.INT, type_name=_INT_NAMES[fmt], size=size, min_size=size, max_size=size,
                         fmt=fmt, lo=lo, hi=hi, **common)
    if isinstance(subcon, BytesInteger):
        if not isinstance(subcon.length, int) or not subcon.swapped or subcon.signed:
            raise CatalogueError(f"field {name!r}: only fixed-length unsigned little-endian BytesInteger is used")
        size = subcon.length
        return FieldInfo(kind=Kind.INT, type_name=f"u{8 * size}", size=size, min_size=size, max_size=size,
                         lo=0, hi=(1 << (8 * size)) - 1, **common)
    if subcon is Flag:
        return FieldInfo(kind=Kind.BOOL, type_name="bool (u8 0 or 1)", size=1, min_size=1, max_size=1,
                         fmt="?", **common)
    if isinstance(subcon, EnumField):
        raw = describe(subcon.subcon)
        return FieldInfo(kind=Kind.ENUM, type_name=f"{raw.type_name} enum {subcon.enum_type.__name__}"
                         + (" (0: none)" if subcon.optional else ""),
                         size=raw.size, min_size=raw.min_size, max_size=raw.max_size, lo=raw.lo, hi=raw.hi,
                         optional=subcon.optional, enum_type=subcon.enum_type, **common)
    if isinstance(subcon, OptionalInt):
        raw = describe(subcon.subcon)
        return FieldInfo(kind=Kind.INT, type_name=f"{raw.type_name} ({subcon.none_value:#x}: none)",
                         size=raw.size, min_size=raw.min_size, max_size=raw.max_size, lo=raw.lo,
                         hi=raw.hi - 1, optional=True, none_value=subcon.none_value, **common)
    if isinstance(subcon, Text):
        return FieldInfo(kind=Kind.TEXT, type_name=f"str (u8 length, UTF-8, <= {subcon.max_bytes} bytes)",
                         size=None, min_size=1, max_size=1 + subcon.max_bytes, max_len=subcon.max_bytes, **common)
    if isinstance(subcon, ListOf):
        element = describe(subcon.element)
        return FieldInfo(kind=Kind.LIST, type_name=f"list (u8 count, <= {subcon.max_items}) of {element.type_name}",
                         size=None, min_size=1, max_size=1 + subcon.max_items * element.max_size,
                         max_len=subcon.max_items, element=element, **common)
    if isinstance(subcon, Bytes) and isinstance(subcon.length, int):
        n = subcon.length
        return FieldInfo(kind=Kind.BYTES, type_name=f"bytes[{n}]", size=n, min_size=n, max_size=n, max_len=n, **common)
    if isinstance(subcon, Struct):
        record_name = getattr(subcon, "record_name", None)
        if record_name is None:
            raise CatalogueError(f"field {name!r}: a nested Struct must be made with record(name, ...)")
        infos = tuple(describe(s) for s in subcon.subcons)
        return struct_info(record_name, infos, doc or record_name, subcon, name=name, default=default)
    raise CatalogueError(f"field {name!r}: {subcon!r} is not a construct the catalogue uses")


def struct_info(record_name: str, infos: tuple[FieldInfo, ...], doc: str, definition: Struct,
                name: str = "", default: Any = MISSING) -> FieldInfo:
    """The FieldInfo of a record (a payload or a nested record) and its named-tuple type."""
    for info in infos:
        if not info.name:
            raise CatalogueError(f"{record_name}: every field needs a name")
    fixed = all(f.size is not None for f in infos)
    plain = all(f.kind in (Kind.INT, Kind.BOOL) and f.fmt is not None and not f.optional for f in infos)
    return FieldInfo(name=name, kind=Kind.STRUCT, doc=doc, type_name=record_name,
                     size=sum(f.size for f in infos) if fixed else None,  # type: ignore[misc]
                     min_size=sum(f.min_size for f in infos), max_size=sum(f.max_size for f in infos),
                     fmt="".join(f.fmt for f in infos) if plain else None,  # type: ignore[misc]
                     fields=infos, record=_record_type_of(definition, record_name, infos, doc),
                     default=default, construct=definition)


def _record_type_of(definition: Struct, record_name: str, infos: tuple[FieldInfo, ...], doc: str) -> type:
    """One named-tuple type per definition, however many messages hold it (types compare strictly)."""
    cls = getattr(definition, "record_type", None)
    if cls is None:
        cls = _record_type(record_name, infos, doc)
        definition.record_type = cls
    return cls


# ---- checks and conversions ---------------------------------------------------------------------

def check(info: FieldInfo, value: Any, path: str) -> None:
    """Raise EncodeError naming `path`, the value and what was expected, unless `value` fits `info`."""
    kind = info.kind
    if value is None and info.optional:
        return
    if kind is Kind.INT:
        if not isinstance(value, int) or isinstance(value, bool) or not info.lo <= value <= info.hi:
            none = " or None" if info.optional else ""
            raise EncodeError(f"{path} = {value!r}: expected an integer in {info.lo}..{info.hi} ({info.type_name}){none}")
    elif kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise EncodeError(f"{path} = {value!r}: expected True or False")
    elif kind is Kind.ENUM:
        assert info.enum_type is not None
        if not isinstance(value, int) or isinstance(value, bool) or value not in info.enum_type._value2member_map_:
            raise EncodeError(f"{path} = {value!r}: expected a member of {info.enum_type.__name__} "
                              f"({_enum_values(info.enum_type, info.optional)})")
    elif kind is Kind.TEXT:
        if not isinstance(value, str) or len(value.encode("utf8")) > info.max_len:
            raise EncodeError(f"{path} = {value!r}: expected a str of at most {info.max_len} UTF-8 bytes")
    elif kind is Kind.BYTES:
        if not isinstance(value, (bytes, bytearray)) or len(value) != info.max_len:
            raise EncodeError(f"{path} = {value!r}: expected {info.max_len} bytes")
    elif kind is Kind.LIST:
        if not isinstance(value, (tuple, list)) or len(value) > info.max_len:
            raise EncodeError(f"{path} = {value!r}: expected a tuple of at most {info.max_len} items")
        assert info.element is not None
        for i, item in enumerate(value):
            check(info.element, item, f"{path}[{i}]")
    elif kind is Kind.STRUCT:
        if not isinstance(value, tuple) or len(value) != len(info.fields):
            names = ", ".join(f.name for f in info.fields)
            raise EncodeError(f"{path} = {value!r}: expected a {info.type_name} ({names})")
        for sub, item in zip(info.fields, value):
            check(sub, item, f"{path}.{sub.name}")


def from_parsed(info: FieldInfo, obj: Any) -> Any:
    """What construct parsed (Containers, lists) as the protocol's values (records, tuples)."""
    if info.kind is Kind.STRUCT:
        return info.record._make([from_parsed(f, obj[f.name]) for f in info.fields])  # type: ignore[union-attr]
    if info.kind is Kind.LIST:
        return tuple(from_parsed(info.element, x) for x in obj)  # type: ignore[arg-type]
    if info.kind is Kind.BYTES:
        return bytes(obj)
    return obj


def to_buildable(info: FieldInfo, value: Any) -> Any:
    """A checked value as construct builds it: dicts for records, lists for lists."""
    if info.kind is Kind.STRUCT:
        return {f.name: to_buildable(f, v) for f, v in zip(info.fields, value)}
    if info.kind is Kind.LIST:
        return [to_buildable(info.element, x) for x in value]  # type: ignore[arg-type]
    return value


# ---- random valid values, for fuzzing and property tests ------------------------------------------

RANDOM_TEXT = "az09 ,;:\"'\\µé日-\t"   # ASCII, quotes and escapes, two- and three-byte UTF-8


def random_value(info: FieldInfo, rng: random.Random) -> Any:
    """A valid value of a field (or a whole message) from its description, the extremes of its
    range now and then; texts cut to their byte limit at a character boundary."""
    if info.optional and rng.random() < 0.25:
        return None
    if info.kind is Kind.INT:
        return rng.choice([info.lo, info.hi, rng.randint(info.lo, info.hi)])
    if info.kind is Kind.BOOL:
        return rng.random() < 0.5
    if info.kind is Kind.ENUM:
        assert info.enum_type is not None
        return rng.choice(list(info.enum_type))
    if info.kind is Kind.TEXT:
        text = "".join(rng.choice(RANDOM_TEXT) for _ in range(rng.randint(0, info.max_len)))
        return text.encode("utf8")[:info.max_len].decode("utf8", "ignore")
    if info.kind is Kind.BYTES:
        return rng.randbytes(info.max_len)
    if info.kind is Kind.LIST:
        assert info.element is not None
        return tuple(random_value(info.element, rng) for _ in range(rng.randint(0, min(info.max_len, 8))))
    return info.record._make(random_value(f, rng) for f in info.fields)  # type: ignore[union-attr]
