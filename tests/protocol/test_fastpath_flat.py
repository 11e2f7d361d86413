"""The fast path of flat messages (texts, enums, optional values, counted lists) equals construct.

For every message with a fast codec: random valid messages give the same bytes and the same
values (the same types: enum members, None, tuples, records) both ways; random payloads and
payloads mutated from valid ones (bytes flipped, inserted, deleted; enum values that are no
member; bad UTF-8; counts over their limit or not matching the bytes; texts and lists grown
past their limits) are accepted by the fast reader exactly when the construct definition
accepts them, read alike, and refused with one of fastpath.MALFORMED; invalid values are
refused by both encoders with the same EncodeError; and the streaming decoder gives the same
frames, counts and rejections on both paths. Bugs planted in a generated codec are caught.

The oracle for payloads is the construct definition itself, interpreted (`spec.whole`): its
compiled form (what framing.decode_inner runs) reads short silently on its own; MessageSpec.parse
stops that, see the test of a Refill cut before its last Flag.
"""

from __future__ import annotations

import enum
import re
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from protocol import messages as m
from protocol.decoder import Decoder
from protocol.enums import Role
from protocol.errors import EncodeError
from protocol.fastpath import FAST_CODECS, MALFORMED, FastCodec, generate, item_format
from protocol.fields import FieldInfo, Kind, from_parsed, to_buildable
from protocol.framing import decode_frame, encode_payload, frame_bytes
from protocol.signing import Key, Signer, Verifier
from test_properties import values  # the random-message strategy derived from FieldInfo

FAST_SPECS = [m.CATALOGUE[msg_id] for msg_id in FAST_CODECS]
FLAT_SPECS = [spec for spec in FAST_SPECS if FAST_CODECS[spec.msg_id].struct is None]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"]
REJECTED = object()


def identical(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (an IntEnum member equals its int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return a == b  # type: ignore[no-any-return]


def by_construct(spec: m.MessageSpec, payload: bytes) -> Any:
    """The message the construct definition (interpreted) reads in a payload, or REJECTED."""
    try:
        return from_parsed(spec.info, spec.whole.parse(payload))
    except Exception:  # construct's many errors, UnicodeDecodeError: all mean "malformed"
        return REJECTED


def by_fast(codec: FastCodec, payload: bytes, pad: bytes = b"") -> Any:
    """The message the fast reader reads, or REJECTED (it may raise only one of MALFORMED);
    with `pad`, read from inside a larger buffer, as the decoder reads a frame."""
    try:
        if pad:
            return codec.unpack_from(pad + payload + pad, len(pad), len(pad) + len(payload))
        return codec.unpack(payload)
    except MALFORMED:
        return REJECTED


# ---- valid messages: same bytes, same values ------------------------------------------------------

def test_every_message_but_a_list_of_texts_has_a_fast_codec() -> None:
    assert {spec.name for spec in m.CATALOGUE.values()} - {spec.name for spec in FAST_SPECS} == {"AckSoftLimits"}
    status = FAST_CODECS[m.StatusReport.MSG_ID]
    assert status.struct is None and status.size is None and "def unpack_from(b, o, end):" in status.source


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FAST_SPECS).flatmap(lambda spec: values(spec.info)), st.binary(min_size=1, max_size=3))
def test_valid_messages_give_the_same_bytes_and_values_both_ways(message: Any, pad: bytes) -> None:
    spec = type(message).SPEC
    codec = FAST_CODECS[spec.msg_id]
    built = spec.build(message)
    assert codec.pack(message) == built == spec.payload.build(to_buildable(spec.info, message))
    assert encode_payload(message) == built
    for read in (by_fast(codec, built), by_fast(codec, built, pad), spec.parse(built)):
        assert identical(read, by_construct(spec, built))
    assert read == message


# ---- any payload: accepted alike, read alike ------------------------------------------------------

def spans(spec: m.MessageSpec, message: Any) -> list[tuple[FieldInfo, int, int]]:
    """Each field of a message with the bytes it takes in its payload, by construct."""
    out, start = [], 0
    for info, value in zip(spec.info.fields, message):
        size = len(info.construct.build(to_buildable(info, value)))  # type: ignore[union-attr]
        out.append((info, start, start + size))
        start += size
    return out


def item_size(info: FieldInfo) -> int:
    return struct.calcsize("<" + item_format(info))  # type: ignore[operator]


def not_a_member(info: FieldInfo) -> st.SearchStrategy[int]:
    """Raw values of an enum field that construct refuses."""
    assert info.enum_type is not None
    members = set(info.enum_type._value2member_map_) | ({0} if info.optional else set())
    return st.integers(info.lo, min(info.hi, 0xFFFF)).filter(lambda v: v not in members)


@st.composite
def mutated(draw: st.DrawFn, spec: m.MessageSpec) -> bytes:
    """A valid payload of `spec` with one mutation aimed at a field, then maybe a blind one."""
    message = draw(values(spec.info))
    payload = bytearray(spec.build(message))
    targets = [(f, a, b) for f, a, b in spans(spec, message) if f.kind in (Kind.ENUM, Kind.TEXT, Kind.LIST)]
    if targets:
        info, a, b = draw(st.sampled_from(targets))
        element = info.element
        if info.kind is Kind.ENUM:
            hows = ["enum"]
        else:
            enum_items = element is not None and element.kind is Kind.ENUM
            hows = ["count", "resize", *(["utf8"] if info.kind is Kind.TEXT else ["enum"] if enum_items else [])]
        how = draw(st.sampled_from(hows))
        if how == "count":  # a count that the bytes do not follow
            payload[a] = draw(st.integers(0, 255))
        elif how == "resize":  # a consistent text or list, often at its limit
            extra = draw(st.just(info.max_len + 1) | st.just(info.max_len) | st.integers(0, 255)) - payload[a]
            if 0 < extra and payload[a] + extra <= 255:
                if element is None:
                    filler = b"a"
                elif draw(st.integers(0, 2)):  # a valid item, or any bytes of an item's size
                    item = draw(values(element))
                    filler = element.construct.build(to_buildable(element, item))  # type: ignore[union-attr]
                else:
                    filler = draw(st.binary(min_size=item_size(element), max_size=item_size(element)))
                payload[a] += extra
                payload[b:b] = filler * extra
        elif how == "utf8":
            bad = draw(st.sampled_from(BAD_UTF8))
            at = draw(st.integers(a + 1, b))
            payload[at:at] = bad
            payload[a] = min(255, payload[a] + len(bad))
        else:  # an enum value that is no member
            enum_info = info if info.kind is Kind.ENUM else element
            raw = draw(not_a_member(enum_info)).to_bytes(enum_info.size, "little")  # type: ignore[union-attr]
            if info.kind is Kind.ENUM:
                payload[a:b] = raw
            elif payload[a]:
                at = a + 1 + draw(st.integers(0, payload[a] - 1)) * len(raw)
                payload[at:at + len(raw)] = raw
    blind = draw(st.just("none") | st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    at = draw(st.integers(0, len(payload)))
    if blind == "flip" and at < len(payload):
        payload[at] ^= draw(st.integers(1, 255))
    elif blind == "insert":
        payload[at:at] = draw(st.binary(min_size=1, max_size=3))
    elif blind == "delete":
        del payload[at:at + draw(st.integers(1, 3))]
    elif blind == "truncate":
        del payload[at:]
    elif blind == "append":
        payload += draw(st.binary(min_size=1, max_size=3))
    return bytes(payload)


def payloads(spec: m.MessageSpec) -> st.SearchStrategy[bytes]:
    return mutated(spec) | st.binary(max_size=min(spec.info.max_size + 4, 80))


CASES = st.sampled_from(FAST_SPECS).flatmap(lambda spec: st.tuples(st.just(spec), payloads(spec)))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(CASES, st.binary(min_size=1, max_size=20))
def test_any_payload_is_accepted_and_read_by_the_fast_path_as_construct_does(
        case: tuple[m.MessageSpec, bytes], pad: bytes) -> None:
    spec, payload = case
    codec = FAST_CODECS[spec.msg_id]
    expected = by_construct(spec, payload)
    assert identical(by_fast(codec, payload), expected)
    assert identical(by_fast(codec, payload, pad), expected)  # bytes around it never count
    if expected is not REJECTED:  # and written back alike (a bool byte of 2 reads True, writes 1)
        assert codec.pack(expected) == spec.build(expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.tuples(CASES, st.integers(0, 0xFFFF), st.sampled_from([None, 1, 2])), min_size=1, max_size=6),
       st.booleans(), st.integers(1, 64))
def test_the_decoder_gives_the_same_frames_counts_and_rejections_on_both_paths(
        cases: list[tuple[tuple[m.MessageSpec, bytes], int, int | None]], verified: bool, chunk: int) -> None:
    """Frames (with a good CRC, some signed) around random and mutated payloads."""
    keys = [Key(1, bytes(range(32)), Role.CLINICIAN), Key(2, bytes(range(32, 64)), Role.PATIENT)]
    clock = iter(range(1, 10_000))
    signers = {k.key_id: Signer(k, 0, lambda: next(clock)) for k in keys}
    stream = b"".join(frame_bytes(spec.msg_id, payload, seq, signers.get(key_id))  # type: ignore[arg-type]
                      for (spec, payload), seq, key_id in cases if len(payload) <= m.MAX_PAYLOAD)
    results = []
    for fast in (True, False):
        decoder = Decoder(verifier=Verifier(keys) if verified else None, fast=fast)
        frames = []
        for i in range(0, len(stream), chunk):
            frames += decoder.feed(stream[i:i + chunk])
        results.append((frames, decoder.counts, decoder.frames_seen, list(decoder.rejections)))
    assert results[0] == results[1]
    assert all(identical(a.message, b.message) for a, b in zip(results[0][0], results[1][0]))


# ---- invalid values: refused alike ----------------------------------------------------------------

def wrong(info: FieldInfo) -> st.SearchStrategy[Any]:
    """Values a field may not take (and a few it may, near its limits)."""
    near = [info.lo - 1, info.hi + 1, info.hi, info.none_value, None, True, 1.5, "1", (), -1, 1 << 64]
    if info.kind is Kind.ENUM:
        near += [99, 0, 255, *list(info.enum_type or [])[:1]]
    if info.kind is Kind.TEXT:
        near += ["x" * info.max_len, "x" * (info.max_len + 1), "é" * (info.max_len // 2 + 1), "\ud800", b"x"]
    if info.kind is Kind.LIST and info.element is not None:
        return st.one_of(st.sampled_from(near), st.lists(wrong(info.element), min_size=1, max_size=3).map(tuple),
                         st.lists(values(info.element), min_size=info.max_len + 1, max_size=info.max_len + 1))
    if info.kind is Kind.STRUCT:
        return st.one_of(st.sampled_from(near), st.tuples(*(wrong(f) for f in info.fields)))
    return st.sampled_from(near)


@st.composite
def invalid_messages(draw: st.DrawFn) -> Any:
    spec = draw(st.sampled_from([s for s in FAST_SPECS if s.info.fields]))
    message = list(draw(values(spec.info)))
    i = draw(st.integers(0, len(message) - 1))
    message[i] = draw(wrong(spec.info.fields[i]))
    return spec.type(*message)


def outcome(encode: Any, message: Any) -> tuple[str, str]:
    try:
        return "bytes", encode(message).hex()
    except Exception as exc:  # EncodeError naming the field; UnicodeEncodeError for a lone surrogate
        return type(exc).__name__, str(exc)


@settings(max_examples=600, deadline=None)
@given(invalid_messages())
def test_invalid_values_are_refused_by_both_encoders_with_the_same_error(message: Any) -> None:
    spec = type(message).SPEC
    fast, slow = outcome(FAST_CODECS[spec.msg_id].pack, message), outcome(spec.build, message)
    assert fast == slow
    assert fast[0] in ("bytes", EncodeError.__name__, UnicodeEncodeError.__name__)


def test_the_all_ones_of_an_optional_integer_and_a_wrong_enum_are_refused() -> None:
    report = m.StatusReport(1, 1, "x", 1, 2, 3, 4, 5, 6, 7, None, (), None, False, False, False, 1, False, False, 5)
    for bad, field in [(report._replace(refill_due_tick=(1 << 64) - 1), "refill_due_tick"),
                       (report._replace(alarms=(99,)), "alarms[0]"), (report._replace(mode=9), "mode")]:
        with pytest.raises(EncodeError, match=re.escape(f"StatusReport.{field} = ")):
            encode_payload(bad)


# ---- a planted bug is caught -----------------------------------------------------------------------

PLANTED = [
    ("if n > 32:", "if n > 33:"),                    # StatusReport.drug's byte limit off by one
    ("if o + 16 != end:", "if o + 16 > end:"),       # trailing bytes accepted
    ("if n > 16:", "if n > 17:"),                    # StatusReport.alarms' item limit off by one
    ("(None if f19 == 0xffffffffffffffff else f19)", "f19"),  # all ones not read as None
]


@pytest.mark.parametrize("good, bad", PLANTED)
def test_a_bug_planted_in_the_generated_codec_is_caught(good: str, bad: str) -> None:
    spec = m.StatusReport.SPEC
    source, names = generate(spec)  # type: ignore[misc]
    assert good in source
    planted = FastCodec(spec, source.replace(good, bad), names)

    class Caught(Exception):
        pass

    @settings(max_examples=5000, phases=[Phase.generate], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # derandomized: the same search every run
    @given(mutated(spec))
    def search(payload: bytes) -> None:  # the payload test above, on the planted codec
        if not identical(by_fast(planted, payload), by_construct(spec, payload)):
            raise Caught(payload)

    with pytest.raises(Caught) as caught:
        search()
    payload = caught.value.args[0]
    assert identical(by_fast(FAST_CODECS[spec.msg_id], payload), by_construct(spec, payload))


# ---- construct's compiled form: one leniency --------------------------------------------------------

def test_compiled_construct_refuses_a_payload_cut_before_its_last_flag() -> None:
    """construct 2.10's compiled Flag reads a missing byte as True (io.read(1) != b"\\x00"): a Refill
    cut before `bridge` would bridge. MessageSpec.parse feeds the compiled parser a stream on which
    a short read raises, so it is refused as the definition and the fast path refuse it."""
    payload = m.Refill.SPEC.build(m.Refill(1, 2, "x", 4, None, False))[:-1]
    assert by_construct(m.Refill.SPEC, payload) is REJECTED
    assert by_fast(FAST_CODECS[m.Refill.MSG_ID], payload) is REJECTED
    with pytest.raises(Exception):
        decode_frame(frame_bytes(m.Refill.MSG_ID, payload)[:-1])


def test_enum_members_come_back_as_themselves() -> None:
    report = m.StatusReport(1, 1, "x", 1, 2, 3, 4, 5, 6, 7, None, (1, 2), 3, False, False, False, 1, False, False, None)
    read = FAST_CODECS[m.StatusReport.MSG_ID].unpack(encode_payload(report))
    assert all(isinstance(v, enum.IntEnum) for v in (read.mode, *read.alarms, read.sounding))
    assert identical(read, m.StatusReport.SPEC.parse(encode_payload(report)))
