"""Errors of the wire protocol.

    ProtocolError       base of every error raised by protocol/
"""


class ProtocolError(Exception):
    """Base of every error the protocol package raises."""
