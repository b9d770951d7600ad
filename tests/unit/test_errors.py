"""Operator-facing errors: one line that says what failed and what to do."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

import pytest

from sigmw.core.errors import SctpBindError, SctpUnavailableError
from sigmw.io import sockapi
from sigmw.io.kernel import kernel_has_sctp


def test_kernel_without_sctp_gets_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> socket.socket:
        raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported")

    monkeypatch.setattr(socket, "socket", refuse)
    with pytest.raises(SctpUnavailableError) as failed:
        sockapi.new_socket(socket.AF_INET, one_to_many=True)
    text = str(failed.value)
    assert "no SCTP support" in text
    assert "modprobe sctp" in text
    assert "CONFIG_IP_SCTP" in text


def test_cli_reports_the_kernel_state_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sigmw", "check-sctp"], capture_output=True, text=True, check=False
    )
    assert "Traceback" not in done.stderr
    if kernel_has_sctp():
        assert (done.returncode, done.stdout.strip()) == (0, "kernel SCTP: available")
    else:
        assert done.returncode == 2
        assert done.stderr.startswith("sigmw: error: this kernel has no SCTP support")


def test_bind_error_names_address_and_reason() -> None:
    err = SctpBindError(("10.0.0.9", 3868), errno.EADDRNOTAVAIL)
    assert str(err) == "cannot bind SCTP to 10.0.0.9 port 3868: Cannot assign requested address"


def test_kernel_advice_names_the_sysctl_and_why() -> None:
    from sigmw.io.kernel import kernel_advice

    values = {"net/sctp/sndbuf_policy": "0\n", "net/sctp/rcvbuf_policy": "1\n"}
    advice = kernel_advice(values.get)
    assert len(advice) == 1
    assert advice[0].startswith("sysctl net.sctp.sndbuf_policy=1 is advised")
    assert advice[0].endswith("it is 0")
    assert kernel_advice({}.get) == []  # no SCTP sysctls (no module): nothing to say
