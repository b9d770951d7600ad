"""TcpEndpoint on real loopback TCP: the same items and calls as SctpEndpoint."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest

from sigmw.core.errors import AssociationGoneError
from sigmw.io.tcp import GRACE_S, TcpEndpoint
from sigmw.io.transport import Message, Received
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange
from sigmw.sctp.options import SctpTuning

T = TypeVar("T")
UP, LOST = AssocChangeState.COMM_UP, AssocChangeState.COMM_LOST


def message(n: int, body: int = 8) -> bytes:
    """A valid-looking Diameter message: hop-by-hop id n, `body` bytes (multiple of 4)."""
    head = struct.pack("!I I I I I", (1 << 24) | (20 + body), (0x80 << 24) | 272, 4, n, n)
    return head + bytes([n & 0xFF]) * body


def hbh(raw: bytes) -> int:
    return int(struct.unpack_from("!I", raw, 12)[0])


async def take(
    ep: TcpEndpoint,
    kind: type[T],
    match: Callable[[T], bool] = lambda _: True,
    seen: list[Received] | None = None,
    timeout: float = 10.0,
) -> T:
    async with asyncio.timeout(timeout):
        while True:
            item = await ep.recv()
            if isinstance(item, kind) and match(item):
                return item
            if seen is not None:
                seen.append(item)


async def change(ep: TcpEndpoint, state: AssocChangeState) -> AssocChange:
    return await take(ep, AssocChange, lambda n: n.state is state)


async def messages(ep: TcpEndpoint, count: int, timeout: float = 20.0) -> list[Message]:
    return [await take(ep, Message, timeout=timeout) for _ in range(count)]


@pytest.fixture
async def server() -> AsyncIterator[TcpEndpoint]:
    ep = await TcpEndpoint.open([("127.0.0.1", 0)])
    yield ep
    ep.close()


@pytest.fixture
async def client() -> AsyncIterator[TcpEndpoint]:
    ep = TcpEndpoint.open_now([("0.0.0.0", 0)], listen=False)
    yield ep
    ep.close()


async def pair(server: TcpEndpoint, client: TcpEndpoint) -> tuple[int, int]:
    """Connect client to server: (client's assoc id, server's assoc id)."""
    cid = client.start_connect([("127.0.0.1", server.port)])
    assert (await change(client, UP)).assoc_id == cid
    return cid, (await change(server, UP)).assoc_id


async def test_connect_and_accept_report_comm_up(server: TcpEndpoint, client: TcpEndpoint) -> None:
    cid = client.start_connect([("127.0.0.1", server.port)])
    up_c = await change(client, UP)
    up_s = await change(server, UP)
    assert up_c == AssocChange(cid, UP, 0, 1, 1, (), ())
    assert (up_s.outbound_streams, up_s.inbound_streams) == (1, 1)
    assoc = server.associations[up_s.assoc_id]
    assert (assoc.outbound_streams, assoc.inbound_streams) == (1, 1)
    local = client.local_addresses(cid)
    assert server.peer_addresses(up_s.assoc_id) == local
    assert client.peer_addresses(cid) == [("127.0.0.1", server.port)]
    assert client.start_connect([("127.0.0.1", server.port)]) > cid  # ids increase
    sock = client._conns[cid].transport.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


async def test_sctp_only_calls_are_harmless(server: TcpEndpoint, client: TcpEndpoint) -> None:
    cid, _ = await pair(server, client)
    assert client.paths(cid) == []
    wanted = SctpTuning(rto_min_ms=100, hb_interval_ms=50)
    client.apply_tuning(wanted, cid)
    assert client.read_tuning(cid) == wanted  # echoed: the daemon reports nothing clamped
    client.set_primary(cid, ("127.0.0.1", server.port))
    await client.send(message(1), cid)
    assert (await take(server, Message)).data == message(1)


async def test_messages_both_ways_intact_and_in_order(
    server: TcpEndpoint, client: TcpEndpoint
) -> None:
    cid, sid = await pair(server, client)
    out = [message(i, body=4 * (i % 50)) for i in range(300)]
    for m in out:
        await client.send(m, cid, stream=3, ppid=0)  # stream and ppid mean nothing on TCP
        await server.send(m[::-1][::-1], sid)
    got_s, got_c = await messages(server, 300), await messages(client, 300)
    assert [m.data for m in got_s] == out
    assert [m.data for m in got_c] == out
    first = got_s[0]
    assert (first.assoc_id, first.stream, first.ppid) == (sid, 0, 46)
    assert first.source == client.local_addresses(cid)[0]


async def test_big_message_split_across_segments(server: TcpEndpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sid = (await change(server, UP)).assoc_id
    big = message(7, body=65536 - 20)
    for i in (0, 3, 19, 20, 1000, 30000, 65535, 65536):
        nxt = {0: 3, 3: 19, 19: 20, 20: 1000, 1000: 30000, 30000: 65535, 65535: 65536}.get(i)
        writer.write(big[i:nxt])
        await writer.drain()
        await asyncio.sleep(0.01)  # separate segments
    got = await take(server, Message)
    assert got.data == big and got.assoc_id == sid
    writer.close()
    await change(server, LOST)
    del reader


async def test_many_messages_in_flight(server: TcpEndpoint, client: TcpEndpoint) -> None:
    cid, _ = await pair(server, client)
    count = 20_000
    for i in range(count):
        await client.send(message(i), cid)  # no await suspends: they are corked together
    got = await messages(server, count)
    assert [hbh(m.data) for m in got] == list(range(count))
    assert client.stats.messages_out == count and server.stats.messages_in == count
    assert client.stats.writes <= count // 100  # corked: 28-byte messages, 64 KiB a write


async def test_backpressure_slow_reader_nothing_lost(client: TcpEndpoint) -> None:
    server = await TcpEndpoint.open([("127.0.0.1", 0)], max_queued=8)
    try:
        cid, _ = await pair(server, client)
        count, body = 3000, 16 * 1024
        sender = asyncio.create_task(_send_many(client, cid, count, body))
        async with asyncio.timeout(20):
            while client.stats.send_waits == 0:  # the server reads nothing meanwhile
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert not sender.done()  # send is waiting for room, not dropping
        assert len(server._rx) <= 8 + 256 * 1024 // body  # reading stopped near the bound
        got = await messages(server, count)
        await sender
        assert [hbh(m.data) for m in got] == list(range(count))
        assert all(len(m.data) == 20 + body for m in got)
    finally:
        server.close()


async def _send_many(ep: TcpEndpoint, assoc_id: int, count: int, body: int) -> None:
    for i in range(count):
        await ep.send(message(i, body), assoc_id)


async def test_peer_close_is_comm_lost(server: TcpEndpoint, client: TcpEndpoint) -> None:
    cid, sid = await pair(server, client)
    await client.send(message(1), cid)
    client.close()
    seen: list[Received] = []
    lost = await take(server, AssocChange, lambda n: n.state is LOST, seen)
    assert lost.assoc_id == sid
    assert [m.data for m in seen if isinstance(m, Message)] == [message(1)]
    assert sid not in server.associations
    with pytest.raises(AssociationGoneError):
        await server.send(message(2), sid)


async def test_peer_reset_is_comm_lost_on_both_sides(
    server: TcpEndpoint, client: TcpEndpoint
) -> None:
    cid, sid = await pair(server, client)
    await client.abort(cid, b"reason is not carried by TCP")
    assert (await change(client, LOST)).assoc_id == cid
    assert (await change(server, LOST)).assoc_id == sid


async def test_shutdown_flushes_then_completes(server: TcpEndpoint, client: TcpEndpoint) -> None:
    cid, sid = await pair(server, client)
    await server.send(message(5), sid)
    await server.shutdown(sid)  # right after a send: the message still leaves first
    with pytest.raises(AssociationGoneError):
        await server.send(message(6), sid)
    seen: list[Received] = []
    assert (await take(client, AssocChange, lambda n: n.state is LOST, seen)).assoc_id == cid
    assert [m.data for m in seen if isinstance(m, Message)] == [message(5)]
    done = await take(server, AssocChange, lambda n: n.state is not UP)
    assert (done.assoc_id, done.state) == (sid, AssocChangeState.SHUTDOWN_COMP)


async def test_framing_error_delivers_the_message_then_closes(server: TcpEndpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sid = (await change(server, UP)).assoc_id
    bad = struct.pack("!I", (1 << 24) | 30) + bytes(16)  # length not a multiple of 4
    writer.write(message(1) + bad + b"trailing junk")
    loop = asyncio.get_running_loop()
    good, partial = await messages(server, 2)
    seen_at = loop.time()
    assert good.data == message(1)
    assert partial.data == bad and partial.assoc_id == sid
    assert server.stats.framing_errors == 1
    await server.send(b"answer 5015", sid)  # the grace lets this answer leave
    writer.write(message(2))  # ignored from now on
    lost = await change(server, LOST)
    assert lost.assoc_id == sid
    assert loop.time() - seen_at >= GRACE_S * 0.8
    assert await asyncio.wait_for(reader.read(), 5) == b"answer 5015"  # then a clean EOF
    writer.close()


async def test_connect_refused_is_cant_start(client: TcpEndpoint) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cid = client.start_connect([("127.0.0.1", closed)])
    note = await take(client, AssocChange)
    assert (note.assoc_id, note.state) == (cid, AssocChangeState.CANT_STR_ASSOC)
    assert client.associations == {}
    assert client.stats.connect_failed == 1


async def test_connect_tries_the_next_address(server: TcpEndpoint, client: TcpEndpoint) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cid = client.start_connect([("127.0.0.1", closed), ("127.0.0.1", server.port)])
    assert (await take(client, AssocChange)) == AssocChange(cid, UP, 0, 1, 1, (), ())


async def test_listener_on_two_addresses_shares_one_port(client: TcpEndpoint) -> None:
    server = await TcpEndpoint.open([("127.0.0.2", 0), ("127.0.0.3", 0)])
    try:
        for host in ("127.0.0.2", "127.0.0.3"):
            client.start_connect([(host, server.port)])
            await change(client, UP)
            await change(server, UP)
        hosts = {server.peer_addresses(a)[0][0] for a in server.associations}
        assert hosts == {"127.0.0.1"}  # the client's source, wildcard-bound
        assert len(server.associations) == 2
    finally:
        server.close()


async def test_source_address_is_the_configured_local_one(server: TcpEndpoint) -> None:
    client = TcpEndpoint.open_now([("127.0.0.5", 0)], listen=False)
    try:
        cid, sid = await pair(server, client)
        assert server.peer_addresses(sid)[0][0] == "127.0.0.5"
        assert client.local_addresses(cid)[0][0] == "127.0.0.5"
    finally:
        client.close()


async def test_close_ends_recv_and_the_connections(
    server: TcpEndpoint, client: TcpEndpoint
) -> None:
    _, sid = await pair(server, client)
    waiting = asyncio.create_task(client.recv())
    await asyncio.sleep(0)
    client.close()
    with pytest.raises(ConnectionError):
        await waiting
    assert (await change(server, LOST)).assoc_id == sid
