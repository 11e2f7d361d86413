"""The bench fixture of a pump without a plant: the host's plant feeds its sensors in lockstep.

A firmware on a board (or on QEMU) has a motor and a pressure sensor but no patient. On a bench a
fixture closes that loop; here the fixture is a `Plant` on the host (the rig's declared patient)
driven by the strokes the pump itself makes, never by the model's:

    host: FixtureAdvance(to_tick, lines ahead, pressures)   pump: FixtureReport(tick, used, wanted)

The pump runs until `to_tick` or until a stroke it has no pressure sample for; it then says where
it stopped and the ticks of its next strokes. The fixture computes what those strokes would do to
the outlet (`Plant.strokes`, without committing), sends their samples, and on the next report
commits the prefix the pump used (`Plant.commit`): a stroke the pump did not make never reaches
the patient. A feed is cut at each occlusion start or end, and the outlet is settled there once
the pump is past it, exactly where the reference model's controller splits its spans. The
rotor-held and EMI lines are announced ahead with their change ticks (MRI scans and jams).

Faults the fixture owns (occlusion, MRI, stall) change its plant, as a clamp on the catheter or a
magnet on the bench would; the rest (battery drain, reset) are the pump's own test-mode messages,
sent once the pump has been run to their tick. Refusals are the model's, as the pump's Nak.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from firmware_model.errors import CommandRefused
from firmware_model.plant import Jam, MriExposure, Occlusion, OutletSpan, Plant
from protocol import messages as m
from protocol.enums import NakReason

from .client import PumpClient
from .errors import PumpRefused, UnexpectedAnswer
from .reference import schedule_occlusion
from .wire_model import refusal_to_nak


class PlantFixture:
    """The fixture's side of the exchange, without a wire: `lines` and `samples` make a feed,
    `report` takes the pump's answer (FixtureAdvancing drives it over the link, the C tests
    over a native driver)."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.lock = threading.Lock()     # the balance reads the outlet from its own thread
        self.tick = 0                    # where the pump last said it was
        self._span: OutletSpan | None = None
        self._settled: set[int] = set()  # occlusion starts/ends the outlet has been settled at

    # ---- what the pump is told -------------------------------------------------------------------------

    def lines(self, to_tick: int) -> tuple[list[Any], int]:
        """The line levels now and at each change up to `to_tick`, and the tick this feed may run to
        (cut at the last change the message can carry)."""
        plant, now = self.plant, self.tick
        # every tick where the plant changes, as plant.next_change_tick stops the model there (an
        # occlusion's start or end leaves the levels as they are, but is an event tick all the same)
        changes = sorted({t for e in (*plant.occlusions, *plant.mri, *plant.jams) for t in (e.start_tick, e.end_tick)
                          if t is not None and now < t <= to_tick})
        if len(changes) > m.MAX_FIXTURE_LINES - 1:
            changes = changes[:m.MAX_FIXTURE_LINES - 1]
            to_tick = changes[-1]
        levels = [m.SensorLine(t, plant.rotor_held(t), plant.emi(t)) for t in (now, *changes)]
        return levels, to_tick

    def samples(self, wanted: list[int]) -> list[Any]:
        """Pressure samples (Pa) for the strokes the pump wants, in its order, cut at the next
        occlusion start or end (the outlet changes there); computed, not committed."""
        with self.lock:
            self._settle_boundaries(wanted[0] if wanted else None)
            cut = self._next_boundary()
            ticks = [t for t in wanted if cut is None or t <= cut]
            if not ticks:
                self._span = None
                return []
            span = self.plant.strokes(np.asarray(ticks, dtype=np.int64))
            self._span = span
            return [int(p) for p in span.samples_pa]

    # ---- what the pump said --------------------------------------------------------------------------

    def report(self, tick: int, used: int) -> None:
        """The pump is at `tick` and used the first `used` samples of the last feed."""
        with self.lock:
            span, self._span = self._span, None
            fed = 0 if span is None else len(span.step_ticks)
            if used > fed:
                raise UnexpectedAnswer(f"FixtureReport used = {used}: expected at most the {fed} samples sent")
            if span is not None and used:
                self.plant.commit(span, used)
            self.tick = tick
            self.plant.present_tick = max(self.plant.present_tick, tick)

    def _boundaries(self) -> list[int]:
        return sorted({t for o in self.plant.occlusions for t in (o.start_tick, o.end_tick) if t is not None})

    def _next_boundary(self) -> int | None:
        return next((t for t in self._boundaries() if t not in self._settled), None)

    def _settle_boundaries(self, first_wanted: int | None) -> None:
        """Settle the outlet at each occlusion start or end the pump is past (its strokes up to there
        committed, none after) — the pump stops just before its first unfed stroke, so a boundary
        before that stroke is behind it."""
        for t in self._boundaries():
            if t in self._settled:
                continue
            if t <= self.tick and (first_wanted is None or t < first_wanted):
                self.plant.settle(t)
                self._settled.add(t)
            else:
                break

    def finish(self) -> None:
        """The run reached its target: settle what lies behind the pump."""
        with self.lock:
            self._settle_boundaries(None)

    def outflow_nl(self) -> int:
        """What has left the catheter tip by the pump's present tick (for the balance)."""
        with self.lock:
            return self.plant.outflow_nl_at(max(self.tick, self.plant.state.last_tick))


def _refused(message: type, exc: CommandRefused) -> PumpRefused:
    """A fault the fixture's plant refuses, as the Nak an emulator would give for it."""
    nak = refusal_to_nak(exc, message.MSG_ID)
    return PumpRefused(message.__name__, NakReason(nak.reason), nak.field, nak.value, nak.expected)


class FixtureAdvancing:
    """PumpClient's time and faults through a bench fixture (needs `self.fixture` and `self.link`);
    mixed into FixtureClient, and into the replay's client so a recording replays the same exchange."""

    fixture: PlantFixture
    link: Any
    advance_timeout_s: float
    exchanges = 0   # FixtureAdvance round trips (for benchmarks)

    def advance_to(self, to_tick: int) -> int:
        """Run the pump to `to_tick`, feeding every stroke it makes on the way."""
        fx = self.fixture
        samples: list[Any] = []
        while True:
            lines, target = fx.lines(to_tick)
            answer = self.link.request(m.FixtureAdvance(target, lines, samples), timeout_s=self.advance_timeout_s)[0]
            self.exchanges = self.exchanges + 1
            if not isinstance(answer, m.FixtureReport):
                raise UnexpectedAnswer(f"FixtureAdvance answered by {type(answer).__name__}; expected FixtureReport")
            fx.report(answer.tick, answer.used)
            if answer.wanted:
                samples = fx.samples(list(answer.wanted))
                if not samples and answer.wanted[0] <= answer.tick:
                    raise UnexpectedAnswer(f"the pump at tick {answer.tick} wants a sample for a stroke at "
                                           f"{answer.wanted[0]}, not after it")
                continue
            samples = []
            if answer.tick != target:
                raise UnexpectedAnswer(f"FixtureReport at tick {answer.tick} with nothing wanted; expected the "
                                       f"target {target}")
            if target >= to_tick:
                fx.finish()
                return to_tick

    # ---- faults: the fixture's own, and the pump's at their tick ---------------------------------------

    def inject_occlusion(self, start_tick: int, end_tick: int | None = None, factor: int = 0) -> None:
        """The fixture clamps the catheter (a repeated start re-times the end, as on the emulator)."""
        try:
            with self.fixture.lock:
                schedule_occlusion(self.fixture.plant, Occlusion(start_tick, end_tick, factor))
        except CommandRefused as exc:
            raise _refused(m.InjectOcclusion, exc) from None

    def inject_mri(self, start_tick: int, end_tick: int) -> None:
        """The fixture's magnet holds the rotor and its field reaches the telemetry coil."""
        try:
            with self.fixture.lock:
                self.fixture.plant.add_mri(MriExposure(start_tick, end_tick))
        except CommandRefused as exc:
            raise _refused(m.InjectMri, exc) from None

    def inject_stall(self, start_tick: int, end_tick: int | None = None) -> None:
        """The fixture jams the rotor."""
        try:
            with self.fixture.lock:
                self.fixture.plant.add_jam(Jam(start_tick, end_tick))
        except CommandRefused as exc:
            raise _refused(m.InjectStall, exc) from None

    def inject_battery_drain(self, at_tick: int, charge_nc: int) -> None:
        """Run the pump to `at_tick` through the fixture, then draw the charge there."""
        self._run_to_fault("InjectBatteryDrain", at_tick)
        self.link.request(m.InjectBatteryDrain(at_tick, charge_nc))

    def inject_reset(self, at_tick: int) -> None:
        """Run the pump to `at_tick` through the fixture, then reset it there."""
        self._run_to_fault("InjectReset", at_tick)
        self.link.request(m.InjectReset(at_tick))

    def _run_to_fault(self, command: str, at_tick: int) -> None:
        if at_tick < self.fixture.tick:
            raise PumpRefused(command, NakReason.LIMIT_EXCEEDED, "at_tick", str(at_tick),
                              f">= the present tick {self.fixture.tick} (time only moves forward)")
        if at_tick > self.fixture.tick:
            self.advance_to(at_tick)


class FixtureClient(FixtureAdvancing, PumpClient):
    """A PumpClient for a pump without a plant, with the bench fixture of `plant` in the loop."""

    def __init__(self, url: str, plant: Plant, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.fixture = PlantFixture(plant)
