"""The benches' own Python, without a simulator: the expectations they judge the RTL by must be
the model's, and the register conversions must refuse what the hardware cannot hold."""

from __future__ import annotations

import random

import numpy as np
import pytest

from firmware_model.occlusion import DetectorSettings, scan_per_step
from firmware_model.step_scheduler import PerTickAccumulator
from protocol.errors import BadFrame
from protocol.framing import MAX_ENCODED_FRAME, frame_bytes

from frames import Verdict, judge_stream, random_frame, signer_for_tests
from motor_plan import Load, expected_steps, random_plan
from rtl_registers import (
    COIL_PATTERNS,
    ENABLE_CUSUM,
    ENABLE_DEFICIT,
    ENABLE_RISE,
    ENABLE_THRESHOLD,
    RegisterError,
    deficit_threshold_pa,
    occlusion_registers,
    stall_registers,
)
from stall_oracle import model_stall_step


def per_tick_steps(plan: list[Load]) -> list[int]:
    """The oracle's way: PerTickAccumulator over each span between loads."""
    acc = PerTickAccumulator(0, 0, 0)
    ticks: list[int] = []
    for load in plan:
        ticks += acc.run(load.tick)
        if load.increment is not None:
            acc.increment = load.increment
        if load.phase is not None:
            acc.phase = load.phase
    return ticks


@pytest.mark.parametrize("seed", range(5))
def test_expected_steps_are_the_per_tick_oracles(seed: int) -> None:
    plan = random_plan(random.Random(seed), 60_000)
    assert np.array_equal(expected_steps(plan).ticks, per_tick_steps(plan))


def test_a_phase_load_keeps_the_step_of_its_tick() -> None:
    """Loading a phase at tick t replaces the phase after t; tick t still adds and may step."""
    plan = [Load(2, 1 << 31, (1 << 31) + 5), Load(3, None, 7), Load(10, None, None)]
    assert expected_steps(plan).ticks.tolist() == per_tick_steps(plan) == [3, 5, 7, 9]


def test_coils_follow_the_stepper_sequence() -> None:
    step_every_tick = (1 << 32) - 1  # from phase 2^32 - 1: a step on every tick
    plan = [Load(2, step_every_tick, step_every_tick, direction=True, half_step=True),
            Load(7, None, None, direction=True, half_step=False),
            Load(9, None, None, direction=False, half_step=False),
            Load(11, None, None, direction=False, half_step=False, enable=False),
            Load(12, None, None, direction=True, half_step=True)]
    exp = expected_steps(plan)
    positions = [COIL_PATTERNS.index(c) if c else None for c in exp.coils.tolist()]
    # half: 1 2 3 4; full from 4 (even) to the next two-winding state: 5 7; reverse: 5 3;
    # off: no coils, held at 3; half on again: 4
    assert exp.ticks.tolist() == list(range(3, 13))
    assert positions == [1, 2, 3, 4, 5, 7, 5, 3, None, 4]
    assert all(bin(p & 0b0011).count("1") <= 1 and bin(p & 0b1100).count("1") <= 1 for p in COIL_PATTERNS), \
        "a winding is never driven both ways"


def test_occlusion_registers_run_the_models_rules() -> None:
    regs = occlusion_registers(DetectorSettings())
    assert regs.rules_enable == ENABLE_CUSUM | ENABLE_RISE | ENABLE_DEFICIT | ENABLE_THRESHOLD
    assert (regs.deficit_pa, regs.deficit_steps, regs.rise_steps) == (5_000, 400, 64)
    off = occlusion_registers(DetectorSettings(threshold_pa=None, rise_pa=None, cusum_h_pa=None, deficit_nl=None))
    assert off.rules_enable == 0


@pytest.mark.parametrize("deficit_nl, compliance", [(10_000, 2_000), (10_001, 2_000), (7, 3_000), (-7, 3_000)])
def test_deficit_threshold_is_the_models_volume_rule(deficit_nl: int, compliance: int) -> None:
    """rise >= deficit_threshold_pa exactly when the model's volume rule fires, at the boundary."""
    settings = DetectorSettings(threshold_pa=None, rise_pa=None, cusum_h_pa=None, deficit_nl=deficit_nl,
                                deficit_steps=1, compliance_nl_per_kpa=compliance)
    limit = deficit_threshold_pa(settings)
    for rise in range(limit - 3, limit + 4):
        fired = scan_per_step(settings, [0], 0, [rise])[0] == 0
        assert fired == (rise >= limit), (rise, limit)


@pytest.mark.parametrize("change, name", [
    (dict(rise_steps=513), "rise_steps"),
    (dict(deficit_steps=600), "deficit_steps"),
    (dict(cusum_clip_pa=70_000), "cusum_clip_pa"),
    (dict(cusum_h_pa=1 << 32), "cusum_h_pa"),
    (dict(threshold_pa=1 << 31), "threshold_pa"),
])
def test_a_setting_the_registers_cannot_hold_is_refused(change: dict, name: str) -> None:
    settings = DetectorSettings(**change)
    with pytest.raises(RegisterError, match=name):
        occlusion_registers(settings)


def test_stall_registers_check_their_range() -> None:
    assert stall_registers(3, 16).detect_steps == 3
    with pytest.raises(RegisterError, match="window_ticks"):
        stall_registers(3, 0)
    with pytest.raises(RegisterError, match="stall_detect_steps"):
        stall_registers(256, 16)


def test_the_stall_oracle_is_the_controllers_rule() -> None:
    assert model_stall_step(1_000_000, [False, True, True, False, True, True, True, True], 3) == 7
    assert model_stall_step(1_000_000, [True, True], 3) is None
    assert model_stall_step(24_000_000, [True], 1) == 1


def test_judged_frames_follow_the_protocols_decoder() -> None:
    """OK, cut short (COBS), too long (LENGTH, judged at the first byte too many), an unknown id
    (the CRC is right: the hardware accepts it, the firmware refuses it), bad CRC."""
    good = random_frame(random.Random(3), signer_for_tests())
    unknown = frame_bytes(0xEE, b"\x01\x02", 5)
    bad_crc = bytearray(good)
    bad_crc[3] ^= 0x10 if bad_crc[3] ^ 0x10 else 0x20
    overlong = bytes([1] * (MAX_ENCODED_FRAME + 5)) + b"\x00"
    stream = b"\x00" + good + b"\x00" + good[:-3] + b"\x00" + overlong + unknown + bytes(bad_crc)
    judged, decoder = judge_stream(stream)
    assert [j.verdict for j in judged] == [Verdict.OK, Verdict.COBS, Verdict.LENGTH, Verdict.OK, Verdict.CRC]
    assert judged[0].at_byte == 1 + len(good) and judged[0].inner is not None
    overlong_start = 1 + len(good) + 1 + len(good) - 2
    assert judged[2].at_byte == overlong_start + MAX_ENCODED_FRAME + 1
    assert decoder.counts[BadFrame.UNKNOWN_ID] == 1


def test_coverage_points_are_read_merged_and_summarised(tmp_path) -> None:
    from rtl_coverage import merge, parse_span, summarise

    source = tmp_path / "a.v"
    source.write_text("module a;\n  x\n  y\n  z\nendmodule\n")

    def point(line: str, span: str, kind: str, count: int) -> str:
        fields = {"f": str(source), "l": line, "n": "1", "t": kind, "page": f"v_{kind}/a", "o": "block",
                  "S": span, "h": "tb.a"}
        return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in fields.items()) + f"' {count}\n"

    (tmp_path / "one.dat").write_text("# SystemC::Coverage-3\n" + point("2", "2-3", "line", 0)
                                      + point("4", "4", "branch", 0))
    (tmp_path / "two.dat").write_text("# SystemC::Coverage-3\n" + point("2", "2-3", "line", 5)
                                      + point("4", "4", "branch", 0))
    assert parse_span("30-31,35") == (30, 31, 35)
    summary = summarise(merge([tmp_path / "one.dat", tmp_path / "two.dat"]), [source])["a.v"]
    assert summary == {"points": 2, "points_hit": 1, "lines": 3, "lines_covered": 2, "uncovered": [4]}
