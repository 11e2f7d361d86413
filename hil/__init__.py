"""The host side: talks to devices, runs scenarios against device and model, judges, reports.

`from hil import PumpClient, Transport, HilError` works; they are imported when first asked for,
so that loading the package (pytest loads its plugin in every run) stays cheap.
"""

from __future__ import annotations

from typing import Any

from .errors import HilError

__all__ = ["HilError", "PumpClient", "Transport"]


def __getattr__(name: str) -> Any:
    if name == "PumpClient":
        from .client import PumpClient
        return PumpClient
    if name == "Transport":
        from .transport import Transport
        return Transport
    raise AttributeError(f"module 'hil' has no attribute {name!r}")
