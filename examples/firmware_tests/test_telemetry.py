"""Telemetry over a simulated day: one frame every period, counted without loss, each one the
model's at its tick (the pump fixture checks that as the frames come)."""

from firmware_model.units import TICKS_PER_DAY, TICK_HZ


def test_a_day_of_telemetry_arrives_without_loss(running_pump, rig):
    pump = running_pump
    pump.advance(TICKS_PER_DAY)
    frames = list(pump.telemetry())
    period = round(rig.config.device["telemetry_period_s"] * TICK_HZ)
    assert len(frames) == TICKS_PER_DAY // period
    assert [f.counter for f in frames] == list(range(frames[0].counter, frames[0].counter + len(frames)))
    assert pump.device.stats.telemetry_lost == 0
    assert all(b.steps >= a.steps for a, b in zip(frames, frames[1:]))
    assert frames[-1].reservoir_nl == pump.status().reservoir_nl
