"""hil.transport: one interface over pyserial URLs (pty, socket://, rfc2217://, loop://, emu://)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from typing import Iterator

import pytest
import serial
from serial import rfc2217

from hil.errors import EmuUrlError, HilError, TransportError
from hil.transport import POLL_S, Transport
from hil.urlhandler import protocol_emu
from protocol import Decoder, encode_frame
from protocol import messages as m

PAYLOAD = bytes(range(256)) * 12   # 3 KiB, every byte value


def read_exactly(transport: Transport, n: int) -> bytes:
    """Read until n bytes have come (each read waits up to 2 s for the first byte)."""
    data = b""
    while len(data) < n:
        chunk = transport.read(2.0)
        assert chunk, f"only {len(data)} of {n} bytes arrived"
        data += chunk
    return data


def read_frames(transport: Transport, n: int) -> list:
    """Read and decode until n frames have come."""
    decoder, frames = Decoder(), []
    while len(frames) < n:
        frames += decoder.feed(read_exactly(transport, 1))
    return frames


# ---- endpoints: a pty, a TCP peer, an RFC 2217 server -------------------------------------------------

@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[int, str]]:
    """A real pseudo-terminal: the master fd (the far end) and the slave's path (what a host opens)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(slave)
        os.close(master)


@contextlib.contextmanager
def tcp_peer() -> Iterator[tuple[str, "socket.socket | None", threading.Event]]:
    """A TCP listener on 127.0.0.1; the accepted socket is put in holder[0] once a client connects."""
    server = socket.create_server(("127.0.0.1", 0))
    holder: list[socket.socket] = []
    accepted = threading.Event()

    def accept() -> None:
        conn, _ = server.accept()
        holder.append(conn)
        accepted.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{server.getsockname()[1]}", holder, accepted   # type: ignore[misc]
    finally:
        thread.join(timeout=5)
        for conn in holder:
            conn.close()
        server.close()


@contextlib.contextmanager
def rfc2217_server(backing_url: str) -> Iterator[str]:
    """An RFC 2217 server (as ser2net or labgrid export a board) in front of a pyserial port."""
    backing = serial.serial_for_url(backing_url, timeout=0.005)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lock = threading.Lock()

        class Connection:
            def write(self, data: bytes) -> None:
                with lock:
                    conn.sendall(data)

        manager = rfc2217.PortManager(backing, Connection())
        while not stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.005)
            if ready:
                data = conn.recv(4096)
                if not data:
                    break
                backing.write(b"".join(manager.filter(data)))
            out = backing.read(4096)
            if out:
                Connection().write(b"".join(manager.escape(out)))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"rfc2217://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        backing.close()


# ---- every URL the same --------------------------------------------------------------------------------

def test_a_pty_path_carries_bytes_both_ways() -> None:
    with pty_pair() as (master, path), Transport(path) as port:
        os.write(master, PAYLOAD)
        assert read_exactly(port, len(PAYLOAD)) == PAYLOAD
        port.write(b"to the pump\x00")
        assert os.read(master, 100) == b"to the pump\x00"
        assert port.bytes_read == len(PAYLOAD) and port.bytes_written == 12


def test_a_socket_url_reads_what_has_arrived_in_one_call() -> None:
    # socket://'s in_waiting says only 0 or 1: the transport must still take the whole frame at once
    frame = encode_frame(m.Ack(0x12), seq=7)
    with tcp_peer() as (url, holder, accepted), Transport(url) as port:
        assert accepted.wait(5)
        holder[0].sendall(frame * 20)
        first = port.read(2.0)
        assert len(first) > 1
        data = first + read_exactly(port, len(frame) * 20 - len(first))
        assert [f.message for f in Decoder().feed(data)] == [m.Ack(0x12)] * 20
        port.write(b"abc")
        assert holder[0].recv(10) == b"abc"


def test_loop_url_echoes() -> None:
    with Transport("loop://") as port:
        port.write(PAYLOAD[:500])
        assert read_exactly(port, 500) == PAYLOAD[:500]


def test_rfc2217_url_reaches_the_port_behind_the_server() -> None:
    with rfc2217_server("loop://") as url, Transport(url) as port:
        port.write(PAYLOAD)          # 0xFF (telnet IAC) included: escaped and unescaped on the way
        assert read_exactly(port, len(PAYLOAD)) == PAYLOAD


def test_a_read_with_nothing_there_returns_nothing() -> None:
    with pty_pair() as (_master, path), Transport(path) as port:
        assert port.read(0.01) == b""
        assert port.read(0.0) == b""


@pytest.mark.parametrize("far_end", ["pty", "tcp"])
def test_a_read_waits_past_the_ports_own_time_out_for_a_late_byte(far_end: str) -> None:
    # the port's time-out is POLL_S; a read given longer must keep waiting, not give up after one
    late = threading.Event()
    with contextlib.ExitStack() as stack:
        if far_end == "pty":
            master, path = stack.enter_context(pty_pair())
            port = stack.enter_context(Transport(path))
            send = lambda: os.write(master, b"late\x00")  # noqa: E731
        else:
            url, holder, accepted = stack.enter_context(tcp_peer())
            port = stack.enter_context(Transport(url))
            assert accepted.wait(5)
            send = lambda: holder[0].sendall(b"late\x00")  # noqa: E731
        timer = threading.Timer(20 * POLL_S, lambda: (send(), late.set()))
        timer.start()
        data = port.read(5.0)
        timer.join()
    assert late.is_set() and data.startswith(b"l")


def test_discard_input_drops_what_came_before() -> None:
    with Transport("loop://") as port:
        port.write(b"stale bytes\x00")
        port.discard_input()
        port.write(b"fresh\x00")
        assert read_exactly(port, 6) == b"fresh\x00"


def test_close_releases_the_port_and_it_opens_again() -> None:
    with pty_pair() as (master, path):
        port = Transport(path)
        port.close()
        assert not port.is_open
        port.close()                 # idempotent
        with Transport(path) as again:
            os.write(master, b"x")
            assert again.read(2.0) == b"x"


def test_a_port_that_does_not_exist_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match=r"cannot open '/dev/ithil-no-such-port'.*expected a serial device"):
        Transport("/dev/ithil-no-such-port")
    with pytest.raises(TransportError, match="cannot open 'nosuch://x'"):
        Transport("nosuch://x")
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match=f"socket://127.0.0.1:{port}"):
        Transport(f"socket://127.0.0.1:{port}")   # nobody listens there any more


def test_a_write_after_close_names_the_url() -> None:
    port = Transport("loop://")
    port.close()
    with pytest.raises(TransportError, match="loop://: writing 3 bytes failed"):
        port.write(b"abc")


# ---- emu:// ------------------------------------------------------------------------------------------

def test_emu_is_a_pyserial_url_scheme() -> None:
    port = serial.serial_for_url("emu://", timeout=1)
    try:
        assert isinstance(port, protocol_emu.Serial)
        port.write(encode_frame(m.Hello(1, 1, "test"), seq=3))
        frames = Decoder().feed(port.read(4096))
        assert [f.seq for f in frames] == [3] and isinstance(frames[0].message, m.HelloReply)
        assert frames[0].message.test_mode is False
    finally:
        port.close()


def test_emu_takes_its_options_from_the_url() -> None:
    with Transport("emu://?test_mode=1&seed=3") as port:
        port.write(encode_frame(m.Hello(1, 1, "test"), seq=1))
        assert read_frames(port, 1)[0].message.test_mode is True


def test_emu_answers_bytes_in_any_chunking() -> None:
    frames = encode_frame(m.Hello(1, 1, "a"), seq=1) + encode_frame(m.Hello(1, 1, "b"), seq=2)
    with Transport("emu://") as port:
        for i in range(len(frames)):
            port.write(frames[i:i + 1])
        assert [f.seq for f in read_frames(port, 2)] == [1, 2]


def test_emu_ports_with_one_name_share_one_pump() -> None:
    name = f"shared-{os.getpid()}"
    try:
        with Transport(f"emu://{name}?test_mode=1") as a, Transport(f"emu://{name}?test_mode=1") as b:
            assert a.port.device is b.port.device
        with Transport("emu://") as c, Transport("emu://") as d:
            assert c.port.device is not d.port.device
        with pytest.raises(EmuUrlError, match=f"emu://{name} is already a pump with options"):
            Transport(f"emu://{name}?seed=5")
    finally:
        protocol_emu.forget(name)


def test_emu_state_keeps_the_pump_across_ports(tmp_path) -> None:
    from hil.device import default_test_keys
    from protocol import Signer

    signer = Signer(default_test_keys()[0])
    url = f"emu://?test_mode=1&state={tmp_path / 'pump.state'}"
    with Transport(url) as port:
        port.write(encode_frame(m.Refill(0, 20_000_000, "morphine", 10_000), seq=1, signer=signer))
        assert isinstance(read_frames(port, 1)[0].message, m.Ack)
    with Transport(url) as port:                  # a new pump, restarted from the state file
        port.write(encode_frame(m.GetStatus(), seq=2, signer=signer))
        status = read_frames(port, 1)[0].message
    assert (status.drug, status.reservoir_nl) == ("morphine", 20_000_000)


@pytest.mark.parametrize("url, complaint", [
    ("emu://?colour=blue", r"unknown option 'colour'; expected one of test_mode \(0 or 1\), seed"),
    ("emu://?test_mode=yes", r"test_mode = 'yes'; expected 0 or 1"),
    ("emu://?seed=-1", r"seed = '-1'; expected an integer >= 0"),
    ("emu://?telemetry_ticks=x", r"telemetry_ticks = 'x'; expected an integer >= 0 \(0: no telemetry\)"),
    ("emu://?state=", r"state is empty; expected a file path"),
    ("emu://?test_mode", r"query 'test_mode' is not name=value pairs"),
    ("emu://pump/path", r"path '/path'; expected none"),
])
def test_a_bad_emu_url_names_the_option_and_what_was_expected(url: str, complaint: str) -> None:
    with pytest.raises(EmuUrlError, match=complaint) as info:
        serial.serial_for_url(url)
    assert isinstance(info.value, HilError)
    with pytest.raises(TransportError, match=complaint):
        Transport(url)


def test_emu_read_waits_for_its_time_out_and_stops_when_closed() -> None:
    port = serial.serial_for_url("emu://", timeout=0.01)
    assert port.read(10) == b""            # nothing asked, nothing answered
    assert port.in_waiting == 0
    port.close()
    with pytest.raises(serial.PortNotOpenError):
        port.read(1)
