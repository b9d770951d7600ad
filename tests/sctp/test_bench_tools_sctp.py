"""The bench's C tools over real kernel SCTP (generator -> server, no relay): sends in
bursts with MSG_MORE leave nothing corked whatever the number in flight, and the tools
force their socket buffers past net.core.rmem_max (a generator whose receive buffer
fills is where an SCTP overload run collapses). The independent Python generator
(pygen --sctp) gets every answer from the C server and from sigmw relaying to it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sigmw.benchkit.relays import start_relay
from sigmw.benchkit.tools import RELAY_PORT, SERVER_PORT, Net, build_tools, start_server, stop

pytestmark = pytest.mark.sctp

FORCED = 4 << 20  # what the tools ask for; the kernel doubles it


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tools(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def server(tools: dict[str, Path]) -> Iterator[int]:
    proc = start_server(Net(None, "127.0.0.1"), tools["diam_server"], sctp=True)
    yield SERVER_PORT
    stop(proc)


def load(tools: dict[str, Path], port: int, *mode: str) -> dict[str, Any]:
    argv = [str(tools["diam_load"]), "--connect", "127.0.0.1", "--port", str(port), "--sctp"]
    argv += ["--duration", "1", "--warmup", "0.2", "--timeout", "3", *mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# 32 is a burst: 1 and 32 end on a burst's last, 33 and 256 leave a short burst behind.
@pytest.mark.parametrize("inflight", [1, 32, 33, 256])
def test_every_request_is_answered_whatever_the_burst(
    tools: dict[str, Path], server: int, inflight: int
) -> None:
    r = load(tools, server, "--closed", str(inflight))
    assert r["sent"] > inflight
    assert r["answered"] == r["sent"]
    assert r["result_codes"] == {"2001": r["sent"]}
    assert r["timeouts"] == r["mismatches"] == r["duplicates"] == 0


def test_tools_force_their_receive_buffer(tools: dict[str, Path], server: int) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert rmem_max < FORCED  # else this would not show the forcing
    r = load(tools, server, "--closed", "1")
    assert r["rcvbuf"] == 2 * FORCED


def pygen(port: int) -> dict[str, Any] | None:
    """One second of pygen --sctp, 8 in flight; None if it could not run (no relay yet)."""
    argv = [sys.executable, "-m", "sigmw.benchkit.pygen", "127.0.0.1", str(port), "8"]
    done = subprocess.run([*argv, "1", "0.2", "--sctp"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    if done.returncode != 0:
        return None
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_python_generator_over_sctp(server: int, tmp_path: Path) -> None:
    """pygen --sctp, one request per SCTP message with PPID 46: the C server answers each
    (it drops what it cannot parse), and so does sigmw relaying to it (it refuses a
    message that is not one whole Diameter message). Both count only matched answers."""
    direct = pygen(server)
    assert direct is not None and direct["answered"] > 50
    assert direct["result_codes"] == {"2001": direct["answered"]} and direct["mismatches"] == 0
    with start_relay("sigmw", Net(None, "127.0.0.1"), tmp_path, "sctp", 1):
        deadline = time.monotonic() + 30
        relayed = None
        while time.monotonic() < deadline:  # until sigmw is up and its server peer open
            relayed = pygen(RELAY_PORT)
            if relayed is not None and relayed["answered"]:
                break
        assert relayed is not None and relayed["answered"] > 50
        assert relayed["result_codes"] == {"2001": relayed["answered"]}
        assert relayed["mismatches"] == 0
