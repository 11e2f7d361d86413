"""hil.recording: pcapng recordings written as a run goes, read back whole or as far as they go."""

from __future__ import annotations

import datetime
import struct
import subprocess
import time
import warnings
from pathlib import Path

import pcapng
import pytest
from hypothesis import given, settings, strategies as st

from hil.errors import RecordingError
from hil.recording import (BALANCE, LINKTYPE_USER0, LINKTYPE_USER1, PUMP, FrameSplitter, Packet, Recorder,
                           read_recording)
from protocol.enums import AlarmCode, Mode
from protocol.framing import MAX_ENCODED_FRAME, encode_frame
from protocol.messages import GetStatus, StatusReport, Telemetry

EPB, SHB = 6, 0x0A0D0D0A

META = [
    {"scenario": {"id": "flow-accuracy", "text": "rate = 0.5 mL/day # µg/mL, ±2 %, “quoted”, 日本語"},
     "rig": {"name": "emulator", "toml": "[device]\nurl = \"emu://\"\n"}, "started": "2026-05-01T10:00:00Z",
     "url": "socket://127.0.0.1:7001"},
    {"scenario": {"id": "occlusion"}, "url": "emu://?lockstep"},
    {"scenario": {"id": "no-url"}, "values": [1, 2.5, None, True, {"nested": ["x"]}]},
]


def frames_of(n: int) -> list[bytes]:
    """Real frames, as encode_frame puts them on the wire."""
    status = StatusReport(123, Mode.CONTINUOUS, "morphine", 25_000, 500_000, 499_000, 18_000_000, 2_000_000,
                          40_000, 8_000, None, (AlarmCode.RESERVOIR_LOW,), AlarmCode.RESERVOIR_LOW, False, False,
                          False, 80, False, False, None)
    out = []
    for i in range(n):
        out.append(encode_frame(GetStatus(), seq=i + 1))
        out.append(encode_frame(status._replace(tick=i), seq=i + 1))
        out.append(encode_frame(Telemetry(i, i * 10, i, 1000, -5 * i, 0, i)))
    return out


def write_recording(path: Path, per_section: int = 4) -> list[list[Packet]]:
    """Three sections of pump frames both ways and balance lines; the packets each should read as."""
    expected = []
    with Recorder(path) as recorder:
        for meta in META:
            recorder.start_section(meta)
            packets = []
            for index, frame in enumerate(frames_of(per_section)):
                outbound = index % 3 == 0   # GetStatus goes out; StatusReport and Telemetry come in
                recorder.frame(outbound, frame)
                packets.append((PUMP, outbound, frame))
                if len(packets) % 5 == 0:
                    recorder.balance_line(True, "MEAS:MASS?\n")
                    recorder.balance_line(False, "+12.345678 g")
                    packets += [(BALANCE, True, b"MEAS:MASS?"), (BALANCE, False, b"+12.345678 g")]
            expected.append(packets)
    return expected


def blocks_of(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, block type, length) of each block of a little-endian pcapng file."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<II", data, pos)
        out.append((pos, kind, length))
        pos += length
    return out


def scan(path: Path) -> list:
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return list(pcapng.FileScanner(f))


# ---- round trip -----------------------------------------------------------------------------------

def test_sections_packets_directions_timestamps_and_metadata_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    before = time.time_ns()
    expected = write_recording(path)
    after = time.time_ns()
    recording = read_recording(path)
    assert recording.problem == ""
    assert [s.meta for s in recording.sections] == META
    stamps = []
    for section, packets in zip(recording.sections, expected, strict=True):
        assert [(p.interface, p.outbound, p.data) for p in section.packets] == packets
        stamps += [p.timestamp_ns for p in section.packets]
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)


def test_the_file_is_the_fixed_format_section_by_section(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    write_recording(path, per_section=1)
    found = scan(path)
    headers = [b for b in found if isinstance(b, pcapng.blocks.SectionHeader)]
    assert len(headers) == len(META)
    assert all(h.options["shb_userappl"].startswith("ithil ") for h in headers)
    interfaces = [b for b in found if isinstance(b, pcapng.blocks.InterfaceDescription)]
    assert [i.link_type for i in interfaces] == [LINKTYPE_USER0, LINKTYPE_USER1] * len(META)
    assert [i.options["if_name"] for i in interfaces[:2]] == ["pump", "balance"]
    assert interfaces[0].options["if_description"] == META[0]["url"]
    assert "if_description" not in interfaces[4].options           # META[2] has no url
    assert all(i.options["if_tsresol"] == b"\x09" for i in interfaces)
    packets = [b for b in found if isinstance(b, pcapng.blocks.EnhancedPacket)]
    assert {int(p.options["epb_flags"]) & 3 for p in packets} == {0b01, 0b10}
    assert all(p.interface_id == 0 and p.packet_data.endswith(b"\x00") for p in packets if p.interface.link_type == 147)


def test_metadata_longer_than_one_option_goes_into_several_comments(tmp_path: Path) -> None:
    meta = {"scenario": {"text": "µ" * 70_000 + "end"}, "url": "loop://"}
    path = tmp_path / "big.pcapng"
    with Recorder(path) as recorder:
        recorder.start_section(meta)
        recorder.frame(False, encode_frame(GetStatus(), seq=1))
    header = scan(path)[0]
    assert len(header.options.get_all("opt_comment")) == 3       # 140,000 UTF-8 bytes, 65,532 per option
    assert read_recording(path).sections[0].meta == meta


def test_the_file_reads_while_the_recorder_is_still_open(tmp_path: Path) -> None:
    """Every block is flushed: a run that crashes leaves the file readable up to the crash."""
    path = tmp_path / "live.pcapng"
    recorder = Recorder(path)
    recorder.start_section(META[1])
    for frame in frames_of(2):
        recorder.frame(False, frame)
    recording = read_recording(path)
    assert recording.problem == ""
    assert [p.data for p in recording.sections[0].packets] == frames_of(2)
    recorder.close()
    recorder.close()


@pytest.mark.parametrize(("meta", "named"), [
    ({"started": datetime.datetime(2026, 5, 1)}, "meta['started'] is a datetime"),
    ({"values": [1, float("nan")]}, "meta['values'][1] = nan"),
    ({1: "x"}, "the key 1"),
    ("id=3", "of type str"),
])
def test_metadata_that_json_would_not_give_back_is_refused_by_name(tmp_path: Path, meta: object, named: str) -> None:
    with Recorder(tmp_path / "x.pcapng") as recorder, pytest.raises(RecordingError, match="expected") as caught:
        recorder.start_section(meta)  # type: ignore[arg-type]
    assert named in str(caught.value)


def test_what_is_not_one_whole_frame_or_comes_out_of_turn_is_refused(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "x.pcapng")
    with pytest.raises(RecordingError, match="before any section"):
        recorder.frame(True, b"\x01\x00")
    recorder.start_section({})
    for bad in (b"", b"\x03ab", b"\x01\x00\x01\x00"):
        with pytest.raises(RecordingError, match="expected one frame"):
            recorder.frame(True, bad)
    with pytest.raises(RecordingError, match="expected one line"):
        recorder.balance_line(True, "TARE\nMEAS:MASS?")
    recorder.close()
    with pytest.raises(RecordingError, match="closed"):
        recorder.frame(True, b"\x01\x00")
    Recorder(tmp_path / "new" / "folder" / "made.pcapng").close()    # missing folders are made
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RecordingError, match="cannot write"):
        Recorder(tmp_path / "a-file" / "below.pcapng")              # but not below a file


# ---- FrameSplitter --------------------------------------------------------------------------------

FRAMES = frames_of(3) + [b"\x00"]   # an empty frame (two delimiters in a row) is on the wire too
STREAM = b"".join(FRAMES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_frame_splitter_gives_the_whole_frames_whatever_the_chunking(cuts: list[int]) -> None:
    splitter = FrameSplitter()
    edges = [0, *sorted(cuts), len(STREAM)]
    out = []
    for start, end in zip(edges, edges[1:]):
        out += splitter.feed(STREAM[start:end])
    assert out == FRAMES
    assert splitter.pending == b"" and splitter.discarded == 0


def test_frame_splitter_keeps_a_partial_frame_until_its_delimiter() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(FRAMES[0][:-1]) == []
    assert splitter.pending == FRAMES[0][:-1]
    assert splitter.feed(b"\x00" + FRAMES[1][:3]) == [FRAMES[0]]
    assert splitter.pending == FRAMES[1][:3]


def test_frame_splitter_holds_at_most_one_frame_of_noise_without_a_zero() -> None:
    splitter = FrameSplitter()
    for _ in range(100):
        assert splitter.feed(b"\xAA" * 1000) == []
        assert len(splitter.pending) <= MAX_ENCODED_FRAME
    assert splitter.discarded == 100_000 - MAX_ENCODED_FRAME
    (frame,) = splitter.feed(b"\xAA" * 5000 + b"\x00")
    assert frame == b"\xAA" * MAX_ENCODED_FRAME + b"\x00"


# ---- damaged files ------------------------------------------------------------------------------

def packet_blocks(data: bytes) -> list[tuple[int, int]]:
    return [(offset, length) for offset, kind, length in blocks_of(data) if kind == EPB]


@pytest.mark.parametrize("into", [4, 8, 9, 30])   # 4: just after the block type, where FileScanner stops quietly
def test_a_file_cut_inside_a_packet_block_keeps_the_packets_before_it(tmp_path: Path, into: int) -> None:
    path = tmp_path / "run.pcapng"
    expected = write_recording(path)
    data = path.read_bytes()
    first_of_section_2 = len(expected[0])
    offset, length = packet_blocks(data)[first_of_section_2 + 5]   # the sixth packet of section 2
    assert into < length
    path.write_bytes(data[:offset + into])
    recording = read_recording(path)
    assert [s.meta for s in recording.sections] == META[:2]
    assert [(p.interface, p.outbound, p.data) for p in recording.sections[0].packets] == expected[0]
    assert [(p.interface, p.outbound, p.data) for p in recording.sections[1].packets] == expected[1][:5]
    assert f"byte {offset}" in recording.problem and "section 2" in recording.problem
    assert "cut short" in recording.problem


def test_garbage_over_a_block_keeps_what_came_before_and_reads_on_at_the_next_section(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    expected = write_recording(path)
    data = path.read_bytes()
    offset, length = packet_blocks(data)[3]          # the fourth packet of section 1
    garbage = b"line noise, not pcapng" * 2
    path.write_bytes(data[:offset] + garbage + data[offset + len(garbage):])
    recording = read_recording(path)
    assert [s.meta for s in recording.sections] == META
    assert [p.data for p in recording.sections[0].packets] == [d for _, _, d in expected[0][:3]]
    for section, packets in zip(recording.sections[1:], expected[1:]):
        assert [(p.interface, p.outbound, p.data) for p in section.packets] == packets
    assert f"block 7 at byte {offset}" in recording.problem   # SHB, 2 IDBs, 3 packets, then this one
    assert "damaged" in recording.problem and "read on from the next section header" in recording.problem


def test_garbage_inserted_between_blocks_and_a_length_that_disagrees_are_found(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    expected = write_recording(path)
    data = path.read_bytes()
    offset, length = packet_blocks(data)[2]
    path.write_bytes(data[:offset] + b"\x01\x02\x03" + data[offset:])   # and the next section is now unaligned
    recording = read_recording(path)
    assert len(recording.sections[0].packets) == 2 and len(recording.sections) == 3
    assert recording.sections[2].packets[-1].data == expected[2][-1][2]
    assert f"at byte {offset}" in recording.problem

    damaged = bytearray(data)
    damaged[offset + length - 4:offset + length] = struct.pack("<I", length + 4)   # its trailing length
    path.write_bytes(bytes(damaged))
    recording = read_recording(path)
    assert len(recording.sections[0].packets) == 2
    assert f"length is {length} at its start and {length + 4} at its end" in recording.problem


@pytest.mark.parametrize(("content", "said"), [
    (b"", "it is empty"),
    (b"scenario: flow-accuracy\nrig: emulator\n", "it starts with 73 63 65 6e"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147), "classic pcap"),
])
def test_a_file_that_is_not_pcapng_is_refused_saying_what_was_expected(tmp_path: Path, content: bytes,
                                                                       said: str) -> None:
    path = tmp_path / "notes.pcapng"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="is not a pcapng file") as caught:
        read_recording(path)
    assert said in str(caught.value) and "expected a pcapng Section Header Block" in str(caught.value)
    with pytest.raises(RecordingError, match="cannot read"):
        read_recording(tmp_path / "missing.pcapng")


# ---- other tools read it ----------------------------------------------------------------------------

def test_tshark_reads_the_file_and_counts_every_packet(tmp_path: Path) -> None:
    path = tmp_path / "run.pcapng"
    expected = write_recording(path)
    done = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.p2p_dir",
                           "-e", "frame.interface_name"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    complaints = [line for line in done.stderr.splitlines() if "Running as user" not in line and line.strip()]
    assert complaints == []
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    packets = [p for section in expected for p in section]
    assert rows == [[str(len(data)), "0" if outbound else "1", interface] for interface, outbound, data in packets]
