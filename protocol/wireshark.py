"""A Wireshark dissector for ithil recordings (Lua, Wireshark 4.0 and Lua 5.2), generated from the
definitions: `ithil protocol wireshark` writes it, `wireshark -X lua_script:ithil.lua rec.pcapng`
uses it.

Nothing in it is written per message. The catalogue (messages.py), the header and signature
records (framing.py) and the CRC's parameters (crc.py) become Lua tables: one ProtoField per field,
named `ithil.<Message>.<field>` (`ithil.ProgramFlex.steps.start_tick` inside a list of records,
`ithil.<Message>.<list>.count` for a list's count), enum value strings, text and list limits. One
generic Lua walker, the same for every message, reads a payload through those tables. Protocol
"ithil" takes LINKTYPE_USER0 packets (one COBS frame with its 0x00 each, hil.recording): it
decodes COBS into a "COBS-decoded" tab, shows the header, the payload, the signature (its MAC is
shown, not verified: the dissector holds no keys) and the CRC, which it checks. Protocol
"ithil_balance" shows LINKTYPE_USER1 packets, the balance's SCPI lines (`ithil_balance.line`).
"""

from __future__ import annotations

import enum
from pathlib import Path

from .crc import CRC_INIT, CRC_NAME, CRC_POLY, CRC_SIZE, CRC_XOROUT
from .enums import Direction
from .errors import CatalogueError
from .fields import FieldInfo, Kind
from .framing import DEFINED_FLAGS, FLAG_MORE, FLAG_SIGNED, HEADER_INFO, HEADER_SIZE, SIGNATURE_INFO, SIGNATURE_SIZE
from .messages import CATALOGUE, PROTOCOL_VERSION, SUPPORTED_VERSIONS

PROTO = "ithil"
_UINT_FIELDS = {1: "uint8", 2: "uint16", 4: "uint32", 6: "uint64", 8: "uint64"}   # 6: the signature's u48


def _lua(text: str) -> str:
    """A Lua string literal (UTF-8 kept as it is; Lua strings are bytes)."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _reflect32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


class _Generator:
    """Walks the definitions once, collecting ProtoFields, value strings and field tables."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []          # (abbrev, Lua ProtoField constructor)
        self.value_strings: dict[str, str] = {}          # Lua name -> table
        self._abbrevs: set[str] = set()

    def field(self, abbrev: str, constructor: str) -> str:
        if abbrev in self._abbrevs:
            raise CatalogueError(f"Wireshark field {abbrev} would be defined twice: expected field names that "
                                 "stay unique under ithil.<Message>.<field>")
        self._abbrevs.add(abbrev)
        self.fields.append((abbrev, constructor))
        return f"F[{_lua(abbrev)}]"

    def enum_values(self, enum_type: type[enum.IntEnum], optional: bool) -> str:
        name = f"vs_{enum_type.__name__}" + ("_or_none" if optional else "")
        if name not in self.value_strings:
            pairs = ([(0, "none")] if optional else []) + [(int(m), m.name) for m in enum_type]
            self.value_strings[name] = "{ " + ", ".join(f"[{v}] = {_lua(n)}" for v, n in pairs) + " }"
        return name

    def defs(self, info: FieldInfo, abbrev: str, label: str) -> str:
        """The Lua table that tells the walker how to read one field (and declares its ProtoField)."""
        desc = " ".join(info.doc.split())
        label = f"{label} ({info.unit})" if info.unit else label
        head = f"{_lua(abbrev)}, {_lua(label)}"
        if info.kind is Kind.INT:
            assert info.size is not None
            kind = f"int{8 * info.size}" if info.lo < 0 else _UINT_FIELDS[info.size]
            field = self.field(abbrev, f"ProtoField.{kind}({head}, base.DEC, nil, nil, {_lua(desc)})")
            none = ", none = true" if info.none_value is not None else ""
            return f'{{ k = "int", size = {info.size}, f = {field}, label = {_lua(label)}{none} }}'
        if info.kind is Kind.BOOL:
            field = self.field(abbrev, f"ProtoField.bool({head}, base.NONE, nil, nil, {_lua(desc)})")
            return f'{{ k = "int", size = {info.size}, f = {field}, label = {_lua(label)} }}'
        if info.kind is Kind.ENUM:
            assert info.enum_type is not None and info.size is not None
            values = self.enum_values(info.enum_type, info.optional)
            field = self.field(abbrev, f"ProtoField.{_UINT_FIELDS[info.size]}({head}, base.DEC, {values}, nil, "
                                       f"{_lua(desc)})")
            return (f'{{ k = "enum", size = {info.size}, f = {field}, label = {_lua(label)}, vs = {values}, '
                    f'enum = {_lua(info.enum_type.__name__)} }}')
        if info.kind is Kind.TEXT:
            field = self.field(abbrev, f"ProtoField.string({head}, base.UNICODE, {_lua(desc)})")
            return f'{{ k = "text", max = {info.max_len}, f = {field}, label = {_lua(label)} }}'
        if info.kind is Kind.BYTES:
            field = self.field(abbrev, f"ProtoField.bytes({head}, base.NONE, {_lua(desc)})")
            return f'{{ k = "bytes", size = {info.size}, f = {field}, label = {_lua(label)} }}'
        if info.kind is Kind.LIST:
            assert info.element is not None
            count = self.field(f"{abbrev}.count", f"ProtoField.uint8({_lua(abbrev + '.count')}, "
                                                  f"{_lua(label + ' count')}, base.DEC)")
            element = self.defs(info.element, abbrev, label)   # a list's items are shown under its own name
            return (f'{{ k = "list", max = {info.max_len}, count = {count}, label = {_lua(label)}, '
                    f'element = {element} }}')
        if info.kind is Kind.STRUCT:
            return (f'{{ k = "record", label = {_lua(info.type_name)}, '
                    f'fields = {self.record(info, abbrev)} }}')
        raise CatalogueError(f"field {abbrev}: kind {info.kind} has no Wireshark form")

    def record(self, info: FieldInfo, prefix: str) -> str:
        items = [self.defs(f, f"{prefix}.{f.name}", f.name) for f in info.fields]
        return "{\n    " + ",\n    ".join(items) + ",\n  }" if items else "{}"


def _offsets(info: FieldInfo) -> dict[str, int]:
    offsets, at = {}, 0
    for f in info.fields:
        offsets[f.name] = at
        at += f.size  # type: ignore[operator]  # the header is fixed-size
    return offsets


def lua_dissector() -> str:
    """The dissector's Lua source, from the catalogue, the header, the signature and the CRC."""
    gen = _Generator()
    header = gen.record(HEADER_INFO, PROTO)
    names = "{ " + ", ".join(f"[{spec.msg_id:#04x}] = {_lua(spec.name)}" for spec in CATALOGUE.values()) + " }"
    signature = gen.record(SIGNATURE_INFO, f"{PROTO}.signature")
    messages = []
    for spec in CATALOGUE.values():
        messages.append(f"[{spec.msg_id:#04x}] = {{ name = {_lua(spec.name)}, direction = "
                        f"{_lua(spec.direction.value)},\n  fields = {gen.record(spec.info, f'{PROTO}.{spec.name}')} }}")
    # the header's msg_id and flags read better with names and bits than as plain numbers
    fields = []
    for abbrev, constructor in gen.fields:
        if abbrev == f"{PROTO}.msg_id":
            constructor = constructor.replace("base.DEC, nil,", "base.HEX, MESSAGE_NAMES,", 1)
        elif abbrev == f"{PROTO}.flags":
            constructor = constructor.replace("base.DEC,", "base.HEX,", 1)
        fields.append(f"F[{_lua(abbrev)}] = {constructor}")
    offsets = _offsets(HEADER_INFO)
    value_strings = "\n".join(f"local {name} = {table}" for name, table in gen.value_strings.items())
    return _TEMPLATE.format(
        version=PROTOCOL_VERSION, value_strings=value_strings, names=names, fields="\n".join(fields),
        header=header, signature=signature, messages=",\n".join(messages),
        header_size=HEADER_SIZE, signature_size=SIGNATURE_SIZE, crc_size=CRC_SIZE, crc_name=CRC_NAME,
        crc_poly=f"{_reflect32(CRC_POLY):#010x}", crc_init=f"{CRC_INIT:#010x}", crc_xorout=f"{CRC_XOROUT:#010x}",
        flag_signed=f"{FLAG_SIGNED:#04x}", flag_more=f"{FLAG_MORE:#04x}", defined_flags=f"{DEFINED_FLAGS:#04x}",
        versions="{ " + ", ".join(f"[{v}] = true" for v in SUPPORTED_VERSIONS) + " }",
        version_list=", ".join(str(v) for v in SUPPORTED_VERSIONS), off_version=offsets["version"],
        off_flags=offsets["flags"],
        off_seq=offsets["seq"], off_msg_id=offsets["msg_id"], off_length=offsets["length"],
        to_pump=_lua(Direction.TO_PUMP.value), to_host=_lua(Direction.TO_HOST.value))


def write_dissector(path: Path) -> Path:
    """Write the dissector to `path` (ithil.lua); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(lua_dissector(), encoding="utf-8")
    return target


_TEMPLATE = """\
-- ithil wire protocol, version {version}: a Wireshark dissector (Wireshark 4.0, Lua 5.2).
-- Generated by `ithil protocol wireshark` from protocol/ (protocol.wireshark.lua_dissector).
-- Do not edit: generate it again when the protocol changes.
--
-- Use: wireshark -X lua_script:ithil.lua rec.pcapng   (or copy it to ~/.local/lib/wireshark/plugins/)
-- Recordings (ithil run --record): LINKTYPE_USER0 = pump frames, one COBS frame and its 0x00 per
-- packet; LINKTYPE_USER1 = balance lines (SCPI).

local ithil = Proto("ithil", "ithil pump protocol")
local balance = Proto("ithil_balance", "ithil balance (SCPI)")

-- ---- value strings ----------------------------------------------------------------------------
{value_strings}
local MESSAGE_NAMES = {names}

-- ---- fields -------------------------------------------------------------------------------------
local F = {{}}
{fields}
F["ithil.flags.signed"] = ProtoField.bool("ithil.flags.signed", "signed", 8, nil, {flag_signed})
F["ithil.flags.more"] = ProtoField.bool("ithil.flags.more", "more answers follow", 8, nil, {flag_more})
F["ithil.crc"] = ProtoField.uint32("ithil.crc", "CRC ({crc_name})", base.HEX)
F["ithil.crc.status"] = ProtoField.uint8("ithil.crc.status", "CRC status", base.DEC, {{ [0] = "Bad", [1] = "Good" }})
F["ithil.empty"] = ProtoField.none("ithil.empty", "empty frame (two delimiters in a row)")
local f_line = ProtoField.string("ithil_balance.line", "line", base.UNICODE)

local field_list = {{}}
for _, f in pairs(F) do field_list[#field_list + 1] = f end
ithil.fields = field_list
balance.fields = {{ f_line }}

local E = {{
  bad_crc = ProtoExpert.new("ithil.expert.bad_crc", "Bad CRC", expert.group.CHECKSUM, expert.severity.ERROR),
  cobs = ProtoExpert.new("ithil.expert.cobs", "Not a COBS frame", expert.group.MALFORMED, expert.severity.ERROR),
  malformed = ProtoExpert.new("ithil.expert.malformed", "Malformed", expert.group.MALFORMED, expert.severity.ERROR),
  unknown = ProtoExpert.new("ithil.expert.unknown_id", "Unknown message id", expert.group.PROTOCOL,
                            expert.severity.WARN),
  version = ProtoExpert.new("ithil.expert.version", "Protocol version or flag not spoken", expert.group.PROTOCOL,
                            expert.severity.WARN),
  direction = ProtoExpert.new("ithil.expert.direction", "Message sent the wrong way", expert.group.SEQUENCE,
                              expert.severity.NOTE),
}}
ithil.experts = {{ E.bad_crc, E.cobs, E.malformed, E.unknown, E.version, E.direction }}

-- ---- layouts: header, signature, every message -----------------------------------------------
local HEADER = {header}
local SIGNATURE = {signature}
local MESSAGES = {{
{messages}
}}

local HEADER_SIZE, SIGNATURE_SIZE, CRC_SIZE = {header_size}, {signature_size}, {crc_size}
local FLAG_SIGNED, FLAG_MORE, DEFINED_FLAGS = {flag_signed}, {flag_more}, {defined_flags}
local SUPPORTED_VERSIONS = {versions}
local DIRECTIONS = {{ [0] = {to_pump}, [1] = {to_host} }}   -- pinfo.p2p_dir: 0 sent (outbound), 1 received

-- ---- CRC and COBS ---------------------------------------------------------------------------------
local B = bit32 or bit
local function u32(x) return x % 4294967296 end
local CRC_TABLE = {{}}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if B.band(c, 1) ~= 0 then c = B.bxor(B.rshift(c, 1), {crc_poly}) else c = B.rshift(c, 1) end
  end
  CRC_TABLE[i] = u32(c)
end

local function crc32(bytes, n)
  local c = {crc_init}
  for i = 0, n - 1 do
    c = B.bxor(CRC_TABLE[u32(B.band(B.bxor(c, bytes:get_index(i)), 0xFF))], B.rshift(c, 8))
  end
  return u32(B.bxor(c, {crc_xorout}))
end

local function cobs_decode(raw, n)
  local out = ByteArray.new()
  out:set_size(n)
  local i, o = 0, 0
  while i < n do
    local code = raw:get_index(i)
    if code == 0 then return nil, "a 0x00 inside the frame, at byte " .. i end
    if i + code > n then return nil, "the code byte at " .. i .. " points past the frame's end" end
    for j = i + 1, i + code - 1 do
      out:set_index(o, raw:get_index(j))
      o = o + 1
    end
    i = i + code
    if code < 0xFF and i < n then
      out:set_index(o, 0)
      o = o + 1
    end
  end
  out:set_size(o)
  return out
end

-- ---- the walker: one field table at a time ----------------------------------------------------
local function need(ctx, off, n, label)
  if off + n > ctx.limit then error({{ short = label }}, 0) end
end

local function all_ones(range)
  for i = 0, range:len() - 1 do
    if range(i, 1):uint() ~= 0xFF then return false end
  end
  return true
end

local read_fields

local function read_field(ctx, d, off, tree)
  local tvb = ctx.tvb
  if d.k == "int" or d.k == "enum" then
    need(ctx, off, d.size, d.label)
    local range = tvb(off, d.size)
    local item = tree:add_le(d.f, range)
    if d.none and all_ones(range) then item:append_text(" (none)") end
    if d.k == "enum" and d.vs[range:le_uint()] == nil then
      item:add_proto_expert_info(E.malformed, d.label .. ": " .. range:le_uint() .. " is not a " .. d.enum)
    end
    return off + d.size
  elseif d.k == "bytes" then
    need(ctx, off, d.size, d.label)
    tree:add(d.f, tvb(off, d.size))
    return off + d.size
  elseif d.k == "text" then
    need(ctx, off, 1, d.label)
    local n = tvb(off, 1):uint()
    need(ctx, off + 1, n, d.label)
    local value = ""
    if n > 0 then value = tvb(off + 1, n):string(ENC_UTF_8) end
    local item = tree:add(d.f, tvb(off, 1 + n), value)
    if n > d.max then
      item:add_proto_expert_info(E.malformed, d.label .. ": " .. n .. " bytes; at most " .. d.max .. " allowed")
    end
    return off + 1 + n
  elseif d.k == "list" then
    need(ctx, off, 1, d.label)
    local n = tvb(off, 1):uint()
    local list = tree:add(tvb(off, 1), d.label .. ": " .. n .. (n == 1 and " item" or " items"))
    list:add(d.count, tvb(off, 1))
    if n > d.max then
      list:add_proto_expert_info(E.malformed, d.label .. ": " .. n .. " items; at most " .. d.max .. " allowed")
    end
    local start = off
    off = off + 1
    for i = 0, n - 1 do
      if d.element.k == "record" then
        need(ctx, off, 1, d.label .. " [" .. i .. "]")
        local item = list:add(tvb(off, 1), d.element.label .. " [" .. i .. "]")
        local item_start = off
        off = read_fields(ctx, d.element.fields, off, item)
        item:set_len(off - item_start)
      else
        off = read_field(ctx, d.element, off, list)
      end
    end
    list:set_len(off - start)
    return off
  elseif d.k == "record" then
    need(ctx, off, 1, d.label)
    local item = tree:add(tvb(off, 1), d.label)
    local start = off
    off = read_fields(ctx, d.fields, off, item)
    item:set_len(off - start)
    return off
  end
  error("ithil.lua: a field of unknown kind " .. tostring(d.k))
end

read_fields = function(ctx, defs, off, tree)
  for _, d in ipairs(defs) do off = read_field(ctx, d, off, tree) end
  return off
end

-- reads `defs` from `off`; false and an expert info when the bytes end before a field
local function read_part(ctx, defs, off, tree, what)
  local ok, result = pcall(read_fields, ctx, defs, off, tree)
  if ok then return result end
  if type(result) == "table" and result.short then
    tree:add_proto_expert_info(E.malformed, what .. " ends before " .. result.short)
    return nil
  end
  error(result, 0)
end

-- ---- the pump's frames ----------------------------------------------------------------------------
function ithil.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "ithil"
  local dir = DIRECTIONS[pinfo.p2p_dir]
  local prefix = dir and ("[" .. dir .. "] ") or ""
  local root = tree:add(ithil, tvb())
  local n = tvb:len()
  if n == 1 and tvb(0, 1):uint() == 0 then
    root:add(F["ithil.empty"], tvb(0, 1))
    pinfo.cols.info = prefix .. "empty frame"
    return n
  end
  local raw = tvb:bytes()
  local body = n
  if raw:get_index(n - 1) == 0 then
    body = n - 1
  else
    root:add_proto_expert_info(E.cobs, "no 0x00 delimiter at the end of the packet")
  end
  local decoded, why = cobs_decode(raw, body)
  if decoded == nil then
    root:add_proto_expert_info(E.cobs, why)
    pinfo.cols.info = prefix .. "not a COBS frame"
    return n
  end
  local size = decoded:len()
  if size < HEADER_SIZE + CRC_SIZE then
    root:add_proto_expert_info(E.malformed, "a frame of " .. size .. " bytes; at least " ..
                               (HEADER_SIZE + CRC_SIZE) .. " expected (header and CRC)")
    pinfo.cols.info = prefix .. "frame too short"
    return n
  end
  local dec = decoded:tvb("COBS-decoded")
  local version = dec({off_version}, 1):uint()
  local flags = dec({off_flags}, 1):uint()
  local seq = dec({off_seq}, 2):le_uint()
  local msg_id = dec({off_msg_id}, 1):uint()
  local length = dec({off_length}, 2):le_uint()
  local signed = B.band(flags, FLAG_SIGNED) ~= 0
  local more = B.band(flags, FLAG_MORE) ~= 0
  local spec = MESSAGES[msg_id]
  local name = spec and spec.name or string.format("unknown message 0x%02x", msg_id)
  root:append_text(", " .. name .. ", seq " .. seq)

  local htree = root:add(dec(0, HEADER_SIZE), "Header")
  read_part({{ tvb = dec, limit = HEADER_SIZE }}, HEADER, 0, htree, "the header")
  htree:add(F["ithil.flags.signed"], dec({off_flags}, 1))
  htree:add(F["ithil.flags.more"], dec({off_flags}, 1))
  if not SUPPORTED_VERSIONS[version] then
    htree:add_proto_expert_info(E.version, "protocol version " .. version .. "; version {version_list} expected")
  end
  if B.band(flags, B.bnot(DEFINED_FLAGS)) ~= 0 then
    htree:add_proto_expert_info(E.version, string.format("flags 0x%02x: only 0x%02x are defined", flags,
                                                         DEFINED_FLAGS))
  end

  local payload_size = size - HEADER_SIZE - CRC_SIZE - (signed and SIGNATURE_SIZE or 0)
  if payload_size < 0 then
    root:add_proto_expert_info(E.malformed, "a signed frame of " .. size .. " bytes is too short for its signature")
    payload_size = 0
  end
  if length ~= payload_size then
    htree:add_proto_expert_info(E.malformed, "the header says " .. length .. " payload bytes; the frame holds " ..
                                payload_size)
  end

  if payload_size > 0 or spec then
    local prange = payload_size > 0 and dec(HEADER_SIZE, payload_size) or dec(HEADER_SIZE, 1)
    local ptree = root:add(prange, name)
    if payload_size == 0 then ptree:set_len(0) end
    if spec then
      local off = read_part({{ tvb = dec, limit = HEADER_SIZE + payload_size }}, spec.fields, HEADER_SIZE, ptree,
                            "the " .. spec.name .. " payload")
      if off and off < HEADER_SIZE + payload_size then
        ptree:add_proto_expert_info(E.malformed, (HEADER_SIZE + payload_size - off) .. " bytes after the " ..
                                    spec.name .. " payload")
      end
      if dir and spec.direction ~= dir then
        root:add_proto_expert_info(E.direction, spec.name .. " travels " .. spec.direction .. "; this one went " .. dir)
      end
    else
      ptree:add_proto_expert_info(E.unknown, string.format("message id 0x%02x is not in the catalogue", msg_id))
    end
  end

  if signed and size >= HEADER_SIZE + SIGNATURE_SIZE + CRC_SIZE then
    local at = size - CRC_SIZE - SIGNATURE_SIZE
    local stree = root:add(dec(at, SIGNATURE_SIZE), "Signature (MAC not verified: no keys here)")
    read_part({{ tvb = dec, limit = at + SIGNATURE_SIZE }}, SIGNATURE, at, stree, "the signature")
  end

  local stored = dec(size - CRC_SIZE, CRC_SIZE):le_uint()
  local computed = crc32(decoded, size - CRC_SIZE)
  local crc_item = root:add_le(F["ithil.crc"], dec(size - CRC_SIZE, CRC_SIZE))
  if stored == computed then
    crc_item:append_text(" [correct]")
    crc_item:add(F["ithil.crc.status"], dec(size - CRC_SIZE, CRC_SIZE), 1)
  else
    crc_item:append_text(string.format(" [incorrect, should be 0x%08x]", computed))
    crc_item:add(F["ithil.crc.status"], dec(size - CRC_SIZE, CRC_SIZE), 0)
    crc_item:add_proto_expert_info(E.bad_crc, string.format("{crc_name} is 0x%08x; expected 0x%08x", stored,
                                                            computed))
  end

  local info = prefix .. name .. " seq=" .. seq
  if signed then info = info .. " signed" end
  if more then info = info .. " more" end
  if stored ~= computed then info = info .. " [bad CRC]" end
  pinfo.cols.info = info
  return n
end

-- ---- the balance's lines ----------------------------------------------------------------------------
local BALANCE_DIRECTIONS = {{ [0] = "host -> balance", [1] = "balance -> host" }}

function balance.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "SCPI"
  local line = ""
  if tvb:len() > 0 then line = tvb():string(ENC_UTF_8) end
  if tvb:len() > 0 then
    tree:add(balance, tvb()):add(f_line, tvb(), line)
  else
    tree:add(balance):add(f_line, line)
  end
  local dir = BALANCE_DIRECTIONS[pinfo.p2p_dir]
  pinfo.cols.info = (dir and ("[" .. dir .. "] ") or "") .. line
  return tvb:len()
end

local encaps = wtap_encaps or wtap
local by_encap = DissectorTable.get("wtap_encap")
by_encap:add(encaps.USER0, ithil)
by_encap:add(encaps.USER1, balance)
"""
