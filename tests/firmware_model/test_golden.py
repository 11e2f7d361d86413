"""Determinism: a year of each example writes the very event log checked in under tests/golden/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from regenerate import EXAMPLES, GOLDEN, golden_log  # noqa: E402

from firmware_model.event_log import RECORD_SIZE, LogCode, Record  # noqa: E402


@pytest.mark.parametrize("name", EXAMPLES)
def test_year_log_is_byte_identical(name: str) -> None:
    expected = (GOLDEN / f"{name}.log").read_bytes()
    got = golden_log(name)
    if got != expected:
        first = next(i for i in range(min(len(got), len(expected)) + 1)
                     if got[i:i + 1] != expected[i:i + 1])
        index = first // RECORD_SIZE
        raise AssertionError(f"{name}: log differs from golden at record {index} (byte {first}); "
                             f"got {len(got)} bytes, golden {len(expected)}: "
                             f"golden {Record.unpack(expected[index * RECORD_SIZE:(index + 1) * RECORD_SIZE]) if index * RECORD_SIZE < len(expected) else 'end'}")


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden_log_reads_back(name: str) -> None:
    """Every golden record passes its CRC, sequence numbers run without a gap, ticks never go back."""
    data = (GOLDEN / f"{name}.log").read_bytes()
    assert len(data) % RECORD_SIZE == 0 and data
    records = [Record.unpack(data[i:i + RECORD_SIZE]) for i in range(0, len(data), RECORD_SIZE)]
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + len(records)))
    assert all(a.tick <= b.tick for a, b in zip(records, records[1:]))
    assert records[0].code == LogCode.POWER_ON
    assert any(r.code == LogCode.REFILL for r in records)
