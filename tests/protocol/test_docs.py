"""docs/protocol.md is generated from the definitions and checked in: it must not drift."""

from __future__ import annotations

from pathlib import Path

from protocol import messages as m
from protocol.docs import render_protocol_doc, write_protocol_doc
from protocol.enums import NakReason
from protocol.errors import BadFrame

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
REGENERATE = ".venv/bin/python -c \"from protocol.docs import write_protocol_doc; write_protocol_doc('docs/protocol.md')\""


def test_the_checked_in_reference_is_what_the_definitions_give() -> None:
    assert DOC.read_text(encoding="utf-8") == render_protocol_doc(), (
        f"docs/protocol.md is out of date; regenerate it with `ithil protocol docs` or {REGENERATE}")


def test_the_reference_names_every_message_field_id_unit_and_nak_reason() -> None:
    doc = render_protocol_doc()
    for spec in m.CATALOGUE.values():
        assert f"### {spec.msg_id:#04x} {spec.name}\n" in doc
        for field in spec.info.fields:
            assert f"| `{field.name}` | {field.type_name.replace('|', chr(92) + '|')} | {field.unit or '—'} |" in doc
    for reason in NakReason:
        assert f"| {reason.value} | `{reason.name}` |" in doc
    for bad in BadFrame:
        assert f"| `{bad.value}` |" in doc
    assert "CRC-32/ISO-HDLC" in doc and "0xcbf43926" in doc
    assert "| 2 | `seq` | u16 |" in doc  # the header, with offsets
    assert "| `rate_nl_per_day` | u32 | nL/day |" in doc


def test_write_protocol_doc_writes_the_rendered_text(tmp_path: Path) -> None:
    target = write_protocol_doc(tmp_path / "docs" / "protocol.md")
    assert target.read_text(encoding="utf-8") == render_protocol_doc()
