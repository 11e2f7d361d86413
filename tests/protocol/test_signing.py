"""Signing: every way the verifier refuses a frame, and the roles."""

from __future__ import annotations

import pytest
from cobs import cobs

from protocol import messages as m
from protocol.crc import append_crc
from protocol.decoder import Decoder
from protocol.enums import AlarmCode, NakReason, Role
from protocol.errors import BadFrame, SignatureError, SigningError
from protocol.framing import decode_frame, encode_frame
from protocol.signing import Key, Signer, Verifier, mavlink_clock

CLINICIAN = Key(1, b"c" * 32, Role.CLINICIAN)
PATIENT = Key(2, b"p" * 32, Role.PATIENT)
STRANGER = Key(1, b"x" * 32, Role.CLINICIAN)  # the clinician's id, another secret


class Clock:
    """A settable clock for signers (10 µs units)."""

    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def signed(message: object, key: Key, seq: int = 1, link_id: int = 0, clock: Clock | None = None) -> bytes:
    return encode_frame(message, seq, Signer(key, link_id, clock or Clock()))


def rejection(verifier: Verifier, frame: bytes) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        verifier.check(decode_frame(frame[:-1]))
    return info.value


def test_a_clinician_signed_program_is_accepted_with_its_role() -> None:
    verifier = Verifier([CLINICIAN, PATIENT])
    assert verifier.check(decode_frame(signed(m.ProgramContinuous(250_000), CLINICIAN)[:-1])) is Role.CLINICIAN
    assert verifier.last_timestamps == {(1, 0): 1_000}


def test_an_unsigned_programming_command_is_refused() -> None:
    error = rejection(Verifier([CLINICIAN]), encode_frame(m.ProgramContinuous(250_000), 5))
    assert error.nak is NakReason.UNSIGNED and error.seq == 5 and error.msg_id == 0x12
    assert "ProgramContinuous must be signed" in str(error)


def test_every_command_but_hello_needs_a_signature_and_hello_does_not() -> None:
    verifier = Verifier([CLINICIAN])
    assert verifier.check(decode_frame(encode_frame(m.Hello(1, 1, "host"))[:-1])) is None
    unsigned = [m.GetStatus(), m.PatientBolusRequest(), m.AdvanceTime(5), m.ReadLog(0, 1)]
    for message in unsigned:
        assert rejection(verifier, encode_frame(message)).nak is NakReason.UNSIGNED


def test_an_unknown_key_id_is_refused() -> None:
    other = Key(3, b"c" * 32, Role.CLINICIAN)
    error = rejection(Verifier([CLINICIAN]), signed(m.ProgramStopped(), other))
    assert error.nak is NakReason.BAD_SIGNATURE and "key id 3" in str(error)


def test_a_wrong_secret_under_a_known_key_id_is_refused() -> None:
    error = rejection(Verifier([CLINICIAN]), signed(m.ProgramStopped(), STRANGER))
    assert error.nak is NakReason.BAD_SIGNATURE and "MAC does not verify" in str(error)


def test_a_payload_changed_after_signing_is_refused() -> None:
    """An attacker who rewrites the rate (and fixes the CRC) still fails the MAC."""
    frame = signed(m.ProgramContinuous(250_000), CLINICIAN)
    inner = bytearray(cobs.decode(frame[:-1]))
    inner[7] ^= 0xFF  # the rate's low byte
    forged = cobs.encode(append_crc(bytes(inner[:-4]))) + b"\x00"
    assert decode_frame(forged[:-1]).message != m.ProgramContinuous(250_000)
    assert rejection(Verifier([CLINICIAN]), forged).nak is NakReason.BAD_SIGNATURE


def test_a_replayed_frame_is_refused() -> None:
    verifier = Verifier([CLINICIAN])
    frame = signed(m.ClinicianBolus(100_000, 32_768), CLINICIAN)
    verifier.check(decode_frame(frame[:-1]))
    error = rejection(verifier, frame)
    assert error.nak is NakReason.REPLAY and "expected newer than 1000" in str(error)


def test_a_stale_frame_older_than_the_last_accepted_is_refused() -> None:
    verifier = Verifier([CLINICIAN])
    clock = Clock(5_000)
    stale = signed(m.ProgramStopped(), CLINICIAN, clock=Clock(4_000))
    verifier.check(decode_frame(signed(m.ProgramMinimumRate(), CLINICIAN, clock=clock)[:-1]))
    assert rejection(verifier, stale).nak is NakReason.REPLAY


def test_timestamps_are_kept_per_key_and_per_link() -> None:
    verifier = Verifier([CLINICIAN, PATIENT])
    verifier.check(decode_frame(signed(m.ProgramStopped(), CLINICIAN, link_id=0, clock=Clock(9_000))[:-1]))
    # the same timestamp on another link, or from another key, is not a replay
    verifier.check(decode_frame(signed(m.ProgramStopped(), CLINICIAN, link_id=1, clock=Clock(9_000))[:-1]))
    verifier.check(decode_frame(signed(m.GetStatus(), PATIENT, link_id=0, clock=Clock(9_000))[:-1]))
    assert verifier.last_timestamps == {(1, 0): 9_000, (1, 1): 9_000, (2, 0): 9_000}


def test_a_retry_signed_anew_with_the_same_seq_is_accepted() -> None:
    verifier = Verifier([CLINICIAN])
    signer = Signer(CLINICIAN, 0, Clock(100))  # a clock that has not moved: the signer still moves on
    first = encode_frame(m.PatientBolusRequest(), 42, signer)
    retry = encode_frame(m.PatientBolusRequest(), 42, signer)
    assert first != retry
    frames = [decode_frame(f[:-1]) for f in (first, retry)]
    assert [verifier.check(f) for f in frames] == [Role.CLINICIAN, Role.CLINICIAN]
    assert [f.signature.timestamp_10us for f in frames] == [100, 101] and frames[1].seq == 42


@pytest.mark.parametrize("message", [
    m.ProgramContinuous(250_000), m.ProgramFlex((m.FlexStep(0, 100_000),)), m.ProgramStopped(),
    m.ProgramMinimumRate(), m.ClinicianBolus(100_000, 32_768), m.PrimingBolus(100_000, 32_768),
    m.ConfigurePatientBolus(100_000, 32_768, 32_768 * 3600, 4), m.Refill(0, 20_000_000, "morphine", 10_000),
    m.SetLowReservoirAlarm(2_000_000), m.AcknowledgeAlarm(AlarmCode.RESERVOIR_LOW), m.SetClock(0),
    m.ReadLog(0, 10), m.AdvanceTime(10), m.InjectOcclusion(5), m.InjectReset(10),
], ids=lambda msg: type(msg).__name__)
def test_a_patient_signature_cannot_program_therapy(message: object) -> None:
    error = rejection(Verifier([CLINICIAN, PATIENT]), signed(message, PATIENT))
    assert error.nak is NakReason.ROLE_NOT_ALLOWED and "needs a clinician key" in str(error)


def test_a_patient_may_ask_for_a_bolus_and_the_status() -> None:
    """GetStatus, and Interrogate: a status that also releases the MRI latch (model: either programmer)."""
    verifier = Verifier([CLINICIAN, PATIENT])
    clock = Clock()
    signer = Signer(PATIENT, 0, clock)
    for message in (m.PatientBolusRequest(), m.GetStatus(), m.Interrogate()):
        clock.now += 1
        assert verifier.check(decode_frame(encode_frame(message, 1, signer)[:-1])) is Role.PATIENT


def test_a_refused_role_still_spends_its_timestamp() -> None:
    verifier = Verifier([PATIENT])
    frame = signed(m.ProgramStopped(), PATIENT)
    assert rejection(verifier, frame).nak is NakReason.ROLE_NOT_ALLOWED
    assert rejection(verifier, frame).nak is NakReason.REPLAY


def test_the_decoder_counts_signature_refusals_and_names_the_nak() -> None:
    verifier = Verifier([CLINICIAN, PATIENT])
    decoder = Decoder(verifier=verifier)
    good = signed(m.ProgramContinuous(250_000), CLINICIAN, seq=1)
    stream = (good + good  # replay
              + encode_frame(m.ProgramStopped(), 2)  # unsigned
              + signed(m.ProgramStopped(), STRANGER, seq=3, clock=Clock(2_000))  # wrong secret
              + signed(m.ProgramStopped(), PATIENT, seq=4)  # role
              + encode_frame(m.Telemetry(1, 2, 3, 4, 5, 6, 7)))  # OPEN: accepted unsigned
    frames = decoder.feed(stream)
    assert [type(f.message).__name__ for f in frames] == ["ProgramContinuous", "Telemetry"]
    assert decoder.counts[BadFrame.SIGNATURE] == 4 and decoder.frames_seen == 6
    assert [(r.nak, r.seq) for r in decoder.rejections] == [
        (NakReason.REPLAY, 1), (NakReason.UNSIGNED, 2), (NakReason.BAD_SIGNATURE, 3), (NakReason.ROLE_NOT_ALLOWED, 4)]


def test_fast_and_construct_decoders_verify_alike() -> None:
    stream = (encode_frame(m.Ack(1)) + encode_frame(m.ProgramContinuous(5))
              + signed(m.ProgramContinuous(6), CLINICIAN) + encode_frame(m.AdvanceTime(9)))
    outcomes = []
    for fast in (True, False):
        decoder = Decoder(verifier=Verifier([CLINICIAN]), fast=fast)
        outcomes.append((decoder.feed(stream), dict(decoder.counts), list(decoder.rejections)))
    assert outcomes[0] == outcomes[1]
    assert [f.message for f in outcomes[0][0]] == [m.Ack(1), m.ProgramContinuous(6)]


def test_signer_timestamps_never_repeat_or_go_back() -> None:
    clock = Clock(500)
    signer = Signer(CLINICIAN, 0, clock)
    stamps = [signer.next_timestamp()]
    clock.now = 300  # the clock steps back
    stamps.append(signer.next_timestamp())
    clock.now = 900
    stamps.append(signer.next_timestamp())
    assert stamps == [500, 501, 900]


def test_the_default_clock_is_mavlinks_10us_since_2015() -> None:
    stamp = mavlink_clock()
    years = stamp / 100_000 / 86_400 / 365.25
    assert 9 < years < 60 and stamp < 1 << 48


def test_bad_keys_and_signers_are_named() -> None:
    with pytest.raises(SigningError, match="secret of 16 bytes; expected 32"):
        Key(1, b"s" * 16, Role.CLINICIAN)
    with pytest.raises(SigningError, match="key_id = 256"):
        Key(256, b"s" * 32, Role.CLINICIAN)
    with pytest.raises(SigningError, match="link_id = -1"):
        Signer(CLINICIAN, -1)
    with pytest.raises(SigningError, match="key id 1 is given twice"):
        Verifier([CLINICIAN, STRANGER])
    with pytest.raises(SigningError, match="2\\^48"):
        Signer(CLINICIAN, 0, Clock(1 << 48)).next_timestamp()
    assert "c" * 32 not in repr(CLINICIAN)
