"""Worker process for the peeloff test: receives one association's socket and echoes.

Run as `python -m tests.sctp.peeled_worker FD` with FD one end of a Unix socketpair.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from sigmw.io.connection import SctpConnection
from sigmw.io.fdpass import recv_socket
from sigmw.io.transport import Message


async def serve(channel_fd: int) -> None:
    channel = socket.socket(fileno=channel_fd)
    sock, tag = recv_socket(channel)
    conn = SctpConnection.adopt(sock)
    channel.sendall(b"ready:" + tag)
    try:
        while True:
            item = await conn.recv()
            if isinstance(item, Message):
                await conn.send(b"child:" + item.data, item.stream, item.ppid)
    except ConnectionError:
        pass


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
