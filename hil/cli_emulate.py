"""`ithil emulate`: serve an emulated pump on a pty or a TCP socket until stopped.

The first line on stdout is the URL to connect to (a /dev/pts path or socket://HOST:PORT), for
scripts to read; a line for people goes to stderr. Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import typer

from .emulator_server import LISTEN_FORMS, TIME_FORMS, run_emulator
from .errors import BalanceConfigError, DeviceStateError, EmulatorConfigError


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def emulate(
    listen: str = typer.Option("pty", "--listen", help=f"Where to serve: {LISTEN_FORMS}."),
    time_mode: str = typer.Option("lockstep", "--time", help=f"The pump's clock: {TIME_FORMS}."),
    test_mode: bool = typer.Option(False, "--test-mode", help="Accept test-mode messages (AdvanceTime, Inject*)."),
    baud: int | None = typer.Option(None, "--baud",
                                    help="Throttle output like a UART at this rate (10 bit-times per byte)."),
    state: Path | None = typer.Option(None, "--state",
                                      help="Keep the pump's event log in this file across restarts."),
    telemetry: float = typer.Option(1.0, "--telemetry",
                                    help="Seconds of device time between Telemetry frames (0: none)."),
    seed: int = typer.Option(0, "--seed", min=0, help="The patient's seed (the plant's noise and posture)."),
    balance: str | None = typer.Option(None, "--balance",
                                       help="Also serve an analytical balance under the catheter tip at "
                                            "tcp:HOST:PORT (read it with pyvisa: TCPIP::HOST::PORT::SOCKET)."),
) -> None:
    """Serve the reference model and its plant behind the wire protocol, as a pump on a serial line."""

    def ready(url: str) -> None:
        typer.echo(url)
        sys.stdout.flush()
        typer.echo(f"ithil emulate: serving on {url} (time {time_mode}, test mode {'on' if test_mode else 'off'}"
                   f"{f', {baud} baud' if baud else ''}{f', state {state}' if state else ''}); Ctrl-C stops", err=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_emulator(listen, time_mode, test_mode, baud, state, ready, telemetry_period_s=telemetry, seed=seed,
                     balance=balance, balance_ready=lambda resource: typer.echo(f"ithil emulate: balance at {resource}",
                                                                                err=True))
    except KeyboardInterrupt:
        typer.echo("ithil emulate: stopped", err=True)
    except (EmulatorConfigError, DeviceStateError, BalanceConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # `python -m hil.cli_emulate ...`, the same command before it is wired into `ithil`
    typer.run(emulate)
