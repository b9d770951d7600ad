"""sigmw's Diameter relay against freeDiameterd 1.2.1 over real kernel SCTP (the VM):
sigmw in this process in host a with the Python test nodes, freeDiameterd in host b,
multihomed over both links. The scenarios are those of the TCP file
(tests/unit/test_freediameter_interop_tcp.py, which holds the shared helpers), plus a
capture of sigmw's traffic decoded by tshark: valid Diameter, PPID 46 on everything
sigmw sends, CER/CEA/DWR/DWA/DPR/DPA on stream 0, each session on one stream.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from sigmw.testbed.capture import Capture, DiameterRow, decode_diameter, warm_up_tshark
from sigmw.testbed.netns import Host, TwoPaths
from tests.sctp.test_freediameter_harness import kept
from tests.unit.test_freediameter_interop_tcp import (
    PORT,
    SERVER_PORT,
    Layout,
    election,
    fd_dials_then_sigmw_watchdogs_and_goodbye,
    fd_stops_and_returns,
    layout_in_a,
    relay_through_fd,
    sigmw_dials_and_answers_watchdogs,
    two_hosts_and_cert,
)

pytestmark = pytest.mark.sctp
CER, DWR, DPR, CCR = 257, 280, 282, 272
MANAGEMENT = {(code, request) for code in (CER, DWR, DPR) for request in (True, False)}


@pytest.fixture(scope="module", autouse=True)
def tshark_warm() -> Iterator[subprocess.Popen[bytes]]:
    """tshark's first start in the VM takes ~70 s: begin it while the other tests run."""
    proc = warm_up_tshark()
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TwoPaths, Path]]:
    yield from two_hosts_and_cert(tmp_path_factory)


@pytest.fixture
def lay(hosts: tuple[TwoPaths, Path]) -> Iterator[Layout]:
    yield from layout_in_a(hosts, "sctp")


async def test_sigmw_dials_freediameter_and_answers_its_watchdogs(
    lay: Layout, tmp_path: Path
) -> None:
    await sigmw_dials_and_answers_watchdogs(lay, tmp_path)


async def test_freediameter_dials_sigmw_watchdogs_and_dpr_on_stop(
    lay: Layout, tmp_path: Path
) -> None:
    await fd_dials_then_sigmw_watchdogs_and_goodbye(lay, tmp_path)


async def test_freediameter_dpr_answered_and_sigmw_reconnects(lay: Layout, tmp_path: Path) -> None:
    await fd_stops_and_returns(lay, tmp_path)


@pytest.mark.parametrize("relay_host", ["zz-relay.test", "aa-relay.test"])
async def test_election_with_freediameter(lay: Layout, tmp_path: Path, relay_host: str) -> None:
    # freeDiameterd's blocked INIT is retried after the namespace's RTO (3 s by default,
    # doubling): shorter, so its association comes up soon after the path is unblocked.
    fast = {"rto_min": 100, "rto_initial": 300, "rto_max": 1000, "max_init_retransmits": 30}
    defaults = {key: sysctl(lay.net.b, key) for key in fast}
    for key, value in fast.items():
        sysctl(lay.net.b, key, value)
    try:
        await election(lay, tmp_path, relay_host, settle=2.0)
    finally:
        for key in ("rto_min", "rto_initial", "rto_max", "max_init_retransmits"):
            sysctl(lay.net.b, key, defaults[key])


def sysctl(host: Host, key: str, value: int | None = None) -> int:
    """Read (or set) net.sctp.<key> in a host."""
    argv = (
        ["sysctl", "-n", f"net.sctp.{key}"]
        if value is None
        else ["sysctl", "-w", f"net.sctp.{key}={value}"]
    )
    done = host.run(*argv)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("=")[-1])


async def test_relay_through_freediameter_on_the_wire(lay: Layout, tmp_path: Path) -> None:
    """client -> sigmw -> freeDiameterd -> server, 10 sessions x 3 requests, captured in a."""
    # tcpdump is slow in the VM: with its default 2 MB ring of snaplen-sized slots it drops
    # packets ("dropped by kernel"); a bigger ring and a shorter snaplen keep up. The
    # snaplen still holds a whole packet of bundled messages (sigmw coalesces its sends).
    options = ["-B", "65536", "-s", "16384"]
    capture = Capture(kept(tmp_path, "sigmw-freediameter.pcap"), bpf=[*options, "sctp"])
    capture.start(lay.net.a)
    try:
        _, sessions = await relay_through_fd(lay, tmp_path, sessions=10, per_session=3)
    finally:
        capture.stop()
    assert re.search(r"^0 packets dropped by kernel", capture.report, re.M), capture.report
    rows = decode_diameter(capture.path, ports=[PORT, SERVER_PORT])
    a, b = {lay.a1, lay.a2}, {lay.b1, lay.b2}
    to_fd = [r for r in rows if r.src in a and r.dst in b and r.dst_port == PORT]
    to_client = [r for r in rows if r.src in a and r.dst in a and r.src_port == PORT]
    sent = to_fd + to_client
    assert all(r.transport == "sctp" for r in sent)
    assert {r.ppid for r in sent} == {46}, capture.report
    assert {r.ppid for r in rows if r.src in b and r.src_port == PORT} == {0}  # freeDiameterd

    management = [r for r in sent if (r.command, r.request) in MANAGEMENT]
    assert {(r.command, r.request) for r in management} == MANAGEMENT  # all six, from sigmw
    assert {r.stream for r in management} == {0}

    ccrs = {(r.session_id, r.end_to_end) for r in to_fd if r.command == CCR and r.request}
    ccas = {(r.session_id, r.end_to_end) for r in to_client if r.command == CCR and not r.request}
    assert len(ccrs) == len(ccas) == 30 and {s for s, _ in ccrs} == set(sessions)
    for leg in (to_fd, to_client):
        check_one_stream_per_session([r for r in leg if r.command == CCR])


def check_one_stream_per_session(rows: list[DiameterRow]) -> None:
    """Each session on a single stream, never 0; the sessions spread over several."""
    streams: dict[str | None, set[int | None]] = defaultdict(set)
    for row in rows:
        streams[row.session_id].add(row.stream)
    assert len(streams) == 10 and None not in streams
    assert all(len(used) == 1 for used in streams.values()), streams
    every = set().union(*streams.values())
    assert None not in every and 0 not in every and len(every) > 1, every
