"""hil.link: sequence numbers, signing, answers, resends, Naks and telemetry, over a real pty.

The far end is a scripted pump on the pty's master: it decodes what the link sends with the
protocol's own Decoder and answers with frames built by protocol.encode_frame, as a script says
(silent, answered twice, damaged, Nak...). The real emulated pump is behind the client tests.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from typing import Callable, Iterator

import pytest

from hil.errors import HilError, LinkError, LinkTimeout, PumpRefused, UnexpectedAnswer
from hil.link import Link, attempt_wait_s
from hil.transport import Transport
from protocol import BadFrame, Decoder, Frame, Key, NakReason, Role, Signer, encode_frame
from protocol import messages as m
from protocol.enums import BolusKind

CLINICIAN = Key(1, bytes(range(32)), Role.CLINICIAN)
PATIENT = Key(2, bytes(range(1, 33)), Role.PATIENT)
FAST = dict(answer_timeout_s=0.02, max_wait_s=0.05)

Script = Callable[[Frame, int], bytes]   # (frame, how many times its seq has come) -> bytes to send back


class ScriptedPump:
    """A thread on a pty master that answers each frame as the script says, and remembers them."""

    def __init__(self, master: int, script: Script) -> None:
        self.master = master
        self.script = script
        self.frames: list[Frame] = []
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = Decoder()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.01)
            if not ready:
                continue
            for frame in decoder.feed(os.read(self.master, 4096)):
                self.frames.append(frame)
                self.seen[frame.seq] = self.seen.get(frame.seq, 0) + 1
                out = self.script(frame, self.seen[frame.seq])
                if out:
                    os.write(self.master, out)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def scripted_link(script: Script, signers: tuple[Key, ...] = (CLINICIAN,), **options: object) -> Iterator[
        tuple[Link, ScriptedPump]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    pump = ScriptedPump(master, script)
    settings = {**FAST, **options}
    link = Link(Transport(os.ttyname(slave)), [Signer(k) for k in signers], **settings)  # type: ignore[arg-type]
    try:
        yield link, pump
    finally:
        link.close()
        pump.stop()
        os.close(slave)
        os.close(master)


def ack(frame: Frame, _n: int = 1) -> bytes:
    return encode_frame(m.Ack(type(frame.message).MSG_ID), frame.seq)


def program() -> m.ProgramContinuous:
    return m.ProgramContinuous(250_000)


# ---- sequence numbers and signing ------------------------------------------------------------------

def test_each_command_takes_the_next_seq_and_wraps_past_zero() -> None:
    with scripted_link(ack, first_seq=65534) as (link, pump):
        for _ in range(4):
            assert link.request(program()) == [m.Ack(0x12)]
        assert [f.seq for f in pump.frames] == [65534, 65535, 1, 2]     # seq 0 is telemetry's


def test_without_a_given_first_seq_sessions_start_apart() -> None:
    with scripted_link(ack) as (a, pump_a), scripted_link(ack) as (b, pump_b), scripted_link(ack) as (c, pump_c):
        for link in (a, b, c):
            link.request(program())
        assert len({pump_a.frames[0].seq, pump_b.frames[0].seq, pump_c.frames[0].seq}) > 1


def test_a_message_is_signed_with_the_least_role_that_may_send_it() -> None:
    def script(frame: Frame, n: int) -> bytes:
        if isinstance(frame.message, m.Hello):
            return encode_frame(m.HelloReply(1, "fw", 1, False, 32768, 20_000_000, 250), frame.seq)
        if isinstance(frame.message, m.PatientBolusRequest):
            return encode_frame(m.BolusDenied(1, "not configured"), frame.seq)
        return ack(frame)
    with scripted_link(script, signers=(CLINICIAN, PATIENT)) as (link, pump):
        link.request(m.Hello(1, 1, "x"))
        link.request(m.PatientBolusRequest())
        link.request(program())
    keys = [None if f.signature is None else f.signature.key_id for f in pump.frames]
    assert keys == [None, PATIENT.key_id, CLINICIAN.key_id]    # Hello is OPEN: never signed


def test_a_link_without_the_needed_key_sends_what_it_has_and_lets_the_pump_refuse() -> None:
    with scripted_link(ack, signers=(PATIENT,)) as (link, pump):
        link.request(program())
    assert pump.frames[0].signature.key_id == PATIENT.key_id        # the pump says ROLE_NOT_ALLOWED
    with scripted_link(ack, signers=()) as (link, pump):
        link.request(program())
    assert pump.frames[0].signature is None                         # the pump says UNSIGNED


# ---- answers ---------------------------------------------------------------------------------------

def bolus_answer(frame: Frame) -> list[bytes]:
    return [encode_frame(m.Ack(0x15), frame.seq, more=True),
            encode_frame(m.BolusGranted(BolusKind.CLINICIAN, 400, 100_000), frame.seq)]


BOLUS = m.ClinicianBolus(100_000, 32768)


def test_answers_flagged_more_are_collected_to_the_last() -> None:
    with scripted_link(lambda f, n: b"".join(bolus_answer(f))) as (link, _):
        assert link.request(BOLUS, expect=2) == [m.Ack(0x15), m.BolusGranted(BolusKind.CLINICIAN, 400, 100_000)]


def test_answers_that_overtook_each_other_come_back_in_the_pumps_order() -> None:
    with scripted_link(lambda f, n: b"".join(reversed(bolus_answer(f)))) as (link, _):
        assert link.request(BOLUS, expect=2) == [m.Ack(0x15), m.BolusGranted(BolusKind.CLINICIAN, 400, 100_000)]


def test_a_lost_first_answer_is_asked_for_again_with_the_same_seq() -> None:
    # the pump's Ack was lost: only BolusGranted came; the resend gets the stored answer whole
    with scripted_link(lambda f, n: bolus_answer(f)[1] if n == 1 else b"".join(bolus_answer(f))) as (link, pump):
        answer = link.request(BOLUS, expect=2)
    assert answer == [m.Ack(0x15), m.BolusGranted(BolusKind.CLINICIAN, 400, 100_000)]
    assert link.stats.retried == 1 and link.stats.sent == 2
    assert pump.frames[0].seq == pump.frames[1].seq


def test_a_silent_pump_gets_the_same_seq_again_with_a_fresh_signature() -> None:
    with scripted_link(lambda f, n: ack(f) if n == 3 else b"") as (link, pump):
        assert link.request(program()) == [m.Ack(0x12)]
    assert len(pump.frames) == 3 and len({f.seq for f in pump.frames}) == 1
    stamps = [f.signature.timestamp_10us for f in pump.frames]
    assert stamps == sorted(set(stamps))                              # new and newer: never a replay
    assert link.stats.sent == 3 and link.stats.retried == 2 and link.stats.answered == 1


def test_a_pump_that_never_answers_is_a_time_out_after_the_last_attempt() -> None:
    with scripted_link(lambda f, n: b"", max_attempts=3) as (link, pump):
        with pytest.raises(LinkTimeout, match=r"ProgramContinuous \(seq \d+\): no complete answer after 3 sends "
                                              r"over /dev/pts/\d+; got 0 of 1 answer frames"):
            link.request(program())
    assert len(pump.frames) == 3 and link.stats.timed_out == 1 and link.stats.retried == 2


def test_the_back_off_grows_and_is_bounded() -> None:
    waits = [attempt_wait_s(a, 0.1, 2.0, 0.5) for a in range(6)]
    assert waits == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert attempt_wait_s(3, 10.0, 2.0, 0.5) == 10.0      # a command given a long first wait keeps it


def test_a_nak_raises_with_the_command_reason_field_value_and_limit() -> None:
    nak = m.Nak(0x12, NakReason.LIMIT_EXCEEDED, "rate_nl_per_day", "999999999", "48000..24000000 nL/day")
    with scripted_link(lambda f, n: encode_frame(nak, f.seq)) as (link, _):
        with pytest.raises(PumpRefused) as info:
            link.request(program())
    err = info.value
    assert isinstance(err, HilError)
    assert (err.command, err.reason, err.field, err.value, err.expected) == (
        "ProgramContinuous", NakReason.LIMIT_EXCEEDED, "rate_nl_per_day", "999999999", "48000..24000000 nL/day")
    assert str(err) == ("ProgramContinuous refused by the pump: LIMIT_EXCEEDED: rate_nl_per_day = 999999999; "
                        "expected 48000..24000000 nL/day")
    assert link.stats.refused == 1 and link.stats.naks == {NakReason.LIMIT_EXCEEDED: 1} and link.stats.sent == 1


def test_a_command_the_pump_got_damaged_is_sent_again_with_its_seq() -> None:
    bad_crc = m.Nak(0x12, NakReason.BAD_CRC, "", "", "CRC mismatch")
    with scripted_link(lambda f, n: encode_frame(bad_crc, f.seq) if n == 1 else ack(f)) as (link, pump):
        assert link.request(program()) == [m.Ack(0x12)]
    assert link.stats.naks == {NakReason.BAD_CRC: 1} and link.stats.retried == 1 and link.stats.refused == 0
    assert len(pump.frames) == 2 and pump.frames[0].seq == pump.frames[1].seq


def test_busy_is_waited_out_then_resent() -> None:
    busy = m.Nak(0x12, NakReason.BUSY, "", "", "")
    with scripted_link(lambda f, n: encode_frame(busy, f.seq) if n == 1 else ack(f)) as (link, _):
        assert link.request(program()) == [m.Ack(0x12)]
    assert link.stats.naks == {NakReason.BUSY: 1} and link.stats.retried == 1


def test_replays_to_the_last_attempt_end_in_a_refusal() -> None:
    replay = m.Nak(0x12, NakReason.REPLAY, "", "", "newer than 5")
    with scripted_link(lambda f, n: encode_frame(replay, f.seq), max_attempts=4) as (link, pump):
        with pytest.raises(PumpRefused, match="ProgramContinuous refused by the pump: REPLAY; expected newer than 5"):
            link.request(program())
    assert len(pump.frames) == 4 and link.stats.naks == {NakReason.REPLAY: 4}


def test_answers_to_other_seqs_and_repeated_answers_are_dropped_and_counted() -> None:
    def script(frame: Frame, n: int) -> bytes:
        other = encode_frame(m.Ack(0x12), (frame.seq + 100) % 65536)
        return other + ack(frame) + ack(frame)
    with scripted_link(script) as (link, _):
        assert link.request(program()) == [m.Ack(0x12)]
        assert link.request(program()) == [m.Ack(0x12)]
    # the first command's second Ack arrives while the second command waits: stale too
    assert link.stats.stale_answers >= 3 and link.stats.answered == 2


def test_an_answer_the_command_cannot_have_is_an_error() -> None:
    with scripted_link(ack) as (link, _):
        with pytest.raises(UnexpectedAnswer, match="GetStatus .* answered by Ack; expected one of StatusReport, Nak"):
            link.request(m.GetStatus())


def test_bad_frames_are_counted_by_reason_and_the_answer_still_comes() -> None:
    def script(frame: Frame, n: int) -> bytes:
        good = ack(frame)
        damaged = bytearray(good)
        damaged[3] ^= 0x10
        return b"\x05garbage\x00" + bytes(damaged) + good
    with scripted_link(script) as (link, _):
        assert link.request(program()) == [m.Ack(0x12)]
    bad = {reason: n for reason, n in link.stats.bad_frames.items() if n}
    assert sum(bad.values()) == 2 and bad.get(BadFrame.CRC, 0) + bad.get(BadFrame.COBS, 0) >= 1
    assert link.stats.as_dict()["bad_frames"] == {r.value: n for r, n in bad.items()}


# ---- telemetry ---------------------------------------------------------------------------------------

def telemetry(counter: int) -> bytes:
    return encode_frame(m.Telemetry(counter, counter * 32768, counter, 20_000_000, 0, 0, 0), 0)


def test_telemetry_is_put_aside_and_its_losses_counted_from_the_counter() -> None:
    def script(frame: Frame, n: int) -> bytes:
        return b"".join(telemetry(c) for c in (0, 1, 2, 5, 6)) + ack(frame) + telemetry(4) + telemetry(4)
    with scripted_link(script) as (link, _):
        assert link.request(program()) == [m.Ack(0x12)]
        got = [t.counter for t in link.telemetry(wait_s=0.2)]
    assert got == [0, 1, 2, 5, 6, 4]
    s = link.stats
    assert (s.telemetry_received, s.telemetry_lost, s.telemetry_late, s.telemetry_duplicates) == (6, 1, 1, 1)


def test_the_telemetry_counter_wraps_without_a_loss() -> None:
    top = (1 << 32) - 2
    with scripted_link(lambda f, n: b"".join(telemetry(c % (1 << 32)) for c in range(top, top + 4)) + ack(f)) as (
            link, _):
        link.request(program())
        assert [t.counter for t in link.telemetry(wait_s=0.2)] == [top, top + 1, 0, 1]
    assert link.stats.telemetry_lost == 0


# ---- set-up errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options, complaint", [
    (dict(answer_timeout_s=0), "expected answer_timeout_s > 0"),
    (dict(backoff=0.5), "backoff >= 1"),
    (dict(max_attempts=0), "max_attempts >= 1"),
    (dict(first_seq=0), r"first_seq = 0: expected 1..65535 \(seq 0 is telemetry's\)"),
])
def test_a_link_set_up_wrongly_says_what_was_expected(options: dict, complaint: str) -> None:
    with Transport("loop://") as port, pytest.raises(LinkError, match=complaint):
        Link(port, **options)  # type: ignore[arg-type]


def test_two_keys_of_one_role_are_refused() -> None:
    with Transport("loop://") as port, pytest.raises(LinkError, match="two clinician keys given"):
        Link(port, [Signer(CLINICIAN), Signer(Key(9, bytes(32), Role.CLINICIAN))])
