"""hil.fault_proxy, and the link through it: every command answered once, nothing run twice.

The proxy's own tests put `loop://` behind it (what goes to the device comes straight back), so
each fault can be seen on the frames that return. The end-to-end tests put the emulated pump
behind it (over a real pty, a real TCP socket and emu://) and run a seeded mix of commands,
boluses included, through drops, bit flips, duplicates, delays and reordering; the same commands
run on the reference model beside it, and the pump's answers, status and whole event log (read
back through the same faulty link) must equal the model's.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from firmware_model import commands as c
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import CommandRefused as ModelRefused
from firmware_model.errors import LimitExceeded
from firmware_model.commands import COMMAND_TYPES
from firmware_model.event_log import LogCode, Record, blobs
from firmware_model.plant import Plant
from firmware_model.units import TICK_HZ
from hil.client import PumpClient
from hil.device import default_test_keys
from hil.emulator_server import start_emulator_thread
from hil.errors import FaultProxyError, HilError, PumpRefused, TransportError
from hil.fault_proxy import FaultProxy, FaultRates
from hil.transport import Transport
from protocol import Decoder, NakReason, encode_frame
from protocol import messages as m

CLINICIAN_KEY, PATIENT_KEY = default_test_keys()
TELEMETRY_TICKS = 10 * TICK_HZ            # one Telemetry frame per 10 s of pump time


def frames(n: int) -> list[bytes]:
    return [encode_frame(m.Ack(i % 256), seq=i + 1) for i in range(n)]


def collect(port: Transport, n_bytes: int, idle_s: float = 0.3) -> bytes:
    """What arrives until n_bytes have come or nothing has for idle_s."""
    data = b""
    while len(data) < n_bytes:
        chunk = port.read(idle_s)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def echo_through(to_device: FaultRates, to_host: FaultRates | None = None, seed: int = 0) -> Iterator[
        tuple[FaultProxy, Transport]]:
    """A proxy with loop:// behind it, and a host port connected to it."""
    with FaultProxy("loop://", to_device, to_host or FaultRates(), seed=seed) as proxy, Transport(proxy.url) as host:
        yield proxy, host


# ---- the proxy's faults, one at a time -----------------------------------------------------------------

def test_without_faults_every_frame_passes_unchanged_both_ways() -> None:
    sent = frames(50)
    with echo_through(FaultRates()) as (proxy, host):
        host.write(b"".join(sent))
        assert collect(host, sum(map(len, sent))) == b"".join(sent)
    assert proxy.counts["to_device"]["frames"] == 50 and proxy.counts["to_host"]["frames"] == 50
    assert sum(proxy.counts["to_device"].values()) == 50


def test_drop_loses_whole_frames() -> None:
    sent = frames(40)
    with echo_through(FaultRates(drop=1.0)) as (proxy, host):
        host.write(b"".join(sent))
        assert collect(host, 1, idle_s=0.1) == b""
    assert proxy.counts["to_device"]["dropped"] == 40


def test_corruption_flips_one_to_max_bits_per_frame_and_the_decoder_rejects_every_one() -> None:
    sent = frames(60)
    with echo_through(FaultRates(corrupt=1.0, max_flipped_bits=3)) as (proxy, host):
        host.write(b"".join(sent))
        back = collect(host, sum(map(len, sent)))
    assert len(back) == sum(map(len, sent))                  # flips change bits, never the length
    at = 0
    for frame in sent:
        flipped = sum(bin(a ^ b).count("1") for a, b in zip(frame, back[at:at + len(frame)]))
        assert 1 <= flipped <= 3
        at += len(frame)
    decoder = Decoder()
    assert decoder.feed(back) == [] and decoder.frames_bad >= 60
    assert proxy.counts["to_device"]["corrupted"] == 60


def test_duplicate_sends_each_frame_twice() -> None:
    sent = frames(30)
    with echo_through(FaultRates(duplicate=1.0)) as (proxy, host):
        host.write(b"".join(sent))
        back = collect(host, 2 * sum(map(len, sent)))
    assert back == b"".join(f + f for f in sent)
    assert proxy.counts["to_device"]["duplicated"] == 30


def test_reorder_lets_the_next_frame_overtake() -> None:
    sent = frames(20)
    with echo_through(FaultRates(reorder=1.0, reorder_hold_s=5.0)) as (proxy, host):
        host.write(b"".join(sent))
        back = collect(host, sum(map(len, sent)))
    assert back == b"".join(sent[i + 1] + sent[i] for i in range(0, 20, 2))
    assert proxy.counts["to_device"]["reordered"] == 10


def test_a_held_frame_goes_anyway_when_nothing_overtakes_it() -> None:
    one = frames(1)[0]
    with echo_through(FaultRates(reorder=1.0, reorder_hold_s=0.01)) as (_, host):
        host.write(one)
        assert collect(host, len(one)) == one


def test_delayed_frames_all_arrive() -> None:
    sent = frames(40)
    with echo_through(FaultRates(delay=1.0, delay_s=(0.001, 0.02))) as (proxy, host):
        host.write(b"".join(sent))
        back = collect(host, sum(map(len, sent)))
    assert sorted(f.seq for f in Decoder().feed(back)) == list(range(1, 41))
    assert proxy.counts["to_device"]["delayed"] == 40


def test_a_seed_gives_the_same_faults_to_the_same_frames() -> None:
    sent = frames(300)
    rates = FaultRates(drop=0.1, corrupt=0.05, duplicate=0.1)
    runs = []
    for seed in (7, 7, 8):
        with echo_through(rates, seed=seed) as (proxy, host):
            host.write(b"".join(sent))
            back = collect(host, 1 << 20, idle_s=0.2)
        runs.append((back, proxy.counts))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_the_proxy_serves_the_next_host_after_one_hangs_up() -> None:
    one = frames(1)[0]
    with FaultProxy("loop://") as proxy:
        for _ in range(2):
            with Transport(proxy.url) as host:
                host.write(one)
                assert collect(host, len(one)) == one


@pytest.mark.parametrize("rates, complaint", [
    (dict(drop=1.5), r"FaultRates.drop = 1.5: expected a probability in 0..1"),
    (dict(corrupt=-0.1), r"FaultRates.corrupt = -0.1"),
    (dict(delay_s=(0.2, 0.1)), r"delay_s = \(0.2, 0.1\): expected \(low, high\) with 0 <= low <= high"),
    (dict(max_flipped_bits=0), r"max_flipped_bits = 0: expected >= 1"),
])
def test_rates_set_up_wrongly_name_the_field(rates: dict, complaint: str) -> None:
    with pytest.raises(FaultProxyError, match=complaint) as info:
        FaultRates(**rates)
    assert isinstance(info.value, HilError)


def test_a_device_that_cannot_be_reached_is_a_transport_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match=f"cannot open 'socket://127.0.0.1:{port}'"):
        FaultProxy(f"socket://127.0.0.1:{port}")


# ---- the link through the proxy: every command answered once, nothing run twice ---------------------------

FAULTS = FaultRates(drop=0.05, corrupt=0.01, duplicate=0.02, delay=0.02, reorder=0.02, delay_s=(0.001, 0.01))


@dataclass
class Ledger:
    """What the host issued and what it got back; `log` is the pump's whole log, read as it grew."""

    commands: int = 0
    clinician_boluses_granted: int = 0
    patient_boluses_granted: int = 0
    patient_boluses_denied: int = 0
    refused: int = 0
    log: list[Record] = field(default_factory=list)


def reference_pump() -> Controller:
    config = PumpConfig()
    return Controller(config, Plant(seed=0, stroke_nl=config.mechanism.stroke_nl))


def advance_as_the_pump_does(model: Controller, to_tick: int) -> None:
    """Run the model to `to_tick` through every telemetry tick on the way, as the emulated pump does
    (its plant's pressure samples depend on where an advance stops: reported to the model's owner)."""
    period = TELEMETRY_TICKS
    for due in range((model.state.tick // period + 1) * period, to_tick + 1, period):
        model.advance(due)
    model.advance(to_tick)


def read_new_log(pump: PumpClient, model: Controller, ledger: Ledger) -> None:
    """The records written since the last read, from the pump; they must be the model's."""
    first = ledger.log[-1].seq + 1 if ledger.log else 0
    new = pump.read_log(first)
    assert new == [r for r in model.log.records() if r.seq >= first]
    ledger.log += new


def run_mix(pump: PumpClient, model: Controller, n: int, seed: int) -> Ledger:
    """n commands, a seeded mix, each sent to the pump and run on the model; answers must agree."""
    rng = random.Random(seed)
    ledger = Ledger()
    tick = 0

    def both(command: c.Command) -> list:
        ledger.commands += 1
        try:
            expected = model.handle(command, tick)
            model.advance(tick)
        except ModelRefused as refusal:
            expected = refusal
        try:
            got = pump.execute(command)
        except PumpRefused as exc:
            assert isinstance(expected, ModelRefused), f"{command}: the pump refused ({exc}); the model: {expected}"
            assert exc.reason is (NakReason.LIMIT_EXCEEDED if isinstance(expected, LimitExceeded)
                                  else NakReason.NOT_ALLOWED_NOW)
            ledger.refused += 1
            return []
        assert got == expected, f"{command}: the pump answered {got}; the model {expected!r}"
        return got

    for command in (c.Refill(0, 20_000_000, "morphine", 10_000), c.ProgramContinuous(480_000),
                    c.ConfigurePatientBolus(10_000, 30 * TICK_HZ, 300 * TICK_HZ, 24)):
        both(command)
    kinds = ["status", "bolus", "patient", "advance", "program", "log", "threshold"]
    weights = [30, 12, 15, 25, 8, 5, 5]
    while ledger.commands < n:
        kind = rng.choices(kinds, weights)[0]
        if kind == "status":
            both(c.GetStatus())
        elif kind == "bolus":
            answers = both(c.ClinicianBolus(rng.choice([5_000, 20_000]), rng.randint(5, 60) * TICK_HZ))
            ledger.clinician_boluses_granted += any(isinstance(a, c.BolusGranted) for a in answers)
        elif kind == "patient":
            answers = both(c.PatientBolusRequest())
            ledger.patient_boluses_granted += any(isinstance(a, c.BolusGranted) for a in answers)
            ledger.patient_boluses_denied += any(isinstance(a, c.BolusDenied) for a in answers)
        elif kind == "advance":
            ledger.commands += 1
            tick += rng.randint(1, 60) * TICK_HZ
            advance_as_the_pump_does(model, tick)
            assert pump.advance_to(tick) == tick
        elif kind == "program":
            both(c.ProgramContinuous(rng.choice([48_000, 480_000, 1_000_000, 50_000_000])))  # the last: refused
        elif kind == "log":
            ledger.commands += 1
            read_new_log(pump, model, ledger)
        else:
            both(c.SetLowReservoirAlarm(rng.choice([1_000_000, 3_000_000, 9_000_000])))  # the last: refused
    return ledger


def check_nothing_lost_or_doubled(pump: PumpClient, model: Controller, ledger: Ledger) -> None:
    assert pump.status() == model.status()
    read_new_log(pump, model, ledger)                               # through the same faulty link
    log = ledger.log
    assert [r.seq for r in log] == list(range(model.log.next_seq))  # every record, once, in order
    run = collections.Counter(COMMAND_TYPES[blob[0]] for _, _, blob in blobs(log, LogCode.COMMAND))
    assert run[c.ClinicianBolus] == ledger.clinician_boluses_granted > 0       # each bolus issued ran once
    assert run[c.PatientBolusRequest] == ledger.patient_boluses_granted + ledger.patient_boluses_denied
    codes = [r.code for r in log]
    assert codes.count(LogCode.PATIENT_BOLUS_GRANTED) == ledger.patient_boluses_granted > 0
    assert codes.count(LogCode.PATIENT_BOLUS_DENIED) == ledger.patient_boluses_denied
    assert ledger.refused > 0


@contextlib.contextmanager
def emulated_pump(kind: str) -> Iterator[str]:
    """The URL of an emulated pump in test mode: behind a real pty, a real TCP socket, or emu://."""
    if kind == "emu":
        yield f"emu://?test_mode=1&telemetry_ticks={TELEMETRY_TICKS}"
        return
    with start_emulator_thread("pty" if kind == "pty" else "tcp:127.0.0.1:0", test_mode=True,
                               telemetry_period_s=TELEMETRY_TICKS / TICK_HZ) as emulator:
        yield emulator.url


def faulty_session(device_url: str, n: int, seed: int) -> None:
    model = reference_pump()
    with FaultProxy(device_url, FAULTS, seed=seed) as proxy, PumpClient(
            proxy.url, clinician_key=CLINICIAN_KEY, patient_key=PATIENT_KEY, answer_timeout_s=0.01,
            max_attempts=20, advance_timeout_s=0.05) as pump:
        pump.hello()
        ledger = run_mix(pump, model, n, seed)
        check_nothing_lost_or_doubled(pump, model, ledger)
        stats = pump.stats
        faults = proxy.counts
    assert stats.timed_out == 0 and stats.retried > 0
    assert faults["to_device"]["dropped"] > 0 and faults["to_host"]["dropped"] > 0
    assert faults["to_device"]["corrupted"] + faults["to_host"]["corrupted"] > 0
    assert sum(stats.bad_frames.values()) > 0
    assert stats.telemetry_received > 0 and stats.telemetry_lost > 0


@pytest.mark.parametrize("kind", ["pty", "tcp", "emu"])
def test_a_thousand_commands_through_faults_each_answered_once(kind: str) -> None:
    with emulated_pump(kind) as url:
        faulty_session(url, 1_000, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pty", "tcp", "emu"])
def test_ten_thousand_commands_through_faults_each_answered_once(kind: str) -> None:
    with emulated_pump(kind) as url:
        faulty_session(url, 10_000, seed=12)
