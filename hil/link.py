"""The host's link layer: one command at a time, each answered once, over any Transport.

What it does for every command (docs/protocol.md, "Sequence numbers and answers"):
- gives it the next sequence number (u16; 1..65535 then 1 again: seq 0 is telemetry's), starting
  at a random one unless told, so that a new session never meets an old answer in the pump's
  window (hil/device.py keeps one per signing key and link);
- signs it when its access needs a signature, with the least role the link holds that may send
  it; a link without such a key sends it anyway (signed by a weaker key, or unsigned) so that
  the pump's refusal, not the host's, is what a test sees;
- waits for its answers: frames with the same seq, all but the last flagged "more";
- on a time-out sends it again with the SAME seq and a fresh signature (the pump answers a
  repeated seq from its window without doing the command twice), waiting longer each time
  (`answer_timeout_s * backoff ** attempt`, at most `max_wait_s`), at most `max_attempts` sends;
- a Nak BAD_CRC (our frame was damaged on the way) or REPLAY (an older send of ours arrived after
  a newer one, or a signing clock behind the pump's) is sent again at once, freshly signed; BUSY
  is waited out; any other Nak ends the command with PumpRefused, which names the command, the
  reason, field, value and limit; a Nak that is still resendable after the last attempt ends it
  the same way;
- answers to a seq no longer outstanding (duplicates, late copies) are counted and dropped;
- Telemetry frames are put aside for `telemetry()`; their own counter shows what was lost.

Every frame the decoder drops is counted by its BadFrame reason (`stats.bad_frames`).
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from protocol import Access, BadFrame, Decoder, Frame, NakReason, Role, Signer, encode_frame
from protocol.messages import Nak, Telemetry

from .errors import LinkError, LinkTimeout, PumpRefused, UnexpectedAnswer
from .transport import Transport

SEQ_LIMIT = 1 << 16
TELEMETRY_COUNTER_LIMIT = 1 << 32
RESEND_AT_ONCE = frozenset({NakReason.BAD_CRC, NakReason.REPLAY})
WAIT_OUT = frozenset({NakReason.BUSY})
MISSING_TELEMETRY_KEPT = 4096   # counters of lost telemetry remembered, so a late one is not "lost"
HISTORY_FRAMES = 16             # the latest frames each way, kept as the context of a divergence


@dataclass
class LinkStats:
    """What the link did and saw; `bad_frames` comes from the protocol Decoder."""

    commands: int = 0           # requests made
    sent: int = 0               # command frames written, first sends and resends
    retried: int = 0            # resends (same seq)
    answered: int = 0           # commands that got their complete answer (a final Nak included)
    refused: int = 0            # commands ended by a Nak
    timed_out: int = 0          # commands that got no complete answer after every resend
    naks: collections.Counter = field(default_factory=collections.Counter)  # NakReason -> Naks seen
    stale_answers: int = 0      # answer frames for a seq not outstanding (duplicates, late copies)
    telemetry_received: int = 0
    telemetry_lost: int = 0     # counter gaps not (yet) filled by a late frame
    telemetry_late: int = 0     # arrived after a newer one (filled a gap)
    telemetry_duplicates: int = 0
    telemetry_overflow: int = 0  # dropped because nobody read telemetry() and the backlog was full
    bad_frames: dict[BadFrame, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers and names, for a report or a log line."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("naks", "bad_frames")}
        out["naks"] = {NakReason(k).name: v for k, v in sorted(self.naks.items())}
        out["bad_frames"] = {k.value: v for k, v in self.bad_frames.items() if v}
        return out


def attempt_wait_s(attempt: int, first_wait_s: float, backoff: float, max_wait_s: float) -> float:
    """How long send number `attempt` (0 first) waits for its answer: growing by `backoff` each
    resend, never past max_wait_s (nor below the first wait)."""
    return min(first_wait_s * backoff ** attempt, max(max_wait_s, first_wait_s))


def signer_for(signers: Mapping[Role, Signer], message: Any) -> Signer | None:
    """The signer a message goes out with: the least role held that may send it, else the
    strongest held (the pump will refuse it), else None (unsigned; OPEN needs none)."""
    access = type(message).SPEC.access
    if access is Access.OPEN:
        return None
    for role in sorted(signers):
        if role >= access:
            return signers[role]
    return signers[max(signers)] if signers else None


class Link:
    """The host end of a link to a pump: sequence numbers, signing, answers, resends, telemetry."""

    def __init__(self, transport: Transport, signers: Iterable[Signer] = (), *, answer_timeout_s: float = 0.25,
                 backoff: float = 2.0, max_wait_s: float = 2.0, max_attempts: int = 6, first_seq: int | None = None,
                 telemetry_backlog: int = 200_000) -> None:
        if answer_timeout_s <= 0 or backoff < 1 or max_wait_s < answer_timeout_s or max_attempts < 1:
            raise LinkError(f"answer_timeout_s = {answer_timeout_s}, backoff = {backoff}, max_wait_s = {max_wait_s}, "
                             f"max_attempts = {max_attempts}: expected answer_timeout_s > 0, backoff >= 1, "
                             "max_wait_s >= answer_timeout_s and max_attempts >= 1")
        if first_seq is None:   # a fresh session starts at a fresh seq: a pump's window never answers it
            first_seq = random.SystemRandom().randrange(1, SEQ_LIMIT)
        if not 1 <= first_seq < SEQ_LIMIT:
            raise LinkError(f"first_seq = {first_seq}: expected 1..65535 (seq 0 is telemetry's)")
        self.transport = transport
        self.signers: dict[Role, Signer] = {}
        for signer in signers:
            role = signer.key.role
            if role in self.signers:
                raise LinkError(f"two {role.name.lower()} keys given; expected at most one signer per role")
            self.signers[role] = signer
        self.answer_timeout_s = answer_timeout_s
        self.backoff = backoff
        self.max_wait_s = max_wait_s
        self.max_attempts = max_attempts
        self.decoder = Decoder()
        self.stats = LinkStats(bad_frames=self.decoder.counts)
        self._next_seq = first_seq
        self._telemetry: collections.deque[Any] = collections.deque()
        self._telemetry_backlog = telemetry_backlog
        self._last_counter: int | None = None
        self._missing: collections.OrderedDict[int, None] = collections.OrderedDict()
        # ("->" or "<-", seq, message) of the latest frames sent and received, oldest first
        self.history: collections.deque[tuple[str, int, Any]] = collections.deque(maxlen=HISTORY_FRAMES)

    # ---- commands -------------------------------------------------------------------------------

    def signer_for(self, message: Any) -> Signer | None:
        """The signer a message goes out with (signer_for)."""
        return signer_for(self.signers, message)

    def request(self, message: Any, *, expect: int = 1, timeout_s: float | None = None) -> list[Any]:
        """Send a command and return its answer messages, in the pump's order.

        expect: how many answer frames make the answer complete (a ClinicianBolus has two: Ack
        and BolusGranted), so that a lost first frame is asked for again; a Nak is complete alone.
        timeout_s: the first wait for this command (default answer_timeout_s), e.g. longer for
        an AdvanceTime that runs a simulated day.
        Raises PumpRefused on a Nak, LinkTimeout when no complete answer came after every
        resend, UnexpectedAnswer for an answer the command cannot have.
        """
        spec = type(message).SPEC
        seq = self.next_seq()
        self.stats.commands += 1
        first_wait = self.answer_timeout_s if timeout_s is None else timeout_s
        signer = self.signer_for(message)
        got: dict[bytes, Frame] = {}     # answer frames by their bytes: a resent answer is the same frame
        final: Frame | None = None
        last_nak: Any = None
        for attempt in range(self.max_attempts):
            if attempt:
                self.stats.retried += 1
            self.transport.write(encode_frame(message, seq, signer))
            self.history.append(("->", seq, message))
            self.stats.sent += 1
            deadline = time.monotonic() + attempt_wait_s(attempt, first_wait, self.backoff, self.max_wait_s)
            resend = False
            while not resend:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for frame in self._receive(left):
                    if frame.seq != seq:
                        self.stats.stale_answers += 1
                        continue
                    answer = frame.message
                    if type(answer) is Nak:
                        reason = NakReason(answer.reason)
                        self.stats.naks[reason] += 1
                        if reason in RESEND_AT_ONCE or reason in WAIT_OUT:
                            last_nak = answer
                            resend = resend or reason in RESEND_AT_ONCE
                            continue
                        self.stats.answered += 1
                        self.stats.refused += 1
                        raise PumpRefused(spec.name, reason, answer.field, answer.value, answer.expected, seq)
                    if type(answer).SPEC.name not in spec.answers:
                        raise UnexpectedAnswer(f"{spec.name} (seq {seq}) answered by {type(answer).SPEC.name}; "
                                               f"expected one of {', '.join(spec.answers)}")
                    if frame.inner in got:
                        self.stats.stale_answers += 1
                        continue
                    got[frame.inner] = frame
                    if not frame.more:
                        final = frame
                if final is not None and len(got) >= expect:
                    self.stats.answered += 1
                    ordered = [f for f in got.values() if f is not final] + [final]
                    return [f.message for f in ordered]
        if last_nak is not None:
            self.stats.answered += 1
            self.stats.refused += 1
            raise PumpRefused(spec.name, NakReason(last_nak.reason), last_nak.field, last_nak.value,
                                 last_nak.expected, seq)
        self.stats.timed_out += 1
        have = f"{len(got)} of {expect} answer frames" + ("" if final is None else " (the last one among them)")
        raise LinkTimeout(f"{spec.name} (seq {seq}): no complete answer after {self.max_attempts} sends over "
                          f"{self.transport.url}; got {have}; expected {', '.join(spec.answers)} within "
                          f"{first_wait:g} s, waiting up to {self.backoff:g}x longer each resend")

    def exchange(self, data: bytes, seq: int, wait_s: float) -> list[Any]:
        """Write `data` as it is (e.g. a frame damaged on purpose, hil.damage) and return the answer
        messages under `seq`, Naks included, up to the last one (its more flag clear) or until wait_s
        has passed: no resend, nothing raised, so that the caller judges whatever came back."""
        self.transport.write(data)
        self.stats.sent += 1
        self.history.append(("->", seq, f"{len(data)} bytes written as they are"))
        answers: list[Any] = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            for frame in self._receive(left):
                if frame.seq != seq:
                    self.stats.stale_answers += 1
                    continue
                answers.append(frame.message)
                if not frame.more:
                    return answers
        return answers

    def next_seq(self) -> int:
        """Take the next sequence number (request does; exchange's caller must)."""
        seq = self._next_seq
        self._next_seq = seq + 1 if seq + 1 < SEQ_LIMIT else 1
        return seq

    # ---- receiving --------------------------------------------------------------------------------

    def _receive(self, wait_s: float) -> list[Frame]:
        """Read once (waiting up to wait_s); queue telemetry; return the other frames."""
        data = self.transport.read(wait_s)
        if not data:
            return []
        frames = self.decoder.feed(data)
        if not frames:
            return frames
        others = []
        self.history.extend(("<-", frame.seq, frame.message) for frame in frames)
        for frame in frames:
            if type(frame.message) is Telemetry:
                self._note_telemetry(frame.message)
            else:
                others.append(frame)
        return others

    def _note_telemetry(self, message: Any) -> None:
        stats = self.stats
        counter = message.counter
        last = self._last_counter
        if last is not None:
            ahead = (counter - last) % TELEMETRY_COUNTER_LIMIT
            if ahead == 0 or ahead >= TELEMETRY_COUNTER_LIMIT // 2:   # not newer than the last
                if counter in self._missing:
                    del self._missing[counter]
                    stats.telemetry_lost -= 1
                    stats.telemetry_late += 1
                else:
                    stats.telemetry_duplicates += 1
                    return
            else:
                for gap in range(1, min(ahead, MISSING_TELEMETRY_KEPT + 1)):
                    self._missing[(last + gap) % TELEMETRY_COUNTER_LIMIT] = None
                stats.telemetry_lost += ahead - 1
                while len(self._missing) > MISSING_TELEMETRY_KEPT:
                    self._missing.popitem(last=False)
                self._last_counter = counter
        else:
            self._last_counter = counter
        stats.telemetry_received += 1
        if len(self._telemetry) >= self._telemetry_backlog:
            self._telemetry.popleft()
            stats.telemetry_overflow += 1
        self._telemetry.append(message)

    def telemetry(self, wait_s: float = 0.0) -> Iterator[Any]:
        """Telemetry messages: those received so far, then those that arrive until none has come
        for `wait_s` seconds. Answers to no outstanding command are counted as stale and dropped."""
        queue = self._telemetry
        while True:
            while queue:
                yield queue.popleft()
            deadline = time.monotonic() + wait_s
            while not queue:
                left = deadline - time.monotonic()
                stray = self._receive(max(left, 0.0))
                self.stats.stale_answers += len(stray)
                if left <= 0:
                    break
            if not queue:
                return

    def close(self) -> None:
        """Release the transport."""
        self.transport.close()

