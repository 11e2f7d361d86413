"""What a byte stream should do to the decoder, worked out without the decoder: shared by the
hypothesis fuzz test and the atheris harness."""

from __future__ import annotations

from protocol.framing import MAX_ENCODED_FRAME


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    """The stream cut at the given offsets (sorted, within the stream)."""
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]


def frames_expected(stream: bytes) -> int:
    """Frames the decoder must count as seen: the non-empty zero-terminated parts, and an
    unterminated tail once it is longer than any frame can be."""
    parts = stream.split(b"\x00")
    tail = parts.pop()
    return sum(1 for p in parts if p) + (1 if len(tail) > MAX_ENCODED_FRAME else 0)
