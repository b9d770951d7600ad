"""The daemon on two hosts and two links: path failover with zero loss, failback after
stability, association loss when both paths fail and reconnection when one returns."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.options import tuning_for
from sigmw.sctp.timing import FAST_FAILOVER
from sigmw.testbed.netns import TwoPaths

from .support import Numbered
from .test_daemon import Sigmw

pytestmark = pytest.mark.sctp
FAST = tuning_for(FAST_FAILOVER)  # quick INIT retransmissions after the link returns
SERVER_PORT, LISTEN_PORT = 38888, 39999


def _config(net: TwoPaths) -> str:
    return f"""\
node: {{name: relay-b}}
listen:
  - {{name: raw-in, protocol: raw, transport: sctp, addresses: [127.0.0.1], port: {LISTEN_PORT}}}
peers:
  - {{name: client, protocol: raw, transport: sctp, role: accept, addresses: [127.0.0.1],
     port: 1}}
  - name: server
    protocol: raw
    transport: sctp
    role: connect
    addresses: [{net.path1.a_addr}, {net.path2.a_addr}]
    local_addresses: [{net.path1.b_addr}, {net.path2.b_addr}]
    port: {SERVER_PORT}
    sctp:
      rto: {{initial: 200ms, min: 100ms, max: 500ms}}
      heartbeat: {{interval: 200ms}}
      path_max_retrans: 2
      potentially_failed_threshold: 0
      assoc_max_retrans: 4
      peer_sack_delay: 20ms
      failback: {{after: 2s}}
    reconnect: {{initial: 300ms, max: 1s}}
routes:
  ppid:
    - {{ppid: 9999, to: [server]}}
"""


async def _start(net: TwoPaths, tmp_path: Path) -> tuple[Sigmw, SctpEndpoint, SctpEndpoint, int]:
    with net.a.entered():  # tuned as the config says (peer_sack_delay 20ms): else the
        # server's 200 ms delayed SACK outlasts RTO.min and kills paths (check-config warns)
        server = await SctpEndpoint.open(net.a_addresses(SERVER_PORT), tuning_for(FAST_FAILOVER))
    config = tmp_path / "peers.yaml"
    config.write_text(_config(net))
    daemon = Sigmw(config, prefix=tuple(net.b.command()))
    await daemon.peer_up("server")
    with net.b.entered():
        client = await SctpEndpoint.open([("127.0.0.1", 0)], listen=False)
    assoc = await client.connect([("127.0.0.1", LISTEN_PORT)], timeout=30)
    await daemon.peer_up("client")
    return daemon, server, client, assoc.assoc_id


def _log(kind: str, **want: object) -> object:
    return lambda e: e.get("event") == kind and all(e.get(k) == v for k, v in want.items())


async def test_failover_and_failback_with_zero_loss(net: TwoPaths, tmp_path: Path) -> None:
    daemon, server, client, assoc_id = await _start(net, tmp_path)
    traffic = Numbered(client, assoc_id, server, ppid=9999, gap=0.02)
    try:
        await traffic.send_for(1.0)
        net.topo.link_down(net.path1, "b")  # sigmw's side of its primary path
        sender = asyncio.create_task(traffic.send_for(3.0))
        failover = await daemon.wait_log(_log("path_failover", peer="server", to=net.path2.a_addr))
        await sender
        net.topo.link_up(net.path1, "b")
        sender = asyncio.create_task(traffic.send_for(6.0))
        available = await daemon.wait_log(
            _log("path_state", peer="server", address=net.path1.a_addr, state="ADDR_AVAILABLE")
        )
        failback = await daemon.wait_log(
            _log("path_failback", peer="server", to=net.path1.a_addr), timeout=20
        )
        await sender
        await traffic.settle()
    finally:
        traffic.close()
        daemon.proc.kill()
        client.close()
        server.close()
    assert traffic.received == list(range(traffic.sent))  # none lost, none twice, in order
    assert float(str(failover["ts"])) > 0
    stable_for = float(str(failback["ts"])) - float(str(available["ts"]))
    assert 2.0 <= stable_for < 5.0  # waited for failback.after (2 s), not longer than needed


async def test_both_paths_fail_then_one_returns(net: TwoPaths, tmp_path: Path) -> None:
    daemon, server, client, _ = await _start(net, tmp_path)
    try:
        net.topo.link_down(net.path1, "b")
        net.topo.link_down(net.path2, "b")
        await daemon.wait_log(_log("peer_state", peer="server", to="waiting"), timeout=30)
        await daemon.wait_log(_log("reconnect_scheduled", peer="server"))
        net.topo.link_up(net.path2, "b")
        await daemon.peer_up("server")  # reconnected over the one path that returned
    finally:
        daemon.proc.kill()
        client.close()
        server.close()


async def test_accepted_peer_restart_is_detected(net: TwoPaths, tmp_path: Path) -> None:
    listen = (net.path1.b_addr, LISTEN_PORT)
    config = tmp_path / "peers.yaml"
    config.write_text(f"""\
node: {{name: relay-b}}
listen:
  - {{name: in, protocol: raw, transport: sctp, addresses: [{listen[0]}], port: {listen[1]}}}
peers:
  - {{name: client, protocol: raw, transport: sctp, role: accept,
     addresses: [{net.path1.a_addr}], port: 1,
     sctp: {{heartbeat: {{interval: 10s}}}}}}
""")  # slow heartbeats: the old association outlives the crash, so the re-INIT is a RESTART
    daemon = Sigmw(config, prefix=tuple(net.b.command()))
    await daemon.wait_log(_log("started"))
    with net.a.entered():
        client = await SctpEndpoint.open([(net.path1.a_addr, 0)], FAST, listen=False)
    port = client.port
    await client.connect([listen], timeout=30)
    await daemon.peer_up("client")
    try:
        net.topo.link_down(net.path1, "a")  # the crash: the client's ABORT never arrives
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        net.topo.link_up(net.path1, "a")
        with net.a.entered():
            client = await SctpEndpoint.open([(net.path1.a_addr, port)], FAST, listen=False)
        await client.connect([listen], timeout=30)  # same address and port: a restart
        restarted = await daemon.wait_log(_log("peer_restarted", peer="client"))
        assert restarted["peer"] == "client"
        assert not [e for e in daemon.seen if e.get("event") == "refused"]
    finally:
        daemon.proc.kill()
        client.close()
