"""protocol.wireshark: the generated Lua dissector, run by tshark over a recording, shows every field
of every frame as decode_frame reads it, and nothing else (no Lua error, no expert info)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cobs import cobs
from typer.testing import CliRunner

from hil.cli import app
from hil.device import default_test_keys
from hil.recording import Recorder
from protocol.crc import CRC_SIZE
from protocol.enums import AlarmCode, BolusKind, Direction, Mode, NakReason
from protocol.fields import FieldInfo, Kind, random_value
from protocol.framing import HEADER, HEADER_INFO, SIGNATURE_INFO, decode_frame, encode_frame, frame_bytes
from protocol.messages import (CATALOGUE, ClinicianBolus, FlexStep, GetStatus, Nak, ProgramFlex, Refill,
                               StatusReport, Telemetry)
from protocol.signing import Signer
from protocol.wireshark import lua_dissector, write_dissector

TSHARK = shutil.which("tshark") or "tshark"   # make test installs it (Debian tshark)


# ---- what tshark should show, derived from the FieldInfo trees ---------------------------------------

def abbrevs(info: FieldInfo, abbrev: str) -> list[str]:
    """Every field name a definition gets: ithil.<Message>.<field>, nested under lists and records."""
    if info.kind is Kind.STRUCT:
        return [name for f in info.fields for name in abbrevs(f, f"{abbrev}.{f.name}")]
    if info.kind is Kind.LIST:
        assert info.element is not None
        return [f"{abbrev}.count", *abbrevs(info.element, abbrev)]   # items are shown under the list's name
    return [abbrev]


def shown(info: FieldInfo, value: Any, abbrev: str, out: dict[str, list[str]]) -> None:
    """The values tshark prints for `value` (-T json -e), field by field, in order."""
    if info.kind is Kind.STRUCT:
        for f, v in zip(info.fields, value, strict=True):
            shown(f, v, f"{abbrev}.{f.name}", out)
    elif info.kind is Kind.LIST:
        assert info.element is not None
        out[f"{abbrev}.count"].append(str(len(value)))
        for item in value:
            shown(info.element, item, abbrev, out)
    elif info.kind is Kind.INT:
        out[abbrev].append(str(info.none_value if value is None else value))
    elif info.kind is Kind.ENUM:
        out[abbrev].append(str(0 if value is None else int(value)))
    elif info.kind is Kind.BOOL:
        out[abbrev].append("1" if value else "0")
    elif info.kind is Kind.BYTES:
        out[abbrev].append(value.hex())
    else:
        out[abbrev].append(value)


def expected_layers(wire: bytes) -> dict[str, list[str]]:
    """What the dissector must show for one recorded frame, from decode_frame's reading of it."""
    frame = decode_frame(wire[:-1])
    spec = type(frame.message).SPEC
    header = HEADER.parse(frame.inner)
    out: dict[str, list[str]] = defaultdict(list)
    for f in HEADER_INFO.fields:
        out[f"ithil.{f.name}"].append(str(header[f.name]))
    out["ithil.msg_id"] = [f"{header.msg_id:#04x}"]
    out["ithil.flags"] = [f"{header.flags:#04x}"]
    out["ithil.flags.signed"] = ["1" if frame.signed else "0"]
    out["ithil.flags.more"] = ["1" if frame.more else "0"]
    shown(spec.info, frame.message, f"ithil.{spec.name}", out)
    if frame.signed:
        shown(SIGNATURE_INFO, frame.signature, "ithil.signature", out)
    out["ithil.crc"] = [f"{int.from_bytes(frame.inner[-CRC_SIZE:], 'little'):#010x}"]
    out["ithil.crc.status"] = ["1"]
    return dict(out)


ALL_FIELDS = sorted({
    *abbrevs(HEADER_INFO, "ithil"), *abbrevs(SIGNATURE_INFO, "ithil.signature"),
    *(name for spec in CATALOGUE.values() for name in abbrevs(spec.info, f"ithil.{spec.name}")),
    "ithil.flags.signed", "ithil.flags.more", "ithil.crc", "ithil.crc.status", "ithil.empty", "ithil_balance.line",
    "_ws.expert.message", "_ws.lua.error", "_ws.malformed",
})


# ---- the frames ------------------------------------------------------------------------------------

def frames() -> list[tuple[bool, bytes]]:
    """(outbound, frame as on the wire): the brief's examples, then two random messages of every id."""
    clinician, _ = default_test_keys()
    signer = Signer(clinician, link_id=2, clock=lambda: 0x0000_7FFF_FFFF_FF00)
    status = StatusReport(2**40 + 5, Mode.FLEX, "baclofen", 2_000, 480_000, 478_611, 35_500_000, 1_234_567, 9_876,
                          1_911, None, (AlarmCode.RESERVOIR_LOW, AlarmCode.OCCLUSION, AlarmCode.MOTOR_STALL), None,
                          True, True, False, 61, False, False, None)
    out = [
        (False, encode_frame(Telemetry(41, 3_276_800, 12_000, 35_400_000, -2_147_483_648, 0b1100010, 2**64 - 2))),
        (True, encode_frame(GetStatus(), seq=17)),
        (False, encode_frame(status, seq=17)),
        (False, encode_frame(status._replace(bolus_active=BolusKind.BRIDGE, sounding=AlarmCode.OCCLUSION,
                                             refill_due_tick=2**64 - 2, alarms=()), seq=18)),
        (True, encode_frame(Refill(1_200_000, 20_000_000, "morphine µg, “neu”", 25_000, None, True), seq=19,
                            signer=signer)),
        (True, encode_frame(ProgramFlex(tuple(FlexStep(i * 32768 * 3600, 100_000 * (i + 1)) for i in range(5))),
                            seq=20, signer=signer)),
        (True, encode_frame(ClinicianBolus(50_000, 32768 * 600), seq=21, signer=signer)),
        (False, encode_frame(Nak(0x15, NakReason.LIMIT_EXCEEDED, "morphine.daily_dose_ug", "31,5",
                                 "at most 30 µg/day (drug library: morphine, hard limit)"), seq=21)),
        (False, encode_frame(Nak(0x99, NakReason.UNKNOWN_ID, "", "", ""), seq=22, more=True)),
    ]
    rng = random.Random(20260501)
    for spec in CATALOGUE.values():
        for _ in range(2):
            message = random_value(spec.info, rng)
            to_pump = spec.direction is Direction.TO_PUMP
            out.append((to_pump, encode_frame(message, seq=rng.randint(0, 0xFFFF),
                                              signer=signer if to_pump and rng.random() < 0.7 else None,
                                              more=not to_pump and rng.random() < 0.3)))
    return out


BALANCE_LINES = [(True, "*IDN?"), (False, "ithil,EB-220,0001,1.0"), (True, "MEAS:MASS?"), (False, "+12.345678 g")]


def bad_crc(wire: bytes) -> bytes:
    inner = bytearray(cobs.decode(wire[:-1]))
    inner[-1] ^= 0x5A
    return cobs.encode(bytes(inner)) + b"\x00"


def tshark(dissector: Path, recording: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TSHARK or "tshark", "-X", f"lua_script:{dissector}", "-r", str(recording), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    complaints = [line for line in done.stderr.splitlines() if line.strip() and "Running as user" not in line]
    assert complaints == [], "tshark complained (a Lua error?):\n" + "\n".join(complaints)
    return done


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple[bool, bytes]]]:
    folder = tmp_path_factory.mktemp("wireshark")
    dissector = write_dissector(folder / "ithil.lua")
    pump_frames = frames()
    path = folder / "rec.pcapng"
    with Recorder(path) as recorder:
        recorder.start_section({"url": "emu://", "scenario": {"id": "dissector"}})
        for outbound, wire in pump_frames:
            recorder.frame(outbound, wire)
        for outbound, line in BALANCE_LINES:
            recorder.balance_line(outbound, line)
        recorder.start_section({"url": "loop://"})
        recorder.frame(False, bad_crc(pump_frames[0][1]))
        recorder.frame(True, pump_frames[2][1])     # a StatusReport sent the wrong way
        recorder.frame(False, b"\x00")              # an empty frame
    return dissector, path, pump_frames


# ---- tests -------------------------------------------------------------------------------------------

def test_every_field_of_the_catalogue_has_its_protofield_and_the_file_is_written(tmp_path: Path) -> None:
    source = lua_dissector()
    for name in ALL_FIELDS:
        if name.startswith("ithil"):
            assert f'("{name}", ' in source, name
    path = write_dissector(tmp_path / "sub" / "ithil.lua")
    assert path.read_text(encoding="utf-8") == source
    assert 'DissectorTable.get("wtap_encap")' in source and "USER0" in source and "USER1" in source


def test_the_cli_writes_the_dissector_and_says_how_to_use_it(tmp_path: Path) -> None:
    out = tmp_path / "ithil.lua"
    result = CliRunner().invoke(app, ["protocol", "wireshark", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == lua_dissector()
    assert f"-X lua_script:{out}" in result.output and ".local/lib/wireshark/plugins" in result.output


def test_tshark_shows_every_field_of_every_frame_as_decode_frame_reads_it(recorded: tuple) -> None:
    dissector, path, pump_frames = recorded
    args = ["-T", "json"]
    for name in ALL_FIELDS:
        args += ["-e", name]
    done = tshark(dissector, path, *args)
    packets = [p["_source"]["layers"] for p in json.loads(done.stdout)]
    assert len(packets) == len(pump_frames) + len(BALANCE_LINES) + 3
    for index, ((_, wire), layers) in enumerate(zip(pump_frames, packets)):
        expected = expected_layers(wire)
        assert layers == expected, f"frame {index + 1}: {type(decode_frame(wire[:-1]).message).__name__}"
    balance = packets[len(pump_frames):len(pump_frames) + len(BALANCE_LINES)]
    assert balance == [{"ithil_balance.line": [line]} for _, line in BALANCE_LINES]

    bad, wrong_way, empty = packets[-3:]
    assert bad["ithil.crc.status"] == ["0"]
    assert any(m.startswith("CRC-32/ISO-HDLC is") for m in bad["_ws.expert.message"])
    assert wrong_way["_ws.expert.message"] == ["StatusReport travels pump -> host; this one went host -> pump"]
    assert "ithil.empty" in empty and "_ws.expert.message" not in empty


def test_tshark_shows_names_directions_and_the_tree(recorded: tuple) -> None:
    dissector, path, pump_frames = recorded
    summary = tshark(dissector, path, "-T", "fields", "-e", "_ws.col.Info").stdout.splitlines()
    assert summary[:3] == ["[pump -> host] Telemetry seq=0", "[host -> pump] GetStatus seq=17",
                           "[pump -> host] StatusReport seq=17"]
    assert summary[4] == "[host -> pump] Refill seq=19 signed"
    assert summary[8] == "[pump -> host] Nak seq=22 more"
    assert summary[len(pump_frames) + 2] == "[host -> balance] MEAS:MASS?"
    assert summary[-3].endswith("[bad CRC]") and summary[-1] == "[pump -> host] empty frame"
    tree = tshark(dissector, path, "-V", "-O", "ithil", "-Y", "frame.number == 3").stdout
    for line in ("msg_id: StatusReport (0x45)", "mode: FLEX (2)", "bolus_active: none (0)",
                 "alarms: 3 items", "alarms: OCCLUSION (6)", "refill_due_tick (ticks): 18446744073709551615 (none)",
                 "CRC status: Good (1)"):
        assert line in tree, line


MALFORMED = [   # (frame as on the wire, what the dissector must say)
    (frame_bytes(0x99, b"\x01\x02\x03", seq=5), "message id 0x99 is not in the catalogue"),
    (frame_bytes(0x45, b"\x01\x02\x03", seq=6), "the StatusReport payload ends before tick"),
    (frame_bytes(0x42, b"\x15\x07\x05abc", seq=7), "the Nak payload ends before field"),
    (frame_bytes(0x42, b"\x15\x63\x00\x00\x00", seq=8), "reason: 99 is not a NakReason"),
    (frame_bytes(0x40, b"\x15\x00\x00", seq=9), "2 bytes after the Ack payload"),
    (frame_bytes(0x41, b"\x13\x05" + b"\x01a" * 5), "soft_limits: 5 items; at most 4 allowed"),
    (frame_bytes(0x40, b"\x15", seq=9, version=2, flags=0x80), "protocol version 2; version 1 expected"),
    (b"\x05ab\x00", "the code byte at 0 points past the frame's end"),
    (b"\x02\x01\x00", "a frame of 1 bytes; at least 11 expected"),
]


def test_malformed_and_random_frames_get_expert_infos_never_a_lua_error(tmp_path: Path) -> None:
    rng = random.Random(7)
    noise = []
    for _ in range(300):   # a good header and CRC around random payload bytes: the walker meets anything
        spec = rng.choice(list(CATALOGUE.values()))
        noise.append(frame_bytes(spec.msg_id, rng.randbytes(rng.randint(0, 80)), seq=rng.randint(0, 0xFFFF),
                                 flags=rng.choice([0, 1, 2])))
    path = tmp_path / "bad.pcapng"
    with Recorder(path) as recorder:
        recorder.start_section({})
        for wire in [w for w, _ in MALFORMED] + noise:
            recorder.frame(False, wire)
    dissector = write_dissector(tmp_path / "ithil.lua")
    done = tshark(dissector, path, "-T", "json", "-e", "_ws.expert.message", "-e", "_ws.lua.error")
    packets = [p["_source"]["layers"] for p in json.loads(done.stdout)]
    assert len(packets) == len(MALFORMED) + len(noise)
    for (_, said), layers in zip(MALFORMED, packets):
        assert any(said in m for m in layers.get("_ws.expert.message", [])), (said, layers)
    assert not [p for p in packets if "_ws.lua.error" in p]
