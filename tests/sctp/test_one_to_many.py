"""One-to-many endpoint on a real kernel: many associations on one socket."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from sigmw.core.errors import AssociationGoneError, SctpBindError
from sigmw.io import sockapi, transport
from sigmw.io.endpoint import AssociationFailedError, SctpEndpoint
from sigmw.io.transport import Message, send_cmsgs
from sigmw.sctp.constants import AssocChangeState, ErrorCause, SendFlag
from sigmw.sctp.notifications import AssocChange, ShutdownEvent
from sigmw.sctp.options import InitParams, SctpTuning

from .support import assoc_event, next_message, wait_for

pytestmark = pytest.mark.sctp
LO = "127.0.0.1"


async def _echo(server: SctpEndpoint) -> None:
    while True:
        item = await server.recv()
        if isinstance(item, Message):
            await server.send(item.data, item.assoc_id, item.stream, item.ppid)


async def test_echo_server_serves_many_clients_on_one_socket(io_path: str) -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    echo = asyncio.create_task(_echo(server))
    clients = [await SctpEndpoint.open([(LO, 0)], listen=False) for _ in range(12)]
    assocs = [await c.connect([(LO, server.port)], timeout=10) for c in clients]
    for n, (client, assoc) in enumerate(zip(clients, assocs, strict=True)):
        for i in range(5):
            await client.send(f"{n}:{i}".encode(), assoc.assoc_id, stream=i % 4, ppid=46)
    for n, client in enumerate(clients):
        got = [(await next_message(client)).data for _ in range(5)]
        assert sorted(got) == [f"{n}:{i}".encode() for i in range(5)]
    assert len(server.associations) == 12  # every client on the one server socket
    echo.cancel()
    for c in [server, *clients]:
        c.close()


async def test_stream_ppid_and_unordered_round_trip(io_path: str) -> None:
    tuning = SctpTuning(init=InitParams(outbound_streams=8, max_inbound_streams=8))
    server = await SctpEndpoint.open([(LO, 0)], tuning)
    client = await SctpEndpoint.open([(LO, 0)], tuning, listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    assert (assoc.outbound_streams, assoc.inbound_streams) == (8, 8)
    cases = [(0, 0), (1, 3), (5, 46), (7, 0xFFFFFFFF), (2, 47)]
    for stream, ppid in cases:
        await client.send(b"p", assoc.assoc_id, stream=stream, ppid=ppid)
    await client.send(b"u", assoc.assoc_id, stream=3, ppid=4, flags=SendFlag.UNORDERED)
    got = [await next_message(server) for _ in range(len(cases) + 1)]
    assert [(m.stream, m.ppid) for m in got[:-1]] == cases
    assert (got[-1].stream, got[-1].ppid, got[-1].unordered) == (3, 4, True)
    assert not any(m.unordered for m in got[:-1])
    with pytest.raises(ValueError, match=r"only streams 0\.\.7"):
        await client.send(b"x", assoc.assoc_id, stream=8)
    server.close()
    client.close()


async def test_ordered_delivery_per_stream_with_large_messages(io_path: str) -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    sizes = [1, 1500, 70000, 150000, 10]  # > 64 KiB: several reads, joined at MSG_EOR
    for i, size in enumerate(sizes):
        await client.send(bytes([i]) * size, assoc.assoc_id, stream=1, ppid=9)
    got = [await next_message(server) for _ in sizes]
    assert [len(m.data) for m in got] == sizes
    assert [m.data[0] for m in got] == list(range(len(sizes)))
    server.close()
    client.close()


async def test_backpressure_awaits_buffer_space_and_loses_nothing() -> None:
    server = await SctpEndpoint.open([(LO, 0)], max_queued=8)  # reads stop after a few
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    await assoc_event(server, AssocChangeState.COMM_UP)
    count, payload = 400, b"z" * 4000  # 1.6 MB, far beyond both buffers
    sender = asyncio.create_task(_send_numbered(client, assoc.assoc_id, count, payload))
    await asyncio.sleep(1.0)
    assert not sender.done()  # blocked on a full buffer, not dropping
    assert client.stats.send_would_block >= 1
    got = [int((await next_message(server)).data[:8]) for _ in range(count)]
    await sender
    assert got == list(range(count))
    server.close()
    client.close()


async def _send_numbered(ep: SctpEndpoint, assoc_id: int, count: int, payload: bytes) -> None:
    for i in range(count):
        await ep.send(b"%08d" % i + payload, assoc_id, stream=1)


@pytest.mark.parametrize("more", [True, False])
async def test_try_send_bundles_a_burst_into_few_packets(
    more: bool, io_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst taken by try_send in one loop iteration leaves as a few packets (MSG_MORE
    on all but each association's last message), despite SCTP_NODELAY; without MSG_MORE
    the kernel sends a packet a message. Nothing is left behind in the kernel."""
    if not more:
        monkeypatch.setattr(transport, "MSG_MORE", 0)
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assert client.read_tuning(0).nodelay
    assoc = (await client.connect([(LO, server.port)], timeout=10)).assoc_id
    await assoc_event(server, AssocChangeState.COMM_UP)
    before = client.stats_of(assoc).counters
    count = 64
    assert all(client.try_send(b"%04d" % i + b"b" * 200, assoc, 1, 46) for i in range(count))
    got = [await next_message(server) for _ in range(count)]
    assert [int(m.data[:4]) for m in got] == list(range(count))
    after = client.stats_of(assoc).counters
    chunks = after["out_ordered_chunks"] - before["out_ordered_chunks"]
    packets = after["out_packets"] - before["out_packets"]
    assert chunks == count
    if more:
        assert packets <= count // 8, (packets, chunks)
    else:
        assert packets >= count // 2, (packets, chunks)
    server.close()
    client.close()


async def test_a_burst_beyond_the_send_buffer_waits_in_order_and_none_is_lost(
    io_path: str,
) -> None:
    """try_send takes one loop iteration's burst on two associations, far more than the
    send buffer holds: what the kernel pushes back on waits in its association's queue
    (nobody awaits it) and leaves in order when there is room."""
    servers = [await SctpEndpoint.open([(LO, 0)]) for _ in range(2)]
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    assocs = [(await client.connect([(LO, s.port)], timeout=10)).assoc_id for s in servers]
    count, payload = 200, b"q" * 3000  # 600 kB an association
    for i in range(count):
        for assoc in assocs:
            assert client.try_send(b"%06d" % i + payload, assoc, 1, 46)
    got = [[int((await next_message(s)).data[:6]) for _ in range(count)] for s in servers]
    assert got == [list(range(count))] * 2
    assert client.stats.send_would_block >= 1
    assert client.pending_sends() == 0 and client.stats.send_failed == 0
    for ep in (*servers, client):
        ep.close()


async def _until(done: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.01)


async def test_reads_past_the_shed_bound_go_to_the_overloaded_hook(io_path: str) -> None:
    """A full read that finds more waiting than the bound (counted from what the kernel
    holds unread) hands the reads past the bound to `overloaded` (the relay answers
    those requests 3004) and the rest to `direct`; nothing is lost, each keeps order."""
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = (await client.connect([(LO, server.port)], timeout=10)).assoc_id
    await assoc_event(server, AssocChangeState.COMM_UP)
    usual: list[int] = []
    shed: list[int] = []

    def taking_into(seen: list[int]) -> Callable[[int, int, bytes, float], bool]:
        def take(_assoc: int, _ppid: int, data: bytes, _now: float) -> bool:
            seen.append(int(data[:6]))
            return True

        return take

    server.direct, server.overloaded = taking_into(usual), taking_into(shed)
    server.shed_backlog = 100
    for i in range(50):  # read as it comes, never a full read: nothing is shed
        assert client.try_send(b"%06d" % i + b"r" * 100, assoc, 1, 46)
    await _until(lambda: len(usual) == 50)
    assert shed == []
    # The reader falls behind: 400 messages wait in the kernel, then it reads again.
    loop = asyncio.get_running_loop()
    loop.remove_reader(server.sock.fileno())
    count = 400
    for i in range(50, 50 + count):
        assert client.try_send(b"%06d" % i + b"r" * 100, assoc, 1, 46)
    await asyncio.sleep(0.5)
    loop.add_reader(server.sock.fileno(), server._on_readable)
    await _until(lambda: len(usual) + len(shed) == 50 + count)
    assert sorted(usual + shed) == list(range(50 + count))
    assert usual == sorted(usual) and shed == sorted(shed)
    assert len(shed) >= 3 * 64  # the deep part of the backlog
    assert len(usual) - 50 >= 64  # the last of it, once under the bound
    server.close()
    client.close()


async def test_send_nowait_queues_behind_a_full_association_up_to_its_limit(
    io_path: str,
) -> None:
    """A client that stops reading: once the server's buffers are full try_send refuses;
    send_nowait then queues without anyone awaiting, up to its limit, and refuses past
    it. When the client reads again, everything taken arrives, in order."""
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    await client.connect([(LO, server.port)], timeout=10)
    assoc = (await assoc_event(server, AssocChangeState.COMM_UP)).assoc_id
    loop = asyncio.get_running_loop()
    loop.remove_reader(client.sock.fileno())
    payload, sent = b"n" * 1000, 0
    while sent < 100_000 and server.try_send(b"%06d" % sent + payload, assoc, 1, 46):
        sent += 1
        if sent % 64 == 0:
            await asyncio.sleep(0)  # the held messages leave at the end of the iteration
    assert 0 < sent < 100_000 and server.pending_sends() > 0
    for i in range(sent, sent + 10):
        assert server.send_nowait(
            b"%06d" % i + payload, assoc, 1, 46, limit=server.pending_sends() + 1
        )
    assert not server.send_nowait(b"x" * 20, assoc, 1, 46, limit=server.pending_sends())
    assert not server.send_nowait(b"x" * 20, assoc, 99, 46)  # no such stream
    loop.add_reader(client.sock.fileno(), client._on_readable)
    got = [int((await next_message(client)).data[:6]) for _ in range(sent + 10)]
    assert got == list(range(sent + 10))
    await asyncio.sleep(0.2)
    rest = iter(client.recv_nowait, None)
    assert not any(isinstance(item, Message) for item in rest)  # nothing refused arrived
    assert server.pending_sends() == 0 and server.stats.send_failed == 0
    server.close()
    client.close()


async def test_socket_buffers_are_set_as_configured() -> None:
    tuning = SctpTuning(receive_buffer=4 * 1024 * 1024, send_buffer=1024 * 1024)
    ep = await SctpEndpoint.open([(LO, 0)], tuning)
    # Root here: past net.core.rmem_max (208 KiB on this kernel), as reported.
    assert ep.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 4 * 1024 * 1024
    assert ep.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 1024 * 1024
    ep.close()


def test_without_cap_net_admin_a_buffer_is_what_rmem_max_allows() -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    sock = sockapi.new_socket(socket.AF_INET, one_to_many=True)
    os.seteuid(65534)  # the effective capabilities go with euid 0, and come back with it
    try:
        got = sockapi.set_buffer(sock, True, 4 * 1024 * 1024)
    finally:
        os.seteuid(0)
    assert got == 2 * rmem_max < 4 * 1024 * 1024
    sock.close()


async def test_direct_hook_takes_whole_messages_and_queues_what_it_declines(io_path: str) -> None:
    """The hot path's hook gets each whole message with its association, PPID and the
    loop's time of the read; what it declines is queued for recv(), and so is everything
    after it while the queue is not empty (order holds)."""
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = (await client.connect([(LO, server.port)], timeout=10)).assoc_id
    up = await assoc_event(server, AssocChangeState.COMM_UP)
    taken: list[tuple[int, int, bytes, float]] = []

    def direct(assoc_id: int, ppid: int, data: bytes, now: float) -> bool:
        taken.append((assoc_id, ppid, data, now))
        return data != b"declined"

    server.direct = direct
    loop = asyncio.get_running_loop()
    before = loop.time()
    for data in (b"one", b"two", b"declined", b"after"):
        assert client.try_send(data, assoc, 1, 46)
    queued = [await next_message(server) for _ in range(2)]
    assert [m.data for m in queued] == [b"declined", b"after"]
    assert [(a, p, d) for a, p, d, _ in taken] == [
        (up.assoc_id, 46, b"one"),
        (up.assoc_id, 46, b"two"),
        (up.assoc_id, 46, b"declined"),
    ]
    assert all(before <= now <= loop.time() for *_, now in taken)
    server.close()
    client.close()


async def test_held_messages_leave_before_a_later_send_and_a_lost_one_is_counted(
    io_path: str,
) -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    first = (await client.connect([(LO, server.port)], timeout=10)).assoc_id
    assert client.try_send(b"held-1", first, 0, 46) and client.try_send(b"held-2", first, 0, 46)
    await client.send(b"awaited", first, 0, 46)  # must not overtake what try_send took
    assert [(await next_message(server)).data for _ in range(3)] == [
        b"held-1",
        b"held-2",
        b"awaited",
    ]
    # The association dies between the take and the end of the loop iteration: the held
    # message is counted as failed, nothing raises, and the socket's others carry on.
    other = await SctpEndpoint.open([(LO, 0)], listen=False)
    second = (await other.connect([(LO, server.port)], timeout=10)).assoc_id
    assert client.try_send(b"lost", first, 0, 46)
    abort = send_cmsgs(0, 0, int(SendFlag.ABORT), 0, first, None)
    client.sock.sendmsg([b""], abort)
    await assoc_event(client, AssocChangeState.COMM_LOST)
    assert client.stats.send_failed == 1
    assert other.try_send(b"still here", second, 0, 46)
    assert (await next_message(server)).data == b"still here"
    for ep in (server, client, other):
        ep.close()


async def test_sendall_reaches_every_association() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    clients = [await SctpEndpoint.open([(LO, 0)], listen=False) for _ in range(4)]
    for c in clients:
        await c.connect([(LO, server.port)], timeout=10)
    while len(server.associations) < 4:
        await server.recv()
    await server.send_all(b"to everyone", stream=0, ppid=1234)
    for c in clients:
        msg = await next_message(c)
        assert (msg.data, msg.ppid) == (b"to everyone", 1234)
    server.close()
    for c in clients:
        c.close()


async def test_eof_shuts_one_association_down_others_stay_up() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    a = await SctpEndpoint.open([(LO, 0)], listen=False)
    b = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc_a = await a.connect([(LO, server.port)], timeout=10)
    assoc_b = await b.connect([(LO, server.port)], timeout=10)
    await a.shutdown(assoc_a.assoc_id)
    await wait_for(server, ShutdownEvent)  # the peer is told the other side is leaving
    done = await assoc_event(a, AssocChangeState.SHUTDOWN_COMP)
    assert done.assoc_id == assoc_a.assoc_id
    assert assoc_a.assoc_id not in a.associations
    await b.send(b"still here", assoc_b.assoc_id)
    assert (await next_message(server)).data == b"still here"
    with pytest.raises(AssociationGoneError):
        await a.send(b"too late", assoc_a.assoc_id)
    for ep in (server, a, b):
        ep.close()


async def test_abort_carries_the_reason_to_the_peer() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    up = await assoc_event(server, AssocChangeState.COMM_UP)
    await server.abort(up.assoc_id, b"maintenance window")
    lost = await assoc_event(client, AssocChangeState.COMM_LOST)
    assert lost.assoc_id == assoc.assoc_id
    assert lost.error == ErrorCause.USER_INITIATED_ABORT
    assert [(c.code, c.info) for c in lost.causes] == [
        (ErrorCause.USER_INITIATED_ABORT, b"maintenance window")
    ]
    server.close()
    client.close()


async def test_connect_to_closed_port_reports_cant_start_with_cause() -> None:
    probe = await SctpEndpoint.open([(LO, 0)], listen=False)
    closed_port = probe.port
    probe.close()  # nothing listens there now
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    with pytest.raises(AssociationFailedError) as failed:
        await client.connect([(LO, closed_port)], timeout=10)
    note = failed.value.note
    assert note.state is AssocChangeState.CANT_STR_ASSOC
    assert f"'{LO}', {closed_port}" in str(failed.value)
    assert "CANT_STR_ASSOC" in str(failed.value)
    client.close()


async def test_autoclose_ends_idle_associations() -> None:
    server = await SctpEndpoint.open([(LO, 0)], SctpTuning(autoclose_s=1))
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    await client.send(b"hi", assoc.assoc_id)
    await next_message(server)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await assoc_event(server, AssocChangeState.SHUTDOWN_COMP, timeout=15)
    await assoc_event(client, AssocChangeState.SHUTDOWN_COMP, timeout=15)
    assert 0.5 < loop.time() - t0 < 10
    assert not server.associations
    server.close()
    client.close()


async def test_implicit_association_on_first_send() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    await client.send_to(b"hello without connect", (LO, server.port), stream=0, ppid=46)
    up = await assoc_event(client, AssocChangeState.COMM_UP)
    msg = await next_message(server)
    assert (msg.data, msg.ppid) == (b"hello without connect", 46)
    assert up.assoc_id in client.associations
    server.close()
    client.close()


async def test_bind_failure_names_the_address() -> None:
    with pytest.raises(SctpBindError, match=r"192\.0\.2\.77") as failed:
        await SctpEndpoint.open([(LO, 0), ("192.0.2.77", 0)])
    assert failed.value.errno == errno.EADDRNOTAVAIL


async def test_ipv6_one_to_many(io_path: str) -> None:
    server = await SctpEndpoint.open([("::1", 0)])
    client = await SctpEndpoint.open([("::1", 0)], listen=False)
    assoc = await client.connect([("::1", server.port)], timeout=10)
    await client.send(b"v6", assoc.assoc_id, stream=1, ppid=3)
    msg = await next_message(server)
    assert (msg.data, msg.stream, msg.ppid) == (b"v6", 1, 3)
    assert msg.source is not None and msg.source[0] == "::1"
    assert client.peer_addresses(assoc.assoc_id) == [("::1", server.port)]
    server.close()
    client.close()


async def test_readouts_status_paths_stats() -> None:
    server = await SctpEndpoint.open([(LO, 0), ("127.0.0.2", 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port), ("127.0.0.2", server.port)], timeout=10)
    for _ in range(5):
        await client.send(b"ping", assoc.assoc_id)
        await next_message(server)
    status = client.status(assoc.assoc_id)
    assert status.state == 4  # ESTABLISHED
    assert status.outbound_streams == assoc.outbound_streams
    paths = client.paths(assoc.assoc_id)
    assert {p.address for p in paths} == {(LO, server.port), ("127.0.0.2", server.port)}
    assert all(p.rto_ms > 0 and p.cwnd > 0 and p.mtu > 0 for p in paths)
    stats = client.stats_of(assoc.assoc_id)
    assert stats.counters["out_ordered_chunks"] >= 5
    assert set(client.local_addresses(assoc.assoc_id)) == {(LO, client.port)}
    server.close()
    client.close()


def test_close_is_idempotent_and_recv_then_fails() -> None:
    async def run() -> None:
        ep = await SctpEndpoint.open([(LO, 0)])
        ep.close()
        ep.close()
        with pytest.raises(ConnectionError):
            await ep.recv()

    asyncio.run(run())


async def test_comm_up_notification_precedes_first_message() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    await client.send(b"first", assoc.assoc_id)
    first = await server.recv()
    assert isinstance(first, AssocChange) and first.state is AssocChangeState.COMM_UP
    assert (first.outbound_streams, first.inbound_streams) == (
        assoc.inbound_streams,
        assoc.outbound_streams,
    )
    server.close()
    client.close()


def test_check_sctp_says_available_on_a_real_kernel() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sigmw", "check-sctp"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "kernel SCTP: available")
