"""An emulated analytical balance on its own TCP socket, and the host's reader through pyvisa.

A gravimetric flow test (IEC 60601-2-24, domain.md §4.1) weighs what a pump delivers into a
collecting vessel. On a bench the balance sits on a LAN-serial adapter and the host reads it as
the VISA resource ``TCPIP::HOST::PORT::SOCKET``; here `BalanceServer` plays that balance, weighing
the volume an emulated pump has let out of its catheter (a callable, e.g. the plant's outflow at
the device's present tick), and `BalanceReader` reads it through pyvisa with the pyvisa-py
backend, exactly as it would read the real one.

The reading: mass = volume_nl x density_ug_per_ul // 1000, plus noise, minus the tare, rounded to
the readability. The noise of the n-th reading since power-on is a counter-based hash of
(seed, n), the sum of four uniforms (near-Gaussian, SD = repeatability_ug), so a run is the same
every time and the pure functions below predict every reading.

Protocol: one command per line, "\\n" terminated ("\\r\\n" accepted), case-insensitive, answers
"\\n" terminated; an error goes to a SCPI error queue (at most ERROR_QUEUE_DEPTH entries, the last
replaced by -350 "Queue overflow" when full).

    | command        | answer                                  | effect                              |
    |----------------|-----------------------------------------|-------------------------------------|
    | *IDN?          | ithil,emulated analytical balance,S,V   | S serial, V firmware version        |
    | *RST           | none                                    | clears the tare and the error queue |
    | MEAS:MASS?     | net reading in grams: "+0.01234 g"      | takes the next reading              |
    | TARE           | none                                    | tares the present gross reading     |
    | SYST:ERR?      | oldest error: -113,"Undefined header"   | removes it; 0,"No error" if none    |
    | anything else  | none                                    | queues -113,"Undefined header"      |

    Long forms MEASURE:MASS? and SYSTEM:ERROR? are accepted. The grams have as many decimals as
    the readability needs (5 for 10 µg). Overload (the gross load above capacity): MEAS:MASS?
    answers SCPI's over-range value "+9.9E+37 g" and queues -231,"Data questionable;Overload",
    as an SCPI meter does; TARE while overloaded queues the same error and keeps the old tare.
    When the weighed volume cannot be had (the emulator's callable raised), MEAS:MASS? answers
    SCPI's not-a-number "+9.91E+37 g" and queues -240,"Hardware error;...".
    A line longer than MAX_LINE_BYTES is dropped and queues -363,"Input buffer overrun".
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import pyvisa
import pyvisa.errors

from .errors import BalanceConfigError, BalanceOverload, BalanceReadError

log = logging.getLogger(__name__)

MANUFACTURER = "ithil"
MODEL = "emulated analytical balance"
FIRMWARE_VERSION = "1.0"
OVERLOAD_REPLY = "+9.9E+37 g"      # SCPI's over-range value (9.9E37), in the reading's unit
NOT_A_NUMBER_REPLY = "+9.91E+37 g"  # SCPI's not-a-number value: no reading could be taken
ERROR_QUEUE_DEPTH = 10
MAX_LINE_BYTES = 256
UG_PER_G = 1_000_000

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_BALANCE_STREAM = 0xBA1A
_IRWIN_HALL_4_SIGMA = 37_837  # standard deviation of a sum of four uniform 16-bit numbers


@dataclass(frozen=True)
class BalanceSpec:
    """A semi-micro analytical balance ([D] bench values).

    - readability_ug: the display's last digit (10 µg = 0.01 mg);
    - repeatability_ug: standard deviation of the reading noise;
    - capacity_ug: the heaviest gross load it can weigh (220 g);
    - density_ug_per_ul: of the collected fluid (water at about 20 °C: 0.998 g/mL = 998 µg/µL);
    - seed: keys the noise, so the same seed gives the same readings.
    """

    readability_ug: int = 10
    repeatability_ug: int = 15
    capacity_ug: int = 220 * UG_PER_G
    density_ug_per_ul: int = 998
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (("readability_ug", self.readability_ug > 0, "> 0"),
                  ("repeatability_ug", self.repeatability_ug >= 0, ">= 0"),
                  ("capacity_ug", self.capacity_ug >= self.readability_ug, f">= readability_ug ({self.readability_ug})"),
                  ("density_ug_per_ul", self.density_ug_per_ul > 0, "> 0"),
                  ("seed", 0 <= self.seed <= _MASK64, "0 .. 2**64 - 1"))
        for name, ok, expected in checks:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not ok:
                raise BalanceConfigError(f"BalanceSpec.{name} = {value!r}: expected an integer {expected}")


# ---- the reading, as pure functions -------------------------------------------------------------

def mass_of_volume_ug(volume_nl: int, density_ug_per_ul: int) -> int:
    """The true mass of a volume: nL x µg/µL / 1000 (floored to the µg)."""
    return volume_nl * density_ug_per_ul // 1000


def _splitmix64(x: int) -> int:
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK64
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK64
    return x ^ (x >> 31)


def noise_ug(spec: BalanceSpec, reading: int) -> int:
    """The noise of the `reading`-th reading (0-based, counted since power-on): near-Gaussian (a
    sum of four uniform 16-bit numbers), standard deviation repeatability_ug, integer µg."""
    key = _splitmix64(spec.seed * _GOLDEN + _BALANCE_STREAM * _MIX2 + _MIX1)
    bits = _splitmix64(key + reading * _GOLDEN)
    total = sum((bits >> shift) & 0xFFFF for shift in (0, 16, 32, 48))
    centred = total - 2 * 0xFFFF
    return (centred * spec.repeatability_ug + _IRWIN_HALL_4_SIGMA // 2) // _IRWIN_HALL_4_SIGMA


def round_to_readability(mass_ug: int, readability_ug: int) -> int:
    """The nearest multiple of the readability (halves up), as the display shows it."""
    return (mass_ug + readability_ug // 2) // readability_ug * readability_ug


def gross_reading_ug(spec: BalanceSpec, volume_nl: int, reading: int) -> int | None:
    """The `reading`-th gross reading of a volume on the pan; None when it is over capacity."""
    gross = round_to_readability(mass_of_volume_ug(volume_nl, spec.density_ug_per_ul) + noise_ug(spec, reading),
                                 spec.readability_ug)
    return None if gross > spec.capacity_ug else gross


def net_reading_ug(spec: BalanceSpec, volume_nl: int, reading: int, tare_ug: int = 0) -> int | None:
    """The `reading`-th net reading (gross minus tare); None when the gross load is over capacity."""
    gross = gross_reading_ug(spec, volume_nl, reading)
    return None if gross is None else gross - tare_ug


def _decimals(readability_ug: int) -> int:
    decimals = 6
    while decimals and readability_ug % 10 == 0:
        readability_ug //= 10
        decimals -= 1
    return decimals


def format_grams(mass_ug: int, readability_ug: int = 10) -> str:
    """A reading as the balance sends it: signed grams with the readability's decimals, "+0.01234 g"."""
    decimals = _decimals(readability_ug)
    sign = "-" if mass_ug < 0 else "+"
    whole, frac = divmod(abs(mass_ug), UG_PER_G)
    digits = f".{frac // 10 ** (6 - decimals):0{decimals}d}" if decimals else ""
    return f"{sign}{whole}{digits} g"


_READING = re.compile(r"([+-]?)(\d+)(?:\.(\d{1,6}))? g")


def parse_mass_ug(reply: str, source: str = "balance") -> int:
    """A reply to MEAS:MASS? as integer µg; BalanceOverload on SCPI's over-range value,
    BalanceReadError on anything else that is not a reading in grams."""
    text = reply.strip()
    match = _READING.fullmatch(text)
    if match is None:
        number = text.removesuffix(" g")
        try:
            over = float(number) == 9.9e37
        except ValueError:
            over = False
        if over:
            raise BalanceOverload(f"{source}: reading {reply!r} is the over-range value: the load is above "
                                  f"the balance's capacity; expected a load within capacity")
        raise BalanceReadError(f"{source}: reading {reply!r} is not a mass; expected signed grams with up to "
                               f"6 decimals and the unit, e.g. '+0.01234 g'")
    sign, whole, frac = match.groups()
    mass = int(whole) * UG_PER_G + int((frac or "").ljust(6, "0"))
    return -mass if sign == "-" else mass


# ---- the emulated balance on a socket -----------------------------------------------------------

def parse_balance_listen(text: str) -> tuple[str, int]:
    """`tcp:HOST:PORT` (IPv4; port 0 picks a free one) as (host, port); BalanceConfigError otherwise."""
    kind, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or ":" in host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BalanceConfigError(f"balance listen {text!r}: expected tcp:HOST:PORT with an IPv4 address or a host "
                                 f"name, as pyvisa-py's TCPIP SOCKET reaches (e.g. tcp:127.0.0.1:0; port 0 picks "
                                 f"a free one)")
    return host, int(port)


class _Client:
    __slots__ = ("sock", "inbuf", "outbuf", "overrun")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.inbuf, self.outbuf = sock, bytearray(), bytearray()
        self.overrun = False  # the line being received is too long: dropped up to its newline


class BalanceServer:
    """A balance weighing `volume_nl()` on `tcp:HOST:PORT`, served on a background thread (one
    selectors loop, any number of clients) from `start()` to `stop()`, once; a context manager.
    `volume_nl` is called on that thread, once per reading: it must be thread-safe."""

    def __init__(self, volume_nl: Callable[[], int], spec: BalanceSpec | None = None,
                 listen: str = "tcp:127.0.0.1:0") -> None:
        host, port = parse_balance_listen(listen)
        self.spec = spec or BalanceSpec()
        self.serial = f"EB{self.spec.seed & 0xFFFFFF:06X}"
        self._volume_nl = volume_nl
        self.tare_ug = 0
        self.readings = 0                                   # gross readings taken since power-on
        self.errors: deque[tuple[int, str]] = deque()
        self._clients: dict[socket.socket, _Client] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._listener = socket.create_server((host, port))
        except OSError as exc:
            self._close_fds()
            raise BalanceConfigError(f"balance listen {listen!r}: cannot listen ({exc}); expected a free "
                                     f"local address") from exc
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        bound_host, bound_port = self._listener.getsockname()[:2]
        # Where a client connects (kept after stop): the wildcard address is reached as 127.0.0.1.
        self.address: tuple[str, int] = ("127.0.0.1" if bound_host == "0.0.0.0" else bound_host, bound_port)

    @property
    def resource(self) -> str:
        """The VISA resource name a host opens: TCPIP::HOST::PORT::SOCKET."""
        host, port = self.address
        return f"TCPIP::{host}::{port}::SOCKET"

    @property
    def identity(self) -> str:
        return f"{MANUFACTURER},{MODEL},{self.serial},{FIRMWARE_VERSION}"

    # ---- life cycle

    def start(self) -> "BalanceServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"balance {self.resource}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket (idempotent)."""
        self._stopping = True
        if self._thread is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
            self._thread.join()
            self._thread = None
        self._close_fds()

    def __enter__(self) -> "BalanceServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_fds(self) -> None:
        for sock in (*self._clients, getattr(self, "_listener", None), self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._clients.clear()
        self._sel.close()

    # ---- the loop

    def _serve(self) -> None:
        while not self._stopping:
            for key, events in self._sel.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    continue
                if sock is self._listener:
                    self._accept()
                    continue
                client = self._clients.get(sock)  # type: ignore[arg-type]
                if client is not None and events & selectors.EVENT_READ:
                    self._receive(client)
                if client is not None and client.sock in self._clients and events & selectors.EVENT_WRITE:
                    self._flush(client)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._clients[sock] = _Client(sock)
        self._sel.register(sock, selectors.EVENT_READ, None)

    def _drop(self, client: _Client) -> None:
        self._sel.unregister(client.sock)
        del self._clients[client.sock]
        client.sock.close()

    def _receive(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbuf += data
        while (end := client.inbuf.find(b"\n")) >= 0:
            line = client.inbuf[:end].decode("ascii", "replace").strip()
            del client.inbuf[:end + 1]
            if client.overrun or len(line) > MAX_LINE_BYTES:  # one error per overlong line, however it came
                if not client.overrun:
                    self._push_error(-363, "Input buffer overrun")
                client.overrun = False
                continue
            answer = self.answer(line) if line else None
            if answer is not None:
                client.outbuf += answer.encode("ascii") + b"\n"
        if len(client.inbuf) > MAX_LINE_BYTES:  # no end in sight: drop it up to its newline
            client.inbuf.clear()
            if not client.overrun:
                self._push_error(-363, "Input buffer overrun")
            client.overrun = True
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbuf) if client.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.outbuf[:sent]
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        if self._sel.get_key(client.sock).events != wanted:
            self._sel.modify(client.sock, wanted)

    # ---- the instrument

    def answer(self, line: str) -> str | None:
        """Execute one command line; its answer (None for commands that answer nothing)."""
        header = line.strip().upper()
        if header == "*IDN?":
            return self.identity
        if header == "*RST":
            self.tare_ug = 0
            self.errors.clear()
            return None
        if header in ("MEAS:MASS?", "MEASURE:MASS?"):
            gross = self._gross_ug()
            return gross if isinstance(gross, str) else format_grams(gross - self.tare_ug, self.spec.readability_ug)
        if header == "TARE":
            gross = self._gross_ug()
            if isinstance(gross, int):
                self.tare_ug = gross
            return None
        if header in ("SYST:ERR?", "SYSTEM:ERROR?"):
            code, message = self.errors.popleft() if self.errors else (0, "No error")
            return f'{code},"{message}"'
        self._push_error(-113, "Undefined header")
        return None

    def _gross_ug(self) -> int | str:
        """Take the next gross reading: µg, or the reply that stands for none with its error queued
        (over-range when overloaded; not-a-number when the volume source fails)."""
        try:
            volume_nl = self._volume_nl()
        except Exception:  # the weighed device failed: the balance answers, its thread lives on
            log.exception("balance %s: the volume source failed", self.resource)
            self._push_error(-240, "Hardware error;the volume source failed")
            return NOT_A_NUMBER_REPLY
        gross = gross_reading_ug(self.spec, volume_nl, self.readings)
        self.readings += 1
        if gross is None:
            self._push_error(-231, "Data questionable;Overload")
            return OVERLOAD_REPLY
        return gross

    def _push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = (-350, "Queue overflow")
        else:
            self.errors.append((code, message))


# ---- the host's reader --------------------------------------------------------------------------

class BalanceReader:
    """Reads a balance through pyvisa (pyvisa-py backend), as the bench reads a real one; on
    opening it asks *IDN? (kept in `identity`), so an address with no balance fails at once."""

    def __init__(self, resource: str, timeout_s: float = 2.0) -> None:
        self.resource = resource
        self.timeout_s = timeout_s
        try:
            self._instrument = pyvisa.ResourceManager("@py").open_resource(
                resource, read_termination="\n", write_termination="\n", timeout=round(timeout_s * 1000))
        except Exception as exc:  # pyvisa-py raises a bare Exception for an address it cannot connect to
            raise BalanceReadError(f"balance {resource}: cannot open it ({exc}); expected a reachable VISA "
                                   f"resource such as TCPIP::HOST::PORT::SOCKET") from exc
        try:  # pyvisa-py connects lazily: ask who is there, so a wrong address fails here
            self.identity = self.identify()
        except BalanceReadError as exc:
            self._instrument.close()
            raise BalanceReadError(f"balance {resource}: cannot open it: {exc}") from exc.__cause__

    recorder: Any = None   # a hil.recording.Recorder: every line both ways goes into the recording

    def _query(self, command: str) -> str:
        try:
            reply = self._instrument.query(command)
        except (pyvisa.errors.Error, OSError) as exc:
            raise BalanceReadError(f"balance {self.resource}: no answer to {command!r} ({exc}); expected one "
                                   f"line within {self.timeout_s} s") from exc
        if self.recorder is not None:
            self.recorder.balance_line(True, command)
            self.recorder.balance_line(False, reply)
        return reply

    def _write(self, command: str) -> None:
        if self.recorder is not None:
            self.recorder.balance_line(True, command)
        try:
            self._instrument.write(command)
        except (pyvisa.errors.Error, OSError) as exc:
            raise BalanceReadError(f"balance {self.resource}: cannot send {command!r} ({exc})") from exc

    def identify(self) -> str:
        """The *IDN? answer: manufacturer, model, serial, firmware version."""
        return self._query("*IDN?")

    def mass_ug(self) -> int:
        """One net reading in µg; BalanceOverload (with the balance's error) or BalanceReadError."""
        reply = self._query("MEAS:MASS?")
        try:
            return parse_mass_ug(reply, f"balance {self.resource}")
        except BalanceReadError as exc:  # say why, if the balance knows: its oldest queued error
            raise type(exc)(f"{exc}; the balance reports {self._query('SYST:ERR?')}") from None

    def tare(self) -> None:
        """Tare the present gross load: later readings are net of it."""
        self._write("TARE")

    def reset(self) -> None:
        """*RST: clear the tare and the error queue."""
        self._write("*RST")

    def next_error(self) -> tuple[int, str]:
        """The oldest error in the balance's queue, (0, "No error") when it is empty."""
        reply = self._query("SYST:ERR?")
        code, sep, message = reply.partition(",")
        if not sep or not code.strip().lstrip("+-").isdigit():
            raise BalanceReadError(f"balance {self.resource}: SYST:ERR? answered {reply!r}; expected "
                                   f"CODE,\"MESSAGE\" such as 0,\"No error\"")
        return int(code), message.strip().strip('"')

    def close(self) -> None:
        """Close this instrument session (the shared pyvisa resource manager stays open)."""
        self._instrument.close()

    def __enter__(self) -> "BalanceReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
