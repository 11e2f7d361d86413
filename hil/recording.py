"""Recordings of every frame and every balance line, as pcapng (written and read with python-pcapng).

One section per scenario run. Its Section Header Block carries `shb_userappl` "ithil <version>"
and, in `opt_comment`, the run's metadata as a JSON object (a JSON longer than one option holds,
65,535 bytes, goes into several opt_comment options in order: joined, they are the JSON). Two
interfaces follow, both with if_tsresol 9 (timestamps are host wall-clock nanoseconds):

    0  LINKTYPE_USER0 (147), if_name "pump", if_description the transport URL: each Enhanced
       Packet Block is ONE protocol frame as it was on the wire, COBS bytes and the 0x00 delimiter
    1  LINKTYPE_USER1 (148), if_name "balance": each EPB is one SCPI line, without its "\\n"

The direction is the EPB's epb_flags: inbound (bits 0-1 = 01) from the device or the balance to
the host, outbound (10) from the host. Every block is flushed to the file as it is written, so a
run that crashes leaves a file readable up to the crash. `ithil protocol wireshark` writes a
dissector that shows these files in Wireshark.

Reading keeps whatever a damaged file holds: python-pcapng's FileScanner takes a file that ends
inside a block header, or a block whose length is too small, for a clean end, so the block
lengths are checked here first and the scanner only sees whole blocks; after damage, reading
resumes at the next section header, if there is one.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

import pcapng
from pcapng import blocks
from pcapng.structs import EPBFlags

from protocol.framing import DELIMITER, MAX_ENCODED_FRAME

from .errors import RecordingError

LINKTYPE_USER0 = 147        # the pump's frames
LINKTYPE_USER1 = 148        # the balance's SCPI lines
PUMP, BALANCE = "pump", "balance"
INTERFACES = {LINKTYPE_USER0: PUMP, LINKTYPE_USER1: BALANCE}
PUMP_INTERFACE, BALANCE_INTERFACE = 0, 1
TSRESOL_NS = b"\x09"        # if_tsresol: 10^-9 s
MAX_OPTION_BYTES = 65532    # an option's length is a u16, padded to 4 bytes

_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_BLOCK_NAMES = {0x0A0D0D0A: "a Section Header Block", 1: "an Interface Description Block",
                6: "an Enhanced Packet Block", 3: "a Simple Packet Block", 5: "an Interface Statistics Block"}


def _tool_version() -> str:
    try:
        return version("ithil")
    except PackageNotFoundError:
        return "unknown"


def _direction_flags(inout: str) -> EPBFlags:
    flags = EPBFlags()
    flags.inout = inout
    return flags


INBOUND = _direction_flags("inbound")     # epb_flags bits 0-1 = 01: device (or balance) -> host
OUTBOUND = _direction_flags("outbound")   # 10: host -> device (or balance)


# ---- writing ------------------------------------------------------------------------------------

class _ZeroLength(bytes):
    """No bytes, yet true: python-pcapng refuses packet data that tests false (`if not packet`),
    and an empty balance line (an empty reply) is a zero-length packet, which pcapng allows."""

    def __bool__(self) -> bool:
        return True


_EMPTY = _ZeroLength()


class Recorder:
    """Writes a recording as the run goes (the file is created, or emptied): `start_section(meta)`
    per scenario run, then every frame and balance line. Context manager; one lock, so a reader
    thread and a writer thread may both record."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(self.path, "wb")
        except OSError as exc:
            raise RecordingError(f"cannot write the recording {self.path}: {exc.strerror}; expected a path "
                                 "in a writable folder") from None
        self._lock = threading.Lock()
        self._writer: pcapng.FileWriter | None = None
        self._packets: dict[int, blocks.EnhancedPacket] = {}   # one block per interface, refilled per packet
        self._closed = False
        self.sections = 0
        self.packets = 0

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, sections={self.sections}, packets={self.packets})"

    def start_section(self, meta: dict) -> None:
        """A new section: its header with `meta` as JSON (key "url": the pump interface's
        description), then the pump and the balance interfaces."""
        text = _metadata_json(meta)
        shb = blocks.SectionHeader(options={"shb_userappl": f"ithil {_tool_version()}",
                                            "opt_comment": _option_chunks(text)})
        pump_options = {"if_name": PUMP, "if_tsresol": TSRESOL_NS}
        if meta.get("url") is not None:
            pump_options["if_description"] = str(meta["url"])
        shb.new_member(blocks.InterfaceDescription, link_type=LINKTYPE_USER0, options=pump_options)
        shb.new_member(blocks.InterfaceDescription, link_type=LINKTYPE_USER1,
                       options={"if_name": BALANCE, "if_tsresol": TSRESOL_NS})
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # python-pcapng: if_tsresol has no field type
            self._check_open()
            try:
                if self._writer is None:
                    self._writer = pcapng.FileWriter(self._file, shb)
                else:
                    self._writer.write_block(shb)   # python-pcapng: an SHB starts a new section, its IDBs follow
                self._file.flush()
            except OSError as exc:
                raise RecordingError(f"writing the recording {self.path} failed: {exc.strerror}") from None
            self._packets = {i: shb.new_member(blocks.EnhancedPacket, interface_id=i, options={"epb_flags": INBOUND})
                             for i in (PUMP_INTERFACE, BALANCE_INTERFACE)}
            self.sections += 1

    def frame(self, outbound: bool, data: bytes) -> None:
        """One pump frame as it was on the wire: COBS bytes ending in its 0x00 delimiter.
        outbound: host -> pump."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise RecordingError(f"a frame of type {type(data).__name__}: expected bytes")
        data = bytes(data)
        where = data.find(DELIMITER)
        if not data or where != len(data) - 1:
            found = "no 0x00" if where < 0 else f"a 0x00 at offset {where}"
            raise RecordingError(f"a frame of {len(data)} bytes with {found}: expected one frame, ending in its "
                                 "0x00 delimiter and holding no other (FrameSplitter cuts a byte stream so)")
        self._write(PUMP_INTERFACE, outbound, data)

    def balance_line(self, outbound: bool, line: str) -> None:
        """One line of the balance's SCPI protocol (a trailing "\\n" is dropped). outbound: a
        command or query the host sent; inbound: the balance's reply."""
        if not isinstance(line, str):
            raise RecordingError(f"a balance line of type {type(line).__name__}: expected str")
        line = line[:-1] if line.endswith("\n") else line
        if "\n" in line:
            raise RecordingError(f"balance line {line!r} holds a line break: expected one line")
        self._write(BALANCE_INTERFACE, outbound, line.encode("utf-8", "surrogateescape") or _EMPTY)

    def flush(self) -> None:
        """Push what is written to the operating system (every block is, already)."""
        with self._lock:
            if not self._closed:
                self._file.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()

    def _write(self, interface_id: int, outbound: bool, data: bytes) -> None:
        with self._lock:
            self._check_open()
            block = self._packets.get(interface_id)
            if block is None or self._writer is None:
                raise RecordingError(f"{self.path}: a packet before any section: expected start_section(meta) first")
            now_ns = time.time_ns()   # host wall clock, the recording's timestamps
            block.timestamp_high, block.timestamp_low = now_ns >> 32, now_ns & 0xFFFFFFFF
            block.packet_data = data
            block.options["epb_flags"] = OUTBOUND if outbound else INBOUND
            try:
                self._writer.write_block(block)
                self._file.flush()
            except OSError as exc:
                raise RecordingError(f"writing the recording {self.path} failed: {exc.strerror}") from None
            self.packets += 1

    def _check_open(self) -> None:
        if self._closed:
            raise RecordingError(f"the recording {self.path} is closed: expected a Recorder still open")


def _metadata_json(meta: dict) -> str:
    if not isinstance(meta, dict):
        raise RecordingError(f"section metadata of type {type(meta).__name__}: expected a dict")
    problem = _not_json(meta, "meta")
    if problem:
        raise RecordingError(f"section metadata {problem}")
    return json.dumps(meta, ensure_ascii=False, allow_nan=False)


def _not_json(value: Any, path: str) -> str:
    """What in `value` JSON would not give back as it is ("" when nothing)."""
    if value is None or isinstance(value, (str, bool, int)):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"{path} = {value}: expected a finite number (JSON has no NaN or inf)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}: expected str keys (JSON objects have no others)"
            problem = _not_json(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return ""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _not_json(item, f"{path}[{index}]")
            if problem:
                return problem
        return ""
    return (f"{path} is a {type(value).__name__}: expected str, int, float, bool, None, list or dict "
            "(what JSON holds)")


def _option_chunks(text: str) -> list[str]:
    """`text` in pieces of at most MAX_OPTION_BYTES UTF-8 bytes, cut between characters."""
    if len(text.encode("utf-8", "surrogatepass")) <= MAX_OPTION_BYTES:
        return [text]
    chunks, start, size = [], 0, 0
    for index, char in enumerate(text):
        width = len(char.encode("utf-8", "surrogatepass"))
        if size + width > MAX_OPTION_BYTES:
            chunks.append(text[start:index])
            start, size = index, 0
        size += width
    chunks.append(text[start:])
    return chunks


# ---- cutting a byte stream into frames ------------------------------------------------------------

class FrameSplitter:
    """Bytes as a transport reads or writes them, in any chunking -> whole frames ending in 0x00.

    A run of bytes without a zero (line noise) never holds more than `max_frame` bytes: older
    bytes beyond that are dropped and counted in `discarded` (a frame that long is damaged anyway).
    """

    def __init__(self, max_frame: int = MAX_ENCODED_FRAME + 1) -> None:
        if max_frame < 2:
            raise RecordingError(f"max_frame = {max_frame}: expected at least 2 (a byte and the delimiter)")
        self.max_frame = max_frame
        self.discarded = 0
        self._pending = bytearray()

    @property
    def pending(self) -> bytes:
        """Bytes of a frame whose delimiter has not come yet."""
        return bytes(self._pending)

    def feed(self, data: bytes) -> list[bytes]:
        """The frames that `data` completes, each ending in its 0x00, in order."""
        if DELIMITER not in data:
            self._pending += data
            self._bound()
            return []
        parts = (self._pending + data).split(DELIMITER)
        self._pending = parts.pop()
        self._bound()
        keep = self.max_frame - 1
        frames = []
        for part in parts:
            if len(part) > keep:
                self.discarded += len(part) - keep
                part = part[-keep:]
            frames.append(bytes(part) + DELIMITER)
        return frames

    def _bound(self) -> None:
        extra = len(self._pending) - (self.max_frame - 1)
        if extra > 0:
            del self._pending[:extra]
            self.discarded += extra


# ---- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packet:
    """One recorded packet: a pump frame (COBS bytes and delimiter) or a balance line (UTF-8)."""

    interface: str          # "pump" or "balance"
    outbound: bool          # host -> device (or balance)
    timestamp_ns: int       # host wall clock
    data: bytes


@dataclass
class Section:
    """One scenario run: its metadata (the JSON of the section header) and its packets in order."""

    meta: dict
    packets: list[Packet] = field(default_factory=list)


@dataclass
class Recording:
    """What a recording file holds. problem: "" when it read cleanly; else what was wrong and where
    (byte offset and block); the sections before the damage are kept, a cut one with its packets."""

    sections: list[Section]
    problem: str = ""


def read_recording(path: Path) -> Recording:
    """Every section of a recording, as far as the file can be read (see Recording.problem).
    RecordingError only when nothing can be read: a missing file, or one that is not pcapng."""
    path = Path(path)
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc.strerror}") from None
    with file, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # python-pcapng warns on every if_tsresol (no field type) and odd options
        size = os.fstat(file.fileno()).st_size
        head = file.read(12)
        if head[:4] != _SHB_MAGIC or (len(head) == 12 and head[8:12] not in _BYTE_ORDER):
            raise RecordingError(f"{path} is not a pcapng file: {_what_it_starts_with(head)}; expected a pcapng "
                                 "Section Header Block (0a 0d 0d 0a, its length, then the byte-order magic "
                                 "1a 2b 3c 4d) as ithil run --record writes")
        reader = _Reader(file, size)
        reader.read()
    if not reader.sections:
        raise RecordingError(f"{path}: no section could be read: {reader.problem()}; expected a pcapng file "
                             "with at least one whole section header")
    return Recording(reader.sections, reader.problem())


def _what_it_starts_with(head: bytes) -> str:
    if not head:
        return "it is empty"
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return "it is a classic pcap (libpcap) file"
    return f"it starts with {head[:8].hex(' ')}"


class _Window:
    """The bytes start..end of a file, as a stream whose offsets count from `start` (python-pcapng
    checks 4-byte alignment by tell(), and a section found after damage may start anywhere)."""

    def __init__(self, file: BinaryIO, start: int, end: int) -> None:
        self.file, self.start, self.end = file, start, end
        file.seek(start)

    def read(self, size: int = -1) -> bytes:
        left = self.end - self.file.tell()
        return self.file.read(left if size is None or size < 0 else min(size, left))

    def tell(self) -> int:
        return self.file.tell() - self.start


class _Reader:
    """Reads a recording block by block into sections, noting damage and resuming after it."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size
        self.sections: list[Section] = []
        self.problems: list[str] = []
        self._interfaces: list[tuple[str | None, int]] = []    # (name, if_tsresol) of the section's IDBs
        self._noted: set[str] = set()
        self._blocks: dict[int, int] = {}    # offset -> number of the block there (1 = the first in the file)

    def problem(self) -> str:
        return "; ".join(self.problems)

    def read(self) -> None:
        start: int | None = 0
        while start is not None:
            end, damage = self._whole_blocks(start)
            undecoded = self._decode(start, end)
            if undecoded is not None:
                damage = undecoded
            if damage is None:
                return
            offset, what = damage
            start = self._next_section_header(offset + 1)
            resumed = f"; read on from the next section header, at byte {start}" if start is not None else ""
            self.problems.append(f"section {max(len(self.sections), 1)}, block {self._blocks.get(offset, '?')} "
                                 f"at byte {offset}: {what}{resumed}")

    def _whole_blocks(self, start: int) -> tuple[int, tuple[int, str] | None]:
        """How far from `start` the blocks are whole (lengths agree, inside the file), and the damage."""
        file, size, pos = self.file, self.size, start
        order = ""
        while pos < size:
            self._blocks[pos] = len(self._blocks) + 1
            file.seek(pos)
            head = file.read(12)
            btype = head[:4]
            if btype == _SHB_MAGIC:
                if len(head) < 12:
                    return pos, (pos, f"the file ends {len(head)} bytes into a Section Header Block (cut short)")
                order = _BYTE_ORDER.get(head[8:12], "")
                if not order:
                    return pos, (pos, f"a Section Header Block whose byte-order magic is {head[8:12].hex(' ')}; "
                                      "expected 1a 2b 3c 4d (damaged)")
            if not order:
                return pos, (pos, "a block before any section header (damaged)")
            if len(head) < 8:
                return pos, (pos, f"the file ends {len(head)} bytes into a block header (cut short)")
            kind, length = struct.unpack(order + "II", head[:8])
            name = _BLOCK_NAMES.get(kind, f"a block of type {kind:#010x}")
            if length < 12 or length % 4:
                return pos, (pos, f"{name} of length {length}; expected a multiple of 4, at least 12 (damaged)")
            if pos + length > size:
                return pos, (pos, f"{name} of {length} bytes, but the file ends {size - pos} bytes into it "
                                  "(cut short, or its length is damaged)")
            file.seek(pos + length - 4)
            (trailer,) = struct.unpack(order + "I", file.read(4))
            if trailer != length:
                return pos, (pos, f"{name} whose length is {length} at its start and {trailer} at its end "
                                  "(damaged)")
            pos += length
        return pos, None

    def _decode(self, start: int, end: int) -> tuple[int, str] | None:
        """Hand the whole blocks start..end to python-pcapng; the block it cannot decode, if any."""
        window = _Window(self.file, start, end)
        blocks_read = iter(pcapng.FileScanner(window))
        while True:
            offset = start + window.tell()
            try:
                block = next(blocks_read)
            except StopIteration:
                break
            except Exception as exc:  # python-pcapng raises its own errors, struct's and UnicodeDecodeError
                return offset, f"python-pcapng cannot decode the block there: {type(exc).__name__}: {exc}"
            self._take(block)
        offset = start + window.tell()
        if offset < end:   # FileScanner stops quietly when a block's content ends short of its fields
            return offset, "python-pcapng stopped reading at a block whose content ends short of its fields"
        return None

    def _take(self, block: Any) -> None:
        if isinstance(block, blocks.SectionHeader):
            self._interfaces = []
            self.sections.append(Section(self._section_meta(block)))
        elif isinstance(block, blocks.InterfaceDescription):
            resolution = block.options.get("if_tsresol", b"\x06")
            name = INTERFACES.get(block.link_type)
            if name is None:
                self._note(f"section {len(self.sections)}: interface {len(self._interfaces)} has link type "
                           f"{block.link_type}; expected {LINKTYPE_USER0} (pump) or {LINKTYPE_USER1} (balance): "
                           "its packets are left out")
            self._interfaces.append((name, resolution[0] if len(resolution) == 1 else 6))
        elif isinstance(block, blocks.EnhancedPacket):
            section = self.sections[-1]
            if block.interface_id >= len(self._interfaces):
                self._note(f"section {len(self.sections)}: packets on interface {block.interface_id}, which it "
                           "does not describe: left out")
                return
            name, resolution = self._interfaces[block.interface_id]
            if name is None:
                return
            flags = block.options.get("epb_flags")
            if flags is None or flags.inout not in ("inbound", "outbound"):
                self._note(f"section {len(self.sections)}: packets without a direction (epb_flags); expected "
                           "inbound or outbound: taken as inbound")
            ticks = (block.timestamp_high << 32) | block.timestamp_low
            section.packets.append(Packet(name, flags is not None and flags.inout == "outbound",
                                          _nanoseconds(ticks, resolution), bytes(block.packet_data)))

    def _section_meta(self, shb: blocks.SectionHeader) -> dict:
        comments = shb.options.get_all("opt_comment") if "opt_comment" in shb.options else []
        where = f"section {len(self.sections) + 1}"
        if not comments:
            self._note(f"{where} has no comment: expected its metadata as a JSON object")
            return {}
        try:
            meta = json.loads("".join(comments))
        except ValueError as exc:
            self._note(f"{where}: its comment is not JSON ({exc}); expected a JSON object")
            return {}
        if not isinstance(meta, dict):
            self._note(f"{where}: its comment is JSON {type(meta).__name__}; expected a JSON object")
            return {}
        return meta

    def _note(self, problem: str) -> None:
        if problem not in self._noted:
            self._noted.add(problem)
            self.problems.append(problem)

    def _next_section_header(self, start: int) -> int | None:
        """The offset of the next section header at or after `start` (its magic and byte order)."""
        file, chunk = self.file, 1 << 20
        pos = start
        while pos < self.size:
            file.seek(pos)
            data = file.read(chunk + 11)
            index = data.find(_SHB_MAGIC)
            while 0 <= index < chunk:
                if data[index + 8:index + 12] in _BYTE_ORDER:
                    return pos + index
                index = data.find(_SHB_MAGIC, index + 1)
            pos += chunk
        return None


def _nanoseconds(ticks: int, tsresol: int) -> int:
    """A timestamp in if_tsresol units, in nanoseconds (exactly, for 10^-9 and coarser)."""
    exponent = tsresol & 0x7F
    if tsresol & 0x80:
        return (ticks * 1_000_000_000) >> exponent
    return ticks * 10 ** (9 - exponent) if exponent <= 9 else ticks // 10 ** (exponent - 9)
