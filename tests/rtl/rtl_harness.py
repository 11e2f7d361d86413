"""What every cocotb bench does with tb_pump: start a section's clock, reset it, wait, strobe.

The clocks run in the simulator (tb_pump makes them); Python waits with one timer per wait,
never an await per clock edge (cocotb's ClockCycles awaits every edge in Python). Every wait is a
whole number of periods from time 0, so Python always acts half a period away from the rising
edges: what it writes is settled before the next one.
"""

from __future__ import annotations

from typing import Any

from cocotb.triggers import FallingEdge, Timer

# tb_pump's HALF_PERIOD_NS: one tick of the 32,768 Hz crystal, rounded to the nanosecond.
HALF_PERIOD_NS = 15_259
PERIOD_NS = 2 * HALF_PERIOD_NS
RESET_CYCLES = 3


async def cycles(n: int) -> None:
    """Let the clocks run n periods (n >= 1); one timer, no Python on the edges."""
    if n < 1:
        raise ValueError(f"cycles(n = {n}): expected n >= 1")
    await Timer(n * PERIOD_NS, unit="ns")


class Toggle:
    """A strobe input of tb_pump: each change of the input is one cycle-long pulse inside.

    Python keeps the level itself (a value written in this time step is not yet readable)."""

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.level = 0
        signal.value = 0

    def pulse(self) -> None:
        self.level ^= 1
        self.signal.value = self.level


async def start_section(dut: Any, name: str) -> None:
    """Start the clock of one tb_pump section (motor, stall, occ, uart) and reset it.

    The caller sets the section's other inputs first (no X reaches the logic)."""
    getattr(dut, f"{name}_rst").value = 1
    getattr(dut, f"{name}_clk_on").value = 1
    await cycles(RESET_CYCLES)
    getattr(dut, f"{name}_rst").value = 0


async def reset_section(dut: Any, name: str) -> None:
    """Reset a running section for a few cycles (between independent streams)."""
    getattr(dut, f"{name}_rst").value = 1
    await cycles(RESET_CYCLES)
    getattr(dut, f"{name}_rst").value = 0


async def between_edges(dut: Any, name: str) -> None:
    """After waking on an event (at a rising edge), move to the section's next falling edge, so
    that later waits of whole periods stay clear of the rising edges."""
    await FallingEdge(getattr(dut, f"{name}_clk"))
