"""Multihomed associations between two namespaces over two links: path failure,
failover with zero loss, detection within the bound the timers imply, repair."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.transport import Message
from sigmw.sctp.constants import PathState, PeerAddrState
from sigmw.sctp.notifications import PeerAddrChange
from sigmw.sctp.options import tuning_for
from sigmw.sctp.timing import FAST_FAILOVER, path_failure_detection_ms, path_switch_ms
from sigmw.testbed.netns import TwoPaths

pytestmark = pytest.mark.sctp

TIMERS = FAST_FAILOVER
TUNING = tuning_for(TIMERS)


@dataclass
class Run:
    """What one failover run saw."""

    sent: int = 0
    received: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    events: list[tuple[float, PeerAddrState]] = field(default_factory=list)
    primary_state_during_failure: int | None = None
    t_fail: float = 0.0
    t_repair: float = 0.0
    retransmitted: int = 0

    def first(self, state: PeerAddrState, after: float) -> float | None:
        return next((t for t, s in self.events if s is state and t >= after), None)


async def _pair(net: TwoPaths) -> tuple[SctpEndpoint, SctpEndpoint, int]:
    with net.b.entered():
        server = await SctpEndpoint.open(net.b_addresses(), TUNING)
    with net.a.entered():
        client = await SctpEndpoint.open(net.a_addresses(), TUNING, listen=False)
    assoc = await client.connect(net.b_addresses(server.port), timeout=20)
    client.set_primary(assoc.assoc_id, (net.path1.b_addr, server.port))
    return server, client, assoc.assoc_id


async def _failover(net: TwoPaths, fault: Callable[[], None], repair: Callable[[], None]) -> Run:
    server, client, assoc_id = await _pair(net)
    primary = (net.path1.b_addr, server.port)
    loop = asyncio.get_running_loop()
    run = Run()

    async def sink() -> None:
        while True:
            item = await server.recv()
            if isinstance(item, Message):
                run.received.append(int(item.data))
                run.arrivals.append(loop.time())

    async def watch() -> None:
        while True:
            item = await client.recv()
            if isinstance(item, PeerAddrChange) and item.address == primary:
                run.events.append((loop.time(), item.state))

    tasks = [asyncio.create_task(sink()), asyncio.create_task(watch())]
    start = loop.time()
    try:
        while loop.time() - start < 30:
            now = loop.time()
            if not run.t_fail and now - start > 1.5:
                fault()
                run.t_fail = loop.time()
            down = run.first(PeerAddrState.ADDR_UNREACHABLE, run.t_fail) if run.t_fail else None
            if down and run.primary_state_during_failure is None:
                status = client.paths(assoc_id)
                run.primary_state_during_failure = next(
                    p.state for p in status if p.address == primary
                )
            if down and not run.t_repair and now - down > 1.0:
                repair()
                run.t_repair = loop.time()
            up = run.first(PeerAddrState.ADDR_AVAILABLE, run.t_repair) if run.t_repair else None
            if up and now - up > 1.0:
                break
            await client.send(b"%d" % run.sent, assoc_id, stream=1)
            run.sent += 1
            await asyncio.sleep(0.01)
        async with asyncio.timeout(20):
            while len(run.received) < run.sent:
                await asyncio.sleep(0.05)
        primary_after = next(p for p in client.paths(assoc_id) if p.address == primary)
        assert primary_after.state == PathState.ACTIVE
        run.retransmitted = client.stats_of(assoc_id).counters["retransmitted_chunks"]
    finally:
        for task in tasks:
            task.cancel()
        server.close()
        client.close()
    return run


def _check(run: Run) -> None:
    # Zero loss, no duplicates, in order (one ordered stream).
    assert run.sent > 100
    assert run.received == list(range(run.sent))
    # The path-change events arrived, in the right order.
    pf = run.first(PeerAddrState.ADDR_POTENTIALLY_FAILED, run.t_fail)
    down = run.first(PeerAddrState.ADDR_UNREACHABLE, run.t_fail)
    up = run.first(PeerAddrState.ADDR_AVAILABLE, run.t_repair)
    assert pf is not None and down is not None and up is not None, (run.t_fail, run.events)
    assert run.t_fail < pf <= down < run.t_repair < up
    # Detection within the bound the configured timers imply.
    detection = down - run.t_fail
    assert detection <= path_failure_detection_ms(TIMERS) / 1000, detection
    # Traffic moved: no gap in arrivals longer than the switch-over bound.
    gaps = [b - a for a, b in zip(run.arrivals, run.arrivals[1:], strict=False)]
    assert max(gaps) <= path_switch_ms(TIMERS) / 1000, max(gaps)
    assert run.primary_state_during_failure == PathState.INACTIVE
    assert run.retransmitted > 0  # what was lost on the cut path went again on the other


async def test_primary_link_down_fails_over_with_zero_loss(net: TwoPaths) -> None:
    run = await _failover(
        net,
        fault=lambda: net.topo.link_down(net.path1, "a"),
        repair=lambda: net.topo.link_up(net.path1, "a"),
    )
    _check(run)


async def test_primary_total_loss_fails_over_with_zero_loss(net: TwoPaths) -> None:
    run = await _failover(
        net,
        fault=lambda: net.topo.loss(net.path1, 100, side="a"),
        repair=lambda: net.topo.clear(net.path1, side="a"),
    )
    _check(run)


async def test_ipv6_multihomed_association(net: TwoPaths) -> None:
    with net.b.entered():
        server = await SctpEndpoint.open(net.b_addresses(v6=True), TUNING)
    with net.a.entered():
        client = await SctpEndpoint.open(net.a_addresses(v6=True), TUNING, listen=False)
    assoc = await client.connect(net.b_addresses(server.port, v6=True), timeout=20)
    assert {a for a, _ in client.peer_addresses(assoc.assoc_id)} == {
        net.path1.b_addr6,
        net.path2.b_addr6,
    }
    assert {a for a, _ in client.local_addresses(assoc.assoc_id)} == {
        net.path1.a_addr6,
        net.path2.a_addr6,
    }
    server.close()
    client.close()
