"""One-to-many (SOCK_SEQPACKET) SCTP endpoint for asyncio.

One socket serves every association: multihomed bind (bindx), listen,
multihomed connect (connectx), sends addressed by association id, SENDALL,
graceful EOF and ABORT per association, peeloff, tuning and read-outs.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass

from sigmw.core.errors import SigmwError
from sigmw.io import sockapi
from sigmw.io.traffic import OUT, Key
from sigmw.io.transport import Cmsg, SctpTransport, send_cmsgs
from sigmw.sctp import structs as s
from sigmw.sctp.addresses import Address
from sigmw.sctp.constants import AssocChangeState, SendFlag
from sigmw.sctp.notifications import AssocChange, Cause, Notification
from sigmw.sctp.options import SctpTuning


@dataclass(frozen=True, slots=True)
class Association:
    """An established association as seen at COMM_UP (or RESTART)."""

    assoc_id: int
    """Id on this socket."""
    outbound_streams: int
    """Negotiated streams we may send on: valid stream ids are 0..outbound_streams-1."""
    inbound_streams: int
    """Streams the peer may send on."""


class AssociationFailedError(SigmwError):
    """An association could not be started (CANT_STR_ASSOC) or was lost during set-up."""

    def __init__(self, remote: list[Address], note: AssocChange) -> None:
        self.note = note
        self.causes: tuple[Cause, ...] = note.causes
        if note.causes:
            why = ", ".join(_describe(c) for c in note.causes)
        elif note.error:
            why = f"cause {note.error}"
        else:
            why = "no answer from the peer (INIT or heartbeats timed out)"
        super().__init__(f"association to {remote} failed: {note.state.name}: {why}")


def _describe(cause: Cause) -> str:
    """A cause for a log line: its name, and a user-abort reason if it is text."""
    text = cause.info.decode("ascii", errors="replace")
    if text and text.isprintable():
        return f"{cause.name} {text!r}"
    return cause.name


SEND_NOWAIT_LIMIT = 1024
"""Messages send_nowait lets wait for one association (a bound on memory: past it, a
client that does not read its answers loses them)."""
MAX_CACHED_CMSGS = 4096
"""Bound on try_send's cache of ancillary data (ids come from the kernel and peers)."""


class SctpEndpoint(SctpTransport):
    """A one-to-many SCTP socket and the associations on it."""

    def __init__(self, sock: socket.socket, max_queued: int = 1024) -> None:
        super().__init__(sock, max_queued)
        self.associations: dict[int, Association] = {}
        self._connecting: dict[int, asyncio.Future[AssocChange]] = {}
        self._cmsgs: dict[tuple[int, int, int], list[Cmsg]] = {}
        """try_send's ancillary data by (association, stream, PPID): the hot path's sends."""

    @classmethod
    def open_now(
        cls,
        local: list[Address],
        tuning: SctpTuning | None = None,
        listen: bool = True,
        backlog: int = 128,
        max_queued: int = 1024,
    ) -> SctpEndpoint:
        """Bind to every local address (same port; port 0 picks one) and optionally listen.

        Synchronous (sockets are set up at once); call it from inside a running loop.
        """
        sock = sockapi.new_socket(sockapi.socket_family(local), one_to_many=True)
        try:
            sockapi.bindx(sock, local)
            sockapi.subscribe(sock)
            sockapi.apply_tuning(sock, tuning or SctpTuning())
            if listen:
                sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return cls(sock, max_queued)

    @classmethod
    async def open(
        cls,
        local: list[Address],
        tuning: SctpTuning | None = None,
        listen: bool = True,
        backlog: int = 128,
        max_queued: int = 1024,
    ) -> SctpEndpoint:
        """open_now() as a coroutine, for symmetry with connect()."""
        return cls.open_now(local, tuning, listen, backlog, max_queued)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def on_notification(self, note: Notification) -> None:
        if not isinstance(note, AssocChange):
            return
        if note.state in (AssocChangeState.COMM_UP, AssocChangeState.RESTART):
            self.associations[note.assoc_id] = Association(
                note.assoc_id, note.outbound_streams, note.inbound_streams
            )
        else:
            self.associations.pop(note.assoc_id, None)
        waiter = self._connecting.pop(note.assoc_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(note)

    def start_connect(self, remote: list[Address]) -> int:
        """Begin associating without waiting; COMM_UP or CANT_STR_ASSOC arrives via recv()."""
        return sockapi.connectx(self.sock, remote)

    def read_tuning(self, assoc_id: int) -> SctpTuning:
        return sockapi.read_tuning(self.sock, assoc_id)

    async def connect(self, remote: list[Address], timeout: float | None = None) -> Association:
        """Associate with a (multihomed) peer; returns at COMM_UP with the stream counts."""
        try:
            assoc_id = sockapi.connectx(self.sock, remote)
        except OSError as exc:
            existing = self._association_with(remote) if exc.errno == errno.EISCONN else None
            if existing is None:
                raise
            return existing  # already associated with this peer
        known = self.associations.get(assoc_id)
        if known is not None:
            return known
        waiter: asyncio.Future[AssocChange] = self._loop.create_future()
        self._connecting[assoc_id] = waiter
        try:
            note = await asyncio.wait_for(waiter, timeout)
        finally:
            self._connecting.pop(assoc_id, None)
        if note.state not in (AssocChangeState.COMM_UP, AssocChangeState.RESTART):
            raise AssociationFailedError(remote, note)
        return self.associations[assoc_id]

    def _association_with(self, remote: list[Address]) -> Association | None:
        wanted = set(remote)
        for assoc in self.associations.values():
            if wanted & set(self.peer_addresses(assoc.assoc_id)):
                return assoc
        return None

    async def send(
        self,
        data: bytes,
        assoc_id: int,
        stream: int = 0,
        ppid: int = 0,
        flags: SendFlag = SendFlag.NONE,
        ttl_ms: int | None = None,
        context: int = 0,
    ) -> None:
        """Send one message on an association; awaits buffer space, never drops."""
        known = self.associations.get(assoc_id)
        if known is not None and stream >= known.outbound_streams:
            raise ValueError(
                f"stream {stream} on association {assoc_id}: only streams "
                f"0..{known.outbound_streams - 1} were negotiated"
            )
        cmsgs = send_cmsgs(stream, ppid, int(flags), context, assoc_id, ttl_ms)
        if not flags & (SendFlag.EOF | SendFlag.ABORT):
            self.traffic.count(assoc_id, OUT, ppid, stream, len(data))
        await self._submit(assoc_id, data, cmsgs, None, assoc_id)

    def try_send(self, data: bytes, assoc_id: int, stream: int = 0, ppid: int = 0) -> bool:
        """Take the message if nothing is queued for the association: it leaves within
        this loop iteration, coalesced with the association's other messages (`_hold`).
        False means: use `send`, which queues and awaits room (order is kept)."""
        if assoc_id in self._tx:
            return False
        known = self.associations.get(assoc_id)
        if known is not None and stream >= known.outbound_streams:
            return False  # `send` raises the precise error
        self._hold(assoc_id, data, self._plain_cmsgs(assoc_id, stream, ppid))
        self.traffic.count(assoc_id, OUT, ppid, stream, len(data))
        return True

    def _plain_cmsgs(self, assoc_id: int, stream: int, ppid: int) -> list[Cmsg]:
        """The ancillary data of a plain send, built once per association, stream and PPID
        (never mutated); the bulk shedder takes only reads whose answers find it here."""
        cmsgs = self._cmsgs.get((assoc_id, stream, ppid))
        if cmsgs is None:
            if len(self._cmsgs) >= MAX_CACHED_CMSGS:
                self._cmsgs.clear()
            cmsgs = send_cmsgs(stream, ppid, 0, 0, assoc_id, None)
            self._cmsgs[(assoc_id, stream, ppid)] = cmsgs
        return cmsgs

    def send_nowait(
        self, data: bytes, assoc_id: int, stream: int, ppid: int, limit: int = SEND_NOWAIT_LIMIT
    ) -> bool:
        """try_send, or else queue the message behind the association's earlier ones
        without making anyone wait: for answers nobody awaits (a 3004 under overload),
        whose sender must go on reading. False, and nothing sent, when the association or
        the stream is not there or `limit` messages already wait for it."""
        if self.try_send(data, assoc_id, stream, ppid):
            return True
        known = self.associations.get(assoc_id)
        if known is None or stream >= known.outbound_streams:
            return False
        cmsgs = self._plain_cmsgs(assoc_id, stream, ppid)  # cached even while queued
        if not self._queue_nowait(assoc_id, data, cmsgs, limit):
            return False
        self.traffic.count(assoc_id, OUT, ppid, stream, len(data))
        return True

    def outbound_streams(self, assoc_id: int) -> int:
        """The association's outbound streams, 0 if it is not up here."""
        known = self.associations.get(assoc_id)
        return 0 if known is None else known.outbound_streams

    def bulk_state(self) -> tuple[dict[tuple[int, int, int], list[Cmsg]], dict[Key, list[int]]]:
        """What a bulk shedder reads and fills in as try_send would: the cached ancillary
        data it reuses and the traffic counts."""
        return self._cmsgs, self.traffic.counts

    async def send_to(self, data: bytes, address: Address, stream: int = 0, ppid: int = 0) -> None:
        """Send to an address: sets the association up implicitly if there is none."""
        cmsgs = send_cmsgs(stream, ppid, 0, 0, 0, None)
        await self._submit(("to", address), data, cmsgs, address, 0)

    async def send_all(self, data: bytes, stream: int = 0, ppid: int = 0) -> None:
        """One message to every association of this socket (SCTP_SENDALL)."""
        cmsgs = send_cmsgs(stream, ppid, int(SendFlag.SENDALL), 0, 0, None)
        await self._submit("all", data, cmsgs, None, 0)

    async def shutdown(self, assoc_id: int) -> None:
        """Graceful shutdown (SCTP_EOF) of one association; the others stay up."""
        await self.drain_sender_soon()  # answers shed before the EOF leave before it
        await self.send(b"", assoc_id, flags=SendFlag.EOF)

    async def abort(self, assoc_id: int, reason: bytes = b"") -> None:
        """Abort one association at once; the peer sees the reason as a user abort cause."""
        await self.send(reason, assoc_id, flags=SendFlag.ABORT)

    def peeloff(self, assoc_id: int) -> socket.socket:
        """Detach an association into its own one-to-one socket (e.g. for a worker)."""
        self.flush_held()
        self.drain_sender()
        sock = sockapi.peeloff(self.sock, assoc_id)
        self.associations.pop(assoc_id, None)
        return sock

    # --- read-outs ------------------------------------------------------------

    def status(self, assoc_id: int) -> s.Status:
        return sockapi.read_status(self.sock, assoc_id)

    def paths(self, assoc_id: int) -> list[s.PathInfo]:
        return sockapi.read_paths(self.sock, assoc_id)

    def queued(self, assoc_id: int) -> int:
        """Messages waiting for room in the kernel's send buffer."""
        return len(self._tx.get(assoc_id, ()))

    def stats_of(self, assoc_id: int) -> s.AssocStats:
        return sockapi.read_assoc_stats(self.sock, assoc_id)

    def peer_addresses(self, assoc_id: int) -> list[Address]:
        return sockapi.peer_addresses(self.sock, assoc_id)

    def local_addresses(self, assoc_id: int) -> list[Address]:
        return sockapi.local_addresses(self.sock, assoc_id)

    def set_primary(self, assoc_id: int, address: Address) -> None:
        sockapi.set_primary(self.sock, assoc_id, address)
