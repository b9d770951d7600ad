"""`sigmw run` on a real kernel: raw PPID routing, ACL, reconnection, reload, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.constants import AssocChangeState, ErrorCause
from sigmw.sctp.notifications import ShutdownEvent

from .support import assoc_event, next_message, wait_for

pytestmark = pytest.mark.sctp
LISTEN, SERVER, CLIENT, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
LISTEN_PORT, SERVER_PORT = 39999, 38888

CONFIG = f"""\
node: {{name: relay-test}}
listen:
  - {{name: raw-in, protocol: raw, transport: sctp, addresses: [{LISTEN}], port: {LISTEN_PORT}}}
peers:
  - name: client
    protocol: raw
    transport: sctp
    role: accept
    addresses: [{CLIENT}]
    port: 1
  - name: server
    protocol: raw
    transport: sctp
    role: connect
    addresses: [{SERVER}]
    port: {SERVER_PORT}
    reconnect: {{initial: 300ms, max: 2s, jitter: 0.1}}
routes:
  ppid:
    - {{ppid: 9999, to: [server]}}
"""


class Sigmw:
    """The daemon as a child process, its JSON log lines collected as they come."""

    def __init__(self, config: Path, prefix: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "sigmw", "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        self.seen: list[dict[str, object]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"event": "raw", "text": line.rstrip()})

    async def wait_log(
        self, match: Callable[[dict[str, object]], bool], timeout: float = 30
    ) -> dict[str, object]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for entry in self.seen:
                        if match(entry):
                            self.seen.remove(entry)
                            return entry
                    try:
                        self.seen.append(self.lines.get_nowait())
                    except queue.Empty:
                        await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"not logged in {timeout}s; last lines: {self.seen[-20:]}"
            ) from None

    async def peer_up(self, peer: str, timeout: float = 90) -> None:
        # Generous: a fresh interpreter starting in the emulated VM while the host is busy
        # has been seen to need 30-40 s before its first log line.
        await self.wait_log(
            lambda e: (
                e.get("event") == "peer_state" and e.get("peer") == peer and e.get("to") == "up"
            ),
            timeout,
        )


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Sigmw, SctpEndpoint, Path]]:
    server = await SctpEndpoint.open([(SERVER, SERVER_PORT)])
    config = tmp_path / "peers.yaml"
    config.write_text(CONFIG)
    daemon = Sigmw(config)
    try:
        await daemon.peer_up("server")
        yield daemon, server, config
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.proc.wait()
        server.close()


async def _client(address: str) -> tuple[SctpEndpoint, int]:
    client = await SctpEndpoint.open([(address, 0)], listen=False)
    assoc = await client.connect([(LISTEN, LISTEN_PORT)], timeout=20)
    return client, assoc.assoc_id


async def test_raw_ppid_routing_end_to_end(relay: tuple[Sigmw, SctpEndpoint, Path]) -> None:
    daemon, server, _ = relay
    client, assoc_id = await _client(CLIENT)
    await daemon.peer_up("client")
    for i in range(200):
        await client.send(b"%d:%d" % (i % 4, i), assoc_id, stream=i % 4, ppid=9999)
        if i % 50 == 0:
            await client.send(b"nobody wants this", assoc_id, stream=0, ppid=1234)
    got: dict[int, list[int]] = {}
    for _ in range(200):
        msg = await next_message(server, timeout=60)
        assert msg.ppid == 9999
        stream, seq = (int(x) for x in msg.data.split(b":"))
        assert msg.stream == stream  # one inbound stream -> one outbound stream
        got.setdefault(stream, []).append(seq)
    assert got == {s: list(range(s, 200, 4)) for s in range(4)}  # once each, in order
    dropped = await daemon.wait_log(lambda e: e.get("event") == "dropped")
    assert (dropped["ppid"], dropped["reason"]) == (1234, "no route")
    client.close()


async def test_unlisted_address_is_refused(relay: tuple[Sigmw, SctpEndpoint, Path]) -> None:
    daemon, _, _ = relay
    stranger = await SctpEndpoint.open([(STRANGER, 0)], listen=False)
    await stranger.connect([(LISTEN, LISTEN_PORT)], timeout=20)
    lost = await assoc_event(stranger, AssocChangeState.COMM_LOST)
    assert [(c.code, c.info) for c in lost.causes] == [
        (ErrorCause.USER_INITIATED_ABORT, b"sigmw: address not configured")
    ]
    refused = await daemon.wait_log(lambda e: e.get("event") == "refused")
    advice = await daemon.wait_log(lambda e: e.get("event") == "kernel_advice")
    assert "net.sctp.sndbuf_policy=1" in str(advice["advice"])  # the VM kernel's default is 0
    assert refused["remote"] == [STRANGER]
    stranger.close()


async def test_server_loss_reconnects_with_backoff(relay: tuple[Sigmw, SctpEndpoint, Path]) -> None:
    daemon, server, _ = relay
    up = await assoc_event(server, AssocChangeState.COMM_UP)
    await server.abort(up.assoc_id, b"server restarting")
    server.close()
    first = await daemon.wait_log(lambda e: e.get("event") == "reconnect_scheduled")
    assert 270 <= int(str(first["delay_ms"])) <= 330  # 300 ms +- 10%
    second = await daemon.wait_log(lambda e: e.get("event") == "reconnect_scheduled")
    assert 540 <= int(str(second["delay_ms"])) <= 660  # doubled: nobody listens yet
    reborn = await SctpEndpoint.open([(SERVER, SERVER_PORT)])
    await daemon.peer_up("server")
    client, assoc_id = await _client(CLIENT)
    await client.send(b"after reconnect", assoc_id, stream=1, ppid=9999)
    assert (await next_message(reborn, timeout=60)).data == b"after reconnect"
    client.close()
    reborn.close()


async def test_invalid_reload_is_refused_and_sigterm_says_goodbye(
    relay: tuple[Sigmw, SctpEndpoint, Path],
) -> None:
    daemon, server, config = relay
    up = await assoc_event(server, AssocChangeState.COMM_UP)
    good = config.read_text()
    config.write_text(good.replace("port: 38888", "port: 388888"))
    daemon.proc.send_signal(signal.SIGHUP)
    refused = await daemon.wait_log(lambda e: e.get("event") == "reload_refused")
    assert "388888 is out of range" in str(refused["errors"])
    client, assoc_id = await _client(CLIENT)
    await client.send(b"still routed", assoc_id, stream=0, ppid=9999)
    assert (await next_message(server, timeout=60)).data == b"still routed"
    daemon.proc.send_signal(signal.SIGTERM)
    goodbye = await wait_for(server, ShutdownEvent, timeout=30)
    assert goodbye.assoc_id == up.assoc_id  # SCTP SHUTDOWN, not an abort
    assert await asyncio.to_thread(daemon.proc.wait, 30) == 0
    await daemon.wait_log(lambda e: e.get("event") == "stopped")
    client.close()
