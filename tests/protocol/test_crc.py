"""The frame CRC is the catalogued CRC-32/ISO-HDLC: check value, parameters, residue."""

from __future__ import annotations


from hypothesis import given, settings, strategies as st

from protocol.crc import (CRC_CHECK, CRC_INIT, CRC_NAME, CRC_POLY, CRC_RESIDUE, CRC_XOROUT,
                          GOOD_FRAME_CRC, append_crc, crc32, crc_ok)


def crc_from_catalogue(data: bytes) -> int:
    """CRC-32/ISO-HDLC bit by bit from the catalogue's parameters (reflected poly, init, xorout)."""
    poly_reflected = int(f"{CRC_POLY:032b}"[::-1], 2)
    reg = CRC_INIT
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ poly_reflected if reg & 1 else reg >> 1
    return reg ^ CRC_XOROUT


def test_check_value_of_the_catalogue() -> None:
    assert CRC_NAME == "CRC-32/ISO-HDLC"
    assert crc32(b"123456789") == CRC_CHECK == 0xCBF43926
    assert crc_from_catalogue(b"123456789") == 0xCBF43926


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_zlib_is_the_catalogued_crc_and_a_good_frame_has_the_fixed_residue(data: bytes) -> None:
    assert crc32(data) == crc_from_catalogue(data)
    framed = append_crc(data)
    assert crc_ok(framed)
    # the register before xorout is the catalogue's residue
    assert crc32(framed) ^ CRC_XOROUT == CRC_RESIDUE == 0xDEBB20E3
    assert GOOD_FRAME_CRC == 0x2144DF1C


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_single_bit_flip_is_caught(data: bytes, draw: st.DataObject) -> None:
    framed = bytearray(append_crc(data))
    bit = draw.draw(st.integers(0, 8 * len(framed) - 1))
    framed[bit // 8] ^= 1 << (bit % 8)
    assert not crc_ok(bytes(framed))
