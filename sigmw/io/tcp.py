"""Diameter over TCP (RFC 6733 2.1), shaped like SctpEndpoint so the daemon can hold either.

Each TCP connection is one "association": a synthetic id, increasing and unique
per endpoint, one stream each way. `recv()` yields the same items as over SCTP:
AssocChange COMM_UP when a connection is accepted or made (CANT_STR_ASSOC when a
connect fails), a Message (stream 0, PPID 46) per framed Diameter message, and
COMM_LOST when the peer closes or resets (SHUTDOWN_COMP after our own shutdown).

Built on asyncio Protocol/Transport (not streams) for speed: writes made in one
loop iteration are corked into one `transport.write`, so a burst of answers costs
a few syscalls, not one each; `send` awaits while the transport's write buffer is
above its high-water mark (never drops), as SctpEndpoint's queue does.
A framing error ends the connection (a byte stream cannot resync): what was read
of the bad message is delivered so the protocol layer can answer it, and the
connection closes after GRACE_S so that answer can leave.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import itertools
import socket
import struct
import termios
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sigmw.core.errors import AssociationGoneError, SigmwError
from sigmw.diameter.framing import DEFAULT_MAX_SIZE, DiameterFramer, FramingError
from sigmw.io.endpoint import Association
from sigmw.io.traffic import IN, OUT, Traffic
from sigmw.io.transport import ENDED, Deferred, Message, Received
from sigmw.sctp.addresses import Address
from sigmw.sctp.constants import PPID_DIAMETER, AssocChangeState
from sigmw.sctp.notifications import AssocChange
from sigmw.sctp.options import SctpTuning
from sigmw.sctp.structs import PathInfo

Shedder = Callable[[int, list[bytes], Callable[[list[bytes]], None]], list[bytes]]
Direct = Callable[[int, list[bytes]], int]
READ_SIZE = 256 * 1024
"""What asyncio reads per call (its transports' max_size): a read this long may have left
more in the kernel; a shorter one emptied the socket's receive buffer."""
_IDS = itertools.count(1 << 24)
"""Connection ids, above the kernel SCTP ids of the same process."""
GRACE_S = 0.5
"""After a framing error: time for the protocol layer's answer to leave before we close."""
CLOSE_TIMEOUT_S = 5.0
"""A graceful close (shutdown, endpoint close) that the peer does not complete is reset."""
CONNECT_TIMEOUT_S = 10.0
"""Per remote address; the kernel's own SYN retries would take about two minutes."""
CORK_BYTES = 65536
"""Corked output beyond this is written at once rather than at the end of the iteration."""
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class TcpBindError(SigmwError):
    """A TCP listener could not bind its address."""

    def __init__(self, address: Address, err: int) -> None:
        self.address = address
        self.errno = err
        host, port = address
        super().__init__(f"cannot bind TCP to {host} port {port}: {errno.errorcode.get(err)}")


@dataclass(slots=True)
class TcpStats:
    """Counters an operator cares about; exported by later layers."""

    messages_in: int = 0
    messages_out: int = 0
    writes: int = 0
    """transport.write calls: corking makes this far fewer than messages_out under load."""
    framing_errors: int = 0
    """Connections ended because their byte stream was not Diameter."""
    accepted: int = 0
    connected: int = 0
    connect_failed: int = 0
    send_waits: int = 0
    """Sends that waited for the write buffer to drain (backpressure)."""


class _Connection(asyncio.Protocol):
    """One TCP connection: frames its input, corks its output, tracks who ended it."""

    def __init__(self, ep: TcpEndpoint, assoc_id: int) -> None:
        self.ep = ep
        self.assoc_id = assoc_id
        self.framer = DiameterFramer(ep.max_message)
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.read_size = READ_SIZE
        self.peer: Address | None = None
        self.local: Address | None = None
        self.tuning: SctpTuning | None = None
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.flush_armed = False
        self.write_paused = False
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closing = False
        """We started a graceful shutdown: no more sends; its end is SHUTDOWN_COMP."""
        self.broken = False
        """A framing error was seen: further input is discarded until we close."""
        self.aborted = False
        self.lost = False
        self.timers: list[asyncio.TimerHandle] = []

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # ping-pong signaling must not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fd = sock.fileno()
        self.read_size = getattr(transport, "max_size", READ_SIZE)
        self.peer = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.ep._up(self)

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return  # read and dropped, so that our close is a FIN, not a RST
        try:
            messages = self.framer.feed(data)
        except FramingError as exc:
            self.broken = True
            self.ep._framing_error(self, exc)
            return
        if messages:
            self.ep._deliver(self, messages, len(data) >= self.read_size)

    def eof_received(self) -> bool:
        self.flush()
        return False  # the peer is done: close our side too (after flushing)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for timer in self.timers:
            timer.cancel()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(AssociationGoneError(self.assoc_id, errno.EPIPE))
        self.ep._lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # --- output -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Cork: gather this iteration's messages and write them with one call."""
        self.out.append(data)
        self.out_bytes += len(data)
        self._corked()

    def write_many(self, batch: list[bytes]) -> None:
        """`write` for each of a batch (a shed batch's 3004s), in one call."""
        self.out.extend(batch)
        self.out_bytes += sum(map(len, batch))
        self._corked()

    def _corked(self) -> None:
        """Flush now past CORK_BYTES, else at the end of this loop iteration (once)."""
        if self.out_bytes >= CORK_BYTES:
            self.flush()
        elif not self.flush_armed:
            self.flush_armed = True
            self.ep._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what was corked; counted as sent here, once per write, not per message."""
        self.flush_armed = False
        out = self.out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        count = len(out)
        out.clear()
        self.out_bytes = 0
        if self.transport is not None and not self.transport.is_closing():
            self.ep._sent(self.assoc_id, count, len(data))
            self.transport.write(data)

    async def drain(self) -> None:
        waiter = self.ep._loop.create_future()
        self.waiters.append(waiter)
        await waiter

    def close(self, after: float = 0.0) -> None:
        """Flush and close gracefully (after `after` seconds); reset if it does not finish."""
        if after > 0:
            self.later(after, self.close)
            return
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.later(CLOSE_TIMEOUT_S, self.reset)

    def reset(self) -> None:
        """Drop the connection at once; the peer sees a RST."""
        if self.transport is None or self.lost:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    def later(self, delay: float, action: Callable[[], object]) -> None:
        if not self.lost:
            self.timers.append(self.ep._loop.call_later(delay, action))


class TcpEndpoint:
    """TCP listeners and connections for Diameter, with SctpEndpoint's interface."""

    def __init__(
        self,
        local: list[Address],
        max_queued: int = 1024,
        max_message: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.local = list(local)
        self.max_message = max_message
        """Largest Diameter message accepted (bigger is a 5015 framing error)."""
        self.connect_timeout = CONNECT_TIMEOUT_S
        self.stats = TcpStats()
        self.traffic = Traffic()
        self.associations: dict[int, Association] = {}
        self._conns: dict[int, _Connection] = {}  # until its end has been read from recv()
        self._rx: deque[Received] = deque()
        self._rx_waiter: asyncio.Future[None] | None = None
        self._max_queued = max_queued
        self.shedder: Shedder | None = None
        """Overload: given a batch read while `shed_backlog` items wait, answers what it
        can at once (through the write it is handed) and returns the rest to queue."""
        self.shed_backlog = max_queued // 2
        self.direct: Direct | None = None
        """The hot path: handles messages as they are framed (in data_received), while
        nothing is queued, and returns how many it took; the rest are queued for recv().
        It may `defer` work that must wait; what follows it then queues behind it."""
        self._read_paused: set[_Connection] = set()
        self._port = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._serving: set[asyncio.Task[None]] = set()
        self._dialing: set[asyncio.Task[None]] = set()
        self._tuning = SctpTuning()
        self._closed = False

    @classmethod
    def open_now(
        cls,
        local: list[Address],
        tuning: SctpTuning | None = None,
        listen: bool = True,
        backlog: int = 128,
        max_queued: int = 1024,
    ) -> TcpEndpoint:
        """Bind and listen on every local address (one port; 0 picks one), or only remember
        them as source addresses for connects. `tuning` is kept, not applied (see apply_tuning).

        Synchronous (sockets are bound at once); call it from inside a running loop.
        """
        ep = cls(local, max_queued)
        if tuning is not None:
            ep._tuning = tuning
        if listen:
            socks = _listen_sockets(local, backlog)
            ep._port = int(socks[0].getsockname()[1]) if socks else 0
            for sock in socks:
                ep._spawn(ep._serving, ep._serve(sock, backlog))
        return ep

    @classmethod
    async def open(
        cls,
        local: list[Address],
        tuning: SctpTuning | None = None,
        listen: bool = True,
        backlog: int = 128,
        max_queued: int = 1024,
    ) -> TcpEndpoint:
        """open_now(), then wait until the listeners accept."""
        ep = cls.open_now(local, tuning, listen, backlog, max_queued)
        await asyncio.gather(*ep._serving)
        return ep

    @property
    def port(self) -> int:
        """The listening port (0 for an endpoint that only connects)."""
        return self._port

    async def _serve(self, sock: socket.socket, backlog: int) -> None:
        # Never cancelled (a cancel inside create_server would leave the socket watched):
        # it finishes, then closes the server if the endpoint was closed meanwhile.
        server = await self._loop.create_server(self._accepted, sock=sock, backlog=backlog)
        if self._closed:
            server.close()
        else:
            self._servers.append(server)

    def _accepted(self) -> _Connection:
        self.stats.accepted += 1
        return _Connection(self, self._new_id())

    def _new_id(self) -> int:
        # Unique across endpoints, as the kernel's SCTP ids are: the peer manager tells
        # a peer's associations apart by id alone, whichever endpoint they live on.
        return next(_IDS)

    def _spawn(self, tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # --- connecting -----------------------------------------------------------------

    def start_connect(self, remote: list[Address]) -> int:
        """Begin connecting (each address in turn); COMM_UP or CANT_STR_ASSOC arrives via recv()."""
        if not remote:
            raise ValueError("no remote address to connect to")
        assoc_id = self._new_id()
        self._spawn(self._dialing, self._dial(assoc_id, remote))
        return assoc_id

    async def _dial(self, assoc_id: int, remote: list[Address]) -> None:
        for host, port in remote:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._loop.create_connection(
                        lambda: _Connection(self, assoc_id),
                        host,
                        port,
                        local_addr=self._source_for(host),
                    )
            except (OSError, TimeoutError):
                continue  # the next address, like SCTP trying its other paths
            self.stats.connected += 1
            return
        self.stats.connect_failed += 1
        self._push(AssocChange(assoc_id, AssocChangeState.CANT_STR_ASSOC, 0, 0, 0, (), ()))

    def _source_for(self, host: str) -> Address | None:
        """The configured local address of the remote's family; None lets the kernel choose."""
        v6 = ":" in host
        for address in self.local:
            if (":" in address[0]) == v6 and address != ("::" if v6 else "0.0.0.0", 0):
                return address
        return None

    # --- receive --------------------------------------------------------------------

    def backlog(self) -> int:
        """Items received and not yet read: how far the reader is behind."""
        return len(self._rx)

    def recv_nowait(self) -> Received | None:
        """The next queued item, or None (drain the queue without an await per message)."""
        if not self._rx:
            return None
        item = self._rx.popleft()
        self._after_pop(item)
        return item

    async def recv(self) -> Received:
        """Next message or association change, in arrival order."""
        while not self._rx:
            if self._closed:
                raise ConnectionError("TCP endpoint closed")
            self._rx_waiter = self._loop.create_future()
            try:
                await self._rx_waiter
            finally:
                self._rx_waiter = None
        item = self._rx.popleft()
        self._after_pop(item)
        return item

    def _after_pop(self, item: Received) -> None:
        if isinstance(item, AssocChange) and item.state in ENDED:
            self._conns.pop(item.assoc_id, None)  # its COMM_UP has been read too
        if self._read_paused and len(self._rx) <= self._max_queued // 2:
            for conn in self._read_paused:
                if conn.transport is not None and not conn.lost:
                    conn.transport.resume_reading()
            self._read_paused.clear()

    def _push(self, item: Received) -> None:
        if self._closed:
            return
        self._rx.append(item)
        waiter = self._rx_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _up(self, conn: _Connection) -> None:
        if self._closed:
            conn.reset()
            return
        self._conns[conn.assoc_id] = conn
        self.associations[conn.assoc_id] = Association(conn.assoc_id, 1, 1)
        self._push(AssocChange(conn.assoc_id, AssocChangeState.COMM_UP, 0, 1, 1, (), ()))

    def _deliver(self, conn: _Connection, messages: list[bytes], full_read: bool = False) -> None:
        """Freshly framed messages: shed what is beyond the backlog bound, hand the rest to
        the direct handler while nothing is queued (else queue them behind what is).

        The backlog is what waits to be handled: queued items and, after a read as long as
        asyncio makes (a shorter one emptied the socket), what is still in the kernel. With
        a direct handler nothing queues, so when the relay falls behind the backlog builds
        in the kernel: while it is over the bound, whole reads are shed (cheaply), as
        arrivals at a full queue would be."""
        if self._closed:
            return  # nobody will read them: close() ended recv()
        rx, assoc_id = self._rx, conn.assoc_id
        self.traffic.count_many(assoc_id, IN, PPID_DIAMETER, 0, messages)
        self.stats.messages_in += len(messages)
        if self.shedder is not None:
            waiting = len(rx) + (self._unread(conn, messages) if full_read else 0)
            room = max(self.shed_backlog - waiting, 0)
            if len(messages) > room:
                # Keep what fits under the backlog bound, shed the rest here, before any
                # object is made for it (the cheapest place: shedding must cost a fraction
                # of relaying, or the excess starves the goodput).
                rest = self.shedder(assoc_id, messages[room:], conn.write_many)
                messages = messages[:room] + rest if rest else messages[:room]
        if self.direct is not None and not rx and messages:
            taken = self.direct(assoc_id, messages)
            if taken == len(messages):
                return
            messages = messages[taken:]
        source = conn.peer
        for data in messages:
            rx.append(Message(data, assoc_id, 0, PPID_DIAMETER, False, 0, 0, source))
        if len(rx) >= self._max_queued and conn.transport is not None:
            # The kernel's receive window then pushes back on the peer; nothing is dropped.
            conn.transport.pause_reading()
            self._read_paused.add(conn)
        self._push_wake()

    def _unread(self, conn: _Connection, batch: list[bytes]) -> int:
        """Messages still in the kernel's receive buffer (FIONREAD), estimated from the
        batch's mean size."""
        if conn.fd < 0:
            return 0
        unread = array.array("i", [0])
        try:
            fcntl.ioctl(conn.fd, termios.FIONREAD, unread)
        except OSError:
            return 0
        return unread[0] * len(batch) // max(sum(map(len, batch)), 1)

    def defer(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """For the direct handler: queue work that must wait (a send pushed back on); what
        arrives after it is queued behind it, so the reader keeps the order."""
        self._push(Deferred(work))

    def _sent(self, assoc_id: int, count: int, size: int) -> None:
        self.stats.writes += 1
        self.stats.messages_out += count
        self.traffic.count(assoc_id, OUT, PPID_DIAMETER, 0, size, count)

    def _push_wake(self) -> None:
        waiter = self._rx_waiter
        if self._rx and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _framing_error(self, conn: _Connection, exc: FramingError) -> None:
        """Deliver what came before and the bad message's start, then close after GRACE_S."""
        self.stats.framing_errors += 1
        self._deliver(conn, [*exc.framed, exc.data])
        conn.close(after=GRACE_S)

    def _lost(self, conn: _Connection) -> None:
        self._read_paused.discard(conn)
        if self.associations.pop(conn.assoc_id, None) is None:
            return  # never reported up (the endpoint was closed meanwhile)
        ours = conn.closing and not conn.aborted
        state = AssocChangeState.SHUTDOWN_COMP if ours else AssocChangeState.COMM_LOST
        self._push(AssocChange(conn.assoc_id, state, 0, 0, 0, (), ()))

    # --- send and end ---------------------------------------------------------------

    def _live(self, assoc_id: int) -> _Connection:
        conn = self._conns.get(assoc_id)
        transport = conn.transport if conn is not None else None
        if conn is None or conn.lost or conn.closing or transport is None or transport.is_closing():
            raise AssociationGoneError(assoc_id, errno.EPIPE if conn else errno.ENOENT)
        return conn

    def try_send(self, data: bytes, assoc_id: int, stream: int = 0, ppid: int = 0) -> bool:
        """Buffer for this loop iteration's write unless the connection pushes back;
        False means: use `send`, which awaits room."""
        conn = self._conns.get(assoc_id)
        if conn is None or conn.write_paused or conn.closing or conn.lost:
            return False
        conn.write(data)
        return True

    async def send(self, data: bytes, assoc_id: int, stream: int = 0, ppid: int = 0) -> None:
        """Send one message; awaits while the write buffer is full, never drops.

        `stream` and `ppid` are accepted for SctpEndpoint's signature; TCP has neither.
        """
        conn = self._live(assoc_id)
        conn.write(data)
        if conn.write_paused:
            self.stats.send_waits += 1
            await conn.drain()

    async def shutdown(self, assoc_id: int) -> None:
        """Graceful: flush, send FIN, keep reading until the peer closes (SHUTDOWN_COMP)."""
        conn = self._live(assoc_id)
        conn.closing = True
        conn.flush()
        assert conn.transport is not None
        conn.transport.write_eof()
        conn.later(CLOSE_TIMEOUT_S, conn.reset)

    async def abort(self, assoc_id: int, reason: bytes = b"") -> None:
        """Reset the connection at once (COMM_LOST). TCP carries no abort reason: ignored."""
        conn = self._conns.get(assoc_id)
        if conn is None or conn.lost:
            raise AssociationGoneError(assoc_id, errno.ENOENT)
        conn.aborted = True
        conn.reset()

    def close(self) -> None:
        """Stop listening and connecting; close every connection gracefully; end recv()."""
        if self._closed:
            return
        self._closed = True
        for task in self._dialing:
            task.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close()
        waiter = self._rx_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- read-outs and SCTP-only settings ----------------------------------------------

    def peer_addresses(self, assoc_id: int) -> list[Address]:
        conn = self._conns.get(assoc_id)
        if conn is None or conn.peer is None:
            raise AssociationGoneError(assoc_id, errno.ENOENT)
        return [conn.peer]

    def local_addresses(self, assoc_id: int) -> list[Address]:
        conn = self._conns.get(assoc_id)
        if conn is None or conn.local is None:
            raise AssociationGoneError(assoc_id, errno.ENOENT)
        return [conn.local]

    def queued(self, assoc_id: int) -> int:
        """Sends waiting for the write buffer to drain (backpressure)."""
        conn = self._conns.get(assoc_id)
        return len(conn.waiters) if conn is not None else 0

    def paths(self, assoc_id: int) -> list[PathInfo]:
        """Always empty: a TCP connection has one path and no per-path state to fail over."""
        return []

    def apply_tuning(self, tuning: SctpTuning, assoc_id: int = 0) -> None:
        """Kept, not applied: RTO, heartbeat, retransmission and stream settings are SCTP's;
        TCP_NODELAY is always on. read_tuning returns it so no 'clamped' field is reported."""
        conn = self._conns.get(assoc_id)
        if conn is not None:
            conn.tuning = tuning
        elif assoc_id == 0:
            self._tuning = tuning

    def read_tuning(self, assoc_id: int) -> SctpTuning:
        conn = self._conns.get(assoc_id)
        return conn.tuning if conn is not None and conn.tuning is not None else self._tuning

    def set_primary(self, assoc_id: int, address: Address) -> None:
        """No-op: one path per connection; other peer addresses are only tried at connect."""


def _address(raw: object) -> Address | None:
    if isinstance(raw, tuple) and len(raw) >= 2:
        return (str(raw[0]), int(raw[1]))
    return None


def _listen_sockets(local: list[Address], backlog: int) -> list[socket.socket]:
    """One listening socket per address, all on one port (the first bind picks it if 0)."""
    socks: list[socket.socket] = []
    port = 0
    try:
        for host, wanted in local:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # '::' must not collide with '0.0.0.0'
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            address = (host, wanted or port)
            try:
                sock.bind(address)
            except OSError as exc:
                raise TcpBindError(address, exc.errno or errno.EINVAL) from None
            port = port or int(sock.getsockname()[1])
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
