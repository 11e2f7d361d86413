"""Command round trips through the whole host stack, against a raw pyserial echo; a lockstep day.

Round trip: PumpClient -> link (seq, HMAC signature) -> pyserial -> a real pty / a loopback TCP
socket -> the emulated pump (its own process: decode, verify, run the model, encode) -> back,
decoded and checked. Baseline, in the same run and the same arrangement: a raw echo process on a
pty / TCP socket that answers each request with as many bytes as the pump's answer, driven by
bare pyserial writes and reads of the same sizes. Two commands: GetStatus (a 130-byte
StatusReport back) and SetLowReservoirAlarm (an Ack back). Per call times, median and p99, the
best of a few rounds, the client and its echo taking turns round by round.

Where the time goes: the host's CPU per call (map, sign, encode; decode, map) and the emulated
pump's (EmulatedDevice.receive), each in this process without a line.

Lockstep day: one AdvanceTime of 24 h with a Telemetry frame per second of pump time (86,400
frames) over a pty, every frame decoded by the host, against the reference model alone running
the same day in the same 1 s steps (the emulator's own work, without the wire).

Prints, last, one figure per line. Goal: round trip at most 2 x the raw echo.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import serial  # noqa: E402

from _timing import fmt, report  # noqa: E402
from firmware_model.commands import GetStatus, ProgramContinuous, Refill, SetLowReservoirAlarm  # noqa: E402
from firmware_model.controller import Controller, PumpConfig  # noqa: E402
from firmware_model.plant import Plant  # noqa: E402
from firmware_model.units import TICK_HZ, TICKS_PER_DAY  # noqa: E402
from hil.client import PumpClient  # noqa: E402
from hil.device import EmulatedDevice, default_test_keys  # noqa: E402
from hil.wire_model import command_to_wire, response_from_wire, telemetry_message  # noqa: E402
from protocol import Decoder, Signer, encode_frame  # noqa: E402
from protocol import messages as m  # noqa: E402

CALLS = 1000             # round trips per round
ROUNDS = 3
WARM_UP = 100
CLINICIAN_KEY, PATIENT_KEY = default_test_keys()

EMULATOR = """
import sys
from hil.emulator_server import run_emulator
run_emulator(sys.argv[1], "lockstep", True, None, None, lambda url: print(url, flush=True),
             telemetry_period_s=float(sys.argv[2]))
"""

ECHO = """
import os, socket, sys, tty
listen, reply = sys.argv[1], b"\\x01" * (int(sys.argv[2]) - 1) + b"\\x00"
if listen == "pty":
    master, slave = os.openpty()
    tty.setraw(slave)
    print(os.ttyname(slave), flush=True)
    read, write = (lambda: os.read(master, 65536)), (lambda data: os.write(master, data))
else:
    server = socket.create_server(("127.0.0.1", 0))
    print(f"socket://127.0.0.1:{server.getsockname()[1]}", flush=True)
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    read, write = (lambda: conn.recv(65536)), conn.sendall
while True:
    data = read()
    if not data:
        break
    for _ in range(data.count(0)):
        write(reply)
"""


@contextlib.contextmanager
def served(script: str, *args: str) -> Iterator[str]:
    """Run a server script in its own process; yield the URL it prints first."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"server {args} printed no URL (exit code {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def best_rounds(calls: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Per-call wall times of each call's best round (lowest median); the calls take turns round
    by round, so a candidate and its baseline see the same moments of a shared machine."""
    for call in calls.values():
        for _ in range(WARM_UP):
            call()
    best: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            times = []
            for _ in range(CALLS):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            if name not in best or statistics.median(times) < statistics.median(best[name]):
                best[name] = times
    return best


def median_p99_us(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


def frame_sizes() -> dict[str, tuple[int, int]]:
    """Bytes on the wire of each command (signed) and of its answer."""
    status = m.StatusReport(TICKS_PER_DAY, 1, "morphine", 10_000, 480_000, 479_990, 19_000_000, 1_000_000,
                            10_000_000, 4_000, None, (), None, False, False, False, 82, False, False, 10**11)
    signer = Signer(CLINICIAN_KEY)
    return {
        "status": (len(encode_frame(m.GetStatus(), 1, signer)), len(encode_frame(status, 1))),
        "ack": (len(encode_frame(m.SetLowReservoirAlarm(2_000_000), 1, signer)), len(encode_frame(m.Ack(0x1A), 1))),
    }


@contextlib.contextmanager
def raw_echo(kind: str, request_bytes: int, reply_bytes: int) -> Iterator[Callable[[], None]]:
    """One round trip of bare pyserial against an echo process answering `reply_bytes`."""
    request = b"\x01" * (request_bytes - 1) + b"\x00"
    with served(ECHO, kind, str(reply_bytes)) as url:
        port = serial.serial_for_url(url, timeout=2)

        def call() -> None:
            port.write(request)
            if len(port.read(reply_bytes)) != reply_bytes:
                raise RuntimeError(f"echo on {url}: short reply")
        try:
            yield call
        finally:
            port.close()


def round_trips(kind: str, sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per command: the client's round trips and the raw echo's of the same sizes, taking turns."""
    listen = "pty" if kind == "pty" else "tcp:127.0.0.1:0"
    with served(EMULATOR, listen, "0") as url, PumpClient(url, clinician_key=CLINICIAN_KEY,
                                                          patient_key=PATIENT_KEY, answer_timeout_s=1.0) as pump:
        pump.hello()
        pump.refill(0, 20_000_000, "morphine", 10_000)
        pump.program_continuous(480_000)
        pump.advance(TICKS_PER_DAY)
        commands = {"status": pump.status, "ack": lambda: pump.set_low_reservoir_alarm(2_000_000)}
        out = {}
        for command, call in commands.items():
            with raw_echo(kind, *sizes[command]) as echo:
                best = best_rounds({"stack": call, "echo": echo})
            out[command] = (best["stack"], best["echo"])
        assert pump.stats.retried == 0 and pump.stats.timed_out == 0
        return out


def cpu_per_call_us() -> dict[str, tuple[float, float]]:
    """Where a round trip's time goes, in this process without any line: the host's CPU (map the
    command, sign, encode; decode and map the answer) and the emulated pump's (EmulatedDevice.receive)."""
    device = EmulatedDevice(test_mode=True, telemetry_period_ticks=None)
    signer = Signer(CLINICIAN_KEY)
    seq = iter(range(1, 1 << 30))
    for setup in (Refill(0, 20_000_000, "morphine", 10_000), ProgramContinuous(480_000)):
        device.receive(encode_frame(command_to_wire(setup), next(seq) % 65535 + 1, signer))
    out = {}
    for name, command in (("status", GetStatus()), ("ack", SetLowReservoirAlarm(2_000_000))):
        answer = device.receive(encode_frame(command_to_wire(command), 1, signer))
        decoder = Decoder()

        def host() -> None:
            encode_frame(command_to_wire(command), 1, signer)
            [response_from_wire(f.message) for f in decoder.feed(answer)]

        def pump() -> None:
            device.receive(encode_frame(command_to_wire(command), next(seq) % 65535 + 1, signer))

        best = best_rounds({"host": host, "pump": pump})
        out[name] = (statistics.median(best["host"]) * 1e6, statistics.median(best["pump"]) * 1e6)
    return out


def lockstep_day() -> tuple[float, float, int]:
    """Wall time of a day of AdvanceTime over a pty with 1 Hz telemetry; the model alone; frames."""
    with served(EMULATOR, "pty", "1") as url, PumpClient(url, clinician_key=CLINICIAN_KEY,
                                                        advance_timeout_s=120.0) as pump:
        pump.hello()
        pump.refill(0, 20_000_000, "morphine", 10_000)
        pump.program_continuous(480_000)
        t0 = time.perf_counter()
        pump.advance_to(TICKS_PER_DAY)
        frames = sum(1 for _ in pump.telemetry())
        wire_s = time.perf_counter() - t0
        assert frames == 86_400 and pump.stats.telemetry_lost == 0, (frames, pump.stats.as_dict())

    config = PumpConfig()
    model = Controller(config, Plant(stroke_nl=config.mechanism.stroke_nl))   # the emulator's pump
    model.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    model.handle(ProgramContinuous(480_000), 0)
    t0 = time.perf_counter()
    for second in range(1, 86_401):
        model.advance(second * TICK_HZ)
        telemetry_message(model, second)
    model_s = time.perf_counter() - t0
    return wire_s, model_s, frames


def main() -> None:
    gc.collect()
    sizes = frame_sizes()
    figures: list[tuple[str, float, str]] = []
    notes = []
    for kind in ("pty", "tcp"):
        for command, (stack, echo) in round_trips(kind, sizes).items():
            request_bytes, reply_bytes = sizes[command]
            s_med, s_p99 = median_p99_us(stack)
            e_med, e_p99 = median_p99_us(echo)
            notes.append(f"{kind} {command}: {request_bytes} B out, {reply_bytes} B back")
            figures += [
                (f"{kind}_{command}_round_trip_median", s_med, "us"),
                (f"{kind}_{command}_round_trip_p99", s_p99, "us"),
                (f"{kind}_raw_echo_{command}_size_median", e_med, "us"),
                (f"{kind}_raw_echo_{command}_size_p99", e_p99, "us"),
                (f"{kind}_{command}_round_trip_median_vs_raw_echo", s_med / e_med, "x"),
                (f"{kind}_{command}_round_trip_p99_vs_raw_echo", s_p99 / e_p99, "x"),
            ]
    for command, (host_us, pump_us) in cpu_per_call_us().items():
        figures += [(f"{command}_host_cpu_per_call_median", host_us, "us"),
                    (f"{command}_pump_cpu_per_call_median", pump_us, "us")]
    wire_s, model_s, frames = lockstep_day()
    figures += [
        ("lockstep_day_with_telemetry_wall", wire_s, "s"),
        ("lockstep_day_model_alone_wall", model_s, "s"),
        ("lockstep_day_wall_vs_model_alone", wire_s / model_s, "x"),
        ("lockstep_day_telemetry_frames", frames, "frames"),
    ]
    for note in notes:
        print(note)
    print(f"(goal: round trip <= 2 x the raw echo; {CALLS} calls per round, best of {ROUNDS}; "
          f"{fmt(frames)} telemetry frames in the day)")
    report(figures)


if __name__ == "__main__":
    main()
