"""The model's settings as the hardware's registers, checked against the registers' widths.

The RTL takes its settings as plain register values; this is where firmware_model's settings
become them, with a clear error naming the setting when one does not fit (the hardware would
silently truncate it).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_model.occlusion import DetectorSettings

HISTORY_SAMPLES = 512          # occlusion_detector HISTORY_DEPTH
INT32 = (-(1 << 31), (1 << 31) - 1)

# Rule bits of occlusion_detector.rules_enable.
ENABLE_CUSUM, ENABLE_RISE, ENABLE_DEFICIT, ENABLE_THRESHOLD = 1, 2, 4, 8

# The coil pattern {b_neg, b_pos, a_neg, a_pos} at each electrical position of a bipolar stepper
# driven through a dual H-bridge (the half-step sequence of every stepper driver's datasheet):
# A+, A+B+, B+, A-B+, A-, A-B-, B-, A+B-.
COIL_PATTERNS = (0b0001, 0b0101, 0b0100, 0b0110, 0b0010, 0b1010, 0b1000, 0b1001)


class RegisterError(ValueError):
    """A setting that the hardware's register cannot hold; names the setting, value and range."""


def _check(name: str, value: int, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise RegisterError(f"{name} = {value!r}: the RTL register holds {lo}..{hi}")
    return value


@dataclass(frozen=True)
class OcclusionRegisters:
    """occlusion_detector's inputs for one DetectorSettings."""

    rules_enable: int
    threshold_pa: int
    rise_pa: int
    rise_steps: int
    deficit_pa: int
    deficit_steps: int
    cusum_kappa_pa: int
    cusum_clip_pa: int
    cusum_h_pa: int


def deficit_threshold_pa(settings: DetectorSettings) -> int:
    """The pressure rise that holds back deficit_nl in the outlet's compliance, rounded up: the
    model's volume rule (rise * compliance // 1000 >= deficit_nl) is rise >= this."""
    assert settings.deficit_nl is not None
    return -(-settings.deficit_nl * 1000 // settings.compliance_nl_per_kpa)


def occlusion_registers(settings: DetectorSettings) -> OcclusionRegisters:
    """The register values that make occlusion_detector run `settings` (None: the rule is off)."""
    enable = 0
    threshold = rise = deficit = h = 0
    if settings.cusum_h_pa is not None:
        enable |= ENABLE_CUSUM
        h = _check("cusum_h_pa", settings.cusum_h_pa, 0, (1 << 32) - 1)
    if settings.rise_pa is not None:
        enable |= ENABLE_RISE
        rise = _check("rise_pa", settings.rise_pa, *INT32)
    if settings.deficit_nl is not None:
        enable |= ENABLE_DEFICIT
        deficit = _check("deficit_nl as a pressure rise (Pa)", deficit_threshold_pa(settings), *INT32)
    if settings.threshold_pa is not None:
        enable |= ENABLE_THRESHOLD
        threshold = _check("threshold_pa", settings.threshold_pa, *INT32)
    return OcclusionRegisters(
        rules_enable=enable,
        threshold_pa=threshold,
        rise_pa=rise,
        rise_steps=_check("rise_steps", settings.rise_steps, 1, HISTORY_SAMPLES),
        deficit_pa=deficit,
        deficit_steps=_check("deficit_steps", settings.deficit_steps, 1, HISTORY_SAMPLES),
        cusum_kappa_pa=_check("cusum_kappa_pa", settings.cusum_kappa_pa, 0, 0xFFFF),
        cusum_clip_pa=_check("cusum_clip_pa", settings.cusum_clip_pa, 1, 0xFFFF),
        cusum_h_pa=h,
    )


@dataclass(frozen=True)
class StallRegisters:
    """stall_detector's inputs: the feedback window and PumpConfig.stall_detect_steps."""

    window_ticks: int
    detect_steps: int


def stall_registers(stall_detect_steps: int, window_ticks: int) -> StallRegisters:
    return StallRegisters(window_ticks=_check("window_ticks", window_ticks, 1, 0xFFFF),
                          detect_steps=_check("stall_detect_steps", stall_detect_steps, 1, 0xFF))


def full_step_stride(position: int, half_step: bool) -> int:
    """How far a step moves the electrical position: 1 when half stepping or from an even
    (one-winding) position, else 2, so full stepping is two-phase-on."""
    return 1 if half_step or position % 2 == 0 else 2
