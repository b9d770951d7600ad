"""One-to-one sockets, and peeling an association off to a worker process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from sigmw.io.connection import SctpConnection, SctpListener
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.fdpass import send_socket
from sigmw.io.transport import Message
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange, ShutdownEvent

from .support import assoc_event, next_message, wait_for

pytestmark = pytest.mark.sctp
LO = "127.0.0.1"


async def test_one_to_one_client_and_listener(io_path: str) -> None:
    listener = SctpListener.open([(LO, 0), ("127.0.0.2", 0)])
    client_task = asyncio.create_task(
        SctpConnection.connect([(LO, listener.port), ("127.0.0.2", listener.port)], timeout=10)
    )
    server, peer = await listener.accept()
    client = await client_task
    assert peer[0] in (LO, "127.0.0.2")
    up = await wait_for(client, AssocChange)
    assert up.state is AssocChangeState.COMM_UP and up.outbound_streams >= 2
    await client.send(b"req", stream=1, ppid=46)
    msg = await next_message(server)
    assert (msg.data, msg.stream, msg.ppid) == (b"req", 1, 46)
    await server.send(b"ans", stream=1, ppid=46)
    assert (await next_message(client)).data == b"ans"
    assert {a for a, _ in client.peer_addresses()} == {LO, "127.0.0.2"}
    assert client.status().state == 4
    await client.shutdown()
    await wait_for(server, ShutdownEvent)
    with pytest.raises(ConnectionError):  # then the socket reads end-of-file: hung up
        async with asyncio.timeout(10):
            while True:
                await server.recv()
    for t in (client, server):
        t.close()
    listener.close()


async def test_peeloff_to_worker_process_while_parent_serves_others() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    clients = [await SctpEndpoint.open([(LO, 0)], listen=False) for _ in range(3)]
    assocs = [await c.connect([(LO, server.port)], timeout=10) for c in clients]
    server_ids: list[int] = []
    while len(server_ids) < 3:
        note = await assoc_event(server, AssocChangeState.COMM_UP)
        server_ids.append(note.assoc_id)
    # Which server-side id belongs to client 0: ask it to say hello first.
    await clients[0].send(b"hello", assocs[0].assoc_id)
    hello = await next_message(server)
    peeled = server.peeloff(hello.assoc_id)

    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.sctp.peeled_worker", str(child_end.fileno())],
        pass_fds=[child_end.fileno()],
        cwd=os.getcwd(),
    )
    child_end.close()
    send_socket(parent_end, peeled, tag=str(hello.assoc_id).encode())
    peeled.close()  # the worker owns it now
    loop = asyncio.get_running_loop()
    ready = await asyncio.wait_for(loop.sock_recv(parent_end, 64), 60)
    assert ready.startswith(b"ready:")

    async def parent_echo() -> None:
        while True:
            item = await server.recv()
            if isinstance(item, Message):
                await server.send(b"parent:" + item.data, item.assoc_id, item.stream)

    echo = asyncio.create_task(parent_echo())
    try:
        for round_ in range(3):
            for n, (client, assoc) in enumerate(zip(clients, assocs, strict=True)):
                await client.send(f"{n}.{round_}".encode(), assoc.assoc_id, stream=1)
            replies = [(await next_message(c, timeout=60)).data for c in clients]
            assert replies == [
                f"child:0.{round_}".encode(),
                f"parent:1.{round_}".encode(),
                f"parent:2.{round_}".encode(),
            ]
        assert hello.assoc_id not in server.associations
    finally:
        echo.cancel()
        for c in clients:
            c.close()
        worker.wait(timeout=60)
        server.close()
        parent_end.close()
    assert worker.returncode == 0
