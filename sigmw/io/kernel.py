"""Does this kernel offer SCTP sockets? One clear answer instead of a traceback."""

from __future__ import annotations

import socket

from sigmw.core.errors import SctpUnavailableError
from sigmw.io import sockapi


def check_sctp() -> None:
    """Raise SctpUnavailableError (with what to do) if SCTP sockets cannot be opened."""
    sockapi.new_socket(socket.AF_INET, one_to_many=True).close()


def kernel_has_sctp() -> bool:
    try:
        check_sctp()
    except SctpUnavailableError:
        return False
    return True
