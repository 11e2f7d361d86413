"""Judge a recording again, without the device: `ithil replay FILE`.

Each section of a recording (hil.recording) holds one scenario run: the scenario and the rig as
they were parsed, every frame both ways and every balance line. Replaying runs the very same
runner on the very same scenario, but the session's client answers from the recording: each
command the runner sends is matched with the next command the host sent then (resends of the
same seq skipped), must be the same message, and gets the answers the device gave (its Naks
included) and the telemetry that came with them. The reference model and the tolerances are the
current ones (the recorded rig's, or another rig file's), so a recording made with an older model
or a tighter tolerance is judged anew.

A recording that ends early (a cut file, a run that crashed) is judged as far as it goes: the
scenario ends with an ERROR naming where the recording stopped, the checks made before it kept.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from firmware_model.plant import Plant
from protocol import Decoder, Key, NakReason, Role, Signer
from protocol.signing import SECRET_SIZE
from protocol.messages import Nak, Telemetry

from .balance import parse_mass_ug
from .client import PumpClient
from .errors import HilError, PumpRefused, RigConfigError
from .fixture import FixtureAdvancing, PlantFixture
from .link import HISTORY_FRAMES, LinkStats, signer_for
from .recording import Packet, Recording, Section
from .rig import Rig, RigConfig, rig_config
from .runner import Progress, run_scenario
from .scenario import Scenario, scenario_from
from .session import RigSession
from .verdicts import ScenarioResult


class ReplayError(HilError):
    """A recording that does not fit the scenario replayed from it, or that ends before it does:
    names the packet and what the scenario asked for there."""


class RecordedLink:
    """The link's `request` and `telemetry`, answered from a recording's pump frames."""

    answer_timeout_s = max_wait_s = 0.0      # nothing to wait for: the recording holds what came

    def __init__(self, packets: list[Packet]) -> None:
        self.stats = LinkStats()
        self.history: collections.deque[tuple[str, int, Any]] = collections.deque(maxlen=HISTORY_FRAMES)
        # a recording keeps no keys: a damaged frame is built again under stand-ins, to match its length
        self.signers = {role: Signer(Key(0, bytes(SECRET_SIZE), role)) for role in (Role.CLINICIAN, Role.PATIENT)}
        decoder = Decoder()
        self._frames: list[tuple[int, bool, Any]] = []   # (packet index, outbound, Frame; None: a damaged one)
        for index, packet in enumerate(packets):
            if packet.interface == "pump":
                frames = decoder.feed(packet.data)
                if packet.outbound and not frames:
                    self._frames.append((index, True, None))      # written damaged on purpose (hil.damage)
                for frame in frames:
                    self._frames.append((index, packet.outbound, frame))
        self._packets = packets
        self.bad_frames = {k.value: v for k, v in decoder.counts.items() if v}
        self._next = 0
        self._last_seq: int | None = None
        self._telemetry: collections.deque[Any] = collections.deque()

    def request(self, message: Any, *, expect: int = 1, timeout_s: float | None = None) -> list[Any]:
        """The recorded answers to this command (PumpRefused for a recorded Nak)."""
        name = type(message).SPEC.name
        sent = self._next_command(name)
        if sent.message != message:
            raise ReplayError(f"packet {self._packet_of(sent)}: the scenario sends {message!r} here; the recording "
                              f"holds {sent.message!r}: expected the scenario that was recorded")
        self.history.append(("->", sent.seq, sent.message))
        self.stats.commands += 1
        answers: dict[bytes, Any] = {}
        while True:
            if self._next >= len(self._frames):
                raise ReplayError(f"the recording ends before the answer to {name} (seq {sent.seq}); "
                                  f"{len(answers)} of {expect} answer frames recorded")
            _, outbound, frame = self._frames[self._next]
            self._next += 1
            if outbound:
                continue                     # a resend of this command while it waited
            self.history.append(("<-", frame.seq, frame.message))
            if type(frame.message) is Telemetry:
                self._telemetry.append(frame.message)
                continue
            if frame.seq != sent.seq or frame.inner in answers:
                continue                     # a late or duplicated answer to an earlier command
            if type(frame.message) is Nak and NakReason(frame.message.reason) not in (NakReason.BAD_CRC,
                                                                                      NakReason.REPLAY, NakReason.BUSY):
                nak = frame.message
                raise PumpRefused(name, NakReason(nak.reason), nak.field, nak.value, nak.expected, frame.seq)
            if type(frame.message) is Nak:
                continue                     # a link-level Nak the live link resent past
            answers[frame.inner] = frame.message
            if not frame.more and len(answers) >= expect:
                self.stats.answered += 1
                return list(answers.values())

    def signer_for(self, message: Any) -> Signer | None:
        return signer_for(self.signers, message)

    def next_seq(self) -> int:
        """A seq for a damaged frame built again (the recorded one's is not compared)."""
        return 1

    def exchange(self, data: bytes, seq: int, wait_s: float) -> list[Any]:
        """The answers recorded to the next frame written as it was (Link.exchange): those that came
        before the host wrote again, up to the last one; the frame's length must be the recorded one's."""
        while self._next < len(self._frames):
            index, outbound, frame = self._frames[self._next]
            self._next += 1
            if outbound:
                break
            if type(frame.message) is Telemetry:
                self._telemetry.append(frame.message)
        else:
            raise ReplayError(f"the recording ends before the scenario's next frame, one of {len(data)} bytes written "
                              "as it is")
        written = self._packets[index].data
        if len(written) != len(data):
            raise ReplayError(f"packet {index}: the scenario writes {len(data)} bytes as they are here; the recording "
                              f"holds {len(written)}: expected the scenario that was recorded")
        self._last_seq = frame.seq if frame is not None else None
        self.history.append(("->", self._last_seq or 0, f"{len(data)} bytes written as they are"))
        answers: list[Any] = []
        while self._next < len(self._frames) and not self._frames[self._next][1]:
            _, _, answer = self._frames[self._next]
            self._next += 1
            self.history.append(("<-", answer.seq, answer.message))
            if type(answer.message) is Telemetry:
                self._telemetry.append(answer.message)
                continue
            answers.append(answer.message)
            if not answer.more:
                break
        return answers

    def _next_command(self, name: str) -> Any:
        while self._next < len(self._frames):
            index, outbound, frame = self._frames[self._next]
            self._next += 1
            if not outbound:
                if type(frame.message) is Telemetry:
                    self._telemetry.append(frame.message)
                continue
            if frame is None:
                raise ReplayError(f"packet {index}: a frame written damaged where the scenario sends {name}: "
                                  "expected the scenario that was recorded")
            if frame.seq == self._last_seq:
                continue                     # a resend: the live link's, already answered
            self._last_seq = frame.seq
            return frame
        raise ReplayError(f"the recording ends before the scenario's next command, {name}")

    def _packet_of(self, frame: Any) -> int:
        return next(i for i, _, f in self._frames if f is frame)

    def telemetry(self, wait_s: float = 0.0) -> Iterator[Any]:
        while self._telemetry:
            yield self._telemetry.popleft()

    def close(self) -> None:
        """Nothing to release."""


class RecordedClient(PumpClient):
    """PumpClient's methods, answered by a RecordedLink (nothing is opened)."""

    def __init__(self, link: RecordedLink, url: str) -> None:  # noqa: D107 - no transport: the recording is the line
        self.link = link  # type: ignore[assignment]
        self.transport = None  # type: ignore[assignment]
        self.advance_timeout_s = 0.0
        self.pump = None
        self._url = url

    @property
    def url(self) -> str:
        return f"recording of {self._url}"


class RecordedFixtureClient(FixtureAdvancing, RecordedClient):
    """A recorded pump that had a bench fixture: the fixture's plant runs again on the recorded
    reports, so every FixtureAdvance is the one sent then (and a changed plant shows as a mismatch)."""

    def __init__(self, link: RecordedLink, url: str, plant: Plant) -> None:  # noqa: D107
        super().__init__(link, url)
        self.fixture = PlantFixture(plant)


class RecordedBalance:
    """BalanceReader's reading, from the recorded balance lines in order."""

    def __init__(self, packets: list[Packet]) -> None:
        self._lines = [p for p in packets if p.interface == "balance"]
        self._next = 0

    def mass_ug(self) -> int:
        lines = self._lines
        while self._next < len(lines):
            line = lines[self._next]
            self._next += 1
            if line.outbound and line.data.decode("utf-8", "replace").strip().upper() in ("MEAS:MASS?", "MEASURE:MASS?"):
                if self._next >= len(lines) or lines[self._next].outbound:
                    break
                reply = lines[self._next].data.decode("utf-8", "replace")
                self._next += 1
                return parse_mass_ug(reply, "recorded balance")
        raise ReplayError("the recording ends before the scenario's next balance reading")

    def close(self) -> None:
        """Nothing to release."""


class ReplaySession(RigSession):
    """A session on a recording: faults were injected (or not) when it was made, so an instrument
    or operator fault has nothing to do now; test-mode ones are matched like any command."""

    def act(self, fault: str, phase: str, **values: Any) -> None:
        self.method(fault)


class ReplayRig(Rig):
    """A rig whose every session replays one recorded section (the device is the recording)."""

    kind = "replay"

    def __init__(self, config: RigConfig, section: Section) -> None:  # noqa: D107 - no [device] to read
        self.config = config
        self.section = section

    def open(self, prompt: Callable[[str], None] | None = None) -> RigSession:
        packets = self.section.packets
        cfg, url = self.config, str(self.section.meta.get("url", "?"))
        link = RecordedLink(packets)
        if cfg.device.get("fixture") is True:
            plant = Plant(cfg.plant_params, seed=cfg.plant_seed, stroke_nl=cfg.pump.mechanism.stroke_nl)
            client: RecordedClient = RecordedFixtureClient(link, url, plant)
        else:
            client = RecordedClient(link, url)
        balance = RecordedBalance(packets) if any(p.interface == "balance" for p in packets) else None
        return ReplaySession(client, balance, self.config.faults, prompt, None,  # type: ignore[arg-type]
                             f"recording of {self.config.name}")


def section_scenario(section: Section) -> Scenario:
    meta = section.meta.get("scenario") or {}
    if not isinstance(meta.get("document"), Mapping):
        raise ReplayError("a section without its scenario: expected a recording made by ithil run --record")
    return scenario_from(meta["document"], str(meta.get("source", "recording")))


def section_rig(section: Section) -> RigConfig:
    meta = section.meta.get("rig") or {}
    if not isinstance(meta.get("document"), Mapping):
        raise ReplayError("a section without its rig: expected a recording made by ithil run --record")
    return rig_config(meta["document"], Path(str(meta.get("folder", "."))))


def replay(recording: Recording, rig: RigConfig | None = None, progress: Progress | None = None
           ) -> list[ScenarioResult]:
    """Judge every scenario of a recording (hil.recording.read_recording) again. `rig`: judge with
    this rig's model and tolerances instead of the recorded rig's."""
    results = []
    for index, section in enumerate(recording.sections):
        try:
            scenario = section_scenario(section)
            config = rig if rig is not None else section_rig(section)
        except (HilError, RigConfigError) as exc:
            raise ReplayError(f"section {index + 1}: {exc}") from None
        if progress is not None:
            progress.scenario_started(scenario.id, scenario.title, scenario.end_tick)
        result = run_scenario(ReplayRig(config, section), scenario, progress)
        if progress is not None:
            progress.scenario_finished(result)
        results.append(result)
    return results
