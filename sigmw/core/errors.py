"""Errors sigmw reports to operators: each says what failed and what to do."""

from __future__ import annotations

import errno
import os


class SigmwError(Exception):
    """Base of sigmw's own errors; the CLI prints these as one line, no traceback."""


class SctpUnavailableError(SigmwError):
    """The kernel cannot open SCTP sockets."""

    def __init__(self, err: int) -> None:
        self.errno = err
        name = errno.errorcode.get(err, str(err))
        super().__init__(
            f"this kernel has no SCTP support (socket(IPPROTO_SCTP) failed: {name}, "
            f"{os.strerror(err)}). Load it with 'modprobe sctp' or use a kernel built with "
            "CONFIG_IP_SCTP; on machines without it, 'make demo' and 'make test' boot a "
            "small VM whose kernel has SCTP."
        )


class SctpBindError(SigmwError):
    """A local address could not be bound."""

    def __init__(self, address: tuple[str, int], err: int) -> None:
        self.address = address
        self.errno = err
        host, port = address
        super().__init__(f"cannot bind SCTP to {host} port {port}: {os.strerror(err)}")


class SctpSocketOptionError(SigmwError):
    """The kernel refused a socket option: names the option and the value."""

    def __init__(self, option: str, err: int, detail: str = "") -> None:
        self.option = option
        self.errno = err
        extra = f" ({detail})" if detail else ""
        super().__init__(f"SCTP option {option} refused: {os.strerror(err)}{extra}")


class AssociationGoneError(SigmwError):
    """A send or query named an association that no longer exists."""

    def __init__(self, assoc_id: int, err: int) -> None:
        self.assoc_id = assoc_id
        self.errno = err
        super().__init__(f"association {assoc_id} is gone: {os.strerror(err)}")
