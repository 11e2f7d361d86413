"""A session with one fresh device on a rig: the connected client, the balance and the faults.

The runner asks a session for three things: `client` (a PumpClient that has said hello),
`balance` (a BalanceReader, or None on a rig without one) and the faults. A fault whose rig
method is "test-mode" (or "fixture": a FixtureClient gives it to the bench fixture's plant) is scheduled ahead with its ticks (the protocol's Inject* messages carry
them) by `schedule`; any other method acts at the very tick, so the runner first runs the pump
there and then calls `act`: an instrument gets its SCPI line through pyvisa, an operator gets the
instructions and confirms. `close()` stops whatever the rig started.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

from .balance import BalanceReader
from .client import PumpClient
from .errors import RigError
from .rig import FaultMethod


def ask_operator(text: str) -> None:
    """The default operator prompt: print the instructions and wait for Enter."""
    input(f"\n*** bench operator: {text}\n    press Enter when done ")


class RigSession:
    """A connected pump for one scenario (see the module docstring); a context manager."""

    def __init__(self, client: PumpClient, balance: BalanceReader | None, faults: Mapping[str, FaultMethod],
                 prompt: Callable[[str], None] | None = None, on_close: Callable[[], None] | None = None,
                 description: str = "") -> None:
        self.client = client
        self.balance = balance
        self.faults = dict(faults)
        self.prompt = prompt or ask_operator
        self.description = description
        self._on_close = on_close
        self._instruments: dict[str, Any] = {}

    def __enter__(self) -> "RigSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def method(self, fault: str) -> FaultMethod:
        """How this rig injects `fault`; RigError when it cannot."""
        try:
            return self.faults[fault]
        except KeyError:
            raise RigError(f"this rig cannot inject {fault!r}: its rig.toml [faults] names "
                           f"{sorted(self.faults) or 'none'}") from None

    def schedule(self, fault: str, **ticks_and_values: Any) -> None:
        """A test-mode fault, sent ahead with its ticks (the device applies it at them)."""
        c, p = self.client, ticks_and_values
        if fault == "occlusion":
            c.inject_occlusion(p["start_tick"], p.get("end_tick"), p.get("factor", 0))
        elif fault == "mri":
            c.inject_mri(p["start_tick"], p["end_tick"])
        elif fault == "stall":
            c.inject_stall(p["start_tick"], p.get("end_tick"))
        elif fault == "battery_drain":
            c.inject_battery_drain(p["at_tick"], p["charge_nc"])
        elif fault == "reset":
            c.inject_reset(p["at_tick"])
        else:
            raise RigError(f"fault {fault!r}: no test-mode message for it")

    def act(self, fault: str, phase: str, **values: Any) -> None:
        """An instrument or operator fault at the present tick: phase "start" or "end"."""
        how = self.method(fault)
        if how.method == "operator":
            self.prompt(f"{fault} {phase} at tick {values.get('tick', '?')}: {how.instructions}")
        elif how.method == "instrument":
            line = how.start if phase == "start" else how.end
            if line:
                self._instrument(how.resource).write(line.format(**values))
        else:
            raise RigError(f"fault {fault!r} is injected by test-mode message; expected schedule(), not act()")

    def _instrument(self, resource: str) -> Any:
        if resource not in self._instruments:
            import pyvisa

            try:
                inst = pyvisa.ResourceManager("@py").open_resource(resource)
            except Exception as exc:  # pyvisa raises many kinds: name the resource whatever it was
                raise RigError(f"fault instrument {resource!r} cannot be opened: {exc}") from None
            inst.read_termination = inst.write_termination = "\n"
            self._instruments[resource] = inst
        return self._instruments[resource]

    def close(self) -> None:
        """Close the client, the balance and the instruments; stop the device (idempotent)."""
        with contextlib.ExitStack() as stack:
            if self._on_close is not None:
                stack.callback(self._on_close)
                self._on_close = None
            for inst in self._instruments.values():
                stack.callback(inst.close)
            self._instruments.clear()
            if self.balance is not None:
                stack.callback(self.balance.close)
            stack.callback(self.client.close)
