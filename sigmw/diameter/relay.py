"""The Diameter relay agent (RFC 6733 6), sans-IO.

Requests from one peer leave on another with a new hop-by-hop id and a Route-
Record naming the peer they came from; the pending table maps the new id back,
so the answer returns to the client with the client's own id. Nothing is decoded
beyond what `wire.scan` reads. Failures become answers from this node: 3005 on a
loop, 3002 when no peer can deliver, 3004 when every candidate is over its
pending bound, 5xxx for malformed requests.

When the peer a request went to fails (transport down, or the watchdog leaves
OKAY) every request pending on it is re-sent to an alternate peer with the T flag
(RFC 6733 5.5.4) under a new hop-by-hop id: a late answer from the failed peer
then matches nothing and is dropped, so the client gets exactly one answer. A
request unanswered for Tx is re-sent once the same way, then answered 3002.

With the C speedups built, the usual request and the usual answer are handled by
`_speedups.RelayHot` (_hotpath.c) on the same tables; the methods here are the
reference, and run for everything else.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sigmw.config.diameter import DiameterNode, DiameterRoute, RedirectPolicy
from sigmw.core.histogram import Histogram
from sigmw.diameter import local, wire
from sigmw.diameter.codes import (
    FLAG_ERROR,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    HEADER_LEN,
    Avp,
    ResultCode,
)
from sigmw.diameter.wire import c_speedups as _c
from sigmw.routing.diameter import NoPeer, RealmTable, Usable
from sigmw.routing.streams import Spreader, session_stream

_U32 = struct.Struct(">I")
_VERSION_1 = 1 << 24  # the header's first word is version << 24 | length
# Enum members as module constants: in Python 3.11 `Usable.YES` costs several times a global.
_YES, _BUSY, _DOWN, _FOLLOW = Usable.YES, Usable.BUSY, Usable.DOWN, RedirectPolicy.FOLLOW
_TOO_BUSY = int(ResultCode.TOO_BUSY)
MAX_LABELS = 256
"""Distinct command codes (and answer kinds) counted apart; the rest count as OTHER."""
OTHER = -1

_FAILURES = {
    NoPeer.NO_ROUTE: (ResultCode.UNABLE_TO_DELIVER, "no route for this realm and application", b""),
    NoPeer.NO_LIVE_PEER: (ResultCode.UNABLE_TO_DELIVER, "no peer of the route is up", b""),
    NoPeer.ALL_BUSY: (ResultCode.TOO_BUSY, "every peer of the route is at its pending limit", b""),
}


@dataclass(slots=True)  # not frozen: made once per relayed message (a frozen __init__ costs 5x)
class Send:
    """A message to send on a peer's association."""

    peer: str
    """Peer name."""
    data: bytes
    """One whole Diameter message."""
    stream: int
    """Outbound stream, always below the association's negotiated count."""


@dataclass(slots=True)
class _Pending:  # the C Pending (_hotpath.c) when the speedups are built: see _new_pending
    origin: str
    """Peer the request came from."""
    origin_hbh: int
    """Its hop-by-hop id there."""
    target: str
    """Peer it was sent to."""
    request: bytes
    """The bytes as forwarded (Route-Record appended), kept for re-sending."""
    meta: wire.Scanned
    """What the router read, to choose an alternate or answer locally."""
    deadline: float
    """When Tx expires."""
    received: float
    """When the request arrived (relay latency)."""
    resent: bool = False
    """Already re-sent once (failover or Tx)."""
    redirected: bool = False
    """A redirect was followed: a second one is relayed (two agents could ping-pong)."""


@dataclass(slots=True)
class _Peer:  # the C Peer when the speedups are built: see _new_peer
    host: bytes
    """Origin-Host learned in the capabilities exchange, lower-cased."""
    outbound: int
    """Negotiated outbound streams."""
    usable: bool = True
    """False while the watchdog says SUSPECT/DOWN."""
    pending: int = 0
    """Requests in flight to this peer."""
    route_record: bytes = b""
    """The Route-Record AVP naming it: its Origin-Host as received (RFC 6733 6.7.1)."""


# With the C speedups, the records are C structs that RelayHot reads and writes directly.
_new_pending: type[_Pending] = _c.Pending if _c is not None else _Pending
_new_peer: type[_Peer] = _c.Peer if _c is not None else _Peer


class Relay:
    def __init__(
        self,
        me: local.LocalIdentity,
        node: DiameterNode,
        routes: tuple[DiameterRoute, ...],
        first_hop_by_hop: int = 1,
    ) -> None:
        self.me = me
        self.node = node
        self.table = RealmTable(routes)
        self.peers: dict[str, _Peer] = {}
        self._by_host: dict[bytes, str] = {}
        self._pending: dict[int, _Pending] = {}  # insertion order == deadline order
        self._next_hbh = first_hop_by_hop & 0xFFFFFFFF
        self._tx = node.request_timeout / 1000
        self._spread = Spreader()
        self._me = me.origin_host.lower()
        self._busy_tail = b"".join(
            (
                wire.encode_avp(Avp.ORIGIN_HOST, me.origin_host),
                wire.encode_avp(Avp.ORIGIN_REALM, me.origin_realm),
                wire.encode_u32_avp(Avp.RESULT_CODE, ResultCode.TOO_BUSY),
                wire.encode_avp(Avp.ERROR_REPORTING_HOST, me.origin_host, flags=0),
                wire.encode_avp(Avp.ERROR_MESSAGE, b"overloaded: request shed", flags=0),
            )
        )
        self._stats: Counter[str] = Counter()
        self._relayed_requests = 0  # the two per-message counts: ints, not Counter keys
        self._relayed_answers = 0
        self._shed = 0
        self.latency = Histogram()
        """Relay latency: request in -> answer out, in seconds."""
        self.requests: dict[int, int] = {}
        """Requests received from clients, by command code (OTHER beyond MAX_LABELS)."""
        self.answers: dict[tuple[int, int, str], int] = {}
        """Answers sent to clients: (command, result code, 'relayed' or 'local')."""
        self._hot: Any = None
        """_speedups.RelayHot on these same tables, or None (pure Python)."""
        if _c is not None:
            self._hot = _c.RelayHot(
                self._pending,
                self.peers,
                self.table.cache,
                self.requests,
                self.answers,
                self.latency,
                Send,
                self._me,
                self._tx,
                node.max_pending,
                self._next_hbh,
                node.redirect is _FOLLOW,
            )
            self._hot.by_host = self._by_host

    @property
    def hot(self) -> Any:
        """_speedups.RelayHot on the relay's tables, or None (pure Python)."""
        return self._hot

    @property
    def stats(self) -> Counter[str]:
        """Event counts by name: relayed_requests, answered_locally_3002, unmatched_answers, ...
        (the live Counter: others add their own events to it)."""
        hot = self._hot
        from_c = (hot.relayed_requests, hot.relayed_answers) if hot is not None else (0, 0)
        self._stats["relayed_requests"] = self._relayed_requests + from_c[0]
        self._stats["relayed_answers"] = self._relayed_answers + from_c[1]
        self._stats["shed_3004"] = self._shed
        if hot is not None and hot.hot_path_in_c + hot.hot_path_to_python:
            # Which way the endpoints' Direct (_direct.c) sent the messages it was handed.
            self._stats["hot_path_in_c"] = hot.hot_path_in_c
            self._stats["hot_path_to_python"] = hot.hot_path_to_python
        return self._stats

    # --- peers ----------------------------------------------------------------------

    def peer_open(self, name: str, origin_host: bytes, outbound_streams: int) -> None:
        record = wire.encode_avp(Avp.ROUTE_RECORD, origin_host)
        self.peers[name] = _new_peer(origin_host.lower(), outbound_streams, route_record=record)
        self._by_host[origin_host.lower()] = name

    def peer_usable(
        self, name: str, usable: bool, now: float, move_pending: bool = True
    ) -> list[Send]:
        """The watchdog's verdict: on failover, move the peer's pending requests away
        (not when the peer is only closing: its answers in flight still come)."""
        peer = self.peers.get(name)
        if peer is None or peer.usable == usable:
            return []
        peer.usable = usable
        return self._fail_over(name, now) if not usable and move_pending else []

    def peer_closed(self, name: str, now: float) -> list[Send]:
        peer = self.peers.pop(name, None)
        if peer is not None and self._by_host.get(peer.host) == name:
            del self._by_host[peer.host]
        return self._fail_over(name, now)

    def set_routes(self, routes: tuple[DiameterRoute, ...]) -> None:
        self.table = RealmTable(routes)
        if self._hot is not None:
            self._hot.cache = self.table.cache

    def pending_count(self) -> int:
        return len(self._pending)

    def _usable(self, name: str) -> Usable:
        peer = self.peers.get(name)
        if peer is None or not peer.usable:
            return _DOWN
        return _BUSY if peer.pending >= self.node.max_pending else _YES

    # --- requests ---------------------------------------------------------------------

    def _take_hbh(self) -> int:
        """A fresh hop-by-hop id (RelayHot keeps the counter when it is there)."""
        if self._hot is not None:
            return self._hot.take_hbh()  # type: ignore[no-any-return]
        hbh = self._next_hbh
        self._next_hbh = (hbh + 1) & 0xFFFFFFFF
        return hbh

    def on_request(self, origin: str, data: bytes, now: float) -> list[Send]:
        hot = self._hot
        if hot is not None:
            sends = hot.request(origin, data, now)
            if sends is not None:
                return sends  # type: ignore[no-any-return]
        try:
            meta = wire.scan(data)
        except wire.DiameterError as exc:
            self._stats[f"malformed_{exc.result_code}"] += 1
            return self._refuse_raw(origin, data, exc)
        header = meta.header
        count = self.requests.get(header.code)
        if count is not None:
            self.requests[header.code] = count + 1
        else:
            _count_new(self.requests, header.code)
        # The usual request: proxiable, routed by realm, not seen here before.
        usual = (
            header.flags & FLAG_PROXIABLE
            and meta.destination_host is None
            and not meta.route_records
            and meta.destination_realm is not None
            and (meta.origin_host is None or meta.origin_host.lower() != self._me)
        )
        if not usual:
            refusal = self._check(meta)
            if refusal is not None:
                return self._answer_locally(origin, meta, *refusal)
        target = self._choose(meta, origin, (origin,))
        if isinstance(target, NoPeer):
            return self._answer_locally(origin, meta, *_FAILURES[target])
        # One copy: new length, new hop-by-hop id, Route-Record appended.
        hbh = self._take_hbh()
        record = self.peers[origin].route_record
        size = (len(data) + len(record)).to_bytes(3, "big")
        msg = b"".join((data[:1], size, data[4:12], _U32.pack(hbh), data[16:], record))
        self._pending[hbh] = _new_pending(
            origin, header.hop_by_hop, target, msg, meta, now + self._tx, now
        )
        peer = self.peers[target]
        peer.pending += 1
        self._relayed_requests += 1
        outbound = peer.outbound
        return [Send(target, msg, self._stream(meta, outbound) if outbound > 1 else 0)]

    def _check(self, meta: wire.Scanned) -> tuple[int, str, bytes] | None:
        """Why this node must answer the request itself, if it must."""
        me = self._me
        if meta.destination_host is not None and meta.destination_host.lower() == me:
            return ResultCode.APPLICATION_UNSUPPORTED, "a relay serves no application", b""
        if (meta.route_records and me in (r.lower() for r in meta.route_records)) or (
            meta.origin_host is not None and meta.origin_host.lower() == me
        ):
            return ResultCode.LOOP_DETECTED, "this request has passed through here", b""
        if meta.destination_realm is None:
            missing = wire.encode_avp(Avp.DESTINATION_REALM, b"")
            return ResultCode.MISSING_AVP, "Destination-Realm missing", missing
        if not meta.header.flags & 0x40:  # P bit: a relay must not forward it
            return ResultCode.UNABLE_TO_DELIVER, "request is not proxiable", b""
        return None

    def _choose(self, meta: wire.Scanned, origin: str, exclude: tuple[str, ...]) -> str | NoPeer:
        host = meta.destination_host
        if host is not None:
            named = self._by_host.get(host.lower())
            if named is not None and named not in exclude and self._usable(named) is _YES:
                return named
        assert meta.destination_realm is not None  # checked before
        return self.table.choose(
            meta.destination_realm,
            meta.header.app_id,
            meta.origin_realm,
            meta.session_id or meta.header.end_to_end.to_bytes(4, "big"),
            self._usable,
            exclude,
        )

    def _forward(self, p: _Pending, retransmit: bool = False) -> Send:
        """Send a pending request again (redirect, failover) under a fresh hop-by-hop id;
        with the T flag after a failover or timeout (RFC 6733 5.5.4)."""
        hbh = self._take_hbh()
        msg = bytearray(p.request)
        wire.set_hop_by_hop(msg, hbh)
        if retransmit:
            wire.set_retransmit(msg)
        p.request = bytes(msg)
        self._pending[hbh] = p
        target = self.peers[p.target]
        target.pending += 1
        return Send(p.target, p.request, self._stream(p.meta, target.outbound))

    def _stream(self, meta: wire.Scanned, outbound: int) -> int:
        """The session's stream (callers on the hot path skip the call for one stream:
        TCP, or an association with one outbound stream, where it is always 0)."""
        if meta.session_id is not None:
            return session_stream(meta.session_id, outbound)
        return self._spread.stream(outbound)

    def too_busy(self, origin: str, data: bytes) -> list[Send]:
        """Overload: answer a request 3004 (busy_answer), on its session's stream."""
        reply = self.busy_reply(origin, data)
        return [] if reply is None else [Send(origin, reply[0], reply[1])]

    def busy_reply(self, origin: str, data: bytes) -> tuple[bytes, int] | None:
        """too_busy without the output object (SCTP sheds at the read): the 3004 answer
        and its session's stream towards `origin`; None if `data` is not a request."""
        peer = self.peers.get(origin)
        if peer is None or len(data) < HEADER_LEN or not data[4] & FLAG_REQUEST:
            return None
        answer = self.busy_answer(data)
        _, value = wire.leading_session_id(data)
        stream = (
            session_stream(value, peer.outbound) if value else self._spread.stream(peer.outbound)
        )
        return answer, stream

    @property
    def busy_tail(self) -> bytes:
        """The AVPs after a 3004's Session-Id (for shedding in bulk, in C)."""
        return self._busy_tail

    def count_shed(self, n: int) -> None:
        """Requests answered 3004 in bulk (their answers are counted by command there)."""
        self._shed += n

    def busy_answer(self, data: bytes) -> bytes:
        """The 3004 answer to a request (at least a header, the R bit set), built from its
        header and first AVP alone.

        Shedding must cost a fraction of relaying, or the excess starves the goodput:
        nothing is scanned, the answer is the header, the Session-Id (first AVP, as
        RFC 6733 8.8 asks of requests) and a tail built once. Proxy-Info is not
        copied on this path.
        """
        self._shed += 1
        key = (int.from_bytes(data[5:8], "big"), _TOO_BUSY, "local")
        count = self.answers.get(key)
        if count is not None:
            self.answers[key] = count + 1
        else:
            _count_new(self.answers, key, (OTHER, OTHER, "local"))
        return wire.busy_answer(data, self._busy_tail)

    # --- answers ----------------------------------------------------------------------

    def on_answer(self, peer: str, data: bytes, now: float) -> list[Send]:
        """The hot path of answers: the header's few fields, the pending entry, one copy."""
        hot = self._hot
        if hot is not None:
            sends = hot.answer(peer, data, now)
            if sends is not None:
                return sends  # type: ignore[no-any-return]
        if len(data) < HEADER_LEN or _U32.unpack_from(data)[0] != _VERSION_1 | len(data):
            try:
                wire.parse_header(data)  # to name what is wrong
            except wire.DiameterError as exc:  # nobody to answer an answer: counted, dropped
                self._stats[f"malformed_answer_{exc.result_code}"] += 1
            return []
        hbh = _U32.unpack_from(data, 12)[0]
        p = self._pending.get(hbh)
        if p is None or p.target != peer:
            self._stats["unmatched_answers"] += 1
            return []
        if data[4] & FLAG_ERROR and self.node.redirect is _FOLLOW:
            redirected = self._follow_redirect(hbh, p, data, now)
            if redirected is not None:
                return [redirected]
        self._done(hbh, p)
        origin = self.peers.get(p.origin)
        if origin is None:
            self._stats["answers_for_gone_clients"] += 1
            return []
        self._relayed_answers += 1
        self.latency.observe(now - p.received)
        self._count_answer(p.meta.header.code, wire.result_code(data), "relayed")
        msg = b"".join((data[:12], _U32.pack(p.origin_hbh), data[16:]))
        outbound = origin.outbound
        return [Send(p.origin, msg, self._stream(p.meta, outbound) if outbound > 1 else 0)]

    def _done(self, hbh: int, p: _Pending) -> None:
        del self._pending[hbh]
        target = self.peers.get(p.target)
        if target is not None:
            target.pending -= 1

    def _follow_redirect(self, hbh: int, p: _Pending, data: bytes, now: float) -> Send | None:
        """3006 with a Redirect-Host that is a usable peer of ours: send the request there."""
        if p.redirected:
            return None
        try:
            answer = wire.scan(data)
        except wire.DiameterError:
            return None
        if answer.result_code != ResultCode.REDIRECT_INDICATION:
            return None
        for uri in answer.redirect_hosts:
            name = self._by_host.get(wire.uri_host(uri).lower())
            if name is not None and name != p.origin and self._usable(name) is Usable.YES:
                self._done(hbh, p)
                # A fresh Tx also keeps the pending table in deadline order.
                p.target, p.redirected, p.deadline = name, True, now + self._tx
                self._stats["redirects_followed"] += 1
                return self._forward(p)
        return None

    # --- failures -----------------------------------------------------------------------

    def _fail_over(self, failed: str, now: float) -> list[Send]:
        out: list[Send] = []
        for hbh, p in list(self._pending.items()):
            if p.target == failed:
                self._done(hbh, p)
                out += self._resend(p, now, "failover")
        return out

    def _resend(self, p: _Pending, now: float, why: str) -> list[Send]:
        """Re-send to an alternate peer with the T flag, or answer 3002 to the client."""
        alternate = self._choose(p.meta, p.origin, (p.origin, p.target))
        if isinstance(alternate, NoPeer) or p.resent:
            self._stats[f"{why}_unanswerable"] += 1
            code, text = ResultCode.UNABLE_TO_DELIVER, f"{why}: no alternate peer"
            if isinstance(alternate, NoPeer) and alternate is NoPeer.ALL_BUSY:
                code = ResultCode.TOO_BUSY
            return self._answer_locally(p.origin, _as_origin(p), code, text, b"")
        self._stats[f"{why}_resent"] += 1
        p.target, p.resent, p.deadline = alternate, True, now + self._tx
        return [self._forward(p, retransmit=True)]

    def on_timer(self, now: float) -> list[Send]:
        """Tx expiry: the oldest pending requests first (dict order is deadline order)."""
        out: list[Send] = []
        while self._pending:
            hbh, p = next(iter(self._pending.items()))
            if p.deadline > now:
                break
            self._done(hbh, p)
            out += self._resend(p, now, "timeout")
        return out

    def next_deadline(self) -> float | None:
        for p in self._pending.values():
            return p.deadline
        return None

    # --- local answers ------------------------------------------------------------------

    def _answer_locally(
        self, origin: str, meta: wire.Scanned, code: int, text: str, failed: bytes
    ) -> list[Send]:
        self._stats[f"answered_locally_{code}"] += 1
        self._count_answer(meta.header.code, code, "local")
        peer = self.peers.get(origin)
        if peer is None:
            return []
        answer = local.error_answer(self.me, meta, code, text, failed)
        return [Send(origin, answer, self._stream(meta, peer.outbound))]

    def _count_answer(self, command: int, result: int | None, source: str) -> None:
        key = (command, OTHER if result is None else result, source)
        count = self.answers.get(key)
        if count is not None:
            self.answers[key] = count + 1
        else:
            _count_new(self.answers, key, (OTHER, OTHER, source))

    def _refuse_raw(self, origin: str, data: bytes, exc: wire.DiameterError) -> list[Send]:
        """A request whose AVPs cannot be walked: answer from its header (and the
        Session-Id, when it comes first and is whole)."""
        header = _loose_header(data)
        if header is None or not header.is_request:
            return []
        meta = wire.Scanned(header, session_id=wire.leading_session_id(data)[1] or None)
        return self._answer_locally(origin, meta, exc.result_code, str(exc), exc.failed_avp)


def _count_new(counts: dict[Any, int], key: Any, overflow: Any = OTHER) -> None:
    """Count a key seen for the first time: under its own label while there are fewer
    than MAX_LABELS, else under `overflow` (bounded, whatever codes peers send)."""
    if len(counts) >= MAX_LABELS:
        key = overflow
    counts[key] = counts.get(key, 0) + 1


def _as_origin(p: _Pending) -> wire.Scanned:
    """The request as the client sent it: its hop-by-hop id, for a local answer."""
    header = p.meta.header._replace(hop_by_hop=p.origin_hbh)
    return wire.Scanned(header, session_id=p.meta.session_id, proxy_infos=p.meta.proxy_infos)


def _loose_header(data: bytes) -> wire.Header | None:
    """Header fields of a message too broken for parse_header, enough to answer it."""
    if len(data) < HEADER_LEN:
        return None
    b = data
    return wire.Header(
        b[0],
        int.from_bytes(b[1:4], "big"),
        b[4] & 0xF0,
        int.from_bytes(b[5:8], "big"),
        int.from_bytes(b[8:12], "big"),
        int.from_bytes(b[12:16], "big"),
        int.from_bytes(b[16:20], "big"),
    )
