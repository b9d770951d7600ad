"""Does this kernel offer SCTP sockets? One clear answer instead of a traceback."""

from __future__ import annotations

import socket
from collections.abc import Callable

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


SYSCTL_ADVICE = {
    # One shared send buffer per one-to-many socket: a message stuck for one slow or
    # dead association stalls sends to every other association on that socket.
    "net/sctp/sndbuf_policy": (
        "1",
        "per-association send buffers, so one slow peer cannot stall the others on a shared socket",
    ),
    "net/sctp/rcvbuf_policy": ("1", "per-association receive buffers, for the same reason"),
}


def kernel_advice(read: Callable[[str], str | None]) -> list[str]:
    """Sysctls worth changing, given read(path under /proc/sys) -> value or None."""
    advice = []
    for key, (wanted, why) in SYSCTL_ADVICE.items():
        value = read(key)
        if value is not None and value.strip() != wanted:
            advice.append(
                f"sysctl {key.replace('/', '.')}={wanted} is advised ({why}); it is {value.strip()}"
            )
    return advice


def read_proc_sys(key: str) -> str | None:
    try:
        with open(f"/proc/sys/{key}") as f:
            return f.read()
    except OSError:
        return None
