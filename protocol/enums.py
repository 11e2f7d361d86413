"""The enumerations that cross the wire.

The first four mirror the reference model's (firmware_model.commands and .alarms) value for
value, so that the mapping between wire and model is one-to-one; protocol/ may not import the
model, and tests/protocol/test_model_mirror.py fails when the two drift apart. The rest belong to
the protocol itself: NAK reasons, signing roles and who may send what.
"""

from __future__ import annotations

import enum


class Mode(enum.IntEnum):
    """Basal therapy modes (firmware_model.commands.Mode)."""

    STOPPED = 0
    CONTINUOUS = 1
    FLEX = 2
    MINIMUM_RATE = 3


class BolusKind(enum.IntEnum):
    """Kinds of bolus (firmware_model.commands.BolusKind)."""

    CLINICIAN = 1
    PATIENT = 2
    PRIMING = 3
    BRIDGE = 4


class DenyReason(enum.IntEnum):
    """Why a patient bolus request was denied (firmware_model.commands.DenyReason)."""

    NOT_CONFIGURED = 1
    LOCKOUT = 2
    DAILY_COUNT = 3
    DAILY_DOSE = 4
    BOLUS_IN_PROGRESS = 5
    DELIVERY_STOPPED = 6
    THERAPY_STOPPED = 7


class AlarmCode(enum.IntEnum):
    """The alarm catalogue's codes (firmware_model.alarms.AlarmCode)."""

    RESERVOIR_LOW = 1
    RESERVOIR_EMPTY = 2
    ELECTIVE_REPLACEMENT = 3
    END_OF_SERVICE = 4
    REFILL_DISCREPANCY = 5
    OCCLUSION = 6
    MOTOR_STALL = 7


class NakReason(enum.IntEnum):
    """Why a pump refused a frame or a command; carried by Nak (never renumber; append only)."""

    BAD_CRC = 1
    UNKNOWN_ID = 2
    UNSUPPORTED_VERSION = 3
    BAD_SIGNATURE = 4
    REPLAY = 5
    ROLE_NOT_ALLOWED = 6
    LIMIT_EXCEEDED = 7
    BUSY = 8
    NOT_IN_TEST_MODE = 9
    UNSIGNED = 10
    MALFORMED = 11
    NOT_ALLOWED_NOW = 12


NAK_MEANINGS: dict[NakReason, str] = {
    NakReason.BAD_CRC: "the frame's CRC did not match (its seq is the damaged header's, a best guess)",
    NakReason.UNKNOWN_ID: "a message id not in the pump's catalogue",
    NakReason.UNSUPPORTED_VERSION: "a protocol version or a header flag the pump does not speak",
    NakReason.BAD_SIGNATURE: "an unknown key id, or a MAC that does not verify",
    NakReason.REPLAY: "a signature timestamp not newer than the last accepted for that key and link",
    NakReason.ROLE_NOT_ALLOWED: "a valid signature whose role may not send this message",
    NakReason.LIMIT_EXCEEDED: "refused by the drug library or another hard limit; field, value and the limit "
                              "(model: LimitExceeded)",
    NakReason.BUSY: "the pump cannot take a command now; retry later with the same seq",
    NakReason.NOT_IN_TEST_MODE: "a test-mode message sent to a pump that is not in test mode",
    NakReason.UNSIGNED: "a command that must be signed came without a signature",
    NakReason.MALFORMED: "lengths or payload wrong for the message id",
    NakReason.NOT_ALLOWED_NOW: "the pump's present state forbids the command (model: NotAllowedNow)",
}


class Role(enum.IntEnum):
    """Whom a signing key belongs to."""

    PATIENT = 1     # patient bolus request and status only
    CLINICIAN = 2   # everything


class Access(enum.IntEnum):
    """Who may send a message to the pump: the least role whose signature it needs."""

    OPEN = 0        # no signature needed (hello, and everything the pump sends)
    PATIENT = 1     # signed by a patient or a clinician key
    CLINICIAN = 2   # signed by a clinician key


class Direction(enum.Enum):
    """Which way a message travels."""

    TO_PUMP = "host -> pump"
    TO_HOST = "pump -> host"
