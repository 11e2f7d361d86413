"""Export an emulated pump's serial line over the network as labs export a bench board: the
emulator on a pty, and ser2net (Debian's) serving that pty as RFC 2217 on a TCP port.

    python export.py PORT BALANCE_PORT

Starts `ithil emulate --listen pty` (test mode, the balance on BALANCE_PORT), then ser2net with a
connection `telnet(rfc2217),tcp,127.0.0.1,PORT` -> the pty; runs until SIGTERM or SIGINT, then
stops both. A host reaches the pump at rfc2217://127.0.0.1:PORT, exactly as a board exported by
ser2net or a labgrid exporter, with no code of ithil's in between.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


def main() -> int:
    port, balance_port = sys.argv[1], sys.argv[2]
    ithil = shutil.which("ithil", path=str(Path(sys.executable).parent)) or "ithil"
    emulator = subprocess.Popen([ithil, "emulate", "--listen", "pty", "--test-mode", "--telemetry", "300",
                                 "--seed", "7", "--balance", f"tcp:127.0.0.1:{balance_port}"],
                                stdout=subprocess.PIPE, text=True)
    pty = emulator.stdout.readline().strip() if emulator.stdout else ""
    if not pty.startswith("/dev/"):
        emulator.terminate()
        print(f"export.py: the emulator printed {pty!r}; expected a pty path", file=sys.stderr)
        return 2
    config = (f"connection: &pump\n"
              f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
              f"  connector: serialdev,{pty},115200n81,local\n"
              f"  options:\n"
              f"    kickolduser: true\n")
    ser2net = subprocess.Popen(["ser2net", "-n", "-u", "-Y", config.replace("\n", "#")])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    stopped = False
    try:
        while ser2net.poll() is None and emulator.poll() is None:
            if signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, 0.2) is not None:
                stopped = True
                break
    finally:
        for proc in (ser2net, emulator):
            if proc.poll() is None:
                proc.terminate()
        for proc in (ser2net, emulator):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0 if stopped else 1


if __name__ == "__main__":
    sys.exit(main())
