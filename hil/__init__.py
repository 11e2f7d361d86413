"""The host side: talks to devices, runs scenarios against device and model, judges, reports."""

from .errors import HilError

__all__ = ["HilError"]
