"""A small Diameter node for interop tests, written directly with python-diameter.

Not product code: it stands for the far ends of sigmw (a client, a server) in
tests against real peers such as freeDiameterd, over SCTP (one-to-many
`SctpEndpoint`, one Diameter message per SCTP message) or TCP (asyncio streams,
framed by the length in the Diameter header).

    client = DiameterTestClient("c1.test", "test")
    await client.connect_sctp([("10.91.1.2", 3868)], [("10.91.1.1", 0)], host=net.a)
    cea = await client.capabilities_exchange()
    answer = await client.request(client.ccr("server"))
    await client.disconnect()

    server = DiameterTestServer("srv.server", "server", app_ids=(4,))
    await server.listen_tcp("10.91.1.1", 3868, host=net.a)

Every received message is kept in `received` with its SCTP stream and PPID
(None over TCP), so tests can assert on the transport too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from diameter.message import Avp, Message, MessageHeader
from diameter.message import constants as k
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DisconnectPeerRequest,
)

from sigmw.core.errors import AssociationGoneError
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.transport import ENDED
from sigmw.io.transport import Message as SctpMessage
from sigmw.sctp.addresses import Address
from sigmw.sctp.notifications import AssocChange
from sigmw.testbed.netns import Host

CER, DWR, DPR = 257, 280, 282
BASE_COMMANDS = (CER, DWR, DPR)
PPID_DIAMETER = 46
VENDOR_ID = 99999  # no real vendor: test traffic
Send = Callable[[bytes, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Received:
    """One Diameter message as it arrived."""

    message: Message
    stream: int | None
    """SCTP stream it came on (None over TCP)."""
    ppid: int | None
    """SCTP payload protocol id (None over TCP)."""

    @property
    def code(self) -> int:
        return int(self.message.header.command_code)

    @property
    def is_request(self) -> bool:
        return bool(self.message.header.is_request)


def avp_value(message: Message, code: int) -> object:
    """Value of the first top-level AVP with this code (vendor 0), or None."""
    for avp in message.avps:
        if avp.code == code and avp.vendor_id == 0:
            return avp.value
    return None


def answer_header(request: MessageHeader) -> MessageHeader:
    """The header of the answer to a request: same ids, only the P flag kept."""
    flags = 0x40 if request.is_proxyable else 0
    return MessageHeader(
        1,
        0,
        flags,
        request.command_code,
        request.application_id,
        request.hop_by_hop_identifier,
        request.end_to_end_identifier,
    )


def result_code(message: Message) -> int | None:
    value = avp_value(message, k.AVP_RESULT_CODE)
    return value if isinstance(value, int) else None


@dataclass
class _Conn:
    """One connection (association or TCP stream) of a node."""

    send: Send
    out_streams: int = 1
    peer: str | None = None
    """Origin-Host the peer announced in its CER/CEA."""
    _next_stream: itertools.cycle[int] = field(default_factory=lambda: itertools.cycle([0]))

    def set_streams(self, count: int) -> None:
        self.out_streams = count
        self._next_stream = itertools.cycle(range(1, count) if count > 1 else [0])

    def reply_stream(self, item: Received) -> int:
        """The request's stream when we have it too (our outbound count may be smaller)."""
        return (item.stream or 0) % max(self.out_streams, 1)

    def request_stream(self) -> int:
        """Round robin over streams 1..n-1 (0 is for CER/DWR/DPR), like freeDiameterd."""
        return next(self._next_stream)


class _Node:
    """What client and server share: identity, identifiers, base answers, the record."""

    def __init__(
        self, origin_host: str, origin_realm: str, app_ids: Iterable[int] = (4,), ppid: int = 46
    ) -> None:
        self.origin_host, self.origin_realm = origin_host, origin_realm
        self.app_ids = tuple(app_ids)
        self.ppid = ppid
        self.received: list[Received] = []
        self.address = "127.0.0.1"
        """Host-IP-Address announced in CER/CEA (set to the bound address on connect)."""
        self._ids = itertools.count(random.getrandbits(24) << 4)
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closers: list[Callable[[], None]] = []
        self.reading = asyncio.Event()
        """Cleared: stop reading TCP input (the peer's sends then back up: flow control)."""
        self.reading.set()

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    def header(self, code: int, app_id: int = 0, proxiable: bool = False) -> MessageHeader:
        flags = 0x80 | (0x40 if proxiable else 0)
        ident = self.next_id()
        return MessageHeader(1, 0, flags, code, app_id, ident, ident)

    def capabilities(self, message: Message) -> Message:
        """Fill a CER or CEA with our identity and applications."""
        message.origin_host = self.origin_host.encode()
        message.origin_realm = self.origin_realm.encode()
        message.host_ip_address = [self.address]
        message.vendor_id = VENDOR_ID
        message.product_name = "sigmw-test-node"
        message.auth_application_id = list(self.app_ids)
        return message

    def answer(self, request: Message, code: int, extra: Iterable[int] = ()) -> Message:
        """A generic answer: same ids, Session-Id and `extra` AVPs copied, our origin."""
        answer = Message(answer_header(request.header))
        session = avp_value(request, k.AVP_SESSION_ID)
        if session is not None:
            answer.append_avp(Avp.new(k.AVP_SESSION_ID, value=session))
        answer.append_avp(Avp.new(k.AVP_RESULT_CODE, value=code))
        answer.append_avp(Avp.new(k.AVP_ORIGIN_HOST, value=self.origin_host.encode()))
        answer.append_avp(Avp.new(k.AVP_ORIGIN_REALM, value=self.origin_realm.encode()))
        for avp_code in extra:
            value = avp_value(request, avp_code)
            if value is not None:
                answer.append_avp(Avp.new(avp_code, value=value))
        return answer

    async def wait_for(
        self, match: Callable[[Received], bool], timeout: float = 30.0, start: int = 0
    ) -> Received:
        """The first received message (from index `start`) that matches; waits for it."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for item in self.received[start:]:
                    if match(item):
                        return item
                start = len(self.received)
                await self._changed.wait()

    async def _on_data(
        self, conn: _Conn, data: bytes, stream: int | None, ppid: int | None
    ) -> None:
        item = Received(Message.from_bytes(data), stream, ppid)
        async with self._changed:
            self.received.append(item)
            self._changed.notify_all()
        await self.handle(conn, item)

    async def handle(self, conn: _Conn, item: Received) -> None:
        """Answer base requests; subclasses add the rest."""
        if item.is_request and item.code in (DWR, DPR):
            await conn.send(self.answer(item.message, 2001).as_bytes(), conn.reply_stream(item))

    def spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- transports ---------------------------------------------------------------

    def _sctp_sender(self, endpoint: SctpEndpoint, assoc_id: int) -> Send:
        async def send(data: bytes, stream: int) -> None:
            await endpoint.send(data, assoc_id, stream, self.ppid)

        return send

    @staticmethod
    def _tcp_sender(writer: asyncio.StreamWriter) -> Send:
        async def send(data: bytes, stream: int) -> None:
            writer.write(data)
            await writer.drain()

        return send

    async def _read_tcp(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        """Frame by the 24-bit length after the version byte (RFC 6733 3)."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await self.reading.wait()
                head = await reader.readexactly(4)
                length = struct.unpack("!I", head)[0] & 0xFFFFFF
                await self._on_data(conn, head + await reader.readexactly(length - 4), None, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for closer in self._closers:
            closer()
        self._closers.clear()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _inside(host: Host | None) -> AbstractContextManager[None]:
    return host.entered() if host is not None else contextlib.nullcontext()


class DiameterTestClient(_Node):
    """Connects, exchanges capabilities, answers DWR, sends requests and matches answers."""

    def __init__(
        self, origin_host: str, origin_realm: str, app_ids: Iterable[int] = (4,), ppid: int = 46
    ) -> None:
        super().__init__(origin_host, origin_realm, app_ids, ppid)
        self.conn: _Conn | None = None
        self.watchdogs_answered = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._sessions = itertools.count(1)
        self._assoc_id = 0
        self._endpoint: SctpEndpoint | None = None

    async def connect_sctp(
        self, remote: list[Address], local: list[Address], host: Host | None = None
    ) -> int:
        """Associate (from `local`, inside `host`); returns the outbound stream count."""
        with _inside(host):
            endpoint = SctpEndpoint.open_now(local, listen=False)
        self._endpoint = endpoint
        self._closers.append(endpoint.close)
        self.address = local[0][0]
        assoc = await endpoint.connect(remote, timeout=30)
        self._assoc_id = assoc.assoc_id
        self.conn = _Conn(self._sctp_sender(endpoint, assoc.assoc_id))
        self.conn.set_streams(assoc.outbound_streams)
        self.spawn(self._read_sctp(endpoint, self.conn))
        return assoc.outbound_streams

    async def connect_tcp(self, address: str, port: int, host: Host | None = None) -> None:
        with _inside(host):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
        self.address = sock.getsockname()[0]
        reader, writer = await asyncio.open_connection(sock=sock)
        self._closers.append(writer.close)
        self.conn = _Conn(self._tcp_sender(writer))
        self.spawn(self._read_tcp(self.conn, reader))

    async def _read_sctp(self, endpoint: SctpEndpoint, conn: _Conn) -> None:
        while True:
            item = await endpoint.recv()
            if isinstance(item, SctpMessage):
                await self._on_data(conn, item.data, item.stream, item.ppid)
            elif isinstance(item, AssocChange) and item.state in ENDED:
                return

    async def capabilities_exchange(self, timeout: float = 30.0) -> Message:
        """CER on stream 0; returns the CEA (whatever its Result-Code)."""
        cer = self.capabilities(CapabilitiesExchangeRequest(self.header(CER)))
        return await self.request(cer, stream=0, timeout=timeout)

    def ccr(self, destination_realm: str, destination_host: str | None = None) -> Message:
        """A Credit-Control-Request (initial) with a fresh Session-Id, application 4."""
        ccr = CreditControlRequest(self.header(272, app_id=4, proxiable=True))
        ccr.session_id = f"{self.origin_host};{next(self._sessions)};{self.next_id()}"
        ccr.origin_host = self.origin_host.encode()
        ccr.origin_realm = self.origin_realm.encode()
        ccr.destination_realm = destination_realm.encode()
        if destination_host is not None:
            ccr.destination_host = destination_host.encode()
        ccr.auth_application_id = 4
        ccr.service_context_id = "32251@3gpp.org"
        ccr.cc_request_type = k.E_CC_REQUEST_TYPE_INITIAL_REQUEST
        ccr.cc_request_number = 0
        return ccr

    async def request(
        self, message: Message, stream: int | None = None, timeout: float = 30.0
    ) -> Message:
        """Send a request and await the answer with its end-to-end id."""
        if self.conn is None:
            raise RuntimeError("not connected")
        e2e = int(message.header.end_to_end_identifier)
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[e2e] = waiter
        try:
            chosen = self.conn.request_stream() if stream is None else stream
            await self.conn.send(message.as_bytes(), chosen)
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._pending.pop(e2e, None)

    async def disconnect(self, cause: int = 0, timeout: float = 30.0) -> Message:
        """DPR (cause REBOOTING by default: the peer may reconnect at once); returns the DPA."""
        dpr = DisconnectPeerRequest(self.header(DPR))
        dpr.origin_host = self.origin_host.encode()
        dpr.origin_realm = self.origin_realm.encode()
        dpr.disconnect_cause = cause
        return await self.request(dpr, stream=0, timeout=timeout)

    async def handle(self, conn: _Conn, item: Received) -> None:
        if not item.is_request:
            waiter = self._pending.get(int(item.message.header.end_to_end_identifier))
            if waiter is not None and not waiter.done():
                waiter.set_result(item.message)
            return
        if item.code == DWR:
            self.watchdogs_answered += 1
        if item.code in BASE_COMMANDS:
            await super().handle(conn, item)
        else:  # a client serves nothing
            await conn.send(self.answer(item.message, 3001).as_bytes(), conn.reply_stream(item))

    async def close(self) -> None:
        """Shut the association down gracefully (SCTP) or close the socket (TCP)."""
        if self._endpoint is not None and self._assoc_id in self._endpoint.associations:
            # The peer may have ended it already, its notification not read yet.
            with contextlib.suppress(OSError, AssociationGoneError):
                await self._endpoint.shutdown(self._assoc_id)
            await asyncio.sleep(0.1)  # let SHUTDOWN go out before the socket closes
        await super().close()


class DiameterTestServer(_Node):
    """Accepts peers, answers CER/DWR/DPR and every other request with 2001."""

    COPIED = (k.AVP_AUTH_APPLICATION_ID, k.AVP_CC_REQUEST_TYPE, k.AVP_CC_REQUEST_NUMBER)

    def __init__(
        self, origin_host: str, origin_realm: str, app_ids: Iterable[int] = (4,), ppid: int = 46
    ) -> None:
        super().__init__(origin_host, origin_realm, app_ids, ppid)
        self.delay = 0.0
        """Seconds to wait before answering an application request."""
        self.drop = False
        """Leave application requests unanswered (failure tests)."""
        self.requests: list[Received] = []
        """Application requests received (not CER/DWR/DPR)."""
        self.peers: list[str] = []
        """Origin-Host of every CER received, in order."""
        self.tcp_writers: list[asyncio.StreamWriter] = []
        """Accepted TCP connections (tests tune their sockets)."""

    async def listen_sctp(self, local: list[Address], host: Host | None = None) -> int:
        """Listen on a one-to-many SCTP endpoint; returns its port."""
        with _inside(host):
            endpoint = SctpEndpoint.open_now(local)
        self.address = local[0][0]
        self._closers.append(endpoint.close)
        self.spawn(self._serve_sctp(endpoint))
        return endpoint.port

    async def _serve_sctp(self, endpoint: SctpEndpoint) -> None:
        conns: dict[int, _Conn] = {}
        while True:
            item = await endpoint.recv()
            if isinstance(item, SctpMessage):
                conn = conns.get(item.assoc_id)
                if conn is None:  # data before COMM_UP was read: make it now
                    conn = conns[item.assoc_id] = _Conn(self._sctp_sender(endpoint, item.assoc_id))
                    conn.set_streams(endpoint.associations[item.assoc_id].outbound_streams)
                await self._on_data(conn, item.data, item.stream, item.ppid)
            elif isinstance(item, AssocChange) and item.state in ENDED:
                conns.pop(item.assoc_id, None)

    async def listen_tcp(self, address: str, port: int, host: Host | None = None) -> int:
        """Listen on TCP; returns the port."""
        with _inside(host):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        self.address = address
        server = await asyncio.start_server(self._serve_tcp, sock=sock)
        self._closers.append(server.close)
        return int(sock.getsockname()[1])

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._closers.append(writer.close)  # close() drops accepted connections too
        self.tcp_writers.append(writer)
        await self._read_tcp(_Conn(self._tcp_sender(writer)), reader)
        writer.close()

    async def handle(self, conn: _Conn, item: Received) -> None:
        if not item.is_request:
            return  # a DWA to our nothing: servers here never send requests
        if item.code == CER:
            conn.peer = _text(avp_value(item.message, k.AVP_ORIGIN_HOST))
            self.peers.append(conn.peer)
            cea = CapabilitiesExchangeAnswer(answer_header(item.message.header))
            cea.result_code = 2001
            await conn.send(self.capabilities(cea).as_bytes(), conn.reply_stream(item))
        elif item.code in BASE_COMMANDS:
            await super().handle(conn, item)
        else:
            self.requests.append(item)
            if not self.drop:
                self.spawn(self._answer_later(conn, item))

    async def _answer_later(self, conn: _Conn, item: Received) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answer(item.message, 2001, self.COPIED)
        await conn.send(answer.as_bytes(), conn.reply_stream(item))
