"""The pump controller in C (rigs/qemu-m3/pump_engine.c, pump_commands.c, pump_wire.c) against the
reference model, firmware_model.controller.Controller, tick for tick.

tests/rigs/c/pump_driver.c links the pump natively (ASan and UBSan when gcc has them). Differential
runs (the Twin below) drive the model with a Plant and the C pump with the bench fixture's
protocol (stroke samples on request from a second Plant of the same parameters, committed only as
the C pump uses them; rotor-held and EMI lines announced ahead) and compare after every step the
StatusReport payload, every answer or refusal (reason and field), the Telemetry payload, and at the
end the event logs (every record but CHECKPOINT and COMMAND: code, tick, aux, arguments). The
command sequences are the standard suite's scenarios (suites/standard/*.toml) and more, and
hypothesis-generated sequences of commands (valid and invalid), advances, battery drains, resets
and plant faults. The leaves (detector, battery, fluid path, log records, wire payloads) are
checked on their own, and the sources build for the target with the firmware's flags.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_build import FIRMWARE_DIR, PUMP_SOURCES, build_firmware, build_pump_driver
from firmware_model.alarms import AlarmCode
from firmware_model.battery import BatterySpec
from firmware_model.commands import (AcknowledgeAlarm, ClinicianBolus, ConfigurePatientBolus, GetStatus, Interrogate,
                                     PatientBolusRequest, PrimingBolus, ProgramContinuous, ProgramFlex,
                                     ProgramMinimumRate, ProgramStopped, Refill, SetClock, SetLowReservoirAlarm)
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import CommandRefused
from firmware_model.event_log import ARGS, EventLog, LogCode, Record
from firmware_model.fluid_path import FluidPath
from firmware_model.occlusion import DetectorSettings, scan_per_step
from firmware_model.plant import Jam, MriExposure, Occlusion, Plant
from firmware_model.units import TICKS_PER_DAY as D, TICKS_PER_HOUR as H, TICKS_PER_MINUTE as M
from hil.fixture import PlantFixture
from hil.wire_model import answers_to_wire, command_to_wire, refusal_to_nak, status_to_wire, telemetry_message
from protocol.framing import encode_payload
from protocol.messages import CATALOGUE

U32, U64 = (1 << 32) - 1, (1 << 64) - 1
MALFORMED = 11


# ---- the twin: the C pump beside the model ----------------------------------------------------
#
# `CPump` speaks to tests/rigs/c/pump_driver.c (rigs/qemu-m3/pump_*.c built natively) line by line.
# `Twin` runs firmware_model.controller.Controller with a Plant and the C pump side by side and
# drives the C pump the way the bench fixture will: the C pump has no plant, so a second Plant of the
# same parameters answers its requests for stroke samples (`plant.strokes(ticks)` computes without
# committing; only the strokes the C pump reports as used are committed), is settled at each
# occlusion start or end once the pump is past it, and announces its line changes (rotor held, EMI)
# ahead, occlusion starts and ends included (levels unchanged: they are the model's event ticks too).
# After every step the two are compared: the StatusReport payload byte for byte, every answer (or
# refusal: reason and field), the Telemetry payload; at the end the event logs (every record but
# CHECKPOINT and COMMAND, whose bytes are each side's own: code, tick, aux and arguments).

JUDGED_OUT = (LogCode.CHECKPOINT, LogCode.COMMAND)


class Mismatch(AssertionError):
    """The C pump and the model differ: names the tick, the step and the field."""


class CPump:
    """The native driver as a line-by-line service."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"pump_driver died on {line[:200]!r} (exit {self.proc.poll()}):\n{err[-4000:]}")
        return answer.rstrip("\n")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=20)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0 and not err, f"pump_driver exit {self.proc.returncode}:\n{err[-4000:]}"

    # ---- the API, as device.c and the fixture use it ---------------------------------------------

    def run(self, to: int) -> tuple[bool, int, int, list[int]]:
        words = self.ask(f"run {to}").split()
        done, tick, used = words[0] == "done", int(words[1]), int(words[2])
        wanted = [int(w) for w in words[4:]] if not done else []
        if not done:
            assert int(words[3]) == len(wanted)
        return done, tick, used, wanted

    def command(self, msg_id: int, payload: bytes) -> tuple[list[tuple[int, bytes]], tuple[int, str, str, str] | None]:
        words = self.ask(f"cmd {msg_id} {payload.hex() or '-'}").split()
        return parse_answer(words)

    def drain(self, charge: int) -> tuple[int, str, str, str] | None:
        words = self.ask(f"drain {charge}").split()
        return None if words[0] == "ok" else parse_answer(words)[1]

    def hex(self, line: str) -> bytes:
        answer = self.ask(line)
        return b"" if answer == "-" else bytes.fromhex(answer)

    def status(self) -> bytes:
        """The StatusReport payload, read as the model's status() reads (no settle: a GetStatus
        command settles the pump first, on both sides)."""
        return self.hex("status")

    def telemetry(self, counter: int = 0) -> bytes:
        return self.hex(f"tele {counter}")

    def records(self) -> list[Record]:
        """Every record the C pump's log holds, oldest first (CRC-checked by Record.unpack)."""
        out: list[Record] = []
        seq = 0
        while True:
            data = self.hex(f"log {seq} 31")
            next_seq, n = int.from_bytes(data[:4], "little"), data[4]
            assert len(data) == 5 + 32 * n
            for i in range(n):
                out.append(Record.unpack(data[5 + 32 * i:5 + 32 * (i + 1)]))
            if n == 0:
                return out
            seq = out[-1].seq + 1
            if seq >= next_seq:
                return out


def _text(h: str) -> str:
    return "" if h == "-" else bytes.fromhex(h).decode("utf-8")


def parse_answer(words: list[str]) -> tuple[list[tuple[int, bytes]], tuple[int, str, str, str] | None]:
    if words[0] == "ref":
        return [], (int(words[1]), _text(words[2]), _text(words[3]), _text(words[4]))
    n = int(words[1])
    answers = []
    for i in range(n):
        mid, hx = int(words[2 + 2 * i]), words[3 + 2 * i]
        answers.append((mid, b"" if hx == "-" else bytes.fromhex(hx)))
    return answers, None


@dataclass
class Faults:
    """A plant's parameters and faults, built twice (the model's plant and the fixture's)."""

    seed: int = 0
    occlusions: tuple = ()
    mri: tuple = ()
    jams: tuple = ()

    def plant(self) -> Plant:
        return Plant(seed=self.seed, occlusions=self.occlusions, mri=self.mri, jams=self.jams)


@dataclass
class Twin:
    """The model and the C pump, run side by side; every observable compared after every step."""

    cpump: CPump
    faults: Faults = field(default_factory=Faults)
    config: PumpConfig = field(default_factory=PumpConfig)
    round_trips: int = 0
    steps_done: int = 0

    def __post_init__(self) -> None:
        self.plant_m = self.faults.plant()
        self.fixture = PlantFixture(self.faults.plant())
        self.model = Controller(self.config, self.plant_m)
        self.model.advance(0)
        self.cpump.ask("init 0")
        self.compare("power on")

    @property
    def now(self) -> int:
        return self.model.state.tick

    # ---- the fixture: hil.fixture.PlantFixture, as FixtureClient drives it over the wire -------------

    def run_c(self, to: int) -> None:
        """Run the C pump to `to` as device.c runs a FixtureAdvance: the lines ahead and the pressures
        of the strokes it asked for (a new feed every round trip), then run; the fixture's plant
        commits what it used."""
        fx, pressures, wanted = self.fixture, [], []
        while True:
            lines, target = fx.lines(to)
            self.cpump.ask(f"lines {len(lines)} " + " ".join(f"{x.tick} {int(x.rotor_held)} {int(x.emi)}" for x in lines))
            self.cpump.ask(f"feed {len(pressures)} " + " ".join(f"{t} {p}" for t, p in zip(wanted, pressures)))
            done, tick, used, wanted = self.cpump.run(target)
            self.round_trips += 1
            fx.report(tick, used)
            if not done:
                pressures = fx.samples(wanted)
                assert pressures, f"the C pump at {tick} wants strokes {wanted[:4]} the fixture cannot feed"
                continue
            pressures = []
            if tick >= to:
                fx.finish()
                return

    # ---- steps -------------------------------------------------------------------------------

    def advance(self, to: int) -> None:
        self.model.advance(to)
        self.run_c(to)
        self.compare(f"advance to {to}")

    def handle(self, command: Any) -> None:
        """A command at the present tick on both; the answers (or refusals) compared."""
        tick = self.now
        wire = command_to_wire(command)
        msg_id = type(wire).SPEC.msg_id
        payload = encode_payload(wire)
        try:
            responses = self.model.handle(command, tick)
            self.model.advance(tick)
            model_answers = [(type(a).SPEC.msg_id, encode_payload(a), a) for a in answers_to_wire(responses, msg_id)]
            model_refusal = None
        except CommandRefused as exc:
            model_answers, model_refusal = [], refusal_to_nak(exc, msg_id)
        answers, refusal = self.cpump.command(msg_id, payload)
        where = f"tick {tick}, {command!r}"
        if model_refusal is not None:
            if refusal is None:
                raise Mismatch(f"{where}: the model refused ({model_refusal.reason.name} {model_refusal.field!r}: "
                               f"{model_refusal.expected}), the C pump answered {answers}")
            if (refusal[0], refusal[1]) != (int(model_refusal.reason), model_refusal.field):
                raise Mismatch(f"{where}: refusal reason/field: model {int(model_refusal.reason)} "
                               f"{model_refusal.field!r} ({model_refusal.expected}); C {refusal}")
            if model_refusal.value and not refusal[2]:
                raise Mismatch(f"{where}: the C refusal names no value; the model's is {model_refusal.value!r}")
        else:
            if refusal is not None:
                raise Mismatch(f"{where}: the model answered {[a[2] for a in model_answers]}, the C pump refused {refusal}")
            if [a[0] for a in answers] != [a[0] for a in model_answers]:
                raise Mismatch(f"{where}: answer ids: model {[hex(a[0]) for a in model_answers]}, "
                               f"C {[hex(a[0]) for a in answers]}")
            for (mid, got), (_, want, message) in zip(answers, model_answers):
                spec = CATALOGUE[mid]
                parsed = spec.parse(got)  # the C payload parses as its message
                if mid == 0x44:  # BolusDenied: its detail is free text
                    if parsed.reason != message.reason:
                        raise Mismatch(f"{where}: BolusDenied reason: model {message.reason}, C {parsed.reason}")
                    continue
                if got != want:
                    raise Mismatch(f"{where}: answer {spec.name} differs:\n model {message}\n C     {parsed}")
        self.compare(f"after {type(command).__name__} at {tick}")

    def drain(self, charge: int) -> None:
        tick = self.now
        try:
            self.model.drain_battery(charge, tick)
            model_refused = None
        except CommandRefused as exc:
            model_refused = refusal_to_nak(exc, 0x73)
        refusal = self.cpump.drain(charge)
        if (model_refused is None) != (refusal is None):
            raise Mismatch(f"tick {tick}: drain {charge}: model refused {model_refused}, C refused {refusal}")
        if refusal is not None and refusal[1] != model_refused.field:
            raise Mismatch(f"tick {tick}: drain refusal field: model {model_refused.field!r}, C {refusal[1]!r}")
        self.compare(f"after a drain of {charge} nC at {tick}")

    def reset(self) -> None:
        """A processor reset at the present tick: the model rebuilt from its log (as
        hil.reference.ReferencePump.reset), the C pump powered on over its own log."""
        tick = self.now
        flash = EventLog.from_bytes(self.model.log.to_bytes())
        self.model = Controller.rebuild(self.config, flash, tick, self.plant_m)
        self.model.advance(tick)
        self.cpump.ask(f"reset {tick}")
        self.compare(f"after a reset at {tick}")

    # ---- comparisons -------------------------------------------------------------------------

    def compare(self, where: str) -> None:
        self.steps_done += 1
        ctl = self.model
        c_tick = int(self.cpump.ask("state").split()[0])
        if c_tick != ctl.state.tick:
            raise Mismatch(f"{where}: tick: model {ctl.state.tick}, C {c_tick}")
        want = encode_payload(status_to_wire(ctl.status()))
        got = self.cpump.status()
        if got != want:
            spec = CATALOGUE[0x45]
            m, c = spec.parse(want), spec.parse(got)
            diffs = [f"{name}: model {a!r}, C {b!r}" for name, a, b in zip(m._fields, m, c) if a != b]
            raise Mismatch(f"{where} (tick {ctl.state.tick}): StatusReport differs: " + "; ".join(diffs))
        want_t = encode_payload(telemetry_message(ctl, 0))
        got_t = self.cpump.telemetry(0)
        if got_t != want_t:
            spec = CATALOGUE[0x50]
            m, c = spec.parse(want_t), spec.parse(got_t)
            diffs = [f"{name}: model {a!r}, C {b!r}" for name, a, b in zip(m._fields, m, c) if a != b]
            raise Mismatch(f"{where} (tick {ctl.state.tick}): Telemetry differs: " + "; ".join(diffs))

    def compare_logs(self) -> int:
        """The judged records (all but CHECKPOINT and COMMAND) equal, in order; how many."""
        model = [r for r in self.model.log.records() if r.code not in JUDGED_OUT]
        c = [r for r in self.cpump.records() if r.code not in JUDGED_OUT]
        for i, (m, k) in enumerate(zip(model, c)):
            if (m.tick, m.code, m.aux, m.payload) != (k.tick, k.code, k.aux, k.payload):
                raise Mismatch(f"log record {i}: model {m.code.name} at tick {m.tick} args {m.args}; "
                               f"C {k.code.name} at tick {k.tick} args {k.args}")
        if len(model) != len(c):
            extra = (model if len(model) > len(c) else c)[min(len(model), len(c)):][:3]
            raise Mismatch(f"log: model {len(model)} judged records, C {len(c)}; first extra: "
                           + ", ".join(f"{r.code.name}@{r.tick}" for r in extra))
        # The checkpoints' bytes are each side's own, but they fall on the same ticks: the C pump
        # counts its records as the model counts its own (a rebuild replays from the newest one).
        cp_m = [r.tick for r in self.model.log.records() if r.code == LogCode.CHECKPOINT and r.aux & 0x7FFF == 0]
        cp_c = [r.tick for r in self.cpump.records() if r.code == LogCode.CHECKPOINT and r.aux & 0x7FFF == 0]
        if cp_m != cp_c:
            raise Mismatch(f"checkpoint ticks: model {cp_m[:12]}..., C {cp_c[:12]}...")
        return len(model)


@pytest.fixture(scope="module")
def driver_path(tmp_path_factory) -> Path:
    return build_pump_driver(tmp_path_factory.mktemp("pump_native"))


@pytest.fixture()
def cpump(driver_path):
    pump = CPump(driver_path)
    yield pump
    pump.close()


# ---- differential runs: the standard suite's scenarios and more ----------------------------------

def run_scenario(cpump: CPump, steps: list, end: int, every: int, faults: Faults | None = None) -> Twin:
    """Steps (tick, action) in order: a command, ("drain", nC), "reset" or "check"; between them the
    pair is advanced in chunks of `every` ticks, compared at each."""
    twin = Twin(cpump, faults or Faults())

    def advance_to(tick: int) -> None:
        t = twin.now
        while t < tick:
            t = min(tick, t + every)
            twin.advance(t)

    for tick, action in steps:
        advance_to(tick)
        if action == "reset":
            twin.reset()
        elif action == "check":
            continue                      # the advance to it compared everything already
        elif isinstance(action, tuple) and action[0] == "drain":
            twin.drain(action[1])
        elif isinstance(action, tuple) and action[0] == "drain_to":  # leave `margin` nC to the next threshold
            st, battery = twin.model.state, twin.config.battery
            threshold = battery.eri_threshold_nc if st.eri_tick is None else battery.capacity_nc
            twin.drain(threshold - battery.used_nc(st.steps_total, st.tick) - st.battery_drained_nc - action[1])
        else:
            twin.handle(action)
    advance_to(end)
    assert twin.compare_logs() > 0
    return twin


MORPHINE = dict(drug="morphine", concentration_ug_per_ml=10_000)


def fill(conc: int = 10_000, drug: str = "morphine", residual: int = 0, injected: int = 20_000_000, **kw) -> Refill:
    return Refill(residual, injected, drug, conc, **kw)


def logged(twin: Twin, code: LogCode) -> list[Record]:
    return [r for r in twin.model.log.records() if r.code == code]


def test_refill_and_discrepancy(cpump):
    """suites/standard/refill.toml: accounting, a quiet refill, a pocket fill, its acknowledgement."""
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (D + M, fill(residual=19_000_000, injected=1_000_000)),
        (2 * D, fill(residual=16_500_000, injected=3_000_000)),
        (2 * D + H, AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY)),
        (2 * D + 2 * H, fill(residual=3_000_000, injected=5_000_000, measured_after_nl=3_900_000)),
        (2 * D + 3 * H, SetLowReservoirAlarm(4_999_999)),
        (2 * D + 4 * H, SetLowReservoirAlarm(1_000_000)),
    ], end=3 * D + H, every=2 * H)
    assert [a.code for a in twin.model.state.alarms.active] == [AlarmCode.REFILL_DISCREPANCY]


def test_flex_program_and_set_clock(cpump):
    table = ((0, 400_000), (6 * H, 1_200_000), (12 * H + 30 * M, 0), (20 * H, 800_000))
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramFlex(table)),
        (5 * H, SetClock(23 * H)),
        (30 * H, SetClock(3 * H + 7)),
        (40 * H, ProgramFlex(((0, 48_000), (1, 24_000_000), (2, 0)))),
        (41 * H, ProgramFlex(((0, 100_000), (3 * H, 200_000)))),
    ], end=2 * D, every=H)
    assert len(logged(twin, LogCode.CLOCK_SET)) == 2


def test_patient_bolus_lockout_and_daily_max(cpump):
    """suites/standard/patient_bolus.toml"""
    steps = [(0, fill()), (0, ProgramContinuous(480_000)),
             (0, ConfigurePatientBolus(10_000, 10 * M, 3 * H, 3))]
    for tick in (H, 2 * H, 3 * H + 59 * M, 4 * H + M, 7 * H + 2 * M, 10 * H + 3 * M, 25 * H + M):
        steps.append((tick, PatientBolusRequest()))
    twin = run_scenario(cpump, steps, end=26 * H, every=30 * M)
    assert twin.model.state.boluses_granted == 4 and twin.model.state.boluses_denied == 3


def test_clinician_bolus_limit_periodic_and_jam(cpump):
    """suites/standard/clinician_bolus_limit.toml, then a periodic bolus that fits."""
    faults = Faults(seed=7, jams=(Jam(6 * H, 6 * H + 30 * M),))
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (H, ClinicianBolus(200_000, H)),
        (3 * H, ClinicianBolus(600_000, H)),
        (4 * H, ClinicianBolus(100_000, 30 * M, 4 * H, 0)),
        (5 * H, ClinicianBolus(200_000, 2 * H)),
        (6 * H + 20 * M, "check"),
        (9 * H, ClinicianBolus(20_000, 10 * M, 3 * H, 4)),
        (10 * H, ClinicianBolus(20_000, 10 * M)),
    ], end=30 * H, every=20 * M, faults=faults)
    assert logged(twin, LogCode.STALL) and logged(twin, LogCode.BOLUS_HALTED)


def test_bolus_interplay(cpump):
    """SR-6: a patient bolus suspends a clinician bolus, which resumes after it; a planned start
    during a patient bolus waits; SR-7: basal plus bolus capped at the motor's maximum."""
    run_scenario(cpump, [
        (0, fill(conc=1_000)), (0, ProgramContinuous(20_000_000)),
        (0, ConfigurePatientBolus(50_000, 20 * M, 30 * M, 6)),
        (H, ClinicianBolus(500_000, 2 * H, 4 * H, 3)),
        (H + 30 * M, PatientBolusRequest()),
        (5 * H - 5 * M, PatientBolusRequest()),
        (5 * H + 10 * M, PatientBolusRequest()),
        (6 * H, ProgramStopped()),
        (6 * H + M, PatientBolusRequest()),
        (7 * H, ProgramContinuous(1_000_000)),
        (7 * H, ConfigurePatientBolus(0, 0, 0, 0)),
        (8 * H, PatientBolusRequest()),
    ], end=12 * H, every=15 * M)


def test_priming_and_programs(cpump):
    twin = run_scenario(cpump, [
        (0, fill()), (0, PrimingBolus(370_000, H)), (0, ProgramContinuous(500_000)),
        (30 * M, PrimingBolus(1_000, H)),
        (2 * H, ProgramStopped()), (3 * H, ProgramMinimumRate()),
        (4 * H, PrimingBolus(10_000, 10 * M)),
    ], end=D, every=H)
    assert twin.model.state.dose_at_tip_pg > 0


def test_bridge_after_concentration_change(cpump):
    """suites/standard/bridge.toml"""
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (D, ProgramContinuous(500_000)),
        (D, fill(conc=20_000, residual=19_000_000, bridge=True)),
        (D + M, "check"),
    ], end=3 * D, every=2 * H)
    assert [r.args[0] for r in logged(twin, LogCode.BOLUS_COMPLETED)] == [4]


def test_drug_library_limits(cpump):
    """suites/standard/drug_library.toml, and the soft limits' texts (compared byte for byte)."""
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (10 * M, ProgramContinuous(2_000_000)),
        (20 * M, fill(conc=30_000, residual=19_993_000, injected=1_000_000)),
        (30 * M, fill(drug="ziconotide", conc=100, residual=19_986_000)),
        (40 * M, ProgramContinuous(1_000_000)),
        (50 * M, ProgramContinuous(0)),
        (H + 10 * M, fill(drug="bupivacaine", conc=10_000, residual=20_000_000, injected=0)),
        (H + 15 * M, fill(drug="bupivacaine", conc=10_000, residual=0, injected=20_000_000)),
        (H + 20 * M, ProgramContinuous(1_500_000)),
        (H + 25 * M, ConfigurePatientBolus(100_000, 10 * M, H, 5)),
        (H + 30 * M, ClinicianBolus(50_000, 10 * M)),
        (H + 35 * M, fill(drug="aspirin", conc=1)),
        (H + 36 * M, fill(drug="", conc=1)),
        (H + 37 * M, fill(drug="clonidine", conc=1, bridge=True)),
        (H + 40 * M, fill(drug="ziconotide", conc=100, residual=19_000_000)),
        (H + 41 * M, ProgramContinuous(150_000)),                 # 15 µg/day: above the 10 µg soft limit
        (H + 42 * M, ProgramContinuous(192_001)),                 # past 19.2 µg/day
        (H + 43 * M, ProgramFlex(((0, 100_000), (12 * H, 200_000)))),
        (H + 50 * M, fill(drug="baclofen", conc=2_000, residual=19_000_000)),
        (H + 51 * M, ProgramContinuous(500_000)),                 # 1000 µg/day: above 800
        (H + 52 * M, ConfigurePatientBolus(10_000, 10 * M, H, 4)),
        (H + 53 * M, ClinicianBolus(100_000, 10 * M)),
        (H + 54 * M, fill(residual=18_000_000, drug="baclofen", conc=1_000)),
    ], end=2 * H, every=10 * M)
    flags = logged(twin, LogCode.SOFT_LIMIT)
    assert {r.args[0] for r in flags} == {4, 6, 7}, [r.args for r in flags]


def test_low_and_empty_reservoir(cpump):
    """suites/standard/reservoir.toml, then a refill that restarts delivery."""
    twin = run_scenario(cpump, [
        (0, fill(conc=500)), (0, ProgramContinuous(24_000_000)),
        (17 * H + 50 * M, "check"), (18 * H + 10 * M, "check"), (19 * H + 10 * M, "check"),
        (19 * H + 50 * M, fill(conc=500, residual=1_000_000, injected=1_100_000)),
    ], end=20 * H + 30 * M, every=2 * H)
    assert logged(twin, LogCode.ALARM_ON)


@pytest.mark.parametrize("factor", [0, 256])
def test_occlusion_and_acknowledgement(cpump, factor):
    """suites/standard/occlusion_intermediate.toml (total) and a partial occlusion."""
    faults = Faults(seed=11, occlusions=(Occlusion(H + M, 3 * H + M, factor),))
    twin = run_scenario(cpump, [
        (0, fill(conc=500)), (0, ProgramContinuous(1_000_000)),
        (2 * H, AcknowledgeAlarm(AlarmCode.OCCLUSION)),
        (3 * H + 30 * M, AcknowledgeAlarm(AlarmCode.OCCLUSION)),
    ], end=6 * H, every=15 * M, faults=faults)
    assert logged(twin, LogCode.OCCLUSION_DETECTED)


def test_mri_stall_latch_and_recovery(cpump):
    """suites/standard/mri_stall.toml: stall, the telemetry latch, Interrogate releasing it, recovery."""
    faults = Faults(seed=5, mri=(MriExposure(2 * H, 2 * H + 40 * M),))
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (2 * H + 30 * M, GetStatus()), (6 * H + M, Interrogate()), (6 * H + 2 * M, Interrogate()),
    ], end=12 * H, every=20 * M, faults=faults)
    assert logged(twin, LogCode.STALL_RECOVERED) and logged(twin, LogCode.TELEMETRY_MODE)


def test_battery_eri_then_eos(cpump):
    """suites/standard/battery.toml: a drain to the ERI reserve, EOS 90 days later, therapy refused."""
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(100_000)),
        (H, ("drain", 0)), (H, ("drain", 945_000_000_000)),
        (90 * D + 2 * H, "check"),
        (90 * D + 3 * H, ProgramContinuous(100_000)),
        (90 * D + 3 * H, AcknowledgeAlarm(AlarmCode.END_OF_SERVICE)),
        (90 * D + 4 * H, GetStatus()),
    ], end=91 * D + 2 * H, every=D)
    assert twin.model.state.eos


def test_battery_crossings_by_charge(cpump):
    """ERI and EOS found by the charge drawn (steps and time), not by the service life."""
    twin = run_scenario(cpump, [
        (0, fill(conc=500)), (0, ProgramContinuous(24_000_000)),
        (H, ("drain_to", 300_000_000)),          # about 6000 strokes to ERI
        (3 * H, ("drain_to", 200_000_000)),      # about 4000 strokes to EOS
        (3 * H + 30 * M, ("drain_to", 100_000)),  # a reserve of two strokes: the quiet tick is short
        (3 * H + 30 * M, ("drain_to", 49_999)),   # less than a stroke's charge
    ], end=6 * H, every=20 * M)
    st = twin.model.state
    assert st.eri_tick is not None and H < st.eri_tick < 3 * H and st.eos


def test_reset_mid_bolus(cpump):
    """suites/standard/reset.toml"""
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (H, ClinicianBolus(100_000, H)),
        (H + 30 * M, "reset"),
        (H + 31 * M, "check"),
    ], end=6 * H, every=30 * M)
    assert [r.args[0] for r in logged(twin, LogCode.POWER_ON)] == [0, 1]


def test_resets_in_a_stall_an_occlusion_and_a_periodic_plan(cpump):
    faults = Faults(seed=2, mri=(MriExposure(3 * H, 3 * H + 30 * M),),
                    occlusions=(Occlusion(8 * H, 9 * H, 0),))
    run_scenario(cpump, [
        (0, fill()), (0, ProgramFlex(((0, 1_000_000), (4 * H, 600_000)))),
        (0, ConfigurePatientBolus(20_000, 10 * M, H, 4)),
        (H, ClinicianBolus(30_000, 20 * M, 2 * H, 0)),
        (2 * H + 5 * M, "reset"),
        (3 * H + 20 * M, "reset"),
        (4 * H, PatientBolusRequest()),
        (5 * H + 50 * M, "reset"),
        (6 * H, Interrogate()),
        (8 * H + 40 * M, "reset"),
        (9 * H + 30 * M, AcknowledgeAlarm(AlarmCode.OCCLUSION)),
        (10 * H, "reset"), (10 * H, "reset"),
        (11 * H, ("drain", 5_000_000_000)),
        (11 * H, "reset"),
    ], end=14 * H, every=20 * M, faults=faults)


def test_overdue_retry_after_a_reset(cpump):
    """A jam's stall whose retry falls in a second jam is moved on without a checkpoint; a reset
    rebuilds the old retry tick, overdue, and the model tries it at its first settle: here a
    command's. The C pump makes that test stroke with no sample and asks for it at the next run,
    so the fixture's plant takes the stroke too (the later samples, and so the telemetry's
    pressure, would differ otherwise)."""
    faults = Faults(seed=4, jams=(Jam(H, H + 20 * M), Jam(2 * H + 50 * M, 3 * H + 30 * M)))
    twin = run_scenario(cpump, [
        (0, fill()), (0, ProgramContinuous(1_000_000)),
        (3 * H + 40 * M, "reset"),
        (3 * H + 40 * M, GetStatus()),
    ], end=8 * H, every=20 * M, faults=faults)
    recovered = logged(twin, LogCode.STALL_RECOVERED)
    assert [r.tick for r in recovered] == [3 * H + 40 * M]
    assert twin.model.state.steps_total > 800


def test_jam_forever_and_many_commands(cpump):
    """A rotor jammed for good (the retries fail every 2 h) while commands keep coming, enough of
    them that the checkpoint cadence turns (the model's records counted)."""
    faults = Faults(seed=9, jams=(Jam(20 * H, None),))
    steps = [(0, fill()), (0, ProgramContinuous(1_000_000))]
    for i in range(120):
        steps.append((10 * M * (i + 1), ProgramFlex(tuple((k * H, 100_000 + 1000 * i + k) for k in range(24)))))
        steps.append((10 * M * (i + 1), GetStatus()))
    steps.append((21 * H, "reset"))
    twin = run_scenario(cpump, steps, end=30 * H, every=H, faults=faults)
    assert len(logged(twin, LogCode.CHECKPOINT)) > 2


def test_the_harness_sees_a_difference(cpump):
    """The comparison is live: a command given to the C pump only is caught at the next compare."""
    twin = Twin(cpump)
    twin.handle(fill())
    answers, refusal = cpump.command(0x12, (1_000_000).to_bytes(4, "little"))
    assert refusal is None and answers[0][0] == 0x40
    with pytest.raises(Mismatch, match="programmed_rate_nl_per_day"):
        twin.compare("after a command the model did not get")


# ---- hypothesis: random sequences --------------------------------------------------------------

DRUGS = ["morphine", "morphine", "morphine", "hydromorphone", "bupivacaine", "ziconotide", "baclofen", "clonidine",
         "aspirin", ""]
rates = st.one_of(st.sampled_from([0, 47_999, 48_000, 24_000_000, 24_000_001, U32]),
                  st.integers(48_000, 2_000_000), st.integers(48_000, 2_000_000))
volumes = st.one_of(st.sampled_from([0, 124, 125, 250, 374, 375, 20_000_000, 20_000_125, U32]),
                    st.integers(1, 200_000), st.integers(1, 200_000))
durations = st.one_of(st.sampled_from([0, 1, D, U64]), st.integers(M, 4 * H))
concentrations = st.one_of(st.sampled_from([0, 1, 100, 101, 500, 1_000, 2_000, 10_000, 20_000, 30_000, 30_001, U32]),
                           st.integers(1, 30_000))
reservoir = st.one_of(st.sampled_from([0, 999_999, 1_000_000, 1_250_000, 20_000_000, 20_000_001, U32]),
                      st.integers(0, 20_000_000))


@st.composite
def flex_tables(draw):
    n = draw(st.integers(0, 26))
    starts = sorted(draw(st.sets(st.integers(1, D - 1), min_size=max(0, n - 1), max_size=max(0, n - 1))))
    table = [(0, draw(rates))] + [(s, draw(st.one_of(st.just(0), rates))) for s in starts] if n else []
    if table and draw(st.integers(0, 5)) == 0:  # break it
        i = draw(st.integers(0, len(table) - 1))
        table[i] = (draw(st.sampled_from([1, D, U64, table[i - 1][0] if i else 5])), table[i][1])
    return ProgramFlex(tuple(table))


commands = st.one_of(
    st.builds(ProgramContinuous, rates),
    flex_tables(),
    st.just(ProgramStopped()), st.just(ProgramMinimumRate()), st.just(GetStatus()), st.just(Interrogate()),
    st.builds(ClinicianBolus, volumes, durations, st.one_of(st.just(0), st.sampled_from([1, 2 * H, U64]),
                                                              st.integers(2 * H, 8 * H)),
              st.one_of(st.just(1), st.integers(0, 5), st.just(U32))),
    st.builds(PrimingBolus, volumes, durations),
    st.builds(ConfigurePatientBolus, volumes, durations,
              st.one_of(st.sampled_from([0, D, D + 1]), st.integers(10 * M, 6 * H)),
              st.one_of(st.integers(0, 6), st.sampled_from([24, 25, 255]))),
    st.just(PatientBolusRequest()), st.just(PatientBolusRequest()),
    st.builds(Refill, reservoir, reservoir, st.sampled_from(DRUGS), concentrations,
              st.one_of(st.none(), reservoir.map(lambda v: min(v, U32 - 1))), st.booleans()),
    st.builds(SetLowReservoirAlarm, st.one_of(st.sampled_from([999_999, 1_000_000, 5_000_000, 5_000_001]),
                                              st.integers(1_000_000, 5_000_000))),
    st.builds(AcknowledgeAlarm, st.sampled_from(list(AlarmCode))),
    st.builds(SetClock, st.one_of(st.sampled_from([0, D - 1, D, U64]), st.integers(0, D - 1))),
)
deltas = st.one_of(st.sampled_from([0, 0, 1, M, 10 * M, H]), st.integers(0, 3 * H), st.integers(0, 8 * H))
actions = st.one_of(
    st.tuples(st.just("cmd"), commands), st.tuples(st.just("cmd"), commands), st.tuples(st.just("cmd"), commands),
    st.tuples(st.just("cmd"), st.sampled_from([PatientBolusRequest(), Interrogate(), GetStatus(),
                                               AcknowledgeAlarm(AlarmCode.OCCLUSION),
                                               AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY),
                                               AcknowledgeAlarm(AlarmCode.RESERVOIR_LOW)])),
    st.tuples(st.just("cmd"), st.builds(ClinicianBolus, st.integers(125, 300_000), st.integers(M, 2 * H),
                                        st.one_of(st.just(0), st.integers(2 * H, 6 * H)),
                                        st.integers(0, 4))),
    st.tuples(st.just("drain"), st.one_of(st.sampled_from([0, 1, 10**6, 945 * 10**9, 10**12, 1 << 63, U64]),
                                          st.integers(1, 10**12))),
    st.tuples(st.just("reset"), st.just(None)),
)
SPAN = D + 4 * H


@st.composite
def cases(draw):
    occlusions, mri, jams = (), (), ()
    if draw(st.booleans()):
        start = draw(st.integers(10 * M, D))
        end = draw(st.one_of(st.none(), st.integers(start + 1, start + 6 * H)))
        occlusions = (Occlusion(start, end, draw(st.sampled_from([0, 0, 2, 256, 1000]))),)
    if draw(st.booleans()):
        start = draw(st.integers(10 * M, D))
        mri = (MriExposure(start, start + draw(st.integers(1, H))),)
    if draw(st.integers(0, 2)) == 0:
        start = draw(st.integers(10 * M, D))
        jams = (Jam(start, draw(st.one_of(st.none(), st.integers(start + 1, start + 5 * H)))),)
    faults = Faults(seed=draw(st.integers(0, 1000)), occlusions=occlusions, mri=mri, jams=jams)
    prefix = []
    if draw(st.integers(0, 4)) > 0:  # most cases start as a clinic does: a fill, a program, a patient bolus
        conc = draw(st.sampled_from([500, 1_000, 10_000]))
        prefix = [(0, "cmd", fill(conc=conc)), (0, "cmd", ProgramContinuous(draw(st.integers(100_000, 2_000_000))))]
        if draw(st.booleans()):
            prefix.append((0, "cmd", ConfigurePatientBolus(draw(st.integers(1_000, 50_000)), draw(st.integers(M, H)),
                                                           draw(st.integers(H, 4 * H)), draw(st.integers(1, 6)))))
    body = draw(st.lists(st.tuples(deltas, actions), min_size=6, max_size=18))
    return faults, prefix + [(d, kind, arg) for d, (kind, arg) in body]


# Random (not derandomized: those examples came out too tame), no example database; a failure
# prints the blob that reproduces it (@reproduce_failure).
@settings(max_examples=60, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_random_sequences_equal_the_model(driver_path, case):
    faults, steps = case
    pump = CPump(driver_path)
    try:
        twin = Twin(pump, faults)
        for delta, kind, arg in steps:
            if delta:
                twin.advance(min(twin.now + delta, SPAN))
            if kind == "cmd":
                twin.handle(arg)
            elif kind == "drain":
                twin.drain(arg)
            else:
                twin.reset()
        twin.advance(max(twin.now, SPAN))
        twin.compare_logs()
    finally:
        pump.close()


# ---- leaves ----------------------------------------------------------------------------------------

def test_detector_per_sample_equals_scan_per_step(cpump):
    settings_ = DetectorSettings()
    rng = random.Random(31)
    fired = set()
    for case in range(12):
        cpump.ask("det_reset")
        history: list[int] = []
        cusum = 0
        p = rng.randint(0, 3000)
        n = rng.choice([5, 70, 450, 1200])
        for i in range(n):
            kind = rng.random()
            if kind < 0.02:
                p += rng.randint(-20_000, 20_000)          # a posture change, or a glitch
            elif kind < 0.3 and case % 3 == 0:
                p += rng.randint(0, 400)                   # a rise: CUSUM, rise, deficit
            else:
                p += rng.randint(-120, 120)
            p = max(-50_000, min(p, 80_000))
            want, rule, history, cusum = scan_per_step(settings_, history, cusum, [p])
            got = int(cpump.ask(f"det {p}"))
            assert got == (int(rule) if want == 0 else 0), f"case {case} sample {i} ({p} Pa)"
            fired.add(got)
        state = [int(x) for x in cpump.ask("det_state").split()]
        assert state == [cusum] + history, f"case {case}: detector state"
    assert fired >= {0, 1, 2, 3, 4}, fired


def test_battery_used_and_months_equal_the_model(cpump):
    battery = BatterySpec()
    rng = random.Random(32)
    for _ in range(400):
        steps = rng.choice([0, rng.randint(0, 10**6), rng.randint(0, 3 * 10**8)])
        ticks = rng.choice([0, rng.randint(0, 7 * 365 * D), rng.randint(0, U64), U64, battery.max_service_ticks + rng.randint(-2, 2)])
        assert int(cpump.ask(f"used {steps} {ticks}")) == battery.used_nc(steps, ticks), (steps, ticks)
        if ticks <= 10 * 365 * D:
            spd = rng.choice([0, 24, 4000, 96_000])
            drained = rng.choice([0, rng.randint(0, 10**12), 1 << 62])
            assert int(cpump.ask(f"months {steps} {ticks} {spd} {drained}")) == \
                battery.months_remaining(steps, ticks, spd, drained), (steps, ticks, spd, drained)
    for _ in range(300):
        a, b = rng.randint(0, U64), rng.randint(0, U64)
        c = rng.randint((a * b >> 64) + 1, U64)   # the quotient fits 64 bits
        assert int(cpump.ask(f"muldiv {a} {b} {c}")) == a * b // c


def test_fluid_path_equals_the_model(cpump):
    rng = random.Random(33)
    for case in range(20):
        cpump.ask("path_reset")
        path = FluidPath.unprimed(370_000)
        for i in range(rng.randint(1, 400)):
            volume = 250 * rng.choice([0, 1, 1, 1, 2, 7, 100, 1480, 1481, 5000, rng.randint(1, 3000)])
            conc = rng.choice([0, 500, 10_000, 20_000, rng.randint(1, 30_000)] if case % 2 else [10_000, 20_000])
            if rng.random() < 0.5:
                probe = FluidPath(type(path.segments)(type(s)(s.volume_nl, s.concentration_ug_per_ml) for s in path.segments))
                assert int(cpump.ask(f"push_dose {volume} {conc}")) == probe.push(volume, conc)
            assert int(cpump.ask(f"push {volume} {conc}")) == path.push(volume, conc), (case, i)
            want = " ".join(f"{s.volume_nl}:{s.concentration_ug_per_ml}" for s in path.segments) or "-"
            assert cpump.ask("path") == want
            probe_conc = rng.choice([0, conc, 10_000])
            assert int(cpump.ask(f"old {probe_conc}")) == path.old_drug_nl(probe_conc)


def test_log_records_equal_event_log_pack(cpump):
    rng = random.Random(34)
    first = None
    for i in range(300):
        tick = rng.choice([0, rng.randint(0, U64), U64])
        code = rng.choice(list(LogCode))
        args = [rng.choice([0, -1, 1, -(1 << 31), (1 << 31) - 1, rng.randint(-(1 << 31), (1 << 31) - 1)]) for _ in range(3)]
        raw = bytes.fromhex(cpump.ask(f"rec {tick} {int(code)} {args[0]} {args[1]} {args[2]}"))
        seq = Record.unpack(raw).seq
        first = seq if first is None else first
        assert seq == first + i
        assert raw == Record(seq, tick, code, 0, ARGS.pack(*args)).pack()
    for n in (0, 1, 10, 11, 12, 127, 128, 500, 3000):
        data = bytes(rng.randrange(256) for _ in range(n))
        raw = bytes.fromhex(cpump.ask(f"blob 77 {int(LogCode.CHECKPOINT)} {data.hex() or '-'}"))
        seq = Record.unpack(raw[:32]).seq
        model = EventLog(capacity=1 << 16)
        model.next_seq = seq
        model.append_blob(77, LogCode.CHECKPOINT, data)
        assert raw == model.raw_records()[seq * 32:], n


def test_command_payloads_are_parsed_as_the_protocol_parses_them(cpump):
    """Every command's payload: refused MALFORMED exactly when protocol/ cannot parse it."""
    rng = random.Random(35)
    cpump.ask("init 0")
    ids = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d]
    samples = [b"", b"\x00", bytes(4), bytes(8), bytes(12), bytes(21), bytes(24), b"\x08" + bytes(8),
               b"\x31" + bytes(48 * 12), b"\x30" + bytes(48 * 12), b"\x01" + bytes(12)]
    refill = (bytes(8) + b"\x08morphine" + (10_000).to_bytes(4, "little"))
    samples += [refill + b"\xff" * 4 + b"\x01", refill + b"\xff" * 4 + b"\x02", refill + b"\xff" * 4,
                bytes(8) + b"\x02\xc3\x28" + bytes(9), bytes(8) + b"\x02\xc3\xa9" + bytes(9),
                bytes(8) + b"\x21" + b"a" * 33 + bytes(9), bytes(8) + b"\x20" + b"a" * 32 + bytes(9),
                bytes(8) + b"\x03\xed\xa0\x80" + bytes(9), bytes(8) + b"\x04\xf4\x90\x80\x80" + bytes(9)]
    samples += [bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 12, 21, 24, 27])))
                for _ in range(60)]
    checked = {True: 0, False: 0}
    for msg_id in ids:
        for payload in samples + [b"\x07", b"\x08", b"\x00"]:
            try:
                CATALOGUE[msg_id].parse(payload)
                parses = True
            except Exception:
                parses = False
            _, refusal = cpump.command(msg_id, payload)
            assert (refusal is not None and refusal[0] == MALFORMED) == (not parses), (hex(msg_id), payload.hex())
            checked[parses] += 1
    assert checked[True] > 30 and checked[False] > 300


# ---- the target ----------------------------------------------------------------------------------

def test_builds_and_links_for_the_target(tmp_path, tmp_path_factory):
    """The pump sources with the firmware's CFLAGS (-Werror), linked with a main that calls the whole
    public API, for the mps2-an385 map; the image's code and RAM within their 4 MB each; and `make`."""
    cross = "arm-none-eabi-gcc"
    assert shutil.which(cross), f"{cross} not on PATH (apt install gcc-arm-none-eabi)"
    main = tmp_path / "pump_main.c"
    main.write_text("""
#include "pump.h"
static pump_t pump;
static pump_log_t flash __attribute__((section(".noinit")));
static pump_answer_t answers[PUMP_ANSWERS_MAX];
int main(void)
{
    static const uint8_t refill[] = {0,0,0,0, 0,45,49,1, 8,'m','o','r','p','h','i','n','e', 16,39,0,0, 255,255,255,255, 0};
    uint64_t wanted[PUMP_FEED_MAX];
    size_t n = 0;
    uint8_t out[1024];
    pump_refusal_t refusal;
    pump_power_on(&pump, &flash, 0);
    pump_command(&pump, 0x19, refill, sizeof refill, answers, &refusal);
    pump_line_t line = {0, 0, 0};
    pump_set_lines(&pump, &line, 1);
    pump_sample_t sample = {1, 0};
    pump_feed(&pump, &sample, 1);
    pump_run(&pump, 1000, wanted, &n);
    pump_drain_battery(&pump, 1, &refusal);
    pump_telemetry(&pump, 0, out);
    pump_read_log(&pump, 0, 31, out);
    pump_power_on(&pump, &flash, 2000);
    for (;;) {
    }
}
""")
    flags = ["-mcpu=cortex-m3", "-mthumb", "-std=c11", "-Os", "-ffreestanding", "-nostdlib", "-ffunction-sections",
             "-fdata-sections", "-Wall", "-Wextra", "-Werror"]
    elf = tmp_path / "pump.elf"
    sources = [str(FIRMWARE_DIR / s) for s in [*PUMP_SOURCES, "startup.c", "libc_min.c"]]
    done = subprocess.run([cross, *flags, f"-I{FIRMWARE_DIR}", "-T", str(FIRMWARE_DIR / "mps2_an385.ld"),
                           "-Wl,--gc-sections", "-o", str(elf), str(main), *sources, "-lgcc"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    size = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {line.split()[0]: int(line.split()[1]) for line in size.splitlines() if line.startswith(".")}
    code = sections.get(".text", 0) + sections.get(".ARM.exidx", 0) + sections.get(".data", 0)
    ram = sum(v for k, v in sections.items() if k in (".data", ".bss", ".noinit"))
    assert 10_000 < code < 4 * 1024 * 1024 and ram < 4 * 1024 * 1024 - 16 * 1024, sections
    # `make -C rigs/qemu-m3` (the image with the pump sources in PURE), under the lock the other
    # tests take (pytest-xdist workers share the build directory)
    assert build_firmware(tmp_path_factory.getbasetemp().parent).exists()
