"""The emulated pump: the reference model and its plant behind the wire protocol.

`EmulatedDevice.receive(data)` takes bytes from the host in any chunking and returns the bytes the
pump sends back: the answers of every complete frame, in order (a command the model answers with
several responses gets them all under its seq, all but the last flagged MORE). It is synchronous
and knows no transport: the emulator server (pty or TCP) and the host's `emu://` port both feed it.

What it enforces, as a firmware would:
- signatures and roles (protocol.Verifier): a refused frame is answered with Nak and the
  verifier's reason (UNSIGNED, BAD_SIGNATURE, REPLAY, ROLE_NOT_ALLOWED) and changes nothing;
- test-mode messages (AdvanceTime, Inject*) only when started in test mode, else Nak NOT_IN_TEST_MODE;
- every bad frame whose header could be read gets the decoder's Nak (BAD_CRC, MALFORMED, ...);
  messages the pump itself sends (TO_HOST) are dropped unanswered, so two devices never ping-pong.

The link layer's device half: a window of the WINDOW_SIZE most recent commands, keyed by who sent
them (signing key id and link id; unsigned frames share one key) and their u16 seq, holds each
one's encoded answer. A frame whose key, seq, message id and payload match an entry is answered
with the stored bytes and not run again: a retried bolus (same seq, a fresh signature) is never
delivered twice, and an exact copy of an answered frame (a duplicate on the line, which the
verifier calls a replay) gets the same answer rather than a Nak. Same seq with another message or
payload is a new command (the entry is replaced); a seq comes round again only after 65,536
commands, long after its entry left the window. A Hello with a seq other than the last Hello's
opens a new session and empties the window, so a host that restarts its numbering cannot get an
old answer; a host should still start each session at a fresh (e.g. random) seq. Link-level
refusals (bad frames, signatures) are not kept: a retry of them is judged afresh.

Time: the controller's tick is the pump's clock. Lockstep (default): only AdvanceTime moves it.
Scaled and real time: the server calls `advance_to(tick)` from the wall clock and AdvanceTime is
refused. Telemetry is the device's: one frame every `telemetry_period_ticks` of device time (1 s by
default; None: none), emitted as time crosses each multiple of the period, so a lockstep
AdvanceTime answers with the telemetry of the span and then its Ack, and `advance_to` returns the
frames for the server to send. The telemetry counter runs on across resets.

Faults (test mode): InjectOcclusion and InjectMri become plant faults (an InjectOcclusion with
the start_tick of one already injected re-times its end: that is how an open-ended occlusion is
cleared); InjectReset rebuilds the controller from its event log with `Controller.rebuild`, as a
firmware restarts; the link window, the verifier's timestamps and the telemetry counter are kept
across it (a firmware keeps them in retained memory), so a retried command is not run twice even
across a reset. InjectBatteryDrain draws charge through `Controller.drain_battery`; InjectStall
jams the rotor in the plant (a held rotor without an MRI's EMI).

State file (`state_path`): the event log and what a restart needs beside it (tick, config
fingerprint, verifier timestamps, link window, telemetry counter, the plant's outlet and faults),
written atomically (temp file, os.replace) after every receive that saw a frame and every
advance that logged a record; at start a present file is loaded and the controller rebuilt from
its log at the saved tick, as a pump restarts after power loss.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from firmware_model import codec
from firmware_model.commands import StatusReport
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import CommandRefused, ModelError, NotAllowedNow
from firmware_model.event_log import EventLog
from firmware_model.plant import Jam, MriExposure, Occlusion, OutletState, Plant
from firmware_model.units import TICK_HZ
from protocol import Decoder, Frame, Key, NakReason, Role, SignatureError, Verifier, encode_frame
from protocol import messages as m
from protocol.enums import Direction
from protocol.framing import HEADER_SIZE
from protocol.messages import SUPPORTED_VERSIONS, negotiate_version

from .errors import DeviceStateError, EmulatorConfigError
from .reference import ReferencePump
from .wire_model import (COMMAND_TYPES, answers_to_wire, command_from_wire, fit_text, log_records, mri_from_wire,
                         occlusion_from_wire, refusal_to_nak, telemetry_message)

WINDOW_SIZE = 128
TELEMETRY_PERIOD_TICKS = TICK_HZ  # one Telemetry frame per second of device time
FIRMWARE = "ithil-emulator 0.1.0 (firmware_model reference)"
DEFAULT_SERIAL_NUMBER = 0x17_41_00_01
CLINICIAN_TEST_KEY_ID = 1
PATIENT_TEST_KEY_ID = 2
_STATE_MAGIC = b"ITHILDEV"
_STATE_VERSION = 1
_STATE_HEADER = struct.Struct("<8sHI")  # magic, version, JSON metadata length; the event log follows

WindowKey = tuple[int | None, int | None, int]  # (key id, link id, seq); ids None for unsigned frames


def default_test_keys() -> tuple[Key, Key]:
    """The emulator's TEST keys: a clinician key (id 1) and a patient key (id 2) whose secrets are
    fixed and public (SHA-256 of a label), so hosts and emulators agree without setup. Never give
    them to anything that is not a test rig."""
    return (Key(CLINICIAN_TEST_KEY_ID, hashlib.sha256(b"ithil test key: clinician").digest(), Role.CLINICIAN),
            Key(PATIENT_TEST_KEY_ID, hashlib.sha256(b"ithil test key: patient").digest(), Role.PATIENT))


def window_key(frame: Frame) -> WindowKey:
    """Who sent a frame and its seq: the link window's key."""
    sig = frame.signature
    return (None, None, frame.seq) if sig is None else (sig.key_id, sig.link_id, frame.seq)


def command_digest(frame: Frame) -> bytes:
    """What makes two frames the same command: message id and payload (not the signature)."""
    inner = frame.inner
    length = inner[5] | inner[6] << 8
    return inner[4:5] + inner[HEADER_SIZE:HEADER_SIZE + length]


class AnswerWindow:
    """The encoded answers of the most recent commands, by window key (oldest evicted first)."""

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        if size < 1:
            raise EmulatorConfigError(f"window size = {size}: expected at least 1 command")
        self.size = size
        self.entries: collections.OrderedDict[WindowKey, tuple[bytes, bytes]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, key: WindowKey, digest: bytes) -> bytes | None:
        """The stored answer of this very command, or None."""
        entry = self.entries.get(key)
        return entry[1] if entry is not None and entry[0] == digest else None

    def store(self, key: WindowKey, digest: bytes, answer: bytes) -> None:
        self.entries.pop(key, None)
        self.entries[key] = (digest, answer)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


class _RepeatAwareVerifier:
    """The pump's Verifier, except that an exact copy of a frame the window has answered (which the
    verifier sees as a replay: its MAC verifies, its timestamp is not new) passes, to be answered
    again from the window."""

    def __init__(self, verifier: Verifier, window: AnswerWindow) -> None:
        self.verifier = verifier
        self.window = window

    def check(self, frame: Frame) -> Role | None:
        try:
            return self.verifier.check(frame)
        except SignatureError as exc:
            if exc.nak == NakReason.REPLAY and self.window.lookup(window_key(frame), command_digest(frame)) is not None:
                return None
            raise


class EmulatedDevice:
    """The reference model and its plant behind the protocol (see the module docstring)."""

    def __init__(self, config: PumpConfig | None = None, plant: Plant | None = None,
                 keys: Iterable[Key] = default_test_keys(), test_mode: bool = False,
                 state_path: Path | str | None = None, *, lockstep: bool = True,
                 telemetry_period_ticks: int | None = TELEMETRY_PERIOD_TICKS,
                 serial_number: int = DEFAULT_SERIAL_NUMBER, controller_type: type[Controller] = Controller) -> None:
        """A pump just implanted, or the one `state_path` holds. `plant` is the patient and world
        (default: an open catheter, seed 0); `lockstep` False when a wall clock drives time;
        `controller_type` another controller (a firmware variant) behind the same wire."""
        self.pump = ReferencePump(config, plant, controller_type)
        self.config = self.pump.config
        self.plant = self.pump.plant
        self.keys = tuple(keys)
        self.test_mode = test_mode
        self.lockstep = lockstep
        if telemetry_period_ticks is not None and telemetry_period_ticks < 1:
            raise EmulatorConfigError(f"telemetry_period_ticks = {telemetry_period_ticks}: expected >= 1 tick, "
                                      "or None for no telemetry")
        self.telemetry_period_ticks = telemetry_period_ticks
        self.serial_number = serial_number
        self.state_path = Path(state_path) if state_path is not None else None
        self.verifier = Verifier(self.keys)
        self.window = AnswerWindow()
        self.decoder = Decoder(_RepeatAwareVerifier(self.verifier, self.window))
        self.telemetry_counter = 0
        self.executed: collections.Counter[str] = collections.Counter()  # commands run, by message name
        self.repeats = 0          # commands answered again from the window
        self.ignored = 0          # frames of messages the pump sends, dropped
        self.naks: collections.Counter[NakReason] = collections.Counter()
        self._last_hello_seq: int | None = None
        self._telemetry_out: list[bytes] = []
        self._saved_log_seq = -1
        if self.state_path is not None:
            if self.state_path.exists():
                self._load(self.state_path)
            self._save()

    # ---- the pump's present -----------------------------------------------------------------

    @property
    def now(self) -> int:
        """The pump's present tick."""
        return self.pump.now

    @property
    def controller(self) -> Controller:
        """The pump's controller (replaced by a new one at each reset)."""
        return self.pump.controller

    @property
    def resets(self) -> int:
        return self.pump.resets

    def status(self) -> StatusReport:
        """The model's StatusReport at the present tick (for tests and the server's log)."""
        return self.controller.status()

    # ---- bytes in, bytes out ----------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the host (any chunking); return what the pump sends back, in order."""
        out: list[bytes] = []
        seen = self.decoder.frames_seen
        start, n = 0, len(data)
        while start < n:
            end = data.find(b"\x00", start)
            piece = data[start:] if end < 0 else data[start:end + 1]
            start = n if end < 0 else end + 1
            for frame in self.decoder.feed(piece):  # at most one frame or one rejection per piece
                out.append(self._answer(frame))
            self._answer_rejections(out)
        if self.decoder.frames_seen != seen:
            self._save_if_stateful()
        return b"".join(out)

    def line_reset(self) -> None:
        """The line was cut (a client went away): a frame begun on it will never end, so it is
        dropped unanswered (the decoder counts it as the bad frame it is)."""
        if self.decoder.buffered:
            self.decoder.feed(b"\x00")
            self.decoder.rejections.clear()

    def advance_to(self, tick: int) -> bytes:
        """Run the pump to `tick` (a wall clock's, in scaled or real time; earlier ticks are
        ignored); returns the Telemetry frames due on the way, for the server to send."""
        if tick <= self.now:
            return b""
        out = self._run_to(tick)
        if self.controller.log.next_seq != self._saved_log_seq:
            self._save_if_stateful()
        return out

    def telemetry(self, tick: int | None = None) -> bytes:
        """One Telemetry frame at `tick` (run to first, without the periodic frames) or now; its
        counter goes up by one per frame."""
        if tick is not None:
            self.pump.advance_to(tick)
        frame = encode_frame(telemetry_message(self.controller, self.telemetry_counter), 0)
        self.telemetry_counter = (self.telemetry_counter + 1) & 0xFFFFFFFF
        return frame

    def reset(self, tick: int | None = None) -> None:
        """A processor reset at `tick` (default now): the controller's RAM is lost and rebuilt from
        the event log in flash (Controller.rebuild); the plant, the world outside, runs on."""
        self.pump.reset(tick)

    # ---- frames -----------------------------------------------------------------------------

    def _answer(self, frame: Frame) -> bytes:
        spec = type(frame.message).SPEC
        if spec.direction is Direction.TO_HOST:
            self.ignored += 1
            return b""
        key, digest = window_key(frame), command_digest(frame)
        stored = self.window.lookup(key, digest)
        if stored is not None:
            self.repeats += 1
            return stored
        answers = self._run(frame)
        encoded = b"".join(encode_frame(a, frame.seq, more=i < len(answers) - 1) for i, a in enumerate(answers))
        for a in answers:
            if type(a) is m.Nak:
                self.naks[a.reason] += 1
        self.window.store(key, digest, encoded)
        telemetry, self._telemetry_out = b"".join(self._telemetry_out), []
        return telemetry + encoded

    def _answer_rejections(self, out: list[bytes]) -> None:
        rejections = self.decoder.rejections
        while rejections:
            rej = rejections.popleft()
            if rej.nak is None:
                continue
            self.naks[rej.nak] += 1
            nak = m.Nak(rej.msg_id or 0, rej.nak, "", "", fit_text(rej.detail, 255))
            out.append(encode_frame(nak, rej.seq or 0))

    def _run(self, frame: Frame) -> list[Any]:
        """Run one command (it is not in the window); its answers as wire messages."""
        message = frame.message
        spec = type(message).SPEC
        if spec.test_mode and not self.test_mode:
            return [m.Nak(spec.msg_id, NakReason.NOT_IN_TEST_MODE, "", "",
                          "a pump started in test mode (an emulated rig: ithil emulate --test-mode)")]
        self.executed[spec.name] += 1
        try:
            if type(message) in COMMAND_TYPES:
                return answers_to_wire(self.pump.handle(command_from_wire(message)), spec.msg_id)
            return self._HANDLERS[type(message)](self, frame)
        except CommandRefused as exc:
            return [refusal_to_nak(exc, spec.msg_id)]

    def _hello(self, frame: Frame) -> list[Any]:
        hello = frame.message
        version = negotiate_version(hello.min_version, hello.max_version)
        if version is None:
            return [m.Nak(m.Hello.MSG_ID, NakReason.UNSUPPORTED_VERSION, "min_version..max_version",
                          f"{hello.min_version}..{hello.max_version}",
                          f"a range that includes one of {list(SUPPORTED_VERSIONS)}")]
        if frame.seq != self._last_hello_seq:  # a new session: answers of the old one must not be reused
            self.window.clear()
            self._last_hello_seq = frame.seq
        mech = self.config.mechanism
        return [m.HelloReply(version, FIRMWARE, self.serial_number, self.test_mode, TICK_HZ,
                             self.config.reservoir_capacity_nl, mech.stroke_nl)]

    def _read_log(self, frame: Frame) -> list[Any]:
        return [log_records(self.controller.log, frame.message.first_seq, frame.message.count)]

    def _advance_time(self, frame: Frame) -> list[Any]:
        to_tick = frame.message.to_tick
        if not self.lockstep:
            raise NotAllowedNow("AdvanceTime refused: this emulator's time follows the wall clock (scaled or "
                                "real time); expected an emulator started with --time lockstep")
        self.pump.check_not_past("to_tick", to_tick)
        self._telemetry_out.append(self._run_to(to_tick))
        return [m.Ack(_msg_id(frame))]

    def _inject_occlusion(self, frame: Frame) -> list[Any]:
        self.pump.occlusion(occlusion_from_wire(frame.message))
        return [m.Ack(_msg_id(frame))]

    def _inject_mri(self, frame: Frame) -> list[Any]:
        self.pump.mri(mri_from_wire(frame.message))
        return [m.Ack(_msg_id(frame))]

    def _inject_battery_drain(self, frame: Frame) -> list[Any]:
        at_tick = frame.message.at_tick
        self.pump.check_not_past("at_tick", at_tick)
        self._telemetry_out.append(self._run_to(at_tick))
        self.pump.battery_drain(at_tick, frame.message.charge_nc)
        return [m.Ack(_msg_id(frame))]

    def _inject_stall(self, frame: Frame) -> list[Any]:
        self.pump.stall(Jam(frame.message.start_tick, frame.message.end_tick))
        return [m.Ack(_msg_id(frame))]

    def _inject_reset(self, frame: Frame) -> list[Any]:
        at_tick = frame.message.at_tick
        self.pump.check_not_past("at_tick", at_tick)
        if at_tick > self.now and not self.lockstep:
            raise NotAllowedNow(f"InjectReset at tick {at_tick} refused: in scaled or real time a reset happens "
                                f"on receipt; expected at_tick <= the present tick {self.now}")
        self._telemetry_out.append(self._run_to(at_tick))
        self.reset(at_tick)
        return [m.Ack(_msg_id(frame))]

    def _fixture_advance(self, frame: Frame) -> list[Any]:
        raise NotAllowedNow("FixtureAdvance refused: this emulated pump has its own plant and sensors; "
                            "expected AdvanceTime (a bench fixture feeds only a pump without a plant)")

    _HANDLERS: dict[type, Callable[["EmulatedDevice", Frame], list[Any]]] = {
        m.Hello: _hello, m.ReadLog: _read_log, m.AdvanceTime: _advance_time,
        m.InjectOcclusion: _inject_occlusion, m.InjectMri: _inject_mri,
        m.InjectBatteryDrain: _inject_battery_drain, m.InjectStall: _inject_stall, m.InjectReset: _inject_reset,
        m.FixtureAdvance: _fixture_advance,
    }

    # ---- time -------------------------------------------------------------------------------

    def _run_to(self, tick: int) -> bytes:
        """Run the model to `tick`, building a Telemetry frame at each multiple of the period."""
        frames: list[bytes] = []
        period = self.telemetry_period_ticks
        if period:
            due = (self.now // period + 1) * period
            while due <= tick:
                self.pump.advance_to(due)
                frames.append(self.telemetry())
                due += period
        self.pump.advance_to(tick)
        return b"".join(frames)

    # ---- the state file ---------------------------------------------------------------------

    def _save_if_stateful(self) -> None:
        if self.state_path is not None:
            self._save()

    def _save(self) -> None:
        """Write the state file atomically: a temp file beside it, then os.replace."""
        path = self.state_path
        assert path is not None
        meta = {
            "config_sha256": self.config.fingerprint().hex(),
            "tick": self.now,
            "telemetry_counter": self.telemetry_counter,
            "last_hello_seq": self._last_hello_seq,
            "timestamps": [[k, link, ts] for (k, link), ts in self.verifier.last_timestamps.items()],
            "window": [[k[0], k[1], k[2], d.hex(), a.hex()] for k, (d, a) in self.window.entries.items()],
            "outlet": codec.encode(self.plant.state).hex(),
            "occlusions": [[o.start_tick, o.end_tick, o.factor] for o in self.plant.occlusions],
            "mri": [[x.start_tick, x.end_tick] for x in self.plant.mri],
            "jams": [[x.start_tick, x.end_tick] for x in self.plant.jams],
        }
        body = json.dumps(meta, separators=(",", ":")).encode("utf-8")
        data = _STATE_HEADER.pack(_STATE_MAGIC, _STATE_VERSION, len(body)) + body + self.controller.log.to_bytes()
        try:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise DeviceStateError(f"{path}: cannot write the pump's state file there ({exc.strerror}); "
                                   "expected a writable folder") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._saved_log_seq = self.controller.log.next_seq

    def _load(self, path: Path) -> None:
        """Restart from a state file: the controller rebuilt from its log at the saved tick."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DeviceStateError(f"{path}: cannot read the pump's state file: {exc.strerror}") from None
        try:
            if len(data) < _STATE_HEADER.size:
                raise ValueError(f"{len(data)} bytes; expected at least {_STATE_HEADER.size}")
            magic, version, n = _STATE_HEADER.unpack_from(data)
            if magic != _STATE_MAGIC or version != _STATE_VERSION:
                raise ValueError(f"header {magic!r} v{version}; expected {_STATE_MAGIC!r} v{_STATE_VERSION}")
            meta = json.loads(data[_STATE_HEADER.size:_STATE_HEADER.size + n])
            log = EventLog.from_bytes(data[_STATE_HEADER.size + n:])
            if meta["config_sha256"] != self.config.fingerprint().hex():
                raise DeviceStateError(f"{path}: written by a pump of another configuration; expected one made "
                                       "with this device's PumpConfig (or delete the file to start afresh)")
            self.plant.state = codec.decode(bytes.fromhex(meta["outlet"]), OutletState)
            self.plant.occlusions = tuple(Occlusion(s, e, f) for s, e, f in meta["occlusions"])
            self.plant.mri = tuple(MriExposure(s, e) for s, e in meta["mri"])
            self.plant.jams = tuple(Jam(s, e) for s, e in meta.get("jams", []))
            self.plant.present_tick = int(meta["tick"])
            self.pump.restart(log, int(meta["tick"]))
            self.verifier.last_timestamps = {(k, link): ts for k, link, ts in meta["timestamps"]}
            for k, link, seq, digest, answer in meta["window"]:
                self.window.store((k, link, seq), bytes.fromhex(digest), bytes.fromhex(answer))
            self.telemetry_counter = int(meta["telemetry_counter"])
            self._last_hello_seq = meta["last_hello_seq"]
        except DeviceStateError:
            raise
        except (ValueError, KeyError, TypeError, ModelError) as exc:
            raise DeviceStateError(f"{path}: not a readable pump state file ({exc}); expected one this "
                                   "emulator wrote (or delete it to start afresh)") from None


def _msg_id(frame: Frame) -> int:
    """The msg_id of a frame's message (what an Ack names)."""
    return type(frame.message).SPEC.msg_id


__all__ = ["EmulatedDevice", "AnswerWindow", "default_test_keys", "WINDOW_SIZE", "TELEMETRY_PERIOD_TICKS",
           "CLINICIAN_TEST_KEY_ID", "PATIENT_TEST_KEY_ID"]
