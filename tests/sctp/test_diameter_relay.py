"""sigmw as a Diameter relay over real kernel SCTP: PPID 46 on everything it sends,
CER/CEA/DWR/DPR on stream 0, each session on one stream of the association it
leaves on (below the negotiated count), answers matched end to end."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from diameter.message import Message

from sigmw.config.loader import load_config
from sigmw.io.daemon import Daemon
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.traffic import IN
from tests.diameter_node import DiameterTestClient, DiameterTestServer, avp_value, result_code

pytestmark = pytest.mark.sctp
RELAY, SERVER, CLIENT = "127.0.0.2", "127.0.0.3", "127.0.0.4"
PORT = 3868


def config(server_port: int, streams: int = 8, watchdog: str = "3s") -> str:
    return f"""\
node:
  name: relay-sctp
  diameter: {{origin_host: relay.test, origin_realm: test, watchdog: {watchdog},
              request_timeout: 20s}}
listen:
  - {{name: dia, protocol: diameter, transport: sctp, addresses: [{RELAY}], port: {PORT}}}
peers:
  - name: server
    protocol: diameter
    transport: sctp
    role: connect
    addresses: [{SERVER}]
    port: {server_port}
    diameter: {{host: server.test, realm: srv.test}}
    sctp: {{streams: {{outbound: {streams}, inbound: {streams}}}}}
  - {{name: client, protocol: diameter, transport: sctp, role: accept, addresses: [{CLIENT}],
     port: 1, diameter: {{host: client.test, realm: test}}}}
routes:
  diameter:
    - {{realm: srv.test, peers: [server]}}
"""


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Daemon, DiameterTestServer]]:
    async for started in _relay(tmp_path, "3s"):
        yield started


@pytest.fixture
async def busy_relay(tmp_path: Path) -> AsyncIterator[tuple[Daemon, DiameterTestServer]]:
    """A relay whose watchdog waits 15 s: the test's client, server and relay share one
    event loop, and in a slow VM 400 requests coded in Python there kept it busy past two
    3 s watchdog intervals, so the relay rightly failed the server over (3002)."""
    async for started in _relay(tmp_path, "15s"):
        yield started


async def _relay(tmp_path: Path, watchdog: str) -> AsyncIterator[tuple[Daemon, DiameterTestServer]]:
    server = DiameterTestServer("server.test", "srv.test")
    port = await server.listen_sctp([(SERVER, 0)])
    path = tmp_path / "peers.yaml"
    path.write_text(config(port, watchdog=watchdog))
    daemon = Daemon(str(path), load_config(path))
    running = asyncio.create_task(daemon.run(install_signals=False))
    try:
        async with asyncio.timeout(30):
            while not (daemon.diameter and daemon.diameter.core.is_open("server")):
                await asyncio.sleep(0.05)
        yield daemon, server
    finally:
        daemon.stop_requested.set()
        await asyncio.wait_for(running, 30)
        await server.close()


def session_request(client: DiameterTestClient, session: str, number: int) -> Message:
    ccr = client.ccr("srv.test")
    ccr.session_id = session
    ccr.cc_request_number = number
    return ccr


async def test_streams_and_ppid_of_relayed_traffic(
    relay: tuple[Daemon, DiameterTestServer],
) -> None:
    _, server = relay
    client = DiameterTestClient("client.test", "test")
    outbound = await client.connect_sctp([(RELAY, PORT)], [(CLIENT, 0)])
    cea = await client.capabilities_exchange()
    assert result_code(cea) == 2001
    # 12 sessions x 4 requests, the client spraying them over its streams round robin.
    sessions = [f"client.test;{i}" for i in range(12)]
    answers = await asyncio.gather(
        *(client.request(session_request(client, s, n)) for n in range(4) for s in sessions)
    )
    assert [result_code(a) for a in answers] == [2001] * 48

    # At the server: sigmw's CER on stream 0, every message PPID 46, each session on one
    # stream in 1..7 (8 negotiated), in request-number order.
    from_sigmw = server.received
    assert from_sigmw[0].code == 257 and from_sigmw[0].stream == 0
    assert {r.ppid for r in from_sigmw} == {46}
    streams: dict[object, set[int | None]] = defaultdict(set)
    order: dict[object, list[object]] = defaultdict(list)
    for r in server.requests:
        sid = avp_value(r.message, 263)
        streams[sid].add(r.stream)
        order[sid].append(avp_value(r.message, 415))
    assert all(len(s) == 1 for s in streams.values())
    used = set().union(*streams.values())
    assert used <= set(range(1, 8)) and len(used) > 1  # spread, never stream 0 or >= 8
    assert all(numbers == sorted(numbers) for numbers in order.values())

    # At the client: answers PPID 46, each session's answers on one stream below its count.
    back = [r for r in client.received if not r.is_request and r.code == 272]
    assert {r.ppid for r in back} == {46}
    by_session: dict[object, set[int | None]] = defaultdict(set)
    for r in back:
        by_session[avp_value(r.message, 263)].add(r.stream)
    assert all(len(s) == 1 for s in by_session.values())
    assert all(0 < next(iter(s)) < outbound for s in by_session.values())  # type: ignore[operator]
    dpa = await client.disconnect()
    assert result_code(dpa) == 2001
    await client.close()


async def test_watchdog_on_stream_0_and_dpr_on_stop(
    relay: tuple[Daemon, DiameterTestServer],
) -> None:
    daemon, server = relay
    async with asyncio.timeout(30):  # Tw is 3 s (+- 0.75): a DWR comes on stream 0
        while not any(r.code == 280 and r.is_request for r in server.received):
            await asyncio.sleep(0.1)
    dwr = next(r for r in server.received if r.code == 280)
    assert (dwr.stream, dwr.ppid) == (0, 46)
    daemon.stop_requested.set()
    async with asyncio.timeout(30):
        while not any(r.code == 282 and r.is_request for r in server.received):
            await asyncio.sleep(0.05)
    dpr = next(r for r in server.received if r.code == 282)
    assert (dpr.stream, dpr.ppid) == (0, 46)
    assert avp_value(dpr.message, 273) == 0  # REBOOTING: come back when we do


async def test_malformed_requests_answered_and_association_kept(
    relay: tuple[Daemon, DiameterTestServer],
) -> None:
    daemon, _ = relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_sctp([(RELAY, PORT)], [(CLIENT, 0)])
    await client.capabilities_exchange()
    assert client.conn is not None
    good = session_request(client, "client.test;bad", 0)
    raw = bytearray(good.as_bytes())
    # The first AVP (Session-Id) claims 4000 bytes: RFC 6733 7.1.5, answer 5014 + Failed-AVP.
    raw[25:28] = (4000).to_bytes(3, "big")
    e2e = good.header.end_to_end_identifier
    await client.conn.send(bytes(raw), 1)
    await client.conn.send(b"\x01\x00\x00", 1)  # not even a header: counted, dropped
    async with asyncio.timeout(30):
        while not any(r.message.header.end_to_end_identifier == e2e for r in client.received):
            await asyncio.sleep(0.05)
    answer = next(
        r.message for r in client.received if r.message.header.end_to_end_identifier == e2e
    )
    assert result_code(answer) == 5014 and avp_value(answer, 279) is not None  # Failed-AVP
    # The association and the relay go on as before.
    ok = await client.request(session_request(client, "client.test;after", 0))
    assert result_code(ok) == 2001
    stats = daemon.diameter.core.relay.stats if daemon.diameter else None
    assert stats is not None and stats["malformed_5014"] == 1 and stats["malformed_short"] == 1
    await client.close()


async def test_requests_in_flight_fail_over_with_one_answer_each(tmp_path: Path) -> None:
    """The primary dies holding 20 unanswered requests: each is re-sent to the backup with
    the T flag and the client gets exactly one answer per request."""
    primary = DiameterTestServer("server.test", "srv.test")
    backup = DiameterTestServer("backup.test", "srv.test")
    pport = await primary.listen_sctp([(SERVER, 0)])
    bport = await backup.listen_sctp([("127.0.0.5", 0)])
    path = tmp_path / "peers.yaml"
    path.write_text(
        config(pport)
        .replace(
            "routes:",
            f"""  - {{name: backup, protocol: diameter, transport: sctp, role: connect,
     addresses: [127.0.0.5], port: {bport}, diameter: {{host: backup.test, realm: srv.test}}}}
routes:""",
        )
        .replace("peers: [server]", "peers: [server, backup]")
    )
    daemon = Daemon(str(path), load_config(path))
    running = asyncio.create_task(daemon.run(install_signals=False))
    client = DiameterTestClient("client.test", "test")
    try:
        async with asyncio.timeout(30):
            while not (
                daemon.diameter
                and daemon.diameter.core.is_open("server")
                and daemon.diameter.core.is_open("backup")
            ):
                await asyncio.sleep(0.05)
        await client.connect_sctp([(RELAY, PORT)], [(CLIENT, 0)])
        await client.capabilities_exchange()
        primary.drop = True
        pending = [
            asyncio.ensure_future(client.request(session_request(client, f"s;{i}", 0)))
            for i in range(20)
        ]
        async with asyncio.timeout(30):
            while len(primary.requests) < 20:
                await asyncio.sleep(0.05)
        await primary.close()  # the association dies with the requests in flight
        answers = await asyncio.gather(*pending)
        assert [result_code(a) for a in answers] == [2001] * 20
        assert {a.origin_host for a in answers} == {b"backup.test"}
        assert len(backup.requests) == 20
        assert all(r.message.header.is_retransmit for r in backup.requests)
        await asyncio.sleep(0.5)  # nothing more may arrive: one answer per request
        answered = [r for r in client.received if r.code == 272 and not r.is_request]
        assert len(answered) == 20
    finally:
        await client.close()
        daemon.stop_requested.set()
        await asyncio.wait_for(running, 30)
        await backup.close()


@pytest.mark.parametrize("mode", ["at_read", "bulk", "one_by_one"])
async def test_overload_is_shed_with_one_answer_each_on_its_sessions_stream(
    busy_relay: tuple[Daemon, DiameterTestServer], mode: str
) -> None:
    """The relay falls behind (its reader paused while 400 requests arrive, its shed bound
    lowered to 100): the reads past the bound are answered 3004 (in C as they are read, in C
    on reads made in Python, or one by one in Python), the rest relayed; every request gets
    one answer, every session's answers share one stream, and the counts agree with what
    arrived."""
    bulk = mode != "one_by_one"
    daemon, server = busy_relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_sctp([(RELAY, PORT)], [(CLIENT, 0)])
    assert result_code(await client.capabilities_exchange()) == 2001
    ep = daemon.listeners["dia"]
    assert isinstance(ep, SctpEndpoint) and daemon.diameter is not None
    assert ep.bulk_shed is not None and ep.recv_shed is not None  # the C speedups are built
    if mode != "at_read":
        ep.recv_shed = None  # shed_sctp on the reads recv_batch made
    if not bulk:
        ep.bulk_shed = None  # the Python reference
    assert result_code(await client.request(session_request(client, "warm", 0))) == 2001
    # A low bound keeps the test's own Python (python-diameter codes every message at the
    # client and the server) small: at 1,000 requests the server's answers could take
    # longer than Tx in a slow VM, and the relay rightly answered 3002.
    ep.shed_backlog = 100
    loop = asyncio.get_running_loop()
    loop.remove_reader(ep.sock.fileno())
    sessions = [f"client.test;s{i}" for i in range(100)]
    pending = [
        asyncio.ensure_future(client.request(session_request(client, s, n)))
        for n in range(4)
        for s in sessions
    ]
    await asyncio.sleep(1.0)  # all of them wait in the relay's receive buffer
    loop.add_reader(ep.sock.fileno(), ep._on_readable)
    answers = await asyncio.gather(*pending)

    codes = Counter(result_code(a) for a in answers)
    relay_ = daemon.diameter.core.relay
    why = (codes, dict(relay_.stats), daemon.diameter.core.is_open("server"))
    assert set(codes) <= {2001, 3004} and codes[3004] >= 150 and codes[2001] >= 64, why
    assert relay_.stats["shed_3004"] == codes[3004] == relay_.answers[(272, 3004, "local")]
    assert len(server.requests) == 1 + codes[2001]
    if bulk:
        assert codes[3004] - 64 <= ep.stats.shed_in_bulk <= codes[3004]  # first of a key: Python
        # Those 3004s left from the sender thread, every one.
        assert ep.sender is not None
        assert ep.sender.counts() == (ep.stats.shed_in_bulk, 0, 0)
    else:
        assert ep.stats.shed_in_bulk == 0
    # As read: all but what came before the association was learned (the first batch's).
    if mode == "at_read":
        assert ep.stats.shed_in_bulk - 64 <= ep.stats.shed_at_read <= ep.stats.shed_in_bulk
        assert ep.stats.shed_at_read > 0
    else:
        assert ep.stats.shed_at_read == 0
    for answer in answers:
        if result_code(answer) == 3004:
            assert answer.header.is_error and answer.origin_host == b"relay.test"
    outbound = relay_.peers["client"].outbound
    streams: dict[object, set[int | None]] = defaultdict(set)
    for r in client.received:
        if r.code == 272 and not r.is_request:
            streams[avp_value(r.message, 263)].add(r.stream)
    assert len(streams) == 101 and all(len(s) == 1 for s in streams.values())
    assert all(0 < next(iter(s)) < outbound for s in streams.values())  # type: ignore[operator]
    # Every read counted once, in bulk or not: the endpoint's count and the traffic cells.
    cells = {id(c): c for k, c in ep.traffic.counts.items() if k[1] == IN}.values()
    assert sum(c[0] for c in cells) == ep.stats.messages_in >= 1 + 1 + 400
    await client.close()
