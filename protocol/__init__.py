"""The binary command-and-telemetry protocol: construct definitions, framing, CRC, signing."""

from .errors import ProtocolError

__all__ = ["ProtocolError"]
