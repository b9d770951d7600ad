"""The SCTP suite runs on a real kernel SCTP stack as root (`make test` boots a VM when
this machine has none). It refuses to run elsewhere rather than skip."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from sigmw.io import transport
from sigmw.testbed.netns import TwoPaths, two_hosts_two_paths


def _kernel_has_sctp() -> bool:
    # Plain stdlib on purpose: the bench must report on the kernel even when sigmw.io is broken.
    try:
        socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0 or not _kernel_has_sctp():
        raise pytest.UsageError(
            "tests/sctp needs root and a kernel with SCTP; run 'make test' or "
            "'make sctp', which boot a VM with one when this machine has none"
        )


@pytest.fixture
def net() -> Iterator[TwoPaths]:
    """Hosts a and b in their own namespaces, joined by two independent links."""
    with two_hosts_two_paths() as topology:
        yield topology


@pytest.fixture(params=["batched", "each"])
def io_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways SctpTransport reads and sends: batched by sigmw.io._mmsg (one recvmmsg
    a wake-up, sendmmsg for a loop iteration's sends; the rest of the suite uses it) and
    the recvmsg and sendmsg reference."""
    if request.param == "each":
        monkeypatch.setattr(transport, "_recv_batch", None)
        monkeypatch.setattr(transport, "_send_bursts", None)
    else:
        assert transport.batched_io(), "sigmw.io._mmsg is not built"
    return str(request.param)
