"""A fault-injecting link for tests: a proxy that damages the frames passing between two real ends.

    host --TCP--> FaultProxy (listens on 127.0.0.1) --pyserial URL--> device (pty path, socket://, emu://)

Each direction splits its byte stream on the 0x00 frame delimiter and, frame by frame, with a
seeded random generator of its own, drops it, flips 1..max_flipped_bits bits in it, sends it
twice, delays it, or holds it back until the next frame has overtaken it (reorder). Every frame
draws the same five numbers whatever happens to it, so a seed gives the same decisions for the
same frames. The proxy runs on two threads (one per direction), counts what it did per
direction, and serves one host connection at a time; the device end stays open between them.
"""

from __future__ import annotations

import collections
import heapq
import random
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import FaultProxyError
from .transport import Transport

DELIMITER = 0
POLL_S = 0.005          # how often the threads look at the stop flag and the due frames
TO_DEVICE, TO_HOST = "to_device", "to_host"


@dataclass(frozen=True)
class FaultRates:
    """Per-frame probabilities (0..1) of each fault, and their sizes."""

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    delay_s: tuple[float, float] = (0.001, 0.01)   # a delayed frame waits a uniform time in this range
    reorder_hold_s: float = 0.005                  # a held frame goes anyway if no frame overtakes it by then
    max_flipped_bits: int = 3

    def __post_init__(self) -> None:
        for f in ("drop", "corrupt", "duplicate", "delay", "reorder"):
            value = getattr(self, f)
            if not 0.0 <= value <= 1.0:
                raise FaultProxyError(f"FaultRates.{f} = {value!r}: expected a probability in 0..1")
        low, high = self.delay_s
        if not 0.0 <= low <= high:
            raise FaultProxyError(f"FaultRates.delay_s = {self.delay_s!r}: expected (low, high) with 0 <= low <= high")
        if self.reorder_hold_s < 0:
            raise FaultProxyError(f"FaultRates.reorder_hold_s = {self.reorder_hold_s!r}: expected >= 0")
        if self.max_flipped_bits < 1:
            raise FaultProxyError(f"FaultRates.max_flipped_bits = {self.max_flipped_bits!r}: expected >= 1")


NO_FAULTS = FaultRates()


class FrameFaults:
    """One direction's fault injector: bytes in, damaged frames out through `send`, counted."""

    def __init__(self, rates: FaultRates, rng: random.Random, send: Callable[[bytes], None]) -> None:
        self.rates = rates
        self.rng = rng
        self.send = send
        self.counts: collections.Counter[str] = collections.Counter()
        self._partial = bytearray()
        self._due: list[tuple[float, int, bytes]] = []   # heap of (release time, order, frame)
        self._order = 0
        self._held: tuple[bytes, float] | None = None

    def take(self, data: bytes, now: float) -> None:
        """Bytes from the source: complete frames are judged now, the unfinished tail kept."""
        self._partial += data
        while True:
            end = self._partial.find(DELIMITER)
            if end < 0:
                return
            frame = bytes(self._partial[:end + 1])
            del self._partial[:end + 1]
            if len(frame) == 1:
                self._emit(frame)   # an empty frame (a flush): passed on untouched
            else:
                self._judge(frame, now)

    def next_due(self) -> float | None:
        """When the next held or delayed frame must go (None: nothing waiting)."""
        times = [self._due[0][0]] if self._due else []
        if self._held is not None:
            times.append(self._held[1])
        return min(times) if times else None

    def release_due(self, now: float) -> None:
        """Send what has waited long enough."""
        while self._due and self._due[0][0] <= now:
            self._emit(heapq.heappop(self._due)[2])
        if self._held is not None and self._held[1] <= now:
            frame, self._held = self._held[0], None
            self.send(frame)

    def _judge(self, frame: bytes, now: float) -> None:
        r, rng = self.rates, self.rng
        draws = [rng.random() for _ in range(5)]   # the same draws for every frame, whatever happens
        self.counts["frames"] += 1
        if draws[0] < r.drop:
            self.counts["dropped"] += 1
            return
        if draws[1] < r.corrupt:
            frame = self._flip_bits(frame)
            self.counts["corrupted"] += 1
        copies = 1
        if draws[2] < r.duplicate:
            copies = 2
            self.counts["duplicated"] += 1
        if draws[3] < r.delay:
            self.counts["delayed"] += 1
            at = now + rng.uniform(*r.delay_s)
            for _ in range(copies):
                heapq.heappush(self._due, (at, self._order, frame))
                self._order += 1
            return
        if draws[4] < r.reorder and self._held is None:
            self.counts["reordered"] += 1
            self._held = (frame, now + r.reorder_hold_s)
            copies -= 1
        for _ in range(copies):
            self._emit(frame)

    def _flip_bits(self, frame: bytes) -> bytes:
        damaged = bytearray(frame)
        body = len(damaged) - 1               # the delimiter itself stays
        for _ in range(self.rng.randint(1, self.rates.max_flipped_bits)):
            bit = self.rng.randrange(body * 8)
            damaged[bit // 8] ^= 1 << (bit % 8)
        return bytes(damaged)

    def _emit(self, frame: bytes) -> None:
        self.send(frame)
        if self._held is not None:           # the frame just sent has overtaken the held one
            held, self._held = self._held[0], None
            self.send(held)


class FaultProxy:
    """Listens on 127.0.0.1 (`url`), forwards to `device_url`, damages frames both ways.

    to_device / to_host: the fault rates of each direction (to_host defaults to to_device's).
    Context manager: starts the threads and stops them (and closes both ends) on exit.
    """

    def __init__(self, device_url: str, to_device: FaultRates = NO_FAULTS, to_host: FaultRates | None = None, *,
                 seed: int = 0, port: int = 0) -> None:
        self.device_url = device_url
        self.rates = {TO_DEVICE: to_device, TO_HOST: to_device if to_host is None else to_host}
        self.seed = seed
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self._conn_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        try:
            self._listener = socket.create_server(("127.0.0.1", port))
        except OSError as exc:
            raise FaultProxyError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
        self.port: int = self._listener.getsockname()[1]
        try:
            self._device = Transport(device_url)
        except BaseException:
            self._listener.close()
            raise
        self._faults = {
            TO_DEVICE: FrameFaults(self.rates[TO_DEVICE], random.Random(f"{seed}:{TO_DEVICE}"), self._device.write),
            TO_HOST: FrameFaults(self.rates[TO_HOST], random.Random(f"{seed}:{TO_HOST}"), self._send_to_host),
        }

    @property
    def url(self) -> str:
        """Where the host connects: a pyserial socket:// URL."""
        return f"socket://127.0.0.1:{self.port}"

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Per direction: frames seen, dropped, corrupted, duplicated, delayed, reordered."""
        return {d: {k: f.counts.get(k, 0) for k in ("frames", "dropped", "corrupted", "duplicated", "delayed",
                                                      "reordered")} for d, f in self._faults.items()}

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "FaultProxy":
        """Start forwarding (two daemon threads)."""
        for name, target in ((TO_DEVICE, self._host_to_device), (TO_HOST, self._device_to_host)):
            thread = threading.Thread(target=self._run, args=(target,), name=f"fault-proxy-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop forwarding, close the host connection, the listener and the device end."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._listener.close()
        self._device.close()
        if self._errors:
            raise FaultProxyError(f"the proxy to {self.device_url} failed: {self._errors[0]!r}") from self._errors[0]

    # ---- threads ------------------------------------------------------------------------------------

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported by stop(); a thread must not die silently
            if not self._stop.is_set():
                self._errors.append(exc)

    def _wait_s(self, faults: FrameFaults, now: float) -> float:
        due = faults.next_due()
        return POLL_S if due is None else max(0.0, min(POLL_S, due - now))

    def _host_to_device(self) -> None:
        faults = self._faults[TO_DEVICE]
        self._listener.settimeout(POLL_S)
        conn: socket.socket | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            faults.release_due(now)
            if conn is None:
                try:
                    conn, _ = self._listener.accept()
                except (TimeoutError, socket.timeout):
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._conn_lock:
                    self._conn = conn
                continue
            ready, _, _ = select.select([conn], [], [], self._wait_s(faults, now))
            if not ready:
                continue
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:                      # the host hung up: wait for the next one
                with self._conn_lock:
                    self._conn = None
                conn.close()
                conn = None
                continue
            faults.take(data, time.monotonic())

    def _device_to_host(self) -> None:
        faults = self._faults[TO_HOST]
        while not self._stop.is_set():
            now = time.monotonic()
            faults.release_due(now)
            data = self._device.read(self._wait_s(faults, now))
            if data:
                faults.take(data, time.monotonic())

    def _send_to_host(self, frame: bytes) -> None:
        with self._conn_lock:
            conn = self._conn
        if conn is None:
            self._faults[TO_HOST].counts["no_host"] += 1
            return
        try:
            conn.sendall(frame)
        except OSError:
            self._faults[TO_HOST].counts["no_host"] += 1

