"""Serves an EmulatedDevice on a pseudo-terminal or a TCP socket, as a dev board serves its UART.

    listen      "pty": a new pty pair; the URL is the slave's path (/dev/pts/N), which pyserial
                opens like any serial port. "tcp:HOST:PORT": a listening socket (port 0 picks a
                free one); the URL is socket://HOST:PORT. One client at a time: a new connection
                replaces the one before it (a host that reconnects after a crash gets the pump at
                once), and a frame cut off by a disconnect is dropped unanswered.
    time mode   "lockstep": only the host's AdvanceTime moves the pump's clock (deterministic);
                "scaled:N": N x real time from the moment the server starts; "realtime" = scaled:1.
    baud        output leaves at most baud/10 bytes per second (10 bit-times per byte, as a UART
                with 8N1 framing sends), so a pty (which ignores baud) behaves like the real line.
    telemetry   the device sends a Telemetry frame per `telemetry_period_s` of device time (1 s;
                0: none): within AdvanceTime's answer in lockstep, as the clock runs otherwise.
                On TCP it is dropped while no client is connected; while the host does not read,
                at most MAX_PENDING_BYTES of unsent telemetry are kept (the counter shows the loss).

One thread, one `selectors` loop: readable input goes to `device.receive`, answers to an output
buffer written as the line (and the baud budget) allows; a socketpair wakes the loop to stop.
`start_emulator_thread` serves in-process on a background thread for tests; `run_emulator` serves
in the foreground for `ithil emulate`.
"""

from __future__ import annotations

import contextlib

import logging
import os
import selectors
import socket
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from firmware_model.units import TICK_HZ

from .device import EmulatedDevice
from .errors import EmulatorConfigError

log = logging.getLogger(__name__)

LISTEN_FORMS = "pty or tcp:HOST:PORT (e.g. tcp:127.0.0.1:0; port 0 picks a free one)"
TIME_FORMS = "lockstep, scaled:N (N > 0 times real time) or realtime"
READ_CHUNK = 65536
CLOCK_STEP_S = 0.01             # how often a running clock moves the pump on (scaled and real time)
MAX_PENDING_BYTES = 1 << 20     # telemetry is not queued beyond this while the host does not read
BAUD_BURST_S = 0.002            # the throttle writes in slices of at most this much line time


@dataclass(frozen=True)
class Listen:
    """Where to serve: kind "pty" or "tcp" (then host and port)."""

    kind: str
    host: str = ""
    port: int = 0


def parse_listen(text: str) -> Listen:
    """`pty` or `tcp:HOST:PORT`, or EmulatorConfigError naming the value and the forms expected."""
    if text == "pty":
        return Listen("pty")
    kind, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EmulatorConfigError(f"--listen {text!r}: expected {LISTEN_FORMS}")
    return Listen("tcp", host.strip("[]"), int(port))


def parse_time_mode(text: str) -> float | None:
    """None for lockstep, else the factor of real time; EmulatorConfigError names what was wrong."""
    if text == "lockstep":
        return None
    if text == "realtime":
        return 1.0
    kind, _, factor = text.partition(":")
    try:
        scale = float(factor)
    except ValueError:
        scale = 0.0
    if kind != "scaled" or not 0 < scale < float("inf"):
        raise EmulatorConfigError(f"--time {text!r}: expected {TIME_FORMS}")
    return scale


def check_baud(baud: int | None) -> None:
    if baud is not None and not 0 < baud <= 100_000_000:
        raise EmulatorConfigError(f"--baud {baud}: expected a positive rate in bits per second (e.g. 115200)")


class EmulatorServer:
    """One device on one endpoint; `serve()` until `stop()`, then `close()` frees every fd."""

    def __init__(self, device: EmulatedDevice, listen: str = "pty", time_scale: float | None = None,
                 baud: int | None = None) -> None:
        where = parse_listen(listen)
        check_baud(baud)
        if time_scale is not None and time_scale <= 0:
            raise EmulatorConfigError(f"time scale {time_scale}: expected > 0 (or None for lockstep)")
        self.device = device
        self.lock = threading.Lock()  # held around every call into the device
        self.time_scale = time_scale
        self.baud = baud
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self._closed = False
        self._out = bytearray()
        self._credit = 0.0
        self._credit_time = time.monotonic()
        self._master: int | None = None
        self._slave: int | None = None
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self.clients_served = 0
        self.telemetry_dropped = 0  # telemetry bytes not queued (no client, or the host not reading)
        try:
            if where.kind == "pty":
                self._open_pty()
            else:
                self._open_tcp(where.host, where.port)
        except BaseException:
            self.close()
            raise
        self._clock_t0 = time.monotonic()
        self._clock_tick0 = device.now

    # ---- endpoints -------------------------------------------------------------------------

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation: bytes as they are
        os.set_blocking(self._master, False)
        self._sel.register(self._master, selectors.EVENT_READ, "line")
        self.url = os.ttyname(self._slave)  # the slave stays open here, so a host may close and reopen it

    def _open_tcp(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            raise EmulatorConfigError(f"--listen tcp:{host}:{port}: cannot listen there ({exc.strerror}); "
                                      "expected a free port on a local address") from None
        self._listener.listen(4)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        bound = self._listener.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.url = f"socket://{shown}:{bound[1]}"

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()  # type: ignore[union-attr]
        except BlockingIOError:
            return
        if self._client is not None:
            log.info("a new client replaces the connected one")
            self._drop_client()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        self._sel.register(conn, selectors.EVENT_READ, "line")
        self.clients_served += 1

    def _drop_client(self) -> None:
        if self._client is not None:
            self._sel.unregister(self._client)
            self._client.close()
            self._client = None
        self._out.clear()
        with self.lock:
            self.device.line_reset()

    @property
    def _connected(self) -> bool:
        return self._master is not None or self._client is not None

    # ---- the loop --------------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until `stop()` (from any thread or a signal handler)."""
        while not self._stopping:
            self._run_clock()
            self._flush()
            for key, events in self._sel.select(self._timeout()):
                what = key.data
                if what == "wake":
                    self._drain_wake()
                elif what == "accept":
                    self._accept()
                else:
                    if events & selectors.EVENT_READ:
                        self._read_line()
                    if events & selectors.EVENT_WRITE:
                        self._flush()

    def stop(self) -> None:
        """Ask `serve()` to return; safe from another thread and from a signal handler."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already woken (buffer full) or closed

    def close(self) -> None:
        """Close the endpoint, the client and the wake pair (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sock in (self._client, self._listener):
            if sock is not None:
                sock.close()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._client = self._listener = None
        self._master = self._slave = None
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _drain_wake(self) -> None:
        """Empty the wake-up socket (non-blocking: it ends with BlockingIOError once empty)."""
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(256):
                continue

    def _timeout(self) -> float | None:
        waits = []
        if self.time_scale is not None:
            waits.append(CLOCK_STEP_S)
        if self._out and self.baud is not None:
            rate = self.baud / 10
            waits.append(max(0.0, (min(len(self._out), rate * BAUD_BURST_S, 1.0) - self._credit) / rate))
        return min(waits) if waits else None

    def _clock_tick(self) -> int:
        elapsed = time.monotonic() - self._clock_t0
        return self._clock_tick0 + int(elapsed * TICK_HZ * self.time_scale)  # type: ignore[operator]

    def _run_clock(self) -> None:
        if self.time_scale is None:
            return
        with self.lock:
            telemetry = self.device.advance_to(self._clock_tick())
        if telemetry:
            if not self._connected or len(self._out) > MAX_PENDING_BYTES:
                self.telemetry_dropped += len(telemetry)
            else:
                self._out += telemetry

    def _read_line(self) -> None:
        try:
            if self._client is not None:
                data = self._client.recv(READ_CHUNK)
                if not data:
                    log.info("the client disconnected")
                    self._drop_client()
                    return
            else:
                data = os.read(self._master, READ_CHUNK)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            self._drop_client()
            return
        with self.lock:
            if self.time_scale is not None:
                self._out += self.device.advance_to(self._clock_tick())
            try:
                answer = self.device.receive(data)
            except Exception:  # a fault in the model must not take the rig down: log it, serve on
                log.exception("the emulated device failed on %d bytes of input", len(data))
                answer = b""
        self._out += answer
        self._flush()

    def _line(self) -> socket.socket | int | None:
        return self._client if self._client is not None else self._master

    def _flush(self) -> None:
        """Write what the line (and the baud budget) takes now; while the line itself is full, the
        loop waits for it to become writable (the baud throttle waits on its own clock instead)."""
        self._write_some()
        line = self._line()
        if line is not None and not self._closed:
            events = selectors.EVENT_READ
            if self._out and self.baud is None:
                events |= selectors.EVENT_WRITE
            if self._sel.get_key(line).events != events:
                self._sel.modify(line, events, "line")

    def _write_some(self) -> None:
        if not self._out or not self._connected:
            return
        n = len(self._out)
        if self.baud is not None:
            now = time.monotonic()
            rate = self.baud / 10
            self._credit = min(self._credit + (now - self._credit_time) * rate, max(1.0, rate * BAUD_BURST_S))
            self._credit_time = now
            n = min(n, int(self._credit))
            if n == 0:
                return
        try:
            if self._client is not None:
                sent = self._client.send(self._out[:n])
            else:
                sent = os.write(self._master, self._out[:n])  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            self._drop_client()
            return
        del self._out[:sent]
        if self.baud is not None:
            self._credit -= sent


def open_emulator(listen: str = "pty", time_mode: str = "lockstep", test_mode: bool = False, baud: int | None = None,
                  state: Path | None = None, *, telemetry_period_s: float = 1.0,
                  device: EmulatedDevice | None = None) -> EmulatorServer:
    """An EmulatorServer ready to serve (a new device unless one is given)."""
    scale = parse_time_mode(time_mode)
    parse_listen(listen)
    check_baud(baud)
    if not 0 <= telemetry_period_s < float("inf"):
        raise EmulatorConfigError(f"--telemetry {telemetry_period_s}: expected seconds of device time >= 0 (0: none)")
    if device is None:
        period = round(telemetry_period_s * TICK_HZ) or None
        device = EmulatedDevice(test_mode=test_mode, state_path=state, lockstep=scale is None,
                                telemetry_period_ticks=period)
    else:
        device.lockstep = scale is None
    return EmulatorServer(device, listen, scale, baud)


def run_emulator(listen: str, time_mode: str, test_mode: bool, baud: int | None, state: Path | None,
                 ready: Callable[[str], None], *, telemetry_period_s: float = 1.0, seed: int = 0,
                 balance: str | None = None, balance_ready: Callable[[str], None] | None = None) -> None:
    """Serve a new emulated pump in the foreground until interrupted (KeyboardInterrupt, or a
    signal handler that raises it); `ready(url)` is called once the endpoint is open. `seed`: the
    patient's (the plant's noise and posture); `balance` ("tcp:HOST:PORT"): also serve an
    analytical balance under the catheter tip there, `balance_ready(VISA resource)` once it is."""
    from firmware_model.controller import PumpConfig
    from firmware_model.plant import Plant

    from .balance import BalanceServer, BalanceSpec

    config = PumpConfig()
    device = EmulatedDevice(config, Plant(seed=seed, stroke_nl=config.mechanism.stroke_nl), test_mode=test_mode,
                            state_path=state, telemetry_period_ticks=round(telemetry_period_s * TICK_HZ) or None)
    server = open_emulator(listen, time_mode, test_mode, baud, state, telemetry_period_s=telemetry_period_s,
                           device=device)
    scale = None
    try:
        if balance is not None:
            def collected_nl() -> int:
                with server.lock:
                    return device.pump.outflow_nl()
            scale = BalanceServer(collected_nl, BalanceSpec(seed=seed), listen=balance).start()
        ready(server.url)
        if scale is not None and balance_ready is not None:
            balance_ready(scale.resource)
        server.serve()
    finally:
        if scale is not None:
            scale.stop()
        server.close()


class RunningEmulator:
    """An emulator served on a background thread: `url` to connect to, `device` (take `lock` to look
    inside while it serves), `stop()` or a `with` block to end it and free every fd."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.url = server.url
        self.device = server.device
        self.lock = server.lock
        self._thread = threading.Thread(target=self._serve, name=f"ithil-emulator {self.url}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.serve()
        finally:
            self.server.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread; every fd is closed when this returns."""
        self.server.stop()
        self._thread.join()

    def __enter__(self) -> "RunningEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator_thread(listen: str = "tcp:127.0.0.1:0", time_mode: str = "lockstep", test_mode: bool = True,
                          baud: int | None = None, state: Path | None = None, *, telemetry_period_s: float = 1.0,
                          device: EmulatedDevice | None = None) -> RunningEmulator:
    """Serve an emulated pump (a new one, or `device`) on a background thread; returns at once with
    its URL. Use as `with start_emulator_thread("pty") as emu: serial.serial_for_url(emu.url)`."""
    return RunningEmulator(open_emulator(listen, time_mode, test_mode, baud, state,
                                         telemetry_period_s=telemetry_period_s, device=device))
