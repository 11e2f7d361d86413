"""Errors of the reference model.

Every refusal names the field, the value it got and the limit or form it expected (with the
domain.md section the limit comes from), and is raised before any state changes.

    ModelError
    ├── CommandRefused            a command that is well formed but not allowed now
    │   ├── LimitExceeded         a value outside a hard limit (rate, volume, dose, concentration)
    │   └── NotAllowedNow         the pump's state forbids it (no drug, end of service, ...)
    ├── PrescriptionError         a prescription file or table that is malformed (names the key)
    └── StateError                a snapshot or an event log that cannot be read back
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error the reference model raises."""


class CommandRefused(ModelError):
    """A command the pump refuses; nothing has changed."""


class LimitExceeded(CommandRefused):
    """A value outside its hard limit."""

    def __init__(self, field: str, value: object, limit: str, source: str = "") -> None:
        self.field = field
        self.value = value
        self.limit = limit
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"{field} = {value} is outside the limit: {limit}{where}")


class NotAllowedNow(CommandRefused):
    """A command the pump's present state does not allow."""


class PrescriptionError(ModelError):
    """A malformed prescription: names the key and what was expected."""


class StateError(ModelError):
    """A snapshot or an event log that cannot be decoded."""
