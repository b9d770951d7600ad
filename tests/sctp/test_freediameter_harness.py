"""The freeDiameterd harness itself, over real kernel SCTP: freeDiameterd in host b
(multihomed on both links), the Python test client in host a. Proves what later
interop tests rely on: CER/CEA, its DWR answered, 3007 for a request to itself,
DPR/DPA, relaying to a DiameterTestServer by realm, and the capture decoded by
tshark (CER/CEA on stream 0, freeDiameterd's PPID 0)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from diameter.message import constants as k

from sigmw.testbed.capture import Capture, decode_diameter, warm_up_tshark
from sigmw.testbed.freediameter import FdPeer, FdRoute, FreeDiameter, tail
from sigmw.testbed.netns import TwoPaths
from tests.diameter_node import DiameterTestClient, DiameterTestServer, avp_value, result_code

pytestmark = pytest.mark.sctp
FD_PORT, SERVER_PORT = 3868, 3869
RELAY_APP = 0xFFFFFFFF
RESULTS = Path(".bench/vm/captures")  # inside the VM, the guest-writable --results dir
CER, DWR, DPR, CCR = 257, 280, 282, 272


@pytest.fixture(scope="module", autouse=True)
def tshark_warm() -> Iterator[subprocess.Popen[bytes]]:
    """tshark's first start in the VM takes ~70 s: begin it while the tests run."""
    proc = warm_up_tshark()
    yield proc
    proc.kill()
    proc.wait()


def freediameter(
    net: TwoPaths, workdir: Path, peers: Sequence[FdPeer] = (), routes: Sequence[FdRoute] = ()
) -> FreeDiameter:
    """freeDiameterd for host b on both of its addresses, SCTP only, Tw 6 s."""
    listen = [address for address, _ in net.b_addresses()]
    return FreeDiameter(
        workdir, listen_addresses=listen, tcp=False, tw=6, peers=peers, routes=routes
    )


def kept(tmp_path: Path, name: str) -> Path:
    """Where a capture outlives the VM: its --results directory (decode it on the host with
    `python -m sigmw.testbed.capture FILE`), else tmp_path."""
    try:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / name).touch()
    except OSError:
        return tmp_path / name
    return RESULTS / name


@pytest.fixture
async def client(net: TwoPaths) -> AsyncIterator[DiameterTestClient]:
    node = DiameterTestClient("c1.test", "test")
    yield node
    await node.close()


async def test_relay_through_freediameter(
    net: TwoPaths, tmp_path: Path, client: DiameterTestClient
) -> None:
    server = DiameterTestServer("srv.server", "server", app_ids=(4,))
    await server.listen_sctp([(net.path1.a_addr, SERVER_PORT)], host=net.a)
    fd = freediameter(
        net,
        tmp_path / "fd",
        peers=[FdPeer("srv.server", net.path1.a_addr, SERVER_PORT, "sctp")],
        routes=[FdRoute("server", "srv.server")],
    )
    fd.start(net.b)
    try:
        await server.wait_for(lambda r: r.is_request and r.code == CER, timeout=60)
        assert server.peers == ["fd.test"]
        await client.connect_sctp(net.b_addresses(FD_PORT), net.a_addresses(), host=net.a)
        assert result_code(await client.capabilities_exchange()) == 2001
        await fd.peer_open("srv.server")  # else the first request may find no route (3002)

        server.delay = 0.2  # answers overtake each other: matching is by end-to-end id
        requests = [client.ccr("server") for _ in range(5)]
        answers = await asyncio.gather(*(client.request(r) for r in requests))
        for request, answer in zip(requests, answers, strict=True):
            assert result_code(answer) == 2001, tail(fd.log)
            assert avp_value(answer, k.AVP_SESSION_ID) == request.session_id
            assert avp_value(answer, k.AVP_ORIGIN_HOST) == b"srv.server"

        sent = {r.header.end_to_end_identifier: r.session_id for r in requests}
        got = {r.message.header.end_to_end_identifier: r for r in server.requests}
        assert set(got) == set(sent)  # freeDiameterd keeps the end-to-end id when relaying
        for e2e, item in got.items():
            assert avp_value(item.message, k.AVP_SESSION_ID) == sent[e2e]
            assert avp_value(item.message, k.AVP_ROUTE_RECORD) == b"c1.test"
            assert item.ppid == 0 and item.stream not in (None, 0)  # PPID 0, streams 1..n
        assert result_code(await client.disconnect()) == 2001

        # On SIGTERM freeDiameterd says goodbye to the peer it dialled, and exits.
        assert await fd.stop_async() == 0, tail(fd.log)
        dpr = await server.wait_for(lambda r: r.is_request and r.code == DPR, timeout=5)
        assert (dpr.stream, dpr.ppid) == (0, 0)
    finally:
        await fd.stop_async()
        await server.close()


async def test_client_and_freediameter_over_sctp(
    net: TwoPaths,
    tmp_path: Path,
    client: DiameterTestClient,
) -> None:
    fd = freediameter(net, tmp_path / "fd")
    capture = Capture(kept(tmp_path, "freediameter-sctp.pcap"), bpf=["sctp"])
    capture.start(net.b)
    fd.start(net.b)
    try:
        await client.connect_sctp(net.b_addresses(FD_PORT), net.a_addresses(), host=net.a)
        cea = await client.capabilities_exchange()
        assert result_code(cea) == 2001, tail(fd.log)
        assert avp_value(cea, k.AVP_ORIGIN_HOST) == b"fd.test"
        assert avp_value(cea, k.AVP_AUTH_APPLICATION_ID) == RELAY_APP  # relay, no apps

        # freeDiameterd sends a DWR at once after CEA over SCTP; the client answers it.
        dwr = await client.wait_for(lambda r: r.is_request and r.code == DWR, timeout=30)
        assert (dwr.stream, dwr.ppid) == (0, 0)
        assert client.watchdogs_answered >= 1

        to_itself = await client.request(client.ccr("test", destination_host="fd.test"))
        assert result_code(to_itself) == 3007  # no application extension loaded
        realm_only = await client.request(client.ccr("test"))
        assert result_code(realm_only) == 3002  # Destination-Realm alone is not "to itself"

        dpa = await client.disconnect()
        assert result_code(dpa) == 2001
    finally:
        await fd.stop_async()
        capture.stop()

    rows = decode_diameter(capture.path)
    cer = next(r for r in rows if r.command == CER and r.request)
    cea_row = next(r for r in rows if r.command == CER and not r.request)
    assert (cer.stream, cer.ppid, cer.origin_host) == (0, 46, "c1.test")
    assert (cea_row.stream, cea_row.ppid, cea_row.origin_host) == (0, 0, "fd.test")
    assert cea_row.result_code == 2001 and cea_row.end_to_end == cer.end_to_end
    assert [(r.stream, r.request) for r in rows if r.command == DPR] == [(0, True), (0, False)]
    ccas = [r for r in rows if r.command == CCR and not r.request]
    assert sorted(r.result_code or 0 for r in ccas) == [3002, 3007]
    assert all(r.ppid == 0 for r in rows if r.src_port == FD_PORT)
