"""The qemu-m3 rig end to end: the C firmware built with arm-none-eabi-gcc, run by
qemu-system-arm -M mps2-an385, reached through hil.rig.load_rig("rigs/qemu-m3") over socket://.

Each test opens its own session (a fresh QEMU, a pump at tick 0) and closes it, so QEMU is always
stopped (the rig's stop terminates, then kills, the process) and the tests stay independent
under pytest-xdist. Skipped where the toolchain or QEMU is missing.
"""

from __future__ import annotations

import time
import zlib

import pytest
from cobs.cobs import decode as cobs_decode, encode as cobs_encode

from firmware_build import FIRMWARE_DIR, build_firmware
from firmware_model.commands import Mode
from hil.errors import PumpRefused
from hil.rig import load_rig
from protocol import Decoder, Role, encode_frame, messages as m
from protocol.enums import NakReason

HOUR = 3600 * 32768

# make test installs qemu-system-arm and gcc-arm-none-eabi (apt): without them these tests fail, never skip


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    return build_firmware(tmp_path_factory.getbasetemp().parent)


@pytest.fixture
def session(firmware):
    assert firmware.exists()
    rig = load_rig(FIRMWARE_DIR)
    s = rig.open()
    try:
        yield s
    finally:
        s.close()


def _raw_answers(session, data: bytes, seq: int, count: int = 1, timeout_s: float = 5.0) -> list:
    """Write bytes straight to the line; the next `count` frames the pump sends under `seq` (a late
    answer to an earlier command, e.g. the rig's resent hello while QEMU started, is skipped)."""
    transport = session.client.transport
    transport.write(data)
    decoder, frames = Decoder(), []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        frames += [f for f in decoder.feed(transport.read(0.1)) if f.seq == seq]
    return frames


def test_hello_names_the_firmware(session):
    reply = session.client.pump            # the rig said hello when it connected
    assert reply.firmware == "ithil-qemu-m3 0.1.0"
    assert (reply.version, reply.test_mode, reply.tick_hz) == (1, True, 32768)
    assert (reply.reservoir_capacity_nl, reply.stroke_nl) == (20_000_000, 250)
    assert session.client.hello().firmware == "ithil-qemu-m3 0.1.0"


def test_status_of_a_new_pump(session):
    status = session.client.status()
    assert status.tick == 0
    assert status.mode is Mode.STOPPED
    assert (status.reservoir_nl, status.steps, status.drug, status.alarms) == (0, 0, "", ())


def test_advance_time_moves_the_tick(session):
    client = session.client
    assert client.advance(HOUR) == HOUR
    assert client.status().tick == HOUR
    with pytest.raises(PumpRefused) as refused:
        client.advance_to(HOUR - 1)        # time only moves forward
    assert refused.value.reason == NakReason.LIMIT_EXCEEDED and refused.value.field == "to_tick"
    assert client.status().tick == HOUR


def test_unsigned_advance_time_is_refused(session):
    link = session.client.link
    signers, link.signers = link.signers, {}
    try:
        with pytest.raises(PumpRefused) as refused:
            link.request(m.AdvanceTime(HOUR))
    finally:
        link.signers = signers
    assert refused.value.reason == NakReason.UNSIGNED
    assert session.client.status().tick == 0


def test_bad_crc_is_answered_with_nak_bad_crc(session):
    inner = bytearray(cobs_decode(encode_frame(m.GetStatus(), 0x1234)[:-1]))
    inner[-1] ^= 0xA5
    frames = _raw_answers(session, cobs_encode(bytes(inner)) + b"\x00", 0x1234)
    assert len(frames) == 1
    nak = frames[0].message
    assert isinstance(nak, m.Nak) and nak.reason == NakReason.BAD_CRC
    assert (frames[0].seq, nak.command_id) == (0x1234, 0x10)
    assert zlib.crc32(frames[0].inner) == 0x2144DF1C


def test_a_retried_seq_is_answered_again_and_run_once(session):
    signer = session.client.link.signers[Role.CLINICIAN]
    frame = encode_frame(m.AdvanceTime(HOUR), 4321, signer)
    first = _raw_answers(session, frame, 4321)
    again = _raw_answers(session, frame, 4321)                                           # an exact copy
    resent = _raw_answers(session, encode_frame(m.AdvanceTime(HOUR), 4321, signer), 4321)  # a new signature
    assert len(first) == len(again) == len(resent) == 1
    assert isinstance(first[0].message, m.Ack) and first[0].message.command_id == 0x70
    assert first[0].inner == again[0].inner == resent[0].inner
    assert session.client.status().tick == HOUR
    # time moves on past the command's to_tick: run again, AdvanceTime(HOUR) would now be refused
    # (LIMIT_EXCEEDED, time only moves forward); a retry of seq 4321 still gets its first answer
    session.client.advance_to(2 * HOUR)
    retried = _raw_answers(session, encode_frame(m.AdvanceTime(HOUR), 4321, signer), 4321)
    assert retried[0].inner == first[0].inner
    assert session.client.status().tick == 2 * HOUR
    # the same seq with another payload is a new command, and is run
    later = _raw_answers(session, encode_frame(m.AdvanceTime(2 * HOUR + 5), 4321, signer), 4321)
    assert isinstance(later[0].message, m.Ack)
    assert session.client.status().tick == 2 * HOUR + 5
