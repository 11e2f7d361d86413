"""The pump controller: the executable specification every device is judged against.

`Controller.handle(command, tick)` answers a command; `Controller.advance(to_tick)` runs the
pump to a tick and returns what happened. Time only moves forward and only by these two calls;
the same calls give the same state, the same events and the same log, bit for bit.

Delivery is two phase accumulators driving one motor (step_scheduler): the basal channel (the
program, or a bridge bolus in its place) and the bolus channel (clinician, patient or priming
bolus). Between two events the pump's rates are constant, so `advance` jumps from event to event
with O(1) step counts and never walks ticks. Every refusal is checked before anything changes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import codec
from .alarms import CATALOGUE, AlarmCode, AlarmPanel, AlarmSettings
from .battery import BatterySpec
from .calibration import Mechanism
from .commands import (COMMAND_IDS, COMMAND_TYPES, Accepted, AcknowledgeAlarm, BolusDenied,
                       BolusGranted, BolusKind, ClinicianBolus, Command, ConfigurePatientBolus,
                       DenyReason, GetStatus, Mode, PatientBolusRequest, PrimingBolus,
                       Interrogate, ProgramContinuous, ProgramFlex, ProgramMinimumRate, ProgramStopped, Refill,
                       Response, SetClock, SetLowReservoirAlarm, StatusReport)
from .drug_library import DrugLibrary, SoftLimitFlag
from .errors import LimitExceeded, NotAllowedNow, StateError
from .event_log import DEFAULT_CAPACITY, EventLog, LogCode, Record, blobs
from .fluid_path import FluidPath
from .occlusion import DetectorSettings, DetectorState, scan_one
from .plant import OutletState, Plant
from .step_scheduler import (PHASE_ONE, StepScheduler, combined_steps_until,
                             effective_rate_nl_per_day, increment_for_rate, tick_of_combined_step)
from .units import NL_PER_ML, TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR, dose_pg

_MAGIC = b"ITHL"
_SNAPSHOT_VERSION = 1
_SNAP_HEADER = struct.Struct("<4sH32sI")


@dataclass(frozen=True)
class PumpConfig:
    """What a pump is built and set up as; fixed for its life (a snapshot checks it matches).

    - reservoir_capacity_nl: 20 or 40 mL (domain.md §1.1 [V S6]).
    - low_reservoir_nl: default low-reservoir alarm 2 mL, programmable 1-5 mL (domain.md §6,
      [V S13]; range [M]).
    - empty_reservoir_nl: delivery stops below it; 1 mL as the MiniMed 3160 analogue's empty
      level (domain.md §1.5 [V S39]), a placeholder [M].
    - refill_discrepancy_nl: expected-versus-measured residual (or injected-versus-measured
      fill) above which a pocket fill or a leak is suspected: 1 mL in a 20 mL pump, 2 mL in a
      40 mL pump (domain.md §3.4 [V S54, partial]); None picks by capacity.
    - max_flex_steps: the flex table's size limit is unknown (domain.md §2, [M]): 24.
    - checkpoint_records: a state checkpoint is logged after this many records, so that a
      reset can always rebuild the state from what the ring still holds.
    - detector: the occlusion detector on the outlet pressure sensor of ithil's reference pump
      (domain.md §5); None for a pump without one (SynchroMed detects only stall, §5 [M]).
    - stall_detect_steps: commanded steps without step feedback before a stall is declared [D].
    - stall_retry_ticks: how often a stalled pump tries a step again; the first success is the
      recovery. Return to infusion after MRI can be delayed 2-24 h (domain.md §1.1 [V S3]): 2 h [D].
    """

    mechanism: Mechanism = Mechanism()
    reservoir_capacity_nl: int = 20 * NL_PER_ML
    low_reservoir_nl: int = 2 * NL_PER_ML
    low_reservoir_range_nl: tuple[int, int] = (1 * NL_PER_ML, 5 * NL_PER_ML)
    empty_reservoir_nl: int = 1 * NL_PER_ML
    refill_discrepancy_nl: int | None = None
    battery: BatterySpec = BatterySpec()
    alarms: AlarmSettings = AlarmSettings()
    library: DrugLibrary = DrugLibrary()
    max_flex_steps: int = 24
    log_capacity: int = DEFAULT_CAPACITY
    checkpoint_records: int = DEFAULT_CAPACITY // 4
    detector: DetectorSettings | None = DetectorSettings()
    stall_detect_steps: int = 3
    stall_retry_ticks: int = 2 * TICKS_PER_HOUR

    def __post_init__(self) -> None:
        if self.reservoir_capacity_nl not in (20 * NL_PER_ML, 40 * NL_PER_ML):
            raise LimitExceeded("reservoir_capacity_nl", self.reservoir_capacity_nl,
                                "20 mL or 40 mL (20000000 or 40000000 nL)", "domain.md §1.1 [V S6]")
        lo, hi = self.low_reservoir_range_nl
        if not lo <= self.low_reservoir_nl <= hi:
            raise LimitExceeded("low_reservoir_nl", self.low_reservoir_nl, f"{lo}..{hi} nL", "domain.md §6")
        if not 0 <= self.empty_reservoir_nl <= lo:
            raise LimitExceeded("empty_reservoir_nl", self.empty_reservoir_nl,
                                f"0 <= empty <= lowest low-reservoir alarm ({lo} nL)")
        if self.stall_detect_steps < 1 or self.stall_retry_ticks < 1:
            raise LimitExceeded("stall_detect_steps/stall_retry_ticks", (self.stall_detect_steps, self.stall_retry_ticks),
                                ">= 1 step and >= 1 tick")
        if not 0 < self.checkpoint_records <= self.log_capacity // 2:
            raise LimitExceeded("checkpoint_records", self.checkpoint_records,
                                f"1..{self.log_capacity // 2} (half the log, so a checkpoint is always held)")

    @property
    def discrepancy_threshold_nl(self) -> int:
        if self.refill_discrepancy_nl is not None:
            return self.refill_discrepancy_nl
        return NL_PER_ML if self.reservoir_capacity_nl <= 20 * NL_PER_ML else 2 * NL_PER_ML

    def fingerprint(self) -> bytes:
        return hashlib.sha256(codec.encode(self)).digest()


@dataclass(slots=True)
class ActiveBolus:
    """A bolus on the bolus channel: its steps and the increment that spreads them."""

    kind: BolusKind
    steps_total: int
    steps_done: int
    increment: int


@dataclass(slots=True)
class ClinicianPlan:
    """A clinician bolus, single or periodic: the next start and how many starts are left."""

    steps: int
    increment: int
    period_ticks: int
    starts_left: int  # -1: forever
    next_start_tick: int


@dataclass(slots=True)
class PatientSettings:
    steps: int
    increment: int
    lockout_ticks: int
    max_per_day: int


@dataclass(slots=True)
class Bridge:
    """A bridge bolus on the basal channel: old drug still in the path, delivered dose-true."""

    steps_left: int
    old_concentration_ug_per_ml: int


@dataclass(slots=True)
class PumpState:
    """Everything a firmware keeps in RAM; `snapshot()` is this plus the log."""

    tick: int = 0
    clock_offset_ticks: int = 0
    mode: Mode = Mode.STOPPED
    continuous_rate_nl_per_day: int = 0
    flex: tuple[tuple[int, int], ...] = ()
    drug: str = ""
    drug_index: int = -1
    concentration_ug_per_ml: int = 0
    reservoir_nl: int = 0
    low_reservoir_nl: int = 0
    filled_nl: int = 0
    withdrawn_nl: int = 0
    delivered_nl: int = 0
    dose_at_tip_pg: int = 0
    path: FluidPath = field(default_factory=FluidPath)
    basal: StepScheduler = field(default_factory=StepScheduler)
    bolus: StepScheduler = field(default_factory=StepScheduler)
    active_bolus: ActiveBolus | None = None
    suspended_bolus: ActiveBolus | None = None
    clinician_plan: ClinicianPlan | None = None
    patient: PatientSettings | None = None
    bolus_starts: list[tuple[int, int, int]] = field(default_factory=list)  # (tick, kind, dose pg) last 24 h
    bridge: Bridge | None = None
    alarms: AlarmPanel = field(default_factory=AlarmPanel)
    steps_total: int = 0
    eri_tick: int | None = None
    eos: bool = False
    boluses_granted: int = 0
    boluses_denied: int = 0
    detector: DetectorState = field(default_factory=DetectorState)
    occlusion_found: tuple[int, int] | None = None  # (rule, pressure Pa) of the stroke that alarmed
    steps_since_resume: int = 0
    missed_steps: int = 0
    stall_tick: int | None = None
    stall_retry_tick: int | None = None
    telemetry_mode: bool = False
    telemetry_latched: bool = False
    battery_drained_nc: int = 0  # charge drawn outside the model's budget (an injected battery fault)
    records_since_checkpoint: int = 0


Event = Record


class Controller:
    """The reference pump controller."""

    def __init__(self, config: PumpConfig | None = None, plant: Plant | None = None) -> None:
        """A pump just implanted; `plant` is the patient and world it runs in (None: an outlet
        that always takes the stroke and a rotor that always turns)."""
        self.config = config or PumpConfig()
        self.mech = self.config.mechanism
        if plant is not None and plant.stroke_nl != self.mech.stroke_nl:
            raise LimitExceeded("plant.stroke_nl", plant.stroke_nl, f"the mechanism's stroke ({self.mech.stroke_nl} nL)")
        self.plant = plant
        self._max_increment = increment_for_rate(self.mech.max_rate_nl_per_day, self.mech.stroke_nl)
        self._quiet_cache: tuple[int, int] | None = None
        self.state = PumpState(low_reservoir_nl=self.config.low_reservoir_nl,
                               path=FluidPath.unprimed(self.mech.fluid_path_nl))
        self.log = EventLog(self.config.log_capacity)
        self._events: list[Event] = []
        self._log(LogCode.POWER_ON)
        self._apply_rates()
        self._checkpoint()

    # ---- public API ---------------------------------------------------------------------

    def handle(self, command: Command, tick: int) -> list[Response]:
        """Run to `tick`, then answer `command`. A refusal raises before anything changes.

        The run to `tick` happens first and is kept even when the command is then refused.
        """
        self._run_to(tick)
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            raise NotAllowedNow(f"command {type(command).__name__} is not one this controller knows; "
                                f"expected one of {sorted(t.__name__ for t in self._HANDLERS)}")
        if self.state.eos and not isinstance(command, (GetStatus, AcknowledgeAlarm)):
            raise NotAllowedNow(f"{type(command).__name__} refused: the pump is at end of service "
                                "(domain.md §1.1 [V S8]); only status and alarm acknowledgement remain")
        apply = handler(self, command)  # validates; returns the mutation or raises
        if type(command) in COMMAND_IDS:
            self._log_command(command)
        responses = apply()
        self._settle()
        return responses

    def advance(self, to_tick: int) -> list[Event]:
        """Run the pump to `to_tick`; returns every event since the last call (log records, tones)."""
        self._run_to(to_tick)
        events, self._events = self._events, []
        return events

    def _run_to(self, to_tick: int) -> None:
        """Jump from event to event up to `to_tick`. The state is settled at its tick between
        calls (nothing left due), so where the caller stops never changes what happens."""
        st = self.state
        if to_tick < st.tick:
            raise LimitExceeded("to_tick", to_tick, f">= the present tick {st.tick} (time only moves forward)")
        while st.tick < to_tick:
            nxt = self._next_event_tick(to_tick)
            self._run_motor(nxt)
            self._sound_until(nxt)
            st.tick = nxt
            self._settle()

    def _settle(self) -> None:
        """Decide what is due now, set the rates that follow, checkpoint if it is time."""
        self._due_events()
        self._apply_rates()
        self._maybe_checkpoint()

    def drain_battery(self, charge_nc: int, tick: int) -> list[Event]:
        """A battery fault draws `charge_nc` at `tick` beyond the model's budget (the resistive-film
        advisory's premature ERI and EOS, domain.md §1.1 [V S10]); the pump finds out as it
        measures its battery. Logged and checkpointed, so a reset keeps it."""
        if charge_nc <= 0:
            raise LimitExceeded("battery_drain.charge_nc", charge_nc, "> 0")
        self._run_to(tick)
        self.state.battery_drained_nc += charge_nc
        self._quiet_cache = None
        self._log(LogCode.BATTERY_DRAIN, min(charge_nc // 1_000_000, 2**31 - 1))
        self._checkpoint_soon()
        self._settle()
        return self.advance(tick)

    def status(self) -> StatusReport:
        """The interrogation answer at the present tick."""
        st, mech = self.state, self.mech
        programmed = self._program_rate(st.tick)
        eff = effective_rate_nl_per_day(st.basal.increment, mech.stroke_nl)
        battery = self.config.battery
        sounding = st.alarms.sounding()
        return StatusReport(
            tick=st.tick, mode=st.mode, drug=st.drug, concentration_ug_per_ml=st.concentration_ug_per_ml,
            programmed_rate_nl_per_day=programmed, effective_rate_nl_per_day=round(eff),
            reservoir_nl=st.reservoir_nl, delivered_nl=st.delivered_nl,
            dose_at_tip_ng=st.dose_at_tip_pg // 1000, steps=st.steps_total,
            bolus_active=st.active_bolus.kind if st.active_bolus else (BolusKind.BRIDGE if st.bridge else None),
            alarms=tuple(a.code for a in st.alarms.active),
            sounding=sounding.code if sounding else None,
            delivery_stopped=self._delivery_stopped(), stalled=st.stall_tick is not None,
            telemetry_latched=st.telemetry_latched,
            battery_months_remaining=battery.months_remaining(st.steps_total, st.tick,
                                                              self._program_day_nl() // mech.stroke_nl,
                                                              st.battery_drained_nc),
            eri=st.eri_tick is not None, eos=st.eos, refill_due_tick=self.refill_due_tick())

    def refill_due_tick(self) -> int | None:
        """When the reservoir reaches the low alarm if every allowed bolus is taken (SR-13, [V S33])."""
        st = self.state
        daily_nl = self._program_day_nl() + self._worst_bolus_day_nl()
        if not st.drug or daily_nl == 0:
            return None
        above = st.reservoir_nl - st.low_reservoir_nl
        return st.tick + max(0, above) * TICKS_PER_DAY // daily_nl

    def snapshot(self) -> bytes:
        """State and log as bytes; `restore` of these bytes gives back the very same pump."""
        state = codec.encode(self.state)
        header = _SNAP_HEADER.pack(_MAGIC, _SNAPSHOT_VERSION, self.config.fingerprint(), len(state))
        outlet = codec.encode(self.plant.state) if self.plant is not None else b""
        return header + state + codec.length_prefixed(outlet) + self.log.to_bytes()

    def restore(self, data: bytes) -> None:
        """Load what `snapshot` wrote; refuses bytes of another version or another configuration."""
        if len(data) < _SNAP_HEADER.size:
            raise StateError(f"snapshot is {len(data)} bytes; expected at least {_SNAP_HEADER.size}")
        magic, version, fingerprint, n = _SNAP_HEADER.unpack_from(data)
        if magic != _MAGIC or version != _SNAPSHOT_VERSION:
            raise StateError(f"snapshot header {magic!r} v{version}; expected {_MAGIC!r} v{_SNAPSHOT_VERSION}")
        if fingerprint != self.config.fingerprint():
            raise StateError("snapshot was taken with another PumpConfig; expected this controller's configuration")
        body = data[_SNAP_HEADER.size:]
        state = codec.decode(body[:n], PumpState)
        outlet, rest = codec.split_length_prefixed(body[n:])
        log = EventLog.from_bytes(rest)
        if outlet and self.plant is not None:
            self.plant.state = codec.decode(outlet, OutletState)
            self.plant.present_tick = state.tick
        self.state, self.log, self._events = state, log, []
        self._quiet_cache = None

    @classmethod
    def rebuild(cls, config: PumpConfig, log: EventLog, reset_tick: int, plant: Plant | None = None) -> "Controller":
        """The controller a firmware restores after a reset: newest checkpoint, then the commands
        logged since, replayed at their ticks, then the run to the reset tick. The log itself is
        kept as it was and a POWER_ON record marks the reset. The replay cannot feel the world
        again (strokes since the checkpoint count as achieved), and what the detectors had in
        volatile memory (pressure history, CUSUM, missed steps) starts afresh, as after a reboot."""
        records = list(log.records())
        found = list(blobs(records, LogCode.CHECKPOINT))
        if not found:
            raise StateError("the event log holds no complete checkpoint; cannot rebuild the state")
        index, _, blob = found[-1]
        ctl = cls.__new__(cls)
        ctl.config, ctl.mech, ctl.plant = config, config.mechanism, None
        ctl._max_increment = increment_for_rate(ctl.mech.max_rate_nl_per_day, ctl.mech.stroke_nl)
        ctl._quiet_cache = None
        ctl.state = codec.decode(blob, PumpState)
        ctl.log, ctl._events = EventLog(config.log_capacity), []  # scratch: replay rewrites known records
        for _, rec, data in blobs(records[index:], LogCode.COMMAND):
            command = codec.decode(data[1:], COMMAND_TYPES[data[0]])
            ctl.handle(command, rec.tick)
        ctl.advance(max(reset_tick, ctl.state.tick))
        ctl.log, ctl._events, ctl.plant = log, [], plant
        ctl.state.detector, ctl.state.missed_steps = DetectorState(), 0
        ctl._log(LogCode.POWER_ON, 1)
        return ctl

    # ---- the motor ------------------------------------------------------------------------

    def _delivery_stopped(self) -> bool:
        st = self.state
        return st.eos or not st.drug or st.telemetry_latched or st.alarms.delivery_stopped

    def _program_rate(self, tick: int) -> int:
        """The basal rate the program asks for at a tick (nL/day), before any bridge."""
        st = self.state
        if st.mode == Mode.CONTINUOUS:
            return st.continuous_rate_nl_per_day
        if st.mode == Mode.FLEX:
            tod = (tick + st.clock_offset_ticks) % TICKS_PER_DAY
            rate = st.flex[-1][1]
            for start, r in st.flex:
                if start <= tod:
                    rate = r
            return rate
        if st.mode == Mode.MINIMUM_RATE:
            return self.mech.safe_rate_nl_per_day
        return 0

    def _basal_rate(self, tick: int) -> int:
        """The basal channel's rate: the program, or the bridge's dose-true rate in its place."""
        st = self.state
        rate = self._program_rate(tick)
        if st.bridge is not None and rate:
            rate = rate * st.concentration_ug_per_ml // st.bridge.old_concentration_ug_per_ml
            # Dose-true however slow: never raised to the programmable minimum (that would give the
            # old, stronger drug above the new program's dose), only to the slowest rate the
            # accumulator can step (one increment), and capped at the motor's maximum.
            slowest = -(-self.mech.stroke_nl * TICKS_PER_DAY // (2 * PHASE_ONE))
            rate = max(slowest, min(rate, self.mech.max_rate_nl_per_day))
        return rate

    def _apply_rates(self) -> None:
        """Set both channels' increments from the state (idempotent; phases carry over)."""
        st = self.state
        if self._delivery_stopped():
            st.basal.set_increment(0)
            st.bolus.set_increment(0)
            return
        basal_inc = increment_for_rate(self._basal_rate(st.tick), self.mech.stroke_nl)
        bolus_inc = st.active_bolus.increment if st.active_bolus else 0
        # SR-7: basal plus bolus never exceeds the motor's maximum; the bolus stretches.
        bolus_inc = min(bolus_inc, max(0, self._max_increment - basal_inc))
        if st.active_bolus and bolus_inc == 0:
            bolus_inc = 1
        st.basal.set_increment(basal_inc)
        st.bolus.set_increment(bolus_inc)

    def _steps_available(self) -> int:
        st = self.state
        available = (st.reservoir_nl - self.config.empty_reservoir_nl) // self.mech.stroke_nl
        return available if available > 0 else 0

    def _next_event_tick(self, horizon: int) -> int:
        """The earliest tick in (now, horizon] at which something must be decided (the state is
        settled, so nothing is due now)."""
        st = self.state
        now, nxt = st.tick, horizon
        basal, bolus = st.basal, st.bolus
        if st.active_bolus is not None and bolus.increment:
            t = bolus.tick_of_step(st.active_bolus.steps_total - st.active_bolus.steps_done)
            nxt = t if now < t < nxt else nxt
        if st.bridge is not None and basal.increment:
            t = basal.tick_of_step(st.bridge.steps_left)
            nxt = t if now < t < nxt else nxt
        if st.mode == Mode.FLEX and not self._delivery_stopped():
            t = self._next_flex_boundary(now)
            nxt = t if t < nxt else nxt
        if st.clinician_plan is not None:
            t = st.clinician_plan.next_start_tick
            nxt = t if now < t < nxt else nxt
        if not st.eos:
            battery = self.config.battery
            t = battery.eri_latest_ticks if st.eri_tick is None else st.eri_tick + battery.eri_to_eos_ticks
            nxt = t if now < t < nxt else nxt
        if st.stall_retry_tick is not None and now < st.stall_retry_tick < nxt:
            nxt = st.stall_retry_tick
        plant = self.plant
        if plant is not None:
            t = plant.next_change_tick(now)
            nxt = t if t is not None and t < nxt else nxt
        # Reservoir and battery thresholds: searched only when this span can reach them.
        made = basal.steps_until(nxt) + bolus.steps_until(nxt)
        if made:
            channels = (basal, bolus)
            stroke = self.mech.stroke_nl
            if st.reservoir_nl > st.low_reservoir_nl and not st.alarms.is_active(AlarmCode.RESERVOIR_LOW):
                k = -(-(st.reservoir_nl - st.low_reservoir_nl) // stroke)
                if k <= made:
                    nxt = tick_of_combined_step(channels, k, nxt) or nxt
            available = self._steps_available()
            if available <= made:
                nxt = tick_of_combined_step(channels, max(1, available), nxt) or nxt
        if not st.eos and nxt > self._battery_quiet_until():
            threshold = self._battery_threshold_nc()
            crossing = self._charge_crossing_tick(threshold, nxt)
            if crossing is not None and crossing > now:
                nxt = min(nxt, crossing)
        if plant is not None and basal.steps_until(nxt) + bolus.steps_until(nxt):
            if plant.rotor_held(now):  # the strokes fail: the stall is declared after a few
                if st.stall_tick is None:
                    k = max(1, self.config.stall_detect_steps - st.missed_steps)
                    nxt = tick_of_combined_step((basal, bolus), k, nxt) or nxt
            elif self.config.detector is not None:  # the strokes land: does the detector alarm?
                ticks = self._stroke_ticks(nxt)
                index, _, _ = scan_one(self.config.detector, st.detector, plant.strokes(ticks).samples_pa)
                if index >= 0:
                    nxt = int(ticks[index])
        return nxt

    def _settle_plant(self, to_tick: int) -> None:
        released = self.plant.settle(to_tick)
        if released:  # the plant's report, not the firmware's: an event, never a log record
            self._events.append(Record(0, to_tick, LogCode.OUTLET_RELEASE, 0, struct.pack("<iii", released, 0, 0)))

    def _stroke_ticks(self, to_tick: int) -> np.ndarray:
        """Ticks of the strokes both channels make up to `to_tick`, as many as the reservoir allows."""
        st = self.state
        ticks = np.sort(np.concatenate([st.basal.step_ticks(to_tick), st.bolus.step_ticks(to_tick)]), kind="stable")
        return ticks[:self._steps_available()]

    def _battery_threshold_nc(self) -> int:
        battery = self.config.battery
        return battery.eri_threshold_nc if self.state.eri_tick is None else battery.capacity_nc

    def _battery_quiet_until(self) -> int:
        """A tick before which the battery cannot reach its next threshold even with the motor
        at full speed: the charge search is skipped until then (a cache; it changes no result)."""
        st, battery = self.state, self.config.battery
        threshold = self._battery_threshold_nc()
        cached = self._quiet_cache
        if cached is not None and cached[0] == threshold and cached[1] > st.tick:
            return cached[1]
        left = threshold - battery.used_nc(st.steps_total, st.tick) - st.battery_drained_nc
        per_day = (self.mech.max_rate_nl_per_day // self.mech.stroke_nl + 2) * battery.step_charge_nc \
            + battery.quiescent_nc_per_day + 1
        quiet = st.tick + max(0, left) * TICKS_PER_DAY // per_day
        self._quiet_cache = (threshold, quiet)
        return quiet

    def _charge_crossing_tick(self, threshold_nc: int, horizon: int) -> int | None:
        st, battery = self.state, self.config.battery
        channels = (st.basal, st.bolus)

        def used(t: int) -> int:
            return battery.used_nc(st.steps_total + combined_steps_until(channels, t), t) + st.battery_drained_nc

        if used(horizon) < threshold_nc:
            return None
        lo, hi = st.tick, horizon
        if used(lo) >= threshold_nc:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if used(mid) >= threshold_nc:
                hi = mid
            else:
                lo = mid
        return hi

    def _next_flex_boundary(self, tick: int) -> int:
        st = self.state
        tod = (tick + st.clock_offset_ticks) % TICKS_PER_DAY
        for start, _ in st.flex:
            if start > tod:
                return tick + start - tod
        return tick + TICKS_PER_DAY - tod + st.flex[0][0]

    def _run_motor(self, to_tick: int) -> None:
        """Count the steps both channels make up to `to_tick` and account for them; with a plant,
        strokes against a held rotor are missed, and landed ones feed the outlet and the detector."""
        st, plant = self.state, self.plant
        if plant is not None:
            if plant.rotor_held(st.tick):
                missed = st.basal.advance(to_tick) + st.bolus.advance(to_tick)
                st.missed_steps += missed
                self._settle_plant(to_tick)
                return
            ticks = self._stroke_ticks(to_tick) if st.basal.steps_until(to_tick) + st.bolus.steps_until(to_tick) else ()
            if len(ticks):
                span = plant.strokes(ticks)
                plant.commit(span)
                st.steps_since_resume += len(ticks)
                st.missed_steps = 0  # the rotor turns: misses must be consecutive to mean a stall
                if self.config.detector is not None:
                    index, rule, st.detector = scan_one(self.config.detector, st.detector, span.samples_pa)
                    if index >= 0:
                        st.occlusion_found = (int(rule), int(span.samples_pa[index]))
            self._settle_plant(to_tick)
        basal_steps = st.basal.advance(to_tick)
        bolus_steps = st.bolus.advance(to_tick)
        made = basal_steps + bolus_steps
        if not made:
            return
        available = self._steps_available()
        if made > available:  # two channels stepped on the same last tick: the reservoir decides
            drop = made - available
            from_bolus = min(drop, bolus_steps)
            bolus_steps -= from_bolus
            st.bolus.steps -= from_bolus
            basal_steps -= drop - from_bolus
            st.basal.steps -= drop - from_bolus
            made = available
        volume = made * self.mech.stroke_nl
        st.steps_total += made
        st.reservoir_nl -= volume
        st.delivered_nl += volume
        st.dose_at_tip_pg += st.path.push(volume, st.concentration_ug_per_ml)
        if st.active_bolus is not None:
            st.active_bolus.steps_done += bolus_steps
        if st.bridge is not None:
            st.bridge.steps_left = max(0, st.bridge.steps_left - basal_steps)

    # ---- events ---------------------------------------------------------------------------

    def _due_events(self) -> None:
        """Decide everything that falls due at the present tick, in a fixed order."""
        st, cfg = self.state, self.config
        t = st.tick
        bolus = st.active_bolus
        if bolus is not None and bolus.steps_done >= bolus.steps_total:
            self._log(LogCode.BOLUS_COMPLETED, bolus.kind, bolus.steps_done)
            st.active_bolus = None
            if st.suspended_bolus is not None:  # SR-6: the clinician bolus resumes
                self._start_bolus(st.suspended_bolus)
                st.suspended_bolus = None
        if st.bridge is not None and st.bridge.steps_left == 0:
            self._log(LogCode.BOLUS_COMPLETED, BolusKind.BRIDGE, 0)
            st.bridge = None
        if st.occlusion_found is not None:  # SR-16: stop at once, high priority, until acknowledged
            rule, pressure = st.occlusion_found
            st.occlusion_found = None
            self._log(LogCode.OCCLUSION_DETECTED, rule, pressure, st.steps_since_resume)
            self._checkpoint_soon()
            self._raise(AlarmCode.OCCLUSION)
            self._clear(AlarmCode.OCCLUSION)  # the pump cannot see it clear without pumping: latched until acknowledged
        if self.plant is not None:
            self._stall_events(t)
        if st.reservoir_nl <= st.low_reservoir_nl and st.drug:
            self._raise(AlarmCode.RESERVOIR_LOW)
        if self._steps_available() == 0 and st.drug and not st.alarms.is_active(AlarmCode.RESERVOIR_EMPTY):
            self._raise(AlarmCode.RESERVOIR_EMPTY)
        if not st.eos:
            battery = cfg.battery
            used = battery.used_nc(st.steps_total, t) + st.battery_drained_nc if t >= self._battery_quiet_until() else 0
            if st.eri_tick is None and (used >= battery.eri_threshold_nc or t >= battery.eri_latest_ticks):
                st.eri_tick = t
                self._raise(AlarmCode.ELECTIVE_REPLACEMENT)
            if st.eri_tick is not None and (t >= st.eri_tick + battery.eri_to_eos_ticks or used >= battery.capacity_nc):
                st.eos = True
                st.clinician_plan = None
                self._raise(AlarmCode.END_OF_SERVICE)
        plan = st.clinician_plan
        if plan is not None and plan.next_start_tick <= t:
            self._start_planned_clinician_bolus(plan)
        panel = st.alarms
        if panel.next_tone_tick is not None and panel.next_tone_tick <= t:
            self._sound()
        if st.telemetry_mode and not st.telemetry_latched and panel.sounding() is not None:
            # EMI put the pump in telemetry mode while an alarm sounds: no infusion until an
            # interrogation (domain.md §1.1 [V S15], SR-28).
            was_stopped = self._delivery_stopped()
            st.telemetry_latched = True
            self._log(LogCode.TELEMETRY_MODE, 1, 1)
            self._checkpoint_soon()
            if not was_stopped:
                self._log(LogCode.DELIVERY_STOPPED, 0)

    def _stall_events(self, t: int) -> None:
        """Motor stall and its recovery, and the EMI of a scan (domain.md §1.1 [V S3, S15])."""
        st, cfg, plant = self.state, self.config, self.plant
        emi = plant.emi(t)
        if emi != st.telemetry_mode:
            st.telemetry_mode = emi
            self._log(LogCode.TELEMETRY_MODE, int(emi), int(st.telemetry_latched))
            self._checkpoint_soon()
        if st.stall_tick is None and st.missed_steps >= cfg.stall_detect_steps:
            st.stall_tick = t
            st.stall_retry_tick = t + cfg.stall_retry_ticks
            self._log(LogCode.STALL, st.missed_steps)
            self._checkpoint_soon()
            self._raise(AlarmCode.MOTOR_STALL)
        elif st.stall_retry_tick is not None and st.stall_retry_tick <= t:
            if plant.rotor_held(t):
                st.stall_retry_tick = t + cfg.stall_retry_ticks
                return
            self._test_stroke(t)
            self._log(LogCode.STALL_RECOVERED, (t - st.stall_tick) // TICK_HZ)
            self._checkpoint_soon()
            st.stall_tick = st.stall_retry_tick = None
            st.missed_steps = 0
            self._clear(AlarmCode.MOTOR_STALL)

    def _test_stroke(self, t: int) -> None:
        """The single stroke a stalled pump tries: when it lands, it delivers like any other."""
        st = self.state
        if self._steps_available() == 0:
            return
        self.plant.commit(self.plant.strokes(np.array([t], dtype=np.int64)))
        stroke = self.mech.stroke_nl
        st.steps_total += 1
        st.reservoir_nl -= stroke
        st.delivered_nl += stroke
        st.dose_at_tip_pg += st.path.push(stroke, st.concentration_ug_per_ml)

    def _start_planned_clinician_bolus(self, plan: ClinicianPlan) -> None:
        st = self.state
        if plan.starts_left > 0:
            plan.starts_left -= 1
        if plan.starts_left == 0:
            st.clinician_plan = None
        else:
            plan.next_start_tick += plan.period_ticks
        if self._delivery_stopped():
            return
        bolus = ActiveBolus(BolusKind.CLINICIAN, plan.steps, 0, plan.increment)
        self._note_bolus_start(BolusKind.CLINICIAN, self._bolus_dose_pg(plan.steps))
        if st.active_bolus is not None:
            if st.suspended_bolus is None and st.active_bolus.kind == BolusKind.PATIENT:
                st.suspended_bolus = bolus  # SR-6: it starts when the patient bolus ends
            return
        self._start_bolus(bolus)

    def _start_bolus(self, bolus: ActiveBolus) -> None:
        st = self.state
        st.active_bolus = bolus
        st.bolus.phase = 0
        self._log(LogCode.BOLUS_STARTED, bolus.kind, bolus.steps_total - bolus.steps_done, bolus.increment)

    def _halt_boluses(self) -> None:
        """SR-5: an alarm that stops delivery halts the bolus; a suspended one is discarded (SR-6)."""
        st = self.state
        for b in (st.active_bolus, st.suspended_bolus):
            if b is not None:
                self._log(LogCode.BOLUS_HALTED, b.kind, b.steps_done, b.steps_total - b.steps_done)
        st.active_bolus = st.suspended_bolus = None

    # ---- alarms ---------------------------------------------------------------------------

    def _raise(self, code: AlarmCode) -> None:
        st = self.state
        was_stopped = self._delivery_stopped()
        if st.alarms.raise_alarm(code, st.tick):
            self._log(LogCode.ALARM_ON, code, CATALOGUE[code].priority)
            if CATALOGUE[code].stops_delivery:
                self._halt_boluses()
                if not was_stopped:
                    self._log(LogCode.DELIVERY_STOPPED, code)
            self._sound()

    def _clear(self, code: AlarmCode) -> None:
        was_stopped = self._delivery_stopped()
        if self.state.alarms.clear_condition(code):
            self._log(LogCode.ALARM_OFF, code)
            self._after_alarm_removed(was_stopped)

    def _after_alarm_removed(self, was_stopped: bool) -> None:
        if was_stopped and not self._delivery_stopped():
            self._resume()
        self._reschedule_tone()

    def _resume(self) -> None:
        """Delivery starts again: no missed dose is made up (the phases simply run on), and the
        detector learns the outlet afresh, so a persisting occlusion alarms again within a few
        strokes (the guard against an unintended bolus, domain.md §4.1 [V S59])."""
        st = self.state
        st.detector, st.missed_steps, st.steps_since_resume = DetectorState(), 0, 0
        self._log(LogCode.DELIVERY_RESUMED)

    def _sound(self) -> None:
        """The sounding alarm's tone now; the next one after its priority's repeat interval."""
        panel = self.state.alarms
        alarm = panel.sounding()
        if alarm is None:
            panel.next_tone_tick = None
            return
        priority = CATALOGUE[alarm.code].priority
        self._events.append(Record(0, self.state.tick, LogCode.ALARM_TONE, 0,
                                   struct.pack("<iii", alarm.code, priority, 0)))
        panel.next_tone_tick = self.state.tick + self.config.alarms.repeat_ticks(priority)

    def _sound_until(self, tick: int) -> None:
        """The repeats of the sounding alarm before `tick`. Tones decide nothing, so they are not
        events the motor stops for: between two decisions they are an arithmetic series."""
        panel = self.state.alarms
        if panel.next_tone_tick is None or panel.next_tone_tick >= tick:
            return
        alarm = panel.sounding()
        priority = CATALOGUE[alarm.code].priority
        repeat = self.config.alarms.repeat_ticks(priority)
        payload = struct.pack("<iii", alarm.code, priority, 0)
        t = panel.next_tone_tick
        while t < tick:
            self._events.append(Record(0, t, LogCode.ALARM_TONE, 0, payload))
            t += repeat
        panel.next_tone_tick = t

    def _reschedule_tone(self) -> None:
        panel = self.state.alarms
        if panel.sounding() is None:
            panel.next_tone_tick = None

    # ---- logging --------------------------------------------------------------------------

    def _log(self, code: LogCode, a0: int = 0, a1: int = 0, a2: int = 0) -> None:
        rec = self.log.append(self.state.tick, code, int(a0), int(a1), int(a2))
        self.state.records_since_checkpoint += 1
        self._events.append(rec)

    def _log_command(self, command: Command) -> None:
        data = bytes([COMMAND_IDS[type(command)]]) + codec.encode(command)
        first = self.log.next_seq
        self.log.append_blob(self.state.tick, LogCode.COMMAND, data)
        # Count every record the blob took (a 24-step flex table takes 19), not one per command:
        # the checkpoint cadence is in records so that the ring always holds the newest one.
        self.state.records_since_checkpoint += self.log.next_seq - first

    def _checkpoint(self) -> None:
        self.state.records_since_checkpoint = 0
        self.log.append_blob(self.state.tick, LogCode.CHECKPOINT, codec.encode(self.state))

    def _checkpoint_soon(self) -> None:
        """Checkpoint once the present tick is settled. What the world did (an occlusion, a stall,
        EMI) is not a command a rebuild can replay, so the state it left must be in a checkpoint."""
        self.state.records_since_checkpoint = self.config.checkpoint_records

    def _maybe_checkpoint(self) -> None:
        if self.state.records_since_checkpoint >= self.config.checkpoint_records:
            self._checkpoint()

    # ---- dose arithmetic ----------------------------------------------------------------

    def _program_day_nl(self, mode: Mode | None = None, rate: int | None = None,
                        flex: tuple[tuple[int, int], ...] | None = None) -> int:
        """Basal volume per day of a program (the present one by default)."""
        st = self.state
        mode = st.mode if mode is None else mode
        if mode == Mode.CONTINUOUS:
            return st.continuous_rate_nl_per_day if rate is None else rate
        if mode == Mode.FLEX:
            table = st.flex if flex is None else flex
            total = 0
            for i, (start, r) in enumerate(table):
                end = table[i + 1][0] if i + 1 < len(table) else TICKS_PER_DAY
                total += r * (end - start)
            return -(-total // TICKS_PER_DAY)
        if mode == Mode.MINIMUM_RATE:
            return self.mech.safe_rate_nl_per_day
        return 0

    def _worst_bolus_day_nl(self, patient: PatientSettings | None | bool = True,
                            plan: ClinicianPlan | None | bool = True) -> int:
        """Bolus volume per day if every allowed bolus is taken (domain.md §2 [V S33])."""
        st, stroke = self.state, self.mech.stroke_nl
        patient = st.patient if patient is True else patient
        plan = st.clinician_plan if plan is True else plan
        total = 0
        if patient is not None:
            total += patient.max_per_day * patient.steps * stroke
        if plan is not None:
            per_day = 1 if plan.period_ticks == 0 else -(-TICKS_PER_DAY // plan.period_ticks)
            if plan.starts_left > 0:
                per_day = min(per_day, plan.starts_left)
            total += per_day * plan.steps * stroke
        return total

    def _max_concentration(self) -> int:
        st = self.state
        return max([st.concentration_ug_per_ml] + [s.concentration_ug_per_ml for s in st.path.segments])

    def _bolus_dose_pg(self, steps: int) -> int:
        """A bolus's dose, counted at the strongest concentration between reservoir and tip."""
        return dose_pg(steps * self.mech.stroke_nl, self._max_concentration())

    def _check_daily(self, drug: str, concentration: int, basal_day_nl: int, bolus_day_nl: int,
                     extra_pg: int = 0) -> tuple[SoftLimitFlag, ...]:
        """No programmed daily dose above the drug's hard limit (SR-3, SR-22); soft ones flagged."""
        daily_pg = dose_pg(basal_day_nl + bolus_day_nl, concentration) + extra_pg
        return tuple(self.config.library.check_daily_dose(drug, daily_pg))

    def _note_bolus_start(self, kind: BolusKind, dose: int) -> None:
        """Remember a bolus for the rolling 24 h window, forgetting those older than the window."""
        st = self.state
        window = st.tick - TICKS_PER_DAY
        st.bolus_starts = [b for b in st.bolus_starts if b[0] > window]
        st.bolus_starts.append((st.tick, int(kind), dose))

    def _recent_bolus_pg(self) -> int:
        st = self.state
        return sum(d for t, _, d in st.bolus_starts if t > st.tick - TICKS_PER_DAY)

    def _require_drug(self, what: str) -> None:
        if not self.state.drug:
            raise NotAllowedNow(f"{what} refused: the reservoir holds no drug yet; expected a Refill first")

    def _check_rate(self, field_name: str, rate: int) -> None:
        mech = self.mech
        if not mech.min_rate_nl_per_day <= rate <= mech.max_rate_nl_per_day:
            raise LimitExceeded(field_name, rate,
                                f"{mech.min_rate_nl_per_day}..{mech.max_rate_nl_per_day} nL/day",
                                "domain.md §1.1 and §6 rate range [M]")

    def _bolus_steps(self, field_name: str, volume_nl: int, duration_ticks: int) -> tuple[int, int]:
        """Steps of a bolus volume and the increment that spreads them over the duration."""
        steps = self.mech.steps_for(volume_nl) if volume_nl > 0 else 0
        if steps < 1:
            raise LimitExceeded(f"{field_name}.volume_nl", volume_nl, f">= half a stroke ({self.mech.stroke_nl // 2} nL)")
        if steps * self.mech.stroke_nl > self.config.reservoir_capacity_nl:
            raise LimitExceeded(f"{field_name}.volume_nl", volume_nl, f"<= reservoir capacity {self.config.reservoir_capacity_nl} nL")
        if duration_ticks <= 0:
            raise LimitExceeded(f"{field_name}.duration_ticks", duration_ticks, "> 0")
        increment = min(-(-steps * PHASE_ONE // duration_ticks), self._max_increment)
        return steps, increment

    # ---- command handlers: each validates, then returns the mutation --------------------------

    def _program(self, mode: Mode, rate: int = 0, flex: tuple[tuple[int, int], ...] = ()) -> Callable[[], list[Response]]:
        st = self.state
        flags: tuple[SoftLimitFlag, ...] = ()
        if mode != Mode.STOPPED:
            self._require_drug(f"programming {mode.name}")
            day_nl = self._program_day_nl(mode, rate, flex)
            flags = self._check_daily(st.drug, st.concentration_ug_per_ml, day_nl, self._worst_bolus_day_nl())

        def apply() -> list[Response]:
            before = st.mode
            st.mode, st.continuous_rate_nl_per_day, st.flex = mode, rate, flex
            if mode == Mode.STOPPED:  # SR-20: stop halts basal and every bolus
                self._halt_boluses()
                st.clinician_plan = None
                st.bridge = None
            self._log(LogCode.PROGRAM_CHANGED, before, mode, rate)
            return [Accepted(self._log_flags(flags))]
        return apply

    def _log_flags(self, flags: tuple[SoftLimitFlag, ...]) -> tuple[str, ...]:
        """Log each accepted soft-limit excess; the texts go back to the programmer."""
        for flag in flags:
            self._log(LogCode.SOFT_LIMIT, self.state.drug_index, flag.value, flag.soft_limit)
        return tuple(str(f) for f in flags)

    def _on_stopped(self, cmd: ProgramStopped) -> Callable[[], list[Response]]:
        return self._program(Mode.STOPPED)

    def _on_continuous(self, cmd: ProgramContinuous) -> Callable[[], list[Response]]:
        self._check_rate("rate_nl_per_day", cmd.rate_nl_per_day)
        increment_for_rate(cmd.rate_nl_per_day, self.mech.stroke_nl)
        return self._program(Mode.CONTINUOUS, cmd.rate_nl_per_day)

    def _on_flex(self, cmd: ProgramFlex) -> Callable[[], list[Response]]:
        steps = tuple((int(s), int(r)) for s, r in cmd.steps)
        if not 1 <= len(steps) <= self.config.max_flex_steps:
            raise LimitExceeded("flex.steps", len(steps), f"1..{self.config.max_flex_steps} steps (domain.md §2 [M])")
        if steps[0][0] != 0:
            raise LimitExceeded("flex.steps[0].start_tick", steps[0][0], "0 (the table starts at midnight)")
        for i, (start, rate) in enumerate(steps):
            if not 0 <= start < TICKS_PER_DAY or (i and start <= steps[i - 1][0]):
                raise LimitExceeded(f"flex.steps[{i}].start_tick", start,
                                    f"increasing and within the day (0..{TICKS_PER_DAY - 1})")
            if rate != 0:
                self._check_rate(f"flex.steps[{i}].rate_nl_per_day", rate)
        return self._program(Mode.FLEX, 0, steps)

    def _on_minimum(self, cmd: ProgramMinimumRate) -> Callable[[], list[Response]]:
        return self._program(Mode.MINIMUM_RATE, self.mech.safe_rate_nl_per_day)

    def _on_clinician_bolus(self, cmd: ClinicianBolus) -> Callable[[], list[Response]]:
        st = self.state
        self._require_drug("clinician bolus")
        if self._delivery_stopped():
            raise NotAllowedNow("clinician bolus refused: delivery is stopped by an alarm; expected it cleared first")
        if st.active_bolus is not None or st.clinician_plan is not None:
            raise NotAllowedNow("clinician bolus refused: a bolus is already in progress or planned; expected none")
        steps, increment = self._bolus_steps("clinician_bolus", cmd.volume_nl, cmd.duration_ticks)
        if cmd.period_ticks < 0 or (cmd.period_ticks and cmd.period_ticks <= cmd.duration_ticks):
            raise LimitExceeded("clinician_bolus.period_ticks", cmd.period_ticks, f"0 (single) or > duration ({cmd.duration_ticks})")
        if cmd.count < 0 or (cmd.period_ticks == 0 and cmd.count != 1):
            raise LimitExceeded("clinician_bolus.count", cmd.count, "1 for a single bolus; >= 0 for periodic (0: forever)")
        plan = ClinicianPlan(steps, increment, cmd.period_ticks, cmd.count if cmd.count else -1, st.tick)
        flags = self._check_daily(st.drug, self._max_concentration(), self._program_day_nl(),
                                  self._worst_bolus_day_nl(plan=plan), self._recent_bolus_pg())

        def apply() -> list[Response]:
            st.clinician_plan = plan
            self._start_planned_clinician_bolus(plan)
            return [Accepted(self._log_flags(flags)), BolusGranted(BolusKind.CLINICIAN, steps, steps * self.mech.stroke_nl)]
        return apply

    def _on_priming(self, cmd: PrimingBolus) -> Callable[[], list[Response]]:
        st = self.state
        self._require_drug("priming bolus")
        if self._delivery_stopped():
            raise NotAllowedNow("priming bolus refused: delivery is stopped by an alarm; expected it cleared first")
        if st.active_bolus is not None:
            raise NotAllowedNow("priming bolus refused: a bolus is in progress; expected none")
        steps, increment = self._bolus_steps("priming_bolus", cmd.volume_nl, cmd.duration_ticks)
        path = codec.decode(codec.encode(st.path), FluidPath)
        tip_pg = path.push(steps * self.mech.stroke_nl, st.concentration_ug_per_ml)
        self._check_daily(st.drug, st.concentration_ug_per_ml, self._program_day_nl(),
                          self._worst_bolus_day_nl(), self._recent_bolus_pg() + tip_pg)

        def apply() -> list[Response]:
            self._note_bolus_start(BolusKind.PRIMING, tip_pg)
            self._start_bolus(ActiveBolus(BolusKind.PRIMING, steps, 0, increment))
            return [BolusGranted(BolusKind.PRIMING, steps, steps * self.mech.stroke_nl)]
        return apply

    def _on_configure_patient(self, cmd: ConfigurePatientBolus) -> Callable[[], list[Response]]:
        st = self.state
        if cmd.max_per_day == 0:
            def off() -> list[Response]:
                st.patient = None
                return [Accepted()]
            return off
        self._require_drug("patient bolus settings")
        steps, increment = self._bolus_steps("patient_bolus", cmd.volume_nl, cmd.duration_ticks)
        # SR-1 is judged against the grants of the rolling 24 h window (the only ones kept), so a
        # longer lockout could not be honoured: refuse it rather than let it lapse after a day.
        if not cmd.duration_ticks <= cmd.lockout_ticks <= TICKS_PER_DAY:
            raise LimitExceeded("patient_bolus.lockout_ticks", cmd.lockout_ticks,
                                f">= the bolus duration ({cmd.duration_ticks} ticks) and "
                                f"<= the 24 h window ({TICKS_PER_DAY} ticks)")
        if not 0 < cmd.max_per_day <= 24:
            raise LimitExceeded("patient_bolus.max_per_day", cmd.max_per_day, "1..24 per rolling 24 h")
        settings = PatientSettings(steps, increment, cmd.lockout_ticks, cmd.max_per_day)
        flags = self._check_daily(st.drug, self._max_concentration(), self._program_day_nl(),
                                  self._worst_bolus_day_nl(patient=settings))

        def apply() -> list[Response]:
            st.patient = settings
            return [Accepted(self._log_flags(flags))]
        return apply

    def _on_patient_request(self, cmd: PatientBolusRequest) -> Callable[[], list[Response]]:
        st = self.state

        def deny(reason: DenyReason, detail: str) -> Callable[[], list[Response]]:
            def apply() -> list[Response]:
                st.boluses_denied += 1
                self._log(LogCode.PATIENT_BOLUS_DENIED, reason)
                return [BolusDenied(reason, detail)]
            return apply

        p = st.patient
        if p is None:
            return deny(DenyReason.NOT_CONFIGURED, "no patient bolus is programmed")
        if self._delivery_stopped():
            return deny(DenyReason.DELIVERY_STOPPED, "delivery is stopped by an alarm")
        if st.mode == Mode.STOPPED:
            return deny(DenyReason.THERAPY_STOPPED, "the pump is programmed to stopped")
        if st.active_bolus is not None and st.active_bolus.kind != BolusKind.CLINICIAN:
            return deny(DenyReason.BOLUS_IN_PROGRESS, f"a {st.active_bolus.kind.name.lower()} bolus is in progress")
        window = st.tick - TICKS_PER_DAY
        grants = [t for t, kind, _ in st.bolus_starts if kind == BolusKind.PATIENT and t > window]
        if grants and st.tick - grants[-1] < p.lockout_ticks:
            return deny(DenyReason.LOCKOUT, f"lockout until tick {grants[-1] + p.lockout_ticks}")
        if len(grants) >= p.max_per_day:
            return deny(DenyReason.DAILY_COUNT, f"{len(grants)} of {p.max_per_day} already in the last 24 h")
        dose = self._bolus_dose_pg(p.steps)
        basal_pg = dose_pg(self._program_day_nl(), self._max_concentration())
        limit_pg = self.config.library.limits(st.drug).max_daily_dose_ng * 1000
        if basal_pg + self._recent_bolus_pg() + dose > limit_pg:  # SR-2: basal counts too
            return deny(DenyReason.DAILY_DOSE, "the rolling 24 h dose would pass the drug's hard limit")

        def grant() -> list[Response]:
            st.boluses_granted += 1
            self._note_bolus_start(BolusKind.PATIENT, dose)
            self._log(LogCode.PATIENT_BOLUS_GRANTED, p.steps, len(grants) + 1)
            if st.active_bolus is not None:  # SR-6: the clinician bolus waits
                st.suspended_bolus = st.active_bolus
                st.active_bolus = None
            self._start_bolus(ActiveBolus(BolusKind.PATIENT, p.steps, 0, p.increment))
            return [BolusGranted(BolusKind.PATIENT, p.steps, p.steps * self.mech.stroke_nl)]
        return grant

    def _on_refill(self, cmd: Refill) -> Callable[[], list[Response]]:
        st, cfg = self.state, self.config
        lib = cfg.library
        lib.check_concentration(cmd.drug, cmd.concentration_ug_per_ml)
        for name in ("measured_residual_nl", "injected_nl"):
            value = getattr(cmd, name)
            if not 0 <= value <= cfg.reservoir_capacity_nl:
                raise LimitExceeded(f"refill.{name}", value, f"0..{cfg.reservoir_capacity_nl} nL (reservoir capacity)")
        if cmd.measured_after_nl is not None and not 0 <= cmd.measured_after_nl <= cfg.reservoir_capacity_nl:
            raise LimitExceeded("refill.measured_after_nl", cmd.measured_after_nl, f"0..{cfg.reservoir_capacity_nl} nL")
        drug_changes = bool(st.drug) and cmd.drug != st.drug
        conc_changes = bool(st.drug) and cmd.concentration_ug_per_ml != st.concentration_ug_per_ml
        if cmd.bridge and drug_changes:
            raise NotAllowedNow(f"refill.bridge refused: a bridge bolus keeps one drug's dose across a concentration "
                                f"change, but the drug changes from '{st.drug}' to '{cmd.drug}'; expected bridge = false "
                                "and a priming of the path")
        flags: tuple[SoftLimitFlag, ...] = ()
        if not drug_changes:  # the program carries over: check it at the new concentration
            flags = self._check_daily(cmd.drug, max(cmd.concentration_ug_per_ml, self._max_concentration()),
                                      self._program_day_nl(), self._worst_bolus_day_nl())
        old_conc = st.path.segments[0].concentration_ug_per_ml if st.path.segments else st.concentration_ug_per_ml
        bridge_steps = 0
        if cmd.bridge and conc_changes and old_conc:
            bridge_steps = -(-st.path.old_drug_nl(cmd.concentration_ug_per_ml) // self.mech.stroke_nl)
        expected = st.reservoir_nl
        threshold = cfg.discrepancy_threshold_nl

        def apply() -> list[Response]:
            st.withdrawn_nl += cmd.measured_residual_nl
            st.filled_nl += cmd.injected_nl
            st.reservoir_nl = cmd.injected_nl
            self._log(LogCode.REFILL, expected, cmd.measured_residual_nl, cmd.injected_nl)
            if cmd.drug != st.drug or cmd.concentration_ug_per_ml != st.concentration_ug_per_ml:
                st.drug, st.concentration_ug_per_ml = cmd.drug, cmd.concentration_ug_per_ml
                st.drug_index = [d.name for d in lib.drugs].index(cmd.drug)
                self._log(LogCode.DRUG_CHANGED, st.drug_index, cmd.concentration_ug_per_ml,
                          st.path.old_drug_nl(cmd.concentration_ug_per_ml))
            if drug_changes:  # a new drug: nothing programmed for the old one carries over
                before = st.mode
                st.mode, st.continuous_rate_nl_per_day, st.flex = Mode.STOPPED, 0, ()
                st.patient, st.clinician_plan = None, None
                self._halt_boluses()
                self._log(LogCode.PROGRAM_CHANGED, before, Mode.STOPPED, 0)
            st.bridge = Bridge(bridge_steps, old_conc) if bridge_steps else None
            if bridge_steps:
                self._log(LogCode.BOLUS_STARTED, BolusKind.BRIDGE, bridge_steps, 0)
            if abs(expected - cmd.measured_residual_nl) > threshold or (
                    cmd.measured_after_nl is not None and abs(cmd.injected_nl - cmd.measured_after_nl) > threshold):
                self._raise(AlarmCode.REFILL_DISCREPANCY)
                self._clear(AlarmCode.REFILL_DISCREPANCY)  # an event, not a state: latched until acknowledged
            if st.reservoir_nl > st.low_reservoir_nl:
                self._clear(AlarmCode.RESERVOIR_LOW)
            if self._steps_available() > 0:
                self._clear(AlarmCode.RESERVOIR_EMPTY)
            else:
                self._raise(AlarmCode.RESERVOIR_EMPTY)
            return [Accepted(self._log_flags(flags))]
        return apply

    def _on_low_alarm(self, cmd: SetLowReservoirAlarm) -> Callable[[], list[Response]]:
        st = self.state
        lo, hi = self.config.low_reservoir_range_nl
        if not lo <= cmd.threshold_nl <= hi:
            raise LimitExceeded("low_reservoir_alarm.threshold_nl", cmd.threshold_nl, f"{lo}..{hi} nL", "domain.md §6 [V S13]")

        def apply() -> list[Response]:
            st.low_reservoir_nl = cmd.threshold_nl
            if st.reservoir_nl > st.low_reservoir_nl:
                self._clear(AlarmCode.RESERVOIR_LOW)
            elif st.drug:
                self._raise(AlarmCode.RESERVOIR_LOW)
            return [Accepted()]
        return apply

    def _on_ack(self, cmd: AcknowledgeAlarm) -> Callable[[], list[Response]]:
        st = self.state
        if not st.alarms.is_active(cmd.alarm):
            active = [a.code.name for a in st.alarms.active]
            raise NotAllowedNow(f"acknowledge {cmd.alarm.name} refused: it is not active; active: {active or 'none'}")

        def apply() -> list[Response]:
            was_stopped = self._delivery_stopped()
            self._log(LogCode.ALARM_ACK, cmd.alarm)
            if st.alarms.acknowledge(cmd.alarm):
                self._log(LogCode.ALARM_OFF, cmd.alarm)
            self._after_alarm_removed(was_stopped)
            return [Accepted()]
        return apply

    def _on_clock(self, cmd: SetClock) -> Callable[[], list[Response]]:
        st = self.state
        if not 0 <= cmd.time_of_day_ticks < TICKS_PER_DAY:
            raise LimitExceeded("set_clock.time_of_day_ticks", cmd.time_of_day_ticks, f"0..{TICKS_PER_DAY - 1}")

        def apply() -> list[Response]:
            old = st.clock_offset_ticks
            st.clock_offset_ticks = (cmd.time_of_day_ticks - st.tick) % TICKS_PER_DAY
            self._log(LogCode.CLOCK_SET, old // 32768, st.clock_offset_ticks // 32768)
            return [Accepted()]
        return apply

    def _on_interrogate(self, cmd: Interrogate) -> Callable[[], list[Response]]:
        st = self.state

        def apply() -> list[Response]:
            was_stopped = self._delivery_stopped()
            released = st.telemetry_latched
            st.telemetry_latched = False
            self._log(LogCode.INTERROGATION, int(released))
            if released and was_stopped and not self._delivery_stopped():
                self._resume()
            return [self.status()]
        return apply

    def _on_status(self, cmd: GetStatus) -> Callable[[], list[Response]]:
        return lambda: [self.status()]

    _HANDLERS: dict[type, Callable[["Controller", Command], Callable[[], list[Response]]]] = {
        ProgramStopped: _on_stopped, ProgramContinuous: _on_continuous, ProgramFlex: _on_flex,
        ProgramMinimumRate: _on_minimum, ClinicianBolus: _on_clinician_bolus, PrimingBolus: _on_priming,
        ConfigurePatientBolus: _on_configure_patient, PatientBolusRequest: _on_patient_request,
        Refill: _on_refill, SetLowReservoirAlarm: _on_low_alarm, AcknowledgeAlarm: _on_ack,
        SetClock: _on_clock, Interrogate: _on_interrogate, GetStatus: _on_status,
    }
