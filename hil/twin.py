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
from firmware_model.event_log import Record
from firmware_model.plant import Jam, MriExposure, Occlusion
from protocol import messages as m

from .client import PumpClient
from .compare import compare_answers, compare_logs, compare_values
from .errors import PumpDiverged
from .lockstep import InStep
from .rig import Rig, RigConfig
from .session import RigSession
from .verdicts import Divergence

_STATUS_COMMANDS = (GetStatus, Interrogate)


class TwinPump(InStep):
    """A rig session's device and a reference pump in step (see the module docstring); a context manager."""

    def __init__(self, session: RigSession, config: RigConfig) -> None:
        super().__init__(session, config)
        self.tolerances = config.tolerances
        self.hello_reply: Any = None
        self._frames: list[Any] = []                   # Telemetry checked, not yet handed to the test
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
        expected, got, refused = self.both(command)
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
        self.take_telemetry(wait_s)
        frames, self._frames = self._frames, []
        return iter(frames)

    # ---- time ------------------------------------------------------------------------------------

    def advance_to(self, to_tick: int) -> int:  # type: ignore[override]
        """Lockstep: both pumps to `to_tick` (stopping at instrument or operator faults due on the
        way), each Telemetry frame checked at its tick, then the status; returns the tick."""
        __tracebackhide__ = True
        super().advance_to(to_tick)
        self._check_status(f"advancing to tick {to_tick}")
        return to_tick

    def advance(self, ticks: int) -> int:
        """Lockstep: both pumps `ticks` on from the present tick; returns the tick reached."""
        __tracebackhide__ = True
        return self.advance_to(self.now + ticks)

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
        """`fault` on both (InStep.fault), then the status compared; a refusal both agree on is the
        device's PumpRefused."""
        __tracebackhide__ = True
        where = f"{message.__name__} at tick {self.now}"
        refused = self.fault(fault, message, values, on_model, start, end, where)
        self._check_status(f"after {where}")
        if refused is not None:
            raise refused

    # ---- comparing -------------------------------------------------------------------------------

    def on_telemetry(self, frame: Any, expected: Any | None) -> None:
        self._frames.append(frame)

    def _check_status(self, where: str) -> None:
        __tracebackhide__ = True
        got = self.device.status()
        self.take_telemetry()
        self._judge(compare_values("status", self.reference.status(), got, self.tolerances, self.now), where)

    def _judge(self, found: Divergence | None, where: str) -> None:
        __tracebackhide__ = True
        self.found(found, where)

    def diverged(self, divergence: Divergence) -> None:
        """Raise PumpDiverged: the test fails naming the divergence and the frames before it."""
        __tracebackhide__ = True
        raise PumpDiverged(divergence)
