"""SIGHUP reload while traffic flows: added, removed and retuned peers are handled,
and the untouched peer's association keeps every message."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange

from .support import Numbered, assoc_event
from .test_daemon import CLIENT, LISTEN, LISTEN_PORT, Sigmw

pytestmark = pytest.mark.sctp
KEPT, GONE, NEW = ("127.0.0.2", 38881), ("127.0.0.5", 38882), ("127.0.0.6", 38883)


def _peer(name: str, address: tuple[str, int], rto_max: str = "500ms") -> str:
    return f"""\
  - name: {name}
    protocol: raw
    transport: sctp
    role: connect
    addresses: [{address[0]}]
    port: {address[1]}
    reconnect: {{initial: 200ms, max: 1s}}
    sctp: {{rto: {{initial: 300ms, min: 240ms, max: {rto_max}}}}}
"""


def _config(peers: str, routes: str) -> str:
    return f"""\
node: {{name: relay-reload}}
listen:
  - {{name: in, protocol: raw, transport: sctp, addresses: [{LISTEN}], port: {LISTEN_PORT}}}
peers:
  - {{name: client, protocol: raw, transport: sctp, role: accept, addresses: [{CLIENT}],
     port: 1}}
{peers}routes:
  ppid:
{routes}"""


async def test_reload_touches_only_what_changed(tmp_path: Path) -> None:
    kept = await SctpEndpoint.open([KEPT])
    gone = await SctpEndpoint.open([GONE])
    new = await SctpEndpoint.open([NEW])
    config = tmp_path / "peers.yaml"
    config.write_text(
        _config(
            _peer("kept", KEPT) + _peer("gone", GONE),
            "    - {ppid: 1, to: [kept]}\n    - {ppid: 2, to: [gone]}\n",
        )
    )
    daemon = Sigmw(config)
    client = await SctpEndpoint.open([(CLIENT, 0)], listen=False)
    traffic: Numbered | None = None
    try:
        await daemon.peer_up("kept")
        await daemon.peer_up("gone")
        assoc = (await client.connect([(LISTEN, LISTEN_PORT)], timeout=30)).assoc_id
        await daemon.peer_up("client")
        traffic = Numbered(client, assoc, kept, ppid=1)
        flowing = asyncio.create_task(traffic.send_for(8.0))
        await asyncio.sleep(1.0)
        # Reload 1: remove "gone", add "new".
        config.write_text(
            _config(
                _peer("kept", KEPT) + _peer("new", NEW),
                "    - {ppid: 1, to: [kept]}\n    - {ppid: 3, to: [new]}\n",
            )
        )
        daemon.proc.send_signal(signal.SIGHUP)
        plan = await daemon.wait_log(lambda e: e.get("event") == "reload")
        assert (plan["added"], plan["removed"], plan["changed"]) == (["new"], ["gone"], [])
        # Removed: a clean goodbye at once (not when its endpoint is closed 5 s later).
        await assoc_event(gone, AssocChangeState.SHUTDOWN_COMP, timeout=2.5)
        await daemon.peer_up("new")
        # Reload 2: retune "new" only: its association is rebuilt, "kept" is not touched.
        config.write_text(
            _config(
                _peer("kept", KEPT) + _peer("new", NEW, rto_max="800ms"),
                "    - {ppid: 1, to: [kept]}\n    - {ppid: 3, to: [new]}\n",
            )
        )
        daemon.proc.send_signal(signal.SIGHUP)
        plan = await daemon.wait_log(lambda e: e.get("event") == "reload")
        assert (plan["added"], plan["removed"], plan["changed"]) == ([], [], ["new"])
        await daemon.peer_up("new")
        await flowing
        await traffic.settle()
    finally:
        if traffic is not None:
            traffic.close()
        daemon.proc.kill()
        for ep in (client, kept, gone, new):
            ep.close()
    assert traffic.received == list(range(traffic.sent))  # none lost on the untouched peer
    kept_events = [e for e in traffic.other if isinstance(e, AssocChange)]
    assert [e.state for e in kept_events] == [AssocChangeState.COMM_UP]  # never rebuilt
