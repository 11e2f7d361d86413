"""The reference pump's occlusion detector: four rules over the pressure sampled at each step.

Rules (domain.md §5; each can be switched off with None):
- threshold: the absolute pressure passes a limit (the conventional rule, slow at low rates);
- rise: the pressure rose by more than `rise_pa` over the last `rise_steps` steps;
- CUSUM: a one-sided CUSUM of the step-to-step pressure increments, each clipped to +-clip so a
  posture change counts once and not for ever: S_k = max(0, S_{k-1} + min(d_k, clip) - kappa),
  alarm when S_k > h (Page's test on the residual against an open catheter, whose increments
  average zero);
- volume deficit: the volume the outlet holds back, estimated from the pressure rise over the
  last `deficit_steps` steps and the known compliance, reaches `deficit_nl` (the DEKA rule of
  10 µL, §5 [V S83], maps onto a step-counting pump).

The scan is vectorised over steps and over pumps (seeds): the CUSUM is a Lindley recursion,
S_k = X_k - min(-S_0, min_j<=k X_j) over the cumulative sum X, so one implementation serves the
controller (one pump, one span at a time) and the sweep (a thousand pumps, a week each). Integer
throughout. Defaults are where `ithil model occlusion-sweep` shows them best (docs/occlusion.md).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .errors import LimitExceeded


class Rule(enum.IntEnum):
    NONE = 0
    THRESHOLD = 1
    RISE = 2
    CUSUM = 3
    VOLUME_DEFICIT = 4


@dataclass(frozen=True)
class DetectorSettings:
    """Detector settings; compliance_nl_per_kpa is the firmware's calibration of the outlet."""

    threshold_pa: int | None = 40_000
    rise_pa: int | None = 5_000
    rise_steps: int = 64
    cusum_kappa_pa: int = 40
    cusum_clip_pa: int = 250
    cusum_h_pa: int | None = 1_000
    deficit_nl: int | None = 10_000
    deficit_steps: int = 400
    compliance_nl_per_kpa: int = 2_000

    def __post_init__(self) -> None:
        if self.rise_steps < 1 or self.deficit_steps < 1:
            raise LimitExceeded("detector.rise_steps/deficit_steps", (self.rise_steps, self.deficit_steps), ">= 1")
        if self.cusum_clip_pa <= 0 or self.cusum_kappa_pa < 0 or self.compliance_nl_per_kpa <= 0:
            raise LimitExceeded("detector.cusum_clip_pa/kappa/compliance",
                                (self.cusum_clip_pa, self.cusum_kappa_pa, self.compliance_nl_per_kpa),
                                "clip > 0, kappa >= 0, compliance > 0")

    @property
    def history_steps(self) -> int:
        """How many past samples the window rules need."""
        return max(self.rise_steps, self.deficit_steps)


@dataclass(slots=True)
class DetectorState:
    """What the detector remembers between spans, for one pump (no samples yet: empty history)."""

    history_pa: list[int] = field(default_factory=list)
    cusum_pa: int = 0


def _first_hit(hit: np.ndarray) -> np.ndarray:
    """Per column, the index of the first True (-1: none)."""
    idx = hit.argmax(axis=0)
    return np.where(hit[idx, np.arange(hit.shape[1])], idx, -1)


def scan(settings: DetectorSettings, history: np.ndarray, cusum: np.ndarray,
         samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the rules over samples of shape (steps, pumps).

    history: the last samples before these, shape (H, pumps), oldest first (H may be 0 at the
    start); cusum: S before these, shape (pumps,). Returns, per pump, the index of the first
    alarming sample (-1: none) and its rule, and the history and CUSUM after all the samples
    (a caller that stops at an alarm re-scans the prefix it keeps)."""
    n, pumps = samples.shape
    first = np.full(pumps, -1, dtype=np.int64)
    rule = np.zeros(pumps, dtype=np.int64)
    if n == 0:
        return first, rule, history, cusum
    h = len(history)
    full = np.concatenate([history, samples]) if h else samples

    def mark(idx: np.ndarray, which: Rule) -> None:
        better = (idx >= 0) & ((first < 0) | (idx < first))
        first[better] = idx[better]
        rule[better] = which

    # Rules in order of priority when two fire on the same sample.
    if settings.cusum_h_pa is not None:
        prev = full[h - 1:h + n - 1] if h else np.concatenate([samples[:1], samples[:-1]])
        x = np.minimum(samples - prev, settings.cusum_clip_pa)
        x -= settings.cusum_kappa_pa
        cum = np.cumsum(x, axis=0)
        floor = np.minimum.accumulate(cum, axis=0)
        np.minimum(floor, -cusum[None, :], out=floor)
        cum -= floor
        mark(_first_hit(cum > settings.cusum_h_pa), Rule.CUSUM)
        cusum = cum[-1].copy()
    else:
        cusum = np.zeros(pumps, dtype=np.int64)
    deficit_pa = None if settings.deficit_nl is None else -(-settings.deficit_nl * 1000 // settings.compliance_nl_per_kpa)
    for steps, limit_pa, which in ((settings.rise_steps, settings.rise_pa, Rule.RISE),
                                   (settings.deficit_steps, deficit_pa, Rule.VOLUME_DEFICIT)):
        if limit_pa is None:
            continue
        skip = max(0, steps - h)  # samples with no sample `steps` before them yet
        if skip >= n:
            continue
        rise = samples[skip:] - full[h + skip - steps:h + n - steps]
        idx = _first_hit(rise >= limit_pa)
        mark(np.where(idx >= 0, idx + skip, -1), which)
    if settings.threshold_pa is not None:
        mark(_first_hit(samples >= settings.threshold_pa), Rule.THRESHOLD)
    return first, rule, full[-settings.history_steps:], cusum


SHORT_SPAN = 64   # spans of at most this many samples are scanned sample by sample (numpy costs more)


def scan_one(settings: DetectorSettings, state: DetectorState, samples: list[int] | np.ndarray
             ) -> tuple[int, Rule, DetectorState]:
    """The controller's use: one pump. Returns the first alarming index (-1 none), its rule, and
    the state after the samples up to and including that index (or all of them). A short span
    (a lockstep host advancing minute by minute makes many) goes through the per-sample rules,
    which the tests prove equal to the vectorised scan."""
    if len(samples) <= SHORT_SPAN:
        values = [int(v) for v in samples]
        index, rule, hist, cusum = scan_per_step(settings, state.history_pa, state.cusum_pa, values)
        if 0 <= index < len(values) - 1:  # keep the state as it was at the alarm
            _, _, hist, cusum = scan_per_step(settings, state.history_pa, state.cusum_pa, values[:index + 1])
        return index, rule, DetectorState(hist, cusum)
    return scan_one_vectorised(settings, state, samples)


def scan_one_vectorised(settings: DetectorSettings, state: DetectorState, samples: list[int] | np.ndarray
                        ) -> tuple[int, Rule, DetectorState]:
    """scan_one through the vectorised scan, whatever the span's length."""
    history = np.asarray(state.history_pa, dtype=np.int64).reshape(-1, 1)
    col = np.asarray(samples, dtype=np.int64).reshape(-1, 1)
    first, rule, hist, cusum = scan(settings, history, np.array([state.cusum_pa], dtype=np.int64), col)
    index = int(first[0])
    if index >= 0 and index < len(col) - 1:  # keep the state as it was at the alarm
        _, _, hist, cusum = scan(settings, history, np.array([state.cusum_pa], dtype=np.int64), col[:index + 1])
    return index, Rule(int(rule[0])), DetectorState([int(v) for v in hist[:, 0]], int(cusum[0]))


def scan_per_step(settings: DetectorSettings, history: list[int], cusum: int,
                  samples: list[int]) -> tuple[int, Rule, list[int], int]:
    """The oracle: the same rules sample by sample, as a firmware's sensor interrupt runs them.
    Returns the first alarming index (-1 none), its rule, and the history and CUSUM after all."""
    hist: deque[int] = deque(history[-settings.history_steps:], maxlen=settings.history_steps)
    first, first_rule = -1, Rule.NONE
    for i, p in enumerate(samples):
        fired = []
        if settings.cusum_h_pa is not None:
            d = p - hist[-1] if hist else 0
            cusum = max(0, cusum + min(d, settings.cusum_clip_pa) - settings.cusum_kappa_pa)
            if cusum > settings.cusum_h_pa:
                fired.append(Rule.CUSUM)
        if settings.rise_pa is not None and len(hist) >= settings.rise_steps:
            if p - hist[-settings.rise_steps] >= settings.rise_pa:
                fired.append(Rule.RISE)
        if settings.deficit_nl is not None and len(hist) >= settings.deficit_steps:
            if (p - hist[-settings.deficit_steps]) * settings.compliance_nl_per_kpa // 1000 >= settings.deficit_nl:
                fired.append(Rule.VOLUME_DEFICIT)
        if settings.threshold_pa is not None and p >= settings.threshold_pa:
            fired.append(Rule.THRESHOLD)
        if fired and first < 0:
            first, first_rule = i, fired[0]
        hist.append(p)
    return first, first_rule, list(hist), cusum
