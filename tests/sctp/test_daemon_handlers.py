"""The protocol-handler seam, over real SCTP, with a toy protocol: greeting at COMM_UP,
consumed requests answered, and a goodbye acknowledged before the SCTP SHUTDOWN."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sigmw.config.loader import load_config
from sigmw.config.model import Protocol
from sigmw.io.daemon import Daemon
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.handlers import Outgoing
from sigmw.io.transport import Message
from sigmw.sctp.notifications import ShutdownEvent

from .support import next_message, wait_for

pytestmark = pytest.mark.sctp
TOY = 7000
SERVER = ("127.0.0.2", 37777)


class Toy:
    """HELLO on up; PING -> PONG; BYE answered by BYE-ACK on the way out."""

    ppids = frozenset({TOY})

    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.down: list[str] = []

    def on_up(self, peer: str, outbound_streams: int) -> list[Outgoing]:
        return [Outgoing(b"HELLO %d" % outbound_streams, 0, TOY)]

    def on_message(self, peer: str, msg: Message) -> list[Outgoing] | None:
        if msg.data == b"PING":
            return [Outgoing(b"PONG", msg.stream, TOY)]
        if msg.data == b"BYE-ACK":
            self.acked.add(peer)
            return []
        return None

    def goodbye(self, peer: str) -> list[Outgoing]:
        return [Outgoing(b"BYE", 0, TOY)]

    def goodbye_done(self, peer: str) -> bool:
        return peer in self.acked

    def on_down(self, peer: str) -> None:
        self.down.append(peer)


async def test_handler_greets_answers_and_says_goodbye_first(tmp_path: Path) -> None:
    server = await SctpEndpoint.open([SERVER])
    config = tmp_path / "peers.yaml"
    config.write_text(f"""\
node: {{name: relay-toy}}
peers:
  - {{name: stp, protocol: m3ua, transport: sctp, role: connect, addresses: [{SERVER[0]}],
     port: {SERVER[1]}}}
""")
    toy = Toy()
    daemon = Daemon(str(config), load_config(config), {Protocol.M3UA: toy})
    running = asyncio.create_task(daemon.run(install_signals=False))
    try:
        hello = await next_message(server)
        assert (hello.data, hello.stream, hello.ppid) == (b"HELLO 16", 0, TOY)
        await server.send(b"PING", hello.assoc_id, stream=3, ppid=TOY)
        pong = await next_message(server)
        assert (pong.data, pong.stream) == (b"PONG", 3)  # consumed, answered on its stream
        daemon.stop_requested.set()
        bye = await next_message(server)
        assert bye.data == b"BYE"
        await asyncio.sleep(0.3)  # the daemon waits for the acknowledgement...
        assert not running.done()
        await server.send(b"BYE-ACK", hello.assoc_id, stream=0, ppid=TOY)
        await wait_for(server, ShutdownEvent)  # ...then the SCTP SHUTDOWN follows
        assert await asyncio.wait_for(running, 30) == 0
        assert toy.down == ["stp"]
    finally:
        running.cancel()
        server.close()
