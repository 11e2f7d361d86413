"""Building the qemu-m3 firmware's parts for tests: the native test driver and the ARM image."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = ROOT / "rigs" / "qemu-m3"
DRIVER_SOURCE = Path(__file__).resolve().parent / "c" / "fw_driver.c"
PURE_SOURCES = ["cobs.c", "crc32.c", "sha256.c", "hmac.c", "text.c", "frame.c", "device.c", "step_scheduler.c",
                "pump_engine.c", "pump_commands.c", "pump_wire.c"]
NATIVE_FLAGS = ["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fno-omit-frame-pointer"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def _build_native(out: Path, driver: Path, sources: list[str]) -> Path:
    """Compile a test driver and firmware sources natively (with ASan and UBSan when the compiler
    has them, warnings as errors); the executable's path."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no native C compiler (gcc) on PATH")
    base = [cc, *NATIVE_FLAGS, f"-I{FIRMWARE_DIR}", "-o", str(out), str(driver), *(str(FIRMWARE_DIR / s) for s in sources)]
    done = subprocess.run(base[:1] + SANITIZERS + base[1:], capture_output=True, text=True)
    if done.returncode != 0:   # no sanitizer runtime: build plain, warnings still errors
        done = subprocess.run(base, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"native build failed:\n{done.stderr}")
    return out


def build_driver(out_dir: Path) -> Path:
    """The pure C parts and tests/rigs/c/fw_driver.c, built natively; the driver's path."""
    return _build_native(out_dir / "fw_driver", DRIVER_SOURCE, PURE_SOURCES)


def build_firmware(lock_dir: Path) -> Path:
    """`make -C rigs/qemu-m3` under a file lock (pytest-xdist workers build it once between them);
    the ELF's path."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "qemu-m3-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["make", "-C", str(FIRMWARE_DIR)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"make -C rigs/qemu-m3 failed:\n{done.stdout}\n{done.stderr}")
    return FIRMWARE_DIR / "build" / "firmware.elf"


PUMP_DRIVER_SOURCE = Path(__file__).resolve().parent / "c" / "pump_driver.c"
PUMP_SOURCES = ["step_scheduler.c", "text.c", "pump_engine.c", "pump_commands.c", "pump_wire.c"]


def build_pump_driver(out_dir: Path) -> Path:
    """The pump controller (rigs/qemu-m3/pump_*.c and step_scheduler.c) and
    tests/rigs/c/pump_driver.c, built natively; the driver's path."""
    return _build_native(out_dir / "pump_driver", PUMP_DRIVER_SOURCE, PUMP_SOURCES)
