"""The pytest plugin (entry point pytest11 "ithil"): a firmware team's HIL tests as ordinary pytest tests.

    --rig NAME|PATH  the rig: a folder name in rigs/, a rig folder or its rig.toml
                     (default: $ITHIL_RIG, else "emulator")
    rig              session fixture: the loaded hil.rig.Rig
    pump             test fixture: a hil.twin.TwinPump on a fresh device of the rig (rig.open(),
                     hello), the reference model in step with it; closed after the test
    reference        test fixture: that pump's ReferencePump (its predictions)

pytest-xdist (`-n N`): every worker is its own process with its own sessions. An emulator rig
serves each session's device on that process's own pty; a serial rig whose [device] url is a list
gives worker gwN the N-th board (hil.rig_kinds.worker_url). Nothing of hil's rigs is imported
until a fixture asks for it, so a run that uses none of them pays nothing for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from .reference import ReferencePump
    from .rig import Rig
    from .twin import TwinPump

ENV_VAR = "ITHIL_RIG"
DEFAULT_RIG = "emulator"   # hil.rig.DEFAULT_RIG, not imported here: see the module docstring


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ithil", "ithil hardware-in-the-loop rig")
    group.addoption("--rig", dest="ithil_rig", metavar="NAME|PATH", default=None,
                    help=f"the rig the pump fixture opens: a folder name in rigs/, a rig folder or its rig.toml "
                         f"(default: ${ENV_VAR}, else {DEFAULT_RIG!r})")


def rig_name(config: pytest.Config) -> str:
    """The rig asked for: --rig, else $ITHIL_RIG, else the emulator."""
    return config.getoption("ithil_rig") or os.environ.get(ENV_VAR) or DEFAULT_RIG


def pytest_report_header(config: pytest.Config) -> str:
    """One line: the rig, its kind and its file (read, not loaded: a broken rig fails its tests, not the run)."""
    import tomllib

    from .rig import rig_path

    name = rig_name(config)
    path = rig_path(name)
    try:
        rig_table = tomllib.loads(path.read_text(encoding="utf-8")).get("rig", {})
        kind = rig_table.get("kind", "?") if isinstance(rig_table, dict) else "?"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"ithil rig: {name} ({path} cannot be read: {exc})"
    return f"ithil rig: {name} (kind {kind}, {path})"


@pytest.fixture(scope="session")
def rig(request: pytest.FixtureRequest) -> "Rig":
    """The rig of --rig (or $ITHIL_RIG, or the emulator), loaded and checked once per worker."""
    from .errors import RigConfigError
    from .rig import load_rig

    name = rig_name(request.config)
    try:
        return load_rig(name)
    except RigConfigError as exc:
        pytest.fail(f"--rig {name}: {exc}", pytrace=False)


@pytest.fixture
def pump(rig: "Rig", request: pytest.FixtureRequest) -> Iterator["TwinPump"]:
    """A fresh device of the rig and the reference model, driven in step (hil.twin.TwinPump)."""
    from .twin import TwinPump

    twin = TwinPump.open(rig, _operator_prompt(request.config))
    try:
        yield twin
    finally:
        twin.close()


@pytest.fixture
def reference(pump: "TwinPump") -> "ReferencePump":
    """The reference model in step with `pump`: what the device is expected to do."""
    return pump.reference


def _operator_prompt(config: pytest.Config) -> Callable[[str], None]:
    """Ask the bench operator with pytest's output capture suspended (a rig with operator faults)."""
    from .session import ask_operator

    def prompt(text: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            ask_operator(text)
            return
        with capture.global_and_fixture_disabled():
            ask_operator(text)
    return prompt
