"""sigmw run as a Diameter relay over real TCP on this host: capabilities exchange
both ways, realm routing with answers matched end to end, 3010 for unknown peers,
failover to the backup when the primary goes away, DPR on stop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from diameter.message.avp import Avp
from diameter.message.constants import AVP_CLASS

from sigmw.config.loader import load_config
from sigmw.io.daemon import Daemon
from sigmw.io.tcp import TcpEndpoint
from sigmw.obs.service import Observability
from tests.diameter_node import DiameterTestClient, DiameterTestServer, result_code

RELAY = "127.0.0.2"


def config_text(listen_port: int, server_port: int, backup_port: int) -> str:
    return f"""\
node:
  name: relay-tcp
  diameter: {{origin_host: relay.test, origin_realm: test, watchdog: 2s, request_timeout: 8s}}
listen:
  - {{name: dia, protocol: diameter, transport: tcp, addresses: [{RELAY}], port: {listen_port}}}
peers:
  - {{name: server, protocol: diameter, transport: tcp, role: connect, addresses: [127.0.0.3],
     port: {server_port}, diameter: {{host: server.test, realm: srv.test}},
     reconnect: {{initial: 200ms, max: 1s}}}}
  - {{name: backup, protocol: diameter, transport: tcp, role: connect, addresses: [127.0.0.4],
     port: {backup_port}, diameter: {{host: backup.test, realm: srv.test}},
     reconnect: {{initial: 200ms, max: 1s}}}}
  - {{name: client, protocol: diameter, transport: tcp, role: accept, addresses: [127.0.0.1],
     port: 1, diameter: {{host: client.test, realm: test}}}}
routes:
  diameter:
    - {{realm: srv.test, application: 4, peers: [server, backup]}}
metrics: {{listen: 127.0.0.1:0}}    # any free port: tests run side by side
admin: {{listen: 127.0.0.1:0}}
"""


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def relay(
    tmp_path: Path,
) -> AsyncIterator[tuple[Daemon, DiameterTestServer, DiameterTestServer, int]]:
    server = DiameterTestServer("server.test", "srv.test")
    backup = DiameterTestServer("backup.test", "srv.test")
    sport = await server.listen_tcp("127.0.0.3", 0)
    bport = await backup.listen_tcp("127.0.0.4", 0)
    lport = free_port(RELAY)
    path = tmp_path / "peers.yaml"
    path.write_text(config_text(lport, sport, bport))
    daemon = Daemon(str(path), load_config(path))
    running = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await wait_until(
            lambda: (
                daemon.diameter is not None
                and daemon.diameter.core.is_open("server")
                and daemon.diameter.core.is_open("backup")
            )
        )
        yield daemon, server, backup, lport
    finally:
        daemon.stop_requested.set()
        await asyncio.wait_for(running, 20)
        await server.close()
        await backup.close()


async def wait_until(cond: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_relay_answers_end_to_end_over_tcp(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    _, server, backup, port = relay
    assert server.peers == ["relay.test"]  # sigmw's CER reached the server
    client = DiameterTestClient("client.test", "test")
    await client.connect_tcp(RELAY, port)
    cea = await client.capabilities_exchange(timeout=5)
    assert result_code(cea) == 2001
    answers = await asyncio.gather(
        *(client.request(client.ccr("srv.test"), timeout=5) for _ in range(50))
    )
    assert all(result_code(a) == 2001 for a in answers)
    assert all(a.origin_host == b"server.test" for a in answers)  # priority 1 first
    assert len(server.requests) == 50 and not backup.requests
    # Route-Record names the client's identity on the way in.
    assert all(
        [a.value for a in r.message.find_avps((282, 0))] == [b"client.test"]
        for r in server.requests
    )
    await client.close()


async def test_unknown_client_gets_3010(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    _, _, _, port = relay
    stranger = DiameterTestClient("stranger.test", "test")
    await stranger.connect_tcp(RELAY, port)
    cea = await stranger.capabilities_exchange(timeout=5)
    assert result_code(cea) == 3010 and cea.header.is_error
    await stranger.close()


async def test_no_route_gets_3002(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    _, _, _, port = relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_tcp(RELAY, port)
    await client.capabilities_exchange(timeout=5)
    answer = await client.request(client.ccr("elsewhere.test"), timeout=5)
    assert result_code(answer) == 3002 and answer.header.is_error
    await client.close()


async def test_pending_requests_fail_over_to_backup(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    daemon, server, backup, port = relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_tcp(RELAY, port)
    await client.capabilities_exchange(timeout=5)
    server.drop = True  # requests reach the server and stay unanswered...
    pending = [
        asyncio.ensure_future(client.request(client.ccr("srv.test"), timeout=10)) for _ in range(20)
    ]
    await wait_until(lambda: len(server.requests) == 20)
    await server.close()  # ...then it dies: each goes to the backup with the T flag
    answers = await asyncio.gather(*pending)
    assert [result_code(a) for a in answers] == [2001] * 20
    assert all(a.origin_host == b"backup.test" for a in answers)
    assert all(r.message.header.is_retransmit for r in backup.requests)
    assert len(backup.requests) == 20
    stats = daemon.diameter.core.relay.stats if daemon.diameter else None
    assert stats is not None and stats["failover_resent"] == 20 and not stats["timeout_resent"]
    await client.close()


async def test_oversized_message_answered_5015_then_closed(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    """Over TCP a length beyond max_message_size cannot be skipped: answer, then close."""
    daemon, _, _, port = relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_tcp(RELAY, port)
    await client.capabilities_exchange(timeout=5)
    assert client.conn is not None
    header = bytearray(client.ccr("srv.test").as_bytes()[:20])
    header[1:4] = (200_000).to_bytes(3, "big")  # over the 65536 default
    e2e = int.from_bytes(header[16:20], "big")
    await client.conn.send(bytes(header), 0)
    answer = await client.wait_for(lambda r: r.message.header.end_to_end_identifier == e2e, 5)
    assert result_code(answer.message) == 5015  # a permanent failure: no E bit (5xxx)
    await wait_until(lambda: not (daemon.diameter and daemon.diameter.core.is_open("client")))
    await client.close()


async def test_a_server_that_stops_reading_delays_but_loses_nothing(
    relay: tuple[Daemon, DiameterTestServer, DiameterTestServer, int],
) -> None:
    """The hot path sends at once; when the server pushes back (it stops reading and the
    kernel buffers fill), the send that must wait is deferred to the endpoint's reader
    and what arrives later queues behind it. Once the server reads again every request
    is relayed in the order the client sent them, and every answer comes back.
    (The client paces itself so that the relay never has 512 requests waiting: more
    would be shed with 3004, which is the overload test's business.)"""
    daemon, server, _, port = relay
    client = DiameterTestClient("client.test", "test")
    await client.connect_tcp(RELAY, port)
    assert result_code(await client.capabilities_exchange(timeout=5)) == 2001
    # A small receive buffer (no autotuning, which may grow it to 32 MB on loopback).
    sock = server.tcp_writers[0].get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    to_server = daemon.dialers["server"]
    assert isinstance(to_server, TcpEndpoint)
    server.reading.clear()
    pad = Avp.new(AVP_CLASS, value=b"x" * 4000)
    requests, pending = [], []
    while not to_server.stats.send_waits:  # until a send to the server had to wait
        assert len(requests) < 2000, "the server never pushed back"
        for _ in range(50):
            ccr = client.ccr("srv.test")
            ccr.append_avp(pad)
            requests.append(ccr)
            pending.append(asyncio.ensure_future(client.request(ccr, timeout=30)))
        await asyncio.sleep(0.02)
    assert daemon.listeners["dia"].backlog() > 0  # later input queued behind the wait
    server.reading.set()
    answers = await asyncio.gather(*pending)
    assert [result_code(a) for a in answers] == [2001] * len(requests)
    sent = [r.header.end_to_end_identifier for r in requests]
    relayed = [r.message.header.end_to_end_identifier for r in server.requests]
    assert relayed == sent
    await client.close()


async def test_a_peer_that_connects_while_the_daemon_starts_does_not_stop_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose CER arrives between the listener opening and the peer manager
    starting (here: while the metrics server starts) is up before its START; the daemon
    must carry on and relay for it (it used to die on an unexpected START)."""
    server = DiameterTestServer("server.test", "srv.test")
    sport = await server.listen_tcp("127.0.0.3", 0)
    lport = free_port(RELAY)
    path = tmp_path / "peers.yaml"
    path.write_text(config_text(lport, sport, free_port("127.0.0.4")))
    client = DiameterTestClient("client.test", "test")
    client_in = asyncio.Event()
    starting = Observability.start

    async def start_after_the_client(self: Observability, *args: Any) -> None:
        await client.connect_tcp(RELAY, lport)
        assert result_code(await client.capabilities_exchange(timeout=5)) == 2001
        client_in.set()
        await starting(self, *args)

    monkeypatch.setattr(Observability, "start", start_after_the_client)
    daemon = Daemon(str(path), load_config(path))
    running = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await asyncio.wait_for(client_in.wait(), 10)
        await wait_until(
            lambda: (
                running.done()
                or (daemon.diameter is not None and daemon.diameter.core.is_open("server"))
            )
        )
        assert not running.done(), running.exception()
        assert daemon.manager.peers["client"].state.value == "up"
        answer = await client.request(client.ccr("srv.test"), timeout=5)
        assert result_code(answer) == 2001
    finally:
        await client.close()
        daemon.stop_requested.set()
        await asyncio.wait_for(running, 20)
        await server.close()
