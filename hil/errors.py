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
    └── EmulatorConfigError   an emulator server set up wrongly (listen address, time mode, baud)
"""


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
