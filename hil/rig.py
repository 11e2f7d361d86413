"""Rigs: where the pump under test lives, how to reach it, and what to expect of it.

A rig is a folder `rigs/<name>/` with a `rig.toml`:

    [rig]         name, kind (a registered rig kind: emulator, serial, ...), description,
                  time_mode ("lockstep": the runner moves the pump's clock with AdvanceTime)
    [device]      how to start, reach and stop the device; its keys depend on the kind
    [keys]        clinician, patient: "test" (the emulator's public test keys) or
                  { id = N, secret_hex = "..." } or { id = N, secret_env = "VARIABLE" }
    [pump]        the pump as the rig declares it (PumpConfig's integer fields, nL and ticks):
                  the reference model is built from it
    [mechanism]   the calibration (Mechanism's fields: stroke_nl, rates, fluid path)
    [plant]       the patient the reference model assumes: seed and PlantParams' fields
    [tolerances]  how far the device may be from the model: steps, volume_nl, pressure_pa,
                  alarm_ticks, mass_ug (balance against the model's outflow), log ("exact" | "codes")
    [balance]     resource ("served": the emulator serves one; else a VISA resource such as
                  "TCPIP::10.0.0.7::4001::SOCKET"), readability_ug, repeatability_ug, density_ug_per_ul
    [faults]      per fault (occlusion, mri, stall, battery_drain, reset): "test-mode" (the
                  protocol's Inject* message), "fixture" (occlusion, mri, stall on a rig whose
                  device.fixture is true: the host's bench fixture applies them to its plant,
                  hil.fixture), { method = "instrument", resource, start, end }
                  (SCPI lines sent through pyvisa; {start_tick}, {end_tick}, ... are filled in) or
                  { method = "operator", instructions = "..." } (the bench operator is asked and
                  confirms). A fault not listed cannot be injected: scenarios that need it do not run.

Everything is checked on load; an error names the key and what was expected. Rig kinds are found
in a registry (name -> class), like python-can's interfaces and cocotb's runners: the built-in
kinds register themselves and a package adds its own through the `ithil.rigs` entry point group.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from firmware_model.calibration import Mechanism
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import ModelError
from firmware_model.plant import PlantParams
from firmware_model.toml_table import Table, read_toml
from protocol import Key, Role

from .errors import RigConfigError

REPO = Path(__file__).resolve().parent.parent
RIGS_FOLDER = REPO / "rigs"
DEFAULT_RIG = "emulator"
ENTRY_POINT_GROUP = "ithil.rigs"
FAULTS = ("occlusion", "mri", "stall", "battery_drain", "reset")
FAULT_METHODS = ("test-mode", "fixture", "instrument", "operator")
SCHEDULED_METHODS = ("test-mode", "fixture")     # sent ahead with their ticks (RigSession.schedule)
FIXTURE_FAULTS = ("occlusion", "mri", "stall")   # what a bench fixture's plant can do
TIME_MODES = ("lockstep",)
_SECTIONS = {"rig", "device", "keys", "pump", "mechanism", "plant", "tolerances", "balance", "faults"}


@dataclass(frozen=True)
class Tolerances:
    """How far a device may be from the reference model and still conform (0: exactly)."""

    steps: int = 0
    volume_nl: int = 0
    pressure_pa: int = 0
    alarm_ticks: int = 0
    mass_ug: int = 100
    log: str = "exact"           # "exact": every record byte for byte; "codes": codes and ticks only
    texts: str = "exact"         # "exact": answers' free texts as the model words them; "ignore": not compared


@dataclass(frozen=True)
class FaultMethod:
    """How one fault is injected on a rig."""

    method: str                  # one of FAULT_METHODS
    resource: str = ""           # instrument: the VISA resource
    start: str = ""              # instrument: the SCPI line that starts the fault
    end: str = ""                # instrument: the SCPI line that ends it
    instructions: str = ""       # operator: what to do


@dataclass(frozen=True)
class BalanceSettings:
    """The balance under the catheter tip: where it is and what it is."""

    resource: str = "served"
    readability_ug: int = 10
    repeatability_ug: int = 15
    density_ug_per_ul: int = 998


@dataclass(frozen=True)
class RigConfig:
    """A rig.toml, checked (see the module docstring)."""

    name: str
    kind: str
    description: str
    folder: Path
    time_mode: str
    device: Mapping[str, Any]    # the kind's own keys, checked by the kind
    clinician_key: Key | None
    patient_key: Key | None
    pump: PumpConfig
    plant_params: PlantParams
    plant_seed: int
    tolerances: Tolerances
    balance: BalanceSettings | None
    faults: Mapping[str, FaultMethod]
    document: Mapping[str, Any] = field(default_factory=dict)   # the parsed rig.toml, kept for recordings

    def with_device(self, **changes: Any) -> "RigConfig":
        """The same rig with some [device] keys changed (checked again by the kind)."""
        device = {**self.device, **changes}
        return dataclasses.replace(self, device=device, document={**self.document, "device": device})


# ---- the registry ---------------------------------------------------------------------------------

class Rig(abc.ABC):
    """A kind of rig: reads its [device] table, and opens a session with a fresh device for each
    scenario (hil.session.RigSession). Subclasses register with `register_rig_kind`."""

    kind: ClassVar[str] = ""
    device_keys: ClassVar[set[str]] = set()

    def __init__(self, config: RigConfig) -> None:
        self.config = config
        self.read_device(Table(config.device, "device", self.device_keys, RigConfigError))

    @classmethod
    def load(cls, data: Mapping[str, Any], folder: Path) -> "Rig":
        """The rig a parsed rig.toml describes (a kind with its own file layout overrides this)."""
        return cls(rig_config(data, folder))

    @property
    def name(self) -> str:
        return self.config.name

    def read_device(self, device: Table) -> None:
        """Check the kind's [device] keys (names each bad one)."""

    @abc.abstractmethod
    def open(self, prompt: Callable[[str], None] | None = None) -> Any:
        """A session with a fresh device: a connected client, the balance, the fault injectors."""


RIG_KINDS: dict[str, type[Rig]] = {}


def register_rig_kind(cls: type[Rig]) -> type[Rig]:
    """Class decorator: make `cls` the rig kind named `cls.kind`."""
    if not cls.kind:
        raise RigConfigError(f"{cls.__name__}: a rig kind needs a `kind` name")
    RIG_KINDS[cls.kind] = cls
    return cls


def rig_kind(name: str) -> type[Rig]:
    """The rig class of a kind: built in, or from a package's `ithil.rigs` entry point."""
    _load_builtin_kinds()
    if name not in RIG_KINDS:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                cls = ep.load()
                RIG_KINDS[name] = cls
                break
    if name not in RIG_KINDS:
        raise RigConfigError(f"rig.kind = {name!r}: no such rig kind; expected one of {sorted(known_rig_kinds())}")
    return RIG_KINDS[name]


def known_rig_kinds() -> set[str]:
    _load_builtin_kinds()
    return set(RIG_KINDS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_builtin_kinds() -> None:
    importlib.import_module("hil.rig_kinds")  # registers emulator, serial and rtl


# ---- loading ---------------------------------------------------------------------------------------

def rig_path(name_or_path: str | Path) -> Path:
    """rig.toml of a rig named in rigs/, or of a folder, or the file itself."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path
    if path.is_dir():
        return path / "rig.toml"
    return RIGS_FOLDER / str(name_or_path) / "rig.toml"


def available_rigs() -> list[str]:
    return sorted(p.parent.name for p in RIGS_FOLDER.glob("*/rig.toml"))


def load_rig(name_or_path: str | Path = DEFAULT_RIG) -> "Rig":
    """The rig of that name (in rigs/) or path, checked, as an instance of its kind."""
    path = rig_path(name_or_path)
    if not path.exists():
        raise RigConfigError(f"rig {str(name_or_path)!r}: {path} does not exist; expected a rig folder with a "
                             f"rig.toml (rigs here: {', '.join(available_rigs())})")
    data = read_toml(path, RigConfigError)
    try:
        rig = data.get("rig") if isinstance(data.get("rig"), Mapping) else {}
        kind = rig.get("kind")
        if not isinstance(kind, str):
            raise RigConfigError(f"rig.kind = {kind!r}: expected the name of a rig kind, one of "
                                 f"{sorted(known_rig_kinds())}")
        return rig_kind(kind).load(data, path.parent)
    except RigConfigError as exc:
        raise RigConfigError(f"{path}: {exc}") from None


def rig_config(data: Mapping[str, Any], folder: Path) -> RigConfig:
    """A parsed rig.toml, checked (errors name the key)."""
    doc = Table(data, "rig.toml", _SECTIONS, RigConfigError)

    def section(name: str, allowed: set[str], default: Any = ...) -> Table:
        return Table(doc.raw(name, default), name, allowed, RigConfigError)

    rig = section("rig", {"name", "kind", "description", "time_mode"})
    kind = rig.text("kind")
    time_mode = rig.text("time_mode", "lockstep", TIME_MODES)
    device = doc.raw("device", {})
    if not isinstance(device, Mapping):
        raise RigConfigError(f"[device]: expected a table, got {type(device).__name__}")
    keys = section("keys", {"clinician", "patient"}, {})
    pump, params, seed = rig_pump(doc.raw("pump", {}), doc.raw("mechanism", {}), doc.raw("plant", {}))
    tol = section("tolerances", {f.name for f in dataclasses.fields(Tolerances)}, {})
    tolerances = Tolerances(**{f.name: tol.integer(f.name, f.default) for f in dataclasses.fields(Tolerances)
                               if f.name not in ("log", "texts")}, log=tol.text("log", "exact", ("exact", "codes")),
                            texts=tol.text("texts", "exact", ("exact", "ignore")))
    balance = None
    if doc.has("balance"):
        b = section("balance", {f.name for f in dataclasses.fields(BalanceSettings)})
        balance = BalanceSettings(b.text("resource", "served"), b.integer("readability_ug", 10, minimum=1),
                                  b.integer("repeatability_ug", 15), b.integer("density_ug_per_ul", 998, minimum=1))
    faults = _faults(section("faults", set(FAULTS), {}))
    return RigConfig(rig.text("name", folder.name), kind, rig.text("description", ""), folder, time_mode,
                     dict(device), _key(keys, "clinician", Role.CLINICIAN), _key(keys, "patient", Role.PATIENT),
                     pump, params, seed, tolerances, balance, faults, dict(data))


def rig_pump(pump: Any, mechanism: Any, plant: Any, where: str = "") -> tuple[PumpConfig, PlantParams, int]:
    """PumpConfig, PlantParams and the plant's seed from [pump], [mechanism] and [plant] tables of
    integers (names as the dataclasses' fields); `where` prefixes the tables' names."""
    mech = Table(mechanism, f"{where}mechanism", _int_fields(Mechanism), RigConfigError)
    p = Table(pump, f"{where}pump", _int_fields(PumpConfig), RigConfigError)
    pl = Table(plant, f"{where}plant", _int_fields(PlantParams) | {"seed"}, RigConfigError)
    try:
        mechanism_ = Mechanism(**{k: mech.integer(k) for k in mech.data})
    except ModelError as exc:
        raise RigConfigError(f"[{where}mechanism]: {exc}") from None
    try:
        config = PumpConfig(mechanism=mechanism_, **{k: p.integer(k) for k in p.data})
    except ModelError as exc:
        raise RigConfigError(f"[{where}pump]: {exc}") from None
    try:
        params = PlantParams(**{k: pl.integer(k) for k in pl.data if k != "seed"})
    except ModelError as exc:
        raise RigConfigError(f"[{where}plant]: {exc}") from None
    return config, params, pl.integer("seed", 0)


def _int_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if type(f.default) is int or f.default is None
            and f.name.endswith("_nl")}


def _key(keys: Table, role_name: str, role: Role) -> Key | None:
    from .device import default_test_keys  # the emulator's public test keys

    if not keys.has(role_name):
        return None
    value = keys.raw(role_name)
    if value == "test":
        return default_test_keys()[0 if role is Role.CLINICIAN else 1]
    spec = keys.sub(role_name, {"id", "secret_hex", "secret_env"})
    key_id = spec.integer("id", minimum=0, maximum=255)
    if spec.has("secret_hex") == spec.has("secret_env"):
        raise RigConfigError(f"keys.{role_name}: expected exactly one of secret_hex, secret_env")
    if spec.has("secret_env"):
        var = spec.text("secret_env")
        text = os.environ.get(var)
        if text is None:
            raise RigConfigError(f"keys.{role_name}.secret_env = {var!r}: the environment has no {var}; expected "
                                 "the key's 32 bytes in hex there")
    else:
        text = spec.text("secret_hex")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise RigConfigError(f"keys.{role_name}: the secret is not 32 bytes of hex; expected 64 hex digits")
    return Key(key_id, secret, role)


def _faults(table: Table) -> dict[str, FaultMethod]:
    out = {}
    for name in table.data:
        value = table.raw(name)
        if value in SCHEDULED_METHODS:
            if value == "fixture" and name not in FIXTURE_FAULTS:
                raise RigConfigError(f"faults.{name} = \"fixture\": a bench fixture's plant injects only "
                                     f"{', '.join(FIXTURE_FAULTS)}; expected \"test-mode\" or an instrument")
            out[name] = FaultMethod(value)
            continue
        spec = table.sub(name, {"method", "resource", "start", "end", "instructions"})
        method = spec.text("method", choices=FAULT_METHODS)
        if method == "instrument":
            out[name] = FaultMethod(method, spec.text("resource"), spec.text("start"), spec.text("end", ""))
        elif method == "operator":
            out[name] = FaultMethod(method, instructions=spec.text("instructions"))
        else:
            out[name] = FaultMethod(method)
    return out


@dataclass
class DeviceVariant:
    """How an emulated device is built, where it may differ from the rig's declared pump: its own
    [device.pump], [device.mechanism] and [device.plant] tables and a controller class."""

    pump: PumpConfig
    plant_params: PlantParams
    plant_seed: int
    controller_type: type[Controller] = Controller
    notes: list[str] = field(default_factory=list)


def controller_class(spec: str, where: str) -> type[Controller]:
    """"package.module:Class", a Controller subclass (a firmware variant)."""
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RigConfigError(f"{where} = {spec!r}: cannot import it ({exc}); expected \"package.module:Class\"") from None
    if not (isinstance(cls, type) and issubclass(cls, Controller)):
        raise RigConfigError(f"{where} = {spec!r}: expected a subclass of firmware_model.controller.Controller")
    return cls
