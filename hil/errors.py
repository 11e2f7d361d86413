"""Errors of the host side: transports, rigs, runner, CLI.

    HilError            base of every error raised by hil/
"""


class HilError(Exception):
    """Base of every error the hil package raises."""
