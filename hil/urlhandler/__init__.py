"""pyserial URL schemes of ithil's own: `emu://` (protocol_emu.py), the in-process emulated pump.

pyserial resolves `serial.serial_for_url("SCHEME://...")` by importing `protocol_SCHEME` from
each package in `serial.protocol_handler_packages`; `register_url_handlers()` appends this one
(once), so every pyserial user in the process can open `emu://` like `loop://`.
"""

from __future__ import annotations

import serial

PACKAGE = __name__  # "hil.urlhandler"


def register_url_handlers() -> None:
    """Make `emu://` known to `serial.serial_for_url` (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)
