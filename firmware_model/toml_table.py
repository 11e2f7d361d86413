"""One TOML table read with its dotted name, so that every error names the key and what it expected.

Prescriptions, rig files and scenario files are all TOML written by people; a typo must be
refused with the key's full name, never skipped. `Table` checks the keys a table may hold and
reads each value as the pump's integer units: exact decimals (`scaled`), integers, flags, times
of day ("HH:MM") and durations ("1 h 30 min", "90 s", "2 d") as ticks. Pure, but for
`read_toml`, which reads a file for the callers that have one. The error raised is the caller's
(PrescriptionError by default).
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from .errors import PrescriptionError
from .units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

DURATION_UNITS = {"d": Decimal(TICKS_PER_DAY), "day": Decimal(TICKS_PER_DAY), "days": Decimal(TICKS_PER_DAY),
                  "h": Decimal(TICKS_PER_HOUR), "min": Decimal(TICKS_PER_MINUTE), "s": Decimal(TICK_HZ),
                  "ms": Decimal(TICK_HZ) / 1000, "ticks": Decimal(1), "tick": Decimal(1)}
DURATION_FORM = 'a duration such as "90 s", "10 min", "1 h 30 min", "2 d" or "16384 ticks" (units: d, h, min, s, ms, ticks)'
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


class Table:
    """One table of a TOML document, with its dotted name (see the module docstring)."""

    def __init__(self, data: Any, name: str, allowed: set[str], error: type[Exception] = PrescriptionError) -> None:
        if not isinstance(data, Mapping):
            raise error(f"[{name}]: expected a table, got {type(data).__name__}")
        unknown = set(data) - allowed
        if unknown:
            raise error(f"[{name}]: unknown key(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
        self.data, self.name, self.error = data, name, error

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(f"{self.name}.{key}: missing; it is required")
            return default
        return self.data[key]

    def sub(self, key: str, allowed: set[str], default: Any = ...) -> "Table":
        """A nested table, checked the same way (an absent one reads as `default`, e.g. {})."""
        return Table(self.raw(key, default), f"{self.name}.{key}", allowed, self.error)

    def scaled(self, key: str, scale: int, unit: str, default: Any = ..., minimum: int = 0) -> int:
        """A number in the clinician's unit, as an exact integer of the pump's unit."""
        if key not in self.data and default is not ...:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{self.name}.{key} = {value!r}: expected a number")
        try:
            exact = Decimal(str(value)) * scale
        except InvalidOperation:
            raise self.error(f"{self.name}.{key} = {value!r}: expected a finite number") from None
        if exact != exact.to_integral_value():
            raise self.error(f"{self.name}.{key} = {value}: not a whole number of {unit}; expected at most "
                             f"{len(str(scale)) - 1} decimal(s)")
        result = int(exact)
        if result < minimum:
            raise self.error(f"{self.name}.{key} = {value}: expected >= {Decimal(minimum) / scale}")
        return result

    def integer(self, key: str, default: Any = ..., minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and <= {maximum}"
            raise self.error(f"{self.name}.{key} = {value!r}: expected an integer >= {minimum}{upper}")
        return value

    def number(self, key: str, default: Any = ..., minimum: float = 0.0) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise self.error(f"{self.name}.{key} = {value!r}: expected a number >= {minimum:g}")
        return float(value)

    def flag(self, key: str, default: Any = False) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{self.name}.{key} = {value!r}: expected true or false")
        return value

    def text(self, key: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            expected = "a string" if choices is None else "one of " + ", ".join(repr(c) for c in choices)
            raise self.error(f"{self.name}.{key} = {value!r}: expected {expected}")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{self.name}.{key} = {value!r}: expected a list of strings")
        return tuple(value)

    def time_of_day(self, key: str, default: Any = ...) -> int:
        value = self.raw(key, default)
        return time_of_day(value, f"{self.name}.{key}", self.error)

    def duration(self, key: str, default: Any = ...) -> int:
        """A duration as ticks (see DURATION_FORM); an integer is taken as ticks."""
        value = self.raw(key, default)
        return duration_ticks(value, f"{self.name}.{key}", self.error)

    def one_of(self, options: dict[str, tuple[int, str]], what: str, default: Any = ...) -> tuple[str, int]:
        """Exactly one of several keys giving the same quantity in different units."""
        present = [k for k in options if k in self.data]
        if len(present) != 1:
            if not present and default is not ...:
                return "", default
            raise self.error(f"[{self.name}]: expected exactly one of {sorted(options)} for the {what}, "
                             f"got {present or 'none'}")
        key = present[0]
        scale, unit = options[key]
        return key, self.scaled(key, scale, unit, minimum=1)


def read_toml(path: Path, error: type[Exception] = PrescriptionError) -> dict[str, Any]:
    """A TOML file parsed, or `error` naming the file and why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None


def time_of_day(value: Any, where: str, error: type[Exception] = PrescriptionError) -> int:
    """"HH:MM" as ticks since midnight."""
    if not isinstance(value, str) or len(value.split(":")) != 2:
        raise error(f"{where} = {value!r}: expected a time of day \"HH:MM\"")
    hh, mm = value.split(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise error(f"{where} = {value!r}: expected a time of day \"HH:MM\" from 00:00 to 23:59")
    return int(hh) * TICKS_PER_HOUR + int(mm) * TICKS_PER_MINUTE


def duration_ticks(value: Any, where: str, error: type[Exception] = PrescriptionError) -> int:
    """A duration ("1 h 30 min", "0.5 min", "2 d", or an integer of ticks) as whole ticks."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where} = {value!r}: expected {DURATION_FORM}")
    total, pos, text = Decimal(0), 0, value.strip().lower()
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or part.group(2) not in DURATION_UNITS:
            raise error(f"{where} = {value!r}: expected {DURATION_FORM}")
        total += Decimal(part.group(1)) * DURATION_UNITS[part.group(2)]
        pos = part.end()
    if total != total.to_integral_value():
        raise error(f"{where} = {value!r}: not a whole number of ticks (1/{TICK_HZ} s); expected a duration "
                    "that is")
    return int(total)
