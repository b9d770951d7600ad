"""The daemon with Diameter peers over real loopback TCP: a tcp listener's accept-role peer
and a tcp connect-role peer, joined by a plain PPID 46 route (no Diameter handler)."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from sigmw.config.loader import load_config
from sigmw.io.daemon import DRAIN_S, Daemon
from sigmw.io.tcp import TcpEndpoint
from sigmw.io.transport import Message
from sigmw.peers.lifecycle import State
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange

LISTEN, CLIENT, SERVER, DIALER, STRANGER = (
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.9",
)


def message(n: int, body: int = 8) -> bytes:
    head = struct.pack("!I I I I I", (1 << 24) | (20 + body), (0x80 << 24) | 316, 16777251, n, n)
    return head + bytes([n & 0xFF]) * body


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, listen_port: int, server_port: int, route_to: str) -> None:
    path.write_text(f"""\
node: {{name: relay-tcp, diameter: {{origin_host: relay.example, origin_realm: example}}}}
listen:
  - {{name: dia-in, protocol: diameter, transport: tcp, addresses: [{LISTEN}], port: {listen_port}}}
peers:
  - name: client
    protocol: diameter
    transport: tcp
    role: accept
    addresses: [{CLIENT}]
    port: 3868
    diameter: {{host: client.example, realm: example}}
  - name: server
    protocol: diameter
    transport: tcp
    role: connect
    addresses: [{SERVER}]
    local_addresses: [{DIALER}]
    port: {server_port}
    diameter: {{host: server.example, realm: example}}
routes:
  ppid:
    - {{ppid: 46, to: [{route_to}]}}
""")


async def state(ep: TcpEndpoint, wanted: AssocChangeState) -> AssocChange:
    async with asyncio.timeout(10):
        while True:
            item = await ep.recv()
            if isinstance(item, AssocChange) and item.state is wanted:
                return item


async def received(ep: TcpEndpoint, count: int) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(10):
        while len(out) < count:
            item = await ep.recv()
            if isinstance(item, Message):
                out.append(item)
    return out


async def peers_up(daemon: Daemon, *names: str) -> None:
    async with asyncio.timeout(10):
        while any(daemon.manager.peers[n].state is not State.UP for n in names):
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("route_to", ["server", "client"])
async def test_bytes_are_relayed_over_tcp(tmp_path: Path, route_to: str) -> None:
    server = await TcpEndpoint.open([(SERVER, 0)])
    client = TcpEndpoint.open_now([(CLIENT, 0)], listen=False)
    config = tmp_path / "peers.yaml"
    listen_port = free_port(LISTEN)
    write_config(config, listen_port, server.port, route_to)
    daemon = Daemon(str(config), load_config(config))
    running = asyncio.create_task(daemon.run(install_signals=False))
    try:
        sid = (await state(server, AssocChangeState.COMM_UP)).assoc_id
        assert server.peer_addresses(sid)[0][0] == DIALER  # the configured source address
        cid = client.start_connect([(LISTEN, listen_port)])
        await state(client, AssocChangeState.COMM_UP)
        await peers_up(daemon, "client", "server")
        sender, sender_id, target = (
            (client, cid, server) if route_to == "server" else (server, sid, client)
        )
        sent = [message(i, body=4 * (i % 40)) for i in range(500)]
        sent.append(message(500, body=60_000))  # spans many TCP segments both hops
        for m in sent:
            await sender.send(m, sender_id)
        got = await received(target, len(sent))
        assert [m.data for m in got] == sent
        assert {(m.stream, m.ppid) for m in got} == {(0, 46)}
        await _stranger_is_refused(listen_port)
        started = asyncio.get_running_loop().time()
        daemon.stop_requested.set()
        await state(server, AssocChangeState.COMM_LOST)  # our FIN reached them
        assert await asyncio.wait_for(running, 3 * DRAIN_S) == 0
        # SHUTDOWN_COMP ended the drain, not its time limit.
        assert asyncio.get_running_loop().time() - started < DRAIN_S
    finally:
        running.cancel()
        server.close()
        client.close()


async def _stranger_is_refused(listen_port: int) -> None:
    stranger = TcpEndpoint.open_now([(STRANGER, 0)], listen=False)
    try:
        stranger.start_connect([(LISTEN, listen_port)])
        await state(stranger, AssocChangeState.COMM_UP)
        await state(stranger, AssocChangeState.COMM_LOST)  # reset: not a configured peer
    finally:
        stranger.close()
