"""The freeDiameterd harness over TCP, on this host (no kernel SCTP needed; root for
the namespace): freeDiameterd and the Python test nodes in one namespace, on an
address freeDiameterd accepts (not 127/8). The same checks as the SCTP harness
test in tests/sctp/, plus the TCP side of the capture decoder."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from diameter.message import constants as k

from sigmw.testbed.capture import Capture, decode_diameter
from sigmw.testbed.freediameter import (
    FdPeer,
    FdRoute,
    FreeDiameter,
    add_local_addresses,
    tail,
)
from sigmw.testbed.netns import Host, Topology
from tests.diameter_node import DiameterTestClient, DiameterTestServer, avp_value, result_code

ADDRESS = "10.93.0.1"  # a /32 on a dummy device, or on lo where there is no dummy module
FD_PORT, SERVER_PORT = 3868, 3869
CER, DWR, DPR, CCR = 257, 280, 282, 272


@pytest.fixture
def host() -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.fail("the freeDiameterd harness needs root (it makes a network namespace)")
    with Topology() as topo:
        host = topo.add_host("fd")
        add_local_addresses(host, [ADDRESS])  # before the test server binds to it
        yield host


@pytest.fixture
async def client() -> AsyncIterator[DiameterTestClient]:
    node = DiameterTestClient("c1.test", "test")
    yield node
    await node.close()


async def test_client_and_freediameter_over_tcp(
    host: Host, tmp_path: Path, client: DiameterTestClient
) -> None:
    fd = FreeDiameter(tmp_path / "fd", listen_addresses=[ADDRESS], sctp=False, tw=6)
    capture = Capture(tmp_path / "fd.pcap", bpf=["tcp"])
    capture.start(host)
    fd.start(host)
    try:
        await client.connect_tcp(ADDRESS, FD_PORT, host=host)
        cea = await client.capabilities_exchange(timeout=5)
        assert result_code(cea) == 2001, tail(fd.log)
        assert avp_value(cea, k.AVP_ORIGIN_HOST) == b"fd.test"
        assert result_code(await client.request(client.ccr("test", "fd.test"), timeout=5)) == 3007
        assert result_code(await client.request(client.ccr("test"), timeout=5)) == 3002

        # Over TCP the first DWR comes after Tw (6 s, jittered by up to 2 s) of silence.
        dwr = await client.wait_for(lambda r: r.is_request and r.code == DWR, timeout=15)
        assert (dwr.stream, dwr.ppid) == (None, None)
        assert client.watchdogs_answered == 1

        assert result_code(await client.disconnect(timeout=5)) == 2001
    finally:
        status = fd.stop()
        capture.stop()
    assert status == 0, tail(fd.log)  # SIGTERM is a clean exit

    rows = decode_diameter(capture.path)
    cer = next(r for r in rows if r.command == CER and r.request)
    cea_row = next(r for r in rows if r.command == CER and not r.request)
    assert (cer.transport, cer.stream, cer.ppid, cer.dst_port) == ("tcp", None, None, FD_PORT)
    assert (cea_row.result_code, cea_row.end_to_end) == (2001, cer.end_to_end)
    assert [r.result_code for r in rows if r.command == CCR and not r.request] == [3007, 3002]


async def test_relay_through_freediameter_over_tcp(
    host: Host, tmp_path: Path, client: DiameterTestClient
) -> None:
    server = DiameterTestServer("srv.server", "server", app_ids=(4,))
    await server.listen_tcp(ADDRESS, SERVER_PORT, host=host)
    fd = FreeDiameter(
        tmp_path / "fd",
        listen_addresses=[ADDRESS],
        sctp=False,
        tw=6,
        peers=[FdPeer("srv.server", ADDRESS, SERVER_PORT, "tcp")],
        routes=[FdRoute("server", "srv.server")],
    )
    fd.start(host)
    try:
        await fd.peer_open("srv.server", timeout=10)
        assert server.peers == ["fd.test"]
        await client.connect_tcp(ADDRESS, FD_PORT, host=host)
        assert result_code(await client.capabilities_exchange(timeout=5)) == 2001

        ccr = client.ccr("server")
        answer = await client.request(ccr, timeout=5)
        assert result_code(answer) == 2001, tail(fd.log)
        assert avp_value(answer, k.AVP_SESSION_ID) == ccr.session_id
        assert avp_value(answer, k.AVP_ORIGIN_HOST) == b"srv.server"
        [relayed] = server.requests
        assert relayed.message.header.end_to_end_identifier == ccr.header.end_to_end_identifier
        assert avp_value(relayed.message, k.AVP_ROUTE_RECORD) == b"c1.test"

        server.drop = True  # freeDiameterd has no request timer: only the client gives up
        with pytest.raises(TimeoutError):
            await client.request(client.ccr("server"), timeout=1)
        assert len(server.requests) == 2
        assert result_code(await client.disconnect(timeout=5)) == 2001
    finally:
        await fd.stop_async()
        await server.close()
