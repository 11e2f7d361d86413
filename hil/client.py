"""PumpClient: talk to a pump (a board, an emulator, a socket) with plain methods in the pump's units.

    with PumpClient("emu://?test_mode=1", clinician_key=key) as pump:
        pump.hello()
        pump.refill(0, 20_000_000, "morphine", 10_000)
        pump.program_continuous(rate_nl_per_day=250_000)
        pump.advance(TICKS_PER_DAY)                   # emulated rigs: lockstep time
        print(pump.status().reservoir_nl)

Commands go in and answers come out as the reference model's own values (firmware_model's
commands and responses, through hil.wire_model), so what a device answers compares directly with
what `Controller.handle` answers. The keys given decide the role: the link signs with them (a
patient-only client that tries to program is refused by the pump with ROLE_NOT_ALLOWED). A Nak
raises PumpRefused; no answer after every resend raises LinkTimeout.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from firmware_model import commands
from firmware_model.alarms import AlarmCode
from firmware_model.commands import Accepted, BolusDenied, BolusGranted, Command, Response, StatusReport
from firmware_model.event_log import Record
from protocol import Key, Signer
from protocol import messages as m
from protocol.messages import MAX_LOG_RECORDS, SUPPORTED_VERSIONS
from protocol.signing import mavlink_clock

from .errors import UnexpectedAnswer
from .link import Link, LinkStats
from .transport import Transport
from .wire_model import command_to_wire, record_from_wire, response_from_wire

CLIENT_NAME = "ithil PumpClient"
U32 = 1 << 32
ANSWER_FRAMES = {commands.ClinicianBolus: 2}   # Ack (or AckSoftLimits) then BolusGranted


class PumpClient:
    """A session with one pump over one URL (see the module docstring).

    clinician_key / patient_key: the keys the client may sign with (either, both or none);
    link_id: the signing link (timestamps are monotonic per key and link); clock: the signing
    clock (10 µs units, default MAVLink's); answer_timeout_s, max_attempts: the link's first
    wait and its sends per command; advance_timeout_s: the first wait for an AdvanceTime, which
    may run the emulator through days.
    """

    def __init__(self, url: str, *, clinician_key: Key | None = None, patient_key: Key | None = None,
                 link_id: int = 0, clock: Callable[[], int] = mavlink_clock, answer_timeout_s: float = 0.25,
                 max_attempts: int = 6, advance_timeout_s: float = 30.0) -> None:
        signers = [Signer(key, link_id, clock) for key in (clinician_key, patient_key) if key is not None]
        self.transport = Transport(url)
        self.link = Link(self.transport, signers, answer_timeout_s=answer_timeout_s, max_attempts=max_attempts,
                         max_wait_s=max(2.0, answer_timeout_s))
        self.advance_timeout_s = advance_timeout_s
        self.pump: Any = None   # the HelloReply, once hello() has been sent

    def __enter__(self) -> "PumpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the port."""
        self.link.close()

    @property
    def url(self) -> str:
        return self.transport.url

    @property
    def stats(self) -> LinkStats:
        """The link's counters: sent, retried, NAKed by reason, bad frames by reason, telemetry lost."""
        return self.link.stats

    # ---- session ------------------------------------------------------------------------------------

    def hello(self, client: str = CLIENT_NAME) -> Any:
        """Open the session: the pump's HelloReply (version chosen, firmware, serial number, test mode)."""
        reply = self.link.request(m.Hello(min(SUPPORTED_VERSIONS), max(SUPPORTED_VERSIONS), client))[0]
        self.pump = reply
        return reply

    # ---- commands (the model's) ---------------------------------------------------------------------

    def execute(self, command: Command) -> list[Response]:
        """Any model command; its answers as the model's responses, in the pump's order."""
        answers = self.link.request(command_to_wire(command), expect=ANSWER_FRAMES.get(type(command), 1))
        return [response_from_wire(a) for a in answers]

    def status(self) -> StatusReport:
        """The pump's status; changes nothing."""
        return self._one(commands.GetStatus(), StatusReport)

    def interrogate(self) -> StatusReport:
        """An interrogation: the status, and after an MRI the release of the telemetry-mode latch."""
        return self._one(commands.Interrogate(), StatusReport)

    def program_stopped(self) -> Accepted:
        """Stop the pump: no basal, every bolus halted."""
        return self._one(commands.ProgramStopped(), Accepted)

    def program_continuous(self, rate_nl_per_day: int) -> Accepted:
        """Simple continuous therapy at one rate all day."""
        return self._one(commands.ProgramContinuous(rate_nl_per_day), Accepted)

    def program_flex(self, steps: Sequence[tuple[int, int]]) -> Accepted:
        """Flex dosing: (start_tick since midnight, rate_nl_per_day) steps, the first at 0."""
        return self._one(commands.ProgramFlex(tuple((int(s), int(r)) for s, r in steps)), Accepted)

    def program_minimum_rate(self) -> Accepted:
        """The minimum safe rate that keeps the catheter open."""
        return self._one(commands.ProgramMinimumRate(), Accepted)

    def bolus(self, volume_nl: int, duration_ticks: int, period_ticks: int = 0, count: int = 1) -> list[Response]:
        """A clinician bolus (periodic when period_ticks > 0): [Accepted (with any soft-limit flags),
        BolusGranted], as the model answers it."""
        return self.execute(commands.ClinicianBolus(volume_nl, duration_ticks, period_ticks, count))

    def priming_bolus(self, volume_nl: int, duration_ticks: int) -> BolusGranted:
        """Fill the pump tubing and catheter after implant or revision."""
        return self._one(commands.PrimingBolus(volume_nl, duration_ticks), BolusGranted)

    def configure_patient_bolus(self, volume_nl: int, duration_ticks: int, lockout_ticks: int,
                                max_per_day: int) -> Accepted:
        """The patient bolus: dose volume, duration, lockout, maximum per rolling 24 h (0: off)."""
        return self._one(commands.ConfigurePatientBolus(volume_nl, duration_ticks, lockout_ticks, max_per_day),
                         Accepted)

    def patient_bolus(self) -> BolusGranted | BolusDenied:
        """The patient presses the button: granted, or denied with the rule that denied it."""
        return self._one(commands.PatientBolusRequest(), (BolusGranted, BolusDenied))

    def refill(self, measured_residual_nl: int, injected_nl: int, drug: str, concentration_ug_per_ml: int,
               measured_after_nl: int | None = None, bridge: bool = False) -> Accepted:
        """A refill: residual withdrawn and measured, new drug injected (bridge: after a change of
        concentration, bridge the old drug still in the fluid path)."""
        return self._one(commands.Refill(measured_residual_nl, injected_nl, drug, concentration_ug_per_ml,
                                         measured_after_nl, bridge), Accepted)

    def set_low_reservoir_alarm(self, threshold_nl: int) -> Accepted:
        """The reservoir volume at which the low-reservoir alarm sounds."""
        return self._one(commands.SetLowReservoirAlarm(threshold_nl), Accepted)

    def ack_alarm(self, alarm: AlarmCode) -> Accepted:
        """Acknowledge (silence) an alarm."""
        return self._one(commands.AcknowledgeAlarm(AlarmCode(alarm)), Accepted)

    def set_clock(self, time_of_day_ticks: int) -> Accepted:
        """The pump's time of day, in ticks since midnight."""
        return self._one(commands.SetClock(time_of_day_ticks), Accepted)

    # ---- the event log and telemetry ------------------------------------------------------------------

    def read_log(self, first_seq: int = 0, count: int | None = None) -> list[Record]:
        """Event-log records from `first_seq` on, oldest first (records the ring has overwritten are
        skipped), at most `count` (None: up to the newest). Each record's CRC is checked."""
        records: list[Record] = []
        seq = first_seq % U32
        while count is None or len(records) < count:
            want = MAX_LOG_RECORDS if count is None else min(MAX_LOG_RECORDS, count - len(records))
            answer = self.link.request(m.ReadLog(seq, want))[0]
            if not isinstance(answer, m.LogRecords):
                raise UnexpectedAnswer(f"ReadLog answered by {type(answer).__name__}; expected LogRecords")
            if not answer.records:
                break
            records.extend(record_from_wire(r) for r in answer.records)
            seq = (answer.records[-1].seq + 1) % U32
            if seq == answer.next_seq:
                break
        return records

    def telemetry(self, wait_s: float = 0.0) -> Iterator[Any]:
        """Telemetry messages received, then those arriving until none has come for `wait_s` s.
        Loss (from the telemetry counter) is in `stats.telemetry_lost`."""
        return self.link.telemetry(wait_s)

    # ---- emulated rigs (test mode) --------------------------------------------------------------------

    def advance_to(self, to_tick: int) -> int:
        """Lockstep: run the pump's virtual time to `to_tick`; returns it."""
        self.link.request(m.AdvanceTime(to_tick), timeout_s=self.advance_timeout_s)
        return to_tick

    def advance(self, ticks: int) -> int:
        """Lockstep: run the pump's virtual time `ticks` on from its present tick; returns the tick reached."""
        return self.advance_to(self.status().tick + ticks)

    def inject_occlusion(self, start_tick: int, end_tick: int | None = None, factor: int = 0) -> None:
        """A catheter occlusion from start_tick (to end_tick; None: never clears); factor 0 total,
        >= 2 partial (outlet resistance times factor)."""
        self.link.request(m.InjectOcclusion(start_tick, end_tick, factor))

    def inject_mri(self, start_tick: int, end_tick: int) -> None:
        """An MRI scan whose magnet holds the rotor from start_tick to end_tick."""
        self.link.request(m.InjectMri(start_tick, end_tick))

    def inject_battery_drain(self, at_tick: int, charge_nc: int) -> None:
        """Draw `charge_nc` from the battery at `at_tick`."""
        self.link.request(m.InjectBatteryDrain(at_tick, charge_nc))

    def inject_stall(self, start_tick: int, end_tick: int | None = None) -> None:
        """A mechanically jammed rotor from start_tick (to end_tick; None: never frees)."""
        self.link.request(m.InjectStall(start_tick, end_tick))

    def inject_reset(self, at_tick: int) -> None:
        """A processor reset at `at_tick`: the pump rebuilds its state from its event log."""
        self.link.request(m.InjectReset(at_tick))

    # ---- helpers --------------------------------------------------------------------------------------

    def _one(self, command: Command, expected: type | tuple[type, ...]) -> Any:
        answers = self.execute(command)
        if len(answers) != 1 or not isinstance(answers[0], expected):
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise UnexpectedAnswer(f"{type(command).__name__} answered {answers!r}; expected one {names}")
        return answers[0]
