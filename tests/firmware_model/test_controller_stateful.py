"""Random command sequences against the controller; the safety invariants hold after every step.

Checked after every rule:
- reservoir accounting (SR-10): delivered never exceeds filled, the reservoir never goes below
  zero and equals the last fill minus what was delivered since;
- patient boluses (SR-1, SR-3): the grants seen in the responses never exceed the configured
  maximum in any rolling 24 h, and no two fall within the lockout;
- refusals: a command that raises ModelError leaves `snapshot()` bit-identical;
- drug library (SR-3, SR-22): no programmed daily dose (basal day volume plus every allowed bolus,
  at the reservoir's concentration) exceeds the drug's hard limit, computed here from the state
  and the library, not by the controller's own helpers;
- alarms (SR-11, SR-12, SR-24): the low and empty alarms are up whenever their conditions hold,
  an empty reservoir or end of service stops delivery and every bolus, only an unacknowledged
  alarm sounds, and only a patient bolus holds a clinician bolus suspended (SR-6);
- reset (SR-25): the state rebuilt from a copy of the flash equals the running state, and the
  log is kept with one POWER_ON record added.
A twin controller gets the same commands at the same ticks but is never advanced in between; it
must answer every command alike and end bit-identical (where a caller stops time changes nothing).
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from firmware_model import codec
from firmware_model.alarms import AlarmCode
from firmware_model.battery import BatterySpec
from firmware_model.commands import (AcknowledgeAlarm, BolusGranted, BolusKind, ClinicianBolus,
                                     ConfigurePatientBolus, Mode, PatientBolusRequest, PrimingBolus,
                                     ProgramContinuous, ProgramFlex, ProgramMinimumRate, ProgramStopped,
                                     Refill, SetClock, SetLowReservoirAlarm)
from firmware_model.controller import Controller, PumpConfig
from firmware_model.drug_library import DEFAULT_LIMITS
from firmware_model.errors import ModelError
from firmware_model.event_log import EventLog, LogCode
from firmware_model.step_scheduler import increment_for_rate
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

# A small log, so that the ring wraps and checkpoints matter; a battery that reaches its elective
# replacement indicator after about 280 days and its end of service some 90 days later, so that
# the longest runs meet both.
CONFIG = PumpConfig(log_capacity=96, checkpoint_records=24,
                    battery=BatterySpec(capacity_nc=150_000_000_000, eri_reserve_nc=50_000_000_000))
STROKE = CONFIG.mechanism.stroke_nl
CAPACITY = CONFIG.reservoir_capacity_nl
MIN_RATE = CONFIG.mechanism.min_rate_nl_per_day
MAX_RATE = CONFIG.mechanism.max_rate_nl_per_day
LIMITS = {d.name: d for d in DEFAULT_LIMITS}
DRUGS = [d.name for d in DEFAULT_LIMITS]
PG_PER_NG = 1_000
MAX_INCREMENT = increment_for_rate(MAX_RATE, STROKE)


def mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values four times in five, so that sequences get far; illegal ones the rest."""
    return st.integers(0, 4).flatmap(lambda k: invalid if k == 4 else valid)


TICKS = st.one_of(st.integers(1, TICKS_PER_HOUR), st.integers(TICKS_PER_HOUR, TICKS_PER_DAY),
                  st.integers(TICKS_PER_DAY, 10 * TICKS_PER_DAY))
RATES = mostly(st.one_of(st.integers(MIN_RATE, 600_000), st.sampled_from([MIN_RATE, 100_000, 250_000])),
               st.one_of(st.sampled_from([0, 1, MIN_RATE - 1, MAX_RATE, MAX_RATE + 1, 10**12]),
                         st.integers(MIN_RATE, MAX_RATE)))
BOLUS_VOLUMES = mostly(st.integers(125, 50_000),
                       st.one_of(st.sampled_from([0, 1, 124, CAPACITY, CAPACITY + 1]), st.integers(0, 2_000_000)))
DURATIONS = mostly(st.integers(TICKS_PER_MINUTE, 2 * TICKS_PER_HOUR), st.sampled_from([0, -1, 1]))
DRUG_NAMES = mostly(st.sampled_from(DRUGS), st.just("bogus"))


@st.composite
def concentrations(draw, drug: str) -> int:
    top = LIMITS[drug].max_concentration_ug_per_ml if drug in LIMITS else 1_000
    return draw(mostly(st.integers(1, 100).map(lambda pct: max(1, top * pct // 100)),
                       st.sampled_from([0, -1, top + 1, 10 * top])))


@st.composite
def flex_tables(draw) -> tuple[tuple[int, int], ...]:
    n = draw(mostly(st.integers(0, 5), st.integers(0, 26)))
    starts = sorted(set(draw(st.lists(st.integers(1, TICKS_PER_DAY - 1), min_size=n, max_size=n))))
    if draw(mostly(st.just(True), st.booleans())):
        starts = [0] + starts
    if draw(st.integers(0, 9)) == 0:
        starts = starts[::-1]  # not increasing: refused
    return tuple((s, draw(st.one_of(st.just(0), RATES))) for s in starts)


def basal_day_nl(state) -> int:
    """Basal volume per day of the program held in the state (nL), rounded up."""
    if state.mode == Mode.CONTINUOUS:
        return state.continuous_rate_nl_per_day
    if state.mode == Mode.MINIMUM_RATE:
        return CONFIG.mechanism.safe_rate_nl_per_day
    if state.mode == Mode.FLEX:
        table = state.flex
        total = sum(rate * ((table[i + 1][0] if i + 1 < len(table) else TICKS_PER_DAY) - start)
                    for i, (start, rate) in enumerate(table))
        return -(-total // TICKS_PER_DAY)
    return 0


def worst_bolus_day_nl(state) -> int:
    """Bolus volume per day if every allowed bolus is taken (domain.md §2 [V S33])."""
    total = 0
    if state.patient is not None:
        total += state.patient.max_per_day * state.patient.steps * STROKE
    plan = state.clinician_plan
    if plan is not None:
        per_day = 1 if plan.period_ticks == 0 else -(-TICKS_PER_DAY // plan.period_ticks)
        if plan.starts_left > 0:
            per_day = min(per_day, plan.starts_left)
        total += per_day * plan.steps * STROKE
    return total


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ctl = Controller(CONFIG)
        # The twin gets the same commands at the same ticks but is never advanced in between:
        # where a caller stops time must not change what happens.
        self.twin = Controller(CONFIG)
        self.now = 0
        self.grants: list[tuple[int, int, int]] = []  # (tick, lockout in force, max per day in force)
        self.fill_nl = 0
        self.delivered_at_fill = 0

    # ---- driving ------------------------------------------------------------------------

    def send(self, command):
        """Advance to now, then the command at that same tick; a refusal must change nothing."""
        self.ctl.advance(self.now)
        before = self.ctl.snapshot()
        try:
            responses = self.ctl.handle(command, self.now)
        except ModelError as exc:
            after = self.ctl.snapshot()
            assert after == before, f"{command!r} was refused ({exc}) but changed the pump"
            assert str(exc)
            try:
                self.twin.handle(command, self.now)
            except ModelError as twin_exc:
                assert str(twin_exc) == str(exc)
            else:
                raise AssertionError(f"the twin accepted {command!r}")
            return None
        assert self.twin.handle(command, self.now) == responses
        return responses

    @rule(dt=TICKS)
    def advance(self, dt: int) -> None:
        self.now += dt
        events = self.ctl.advance(self.now)
        assert all(e.tick <= self.now for e in events)
        assert self.ctl.state.tick == self.now

    @rule(days=st.integers(5, 60), refill=st.booleans())
    def months_pass(self, days: int, refill: bool) -> None:
        """Weeks go by, then (mostly) the clinic refills what is in the pump."""
        self.now += days * TICKS_PER_DAY
        self.ctl.advance(self.now)
        state = self.ctl.state
        if refill and state.drug:
            if self.send(Refill(state.reservoir_nl, CAPACITY, state.drug, state.concentration_ug_per_ml)) is not None:
                self.fill_nl, self.delivered_at_fill = CAPACITY, self.ctl.state.delivered_nl

    @initialize(data=st.data())
    def first_fill(self, data) -> None:
        """Most runs start with a filled pump, programmed to a share of the drug's hard limit, and
        with patient boluses that fit in what is left (so that sequences reach grants and denials)."""
        if data.draw(st.integers(0, 9)) == 9:
            return
        drug = data.draw(st.sampled_from(DRUGS))
        top = LIMITS[drug].max_concentration_ug_per_ml
        concentration = max(1, top * data.draw(st.integers(1, 100)) // 100)
        injected = data.draw(st.integers(2_000_000, CAPACITY))
        assert self.send(Refill(0, injected, drug, concentration)) is not None
        self.fill_nl, self.delivered_at_fill = injected, 0
        limit_pg = LIMITS[drug].max_daily_dose_ng * PG_PER_NG
        basal_share, bolus_share = data.draw(st.integers(5, 80)), data.draw(mostly(st.integers(1, 40), st.just(0)))
        rate = min(max(limit_pg * basal_share // 100 // concentration, MIN_RATE), 3_000_000)
        self.send(ProgramContinuous(rate))
        if bolus_share:
            max_per_day = data.draw(st.integers(1, 8))
            volume = max(125, limit_pg * bolus_share // 100 // concentration // max_per_day)
            self.configure_patient_bolus(data, min(volume, 200_000),
                                         data.draw(st.integers(TICKS_PER_MINUTE, TICKS_PER_HOUR)), max_per_day)

    @rule(data=st.data(),
          residual=st.one_of(st.just(None), st.integers(-1, CAPACITY + 1)),
          injected=mostly(st.integers(1_000_000, CAPACITY),
                          st.sampled_from([0, 500_000, 1_000_000, 1_000_250, CAPACITY + 1])),
          same=st.booleans(), bridge=st.booleans(),
          after=st.one_of(st.just(None), st.integers(0, CAPACITY + 1)))
    def refill(self, data, residual, injected, same, bridge, after) -> None:
        self.ctl.advance(self.now)
        state = self.ctl.state
        drug = state.drug if same and state.drug else data.draw(DRUG_NAMES)
        concentration = data.draw(concentrations(drug))
        if same and state.drug and data.draw(st.booleans()):
            concentration = state.concentration_ug_per_ml
        if residual is None:
            residual = state.reservoir_nl
        responses = self.send(Refill(residual, injected, drug, concentration, after, bridge))
        if responses is not None:
            self.fill_nl = injected
            self.delivered_at_fill = self.ctl.state.delivered_nl

    @rule(rate=RATES)
    def program_continuous(self, rate: int) -> None:
        self.send(ProgramContinuous(rate))

    @rule(table=flex_tables())
    def program_flex(self, table) -> None:
        self.send(ProgramFlex(table))

    @rule()
    def program_stopped(self) -> None:
        if self.send(ProgramStopped()) is None:  # stopping is always allowed, until end of service
            assert self.ctl.state.eos

    @rule()
    def program_minimum_rate(self) -> None:
        self.send(ProgramMinimumRate())

    @rule(data=st.data(), volume=BOLUS_VOLUMES, duration=DURATIONS)
    def clinician_bolus(self, data, volume, duration) -> None:
        period, count = data.draw(mostly(
            st.one_of(st.just((0, 1)),
                      st.tuples(st.integers(1, 2 * TICKS_PER_DAY).map(lambda p: p + max(duration, 0)),
                                st.integers(1, 4))),
            st.tuples(st.integers(-1, 2 * TICKS_PER_DAY), st.integers(-1, 4))))
        self.send(ClinicianBolus(volume, duration, period, count))

    @rule(volume=st.one_of(st.just(CONFIG.mechanism.fluid_path_nl), BOLUS_VOLUMES), duration=DURATIONS)
    def priming_bolus(self, volume, duration) -> None:
        self.send(PrimingBolus(volume, duration))

    @rule(data=st.data(), volume=BOLUS_VOLUMES, duration=DURATIONS, max_per_day=mostly(st.integers(1, 8), st.integers(0, 26)))
    def configure_patient_bolus(self, data, volume, duration, max_per_day) -> None:
        lockout = data.draw(mostly(st.integers(0, 6 * TICKS_PER_HOUR).map(lambda t: t + max(duration, 0)),
                                   st.one_of(st.integers(TICKS_PER_DAY - 5, 3 * TICKS_PER_DAY),
                                             st.integers(-1, max(duration, 0)))))
        self.send(ConfigurePatientBolus(volume, duration, lockout, max_per_day))

    @rule(presses=st.integers(1, 4), gap=st.one_of(st.just(0), st.integers(1, 12 * TICKS_PER_HOUR),
                                                  st.integers(TICKS_PER_DAY - TICKS_PER_HOUR, 2 * TICKS_PER_DAY)))
    def patient_bolus_request(self, presses: int, gap: int) -> None:
        for _ in range(presses):
            responses = self.send(PatientBolusRequest())
            if responses is None:
                assert self.ctl.state.eos, "a request is answered, granted or denied; refused only at end of service"
                return
            for r in responses:
                if isinstance(r, BolusGranted):
                    assert r.kind == BolusKind.PATIENT
                    p = self.ctl.state.patient
                    self.grants.append((self.now, p.lockout_ticks, p.max_per_day))
            self.now += gap

    @rule(alarm=st.sampled_from(list(AlarmCode)))
    def acknowledge(self, alarm) -> None:
        self.send(AcknowledgeAlarm(alarm))

    @rule(threshold=mostly(st.integers(1_000_000, 5_000_000),
                           st.one_of(st.integers(0, 6_000_000), st.sampled_from([999_999, 5_000_001]))))
    def set_low_reservoir_alarm(self, threshold: int) -> None:
        self.send(SetLowReservoirAlarm(threshold))

    @rule(tod=mostly(st.integers(0, TICKS_PER_DAY - 1), st.sampled_from([-1, TICKS_PER_DAY])))
    def set_clock(self, tod: int) -> None:
        self.send(SetClock(tod))

    @precondition(lambda self: self.ctl.state.tick > 0)
    @rule(later=st.integers(0, 2 * TICKS_PER_DAY))
    def reset(self, later: int) -> None:
        """A reset: the pump runs to the moment of the reset, then the firmware rebuilds its state
        from the event log in flash (a copy: the old controller is gone) and runs on."""
        self.now += later
        self.ctl.advance(self.now)
        self.twin.advance(self.now)
        flash = self.ctl.log.to_bytes()
        rebuilt = Controller.rebuild(CONFIG, EventLog.from_bytes(flash), self.now)
        expected = codec.encode(dataclasses.replace(self.ctl.state, records_since_checkpoint=0))
        got = codec.encode(dataclasses.replace(rebuilt.state, records_since_checkpoint=0))
        assert got == expected, "the state rebuilt from the log differs from the running state"
        # The log is kept as it was in flash, and one POWER_ON record marks the reset.
        kept, after = list(EventLog.from_bytes(flash).records()), list(rebuilt.log.records())
        assert after[:-1] == kept[len(kept) - (len(after) - 1):]
        assert (after[-1].code, after[-1].args[0], after[-1].tick) == (LogCode.POWER_ON, 1, self.now)
        self.ctl = rebuilt
        self.twin = Controller.rebuild(CONFIG, EventLog.from_bytes(self.twin.log.to_bytes()), self.now)

    def teardown(self) -> None:
        self.ctl.advance(self.now)
        self.twin.advance(self.now)
        assert self.twin.snapshot() == self.ctl.snapshot(), "advancing in steps changed the pump"

    # ---- invariants ---------------------------------------------------------------------

    @invariant()
    def reservoir_accounting(self) -> None:
        st_ = self.ctl.state
        assert 0 <= st_.delivered_nl <= st_.filled_nl
        assert st_.reservoir_nl >= 0
        assert st_.delivered_nl == st_.steps_total * STROKE
        assert st_.reservoir_nl == self.fill_nl - (st_.delivered_nl - self.delivered_at_fill)

    @invariant()
    def patient_boluses_within_lockout_and_daily_count(self) -> None:
        for i, (t, lockout, max_per_day) in enumerate(self.grants):
            if i:
                prev = self.grants[i - 1][0]
                assert t - prev >= lockout, f"grant at {t} only {t - prev} ticks after {prev}; lockout {lockout}"
            in_window = [g for g, _, _ in self.grants[:i + 1] if g > t - TICKS_PER_DAY]
            assert len(in_window) <= max_per_day, f"{len(in_window)} grants in the 24 h before {t}; max {max_per_day}"

    @invariant()
    def programmed_daily_dose_within_hard_limit(self) -> None:
        st_ = self.ctl.state
        if not st_.drug:
            assert st_.mode == Mode.STOPPED and st_.patient is None and st_.clinician_plan is None
            return
        daily_pg = (basal_day_nl(st_) + worst_bolus_day_nl(st_)) * st_.concentration_ug_per_ml
        assert daily_pg <= LIMITS[st_.drug].max_daily_dose_ng * PG_PER_NG, (
            f"{st_.drug} programmed at {daily_pg} pg/day")
        assert st_.concentration_ug_per_ml <= LIMITS[st_.drug].max_concentration_ug_per_ml

    @invariant()
    def alarms_follow_their_conditions(self) -> None:
        """SR-11, SR-12, SR-24 and end of service, as the settled state must show them."""
        st_ = self.ctl.state
        panel = st_.alarms
        codes = [a.code for a in panel.active]
        assert len(codes) == len(set(codes))
        if st_.drug and st_.reservoir_nl <= st_.low_reservoir_nl:
            assert AlarmCode.RESERVOIR_LOW in codes
        if st_.drug and st_.reservoir_nl - CONFIG.empty_reservoir_nl < STROKE:
            assert AlarmCode.RESERVOIR_EMPTY in codes and self.ctl.status().delivery_stopped
        if AlarmCode.RESERVOIR_EMPTY in codes or st_.eos:
            assert self.ctl.status().delivery_stopped and st_.active_bolus is None
        sounding = panel.sounding()
        if sounding is not None:
            assert not sounding.acknowledged
            assert panel.next_tone_tick is not None and panel.next_tone_tick > st_.tick
        if st_.suspended_bolus is not None:  # SR-6: only a patient bolus suspends a clinician one
            assert st_.suspended_bolus.kind == BolusKind.CLINICIAN
            assert st_.active_bolus is not None and st_.active_bolus.kind == BolusKind.PATIENT
        due = self.ctl.refill_due_tick()
        assert due is None or due >= st_.tick

    @invariant()
    def status_agrees_with_state(self) -> None:
        status = self.ctl.status()
        st_ = self.ctl.state
        assert status.delivered_nl == st_.delivered_nl and status.reservoir_nl == st_.reservoir_nl
        assert status.steps == st_.steps_total
        if status.delivery_stopped:
            assert st_.basal.increment == 0 and st_.bolus.increment == 0
        # SR-7: basal plus bolus within the motor's maximum (a bolus squeezed out by a basal at
        # the maximum still creeps at the smallest increment rather than never finishing).
        assert st_.basal.increment + st_.bolus.increment <= MAX_INCREMENT + 1


ControllerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestControllerStateful = ControllerMachine.TestCase
