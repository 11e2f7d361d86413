"""docs/protocol.md, rendered from the definitions: frames, signing, enums and every message.

Nothing here is written twice: field names, types, sizes, units (read from the field names),
descriptions (construct docstrings), ids, access and answers all come from the catalogue, so
the reference cannot drift from the code; tests/protocol/test_docs.py fails when the checked-in
file differs from what `render_protocol_doc()` gives.
"""

from __future__ import annotations

import enum
from pathlib import Path

from .crc import CRC_CHECK, CRC_INIT, CRC_NAME, CRC_POLY, CRC_RESIDUE, CRC_SIZE, CRC_XOROUT, GOOD_FRAME_CRC
from .enums import NAK_MEANINGS, Access, AlarmCode, BolusKind, DenyReason, Mode, NakReason, Role
from .errors import BadFrame, FrameError
from .fastpath import FAST_CODECS, HOT_MESSAGES
from .fields import MISSING, FieldInfo, Kind
from .framing import (FLAG_MORE, FLAG_SIGNED, HEADER_INFO, MAC_SIZE, MAX_ENCODED_FRAME, MAX_FRAME, SIGNATURE_INFO,
                      SIGNATURE_SIZE)
from .messages import CATALOGUE, MAX_PAYLOAD, PROTOCOL_VERSION, SUPPORTED_VERSIONS, MessageSpec
from .signing import SECRET_SIZE

_NAK_FOR_BAD_FRAME = {
    BadFrame.COBS: "none (no header to answer)",
    BadFrame.LENGTH: "MALFORMED (none when the frame is too short or too long to hold a header)",
    BadFrame.CRC: "BAD_CRC",
    BadFrame.VERSION: "UNSUPPORTED_VERSION",
    BadFrame.UNKNOWN_ID: "UNKNOWN_ID",
    BadFrame.PAYLOAD: "MALFORMED",
    BadFrame.SIGNATURE: "UNSIGNED, BAD_SIGNATURE, REPLAY or ROLE_NOT_ALLOWED",
}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _unit(info: FieldInfo) -> str:
    return info.unit or "—"


def _size(info: FieldInfo) -> str:
    if info.size is not None:
        return f"{info.size} byte" + ("" if info.size == 1 else "s")
    return f"{info.min_size}..{info.max_size} bytes"


def _field_table(info: FieldInfo) -> list[str]:
    """A table of a record's fields: offset (while fixed), name, type, unit, meaning."""
    if not info.fields:
        return ["No payload (0 bytes).", ""]
    lines = ["| offset | field | type | unit | meaning |", "|---:|---|---|---|---|"]
    offset: int | None = 0
    for f in info.fields:
        where = str(offset) if offset is not None else "—"
        extra = ""
        if f.default is not MISSING:
            extra = " (default: none)" if f.default is None else f" (default: {f.default!r})"
        lines.append(f"| {where} | `{f.name}` | {_cell(f.type_name)} | {_unit(f)} | {_cell(f.doc)}{extra} |")
        offset = offset + f.size if offset is not None and f.size is not None else None
    lines.append("")
    return lines


def _records(specs: list[MessageSpec]) -> list[FieldInfo]:
    """Nested records (FlexStep, ...), each once, in order of first use."""
    found: dict[str, FieldInfo] = {}

    def walk(info: FieldInfo) -> None:
        for f in info.fields:
            target = f.element if f.kind is Kind.LIST else f
            if target is not None and target.kind is Kind.STRUCT and target.type_name not in found:
                found[target.type_name] = target
                walk(target)

    for spec in specs:
        walk(spec.info)
    return list(found.values())


def _enum_table(enum_type: type[enum.IntEnum], meanings: dict | None = None) -> list[str]:
    head = "| value | name | meaning |" if meanings else "| value | name |"
    lines = [f"### {enum_type.__name__}", "", _cell(enum_type.__doc__ or ""), "", head,
             "|---:|---|---|" if meanings else "|---:|---|"]
    for member in enum_type:
        row = f"| {member.value} | `{member.name}` |"
        if meanings:
            row += f" {_cell(meanings[member])} |"
        lines.append(row)
    lines.append("")
    return lines


def render_protocol_doc() -> str:
    """The protocol reference as markdown (docs/protocol.md)."""
    specs = list(CATALOGUE.values())
    out: list[str] = []
    add = out.extend
    add([
        f"# ithil wire protocol, version {PROTOCOL_VERSION}",
        "",
        "Generated from the construct definitions in `protocol/` by `ithil protocol docs` "
        "(`protocol.docs.render_protocol_doc`). Do not edit by hand: `tests/protocol/test_docs.py` fails "
        "when this file and the definitions differ.",
        "",
        "Units: ticks are of the pump's 32,768 Hz crystal (u64, they pass 2^32 after 36 hours); volumes in "
        "nL, rates in nL/day, concentrations in µg/mL, doses in ng, charge in nC, pressure in Pa. "
        "All integers are little-endian.",
        "",
        "## Frames",
        "",
        "```",
        "COBS( header | payload | signature (if signed) | CRC ) 0x00",
        "```",
        "",
        "Each frame is COBS-encoded (no zero byte inside) and ends with one 0x00, so a receiver "
        "resynchronises at the next zero after any corruption. Sizes: header "
        f"{HEADER_INFO.size} bytes, payload at most {MAX_PAYLOAD} bytes, signature {SIGNATURE_SIZE} bytes, "
        f"CRC {CRC_SIZE} bytes; a frame is at most {MAX_FRAME} bytes before COBS and {MAX_ENCODED_FRAME} "
        "after (plus the delimiter). Two delimiters in a row make an empty frame, which is ignored.",
        "",
        "### Header",
        "",
    ])
    add(_field_table(HEADER_INFO))
    add([
        f"Flags: bit 0 (`{FLAG_SIGNED:#04x}`) signed; bit 1 (`{FLAG_MORE:#04x}`) more answers to this seq "
        f"follow; the other bits are 0 in version {PROTOCOL_VERSION}, and a frame with any of them set is "
        "refused as a version it does not speak.",
        "",
        "### Signature (signed frames only)",
        "",
    ])
    add(_field_table(SIGNATURE_INFO))
    add([
        "### CRC",
        "",
        f"{CRC_NAME} (poly `{CRC_POLY:#010x}`, init `{CRC_INIT:#010x}`, reflected in and out, xorout "
        f"`{CRC_XOROUT:#010x}`; check value `{CRC_CHECK:#010x}` for the ASCII bytes \"123456789\", residue "
        f"`{CRC_RESIDUE:#010x}`), over header, payload and signature, stored little-endian. It is zlib's "
        f"`crc32`; the CRC of a whole good frame, CRC included, is `{GOOD_FRAME_CRC:#010x}`.",
        "",
        "## Versions",
        "",
        f"Supported protocol versions: {', '.join(map(str, SUPPORTED_VERSIONS))}. A host opens a session "
        "with `Hello` (min and max version it speaks) sent with header version 1; the pump answers "
        "`HelloReply` with the newest version both speak, or `Nak` UNSUPPORTED_VERSION. Message ids are "
        "stable: a new message takes a new id, a changed layout takes a new message or a new protocol "
        "version; no id is ever reused.",
        "",
        "## Sequence numbers and answers",
        "",
        "A command carries a sequence number; its answers (`Ack`, `AckSoftLimits`, `Nak`, or its own "
        "answer messages) carry the same one. A command may have several answers (a clinician bolus: "
        "`Ack` then `BolusGranted`): all but the last have the more flag set. A host that gets no answer sends the command again with "
        "the same seq (and, if signed, a new signature); a pump that sees a seq again answers again "
        "without doing the command twice. `Telemetry` has its own counter in its payload and seq 0.",
        "",
        "## Signing and roles",
        "",
        f"As MAVLink 2 signs frames: a {SECRET_SIZE}-byte secret per key; the signature block holds the "
        "link id, the key id, a 48-bit timestamp (10 µs units since 2015-01-01 00:00 UTC by default) and "
        f"the first {MAC_SIZE} bytes of HMAC-SHA256(secret, header | payload | link id | key id | "
        "timestamp). The header's signed flag is set before the MAC is computed. A pump accepts a "
        "frame only when: it is signed, unless the message's access is OPEN; the key id is known and "
        "the MAC verifies; the timestamp is newer than the last accepted for that key and link; the "
        "key's role reaches the message's access.",
        "",
        "| role | may send |",
        "|---|---|",
    ])
    for role in Role:
        allowed = [s.name for s in specs if s.direction.name == "TO_PUMP" and role >= s.access]
        add([f"| {role.name} | {', '.join(f'`{n}`' for n in allowed)} |"])
    add([
        "",
        "Messages with access OPEN need no signature: "
        + ", ".join(f"`{s.name}`" for s in specs if s.direction.name == "TO_PUMP" and s.access is Access.OPEN)
        + ", and every message the pump sends.",
        "",
        "## Bad frames",
        "",
        "The streaming decoder never raises: it counts each dropped frame under one reason, and the "
        "frames seen equal the good frames plus the sum of the counters. A pump answers a dropped frame "
        "whose header it could read with `Nak`.",
        "",
        "| counter | when | Nak reason |",
        "|---|---|---|",
    ])
    by_reason = {cls.reason: cls for cls in FrameError.__subclasses__()}
    for reason in BadFrame:
        add([f"| `{reason.value}` | {_cell(by_reason[reason].__doc__ or '')} | {_NAK_FOR_BAD_FRAME[reason]} |"])
    add(["", "## Enumerations", ""])
    add(_enum_table(NakReason, NAK_MEANINGS))
    for enum_type in (Mode, BolusKind, DenyReason, AlarmCode, Role, Access):
        add(_enum_table(enum_type))
    add([
        "## Message catalogue",
        "",
        f"Fast path: the payload is flat (fixed-size fields, texts, counted lists of fixed-size items), so "
        f"a codec generated from its construct definition (`struct` runs, enum tables) encodes it and "
        f"decodes it after the CRC check, construct deciding any payload it refuses; the hot messages "
        f"are {', '.join(HOT_MESSAGES)}.",
        "",
        "| id | message | direction | access | test mode | payload | fast path | answered by |",
        "|---:|---|---|---|---|---|---|---|",
    ])
    for s in specs:
        add([f"| `{s.msg_id:#04x}` | [{s.name}](#{s.msg_id:#04x}-{s.name.lower()}) | {s.direction.value} | "
             f"{s.access.name} | {'yes' if s.test_mode else ''} | {_size(s.info)} | "
             f"{'yes' if s.msg_id in FAST_CODECS else ''} | {', '.join(s.answers)} |"])
    add([""])
    for s in specs:
        facts = [f"{s.direction.value}", f"access {s.access.name}", f"payload {_size(s.info)}"]
        if s.test_mode:
            facts.append("test mode only (Nak NOT_IN_TEST_MODE otherwise)")
        if s.model:
            facts.append(f"mirrors `firmware_model.{s.model}`")
        if s.answers:
            facts.append("answered by " + ", ".join(f"`{a}`" for a in s.answers))
        add([f"### {s.msg_id:#04x} {s.name}", "", _cell(s.summary), "", "; ".join(facts) + ".", ""])
        add(_field_table(s.info))
    add(["## Records", "", "Records nested in messages.", ""])
    for rec in _records(specs):
        add([f"### {rec.type_name}", "", f"{_size(rec)}.", ""])
        add(_field_table(rec))
    return "\n".join(out).rstrip("\n") + "\n"


def write_protocol_doc(path: str | Path) -> Path:
    """Write the reference to `path` (docs/protocol.md); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_protocol_doc(), encoding="utf-8")
    return target
