"""Plots of model runs (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from firmware_model.simulate import RunResult  # noqa: E402
from firmware_model.units import TICKS_PER_DAY  # noqa: E402


def plot_run(result: RunResult, title: str, path: Path) -> None:
    """Reservoir volume and cumulative dose at the tip, day by day, with alarms marked."""
    days = [t / TICKS_PER_DAY for t in result.sample_ticks]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), constrained_layout=True)
    top.plot(days, [v / 1e6 for v in result.sample_reservoir_nl], color="tab:blue")
    top.set_ylabel("reservoir (mL)")
    top.set_title(title)
    for a in result.alarms:
        if a.what == "on":
            top.axvline(a.tick / TICKS_PER_DAY, color="tab:red" if a.priority == "CRITICAL" else "tab:orange",
                        linestyle=":", linewidth=1)
    bottom.plot(days, [d / 1e6 for d in result.sample_dose_ng], color="tab:green")
    bottom.set_ylabel("cumulative dose at tip (mg)")
    bottom.set_xlabel("day")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
