"""Random valid messages, drawn from the definitions: construct and the fast path agree, both ways.

The strategies are derived from each message's FieldInfo (ranges, enums, text and list limits,
optional fields), so a new message is covered the day it is defined.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from protocol import messages as m
from protocol.decoder import Decoder
from protocol.fastpath import FAST_CODECS
from protocol.fields import FieldInfo, Kind
from protocol.framing import Frame, decode_frame, encode_frame


def values(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Every valid value of a field (or a whole message), from its description."""
    if info.kind is Kind.INT:
        strategy: st.SearchStrategy[Any] = st.integers(info.lo, info.hi)
    elif info.kind is Kind.BOOL:
        strategy = st.booleans()
    elif info.kind is Kind.ENUM:
        assert info.enum_type is not None
        strategy = st.sampled_from(list(info.enum_type))
    elif info.kind is Kind.TEXT:
        strategy = st.text(max_size=info.max_len).map(
            lambda t: t.encode("utf8")[:info.max_len].decode("utf8", "ignore"))
    elif info.kind is Kind.BYTES:
        strategy = st.binary(min_size=info.max_len, max_size=info.max_len)
    elif info.kind is Kind.LIST:
        assert info.element is not None
        strategy = st.lists(values(info.element), max_size=info.max_len).map(tuple)
    else:
        strategy = st.tuples(*(values(f) for f in info.fields)).map(info.record._make)  # type: ignore[union-attr]
    return st.none() | strategy if info.optional else strategy


SPECS = list(m.CATALOGUE.values())
FAST_SPECS = [m.CATALOGUE[msg_id] for msg_id in FAST_CODECS]
MESSAGES = st.sampled_from(SPECS).flatmap(lambda spec: values(spec.info))
FAST_MESSAGES = st.sampled_from(FAST_SPECS).flatmap(lambda spec: values(spec.info))


@settings(max_examples=300, deadline=None)
@given(FAST_MESSAGES)
def test_fast_path_and_construct_build_the_same_bytes_and_read_them_back(message: Any) -> None:
    spec = type(message).SPEC
    codec = FAST_CODECS[spec.msg_id]
    built = spec.build(message)
    assert codec.pack(message) == built
    assert codec.unpack(built) == spec.parse(built) == message


PLAIN_SPECS = [spec for spec in FAST_SPECS if FAST_CODECS[spec.msg_id].struct is not None]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PLAIN_SPECS).flatmap(
    lambda spec: st.tuples(st.just(spec), st.binary(min_size=spec.info.size, max_size=spec.info.size))))
def test_fast_path_and_construct_read_any_plain_payload_of_the_size_alike(case: tuple[m.MessageSpec, bytes]) -> None:
    """Every payload of the size is a valid plain message (test_fastpath_flat.py: the others)."""
    spec, payload = case
    codec = FAST_CODECS[spec.msg_id]
    via_construct = spec.parse(payload)
    via_fast = codec.unpack(payload)
    assert via_fast == via_construct
    assert codec.pack(via_fast) == spec.build(via_construct)


@settings(max_examples=300, deadline=None)
@given(MESSAGES, st.integers(0, 0xFFFF))
def test_every_message_round_trips_through_construct_and_a_frame(message: Any, seq: int) -> None:
    spec = type(message).SPEC
    payload = spec.build(message)
    assert spec.info.min_size <= len(payload) <= spec.info.max_size
    assert spec.parse(payload) == message
    frame = encode_frame(message, seq)
    assert decode_frame(frame[:-1]).message == message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(MESSAGES, st.integers(0, 0xFFFF)), max_size=12), st.data())
def test_a_stream_in_any_chunking_gives_the_same_frames_on_both_paths(
        sent: list[tuple[Any, int]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(msg, seq) for msg, seq in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    results = []
    for fast in (True, False):
        decoder = Decoder(fast=fast)
        frames: list[Frame] = []
        for chunk in chunks:
            frames += decoder.feed(chunk)
        assert [(f.message, f.seq) for f in frames] == sent
        assert decoder.frames_bad == 0 and decoder.frames_seen == len(sent)
        results.append(frames)
    assert results[0] == results[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(FAST_MESSAGES, st.integers(0, 0xFFFF), st.sampled_from([1, 2, 9]), st.booleans(),
                          st.integers(0, 40)), min_size=1, max_size=8),
       st.integers(1, 64))
def test_signed_frames_take_the_fast_path_exactly_as_construct_reads_them(cases, chunk: int) -> None:
    """Signed frames of fast messages, some with a wrong key or a flipped bit: the fast decoder and
    the construct decoder give the same frames, the same counts and the same rejections."""
    from protocol.enums import Role
    from protocol.signing import Key, Signer, Verifier

    keys = [Key(1, bytes(range(32)), Role.CLINICIAN), Key(2, bytes(range(32, 64)), Role.PATIENT)]
    stranger = Key(9, bytes(32), Role.CLINICIAN)  # not known to the verifier: BAD_SIGNATURE
    clock = iter(range(1, 10_000))
    signers = {k.key_id: Signer(k, 0, lambda: next(clock)) for k in [*keys, stranger]}
    stream = b""
    for message, seq, key_id, corrupt, flip_at in cases:
        frame = encode_frame(message, seq, signer=signers[key_id])
        if corrupt:
            body = bytearray(frame[:-1])
            body[flip_at % len(body)] ^= 0x10
            frame = bytes(body) + b"\x00"
        stream += frame
    results = []
    for fast in (True, False):
        decoder = Decoder(verifier=Verifier(keys), fast=fast)
        frames = []
        for i in range(0, len(stream), chunk):
            frames += decoder.feed(stream[i:i + chunk])
        results.append((frames, decoder.counts, decoder.frames_seen, [r[:4] for r in decoder.rejections]))
    assert results[0] == results[1]


@settings(max_examples=400, deadline=None)
@given(MESSAGES)
def test_compiled_and_interpreted_construct_agree(message: Any) -> None:
    """The catalogue builds and parses with construct's compiled form; the interpreted form (the
    definition itself) must give the very same bytes and values, as construct's own tests check."""
    from protocol.fields import from_parsed, to_buildable

    spec = type(message).SPEC
    interpreted = spec.payload.build(to_buildable(spec.info, message))
    assert spec.build(message) == interpreted
    assert spec.parse(interpreted) == from_parsed(spec.info, spec.whole.parse(interpreted)) == message
