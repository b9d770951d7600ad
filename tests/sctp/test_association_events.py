"""Association life-cycle notifications provoked on a real two-host topology."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct

import pytest

from sigmw.io.endpoint import AssociationFailedError, SctpEndpoint
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import PartialDeliveryEvent, PeerAddrChange, SendFailed
from sigmw.sctp.options import InitParams, SctpTuning
from sigmw.testbed.netns import TwoPaths

from .support import assoc_event, next_message, wait_for

pytestmark = pytest.mark.sctp
SO_SNDBUFFORCE = 32  # Linux; not exported by Python's socket module

FAST = SctpTuning(
    rto_initial_ms=200,
    rto_min_ms=100,
    rto_max_ms=500,
    hb_interval_ms=200,
    path_max_retrans=2,
    assoc_max_retrans=4,
)


async def _single_path_pair(
    net: TwoPaths, server_tuning: SctpTuning = FAST, client_port: int = 0
) -> tuple[SctpEndpoint, SctpEndpoint, int, int]:
    with net.b.entered():
        server = await SctpEndpoint.open([(net.path1.b_addr, 0)], server_tuning)
    with net.a.entered():
        client = await SctpEndpoint.open([(net.path1.a_addr, client_port)], FAST, listen=False)
    assoc = await client.connect([(net.path1.b_addr, server.port)], timeout=20)
    up = await assoc_event(server, AssocChangeState.COMM_UP)
    return server, client, assoc.assoc_id, up.assoc_id


async def test_peer_restart_is_reported_as_restart(net: TwoPaths) -> None:
    # Slow server heartbeats: one sent between the crash and the new INIT would draw an
    # ABORT from the client's kernel, ending the old association (COMM_UP, not RESTART).
    quiet = dataclasses.replace(FAST, hb_interval_ms=10_000)
    server, client, _, server_assoc = await _single_path_pair(net, quiet)
    port = client.port
    net.topo.link_down(net.path1, "a")  # the client's ABORT will be lost: a "crash"
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    net.topo.link_up(net.path1, "a")
    with net.a.entered():
        reborn = await SctpEndpoint.open([(net.path1.a_addr, port)], FAST, listen=False)
    assoc = await reborn.connect([(net.path1.b_addr, server.port)], timeout=20)
    restart = await assoc_event(server, AssocChangeState.RESTART)
    assert restart.assoc_id == server_assoc  # same association, peer state reset
    assert restart.outbound_streams > 0
    await reborn.send(b"after restart", assoc.assoc_id)
    msg = await next_message(server)
    assert (msg.data, msg.assoc_id) == (b"after restart", server_assoc)
    server.close()
    reborn.close()


async def test_unreachable_peer_reports_cant_start_with_cause(net: TwoPaths) -> None:
    net.topo.loss(net.path1, 100, side="a")
    tuning = SctpTuning(
        rto_initial_ms=100,
        rto_min_ms=100,
        rto_max_ms=200,
        init=InitParams(max_attempts=2, max_init_timeout_ms=200),
    )
    with net.a.entered():
        client = await SctpEndpoint.open([(net.path1.a_addr, 0)], tuning, listen=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(AssociationFailedError) as failed:
        await client.connect([(net.path1.b_addr, 3868)], timeout=30)
    assert failed.value.note.state is AssocChangeState.CANT_STR_ASSOC
    assert "no answer from the peer" in str(failed.value)
    assert "10.91.1.2" in str(failed.value)
    assert loop.time() - start < 10  # 2 attempts of <= 200 ms, not the 8 x 60 s default
    client.close()


async def test_expired_messages_come_back_as_send_failed(net: TwoPaths) -> None:
    server, client, assoc_id, _ = await _single_path_pair(net)
    client.apply_tuning(SctpTuning(assoc_max_retrans=20, init=None), assoc_id)  # survive the cut
    net.topo.loss(net.path1, 100, side="a")
    # More than the congestion window: most stay queued, expire unsent, and the kernel
    # hands each one back (PR-SCTP TTL, RFC 3758) at its next flush.
    stale = [b"stale %02d " % i + b"x" * 1400 for i in range(20)]
    for message in stale:
        await client.send(message, assoc_id, stream=1, ppid=46, ttl_ms=100)
    failed = [await wait_for(client, SendFailed, timeout=30) for _ in range(10)]
    assert all(f.data in stale and not f.sent for f in failed)
    assert {(f.assoc_id, f.stream, f.ppid) for f in failed} == {(assoc_id, 1, 46)}
    net.topo.clear(net.path1, side="a")
    await client.send(b"fresh", assoc_id, stream=1)
    delivered = []
    while not delivered or delivered[-1] != b"fresh":
        delivered.append((await next_message(server)).data)
    assert not {f.data for f in failed} & set(delivered)  # abandoned, never delivered
    server.close()
    client.close()


async def test_aborted_partial_delivery_is_reported(net: TwoPaths) -> None:
    receiver_tuning = SctpTuning(
        partial_delivery_point=1000, rto_initial_ms=200, rto_min_ms=100, rto_max_ms=500
    )
    server, client, assoc_id, server_assoc = await _single_path_pair(net, receiver_tuning)
    client.sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 * 1024 * 1024)
    net.topo.netem(net.path1, "a", "rate", "1mbit")  # 150 kB takes more than a second
    await client.send(b"m" * 150_000, assoc_id, stream=2)
    async with asyncio.timeout(20):  # until the receiver is in partial delivery
        while server.stats.partial_reads == 0:
            await asyncio.sleep(0.01)
    net.topo.clear(net.path1, "a")  # drop the queued rest, so the ABORT arrives first
    await client.abort(assoc_id, b"gone mid-message")
    event = await wait_for(server, PartialDeliveryEvent, timeout=20)
    # Linux fills in stream and sequence only with I-DATA interleaving; here they are 0.
    assert (event.assoc_id, event.indication) == (server_assoc, 0)
    lost = await assoc_event(server, AssocChangeState.COMM_LOST)
    assert lost.assoc_id == server_assoc
    assert not server._partial  # the half message was dropped, not kept forever
    server.close()
    client.close()


async def test_peer_primary_request_with_asconf(net: TwoPaths) -> None:
    for host in (net.a, net.b):
        host.run("sysctl", "-qw", "net.sctp.addip_enable=1", "net.sctp.addip_noauth_enable=1")
    with net.b.entered():
        server = await SctpEndpoint.open(net.b_addresses(), FAST)
    with net.a.entered():
        client = await SctpEndpoint.open(net.a_addresses(), FAST, listen=False)
    assoc = await client.connect(net.b_addresses(server.port), timeout=20)
    wanted = (net.path2.a_addr, client.port)
    client_tuning = SctpTuning(peer_primary=wanted, init=None, nodelay=None, expose_pf_state=None)
    client.apply_tuning(client_tuning, assoc.assoc_id)
    made = await wait_for(server, PeerAddrChange, lambda n: n.state.name == "ADDR_MADE_PRIM")
    assert made.address == wanted
    server_assoc = made.assoc_id
    assert server.status(server_assoc).primary.address == wanted
    server.close()
    client.close()
