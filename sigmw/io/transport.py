"""Asyncio send/receive machinery shared by one-to-many and one-to-one SCTP sockets.

Receive: up to READS_PER_WAKEUP reads a wake-up (one recvmmsg when sigmw.io._mmsg is
built, else a recvmsg each), reassemble each message to MSG_EOR, decode
notifications, hand whole messages to the `direct` hook or queue them; stop reading
while the queue is full so the kernel's receive window pushes back on the peer
(nothing is dropped). Overload: when a full read finds more waiting than the shed
bound, the reads past it go to the `overloaded` hook instead (the relay answers 3004).
Send: try sendmsg at once; on EAGAIN queue the message behind its association's
earlier ones and let the caller await the socket becoming writable. The hot path's
sends (`_hold`) are gathered per association for the loop iteration and sent at its
end: all but each association's last with MSG_MORE, so the kernel bundles them into
few packets despite SCTP_NODELAY (two sendmmsg calls an association when
sigmw.io._mmsg is built, else a sendmsg each; never more than MAX_CORKED with MSG_MORE
in a row). A bulk shedder's answers may leave from a `sender` thread of their own instead.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sigmw.core.errors import AssociationGoneError
from sigmw.io import sockapi
from sigmw.io.traffic import IN, Key, Traffic
from sigmw.sctp import constants as c
from sigmw.sctp import structs as s
from sigmw.sctp.addresses import Address, AddressError, unpack_sockaddr
from sigmw.sctp.constants import AssocChangeState, SendFlag
from sigmw.sctp.notifications import (
    AssocChange,
    Notification,
    NotificationError,
    PartialDeliveryEvent,
    parse_notification,
)
from sigmw.sctp.options import SctpTuning

RECV_CHUNK = 65536
RECV_SLOT = 16384
"""Bytes a batched read takes of one message; a longer one arrives in pieces."""
ANC_SIZE = socket.CMSG_SPACE(s.RCVINFO.size) + socket.CMSG_SPACE(64)
MAX_MESSAGE = 4 * 1024 * 1024
READS_PER_WAKEUP = 64
ENDED = (
    AssocChangeState.COMM_LOST,
    AssocChangeState.SHUTDOWN_COMP,
    AssocChangeState.CANT_STR_ASSOC,
)
_EOR_OR_NOTE = c.MSG_EOR | c.MSG_NOTIFICATION
_RCV_FIELDS = struct.Struct("@H6xI12xi")
"""Of struct sctp_rcvinfo, what the hot path needs: stream, PPID (network order), assoc id."""
_ntohl = socket.ntohl

SKB_OVERHEAD = 232
"""What the kernel charges a received SCTP message beyond its bytes (sizeof(struct
sk_buff) on x86_64 Linux 6.x; measured in the bench VM)."""
SHED_BUFFER_SHARE = 0.5
"""Of the receive buffer: shed before it fills. Once what waits unread and what arrives
while sigmw holds the socket pass the buffer, the kernel drops packets and the peers'
retransmission timers (1 s and more) take over: measured in the bench VM."""
SO_MEMINFO = 55  # Linux: u32 [rmem_alloc, rcvbuf, ...]; not exported by Python's socket module
_MEMINFO = struct.Struct("=II")

Read = tuple[bytes, int, bytes | None, object]
"""One read: data, msg_flags, raw SCTP_RCVINFO or None, source (raw sockaddr or tuple)."""
RecvBatch = Callable[[int, int, int], list[tuple[bytes, int, bytes | None, bytes]]]
TakeBatch = Callable[
    [Sequence[Read], int, Callable[[int, int, bytes, float], bool], deque[Any],
     dict[Key, list[int]], Callable[[Key], list[int]], float],
    tuple[int, int, bool],
]  # fmt: skip
SendBursts = Callable[[int, list[list["Held"]], int], tuple[int, list[tuple[int, int, int]] | None]]
_recv_batch: RecvBatch | None
_send_bursts: SendBursts | None
_take_batch: TakeBatch | None
try:  # optional: batched reads and sends (setup.py builds it if it can)
    from sigmw.io._mmsg import recv_batch as _recv_batch
    from sigmw.io._mmsg import send_bursts as _send_bursts
    from sigmw.io._mmsg import take_batch as _take_batch
except ImportError:
    _recv_batch = _send_bursts = _take_batch = None
if os.environ.get("SIGMW_NO_SPEEDUPS"):  # as for the Diameter speedups: the reference code
    _recv_batch = _send_bursts = _take_batch = None


def batched_io() -> bool:
    """Whether SCTP reads and the hot path's sends use the C module (sigmw.io._mmsg)."""
    return _recv_batch is not None and _send_bursts is not None


MSG_MORE = socket.MSG_MORE  # Linux SCTP holds such a chunk for bundling, even under NODELAY
MAX_CORKED = 32
"""Messages of an association sent with MSG_MORE in a row (as in _mmsg.c). The kernel
holds them until a send without it or until they fill a packet; on loopback (64 KiB
MTU) small messages fill the send buffer first, and a burst stopped there by EAGAIN
would wait for room that only such a send makes."""
RETRY_DELAY = 0.005  # writable but still EAGAIN (per-association buffers): back off briefly
# Errors meaning "this association no longer exists" (EINVAL is not one: it is a bad argument).
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_GONE = (errno.EPIPE, errno.ENOENT, errno.ECONNRESET, errno.ESHUTDOWN)


@dataclass(slots=True)  # not frozen: one per received message, and frozen __init__ costs 5x
class Message:
    """One complete user message received on an association."""

    data: bytes
    """The payload, reassembled to the end of record."""
    assoc_id: int
    """Association it arrived on (0 on a one-to-one socket before COMM_UP)."""
    stream: int
    """Inbound stream number."""
    ppid: int
    """Payload protocol id, host byte order."""
    unordered: bool
    """Sent with the U bit (not ordered within its stream)."""
    ssn: int
    """Stream sequence number."""
    context: int
    """rcv_context (the association's default context)."""
    source: Address | None
    """Peer address the last fragment came from."""


@dataclass(slots=True)
class Deferred:
    """Work an endpoint's direct handler could not finish at once (a send the peer pushes
    back on), queued so that the reader does it in order: before anything after it."""

    work: Callable[[], Awaitable[None]]


Received = Message | Notification | Deferred


@dataclass(slots=True)
class _Pending:
    data: bytes
    cmsgs: list[tuple[int, int, bytes]]
    address: Address | None
    future: asyncio.Future[None] | None
    """None: nobody waits (a held message that met a full buffer, a queued 3004)."""


Cmsg = tuple[int, int, bytes]
"""Ancillary data as sendmsg takes it: (level, type, data)."""
Held = tuple[bytes, list[Cmsg]]
"""A message held for the end of the loop iteration, with its ancillary data."""
BulkShed = Callable[[list[Read], int, float], tuple[int, int]]
"""SctpTransport.bulk_shed: (reads, start, now) -> (first read not taken, how many taken)."""
Room = tuple[int, int, float, int]
"""What the shed bound of a full batch is worked out from (SctpTransport._room): messages
queued here, the bound in messages, SHED_BUFFER_SHARE and SKB_OVERHEAD."""
RecvShed = Callable[[int, int, int, Room, bool, float], tuple[list[Read], int, int]]
"""SctpTransport.recv_shed: (fd, reads wanted, slot bytes, room, may shed, now) ->
(reads, keep, how many it shed). It reads a batch, keeps what `_room` would of a full one
and sheds the rest as `bulk_shed` would (if it may), straight from its buffers; `reads`
are those kept, then those from the first past `keep` it did not shed on."""


class BackgroundSender(Protocol):
    """Sends on this socket from a thread of its own (the C ShedSender of the bulk
    shedder's 3004s); the transport drains and stops it before the socket goes."""

    def counts(self) -> tuple[int, int, int]:
        """(sent, failed, waiting) since it was made."""
        ...

    def drain(self, timeout: float, /) -> bool:
        """Wait until nothing waits (True), at most `timeout` seconds."""
        ...

    def stop(self) -> None:
        """End the thread; what still waits is dropped, counted as failed."""
        ...


SENDER_DRAIN_S = 0.2
"""How long closing, shutting down or peeling off an association waits for the sender
thread's queue (the queue is bounded). Closing and peeling off block the event loop
meanwhile; a graceful shutdown waits without blocking it (drain_sender_soon)."""


def read_assoc(read: Read) -> int | None:
    """The association a read came on (None without SCTP_RCVINFO)."""
    rcvinfo = read[2]
    return None if rcvinfo is None else int(_RCV_FIELDS.unpack_from(rcvinfo)[2])


@dataclass(slots=True)
class TransportStats:
    """Counters an operator cares about; exported by later layers."""

    messages_in: int = 0
    notifications_in: int = 0
    messages_out: int = 0
    oversize_dropped: int = 0
    bad_notifications: int = 0
    send_would_block: int = 0
    send_failed: int = 0
    """Held (coalesced) messages, or the sender thread's, whose association was gone by
    the time they left."""
    partial_reads: int = 0
    """Pieces of messages handed up before their end (partial delivery)."""
    shed_in_bulk: int = 0
    """Reads past the shed bound taken by `bulk_shed` or `recv_shed` (the rest went to
    `overloaded`)."""
    shed_at_read: int = 0
    """Of shed_in_bulk, those `recv_shed` took straight from its receive buffers."""


class SctpTransport:
    """Owns a non-blocking SCTP socket registered with the event loop."""

    def __init__(self, sock: socket.socket, max_queued: int = 1024) -> None:
        self.sock = sock
        self.stats = TransportStats()
        self.traffic = Traffic()
        self._loop = asyncio.get_running_loop()
        self._rx: deque[Received] = deque()
        self._rx_waiter: asyncio.Future[None] | None = None
        self._max_queued = max_queued
        self._partial: dict[tuple[bool, int], list[bytes]] = {}
        self._oversize: set[tuple[bool, int]] = set()
        self._reading = False
        self._closed = False
        self._tx: dict[Hashable, deque[_Pending]] = {}
        self._held: dict[int, list[Held]] = {}
        self._held_armed = False
        self._writer_armed = False
        self._retry: asyncio.TimerHandle | None = None
        self.direct: Callable[[int, int, bytes, float], bool] | None = None
        """The hot path: given (assoc_id, ppid, data, now) of each whole message as it is
        read, while nothing is queued; True if it handled it, else the message is queued
        for recv(). `now` is the loop's time, read once a wake-up (a clock read is a
        system call where the clock source has no vDSO, as in the test VM). It may
        `defer` work that must wait; what follows it then queues behind."""
        self.overloaded: Callable[[int, int, bytes, float], bool] | None = None
        """`direct` under overload, for reads past the shed bound (`_room`): it answers
        requests at once (3004) and handles everything else as `direct` does."""
        self.bulk_shed: BulkShed | None = None
        """Optional, with `overloaded`: takes reads past the shed bound in bulk (C, no
        Python per message) from an index on; returns the index of the first read it did
        not take and how many it took. Those it leaves go to `overloaded` one by one."""
        self.recv_shed: RecvShed | None = None
        """Optional, with `overloaded`: reads in place of `_read_batch` and sheds what is
        past the bound of a full batch itself (C, the reads it sheds never become Python
        objects); what it hands back goes on as a batch read otherwise would."""
        self.shed_backlog = max_queued // 2
        self.sender: BackgroundSender | None = None
        """A bulk shedder's sender thread (attach_sender), if any."""
        self._sender_seen = (0, 0)
        self._shedding = False
        self._read_at = 0.0
        self._resume_reading()

    # --- receive --------------------------------------------------------------

    def backlog(self) -> int:
        """Items received and not yet read here. (What waits in the kernel is counted
        only after a full read, to shed by: `_room`.)"""
        return len(self._rx)

    def recv_nowait(self) -> Received | None:
        """The next queued item, or None: lets a reader drain the queue without an await
        per message (the relay's hot path)."""
        if not self._rx:
            return None
        item = self._rx.popleft()
        if not self._reading and len(self._rx) <= self._max_queued // 2:
            self._resume_reading()
        return item

    async def recv(self) -> Received:
        """Next message or notification, in arrival order."""
        while not self._rx:
            if self._closed:
                raise ConnectionError("SCTP socket closed")
            self._rx_waiter = self._loop.create_future()
            try:
                await self._rx_waiter
            finally:
                self._rx_waiter = None
        item = self._rx.popleft()
        if not self._reading and len(self._rx) <= self._max_queued // 2:
            self._resume_reading()
        return item

    def _resume_reading(self) -> None:
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def _on_readable(self) -> None:
        self._read_at = self._loop.time()
        try:
            if self.recv_shed is not None and self.overloaded is not None:
                batch, keep = self._read_shedding(self.recv_shed)
            else:
                batch = self._read_batch() if _recv_batch is not None else self._read_each()
                keep = len(batch)
                if keep == READS_PER_WAKEUP and self.overloaded is not None:
                    keep = self._room(batch)  # a full read: more may wait; over the bound, shed
        except OSError as exc:
            self._read_failed(exc)
            return
        if not self._take_all(batch if keep == len(batch) else batch[:keep]):
            return  # hung up
        if keep < len(batch) and not self._shed_all(list(batch[keep:])):
            return  # hung up
        if len(self._rx) >= self._max_queued:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False
        self._wake_reader()

    def _read_batch(self) -> Sequence[Read]:
        """Up to READS_PER_WAKEUP reads with one system call (sigmw.io._mmsg)."""
        assert _recv_batch is not None
        return _recv_batch(self.sock.fileno(), READS_PER_WAKEUP, RECV_SLOT)

    def _read_shedding(self, recv_shed: RecvShed) -> tuple[Sequence[Read], int]:
        """A batch read by `recv_shed`, and how many of what it hands back are under the
        bound. It sheds what is past the bound, up to the first read it cannot take, before
        the reads under the bound are handled: their 3004s may leave first, which no peer
        can tell from a relayed answer that took longer. It may shed only when nothing is
        queued or being reassembled here (as `_shed_all` with `bulk_shed`)."""
        room = (len(self._rx), self.shed_backlog, SHED_BUFFER_SHARE, SKB_OVERHEAD)
        may_shed = not (self._rx or self._partial or self._oversize)
        fd = self.sock.fileno()
        reads, keep, shed = recv_shed(
            fd, READS_PER_WAKEUP, RECV_SLOT, room, may_shed, self._read_at
        )
        if shed:
            self.stats.messages_in += shed
            self.stats.shed_in_bulk += shed
            self.stats.shed_at_read += shed
        return reads, keep

    def _read_each(self) -> Sequence[Read]:
        """The reference (and the fallback without the C module): a recvmsg a read."""
        batch: list[Read] = []
        for _ in range(READS_PER_WAKEUP):
            try:
                data, anc, flags, source = self.sock.recvmsg(RECV_CHUNK, ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if batch:
                    break  # what was read first is handled; the next read fails again
                raise
            batch.append((data, flags, _rcvinfo(anc), source))
        return batch

    def _take_all(self, batch: Sequence[Read]) -> bool:
        """Hand on a batch of reads; False once the socket hung up. Whole messages go to
        `direct` in C (`_take_fast`) while nothing waits here; the rest, and all of them
        without the C module, one by one through `_take` (the reference)."""
        i, n = 0, len(batch)
        while i < n:
            if not self._rx and self._may_take_fast():
                i = self._take_fast(batch, i)
                if i >= n:
                    break
            data, flags, rcvinfo, source = batch[i]
            if not data and not flags and rcvinfo is None:
                self._hang_up()  # one-to-one peer closed
                return False
            self._take(data, rcvinfo, flags, source)
            i += 1
        return True

    def _may_take_fast(self) -> bool:
        """`_take_fast` may run: the C module is there, `direct` is set, this is not
        shedding (`overloaded` takes those reads) and nothing is being reassembled."""
        return (
            _take_batch is not None
            and self.direct is not None
            and not (self._shedding or self._partial or self._oversize)
        )

    def _take_fast(self, batch: Sequence[Read], start: int) -> int:
        """What `_take` does, in C, for the reads from `start` on that are whole messages
        with their SCTP_RCVINFO, until one is not or `direct` leaves something queued;
        the index of the first read it left. One `direct` declined was counted: it is
        queued here, as `_take_message` would."""
        assert _take_batch is not None and self.direct is not None
        traffic = self.traffic
        stop, taken, refused = _take_batch(
            batch, start, self.direct, self._rx, traffic.counts, traffic.cell, self._read_at
        )
        self.stats.messages_in += taken
        if refused:
            data, _, rcvinfo, source = batch[stop]
            assert rcvinfo is not None
            self.stats.messages_in += 1
            self._rx.append(_message(data, s.unpack_rcvinfo(rcvinfo), source))
            stop += 1
        return stop

    def _room(self, batch: Sequence[Read]) -> int:
        """How many reads of a full batch to handle as usual before shedding the rest:
        what still fits under the bound once the messages that wait (queued here and,
        estimated from the batch's mean size, unread in the kernel) are counted.

        The bound is `shed_backlog` messages, or fewer when that many would not fit in
        SHED_BUFFER_SHARE of the socket's receive buffer (see there: past it the kernel
        drops, and the peers' retransmission timers decide the latency)."""
        try:
            meminfo = self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
            unread, rcvbuf = cast(tuple[int, int], _MEMINFO.unpack(meminfo))
        except OSError:
            return len(batch)  # no read-out, no shedding
        truesize = sum(len(read[0]) for read in batch) + len(batch) * SKB_OVERHEAD
        waiting = len(self._rx) + unread * len(batch) // truesize
        bound = min(self.shed_backlog, int(rcvbuf * SHED_BUFFER_SHARE) * len(batch) // truesize)
        return max(min(bound - waiting, len(batch)), 0)

    def _shed_all(self, reads: list[Read]) -> bool:
        """The reads past the bound, in order: in bulk where `bulk_shed` can take them
        (nothing queued or being reassembled here), else one by one through `overloaded`.
        False once the socket hung up."""
        bulk, i, n = self.bulk_shed, 0, len(reads)
        self._shedding = True
        try:
            while i < n:
                if bulk is not None and not (self._rx or self._partial or self._oversize):
                    i, taken = bulk(reads, i, self._read_at)
                    if taken:
                        self.stats.messages_in += taken
                        self.stats.shed_in_bulk += taken
                    if i >= n:
                        break
                if not self._take_all(reads[i : i + 1]):
                    return False
                i += 1
        finally:
            self._shedding = False
        return True

    def _read_failed(self, exc: OSError) -> None:
        if exc.errno in _GONE or exc.errno == errno.ENOTCONN:  # one-to-one: association died
            self._hang_up()
            return
        raise exc

    def _take(self, data: bytes, raw: bytes | None, flags: int, source: object) -> None:
        """One read: `raw` is its SCTP_RCVINFO, `source` the sender as recvmsg gives it
        (a tuple) or as a raw sockaddr (a batched read)."""
        if (
            raw is not None
            and flags & _EOR_OR_NOTE == c.MSG_EOR
            and not (self._partial or self._oversize)
        ):
            self._take_message(data, raw, source)  # the usual: nothing being reassembled
            return
        is_note = bool(flags & c.MSG_NOTIFICATION)
        key = (is_note, _RCV_FIELDS.unpack_from(raw)[2] if raw is not None else 0)
        if key in self._oversize:
            if flags & c.MSG_EOR:
                self._oversize.discard(key)
            return
        pieces = self._partial.setdefault(key, [])
        pieces.append(data)
        if not flags & c.MSG_EOR:
            self.stats.partial_reads += 1
            if sum(map(len, pieces)) > MAX_MESSAGE:
                del self._partial[key]
                self._oversize.add(key)
                self.stats.oversize_dropped += 1
            return
        del self._partial[key]
        whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if is_note:
            self._take_notification(whole)
        elif raw is not None:
            self._take_message(whole, raw, source)
        else:  # no SCTP_RCVINFO (should not happen once subscribed)
            self.stats.messages_in += 1
            self._rx.append(Message(whole, 0, 0, 0, False, 0, 0, _address(source)))

    def _take_message(self, whole: bytes, rcvinfo: bytes, source: object) -> None:
        """A whole message; `rcvinfo` is its raw SCTP_RCVINFO (decoded in full only when
        the message is queued: the direct path needs three fields)."""
        stream, ppid, assoc_id = _RCV_FIELDS.unpack_from(rcvinfo)
        ppid = _ntohl(ppid)
        self.stats.messages_in += 1
        self.traffic.count(assoc_id, IN, ppid, stream, len(whole))
        direct = self.overloaded if self._shedding else self.direct
        if direct is not None and not self._rx and direct(assoc_id, ppid, whole, self._read_at):
            return
        self._rx.append(_message(whole, s.unpack_rcvinfo(rcvinfo), source))

    def _take_notification(self, raw: bytes) -> None:
        try:
            note = parse_notification(raw)
        except NotificationError:
            self.stats.bad_notifications += 1
            return
        self.stats.notifications_in += 1
        if isinstance(note, PartialDeliveryEvent) or (
            isinstance(note, AssocChange) and note.state in ENDED
        ):
            self._partial.pop((False, note.assoc_id), None)  # the rest will never come
        self.on_notification(note)
        self._rx.append(note)

    def on_notification(self, note: Notification) -> None:
        """Hook for subclasses: bookkeeping before the item is queued for the user."""

    def defer(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """For the direct handler: queue work that must wait (a send pushed back on); what
        arrives after it is queued behind it, so the reader keeps the order."""
        self._rx.append(Deferred(work))
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._rx and self._rx_waiter is not None and not self._rx_waiter.done():
            self._rx_waiter.set_result(None)

    def _hang_up(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False
        self._closed = True
        if self._rx_waiter is not None and not self._rx_waiter.done():
            self._rx_waiter.set_result(None)

    # --- send -----------------------------------------------------------------

    async def _submit(
        self,
        key: Hashable,
        data: bytes,
        cmsgs: list[tuple[int, int, bytes]],
        address: Address | None,
        assoc_id: int,
    ) -> None:
        """Send now, or queue behind this key's earlier messages and await room."""
        if self._held:
            self.flush_held()  # held messages were accepted first: they leave first
        queue = self._tx.get(key)
        if not queue:
            try:
                if self._sendmsg(data, cmsgs, address):
                    return
            except OSError as exc:
                raise _send_error(exc, assoc_id) from None
            self.stats.send_would_block += 1
            queue = self._tx.setdefault(key, deque())
        future = self._loop.create_future()
        queue.append(_Pending(data, cmsgs, address, future))
        self._arm_writer()
        try:
            await future
        except OSError as exc:
            raise _send_error(exc, assoc_id) from None

    def _hold(self, assoc_id: int, data: bytes, cmsgs: list[tuple[int, int, bytes]]) -> None:
        """Coalesce: keep this message with the association's others taken in this loop
        iteration; at its end `flush_held` sends them all."""
        burst = self._held.get(assoc_id)
        if burst is not None:
            burst.append((data, cmsgs))
            return
        self._held[assoc_id] = [(data, cmsgs)]
        self._arm_held()

    def _arm_held(self) -> None:
        """Have `flush_held` run at the end of this loop iteration (once)."""
        if not self._held_armed:
            self._held_armed = True
            self._loop.call_soon(self.flush_held)

    def flush_held(self) -> None:
        """Send every held message: all but each association's last with MSG_MORE (the
        kernel holds them to bundle; at most MAX_CORKED in a row), then the lasts
        without, which sends the bundles.
        A burst the kernel pushes back on is queued from there (nobody awaits it); one
        whose association is gone is counted (the notification that follows reports it)."""
        self._held_armed = False
        if not self._held:
            return
        held, self._held = self._held, {}
        bursts = list(held.values())
        if _send_bursts is not None:
            sent, stopped = _send_bursts(self.sock.fileno(), bursts, MSG_MORE)
        else:
            sent, stopped = _send_each(self.sock, bursts, MSG_MORE)
        self.stats.messages_out += sent
        if stopped is None:
            return
        assoc_ids = list(held)
        for index, done, error in stopped:
            rest = bursts[index][done:]
            if error in _WOULD_BLOCK:
                self.stats.send_would_block += 1
                queue = self._tx.setdefault(assoc_ids[index], deque())
                queue.extend(_Pending(data, cmsgs, None, None) for data, cmsgs in rest)
                self._arm_writer()
            else:
                self.stats.send_failed += len(rest)

    def _queue_nowait(self, key: Hashable, data: bytes, cmsgs: list[Cmsg], limit: int) -> bool:
        """Queue a message nobody awaits behind `key`'s earlier ones (sent when the socket
        has room); False, and nothing queued, once `limit` messages wait there."""
        queue = self._tx.setdefault(key, deque())
        if len(queue) >= limit:
            return False
        queue.append(_Pending(data, cmsgs, None, None))
        self._arm_writer()
        return True

    def _sendmsg(
        self, data: bytes, cmsgs: list[tuple[int, int, bytes]], address: Address | None
    ) -> bool:
        """True if sent, False on EAGAIN; other errors raise."""
        try:
            if address is None:
                self.sock.sendmsg([data], cmsgs)
            else:
                self.sock.sendmsg([data], cmsgs, 0, address)
        except (BlockingIOError, InterruptedError):
            return False
        self.stats.messages_out += 1
        return True

    def _arm_writer(self) -> None:
        if not self._writer_armed and not self._closed:
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
            self._writer_armed = True

    def _disarm_writer(self) -> None:
        if self._writer_armed:
            self._loop.remove_writer(self.sock.fileno())
            self._writer_armed = False

    def _on_writable(self) -> None:
        progress = False
        for key in list(self._tx):
            progress |= self._flush(key)
        if not self._tx:
            self._disarm_writer()
        elif not progress:
            self._disarm_writer()  # avoid a busy loop while the kernel says "writable"
            self._retry = self._loop.call_later(RETRY_DELAY, self._arm_writer)

    def _flush(self, key: Hashable) -> bool:
        queue = self._tx[key]
        progress = False
        while queue:
            head = queue[0]
            if head.future is not None and head.future.done():  # caller cancelled: never sent
                queue.popleft()
                continue
            try:
                if not self._sendmsg(head.data, head.cmsgs, head.address):
                    break
            except OSError as exc:  # dead association: fail all of its queue, never retry
                for pending in queue:
                    _fail(self.stats, pending, exc)
                queue.clear()
                break
            if head.future is not None:
                head.future.set_result(None)
            queue.popleft()
            progress = True
        if not queue:
            del self._tx[key]
        return progress

    def pending_sends(self) -> int:
        """Messages waiting for socket buffer space."""
        return sum(len(q) for q in self._tx.values())

    def sync_sender(self) -> None:
        """Fold what the sender thread sent and failed since last time into `stats`
        (read-outs call it; the thread itself never touches Python objects)."""
        if self.sender is None:
            return
        sent, failed, _ = self.sender.counts()
        seen_sent, seen_failed = self._sender_seen
        self.stats.messages_out += sent - seen_sent
        self.stats.send_failed += failed - seen_failed
        self._sender_seen = (sent, failed)

    def attach_sender(self, sender: BackgroundSender) -> None:
        """Have a bulk shedder's answers leave from `sender`'s thread; one it replaces is
        drained and stopped first, its counts folded in."""
        self._retire_sender()
        self.sender = sender
        self._sender_seen = (0, 0)

    def _retire_sender(self) -> None:
        """Drain, stop and fold in the sender thread: it must be done with the socket."""
        if self.sender is not None:
            self.sender.drain(SENDER_DRAIN_S)
            self.sender.stop()
            self.sync_sender()
            self.sender = None

    def drain_sender(self) -> None:
        """Let the sender thread's queue go first (bounded: SENDER_DRAIN_S)."""
        if self.sender is not None:
            self.sender.drain(SENDER_DRAIN_S)

    async def drain_sender_soon(self) -> bool:
        """drain_sender without blocking the event loop: other associations' traffic
        goes on while the 3004s queued before a shutdown leave (the C wait releases the
        GIL, so it waits on an executor thread). True once none wait. With none waiting
        it returns at once, without yielding: a close must not let the outputs after it
        (an election's CEA and adoption) wait behind a thread hop."""
        if self.sender is None or self.sender.drain(0.0):
            return True
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.sender.drain, SENDER_DRAIN_S)

    # --- life cycle -----------------------------------------------------------

    def close(self) -> None:
        """Stop watching the socket, fail queued sends, close the descriptor."""
        if self.sock.fileno() < 0:
            return
        self.flush_held()
        self._retire_sender()
        self._hang_up()
        self._disarm_writer()
        if self._retry is not None:
            self._retry.cancel()
        for queue in self._tx.values():
            for pending in queue:
                _fail(self.stats, pending, ConnectionError("SCTP socket closed"))
        self._tx.clear()
        self.sock.close()

    def apply_tuning(self, tuning: SctpTuning, assoc_id: int = 0) -> None:
        sockapi.apply_tuning(self.sock, tuning, assoc_id)


def send_cmsgs(
    stream: int, ppid: int, flags: int, context: int, assoc_id: int, ttl_ms: int | None
) -> list[tuple[int, int, bytes]]:
    """Ancillary data for one send: SCTP_SNDINFO, plus SCTP_PRINFO for a time-to-live."""
    cmsgs = [
        (c.IPPROTO_SCTP, c.SCTP_SNDINFO, s.pack_sndinfo(stream, flags, ppid, context, assoc_id))
    ]
    if ttl_ms is not None:
        cmsgs.append((c.IPPROTO_SCTP, c.SCTP_PRINFO, s.pack_prinfo_ttl(ttl_ms)))
    return cmsgs


def _send_each(
    sock: socket.socket, bursts: list[list[Held]], more: int
) -> tuple[int, list[tuple[int, int, int]] | None]:
    """The reference for sigmw.io._mmsg.send_bursts (and the fallback without it): a
    sendmsg a message, all but each burst's last with `more`, and never more than
    MAX_CORKED in a row. Returns how many were
    sent and, if not all, (burst index, how many of it were sent, errno) for each burst
    stopped by a failure."""
    sent = 0
    stopped: list[tuple[int, int, int]] = []
    for index, burst in enumerate(bursts):
        last = len(burst) - 1
        for i, (data, cmsgs) in enumerate(burst):
            corked = i < last and i % MAX_CORKED != MAX_CORKED - 1
            try:
                sock.sendmsg([data], cmsgs, more if corked else 0)
            except OSError as exc:
                stopped.append((index, i, exc.errno or errno.EIO))
                break
            sent += 1
    return sent, stopped or None


def _fail(stats: TransportStats, pending: _Pending, exc: Exception) -> None:
    if pending.future is None:
        stats.send_failed += 1
    elif not pending.future.done():
        pending.future.set_exception(exc)


def _send_error(exc: OSError, assoc_id: int) -> Exception:
    if exc.errno in _GONE and assoc_id:
        return AssociationGoneError(assoc_id, exc.errno or errno.EPIPE)
    return exc


def _rcvinfo(anc: list[tuple[int, int, bytes]]) -> bytes | None:
    """The raw SCTP_RCVINFO among a read's ancillary data."""
    for level, kind, raw in anc:
        if level == c.IPPROTO_SCTP and kind == c.SCTP_RCVINFO and len(raw) >= s.RCVINFO.size:
            return raw
    return None


def _address(source: object) -> Address | None:
    if isinstance(source, bytes) and len(source) >= 2:  # a raw sockaddr (batched read)
        try:
            return unpack_sockaddr(source)[0]
        except (AddressError, struct.error):
            return None
    if isinstance(source, tuple) and len(source) >= 2:
        return (str(source[0]), int(source[1]))
    return None


def _message(data: bytes, info: s.RcvInfo, source: object) -> Message:
    unordered = bool(info.flags & SendFlag.UNORDERED)
    return Message(
        data,
        info.assoc_id,
        info.stream,
        info.ppid,
        unordered,
        info.ssn,
        info.context,
        _address(source),
    )


NotificationHook = Callable[[Notification], None]
