"""The host side: talks to devices, runs scenarios against device and model, judges, reports."""

from .client import PumpClient
from .errors import HilError
from .transport import Transport

__all__ = ["HilError", "PumpClient", "Transport"]
