"""cocotb bench: the occlusion detector, sample by sample against firmware_model.occlusion.

For every pressure sample the RTL's verdict (whether a rule fired, which one first) and its
CUSUM must be the model's (`scan_per_step`, the firmware's per-sample oracle, run one sample at a
time), and the latched alarm must rise at the model's first alarming sample. Streams: the plant's
outlet pressure with a partial or total occlusion under the default settings (all four rules),
and random walks with spikes, posture steps, ramps and extreme values under random settings
(each rule sometimes off). Settings (environment): ITHIL_RTL_OCCLUSION_STREAMS (default 16),
ITHIL_RTL_OCCLUSION_SAMPLES (per random stream, default 600).
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from firmware_model.occlusion import DetectorSettings, Rule, scan_per_step
from firmware_model.plant import Occlusion, Plant
from firmware_model.step_scheduler import StepScheduler, increment_for_rate

from rtl_harness import Toggle, between_edges, cycles, reset_section, start_section
from rtl_registers import HISTORY_SAMPLES, occlusion_registers

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def plant_stream(seed: int, samples: int) -> list[int]:
    """The sensor's samples, one per stroke, of a pump whose catheter occludes halfway through."""
    rng = random.Random(seed)
    rate = rng.choice([1_000_000, 4_000_000, 12_000_000, 24_000_000])
    sched = StepScheduler(increment=increment_for_rate(rate, 250), phase=rng.randrange(1 << 32))
    ticks = sched.step_ticks(sched.tick_of_step(samples))
    start = int(ticks[samples // 2]) - 1
    plant = Plant(seed=seed, occlusions=(Occlusion(start, factor=rng.choice([0, 4, 16])),))
    before, after = ticks[ticks <= start], ticks[ticks > start]
    first = plant.strokes(before)
    plant.commit(first)
    plant.settle(start)
    return [int(p) for p in np.concatenate([first.samples_pa, plant.strokes(after).samples_pa])]


def random_walk(rng: random.Random, samples: int) -> list[int]:
    """Noise with posture steps, single-sample spikes, occlusion-like ramps and, now and then,
    jumps across the whole 32-bit range (the comparators' widths)."""
    p = rng.randint(0, 20_000)
    out = []
    ramp = 0
    for _ in range(samples):
        r = rng.random()
        if r < 0.02:
            ramp = rng.randint(-50, 400) if ramp == 0 else 0
        p += ramp + rng.randint(-80, 80)
        value = p
        if r > 0.99:
            value = rng.choice([INT32_MIN, INT32_MAX, rng.randint(INT32_MIN, INT32_MAX)])
        elif r > 0.97:
            value += rng.choice([-1, 1]) * rng.randint(1_000, 8_000)
        elif r > 0.95:
            p += rng.choice([-3_000, -1_500, 1_500, 3_000])
        p = max(INT32_MIN, min(INT32_MAX, p))
        out.append(max(INT32_MIN, min(INT32_MAX, value)))
    return out


def quantised_walk(rng: random.Random, samples: int, quantum_pa: int) -> list[int]:
    """A walk on a grid of quantum_pa, so differences and levels land exactly on grid settings:
    every comparator meets its equality case."""
    p = rng.randint(0, 40) * quantum_pa
    out = []
    for _ in range(samples):
        p += rng.choice([-2, -1, -1, 0, 0, 1, 1, 2]) * quantum_pa
        out.append(p)
    return out


def single_rule_settings(rng: random.Random, rule: Rule, samples: list[int], off_grid: bool = False
                         ) -> DetectorSettings:
    """One rule on, the others off (None), its limit taken from the stream itself, so the rule
    meets its equality case (where a >= written as > differs) unmasked by the others. off_grid:
    the deficit one nanolitre above that, where the model's floor division must not fire."""
    off = DetectorSettings(threshold_pa=None, rise_pa=None, cusum_h_pa=None, deficit_nl=None)
    window = rng.choice([1, 2, 3, rng.randint(1, 16), rng.randint(1, HISTORY_SAMPLES)])
    i = rng.randrange(window, len(samples))
    if rule is Rule.RISE:
        return dataclasses.replace(off, rise_pa=samples[i] - samples[i - window], rise_steps=window)
    if rule is Rule.VOLUME_DEFICIT:
        compliance = rng.choice([1_000, 2_000, 4_000])
        deficit_nl = (samples[i] - samples[i - window]) * compliance // 1_000 + off_grid
        return dataclasses.replace(off, deficit_nl=deficit_nl, deficit_steps=window, compliance_nl_per_kpa=compliance)
    if rule is Rule.THRESHOLD:
        return dataclasses.replace(off, threshold_pa=samples[i])
    cusum_only = dataclasses.replace(off, cusum_kappa_pa=rng.randint(0, 100), cusum_clip_pa=rng.randint(1, 400),
                                     cusum_h_pa=(1 << 32) - 1)
    trajectory, history, cusum = [], [], 0
    for p in samples:  # S after each sample, by the model
        _, _, history, cusum = scan_per_step(cusum_only, history, cusum, [p])
        trajectory.append(cusum)
    return dataclasses.replace(cusum_only, cusum_h_pa=trajectory[i])


def random_settings(rng: random.Random, quantum_pa: int = 1) -> DetectorSettings:
    """Settings over their whole range, each rule off now and then; with a quantum, the
    thresholds sit on the grid of a quantised walk."""
    def maybe(value: int) -> int | None:
        return None if rng.random() < 0.25 else value

    def grid(lo: int, hi: int) -> int:
        return rng.randint(lo // quantum_pa, hi // quantum_pa) * quantum_pa

    compliance = rng.randint(200, 8_000)
    deficit_nl = grid(1_000, 40_000)
    if quantum_pa > 1:  # a deficit that is a whole number of grid steps of pressure
        compliance = rng.choice([500, 1_000, 2_000, 4_000])
        deficit_nl = grid(1_000, 40_000) * compliance // 1_000
    return DetectorSettings(
        threshold_pa=maybe(grid(1_000, 60_000)),
        rise_pa=maybe(rng.choice([grid(-3_000, 0), grid(0, 12_000), grid(0, 12_000)])),
        rise_steps=rng.choice([1, 2, rng.randint(1, HISTORY_SAMPLES), HISTORY_SAMPLES]),
        cusum_kappa_pa=grid(0, 300),
        cusum_clip_pa=max(1, grid(1, 3_000)),
        cusum_h_pa=maybe(rng.choice([0, grid(0, 5_000), grid(0, 100_000)])),
        deficit_nl=maybe(deficit_nl),
        deficit_steps=rng.choice([1, rng.randint(1, HISTORY_SAMPLES), 400, HISTORY_SAMPLES]),
        compliance_nl_per_kpa=compliance,
    )


def at_boundary(settings: DetectorSettings, history: list[int], p: int) -> int:
    """How many of the window and threshold comparisons sit exactly on their limit for sample p
    (the case a >= written as > would get wrong)."""
    hits = settings.threshold_pa is not None and p == settings.threshold_pa
    if settings.rise_pa is not None and len(history) >= settings.rise_steps:
        hits += p - history[-settings.rise_steps] == settings.rise_pa
    if settings.deficit_nl is not None and len(history) >= settings.deficit_steps:
        hits += p - history[-settings.deficit_steps] == -(-settings.deficit_nl * 1000 // settings.compliance_nl_per_kpa)
    return int(hits)


class OcclusionBench:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.sample = Toggle(dut.occ_sample_toggle)
        self.ack = Toggle(dut.occ_ack_toggle)
        self.boundaries = 0  # samples that met a comparator's equality case
        dut.occ_sample_pa.value = 0
        self.configure(DetectorSettings())

    def configure(self, settings: DetectorSettings) -> None:
        regs = occlusion_registers(settings)
        d = self.dut
        d.occ_rules_enable.value = regs.rules_enable
        d.occ_threshold_pa.value = regs.threshold_pa
        d.occ_rise_pa.value = regs.rise_pa
        d.occ_rise_steps.value = regs.rise_steps
        d.occ_deficit_pa.value = regs.deficit_pa
        d.occ_deficit_steps.value = regs.deficit_steps
        d.occ_cusum_kappa_pa.value = regs.cusum_kappa_pa
        d.occ_cusum_clip_pa.value = regs.cusum_clip_pa
        d.occ_cusum_h_pa.value = regs.cusum_h_pa

    async def judge(self, pressure_pa: int) -> tuple[int, int, int, int, int]:
        """Offer one sample; return (hit, rule, cusum, occluded, latched rule) as the RTL says."""
        d = self.dut
        d.occ_sample_pa.value = pressure_pa
        self.sample.pulse()
        await RisingEdge(d.occ_result)
        await ReadOnly()
        out = (int(d.occ_hit.value), int(d.occ_hit_rule.value), int(d.occ_cusum_pa.value),
               int(d.occ_occluded.value), int(d.occ_occlusion_rule.value))
        await between_edges(d, "occ")
        return out

    async def check_stream(self, settings: DetectorSettings, samples: list[int], where: str) -> int:
        """Run a stream on a freshly reset detector, comparing every sample; return the alarms.
        The firmware acknowledges a latched alarm now and then (its own generator, so a stream
        is the same whatever the acknowledgements)."""
        acks = random.Random(len(samples) * 7919 + sum(samples[:8]))
        self.configure(settings)
        await reset_section(self.dut, "occ")
        history: list[int] = []
        cusum = 0
        latched = Rule.NONE
        alarms = 0
        for i, p in enumerate(samples):
            self.boundaries += at_boundary(settings, history, p)
            index, rule, history, cusum = scan_per_step(settings, history, cusum, [p])
            self.boundaries += settings.cusum_h_pa is not None and cusum == settings.cusum_h_pa
            want_rule = rule if index == 0 else Rule.NONE
            if want_rule and latched == Rule.NONE:
                latched = want_rule
            got = await self.judge(p)
            want = (int(want_rule != Rule.NONE), int(want_rule), cusum, int(latched != Rule.NONE), int(latched))
            assert got == want, (f"{where}, sample {i} = {p} Pa (previous {samples[max(0, i - 3):i]}): RTL "
                                 f"(hit, rule, cusum, occluded, latched rule) = {got}, model {want}; {settings}")
            alarms += want_rule != Rule.NONE
            if latched and acks.random() < 0.05:  # the firmware acknowledges; the next alarm latches anew
                self.ack.pulse()
                latched = Rule.NONE
        return alarms


@cocotb.test()
async def plant_occlusions_flagged_at_the_models_sample(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED)
    bench = OcclusionBench(dut)
    await start_section(dut, "occ")
    checked = 0
    while checked < 2:
        seed = rng.randrange(1 << 30)
        samples = plant_stream(seed, 1_200)
        if scan_per_step(DetectorSettings(), [], 0, samples)[0] < 0:
            continue  # a slow partial occlusion the model does not catch within these strokes
        alarms = await bench.check_stream(DetectorSettings(), samples, f"plant seed {seed}")
        assert alarms > 0, f"plant seed {seed}: the model alarms; the comparison saw no alarm"
        checked += 1


@cocotb.test()
async def random_streams_and_settings_match_the_model(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED + 1)
    bench = OcclusionBench(dut)
    await start_section(dut, "occ")
    streams = int(os.environ.get("ITHIL_RTL_OCCLUSION_STREAMS", "16"))
    length = int(os.environ.get("ITHIL_RTL_OCCLUSION_SAMPLES", "600"))
    total_alarms = 0
    single_rules = [Rule.CUSUM, Rule.RISE, Rule.VOLUME_DEFICIT, Rule.THRESHOLD]
    met = {rule: 0 for rule in single_rules}
    for n in range(streams):
        quantum = rng.choice([50, 100, 250])
        if n % 4 == 0:
            settings, samples = random_settings(rng), random_walk(rng, length)
        elif n % 4 == 2:
            settings, samples = random_settings(rng, quantum), quantised_walk(rng, length, quantum)
        else:
            rule = single_rules[(n // 2) % len(single_rules)]
            samples = quantised_walk(rng, length, quantum)
            settings = single_rule_settings(rng, rule, samples, off_grid=(n // 8) % 2 == 1)
        before = bench.boundaries
        total_alarms += await bench.check_stream(settings, samples, f"stream {n}")
        if n % 2:
            met[rule] += bench.boundaries - before
    assert total_alarms > 0, "no stream raised an alarm: the comparison tested only silence"
    assert all(met.values()), f"a rule never met its limit exactly (samples at the limit: {met}); raise the streams"


@cocotb.test()
async def a_sample_offered_while_busy_is_dropped_and_flagged(dut: Any) -> None:
    bench = OcclusionBench(dut)
    settings = DetectorSettings(threshold_pa=1_000, rise_pa=None, cusum_h_pa=None, deficit_nl=None)
    bench.configure(settings)
    await start_section(dut, "occ")
    dut.occ_sample_pa.value = 500
    bench.sample.pulse()
    await cycles(1)
    dut.occ_sample_pa.value = 5_000  # would alarm, but the detector is busy with the first sample
    bench.sample.pulse()
    await cycles(6)
    assert (int(dut.occ_overrun.value), int(dut.occ_occluded.value)) == (1, 0), "the second sample is dropped"
    bench.ack.pulse()
    await cycles(1)
    assert int(dut.occ_overrun.value) == 0, "ack clears the overrun"
    assert (await bench.judge(1_000))[:2] == (1, int(Rule.THRESHOLD)), "the next sample is judged"


@cocotb.test()
async def an_alarm_on_the_ack_cycle_latches_anew(dut: Any) -> None:
    """The firmware acknowledges on the very cycle a new alarm is decided: the new one latches."""
    bench = OcclusionBench(dut)
    bench.configure(DetectorSettings(threshold_pa=1_000, rise_pa=None, cusum_h_pa=None, deficit_nl=None))
    await start_section(dut, "occ")
    assert (await bench.judge(2_000))[3:] == (1, int(Rule.THRESHOLD))
    dut.occ_sample_pa.value = 3_000
    bench.sample.pulse()
    await cycles(3)      # strobe, two reads: the decision is on the next edge, with the ack
    bench.ack.pulse()
    await cycles(2)
    assert (int(dut.occ_occluded.value), int(dut.occ_occlusion_rule.value)) == (1, int(Rule.THRESHOLD)), \
        "the alarm decided on the ack's cycle is latched"
    bench.ack.pulse()
    await cycles(2)
    assert int(dut.occ_occluded.value) == 0, "a plain ack clears the alarm"
