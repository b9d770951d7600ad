"""The Diameter relay inside the daemon: a thin adapter around the sans-IO
DiameterCore. It names connections (endpoint, association), feeds the core
connection events, messages and a periodic tick, and performs its outputs:
sends (PPID 46, never 0), closes, binding an accepted connection to its peer,
and holding a peer that asked not to be reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast
from typing import Protocol as TypingProtocol

from sigmw.config.model import Config, Protocol, Role
from sigmw.core.errors import SigmwError
from sigmw.diameter import local
from sigmw.diameter.codes import ACCEPTED_PPIDS, DIAMETER_PPID, MANAGEMENT_COMMANDS
from sigmw.diameter.node import (
    BindConn,
    CloseConn,
    DiameterCore,
    HoldPeer,
    Note,
    Output,
    PeerInfo,
    SendOn,
)
from sigmw.diameter.relay import Send
from sigmw.diameter.wire import c_speedups as _c
from sigmw.io.endpoint import SEND_NOWAIT_LIMIT, SctpEndpoint
from sigmw.io.endpoints import Endpoint
from sigmw.io.tcp import CORK_BYTES, TcpEndpoint
from sigmw.io.transport import BulkShed, Message, Read, RecvShed, Room, read_assoc

log = logging.getLogger("sigmw")

Conn = tuple[Endpoint, int]
SctpHook = Callable[[int, int, bytes, float], bool]
"""SctpEndpoint.direct and .overloaded: (assoc_id, ppid, data, now) -> taken."""


class Host(TypingProtocol):
    """What the adapter needs of the daemon."""

    def peer_conn(self, peer: str) -> Conn | None:
        """The (endpoint, association) a bound peer is reached on."""
        ...

    def bind(self, conn: Conn, peer: str) -> None:
        """An accepted (or elected) connection now belongs to `peer`."""
        ...

    def hold(self, peer: str) -> None:
        """Do not reconnect `peer` until the configuration is reloaded."""
        ...

    def emit(self, event: str, /, **fields: object) -> None: ...


def identity_of(config: Config) -> local.LocalIdentity:
    d = config.node.diameter
    if d is None:
        raise SigmwError("diameter peers need node.diameter: {origin_host, origin_realm}")
    return local.LocalIdentity(
        origin_host=d.host.encode(),
        origin_realm=d.realm.encode(),
        origin_state_id=int(time.time()) & 0xFFFFFFFF,
        vendor_id=d.vendor_id,
        product_name=d.product_name,
        auth_apps=d.auth_applications,
        acct_apps=d.acct_applications,
        vendor_apps=tuple(local.VendorApp(v.vendor, v.auth, v.acct) for v in d.vendor_applications),
        supported_vendors=d.supported_vendors,
    )


def peers_of(config: Config) -> list[PeerInfo]:
    return [
        PeerInfo(
            p.name,
            p.diameter.host,
            p.diameter.realm,
            p.role is Role.CONNECT,
            frozenset(p.addresses),
        )
        for p in config.peers
        if p.protocol is Protocol.DIAMETER and p.diameter is not None
    ]


class DiameterService:
    def __init__(self, config: Config, host: Host, now: Callable[[], float]) -> None:
        assert config.node.diameter is not None
        self.host = host
        self.now = now
        first_id = int.from_bytes(os.urandom(4), "big")
        self.core = DiameterCore(
            identity_of(config),
            config.node.diameter,
            peers_of(config),
            config.diameter_routes,
            random.Random().random,
            first_id,
        )

    def reload(self, config: Config) -> None:
        self.core.reconfigure(peers_of(config), config.diameter_routes)

    # --- inputs -------------------------------------------------------------------

    def up(self, conn: Conn, peer: str | None, outbound: int) -> list[Output]:
        ep, assoc = conn
        try:
            ips = [host for host, _ in ep.local_addresses(assoc)]
            remote = frozenset(host for host, _ in ep.peer_addresses(assoc))
        except (SigmwError, OSError):
            ips, remote = [], frozenset()
        return self.core.connected(conn, peer, outbound, ips, self.now(), remote)

    def down(self, conn: Conn) -> list[Output]:
        return self.core.disconnected(conn, self.now())

    def message(self, conn: Conn, msg: Message) -> Sequence[Output]:
        return self.core.received(conn, msg.data, self.now())

    def shed(self, conn: Conn, msg: Message) -> Sequence[Output]:
        return self.core.shed(conn, msg.data, self.now())

    def shed_batch(
        self,
        ep: Endpoint,
        assoc: int,
        messages: list[bytes],
        write: Callable[[list[bytes]], None],
    ) -> list[bytes]:
        """Overload, inside the TCP endpoint: every request of a batch gets its 3004 written
        at once, before any object is made for it; the rest (answers, management) is
        returned to be read as usual. What makes shedding cheap enough that the excess
        does not eat the goodput."""
        answers, keep = self.core.shed_requests((ep, assoc), messages, self.now())
        if answers:
            write(answers)
        return keep

    def direct(self, ep: TcpEndpoint | SctpEndpoint, assoc: int, messages: list[bytes]) -> int:
        """The hot path, called by the endpoint as messages are read (framed, over TCP):
        each is handled and its sends made at once, with no per-message object or queue.
        Returns how many it took; when a send must wait, what is left of that message's
        output is deferred to the endpoint's reader and the rest of the batch queues
        behind it, so the order holds."""
        conn, now, handle = (ep, assoc), self.now(), self.handle
        for i, data in enumerate(messages):
            if handle(conn, data, now):
                return i + 1
        return len(messages)

    def handle(self, conn: Conn, data: bytes, now: float) -> bool:
        """One message of the hot path (`direct`; SCTP reads one at a time): True if a
        send had to wait and the rest of its work was deferred to the endpoint's reader."""
        try:
            rest = self.perform_now(self.core.received(conn, data, now))
        except Exception as exc:  # bad input is counted and logged, never fatal
            self._failed(exc)
            return False
        if rest:
            conn[0].defer(functools.partial(self.perform, rest))
            return True
        return False

    def direct_in_c(
        self, ep: Endpoint, where: dict[str, Conn], dialers: dict[str, Endpoint], dialer: str
    ) -> Any | None:
        """The hot path for `ep` in C (_speedups.Direct), or None without the speedups: the
        whole of the chain from `direct` through `handle` to the held send, for the usual
        message; anything else it hands to `handle`. Called as SctpEndpoint.direct, or
        its `take` as TcpEndpoint.direct. `where` (peer -> connection) and `dialers`
        are the daemon's live dicts: a dialer's endpoint a reload replaced drops what
        it still reads, as Daemon._retired says."""
        hot = self.core.relay.hot
        if _c is None or hot is None:
            return None
        return _c.Direct(
            hot,
            self.core.conns,
            where,
            ep,
            dialers,
            dialer,
            SctpEndpoint,
            TcpEndpoint,
            self.handle,
            self._defer_send,
            self._failed,
            self.now,
            sorted(MANAGEMENT_COMMANDS),
            CORK_BYTES,
        )

    def _defer_send(self, ep: Endpoint, peer: str, data: bytes, stream: int) -> None:
        """A send of the C path that must wait, deferred to `ep`'s reader as `handle`
        defers one."""
        ep.defer(functools.partial(self.perform, [Send(peer, data, stream)]))

    def _failed(self, exc: Exception) -> None:
        self.host.emit("input_error", error=repr(exc))

    def sctp_shedder(self, ep: SctpEndpoint, usual: SctpHook) -> SctpHook:
        """SctpEndpoint.overloaded, for what is read past the shed bound: an application
        request gets its 3004 at once, the leanest way there is (no output objects: a
        shed request must cost a fraction of a relayed one, or the excess eats the
        goodput); anything else goes the `usual` way (the endpoint's `direct`). A 3004
        its client's association cannot take now waits in that association's queue
        (send_nowait, bounded) while reading goes on; past the bound it is dropped and
        counted (`shed_answer_dropped`)."""
        busy_reply, send, stats = self.core.busy_reply, ep.send_nowait, self.core.relay.stats

        def shed(assoc_id: int, ppid: int, data: bytes, now: float) -> bool:
            reply = busy_reply((ep, assoc_id), data, now) if ppid in ACCEPTED_PPIDS else None
            if reply is None:
                return usual(assoc_id, ppid, data, now)
            answer, stream = reply
            # Never deferred: a reader held up behind one slow client would stop shedding
            # for all (everything read queues behind a deferred send), and collapse.
            if not send(answer, assoc_id, stream, DIAMETER_PPID):
                stats["shed_answer_dropped"] += 1
            return True

        return shed

    def sctp_bulk_shedder(self, ep: SctpEndpoint) -> tuple[BulkShed, RecvShed] | None:
        """SctpEndpoint.bulk_shed and recv_shed, with the C speedups: what sctp_shedder
        does, for many reads at once and with no Python per message (_speedups.shed_sctp
        on reads made, recv_shed on the reads it makes itself), so that a shed request
        costs a small fraction of a relayed one. Their 3004s leave from a thread of their
        own (_speedups.ShedSender, the endpoint's `sender`): their sends cost the relay's
        thread nothing, at most SEND_NOWAIT_LIMIT wait per association and past that they
        are dropped and counted (`shed_answer_dropped`). Each association met is looked
        up once a call (an open peer's); any read they cannot take goes back to the
        endpoint, which hands it to sctp_shedder."""
        if _c is None:
            return None
        core, relay, shed_sctp, recv_shed = self.core, self.core.relay, _c.shed_sctp, _c.recv_shed
        sender = _c.ShedSender(ep.sock.fileno(), SEND_NOWAIT_LIMIT)
        ep.attach_sender(sender)

        def streams_of(assoc: int, now: float) -> int:
            """Its outbound streams if it is an open peer's association, else 0."""
            streams = core.shed_streams((ep, assoc), now)
            # Sends the relay's thread has queued for it do not matter: the 3004s leave
            # apart from them (and may pass them) and are bounded on their own.
            return streams if 0 < streams <= ep.outbound_streams(assoc) else 0

        def counted(taken: int, dropped: int) -> None:
            if dropped:
                relay.stats["shed_answer_dropped"] += dropped
            relay.count_shed(taken)

        def shed(reads: list[Read], start: int, now: float) -> tuple[int, int]:
            known: dict[int, int] = {}  # association -> outbound streams, 0: not here
            total = dropped = 0
            while True:
                cmsgs, counts = ep.bulk_state()
                args = (known, cmsgs, counts, sender, relay.answers, relay.busy_tail)
                stop, taken, dropped_now = shed_sctp(reads, start, *args)
                total, dropped = total + taken, dropped + dropped_now
                assoc = read_assoc(reads[stop]) if stop < len(reads) else None
                if assoc is None or assoc in known:
                    break  # the end, or a read for the Python path
                known[assoc] = streams_of(assoc, now)
                start = stop
            counted(total, dropped)
            return stop, total

        def recv(
            fd: int, want: int, slot: int, room: Room, may_shed: bool, now: float
        ) -> tuple[list[Read], int, int]:
            cmsgs, counts = ep.bulk_state()
            known: dict[int, int] | None = {} if may_shed else None
            reads, keep, taken, dropped = recv_shed(
                fd, want, slot, room, known, lambda assoc: streams_of(assoc, now), cmsgs,
                counts, sender, relay.answers, relay.busy_tail,
            )  # fmt: skip
            if taken or dropped:
                counted(taken, dropped)
            return reads, keep, taken

        return shed, recv

    def tick(self) -> list[Output]:
        return self.core.timer(self.now())

    # --- outputs --------------------------------------------------------------------

    def perform_now(self, outputs: Sequence[Output]) -> Sequence[Output]:
        """Carry out what needs no waiting, in order; return the rest from the first
        output that must wait (a send a peer pushes back on, a close)."""
        for i, out in enumerate(outputs):
            if type(out) is Send:
                conn = self.host.peer_conn(out.peer)
                if conn is not None and not conn[0].try_send(
                    out.data, conn[1], out.stream, DIAMETER_PPID
                ):
                    return outputs[i:]
            elif type(out) is SendOn:
                ep, assoc = cast(Conn, out.conn)
                if not ep.try_send(out.data, assoc, out.stream, DIAMETER_PPID):
                    return outputs[i:]
            elif type(out) is CloseConn:
                return outputs[i:]
            else:
                self._perform_sync(out)
        return []

    def _perform_sync(self, out: Output) -> None:
        if isinstance(out, BindConn):
            self.host.bind(out.conn, out.peer)  # type: ignore[arg-type]
        elif isinstance(out, HoldPeer):
            self.host.hold(out.peer)
        elif isinstance(out, Note):
            self.host.emit(out.event, **out.fields)

    async def perform(self, outputs: Iterable[Output]) -> None:
        """Carry out the core's outputs in order (a CEA leaves before its close)."""
        for out in outputs:
            if isinstance(out, Send):
                target = self.host.peer_conn(out.peer)
                if target is not None:
                    await self._send(target, out.data, out.stream)
            elif isinstance(out, SendOn):
                await self._send(out.conn, out.data, out.stream)  # type: ignore[arg-type]
            elif isinstance(out, CloseConn):
                await self.close(out.conn)  # type: ignore[arg-type]
            else:
                self._perform_sync(out)

    async def goodbye(self, wait_s: float) -> None:
        """SIGTERM: DPR to every open peer, then wait (bounded) for their DPAs."""
        await self.perform(self.core.stop(self.now()))
        deadline = self.now() + wait_s
        while self.core.closing() and self.now() < deadline:
            await asyncio.sleep(0.02)
        for peer in self.core.closing():
            self.host.emit("goodbye_unanswered", peer=peer)

    async def close(self, conn: Conn) -> None:
        """Shut a connection down gracefully (also one the core never saw: a dialled
        association made redundant because the peer dialled us first)."""
        ep, assoc = conn
        with contextlib.suppress(SigmwError, OSError):  # already gone
            await ep.shutdown(assoc)

    async def _send(self, conn: Conn, data: bytes, stream: int) -> None:
        ep, assoc = conn
        try:
            await ep.send(data, assoc, stream, DIAMETER_PPID)
        except (SigmwError, OSError) as exc:  # gone meanwhile: its disconnect follows
            self.core.relay.stats["send_failed"] += 1
            self.host.emit("send_failed", assoc=assoc, error=str(exc))
