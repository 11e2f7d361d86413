"""The codec: every command and the whole PumpState round-trip, and bad bytes raise StateError."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model import codec
from firmware_model.alarms import AlarmCode
from firmware_model.commands import (COMMAND_IDS, COMMAND_TYPES, AcknowledgeAlarm, ClinicianBolus,
                                     ConfigurePatientBolus, GetStatus, PatientBolusRequest, PrimingBolus,
                                     ProgramContinuous, ProgramFlex, ProgramMinimumRate, ProgramStopped,
                                     Refill, SetClock, SetLowReservoirAlarm, StatusReport)
from firmware_model.controller import Controller, PumpConfig, PumpState
from firmware_model.errors import StateError
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

ALL_COMMANDS = sorted(COMMAND_IDS, key=COMMAND_IDS.get) + [GetStatus]


def test_command_ids_are_stable_and_cover_every_command() -> None:
    """The ids are in the log: never renumbered, only appended (commands.py); each maps back."""
    first = {
        ProgramStopped: 1, ProgramContinuous: 2, ProgramFlex: 3, ProgramMinimumRate: 4,
        ClinicianBolus: 5, PrimingBolus: 6, ConfigurePatientBolus: 7, PatientBolusRequest: 8,
        Refill: 9, SetLowReservoirAlarm: 10, AcknowledgeAlarm: 11, SetClock: 12,
    }
    assert {t: COMMAND_IDS[t] for t in first} == first
    assert sorted(COMMAND_IDS.values()) == list(range(1, len(COMMAND_IDS) + 1))
    assert all(COMMAND_TYPES[i] is t for t, i in COMMAND_IDS.items())
    assert GetStatus not in COMMAND_IDS  # it changes nothing, so it is not logged


@pytest.mark.parametrize("cls", ALL_COMMANDS, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_every_command_round_trips(cls, data) -> None:
    cmd = data.draw(st.from_type(cls))
    raw = codec.encode(cmd)
    assert codec.encode(cmd) == raw  # deterministic
    back = codec.decode(raw, cls)
    assert back == cmd and type(back) is cls
    # The framing the event log uses: id byte, then the encoding.
    if cls in COMMAND_IDS:
        logged = bytes([COMMAND_IDS[cls]]) + raw
        assert codec.decode(logged[1:], COMMAND_TYPES[logged[0]]) == cmd


@pytest.mark.parametrize("cmd", [
    ProgramStopped(), ProgramMinimumRate(), PatientBolusRequest(), GetStatus(),
    ProgramContinuous(-1), ProgramContinuous(2**70),
    ProgramFlex(()), ProgramFlex(((0, 100_000), (TICKS_PER_HOUR * 6, 0), (TICKS_PER_DAY - 1, 24_000_000))),
    ClinicianBolus(100_000, TICKS_PER_HOUR, 6 * TICKS_PER_HOUR, 0),
    PrimingBolus(370_000, 30 * TICKS_PER_MINUTE),
    ConfigurePatientBolus(10_000, TICKS_PER_MINUTE, 3 * TICKS_PER_HOUR, 4),
    Refill(1_234_567, 20_000_000, "ziconotide", 25, None, True),
    Refill(0, 40_000_000, "morphine \u00b5\u00e9", 20_000, 39_000_000, False),
    SetLowReservoirAlarm(4_000_000), AcknowledgeAlarm(AlarmCode.REFILL_DISCREPANCY), SetClock(TICKS_PER_DAY - 1),
], ids=lambda c: type(c).__name__)
def test_command_examples_round_trip_and_truncations_raise(cmd) -> None:
    raw = codec.encode(cmd)
    assert codec.decode(raw, type(cmd)) == cmd
    for cut in range(len(raw)):
        with pytest.raises(StateError):
            codec.decode(raw[:cut], type(cmd))
    with pytest.raises(StateError, match="left over"):
        codec.decode(raw + b"\x00", type(cmd))


def _states_from_runs() -> list[PumpState]:
    """PumpStates with every optional part filled: boluses, bridge, flex, alarms, path segments."""
    states = []
    ctl = Controller(PumpConfig())
    ctl.handle(Refill(0, 20_000_000, "morphine", 10_000), 0)
    ctl.handle(PrimingBolus(370_000, TICKS_PER_HOUR), 0)
    ctl.handle(ProgramFlex(((0, 200_000), (8 * TICKS_PER_HOUR, 400_000))), 0)
    ctl.handle(ConfigurePatientBolus(10_000, TICKS_PER_MINUTE, TICKS_PER_HOUR, 4), 0)
    ctl.handle(ClinicianBolus(50_000, TICKS_PER_HOUR, 12 * TICKS_PER_HOUR, 3), 2 * TICKS_PER_HOUR)
    ctl.handle(PatientBolusRequest(), 2 * TICKS_PER_HOUR + 5)
    states.append(copy.deepcopy(ctl.state))
    assert ctl.state.active_bolus is not None and ctl.state.suspended_bolus is not None
    ctl.advance(20 * TICKS_PER_DAY)
    ctl.handle(Refill(ctl.status().reservoir_nl - 3_000_000, 20_000_000, "morphine", 5_000, None, True),
               20 * TICKS_PER_DAY)
    states.append(copy.deepcopy(ctl.state))
    assert ctl.state.bridge is not None and len(ctl.state.path.segments) >= 1
    ctl.advance(80 * TICKS_PER_DAY)
    states.append(copy.deepcopy(ctl.state))
    assert ctl.state.alarms.active
    return states


@pytest.mark.parametrize("index", range(3))
def test_pump_states_from_runs_round_trip(index: int) -> None:
    state = _states_from_runs()[index]
    raw = codec.encode(state)
    back = codec.decode(raw, PumpState)
    assert back == state
    assert codec.encode(back) == raw
    for cut in range(0, len(raw), max(1, len(raw) // 97)):
        with pytest.raises(StateError):
            codec.decode(raw[:cut], PumpState)


@settings(max_examples=100, deadline=None)
@given(state=st.from_type(PumpState))
def test_any_pump_state_round_trips(state: PumpState) -> None:
    raw = codec.encode(state)
    assert codec.decode(raw, PumpState) == state
    with pytest.raises(StateError):
        codec.decode(raw[:-1], PumpState)


@settings(max_examples=100)
@given(report=st.from_type(StatusReport))
def test_status_report_round_trips(report: StatusReport) -> None:
    assert codec.decode(codec.encode(report), StatusReport) == report


@given(st.integers(-2**200, 2**200))
def test_integers_are_exact_zigzag_varints(value: int) -> None:
    raw = codec.encode(value, int)
    assert codec.decode(raw, int) == value
    assert raw[-1] < 0x80 and all(b >= 0x80 for b in raw[:-1])


def test_small_integers_are_small() -> None:
    assert codec.encode(0, int) == b"\x00"
    assert codec.encode(-1, int) == b"\x01"
    assert codec.encode(1, int) == b"\x02"
    assert codec.encode(63, int) == b"\x7e"
    assert codec.encode(64, int) == b"\x80\x01"


def test_bad_bytes_raise_state_error() -> None:
    with pytest.raises(StateError, match="AlarmCode has no member 99"):
        codec.decode(bytes([99]), AcknowledgeAlarm)
    bad_utf8 = codec.encode(Refill(0, 0, "x", 1)).replace(b"\x01x", b"\x01\xff")
    with pytest.raises(StateError):
        codec.decode(bad_utf8, Refill)
    with pytest.raises(StateError):
        codec.decode(b"\x80\x80", int)  # a varint that never ends
    with pytest.raises(StateError):
        codec.decode(b"", PumpState)


def test_unsupported_types_are_refused() -> None:
    @dataclasses.dataclass
    class Floaty:
        x: float

    with pytest.raises(TypeError, match="cannot encode"):
        codec.encode(Floaty(1.5))


@given(data=st.binary(max_size=300), padding=st.binary(max_size=20))
def test_length_prefix_survives_padding(data: bytes, padding: bytes) -> None:
    assert codec.strip_length_prefix(codec.length_prefixed(data) + padding) == data
