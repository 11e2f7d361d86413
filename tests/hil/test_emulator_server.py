"""hil.emulator_server: the emulated pump on a real pty and a real TCP socket, reached through
pyserial's serial_for_url with raw frames; and `ithil emulate` as a real process with --state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import serial

from firmware_model import LogCode, TICKS_PER_HOUR
from firmware_model.commands import BolusKind
from firmware_model.units import TICK_HZ
from hil import wire_model as wm
from hil.device import EmulatedDevice, default_test_keys
from hil.emulator_server import parse_listen, parse_time_mode, start_emulator_thread
from hil.errors import EmulatorConfigError
from protocol import Decoder, Frame, NakReason, Signer, encode_frame
from protocol import messages as m

CLINICIAN, PATIENT = default_test_keys()
H = TICKS_PER_HOUR
WAIT_S = 10.0  # a safety limit for reads: a test fails rather than hangs; nothing is timed by it


class Line:
    """Raw frames over a pyserial port: write encoded frames, read until the frames wanted arrive."""

    def __init__(self, url: str, signer: Signer | None = None) -> None:
        self.port = serial.serial_for_url(url, timeout=0.05)
        self.decoder = Decoder()
        self.signer = signer or Signer(CLINICIAN)
        self.seq = 0

    def write(self, message: Any, seq: int | None = None, signed: bool = True) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.port.write(encode_frame(message, seq, self.signer if signed else None))
        return seq

    def frames(self, count: int, keep_telemetry: bool = False) -> list[Frame]:
        """The next `count` frames (telemetry skipped unless kept); on socket:// in_waiting is 0 or 1,
        so this reads what is there, or waits for one byte with the port's time-out."""
        got: list[Frame] = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} frames arrived: {got}"
            for frame in self.decoder.feed(self.port.read(max(1, self.port.in_waiting))):
                if keep_telemetry or type(frame.message) is not m.Telemetry:
                    got.append(frame)
        return got

    def ask(self, message: Any, signed: bool = True, answers: int = 1) -> list[Any]:
        seq = self.write(message, signed=signed)
        frames = self.frames(answers)
        assert all(f.seq == seq for f in frames), frames
        return [f.message for f in frames]

    def close(self) -> None:
        self.port.close()


@pytest.fixture(params=["pty", "tcp:127.0.0.1:0"], ids=["pty", "tcp"])
def listen(request: Any) -> str:
    return request.param


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ---- end to end over real endpoints --------------------------------------------------------------

def test_hello_and_status_end_to_end(listen: str) -> None:
    with start_emulator_thread(listen, telemetry_period_s=0) as emu:
        assert emu.url.startswith("/dev/pts/" if listen == "pty" else "socket://127.0.0.1:")
        line = Line(emu.url)
        try:
            (reply,) = line.ask(m.Hello(1, 1, "pytest"), signed=False)
            assert type(reply) is m.HelloReply and reply.test_mode and reply.stroke_nl == 250
            (status,) = line.ask(m.GetStatus())
            assert wm.response_from_wire(status) == emu.device.status()
            (nak,) = line.ask(m.GetStatus(), signed=False)
            assert nak.reason == NakReason.UNSIGNED
        finally:
            line.close()


def test_a_session_programs_the_pump_and_advances_it_in_lockstep(listen: str) -> None:
    with start_emulator_thread(listen, telemetry_period_s=1.0) as emu:
        line = Line(emu.url)
        try:
            assert line.ask(m.Refill(0, 20_000_000, "morphine", 10_000)) == [m.Ack(m.Refill.MSG_ID)]
            assert line.ask(m.ProgramContinuous(1_000_000)) == [m.Ack(m.ProgramContinuous.MSG_ID)]
            assert line.ask(m.ClinicianBolus(100_000, 600 * TICK_HZ), answers=2)[1] == m.BolusGranted(
                BolusKind.CLINICIAN, 400, 100_000)
            seq = line.write(m.AdvanceTime(20 * TICK_HZ))
            frames = line.frames(21, keep_telemetry=True)
            assert [f.message.counter for f in frames[:20]] == list(range(20))
            assert frames[-1].message == m.Ack(m.AdvanceTime.MSG_ID) and frames[-1].seq == seq
            with emu.lock:
                assert emu.device.now == 20 * TICK_HZ
                assert emu.device.status().steps == frames[19].message.steps > 0
        finally:
            line.close()


def test_garbage_on_the_line_does_not_stop_the_pump(listen: str) -> None:
    with start_emulator_thread(listen, telemetry_period_s=0) as emu:
        line = Line(emu.url)
        try:
            line.port.write(bytes(range(1, 256)) * 20 + b"\x00\x00\x17\x00")
            (status,) = line.ask(m.GetStatus())
            assert type(status) is m.StatusReport
            with emu.lock:
                assert emu.device.decoder.frames_bad >= 1
        finally:
            line.close()


def test_a_client_may_disconnect_and_reconnect_and_a_torn_frame_is_dropped() -> None:
    with start_emulator_thread("tcp:127.0.0.1:0", telemetry_period_s=0) as emu:
        first = Line(emu.url)
        first.ask(m.Hello(1, 1, "first"), signed=False)
        torn = encode_frame(m.ProgramStopped(), 77, first.signer)
        first.port.write(torn[:len(torn) // 2])  # the line is cut in the middle of a frame
        first.close()
        second = Line(emu.url, signer=Signer(CLINICIAN, link_id=1))
        try:
            (status,) = second.ask(m.GetStatus())
            assert type(status) is m.StatusReport
            with emu.lock:
                assert emu.device.executed["ProgramStopped"] == 0
                assert emu.server.clients_served == 2
        finally:
            second.close()


def test_a_new_connection_replaces_the_old_one() -> None:
    with start_emulator_thread("tcp:127.0.0.1:0", telemetry_period_s=0) as emu:
        old = Line(emu.url)
        old.ask(m.Hello(1, 1, "old"), signed=False)
        new = Line(emu.url, signer=Signer(CLINICIAN, link_id=2))
        try:
            (reply,) = new.ask(m.Hello(1, 1, "new"), signed=False)
            assert type(reply) is m.HelloReply
            with pytest.raises(serial.SerialException, match="socket disconnected"):
                old.port.read(1)  # the pump closed the old connection
        finally:
            old.close()
            new.close()


def test_the_pty_can_be_closed_and_opened_again() -> None:
    with start_emulator_thread("pty", telemetry_period_s=0) as emu:
        for i in range(2):
            line = Line(emu.url, signer=Signer(CLINICIAN, link_id=i))
            try:
                assert type(line.ask(m.GetStatus())[0]) is m.StatusReport
            finally:
                line.close()


def test_scaled_time_runs_the_pump_on_the_wall_clock_and_refuses_advance_time() -> None:
    with start_emulator_thread("tcp:127.0.0.1:0", time_mode="scaled:2000", telemetry_period_s=1.0) as emu:
        line = Line(emu.url)
        try:
            frames = line.frames(3, keep_telemetry=True)  # the clock sends telemetry unasked
            ticks = [f.message.tick for f in frames]
            assert ticks == sorted(ticks) and all(t % TICK_HZ == 0 for t in ticks)
            counters = [f.message.counter for f in frames]
            assert counters == list(range(counters[0], counters[0] + 3))
            seq = line.write(m.AdvanceTime(10**12))
            nak = next(f for f in line.frames(1) if f.seq == seq).message
            assert nak.reason == NakReason.NOT_ALLOWED_NOW and "lockstep" in nak.expected
        finally:
            line.close()


def test_baud_throttles_the_answers_like_a_uart() -> None:
    baud = 9_600
    with start_emulator_thread("pty", baud=baud, telemetry_period_s=1.0) as emu:
        line = Line(emu.url)
        try:
            started = time.monotonic()
            line.write(m.AdvanceTime(8 * TICK_HZ))
            frames = line.frames(9, keep_telemetry=True)
            elapsed = time.monotonic() - started
            sent = sum(len(f.inner) for f in frames)  # a lower bound of the bytes on the line
            assert type(frames[-1].message) is m.Ack
            assert elapsed >= sent * 10 / baud * 0.9  # it cannot be faster than the line allows
        finally:
            line.close()


@pytest.mark.parametrize("where", ["pty", "tcp:127.0.0.1:0"])
def test_stopping_frees_every_fd_and_thread(where: str) -> None:
    threads, fds = threading.active_count(), open_fds()
    for _ in range(3):
        with start_emulator_thread(where, telemetry_period_s=0) as emu:
            line = Line(emu.url)
            line.ask(m.GetStatus())
            line.close()
    assert threading.active_count() == threads
    assert open_fds() == fds


def test_an_in_process_device_can_be_served_and_inspected() -> None:
    device = EmulatedDevice(test_mode=True, telemetry_period_ticks=None)
    with start_emulator_thread("tcp:127.0.0.1:0", device=device) as emu:
        assert emu.device is device
        line = Line(emu.url)
        try:
            line.ask(m.Refill(0, 20_000_000, "morphine", 10_000))
        finally:
            line.close()
    assert device.status().drug == "morphine"


# ---- configuration errors --------------------------------------------------------------------

def test_listen_and_time_forms() -> None:
    assert parse_listen("pty").kind == "pty"
    assert parse_listen("tcp:127.0.0.1:0") == parse_listen("tcp:127.0.0.1:0")
    tcp = parse_listen("tcp:127.0.0.1:5555")
    assert (tcp.kind, tcp.host, tcp.port) == ("tcp", "127.0.0.1", 5555)
    assert parse_time_mode("lockstep") is None and parse_time_mode("realtime") == 1.0
    assert parse_time_mode("scaled:60") == 60.0 and parse_time_mode("scaled:0.5") == 0.5
    for bad in ("serial", "tcp:127.0.0.1", "tcp::5", "tcp:127.0.0.1:99999", "udp:1.2.3.4:5"):
        with pytest.raises(EmulatorConfigError, match=r"--listen .*expected pty or tcp:HOST:PORT"):
            parse_listen(bad)
    for bad in ("fast", "scaled:", "scaled:0", "scaled:-2", "scaled:inf", "scaled:x"):
        with pytest.raises(EmulatorConfigError, match=r"--time .*expected lockstep, scaled:N"):
            parse_time_mode(bad)
    with pytest.raises(EmulatorConfigError, match="--baud 0: expected a positive rate"):
        start_emulator_thread("pty", baud=0)


def test_a_busy_port_is_refused_by_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        fds = open_fds()
        with pytest.raises(EmulatorConfigError, match=f"tcp:127.0.0.1:{port}: cannot listen there"):
            start_emulator_thread(f"tcp:127.0.0.1:{port}")
        assert open_fds() == fds


# ---- `ithil emulate` as a process: --state survives a restart ------------------------------------

class EmulatorProcess:
    """`python -m hil.cli_emulate ...` (what `ithil emulate` runs), its URL read from stdout."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hil.cli_emulate", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert self.url, self.proc.stderr.read()  # type: ignore[union-attr]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=WAIT_S)
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def processes() -> Iterator[list[EmulatorProcess]]:
    running: list[EmulatorProcess] = []
    yield running
    for p in running:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.communicate()


def test_state_survives_a_process_restart(tmp_path: Path, processes: list[EmulatorProcess]) -> None:
    state = tmp_path / "pump.state"
    args = ("--listen", "tcp:127.0.0.1:0", "--test-mode", "--state", str(state), "--telemetry", "0")
    first = EmulatorProcess(*args)
    processes.append(first)
    line = Line(first.url)
    line.ask(m.Refill(0, 20_000_000, "morphine", 10_000))
    line.ask(m.ProgramContinuous(1_000_000))
    bolus_seq = line.write(m.ClinicianBolus(100_000, H))
    bolus_answer = [f.message for f in line.frames(2)]
    line.ask(m.AdvanceTime(H // 2))
    (before,) = line.ask(m.GetStatus())
    line.close()
    assert "stopped" in first.stop()

    second = EmulatorProcess(*args)
    processes.append(second)
    line = Line(second.url, signer=line.signer)
    line.seq = 100
    try:
        (after,) = line.ask(m.GetStatus())
        assert after == before and after.bolus_active == BolusKind.CLINICIAN
        line.write(m.ClinicianBolus(100_000, H), seq=bolus_seq)  # a retry across the restart: not run again
        assert [f.message for f in line.frames(2)] == bolus_answer
        line.ask(m.AdvanceTime(2 * H))
        (log,) = line.ask(m.ReadLog(0, 31))
        records = [wm.record_from_wire(r) for r in log.records]
        starts = [r for r in records if r.code == LogCode.BOLUS_STARTED and r.args[0] == BolusKind.CLINICIAN]
        assert len(starts) == 1
        assert [(r.tick, r.args[0]) for r in records if r.code == LogCode.POWER_ON] == [(0, 0), (H // 2, 1)]
        (end,) = line.ask(m.GetStatus())
        assert end.bolus_active is None and end.delivered_nl >= 100_000
    finally:
        line.close()
        second.stop()


def test_emulate_with_a_bad_listen_exits_2_naming_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "hil.cli_emulate", "--listen", "serial0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--listen 'serial0': expected pty or tcp:HOST:PORT" in proc.stderr
