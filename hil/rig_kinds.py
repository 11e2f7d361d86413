"""The built-in rig kinds: the emulated pump, a pump at a serial URL, and the RTL rig.

    emulator  the reference model and its plant behind the protocol, served on a pty or a TCP
              socket in this process, with the balance on its own socket. [device]: listen
              ("pty" | "tcp:HOST:PORT" | "emu": no OS line, pyserial's emu:// port straight into
              the device), telemetry_period_s, test_mode, baud; and where the device
              is built differently from the rig's declared pump (deliberately wrong devices, or a
              firmware variant): [device.pump], [device.mechanism], [device.plant] and
              controller = "package.module:Class".
    serial    a board, or a firmware on an emulated board, reached at a pyserial URL (/dev/ttyACM0,
              socket://, rfc2217://). [device]: url; start (argv of a command that starts the
              device; "{port}" and "{balance_port}" in it, in url and in the balance resource
              become free TCP ports, "{folder}" the rig's folder, "{python}" this Python);
              ready_timeout_s (how long the device may take to answer hello); answer_timeout_s (the
              first wait for an answer); max_attempts (sends of a command before giving up, default
              6; a lossless local socket needs fewer); advance_timeout_s (the first wait for an
              AdvanceTime or a FixtureAdvance, default 300 s: a lockstep step may run weeks); fixture = true for a
              pump without a plant: a bench fixture on this host (hil.fixture) feeds its sensors
              from the rig's [plant], takes the occlusion, MRI and stall faults, and serves the
              balance ("served") weighing that plant's outflow. url may be a list,
              one board per pytest-xdist worker: worker gwN takes the N-th (a run without xdist
              the first).
    rtl       the Verilog of the pump hardware under cocotb; it speaks no protocol to a host, so
              it has no sessions: its benches run under pytest (tests/rtl).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from firmware_model.plant import Plant
from firmware_model.units import TICK_HZ

from .balance import BalanceReader, BalanceServer, BalanceSpec
from .client import PumpClient
from .device import EmulatedDevice
from .emulator_server import parse_listen, start_emulator_thread
from .errors import HilError, RigConfigError, RigError
from .fixture import FixtureClient
from .rig import DeviceVariant, Rig, RigConfig, controller_class, register_rig_kind, rig_pump
from .session import RigSession
from .urlhandler import protocol_emu

ADVANCE_TIMEOUT_S = 300.0       # the first wait for an AdvanceTime: a lockstep step may run weeks
MAX_ATTEMPTS = 6                # sends of a command before the link gives up
_emu_names = itertools.count(1)


def _client(config: RigConfig, url: str, answer_timeout_s: float = 0.25,
            advance_timeout_s: float = ADVANCE_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS) -> PumpClient:
    return PumpClient(url, clinician_key=config.clinician_key, patient_key=config.patient_key,
                      answer_timeout_s=answer_timeout_s, advance_timeout_s=advance_timeout_s, max_attempts=max_attempts)


def _balance_spec(config: RigConfig) -> BalanceSpec:
    b = config.balance
    assert b is not None
    return BalanceSpec(readability_ug=b.readability_ug, repeatability_ug=b.repeatability_ug,
                       density_ug_per_ul=b.density_ug_per_ul, seed=config.plant_seed)


def _check_fixture_faults(config: RigConfig, has_fixture: bool) -> None:
    """Faults by "fixture" need a rig whose device.fixture is true."""
    fixture_faults = sorted(f for f, how in config.faults.items() if how.method == "fixture")
    if fixture_faults and not has_fixture:
        raise RigConfigError(f"faults {fixture_faults} = \"fixture\": expected device.fixture = true (a bench "
                             "fixture on this host, for a pump without a plant) to inject them")


@register_rig_kind
class EmulatorRig(Rig):
    """The emulated pump (CI's default rig); see the module docstring."""

    kind = "emulator"
    device_keys = {"listen", "telemetry_period_s", "test_mode", "baud", "pump", "mechanism", "plant", "controller"}

    def read_device(self, device: Any) -> None:
        self.listen = device.text("listen", "pty")
        try:
            if self.listen != "emu":
                parse_listen(self.listen)
        except HilError as exc:
            raise RigConfigError(f"device.listen: {exc} (or emu: in this process, through emu://)") from None
        self.telemetry_period_s = device.number("telemetry_period_s", 60.0)
        self.test_mode = device.flag("test_mode", True)
        self.baud = device.integer("baud", None, minimum=1) if device.has("baud") else None
        cfg = self.config
        if any(device.has(k) for k in ("pump", "mechanism", "plant")):   # each key over the rig's own table
            tables = [{**_table(cfg.document.get(k)), **_table(device.raw(k, {}))} for k in ("pump", "mechanism", "plant")]
            pump, params, seed = rig_pump(*tables, where="device.")
        else:
            pump, params, seed = cfg.pump, cfg.plant_params, cfg.plant_seed
        self.variant = DeviceVariant(pump, params, seed)
        if device.has("controller"):
            self.variant.controller_type = controller_class(device.text("controller"), "device.controller")
        _check_fixture_faults(cfg, False)
        if cfg.balance is not None and cfg.balance.resource != "served":
            raise RigConfigError(f"balance.resource = {cfg.balance.resource!r}: an emulator rig serves its own "
                                 "balance; expected \"served\"")

    def open(self, prompt: Callable[[str], None] | None = None) -> RigSession:
        cfg, v = self.config, self.variant
        keys = tuple(k for k in (cfg.clinician_key, cfg.patient_key) if k is not None)
        plant = Plant(v.plant_params, seed=v.plant_seed, stroke_nl=v.pump.mechanism.stroke_nl)
        device = EmulatedDevice(v.pump, plant, keys=keys, test_mode=self.test_mode,
                                telemetry_period_ticks=round(self.telemetry_period_s * TICK_HZ) or None,
                                controller_type=v.controller_type)
        if self.listen == "emu":   # in this process, no OS line: the device behind pyserial's emu:// port
            name = f"ithil-rig-{next(_emu_names)}"
            url, lock = protocol_emu.attach(name, device), protocol_emu.lock_of(name)
            closers: list[Callable[[], None]] = [lambda: protocol_emu.forget(name)]
        else:
            emulator = start_emulator_thread(self.listen, "lockstep", self.test_mode, self.baud, device=device)
            url, lock, closers = emulator.url, emulator.server.lock, [emulator.stop]
        try:
            reader = None
            if cfg.balance is not None:
                def collected_nl() -> int:
                    with lock:
                        return device.pump.outflow_nl()
                server = BalanceServer(collected_nl, _balance_spec(cfg)).start()
                closers.insert(0, server.stop)
                reader = BalanceReader(server.resource)
            client = _client(cfg, url)
        except BaseException:
            for close in closers:
                close()
            raise

        def stop() -> None:
            for close in closers:
                close()
        session = RigSession(client, reader, cfg.faults, prompt, stop, f"emulator on {url}")
        session.device = device   # the emulated pump itself, for tests that look inside
        return session


@register_rig_kind
class SerialRig(Rig):
    """A pump at a serial URL, started by a command or already running; see the module docstring."""

    kind = "serial"
    device_keys = {"url", "start", "ready_timeout_s", "answer_timeout_s", "advance_timeout_s", "max_attempts",
                   "fixture"}

    def read_device(self, device: Any) -> None:
        urls = device.raw("url")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
            raise RigConfigError(f"device.url = {urls!r}: expected a URL, or a list of URLs (one board per "
                                 "pytest-xdist worker)")
        self.urls: list[str] = urls
        self.url = urls[0]
        start = device.raw("start", [])
        if isinstance(start, str):
            start = shlex.split(start)
        if not isinstance(start, list) or not all(isinstance(a, str) for a in start):
            raise RigConfigError(f"device.start = {start!r}: expected a command as a list of strings (or one string)")
        self.start = start
        self.ready_timeout_s = device.number("ready_timeout_s", 10.0)
        self.answer_timeout_s = device.number("answer_timeout_s", 0.25)
        self.advance_timeout_s = device.number("advance_timeout_s", ADVANCE_TIMEOUT_S)
        self.max_attempts = device.integer("max_attempts", MAX_ATTEMPTS, minimum=1)
        self.fixture = device.flag("fixture", False)
        _check_fixture_faults(self.config, self.fixture)
        served = self.config.balance is not None and self.config.balance.resource == "served"
        if served and not self.fixture:
            raise RigConfigError("balance.resource = \"served\": only a rig with device.fixture = true serves its "
                                 "balance (from the fixture's plant); expected a VISA resource of the bench balance")

    def open(self, prompt: Callable[[str], None] | None = None) -> RigSession:
        cfg = self.config
        chosen = worker_url(self.urls)
        texts = [chosen, *self.start, cfg.balance.resource if cfg.balance is not None else ""]
        fill = {"folder": str(cfg.folder), "python": sys.executable}
        for name in ("port", "balance_port"):
            fill[name] = str(_free_port()) if any("{" + name + "}" in t for t in texts) else ""
        url = chosen.format(**fill)
        process = None
        if self.start:
            argv = [a.format(**fill) for a in self.start]
            try:
                process = subprocess.Popen(argv, cwd=cfg.folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except OSError as exc:
                raise RigError(f"device.start {argv[0]!r}: cannot start it ({exc.strerror})") from None

        def stop() -> None:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        with contextlib.ExitStack() as stack:      # on a failure, undo what was started; else the session owns it
            stack.callback(stop)
            client = self._connect(url, process)
            stack.callback(client.close)           # idempotent: the session closes its client too
            reader = None
            if cfg.balance is not None and self.fixture:
                assert isinstance(client, FixtureClient)
                server = BalanceServer(client.fixture.outflow_nl, _balance_spec(cfg)).start()
                stack.callback(server.stop)
                reader = BalanceReader(server.resource)
            elif cfg.balance is not None:
                reader = BalanceReader(cfg.balance.resource.format(**fill))
            owned = stack.pop_all()
        return RigSession(client, reader, cfg.faults, prompt, owned.close, f"device at {url}")

    def _client(self, url: str) -> PumpClient:
        cfg = self.config
        if not self.fixture:
            return _client(cfg, url, self.answer_timeout_s, self.advance_timeout_s, self.max_attempts)
        plant = Plant(cfg.plant_params, seed=cfg.plant_seed, stroke_nl=cfg.pump.mechanism.stroke_nl)
        return FixtureClient(url, plant, clinician_key=cfg.clinician_key, patient_key=cfg.patient_key,
                             answer_timeout_s=self.answer_timeout_s, advance_timeout_s=self.advance_timeout_s,
                             max_attempts=self.max_attempts)

    def _connect(self, url: str, process: subprocess.Popen | None) -> PumpClient:
        """Open the URL and say hello, retrying until the device answers or ready_timeout_s."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            try:
                client = self._client(url)
            except HilError as exc:
                failure: Exception = exc
            else:
                try:
                    client.hello()
                    return client
                except HilError as exc:
                    client.close()
                    failure = exc
            if process is not None and process.poll() is not None:
                err = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
                raise RigError(f"the device's start command exited with code {process.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                raise RigError(f"no pump answered hello at {url} within {self.ready_timeout_s:g} s ({failure}); "
                               "expected a device that is up and speaks the ithil protocol")
            time.sleep(0.05)


@register_rig_kind
class RtlRig(Rig):
    """The RTL rig: described for its cocotb benches, with no protocol session (module docstring)."""

    kind = "rtl"

    def __init__(self, name: str, folder: Path) -> None:  # noqa: D107 - no RigConfig: its file has its own layout
        self._name, self.folder = name, folder

    @classmethod
    def load(cls, data: Mapping[str, Any], folder: Path) -> "RtlRig":
        return cls(str(data["rig"].get("name", folder.name)), folder)

    @property
    def name(self) -> str:
        return self._name

    def open(self, prompt: Callable[[str], None] | None = None) -> RigSession:
        raise RigError(f"rig {self._name!r} is the pump hardware's RTL under cocotb: it has no protocol link for "
                       "scenarios; its benches run with `pytest tests/rtl` (make test). Expected a rig of kind "
                       "emulator or serial")


def worker_url(urls: list[str], worker: str | None = None) -> str:
    """The URL of this process's board: the only one, or under pytest-xdist (`worker`, default
    $PYTEST_XDIST_WORKER, "gw0", "gw1", ...) the worker's own, so no two workers share a board."""
    if len(urls) == 1:
        return urls[0]
    worker = os.environ.get("PYTEST_XDIST_WORKER") if worker is None else worker
    if not worker:
        return urls[0]
    digits = worker.removeprefix("gw")
    if not digits.isdigit():
        raise RigError(f"pytest-xdist worker {worker!r}: cannot tell its index; expected a name gw0, gw1, ... "
                       "to choose one of device.url's URLs")
    index = int(digits)
    if index >= len(urls):
        raise RigError(f"device.url lists {len(urls)} URLs (one board per pytest-xdist worker) but worker "
                       f"{worker} needs URL number {index + 1}; expected at least as many URLs as workers "
                       f"(run with -n {len(urls)} or fewer)")
    return urls[index]


def _table(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
