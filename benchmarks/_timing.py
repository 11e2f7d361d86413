"""Shared timing helpers for the benchmarks: repeat, take the best, print figures last.

Machines are shared and noisy, so every benchmark times its candidate and its baseline in the
same run, repeats each a few times and keeps the best (the run least disturbed by others).
Figures are printed last, one per line, exactly as `name: value unit`.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeat: int = 5, number: int = 1) -> tuple[float, Any]:
    """Best wall time of one call of `fn` (seconds), over `repeat` rounds of `number` calls.

    Returns (seconds per call, the last result) so the caller can check what was computed.
    """
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            result = fn()
        dt = (time.perf_counter() - t0) / number
        best = min(best, dt)
    return best, result


def calls_for(fn: Callable[[], Any], min_round_s: float = 0.05, max_number: int = 1 << 22) -> int:
    """How many calls of a fast `fn` make one timing round last at least `min_round_s`."""
    number = 1
    while number < max_number:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 >= min_round_s:
            break
        number *= 2
    return number


def fmt(value: float) -> str:
    """A figure with about four significant digits, plain notation (no exponent)."""
    if isinstance(value, int) or value == 0:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.0f}"
    digits = max(0, 3 - int(f"{abs(value):e}".split("e")[1]))
    return f"{value:.{digits}f}"


def report(figures: list[tuple[str, float, str]]) -> None:
    """Print the figures, one per line, as `name: value unit`."""
    for name, value, unit in figures:
        print(f"{name}: {fmt(value)} {unit}", flush=True)
