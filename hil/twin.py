"""TwinPump: the device under test and the reference model driven in step, for tests written as code.

What the pytest plugin's `pump` fixture gives a test (hil.pytest_plugin). It has PumpClient's
methods with PumpClient's signatures; each goes to the device through the rig's session AND to a
ReferencePump built from the rig's declared pump, calibration and patient (as hil.runner builds
its reference), at the same tick. As the runner does, it compares with hil.compare within the
rig's tolerances: the answers, the status after every command and every advance, each Telemetry
frame the device sends at that frame's tick, and the log records read. The first divergence
raises PumpDiverged (tick, quantity, the model's and the device's values, the frames before it),
so an ordinary test fails naming it. A method returns the device's answer; a command both refuse
raises the device's PumpRefused. Faults go to the device by the rig's method ([faults]: a test-mode
message sent ahead with its ticks, or an instrument or the operator at the tick) and to the model
as the same fault. No expectations, no verdicts: the test's own asserts are those. (The methods
set pytest's __tracebackhide__, so a failure points at the test's line, not at these.)

    twin.device     the PumpClient (what goes around the model: signing tests, raw frames)
    twin.reference  the ReferencePump, in step (its predictions)
    twin.session    the RigSession (balance, faults)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from firmware_model.commands import Command, GetStatus, Interrogate, Response
from firmware_model.errors import CommandRefused
from firmware_model.event_log import Record
from firmware_model.plant import Jam, MriExposure, Occlusion
from protocol import NakReason
from protocol import messages as m

from .client import PumpClient
from .compare import compare_answers, compare_logs, compare_telemetry, compare_values
from .errors import PumpDiverged, PumpRefused
from .reference import ReferencePump, declared_pump
from .rig import Rig, RigConfig
from .runner import Refusal, _frame_text
from .session import RigSession
from .verdicts import Divergence
from .wire_model import WIRE_TYPES, refusal_to_nak, telemetry_message

CONTEXT_FRAMES = 8                        # frames named with a divergence, as the runner keeps
_STATUS_COMMANDS = (GetStatus, Interrogate)


def reference_pump(config: RigConfig) -> ReferencePump:
    """The model a rig's device is judged against (the runner builds the same)."""
    return declared_pump(config.pump, config.plant_params, config.plant_seed)


class TwinPump:
    """A rig session's device and a reference pump in step (see the module docstring); a context manager."""

    def __init__(self, session: RigSession, config: RigConfig) -> None:
        self.session = session
        self.device: PumpClient = session.client
        self.reference = reference_pump(config)
        self.tolerances = config.tolerances
        self.now = 0                                   # the tick both pumps are at
        self.hello_reply: Any = None
        self.divergence: Divergence | None = None      # the first one found
        self._frames: list[Any] = []                   # Telemetry checked, not yet handed to the test
        self._acts: list[tuple[int, str, str, dict[str, Any]]] = []   # instrument/operator actions ahead
        self._occlusions: set[int] = set()             # start ticks of the occlusions injected

    @classmethod
    def open(cls, rig: Rig, prompt: Callable[[str], None] | None = None) -> "TwinPump":
        """A fresh device of `rig` (rig.open), said hello to and checked against a fresh model."""
        session = rig.open(prompt)
        try:
            twin = cls(session, rig.config)
            twin.start()
        except BaseException:
            session.close()
            raise
        return twin

    def start(self) -> Any:
        """Say hello and check that the device starts as the model does; the HelloReply."""
        __tracebackhide__ = True
        self.hello_reply = self.device.hello()
        self._check_status("at the start")
        return self.hello_reply

    def close(self) -> None:
        """Close the session: the client, the balance, the device the rig started."""
        self.session.close()

    def __enter__(self) -> "TwinPump":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands: PumpClient's own methods, run through `execute` below ---------------------------
    # (they build the model command and shape the answer; borrowing them keeps signatures identical)

    status = PumpClient.status
    interrogate = PumpClient.interrogate
    program_stopped = PumpClient.program_stopped
    program_continuous = PumpClient.program_continuous
    program_flex = PumpClient.program_flex
    program_minimum_rate = PumpClient.program_minimum_rate
    bolus = PumpClient.bolus
    priming_bolus = PumpClient.priming_bolus
    configure_patient_bolus = PumpClient.configure_patient_bolus
    patient_bolus = PumpClient.patient_bolus
    refill = PumpClient.refill
    set_low_reservoir_alarm = PumpClient.set_low_reservoir_alarm
    ack_alarm = PumpClient.ack_alarm
    set_clock = PumpClient.set_clock
    _one = PumpClient._one

    def execute(self, command: Command) -> list[Response]:
        """Any model command on both pumps, answers compared; the device's answers (a refusal: its
        PumpRefused). The status after it is compared too."""
        __tracebackhide__ = True
        where = f"{type(command).__name__} at tick {self.now}"
        refused: PumpRefused | None = None
        try:
            got: list[Any] = self.device.execute(command)
        except PumpRefused as exc:
            refused, got = exc, [Refusal(NakReason(exc.reason).name, exc.field)]
        try:
            expected: list[Any] = self.reference.handle(command)
        except CommandRefused as exc:
            expected = [_refusal(exc, WIRE_TYPES[type(command)].SPEC.msg_id)]
        self._take_telemetry()
        if isinstance(command, _STATUS_COMMANDS) and [type(a) for a in expected] == [type(a) for a in got]:
            self._judge(compare_values("status", expected[0], got[0], self.tolerances, self.now), where)
        else:
            self._judge(compare_answers(expected, got, self.tolerances, self.now), where)
            self._check_status(f"after {where}")
        if refused is not None:
            raise refused
        return got

    # ---- the event log and telemetry -------------------------------------------------------------

    def read_log(self, first_seq: int = 0, count: int | None = None) -> list[Record]:
        """The device's records from `first_seq` on (at most `count`), compared with the model's."""
        __tracebackhide__ = True
        got = self.device.read_log(first_seq, count)
        held = [r for r in self.reference.controller.log.records() if r.seq >= first_seq]
        expected = held if count is None else held[:count]
        self._judge(compare_logs(expected, got, self.tolerances, self.now), f"read_log({first_seq}) at tick {self.now}")
        return got

    def telemetry(self, wait_s: float = 0.0) -> Iterator[Any]:
        """The device's Telemetry frames since the last call (each already checked against the model
        at its tick), then those arriving until none has come for `wait_s` s."""
        __tracebackhide__ = True
        self._take_telemetry(wait_s)
        frames, self._frames = self._frames, []
        return iter(frames)

    # ---- time ------------------------------------------------------------------------------------

    def advance_to(self, to_tick: int) -> int:
        """Lockstep: both pumps to `to_tick` (stopping at instrument or operator faults due on the
        way), each Telemetry frame checked at its tick, then the status; returns the tick."""
        __tracebackhide__ = True
        while True:
            due = [a for a in self._acts if a[0] <= to_tick]
            stop = min((a[0] for a in due), default=to_tick)
            self._advance_both(stop)
            for act in [a for a in due if a[0] == stop]:
                self._acts.remove(act)
                self.session.act(act[1], act[2], tick=stop, **act[3])
            if stop >= to_tick:
                break
        self._check_status(f"advancing to tick {to_tick}")
        return to_tick

    def advance(self, ticks: int) -> int:
        """Lockstep: both pumps `ticks` on from the present tick; returns the tick reached."""
        __tracebackhide__ = True
        return self.advance_to(self.now + ticks)

    def _advance_both(self, to_tick: int) -> None:
        __tracebackhide__ = True
        if to_tick != self.now:
            self.device.advance_to(to_tick)   # a tick in the past: the device's PumpRefused
            self.now = to_tick
        self._take_telemetry()
        self.reference.advance_to(to_tick)

    # ---- faults ----------------------------------------------------------------------------------

    def inject_occlusion(self, start_tick: int, end_tick: int | None = None, factor: int = 0) -> None:
        """A catheter occlusion on both from start_tick (to end_tick; None: never clears; the same
        start_tick again re-times its end); factor 0 total, >= 2 partial."""
        __tracebackhide__ = True
        retimed = start_tick in self._occlusions
        self._fault("occlusion", m.InjectOcclusion, dict(start_tick=start_tick, end_tick=end_tick, factor=factor),
                    lambda: self.reference.occlusion(Occlusion(start_tick, end_tick, factor)),
                    None if retimed else start_tick, end_tick)
        self._occlusions.add(start_tick)

    def inject_mri(self, start_tick: int, end_tick: int) -> None:
        """An MRI scan on both whose magnet holds the rotor from start_tick to end_tick."""
        __tracebackhide__ = True
        self._fault("mri", m.InjectMri, dict(start_tick=start_tick, end_tick=end_tick),
                    lambda: self.reference.mri(MriExposure(start_tick, end_tick)), start_tick, end_tick)

    def inject_stall(self, start_tick: int, end_tick: int | None = None) -> None:
        """A jammed rotor on both from start_tick (to end_tick; None: never frees)."""
        __tracebackhide__ = True
        self._fault("stall", m.InjectStall, dict(start_tick=start_tick, end_tick=end_tick),
                    lambda: self.reference.stall(Jam(start_tick, end_tick)), start_tick, end_tick)

    def inject_battery_drain(self, at_tick: int, charge_nc: int) -> None:
        """Draw `charge_nc` from both batteries at `at_tick` (both run there first)."""
        __tracebackhide__ = True
        if at_tick > self.now:
            self.advance_to(at_tick)
        self._fault("battery_drain", m.InjectBatteryDrain, dict(at_tick=at_tick, charge_nc=charge_nc),
                    lambda: self.reference.battery_drain(at_tick, charge_nc), at_tick, None)

    def inject_reset(self, at_tick: int) -> None:
        """A processor reset of both at `at_tick` (both run there first): state rebuilt from the log."""
        __tracebackhide__ = True
        if at_tick > self.now:
            self.advance_to(at_tick)
        self._fault("reset", m.InjectReset, dict(at_tick=at_tick), lambda: self.reference.reset(at_tick),
                    at_tick, None)

    def _fault(self, fault: str, message: Any, values: dict[str, Any], on_model: Callable[[], None],
               start: int | None, end: int | None) -> None:
        """`fault` by the rig's method on the device, `on_model` on the model; a test-mode message
        the device refuses is compared with the model's refusal, as a command's would be."""
        __tracebackhide__ = True
        where = f"{message.__name__} at tick {self.now}"
        if self.session.method(fault).method != "test-mode":
            on_model()                              # a model refusal is the test's mistake: raised as is
            for tick, phase in ((start, "start"), (end, "end")):
                if tick is None:
                    continue
                if tick <= self.now:
                    self.session.act(fault, phase, tick=self.now, **values)
                else:
                    self._acts.append((tick, fault, phase, values))
            self._check_status(f"after {where}")
            return
        refused: PumpRefused | None = None
        try:
            self.session.schedule(fault, **values)
            got: list[Any] = []
        except PumpRefused as exc:
            refused, got = exc, [Refusal(NakReason(exc.reason).name, exc.field)]
        try:
            on_model()
            expected: list[Any] = []
        except CommandRefused as exc:
            expected = [_refusal(exc, message.MSG_ID)]
        self._take_telemetry()
        self._judge(compare_answers(expected, got, self.tolerances, self.now), where)
        self._check_status(f"after {where}")
        if refused is not None:
            raise refused

    # ---- comparing -------------------------------------------------------------------------------

    def _take_telemetry(self, wait_s: float = 0.0) -> None:
        """Check every Telemetry frame the device has sent against the model at its tick (a frame
        from before the model's present, where a fault set it, is not judged: as the runner)."""
        __tracebackhide__ = True
        ref = self.reference
        for frame in self.device.telemetry(wait_s):
            self._frames.append(frame)
            if frame.tick < ref.now:
                continue
            ref.advance_to(frame.tick)
            expected = telemetry_message(ref.controller, frame.counter)
            self._judge(compare_telemetry(expected, frame, self.tolerances), f"telemetry at tick {frame.tick}")

    def _check_status(self, where: str) -> None:
        __tracebackhide__ = True
        got = self.device.status()
        self._take_telemetry()
        self._judge(compare_values("status", self.reference.status(), got, self.tolerances, self.now), where)

    def _judge(self, found: Divergence | None, where: str) -> None:
        """Raise PumpDiverged for a divergence, with the frames before it (kept as the first one)."""
        __tracebackhide__ = True
        if found is None:
            return
        frames = tuple(f"{d} seq {seq}: {_frame_text(msg)}" for d, seq, msg in self.device.link.history)
        divergence = Divergence(found.tick, found.quantity, found.expected, found.got, found.tolerance,
                                frames[-CONTEXT_FRAMES:], where)
        if self.divergence is None:
            self.divergence = divergence
        raise PumpDiverged(divergence)


def _refusal(exc: CommandRefused, msg_id: int) -> Refusal:
    """A model refusal as the device would report it (its Nak's reason and field)."""
    nak = refusal_to_nak(exc, msg_id)
    return Refusal(NakReason(nak.reason).name, nak.field)
