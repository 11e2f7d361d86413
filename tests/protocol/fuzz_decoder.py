"""Atheris harness for the streaming decoder (coverage-guided; `make fuzz` runs it for 10 minutes).

    .venv/bin/python tests/protocol/fuzz_decoder.py -max_total_time=600 -print_final_stats=1

The fuzzer's bytes drive a script: garbage, valid frames (telemetry, answers, signed programming
commands), bit flips, truncations, duplications, bad CRCs ending in zero, stale and replayed
signed frames, in any chunking, into two decoders (fast path and construct) with verifiers.
Checked after every input: nothing raised; the counters add up to the frames seen, which are
the zero-terminated non-empty parts of the stream; memory stays bounded; both decoders agree;
every accepted frame is one that was sent; and a valid frame after garbage and a zero is decoded.
A failed check raises, which atheris reports as a crash with the input that caused it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["protocol", "construct", "cobs"]):
    from cobs.cobs import _cobs_py
    from protocol import messages as m
    from protocol.decoder import Decoder
    from protocol.enums import AlarmCode, Mode, Role
    from protocol.framing import MAX_ENCODED_FRAME, decode_frame, encode_frame
    from protocol.signing import Key, Signer, Verifier
from stream_oracle import chunked, frames_expected  # noqa: E402 (beside this script)

KEYS = [Key(1, bytes(range(32)), Role.CLINICIAN), Key(2, bytes(range(32, 64)), Role.PATIENT)]
_signers = [Signer(KEYS[0], 0, lambda: 0), Signer(KEYS[1], 0, lambda: 0), Signer(KEYS[0], 3, lambda: 0)]
POOL = [
    encode_frame(m.Telemetry(7, 1 << 33, 10, 5_000_000, -20, 1 << 6, 99)),
    encode_frame(m.Ack(0x12), 3),
    encode_frame(m.Ack(0x15), 4, more=True),
    encode_frame(m.Nak(0x12, m.NakReason.LIMIT_EXCEEDED, "morphine.daily_dose_ug", "20", "<= 15 µg/day"), 4),
    encode_frame(m.StatusReport(5, Mode.FLEX, "baclofen", 2_000, 1, 2, 3, 4, 5, 6, None, (AlarmCode.OCCLUSION,),
                                AlarmCode.OCCLUSION, True, False, False, 70, False, False, None), 8),
    encode_frame(m.ProgramContinuous(250_000), 9),  # unsigned: refused
    *[encode_frame(m.ProgramFlex(((0, 1_000 + i), (3600, 2_000))), 10 + i, _signers[0]) for i in range(3)],
    *[encode_frame(m.PatientBolusRequest(), 20 + i, _signers[1]) for i in range(3)],
    encode_frame(m.ProgramStopped(), 30, _signers[1]),  # patient may not
    *[encode_frame(m.AdvanceTime(i << 20), 40 + i, _signers[2]) for i in range(3)],
]
SENT = {_cobs_py.decode(f[:-1]) for f in POOL}
SENTINEL = encode_frame(m.Telemetry(0xFFFFFFFF, 1, 2, 3, 4, 5, 6))


def build(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, list[int]]:
    """A stream and its cut points, from the fuzzer's bytes."""
    segments: list[bytes] = []
    for _ in range(fdp.ConsumeIntInRange(0, 16)):
        op = fdp.ConsumeIntInRange(0, 7)
        frame = POOL[fdp.ConsumeIntInRange(0, len(POOL) - 1)]
        if op == 0:
            segments.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 96)))
        elif op in (1, 2):
            segments.append(frame)
        elif op == 3:  # bit flip
            flipped = bytearray(frame)
            bit = fdp.ConsumeIntInRange(0, 8 * len(frame) - 1)
            flipped[bit // 8] ^= 1 << (bit % 8)
            segments.append(bytes(flipped))
        elif op == 4:  # truncation
            segments.append(frame[:fdp.ConsumeIntInRange(0, len(frame) - 1)])
        elif op == 5:  # duplication: a replay when signed
            segments.append(frame * 2)
        elif op == 6:  # a bad CRC whose last byte is zero
            inner = bytearray(_cobs_py.decode(frame[:-1]))
            inner[-1] = 0
            inner[-4] ^= fdp.ConsumeIntInRange(1, 255)
            segments.append(_cobs_py.encode(bytes(inner)) + b"\x00")
        else:  # a long run without a zero
            segments.append(b"\x01" * fdp.ConsumeIntInRange(MAX_ENCODED_FRAME - 4, MAX_ENCODED_FRAME + 4))
    stream = b"".join(segments) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))
    cuts = sorted(fdp.ConsumeIntInRange(0, len(stream)) for _ in range(fdp.ConsumeIntInRange(0, 8)))
    return stream, cuts


def test_one_input(data: bytes) -> None:
    stream, cuts = build(atheris.FuzzedDataProvider(data))
    chunks = chunked(stream, cuts)
    expected_seen = frames_expected(stream)
    outcomes = []
    for fast in (True, False):
        decoder = Decoder(verifier=Verifier(KEYS), fast=fast)
        frames = []
        for chunk in chunks:
            frames += decoder.feed(chunk)
            if decoder.buffered > MAX_ENCODED_FRAME:
                raise AssertionError(f"decoder holds {decoder.buffered} bytes")
        if decoder.frames_seen != expected_seen or decoder.frames_seen != decoder.frames_ok + decoder.frames_bad:
            raise AssertionError(f"counts: seen {decoder.frames_seen}, expected {expected_seen}, ok "
                                 f"{decoder.frames_ok}, bad {dict(decoder.counts)}")
        if any(f.inner not in SENT for f in frames):
            raise AssertionError("accepted a frame that was never sent")
        last = decoder.feed(b"\x00" + SENTINEL)  # the zero may also end a frame cut short of its own
        if not last or last[-1] != decode_frame(SENTINEL[:-1]) or any(f.inner not in SENT for f in last[:-1]):
            raise AssertionError(f"a valid frame after garbage and a zero was not decoded: {last}")
        outcomes.append((frames, dict(decoder.counts)))
    if outcomes[0] != outcomes[1]:
        raise AssertionError(f"fast path and construct disagree: {outcomes[0][1]} != {outcomes[1][1]}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
