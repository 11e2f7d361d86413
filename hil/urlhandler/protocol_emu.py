"""`emu://`: a pyserial port whose other end is an emulated pump in this process.

URL: `emu://[NAME][?test_mode=1&seed=N&state=PATH&telemetry_ticks=T]`

- NAME: ports opened with the same name talk to the same pump, as reopening a port reaches the
  same board; without a name every port gets a pump of its own.
- test_mode: 0 or 1 (default 0): accept the test-mode messages (AdvanceTime, Inject*).
- seed: the plant's random seed (default 0).
- state: a file that keeps the pump's event log across processes (hil.device's state_path).
- telemetry_ticks: one Telemetry frame per T ticks of pump time (default: the device's, one per
  second); 0: none.

`write()` hands the bytes to `EmulatedDevice.receive` (any chunking) and queues the frames it
answers; `read()` returns them, waiting up to the port's time-out as a serial port does. The
device is shared, so each call into it holds the device's lock.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, to_bytes

from hil.errors import EmuUrlError

OPTIONS = {"test_mode": "0 or 1", "seed": "an integer >= 0", "state": "a file path",
           "telemetry_ticks": "an integer >= 0 (0: no telemetry)"}
URL_FORM = "emu://[NAME][?test_mode=0|1&seed=N&state=PATH&telemetry_ticks=T]"

_named: dict[str, tuple[dict[str, Any], "_SharedDevice"]] = {}
_named_lock = threading.Lock()


class _SharedDevice:
    """An EmulatedDevice and the lock every port that uses it takes."""

    def __init__(self, options: dict[str, Any]) -> None:
        from firmware_model.controller import PumpConfig
        from firmware_model.plant import Plant
        from hil.device import TELEMETRY_PERIOD_TICKS, EmulatedDevice

        config = PumpConfig()
        telemetry_ticks = options["telemetry_ticks"]
        self.device = EmulatedDevice(config, Plant(seed=options["seed"], stroke_nl=config.mechanism.stroke_nl),
                                     test_mode=options["test_mode"], state_path=options["state"],
                                     telemetry_period_ticks=(TELEMETRY_PERIOD_TICKS if telemetry_ticks is None
                                                             else telemetry_ticks or None))
        self.lock = threading.Lock()


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The pump's name ("" for a private one) and its options, or EmuUrlError naming what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "emu":
        raise EmuUrlError(f"{url!r}: expected a URL of the form {URL_FORM}")
    if parts.path not in ("", "/"):
        raise EmuUrlError(f"{url!r}: path {parts.path!r}; expected none ({URL_FORM})")
    options: dict[str, Any] = {"test_mode": False, "seed": 0, "state": None, "telemetry_ticks": None}
    try:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise EmuUrlError(f"{url!r}: query {parts.query!r} is not name=value pairs; expected {URL_FORM}") from None
    for key, value in pairs:
        if key not in OPTIONS:
            raise EmuUrlError(f"{url!r}: unknown option {key!r}; expected one of "
                              + ", ".join(f"{k} ({v})" for k, v in OPTIONS.items()))
        if key == "test_mode":
            if value not in ("0", "1"):
                raise EmuUrlError(f"{url!r}: test_mode = {value!r}; expected 0 or 1")
            options[key] = value == "1"
        elif key in ("seed", "telemetry_ticks"):
            if not value.isdigit():
                raise EmuUrlError(f"{url!r}: {key} = {value!r}; expected {OPTIONS[key]}")
            options[key] = int(value)
        else:
            if not value:
                raise EmuUrlError(f"{url!r}: state is empty; expected a file path")
            options[key] = value
    return parts.netloc, options


def attach(name: str, device: Any) -> str:
    """Serve an EmulatedDevice built elsewhere (a rig's, with its own configuration) as
    `emu://NAME`, until `forget(name)`; returns the URL."""
    shared = _SharedDevice.__new__(_SharedDevice)
    shared.device, shared.lock = device, threading.Lock()
    with _named_lock:
        if name in _named:
            raise EmuUrlError(f"emu://{name} is already a pump; expected a new name")
        _named[name] = (None, shared)
    return f"emu://{name}"


def lock_of(name: str) -> threading.Lock:
    """The lock every port of the named pump takes (hold it to look inside the pump)."""
    with _named_lock:
        return _named[name][1].lock


def forget(name: str) -> None:
    """Let the named pump go: the next `emu://NAME` starts a new one."""
    with _named_lock:
        _named.pop(name, None)


def _device_for(name: str, options: dict[str, Any]) -> _SharedDevice:
    if not name:
        return _SharedDevice(options)
    with _named_lock:
        known = _named.get(name)
        if known is None:
            shared = _SharedDevice(options)
            _named[name] = (options, shared)
            return shared
        known_options, shared = known
    if known_options is None:    # attached: its options are its own
        if options != parse_url("emu://")[1]:
            raise EmuUrlError(f"emu://{name} is a pump attached with its own configuration; expected no options")
        return shared
    if known_options != options:
        raise EmuUrlError(f"emu://{name} is already a pump with options {known_options}; this URL asks for "
                          f"{options}: expected the same options (or another name)")
    return shared


class Serial(SerialBase):
    """A serial port whose far end is an emulated pump (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._shared: _SharedDevice | None = None
        self._rx = bytearray()
        self._arrived = threading.Condition()
        super().__init__(*args, **kwargs)

    @property
    def device(self) -> Any:
        """The EmulatedDevice behind this port (for tests that look inside the pump)."""
        if self._shared is None:
            raise PortNotOpenError()
        return self._shared.device

    def open(self) -> None:
        if self.is_open:
            raise EmuUrlError(f"{self._port}: the port is already open")
        if self._port is None:
            raise EmuUrlError(f"no URL given; expected {URL_FORM}")
        name, options = parse_url(self._port)
        self._shared = _device_for(name, options)
        self._rx.clear()
        self.is_open = True

    def close(self) -> None:
        """Close the port: a frame the pump had begun to receive on it is dropped (the line was cut)."""
        with self._arrived:
            self.is_open = False
            self._arrived.notify_all()
        shared, self._shared = self._shared, None
        if shared is not None:
            with shared.lock:
                shared.device.line_reset()

    def _reconfigure_port(self, force_update: bool = False) -> None:
        """Nothing to set: the in-process link has no baud rate or parity."""

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes of the pump's answers, waiting up to the time-out for the first."""
        if not self.is_open:
            raise PortNotOpenError()
        with self._arrived:
            if not self._rx and self._timeout != 0:
                deadline = None if self._timeout is None else time.monotonic() + self._timeout
                while not self._rx and self.is_open:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._arrived.wait(left)
            data = bytes(self._rx[:size])
            del self._rx[:size]
        return data

    def write(self, data: Any) -> int:
        """Give the bytes to the pump; what it answers becomes readable at once."""
        if not self.is_open or self._shared is None:
            raise PortNotOpenError()
        data = to_bytes(data)
        with self._shared.lock:
            answer = self._shared.device.receive(data)
        if answer:
            with self._arrived:
                self._rx += answer
                self._arrived.notify_all()
        return len(data)

    def reset_input_buffer(self) -> None:
        with self._arrived:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        """Nothing is buffered on the way out: write() hands bytes over at once."""

    @property
    def out_waiting(self) -> int:
        return 0

    def _update_break_state(self) -> None:
        """No line to break."""

    def _update_rts_state(self) -> None:
        """No modem lines."""

    def _update_dtr_state(self) -> None:
        """No modem lines."""

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
