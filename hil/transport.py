"""One byte pipe to a pump, whatever the URL: a pyserial port opened by `serial.serial_for_url`.

`/dev/ttyACM0`, a pty path, `socket://host:port`, `rfc2217://host:port`, `loop://` and the
in-process emulator `emu://` (hil/urlhandler/protocol_emu.py, registered here) all go through
the same calls; there is no serial layer of ithil's own. What differs between pyserial's
backends is hidden in one place, `Transport.read`: it waits for the first byte with a time-out,
then takes what else has arrived without waiting. On `socket://`, `in_waiting` only says 0 or 1,
so there the rest is read as a fixed chunk with a zero time-out (cheap to set on a socket); on
the others `in_waiting` is exact, and their time-out is never changed (a tcsetattr on a tty, a
network exchange on rfc2217://).
"""

from __future__ import annotations

import time
from typing import Any

import serial
from serial.urlhandler import protocol_socket

from .errors import TransportError
from .urlhandler import register_url_handlers

register_url_handlers()

CHUNK_BYTES = 65536         # the most one read takes (a frame is at most 1057 bytes on the wire)
POLL_S = 0.005              # the port's own read time-out: how late a wait may end
DEFAULT_BAUD = 115_200      # what a dev board's UART runs at; ptys and sockets ignore it


class Transport:
    """A pyserial port opened by URL, with a read that returns as soon as bytes are there.

    Context manager; `close()` releases the port. Errors from pyserial come out as
    TransportError naming the URL.
    """

    def __init__(self, url: str, *, baudrate: int = DEFAULT_BAUD) -> None:
        self.url = url
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=POLL_S)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise TransportError(f"cannot open {url!r}: {exc}; expected a serial device path, a pty path, or a "
                                 "URL such as socket://127.0.0.1:PORT, rfc2217://HOST:PORT, loop:// or emu://")
        self._timeout_s: float | None = POLL_S
        # socket://: in_waiting is 0 or 1 (a select), never the byte count
        self._in_waiting_is_a_flag = isinstance(self.port, protocol_socket.Serial)
        self.bytes_written = 0
        self.bytes_read = 0
        self.recorder: Any = None   # a hil.recording.Recorder: every frame both ways goes into the recording
        self._frames_out = self._frames_in = None

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Transport({self.url!r}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        return bool(self.port.is_open)

    def record(self, recorder: Any) -> None:
        """From now on, put every whole frame written and read into `recorder` (None: stop)."""
        from .recording import FrameSplitter

        self.recorder = recorder
        self._frames_out, self._frames_in = FrameSplitter(), FrameSplitter()

    def write(self, data: bytes) -> None:
        """Send all of `data` (frames, already encoded)."""
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.url}: writing {len(data)} bytes failed: {exc}") from None
        self.bytes_written += len(data)
        if self.recorder is not None:
            for frame in self._frames_out.feed(data):
                self.recorder.frame(True, frame)

    def read(self, wait_s: float) -> bytes:
        """The bytes that have arrived, waiting up to `wait_s` for the first one (b"" on time-out).

        The port's own time-out stays at POLL_S (changing it costs a tcsetattr on a tty and a
        network exchange on rfc2217://), so a wait ends at most POLL_S after `wait_s`.
        """
        port = self.port
        deadline = time.monotonic() + wait_s
        try:
            if wait_s <= 0 and not port.in_waiting:
                return b""
            while True:
                if self._in_waiting_is_a_flag:
                    self._set_timeout(POLL_S)
                data = port.read(1)
                if data:
                    break
                if time.monotonic() >= deadline:
                    return b""
            if self._in_waiting_is_a_flag:
                self._set_timeout(0.0)
                data += port.read(CHUNK_BYTES)
            else:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(min(waiting, CHUNK_BYTES))
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.url}: reading failed: {exc}") from None
        self.bytes_read += len(data)
        if self.recorder is not None:
            for frame in self._frames_in.feed(data):
                self.recorder.frame(False, frame)
        return data

    def discard_input(self) -> None:
        """Drop whatever has arrived and not been read (a fresh start after a reconnect)."""
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.url}: discarding input failed: {exc}") from None

    def close(self) -> None:
        """Release the port (idempotent)."""
        try:
            self.port.close()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.url}: closing failed: {exc}") from None

    def _set_timeout(self, seconds: float) -> None:
        if seconds != self._timeout_s:
            self.port.timeout = seconds
            self._timeout_s = seconds
