"""TcpEndpoint's direct handler (the relay's hot path over TCP): messages are handed over as
they are framed, in order, with nothing queued; what the handler leaves or defers queues
in order; a backlog left in the kernel after a full read is shed like a queued one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from sigmw.io.tcp import TcpEndpoint
from sigmw.io.transport import Deferred, Message, Received
from tests.unit.test_tcp_endpoint import UP, change, hbh, message, pair


async def _recv(ep: TcpEndpoint, timeout: float = 10.0) -> Received:
    async with asyncio.timeout(timeout):
        return await ep.recv()


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_the_handler_takes_every_message_in_order_and_nothing_queues() -> None:
    server = await TcpEndpoint.open([("127.0.0.1", 0)])
    client = TcpEndpoint.open_now([("0.0.0.0", 0)], listen=False)
    try:
        cid, sid = await pair(server, client)
        seen: list[int] = []

        def direct(assoc: int, batch: list[bytes]) -> int:
            assert assoc == sid
            seen.extend(hbh(m) for m in batch)
            return len(batch)

        server.direct = direct
        for i in range(5000):
            await client.send(message(i), cid)
        await _until(lambda: len(seen) == 5000)
        assert seen == list(range(5000))
        assert server.backlog() == 0 and server.stats.messages_in == 5000
    finally:
        server.close()
        client.close()


async def test_what_the_handler_leaves_queues_behind_its_deferred_work_in_order() -> None:
    server = await TcpEndpoint.open([("127.0.0.1", 0)])
    client = TcpEndpoint.open_now([("0.0.0.0", 0)], listen=False)
    try:
        cid, _ = await pair(server, client)
        taken: list[int] = []
        done: list[str] = []
        calls = 0

        async def work() -> None:
            done.append("deferred")

        def direct(assoc: int, batch: list[bytes]) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:  # first batch: take 3, then a send "must wait" on the 4th
                taken.extend(hbh(m) for m in batch[:4])
                server.defer(work)
                return 4
            taken.extend(hbh(m) for m in batch)
            return len(batch)

        server.direct = direct
        for i in range(10):
            await client.send(message(i), cid)  # corked: one write, one batch
        deferred = await _recv(server)
        assert isinstance(deferred, Deferred)
        await deferred.work()
        assert taken == [0, 1, 2, 3] and done == ["deferred"]
        # While the queue holds anything, new input queues behind it (order kept) ...
        await client.send(message(10), cid)
        await _until(lambda: server.backlog() == 7)
        queued = [await _recv(server) for _ in range(7)]
        assert [hbh(m.data) for m in queued if isinstance(m, Message)] == list(range(4, 11))
        assert calls == 1
        # ... and once it is drained, the handler takes the input again.
        await client.send(message(11), cid)
        await _until(lambda: taken[-1:] == [11])
        assert server.backlog() == 0
    finally:
        server.close()
        client.close()


async def test_a_backlog_in_the_kernel_is_shed_until_it_is_under_the_bound() -> None:
    """With a direct handler nothing waits in the endpoint's queue: when the relay falls
    behind, input waits in the kernel. After a full read the endpoint measures it (FIONREAD):
    while it is over the bound whole reads are shed, as arrivals at a full queue would be;
    then reads are relayed again, never more than the bound at once."""
    server = await TcpEndpoint.open([("127.0.0.1", 0)])
    try:
        raw = socket.create_connection(("127.0.0.1", server.port))
        sid = (await change(server, UP)).assoc_id
        conn = server._conns[sid]
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        bound = 512
        reads: list[tuple[list[int], list[int]]] = []  # (relayed, shed) per read

        def direct(assoc: int, batch: list[bytes]) -> int:
            reads.append(([hbh(m) for m in batch], []))
            return len(batch)

        def shedder(assoc: int, batch: list[bytes], write: Callable[[bytes], None]) -> list[bytes]:
            reads.append(([], [hbh(m) for m in batch]))
            return []

        server.direct, server.shedder, server.shed_backlog = direct, shedder, bound
        count = 60_000  # 28 bytes each: 1.6 MiB, several 256 KiB reads
        burst = b"".join(message(i) for i in range(count))
        sender = asyncio.get_running_loop().run_in_executor(None, raw.sendall, burst)
        time.sleep(0.5)  # the loop is stalled: the burst waits in the kernel
        await sender
        done = lambda: sum(len(r) + len(s) for r, s in reads) == count  # noqa: E731
        await _until(done)
        relayed = [n for r, _ in reads for n in r]
        shed = [n for _, s in reads for n in s]
        assert sorted(relayed + shed) == list(range(count))
        assert reads[0] == ([], list(range(len(reads[0][1])))), "the first read is shed whole"
        assert relayed, "nothing relayed once the backlog was under the bound"
        assert all(len(r) <= bound for r, _ in reads)
        assert relayed == sorted(relayed)  # in order
        raw.close()
    finally:
        server.close()


async def test_reads_within_the_bound_are_never_shed() -> None:
    """A closed loop that keeps up: reads stay small, so nothing is shed."""
    server = await TcpEndpoint.open([("127.0.0.1", 0)])
    client = TcpEndpoint.open_now([("0.0.0.0", 0)], listen=False)
    try:
        cid, _ = await pair(server, client)
        relayed: list[int] = []

        def shedder(assoc: int, batch: list[bytes], write: Callable[[bytes], None]) -> list[bytes]:
            raise AssertionError("shed without a backlog")

        def direct(assoc: int, batch: list[bytes]) -> int:
            relayed.extend(hbh(m) for m in batch)
            return len(batch)

        server.direct, server.shedder, server.shed_backlog = direct, shedder, 16
        for round_ in range(20):
            for i in range(10):
                await client.send(message(round_ * 10 + i), cid)
            await _until(lambda n=round_: len(relayed) == (n + 1) * 10)
        assert relayed == list(range(200))
    finally:
        server.close()
        client.close()
