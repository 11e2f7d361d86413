"""A device and the reference model on one virtual clock: what the scenario runner and TwinPump share.

`InStep` holds a rig session's device and a reference pump built from the rig's declared pump,
calibration and patient, and drives both alike: time (stopping at each instrument or operator
action due), commands (both answers, a refusal on either side as the Nak it is on the wire),
faults (a test-mode message sent ahead with its ticks, or an act at the tick, and the same fault
on the model) and every Telemetry frame the device sends, checked against the model at its tick.
What a divergence does is the subclass's (`diverged`): the runner keeps the first and goes on to
judge its expectations; TwinPump raises it in the test.
"""

from __future__ import annotations

from typing import Any, Callable

from firmware_model.commands import Command
from firmware_model.errors import CommandRefused
from protocol import NakReason

from protocol.messages import Nak

from .compare import Refusal, compare_answers, compare_telemetry
from .damage import ANOTHER_COMMAND, NO_ANSWER, RUN_ONCE, damaged_frames
from .errors import PumpRefused
from .reference import ReferencePump, declared_pump
from .rig import SCHEDULED_METHODS, RigConfig
from .session import RigSession
from .verdicts import Divergence
from .wire_model import WIRE_TYPES, command_to_wire, refusal_to_nak, response_from_wire, telemetry_message

CONTEXT_FRAMES = 8     # frames kept with a divergence, the latest before it


def nak_refusal(nak: Any) -> Refusal:
    """A Nak message as a Refusal: its reason, field, value and expected."""
    return Refusal(NakReason(nak.reason).name, nak.field, nak.value, nak.expected)


def model_refusal(exc: CommandRefused, msg_id: int) -> Refusal:
    """The model's refusal as a device reports it: its Nak's reason, field and texts."""
    return nak_refusal(refusal_to_nak(exc, msg_id))


def refusal_of(exc: PumpRefused) -> Refusal:
    """The device's refusal, as its Nak says it."""
    return Refusal(NakReason(exc.reason).name, exc.field, exc.value, exc.expected)


def frame_text(message: Any) -> str:
    """A frame's message in one line (the first fields), for a divergence's context."""
    fields = getattr(message, "_fields", ())
    inner = ", ".join(f"{f}={getattr(message, f)!r}" for f in fields[:8])
    return f"{type(message).__name__}({inner}{', ...' if len(fields) > 8 else ''})"


class InStep:
    """A session's device and the model of `config`, driven alike (see the module docstring)."""

    def __init__(self, session: RigSession, config: RigConfig) -> None:
        self.session = session
        self.device = session.client
        self.reference: ReferencePump = declared_pump(config.pump, config.plant_params, config.plant_seed)
        self.tol = config.tolerances
        self.now = 0                                   # the tick both pumps are at
        self.divergence: Divergence | None = None      # the first one found
        self.acts: list[tuple[int, str, str, dict[str, Any]]] = []   # instrument/operator actions ahead

    # ---- what a subclass decides ------------------------------------------------------------------

    def diverged(self, divergence: Divergence) -> None:
        """A divergence was found (the first is in self.divergence already)."""

    def on_telemetry(self, frame: Any, expected: Any | None) -> None:
        """A Telemetry frame arrived; `expected` is the model's at its tick (None: not judged)."""

    # ---- divergences ---------------------------------------------------------------------------------

    def found(self, found: Divergence | None, where: str, guards: tuple[str, ...] = ()) -> None:
        """A comparison's result: a divergence gets the frames before it and where it came up."""
        if found is None:
            return
        frames = tuple(f"{d} seq {seq}: {frame_text(msg)}" for d, seq, msg in self.device.link.history)
        divergence = Divergence(found.tick, found.quantity, found.expected, found.got, found.tolerance,
                                frames[-CONTEXT_FRAMES:], where, tuple(guards))
        if self.divergence is None:
            self.divergence = divergence
        self.diverged(divergence)

    # ---- time ----------------------------------------------------------------------------------------

    def advance_to(self, to_tick: int) -> None:
        """Both pumps to `to_tick`, stopping on the way at each instrument or operator action due."""
        while True:
            due = [a for a in self.acts if a[0] <= to_tick]
            stop = min((a[0] for a in due), default=to_tick)
            self._advance_both(stop)
            for act in [a for a in due if a[0] == stop]:
                self.acts.remove(act)
                self.session.act(act[1], act[2], tick=stop, **act[3])
            if stop >= to_tick:
                return

    def _advance_both(self, to_tick: int) -> None:
        if to_tick != self.now:
            self.device.advance_to(to_tick)   # a tick in the past: the device's PumpRefused
            self.now = to_tick
        self.take_telemetry()
        self.reference.advance_to(to_tick)

    def take_telemetry(self, wait_s: float = 0.0) -> None:
        """Check every Telemetry frame the device has sent against the model at its tick (one from
        before the model's present, where a fault set it, is not judged)."""
        ref = self.reference
        for frame in self.device.telemetry(wait_s):
            if frame.tick < ref.now:
                self.on_telemetry(frame, None)
                continue
            ref.advance_to(frame.tick)
            expected = telemetry_message(ref.controller, frame.counter)
            self.on_telemetry(frame, expected)
            if self.divergence is None:
                self.found(compare_telemetry(expected, frame, self.tol), f"telemetry at tick {frame.tick}")

    # ---- commands and faults -------------------------------------------------------------------------

    def both(self, command: Command) -> tuple[list[Any], list[Any], PumpRefused | None]:
        """A model command on both now: the model's answers, the device's, and the device's refusal
        (its answers then hold the Refusal)."""
        refused: PumpRefused | None = None
        try:
            got: list[Any] = self.device.execute(command)
        except PumpRefused as exc:
            refused, got = exc, [refusal_of(exc)]
        try:
            expected: list[Any] = self.reference.handle(command)
        except CommandRefused as exc:
            expected = [model_refusal(exc, WIRE_TYPES[type(command)].SPEC.msg_id)]
        self.take_telemetry()
        return expected, got, refused

    def damaged(self, command: Command, damage: str) -> list[tuple[list[Any], list[Any]]]:
        """A command's frame damaged on purpose (hil.damage) written to the device: per frame
        written, what a conforming pump answers and what the device answered. The model runs the
        command once if any frame is due to run it (a retry), and never for a refused frame."""
        link = self.device.link
        message = command_to_wire(command)
        seq = link.next_seq()
        frames = damaged_frames(damage, message, seq, link.signers, link.signer_for(message))
        model: list[Any] | None = None
        out: list[tuple[list[Any], list[Any]]] = []
        for data, due in frames:
            if due is ANOTHER_COMMAND:
                self.device.status()    # judged with every step's status, after it
                continue
            wait_s = link.answer_timeout_s if due is NO_ANSWER else link.max_wait_s   # silence takes the first wait
            got = [response_from_wire(a) if type(a) is not Nak
                   else nak_refusal(a) if due is RUN_ONCE        # a command's refusal, worded as the model words it
                   else Refusal(NakReason(a.reason).name, a.field)   # a link-level Nak's texts are the pump's own
                   for a in link.exchange(data, seq, wait_s)]
            if due is RUN_ONCE:
                if model is None:
                    try:
                        model = list(self.reference.handle(command))
                    except CommandRefused as exc:
                        model = [model_refusal(exc, message.SPEC.msg_id)]
                expected = model
            else:
                expected = [] if due is NO_ANSWER else [Refusal(NakReason(due).name, "")]
            out.append((expected, got))
        self.take_telemetry()
        return out

    def fault(self, fault: str, message: Any, values: dict[str, Any], on_model: Callable[[], None],
              start: int | None, end: int | None, where: str, guards: tuple[str, ...] = ()) -> PumpRefused | None:
        """`fault` on the device by the rig's method and `on_model` on the model. Test-mode: the
        Inject message now, with its ticks, refusals compared as a command's; otherwise the
        instrument or operator acts at `start` and `end` (now, if due). A fixture's fault is scheduled as a
        test-mode one (the client gives it to the fixture's plant). The device's refusal."""
        if self.session.method(fault).method not in SCHEDULED_METHODS:
            on_model()
            for tick, phase in ((start, "start"), (end, "end")):
                if tick is None:
                    continue
                if tick <= self.now:
                    self.session.act(fault, phase, tick=self.now, **values)
                else:
                    self.acts.append((tick, fault, phase, values))
            return None
        refused: PumpRefused | None = None
        got: list[Any] = []
        try:
            self.session.schedule(fault, **values)
        except PumpRefused as exc:
            refused, got = exc, [refusal_of(exc)]
        expected: list[Any] = []
        try:
            on_model()
        except CommandRefused as exc:
            expected = [model_refusal(exc, message.MSG_ID)]
        self.take_telemetry()
        if self.divergence is None:
            self.found(compare_answers(expected, got, self.tol, self.now), where, guards)
        return refused
