"""The fast path: codecs derived from the catalogue's construct definitions, compiled once.

Every message whose payload is flat gets one. Flat: each field is a fixed-size scalar (an
integer or bool: Int8ul..Int64ul, Int32sl, Flag; an `EnumField`; an `OptionalInt`; `Bytes(n)`),
a `Text` (u8 byte count, UTF-8), or a `ListOf` (u8 count) whose items are fixed-size scalars or
records made only of them (a FlexStep, a LogRecord); `Default` wrappers change nothing on the
wire. That is every message but AckSoftLimits (a list of texts), which construct alone reads.

From a message's FieldInfo, Python source for `pack`, `unpack` and `unpack_from` is generated and
compiled once (construct compiles its own definitions the same way; `FastCodec.source` shows
it): each run of fixed-size fields is one `struct.Struct` (Int32ul -> "L", Flag -> "?",
Bytes(12) -> "12s"), then enum members are looked up (a wire value that is not one raises, as
construct's EnumField does; 0 is None for an optional enum) and an OptionalInt's all-ones value
becomes None; a text is a count, a byte limit and a strict UTF-8 decode; a list is a count, an
item limit and `iter_unpack`. Values are construct's: the message's own record type, the same
enum members, tuples for lists, str, bytes, None. A malformed payload (short, trailing bytes,
a count over its limit, bad UTF-8, an unknown enum value) raises one of MALFORMED.

A payload made only of plain integers and bools (Telemetry, Ack, most commands) also keeps its
whole-payload `struct` (FastCodec.struct), which the decoder unpacks inline, the hottest case.

Who uses it: `framing.encode_payload` packs with it (after the same `spec.check` construct's
path runs, so the same EncodeError); the streaming decoder reads with it after the CRC check,
for frames of version 1, unsigned or signed, whose payload size is within the message's range,
and hands any payload it refuses to construct (`framing.decode_inner`), whose verdict and
reason then count. tests/protocol prove fast and construct agree: random valid messages both
ways, and random and mutated payloads accepted alike and read alike.
"""

from __future__ import annotations

import linecache
import struct
from typing import Any, Callable, Iterable

from construct import FormatField

from .errors import CatalogueError
from .fields import FieldInfo, Kind
from .messages import CATALOGUE, MessageSpec

HOT_MESSAGES = ("Telemetry", "Ack", "StatusReport")  # must have a fast path (checked below)

MALFORMED: tuple[type[Exception], ...] = (struct.error, IndexError, KeyError, ValueError)
"""What a fast unpack raises on a malformed payload (UnicodeDecodeError is a ValueError)."""


def struct_of(info: FieldInfo) -> struct.Struct | None:
    """The little-endian struct of a record made only of plain integer and bool fields, else None."""
    return struct.Struct("<" + info.fmt) if info.fmt is not None else None


def scalar_format(info: FieldInfo) -> str | None:
    """The struct format of a fixed-size scalar field (integer, bool, enum, optional integer,
    bytes), or None for anything else (text, list, record, BytesInteger)."""
    if info.kind in (Kind.INT, Kind.BOOL) and info.fmt is not None:
        return info.fmt
    if info.kind is Kind.BYTES:
        return f"{info.max_len}s"
    if info.kind is Kind.ENUM or info.none_value is not None:  # EnumField, OptionalInt: their raw integer
        raw = getattr(info.construct, "subcon", None)
        return raw.fmtstr[1:] if isinstance(raw, FormatField) else None
    return None


def item_format(info: FieldInfo) -> str | None:
    """The struct format of a list item: a fixed-size scalar or a record made only of them."""
    if info.kind is Kind.STRUCT:
        formats = [scalar_format(f) for f in info.fields]
        return None if None in formats else "".join(formats)  # type: ignore[arg-type]
    return scalar_format(info)


def _names(names: Iterable[str]) -> str:
    """Targets of an assignment: `a, b` (or `a,`)."""
    names = list(names)
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _tuple(items: Iterable[str]) -> str:
    """A tuple display: `(a, b)`, `(a,)` or `()`."""
    return f"({_names(items)})"


class _Generator:
    """Writes one message's reader and writer, field by field, as Python source.

    The reader reads at `o + k`: `o` moves past each count and what it counts, `k` is the bytes
    of fixed-size fields since. A run of fixed-size fields is one struct; their values are
    converted (enum members, none values) in the message's tuple at the end.
    """

    def __init__(self, spec: MessageSpec) -> None:
        self.spec = spec
        self.names: dict[str, Any] = {"_new": tuple.__new__, "_count": struct.Struct("<B").pack}
        self.reading: list[str] = []   # statements of unpack_from
        self.values: list[str] = []    # the message's values, from what was read
        self.writing: list[str] = []   # statements of pack before its join (a text encoded once)
        self.parts: list[str] = []     # expressions whose bytes, joined, are the payload
        self.run: list[tuple[int, FieldInfo, str]] = []
        self.k = 0

    def name(self, prefix: str, value: Any) -> str:
        """A name for a constant of the generated code (a struct, an enum table, a type)."""
        name = f"_{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def at(self) -> str:
        return f"o + {self.k}" if self.k else "o"

    def decoded(self, info: FieldInfo, raw: str) -> str:
        """The expression of a field's value from the raw value struct unpacked, `raw`."""
        if info.kind is Kind.ENUM:
            assert info.enum_type is not None
            members: dict[int, Any] = dict(info.enum_type._value2member_map_)
            if info.optional:
                members[0] = None
            return f"{self.name('members', members)}[{raw}]"  # KeyError: not a member, as EnumField refuses
        if info.none_value is not None:
            return f"(None if {raw} == {info.none_value:#x} else {raw})"
        return raw

    @staticmethod
    def encoded(info: FieldInfo, value: str) -> str:
        """The expression of the raw value struct packs for a field's checked value, `value`."""
        if info.kind is Kind.ENUM and info.optional:
            return f"(0 if {value} is None else {value})"
        if info.none_value is not None:
            return f"({info.none_value:#x} if {value} is None else {value})"
        return value

    def field(self, i: int, info: FieldInfo) -> bool:
        """Add field `i` (named f{i} in the code); False when it is not flat."""
        fmt = scalar_format(info)
        if fmt is not None:
            self.run.append((i, info, fmt))
            self.values.append(self.decoded(info, f"f{i}"))
            return True
        if info.kind is Kind.TEXT:
            self.count(info, "bytes")
            self.reading += [f"f{i} = b[o:o + n].decode()", "o += n"]  # strict UTF-8, as PascalString's
            self.writing.append(f"t{i} = f{i}.encode()")
            self.parts += [f"_count(len(t{i}))", f"t{i}"]
        elif info.kind is Kind.LIST and info.element is not None and item_format(info.element) is not None:
            self.items(i, info, info.element)
        else:
            return False  # a nested record, a list of texts: construct's
        self.values.append(f"f{i}")
        return True

    def fixed(self) -> None:
        """Read and write the run of fixed-size fields so far with one struct."""
        if not self.run:
            return
        packer = struct.Struct("<" + "".join(fmt for _, _, fmt in self.run))
        s = self.name("s", packer)
        self.reading.append(f"{_names(f'f{i}' for i, _, _ in self.run)} = {s}.unpack_from(b, {self.at()})")
        self.parts.append(f"{s}.pack({', '.join(self.encoded(f, f'f{i}') for i, f, _ in self.run)})")
        self.k += packer.size
        self.run.clear()

    def count(self, info: FieldInfo, what: str) -> None:
        """The u8 count of a text or list, refused over its limit; `o` moves past it."""
        self.fixed()
        self.reading.append(f"n = b[{self.at()}]")
        if info.max_len < 255:
            self.reading.append(f"if n > {info.max_len}: raise ValueError("
                                f"f'{self.spec.name}.{info.name}: {{n}} {what}, at most {info.max_len}')")
        self.reading.append(f"o += {self.k + 1}")
        self.k = 0

    def items(self, i: int, info: FieldInfo, item: FieldInfo) -> None:
        """A list of fixed-size scalars or records: `iter_unpack` over count x item size bytes."""
        packer = struct.Struct("<" + item_format(item))  # type: ignore[operator]
        e = self.name("item", packer)
        self.count(info, "items")
        size = f"n * {packer.size}" if packer.size > 1 else "n"
        if item.kind is Kind.STRUCT:
            xs = [f"x{j}" for j in range(len(item.fields))]
            read, each = _names(xs), _names(xs)
            record = self.name("R", item.record)
            value = f"_new({record}, {_tuple(self.decoded(f, x) for f, x in zip(item.fields, xs))})"
            written = ", ".join(self.encoded(f, x) for f, x in zip(item.fields, xs))
        else:  # iter_unpack gives 1-tuples
            read, each = "x,", "x"
            value, written = self.decoded(item, "x"), self.encoded(item, "x")
        self.reading += [f"f{i} = tuple([{value} for {read} in {e}.iter_unpack(b[o:o + {size}])])", f"o += {size}"]
        self.parts += [f"_count(len(f{i}))", f"b''.join([{e}.pack({written}) for {each} in f{i}])"]

    def source(self) -> str:
        """The three functions: unpack_from(b, o, end), unpack(b) (all of b), pack(m)."""
        name, info = self.spec.name, self.spec.info
        message_type = self.name("T", self.spec.type)
        if info.fmt is not None:  # plain integers and bools: the whole payload's struct, nothing to convert
            s = self.name("s", struct_of(info))
            self.k = info.size  # type: ignore[assignment]
            reading = [f"if {self.at()} != end: raise ValueError('{name}: expected {info.size} bytes')",
                       f"return _new({message_type}, {s}.unpack_from(b, o))"]
            whole = [f"return _new({message_type}, {s}.unpack(b))"]  # struct.error unless exactly the size
            writing = [f"return {s}.pack(*m)"]
        else:
            self.fixed()
            reading = [*self.reading,
                       f"if {self.at()} != end: raise ValueError('{name}: the payload does not end with its last "
                       "field')",
                       f"return _new({message_type}, {_tuple(self.values)})"]
            whole = ["o, end = 0, len(b)", *reading]  # unpack_from's reading, inline: one call the fewer
            writing = [f"{_names(f'f{i}' for i in range(len(info.fields)))} = m", *self.writing,
                       f"return {self.parts[0]}" if len(self.parts) == 1 else f"return b''.join({_tuple(self.parts)})"]
        return "\n".join([
            "def unpack_from(b, o, end):",
            f'    """The {name} in b[o:end], which must hold exactly one; else one of MALFORMED."""',
            *(f"    {line}" for line in reading),
            "",
            "def unpack(b):",
            f'    """The {name} in a payload, which must hold exactly one; else one of MALFORMED."""',
            *(f"    {line}" for line in whole),
            "",
            "def pack(m):",
            f'    """The payload of a checked {name}."""',
            *(f"    {line}" for line in writing),
            "",
        ])


def generate(spec: MessageSpec) -> tuple[str, dict[str, Any]] | None:
    """Source of `unpack_from(b, o, end)`, `unpack(b)` and `pack(m)` for a message whose payload
    is flat, and the constants it names; None otherwise."""
    gen = _Generator(spec)
    if not all(gen.field(i, info) for i, info in enumerate(spec.info.fields)):
        return None
    return gen.source(), gen.names


class FastCodec:
    """Pack and unpack one message's payload with code derived from its definition.

    size: the payload's bytes when fixed, else None (then min_size..max_size); struct: the whole
    payload's struct when it is plain integers and bools, else None.
    """

    __slots__ = ("spec", "type", "size", "min_size", "max_size", "struct", "source", "unpack", "unpack_from",
                 "_pack")

    def __init__(self, spec: MessageSpec, source: str, names: dict[str, Any]) -> None:
        self.spec = spec
        self.type = spec.type  # made with tuple.__new__(type, values): C only, unlike namedtuple's _make
        self.size = spec.info.size
        self.min_size = spec.info.min_size
        self.max_size = spec.info.max_size
        self.struct = struct_of(spec.info)
        self.source = source
        filename = f"<fastpath {spec.name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
        namespace = dict(names)
        exec(compile(source, filename, "exec"), namespace)
        self.unpack: Callable[[bytes], Any] = namespace["unpack"]
        self.unpack_from: Callable[[bytes, int, int], Any] = namespace["unpack_from"]
        self._pack: Callable[[Any], bytes] = namespace["pack"]

    def pack(self, message: Any) -> bytes:
        """The payload of `message`, checked as construct's path checks it (EncodeError)."""
        self.spec.check(message)
        return self._pack(message)


def fast_codec(spec: MessageSpec) -> FastCodec | None:
    """The fast codec of a message whose payload is flat, else None."""
    generated = generate(spec)
    return FastCodec(spec, *generated) if generated is not None else None


FAST_CODECS: dict[int, FastCodec] = {}
for _spec in CATALOGUE.values():
    _codec = fast_codec(_spec)
    if _codec is not None:
        FAST_CODECS[_spec.msg_id] = _codec

_missing = [name for name in HOT_MESSAGES if not any(c.spec.name == name for c in FAST_CODECS.values())]
if _missing:
    raise CatalogueError(f"hot messages without a fast path: {_missing}; keep their payloads flat (see fastpath.py)")
