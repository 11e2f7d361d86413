"""The frame check: CRC-32/ISO-HDLC, as catalogued in the CRC RevEng catalogue.

Parameters: width 32, poly 0x04C11DB7, init 0xFFFFFFFF, refin and refout true, xorout
0xFFFFFFFF; check (the CRC of b"123456789") 0xCBF43926; residue 0xDEBB20E3. It is the CRC of
Ethernet, zlib and PNG, so every firmware has a table for it and Python has it in C
(`zlib.crc32`). Stored little-endian after the frame, the CRC of the frame *with* its CRC is
the constant `GOOD_FRAME_CRC` (0x2144DF1C: the residue with xorout applied), so a receiver
checks a frame with one call and no slicing.
"""

from __future__ import annotations

import struct
import zlib

CRC_NAME = "CRC-32/ISO-HDLC"
CRC_POLY = 0x04C11DB7
CRC_INIT = 0xFFFFFFFF
CRC_XOROUT = 0xFFFFFFFF
CRC_CHECK = 0xCBF43926   # crc32(b"123456789")
CRC_RESIDUE = 0xDEBB20E3
GOOD_FRAME_CRC = CRC_RESIDUE ^ CRC_XOROUT  # crc32(data + crc32(data) as u32 LE)
CRC_SIZE = 4

_CRC = struct.Struct("<I")


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32/ISO-HDLC of `data` (zlib's C implementation)."""
    return zlib.crc32(data)


def append_crc(data: bytes) -> bytes:
    """`data` followed by its CRC-32/ISO-HDLC, little-endian."""
    return data + _CRC.pack(zlib.crc32(data))


def crc_ok(frame: bytes | bytearray | memoryview) -> bool:
    """True when `frame` ends with the right CRC of what precedes it."""
    return zlib.crc32(frame) == GOOD_FRAME_CRC
