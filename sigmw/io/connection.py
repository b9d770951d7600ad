"""One-to-one (SOCK_STREAM) SCTP sockets for asyncio: client, listener, peeled-off.

Same message semantics as the one-to-many endpoint (streams, PPID, flags,
notifications), one association per socket, for peers that expect TCP-style
sockets and for associations peeled off to a worker.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from sigmw.io import sockapi
from sigmw.io.transport import ENDED, SctpTransport, send_cmsgs
from sigmw.sctp import structs as s
from sigmw.sctp.addresses import Address
from sigmw.sctp.constants import SendFlag
from sigmw.sctp.notifications import AssocChange, Notification
from sigmw.sctp.options import SctpTuning


class SctpConnection(SctpTransport):
    """One association on its own socket."""

    def on_notification(self, note: Notification) -> None:
        # A peeled-off socket never reads EOF once its association ends (recvmsg just
        # says EAGAIN), so the end notification is the hang-up; queued items still drain.
        if isinstance(note, AssocChange) and note.state in ENDED:
            self._hang_up()

    @classmethod
    async def connect(
        cls,
        remote: list[Address],
        local: list[Address] | None = None,
        tuning: SctpTuning | None = None,
        timeout: float | None = None,
    ) -> SctpConnection:
        """Associate with a (multihomed) peer from optional (multihomed) local addresses."""
        sock = sockapi.new_socket(sockapi.socket_family(remote + (local or [])), False)
        try:
            if local:
                sockapi.bindx(sock, local)
            sockapi.subscribe(sock)
            sockapi.apply_tuning(sock, tuning or SctpTuning())
            sockapi.connectx(sock, remote)
            await asyncio.wait_for(_writable(sock), timeout)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"SCTP connect to {remote}: {os.strerror(err)}")
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @classmethod
    def adopt(cls, sock: socket.socket) -> SctpConnection:
        """Wrap an existing one-to-one SCTP socket (accepted, peeled off, or passed in)."""
        sock.setblocking(False)
        sockapi.subscribe(sock)
        return cls(sock)

    async def send(
        self,
        data: bytes,
        stream: int = 0,
        ppid: int = 0,
        flags: SendFlag = SendFlag.NONE,
        ttl_ms: int | None = None,
        context: int = 0,
    ) -> None:
        cmsgs = send_cmsgs(stream, ppid, int(flags), context, 0, ttl_ms)
        await self._submit(0, data, cmsgs, None, 0)

    async def shutdown(self) -> None:
        """Graceful SCTP shutdown: queued data is delivered first."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise

    def status(self) -> s.Status:
        return sockapi.read_status(self.sock, 0)

    def paths(self) -> list[s.PathInfo]:
        return sockapi.read_paths(self.sock, 0)

    def peer_addresses(self) -> list[Address]:
        return sockapi.peer_addresses(self.sock, 0)

    def local_addresses(self) -> list[Address]:
        return sockapi.local_addresses(self.sock, 0)


class SctpListener:
    """A listening one-to-one SCTP socket; accept() yields SctpConnection objects."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(
        cls, local: list[Address], tuning: SctpTuning | None = None, backlog: int = 128
    ) -> SctpListener:
        sock = sockapi.new_socket(sockapi.socket_family(local), one_to_many=False)
        try:
            sockapi.bindx(sock, local)
            sockapi.apply_tuning(sock, tuning or SctpTuning())
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def accept(self) -> tuple[SctpConnection, Address]:
        conn, peer = await asyncio.get_running_loop().sock_accept(self.sock)
        return SctpConnection.adopt(conn), (str(peer[0]), int(peer[1]))

    def close(self) -> None:
        self.sock.close()


async def _writable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock.fileno(), on_writable)
    try:
        await ready
    finally:
        loop.remove_writer(sock.fileno())
