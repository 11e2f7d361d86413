"""Errors of the host side: transports, rigs, runner, CLI.

    HilError                  base of every error raised by hil/
    ├── TransportError        a port that cannot be opened, read, written or closed
    │   └── EmuUrlError       an emu:// URL with an unknown or malformed option
    ├── LinkError             the link could not complete an exchange
    │   ├── LinkTimeout       no complete answer after every retry
    │   └── UnexpectedAnswer  an answer that is not one the command can have
    ├── PumpRefused           the pump answered Nak: command, reason, field, value, limit
    ├── FaultProxyError       a fault proxy set up wrongly (rates, endpoints)
    ├── WireMappingError      a value that has no counterpart across the wire/model mapping
    ├── DeviceStateError      an emulated device's state file that cannot be read or does not fit
    ├── EmulatorConfigError   an emulator server set up wrongly (listen address, time mode, baud)
    ├── BalanceConfigError    an emulated balance set up wrongly (spec field, listen address)
    ├── BalanceReadError      a balance that cannot be reached or answers with no reading
    │   └── BalanceOverload   the load on the pan is above the balance's capacity
    ├── GravimetricError      balance samples or windows unfit for the IEC 60601-2-24 analysis
    ├── RigConfigError        a malformed rig.toml: names the file, the key and what was expected
    ├── RigError              a rig that cannot do what a scenario asks (start, fault, time mode)
    ├── RecordingError        a recording (pcapng) that cannot be written, or read at all
    ├── PumpDiverged          the device and the reference model disagreed (hil.twin): the Divergence
    └── ScenarioError         a malformed scenario or requirement file: names the key
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .verdicts import Divergence


class HilError(Exception):
    """Base of every error the hil package raises."""


# ---- transports, link layer, client, fault proxy (issue 6, host side) ----------------------------


class TransportError(HilError):
    """A serial port (any URL) that cannot be opened, read, written or closed; names the URL."""


class EmuUrlError(TransportError):
    """An emu:// URL with an option that is unknown or malformed; names it and the options expected."""


class LinkError(HilError):
    """The link layer could not complete an exchange with the pump."""


class LinkTimeout(LinkError):
    """No complete answer to a command after every retry: names the command, its seq and the attempts."""


class UnexpectedAnswer(LinkError):
    """An answer the command cannot have (e.g. an Ack to GetStatus): names both."""


class PumpRefused(HilError):
    """The pump refused a command with a Nak; nothing changed on the pump.

    command: the message name; reason: protocol.NakReason; field, value, expected: what the
    pump names (for LIMIT_EXCEEDED the field, the value and the limit with its source).
    """

    def __init__(self, command: str, reason: object, field: str = "", value: str = "", expected: str = "",
                 seq: int | None = None) -> None:
        self.command, self.reason, self.field, self.value, self.expected, self.seq = (
            command, reason, field, value, expected, seq)
        name = getattr(reason, "name", str(reason))
        text = f"{command} refused by the pump: {name}"
        if field or value:
            text += f": {field} = {value}" if field else f": {value}"
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)


class FaultProxyError(HilError):
    """A fault proxy set up wrongly: a rate outside 0..1, an endpoint that cannot be reached."""


# ---- the emulated device and its server (issue 6, device side) ----------------------------------

class WireMappingError(HilError):
    """A value with no counterpart across the wire/model mapping (hil.wire_model): names its type
    and the types expected."""


class DeviceStateError(HilError):
    """An emulated device's --state file that cannot be read, is damaged, or was written by a pump
    of another configuration: names the file and what was expected."""


class EmulatorConfigError(HilError):
    """An emulator server set up wrongly: a listen address, time mode or baud rate that is not one
    of the forms expected (names the value and the forms)."""


# ---- the balance and the gravimetric analysis (hil.balance, hil.gravimetric) ---------------------

class BalanceConfigError(HilError):
    """An emulated balance set up wrongly: a BalanceSpec field or a listen address out of range
    (names the field, the value and what was expected)."""


class BalanceReadError(HilError):
    """A balance that cannot be opened or read, or that answers with something that is not a
    reading: names the resource, what was received and what was expected."""


class BalanceOverload(BalanceReadError):
    """The balance shows overload: the load on the pan is above its capacity (names both)."""


class GravimetricError(HilError):
    """Balance samples, a rate or windows unfit for the IEC 60601-2-24 analysis: irregular
    sampling, a window that is not a whole number of intervals, an analysis period too short
    (names what was wrong and what was expected)."""


# ---- rigs, scenarios and the runner (issue 7) ------------------------------------------------------

class RigConfigError(HilError):
    """A rig.toml (or a rig set up in code) that is malformed: names the file, the key and what
    was expected."""


class RigError(HilError):
    """A rig that cannot do what a scenario asks: a device that does not start, a fault it cannot
    inject, a time mode the runner cannot drive."""


class PumpDiverged(HilError):
    """The device and the reference model disagreed beyond the rig's tolerance while a test drove
    both (hil.twin): `divergence` is the hil.verdicts.Divergence; the message is its own (tick,
    quantity, the model's and the device's values, tolerance) with the frames before it."""

    def __init__(self, divergence: "Divergence") -> None:
        self.divergence = divergence
        text = divergence.message()
        if divergence.context:
            text += "\nframes before it, oldest first:\n" + "\n".join(f"  {f}" for f in divergence.context)
        super().__init__(text)


class ScenarioError(HilError):
    """A scenario or requirement file that is malformed: names the file, the key and what was
    expected."""


# ---- recordings (hil.recording) --------------------------------------------------------------------

class RecordingError(HilError):
    """A recording that cannot be written (a path, section metadata that is not JSON, a frame that
    is not one whole frame), or a file with nothing readable in it (not pcapng): names the file or
    the value and what was expected."""
