"""Judge a device against the reference model: steps, volume, pressure, alarms, answers and the log.

Each function compares one kind of observation made at the same tick on both and returns the
first Divergence beyond the rig's tolerances, or None. Exact on the emulator (every tolerance 0);
a board's rig file widens them: steps, volume_nl (reservoir, delivered), pressure_pa, alarm_ticks
(the tick of an alarm record, and of any *_tick answer field) and the log ("exact": every record
byte for byte; "codes": the codes in order and their ticks within alarm_ticks) and the free texts
of answers (texts = "exact": a denial's detail, a refusal's value and expected texts worded as the
model words them; "ignore": not compared). When alarms may
be late by alarm_ticks, the alarm bits of telemetry are not compared (the log times them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from firmware_model.commands import BolusDenied
from firmware_model.event_log import LogCode, Record

from .rig import Tolerances
from .verdicts import Divergence

# the log records a rig compares: what the pump decided and did (not its internal checkpoints
# and command blobs, whose bytes a firmware lays out its own way) unless the rig says "exact"
JUDGED_CODES = frozenset(LogCode) - {LogCode.CHECKPOINT, LogCode.COMMAND}


@dataclass(frozen=True)
class Refusal:
    """A command a pump refused, as both sides report it: the Nak's reason and field, and its
    value and expected texts (blank where a link-level Nak's wording is the pump's own)."""

    reason: str
    field: str
    value: str = ""
    expected: str = ""


# the free texts of answers, compared only where the rig's tolerances say texts = "exact"
FREE_TEXTS: dict[type, frozenset[str]] = {BolusDenied: frozenset({"detail"}),
                                          Refusal: frozenset({"value", "expected"})}


def _within(name: str, expected: int, got: int, tolerance: int) -> str | None:
    return None if abs(got - expected) <= tolerance else name


def _tol(quantity: str, tol: Tolerances) -> tuple[int, str]:
    """The tolerance of a named quantity, and how to say it."""
    if quantity.endswith("steps"):
        value = tol.steps
    elif quantity.endswith("_nl") or quantity.endswith("_ng"):
        value = tol.volume_nl
    elif quantity.endswith("_pa"):
        value = tol.pressure_pa
    elif quantity.endswith("_tick") or quantity.endswith("_ticks"):
        value = tol.alarm_ticks
    else:
        return 0, "exact"
    return value, ("exact" if value == 0 else f"±{value}")


def compare_values(prefix: str, expected: Any, got: Any, tol: Tolerances, tick: int,
                   skip: frozenset[str] = frozenset()) -> Divergence | None:
    """Field by field (dataclasses or named tuples), numbers within their tolerance, the rest exact."""
    if type(expected) is not type(got):
        return Divergence(tick, prefix or "answer", _show(expected), _show(got))
    names = ([f.name for f in dataclasses.fields(expected)] if dataclasses.is_dataclass(expected)
             else list(getattr(expected, "_fields", ())))
    if not names:
        return None if expected == got else Divergence(tick, prefix, _show(expected), _show(got))
    if tol.texts == "ignore":   # free text a firmware words its own way
        skip = skip | FREE_TEXTS.get(type(expected), frozenset())
    for name in names:
        if name in skip:
            continue
        e, g = getattr(expected, name), getattr(got, name)
        quantity = f"{prefix}.{name}" if prefix else name
        allowed, said = _tol(name, tol)
        if isinstance(e, int) and isinstance(g, int) and not isinstance(e, bool) and allowed:
            if abs(g - e) > allowed:
                return Divergence(tick, quantity, e, g, said)
        elif e != g:
            return Divergence(tick, quantity, _show(e), _show(g), said)
    return None


def compare_telemetry(expected: Any, got: Any, tol: Tolerances) -> Divergence | None:
    """A Telemetry frame of the device against the model's at its tick (the counter is the link's)."""
    skip = {"counter"} | ({"active_alarms"} if tol.alarm_ticks else set())
    return compare_values("telemetry", expected, got, tol, got.tick, frozenset(skip))


def compare_answers(expected: Sequence[Any], got: Sequence[Any], tol: Tolerances, tick: int) -> Divergence | None:
    """The device's answers to a command against the model's (a refusal is an answer too)."""
    if [type(a).__name__ for a in expected] != [type(a).__name__ for a in got]:
        return Divergence(tick, "answer", [_show(a) for a in expected], [_show(a) for a in got])
    for i, (e, g) in enumerate(zip(expected, got)):
        found = compare_values(f"answer[{i}]", e, g, tol, tick)
        if found is not None:
            return found
    return None


def compare_logs(expected: Sequence[Record], got: Sequence[Record], tol: Tolerances, tick: int) -> Divergence | None:
    """The device's event log against the model's, record by record (see the module docstring)."""
    if tol.log == "exact":
        pairs = list(zip(expected, got))
        for i, (e, g) in enumerate(pairs):
            if e != g:
                field = next(f.name for f in dataclasses.fields(Record) if getattr(e, f.name) != getattr(g, f.name))
                return Divergence(e.tick, f"log[{i}].{field} (record {e.code.name} at tick {e.tick})",
                                  _show(getattr(e, field)), _show(getattr(g, field)))
        if len(expected) != len(got):
            extra = expected[len(pairs)] if len(expected) > len(got) else got[len(pairs)]
            return Divergence(extra.tick, "log length", f"{len(expected)} records", f"{len(got)} records "
                              f"(first unmatched: {extra.code.name} at tick {extra.tick})")
        return None
    e_judged = [r for r in expected if r.code in JUDGED_CODES]
    g_judged = [r for r in got if r.code in JUDGED_CODES]
    for i, (e, g) in enumerate(zip(e_judged, g_judged)):
        if e.code != g.code:
            return Divergence(e.tick, f"log record {i} code", e.code.name, g.code.name)
        if abs(e.tick - g.tick) > tol.alarm_ticks:
            return Divergence(e.tick, f"log record {i} ({e.code.name}) tick", e.tick, g.tick, f"±{tol.alarm_ticks}")
    if len(e_judged) != len(g_judged):
        return Divergence(tick, "log records judged", [r.code.name for r in e_judged[-5:]],
                          [r.code.name for r in g_judged[-5:]])
    return None


def _show(value: Any) -> Any:
    """Enums by name, the rest as they are (for messages)."""
    if hasattr(value, "name") and hasattr(value, "value") and not isinstance(value, type):
        return value.name
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_show(v) for v in value)
    return value
