"""The Diameter node (sans-IO): peer connections, capabilities exchange, election,
watchdog and disconnect around the relay.

Connections are named by the adapter (`ConnId`); peers by their names in
peers.yaml. A connection we dialled belongs to its peer from the start; one a
peer dialled is anonymous until its CER names a configured Origin-Host (else it
is answered 3010 and closed). Each peer runs the RFC 6733 5.6 state machine
(peer_fsm.TABLE) and, once open, an RFC 3539 watchdog; application messages go
to the relay. Outputs are instructions for the adapter.

Hot path: an application message on an open connection costs a dict look-up,
the relay's work, and no watchdog call: while the watchdog is OKAY, receipt of a
message only re-arms its timer, so the time of the last message is kept and fed
to the watchdog when its timer comes due (the resulting deadline is the same).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from sigmw.config.diameter import DiameterNode, DiameterRoute
from sigmw.diameter import local, wire
from sigmw.diameter.codes import (
    FLAG_REQUEST,
    MANAGEMENT_COMMANDS,
    Command,
    DisconnectCause,
    ResultCode,
)
from sigmw.diameter.peer_fsm import (
    Guard,
    PeerAction,
    PeerEvent,
    PeerFsm,
    PeerFsmError,
    PeerState,
    event_for_message,
    lookup,
)
from sigmw.diameter.relay import Relay, Send
from sigmw.diameter.watchdog import Watchdog, WatchdogAction, WatchdogState
from sigmw.diameter.wire import c_speedups as _c

ConnId = Hashable
ELECTION_LOST = 4003
OPEN_STATES = (PeerState.I_OPEN, PeerState.R_OPEN)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A configured Diameter peer."""

    name: str
    host: str
    """Its Origin-Host, as configured."""
    realm: str
    dials: bool
    """True for role connect: sigmw dials it (it is our initiator connection)."""
    addresses: frozenset[str] = frozenset()
    """Where it may connect from; empty: anywhere."""


@dataclass(frozen=True, slots=True)
class SendOn:
    """Send on a connection not (yet) bound to a peer, or a management message."""

    conn: ConnId
    data: bytes
    stream: int


@dataclass(frozen=True, slots=True)
class CloseConn:
    """Close a connection: gracefully (SCTP SHUTDOWN / TCP FIN) once queued sends left."""

    conn: ConnId
    reason: str


@dataclass(frozen=True, slots=True)
class BindConn:
    """A connection is now the open connection of a configured peer."""

    conn: ConnId
    peer: str


@dataclass(frozen=True, slots=True)
class HoldPeer:
    """The peer asked not to be reconnected (DO_NOT_WANT_TO_TALK_TO_YOU): until reload."""

    peer: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something an operator should see in the log."""

    event: str
    fields: dict[str, object]


Output = Send | SendOn | CloseConn | BindConn | HoldPeer | Note


@dataclass(slots=True)
class _Conn:
    id: ConnId
    outbound: int
    local_ips: list[str]
    peer: str | None = None
    """The peer it belongs to; None while anonymous or once let go."""
    deadline: float | None = None
    """An anonymous connection must deliver its CER by then."""
    remote_ips: frozenset[str] = frozenset()
    """The peer's addresses (checked against the configuration of the CER's host)."""
    fast: _Slot | None = None
    """Its peer while it is that peer's open connection with the watchdog OKAY: the hot path."""
    let_go: bool = False
    """Closed by us: what still arrives on it (an election loser's 4003 CEA) is dropped."""


@dataclass(slots=True)
class _Slot:
    info: PeerInfo
    fsm: PeerFsm = field(default_factory=PeerFsm)
    i_conn: ConnId | None = None
    """Our initiator connection (we dialled)."""
    r_conn: ConnId | None = None
    """The responder connection (the peer dialled and sent a CER on it)."""
    r_cer: wire.Header | None = None
    """Header of that CER, for our CEA."""
    r_caps: local.Capabilities | None = None
    cea_caps: local.Capabilities | None = None
    """The CEA received on our initiator connection."""
    conn: ConnId | None = None
    """The open connection (kept while Closing, for the DPR)."""
    is_open: bool = False
    watchdog: Watchdog | None = None
    last_rx: float = 0.0
    """When the last application message arrived (fed to the watchdog lazily)."""
    fed_rx: float = 0.0
    deadline: float | None = None
    """When the state's Timeout event fires (CEA wait, DPA wait, peer's disconnect)."""
    dpr_cause: int | None = None
    """Disconnect-Cause of a DPR the peer sent."""


class DiameterCore:
    def __init__(
        self,
        me: local.LocalIdentity,
        node: DiameterNode,
        peers: list[PeerInfo],
        routes: tuple[DiameterRoute, ...],
        rng: Callable[[], float],
        first_id: int = 1,
    ) -> None:
        self.me = me
        self.node = node
        self.rng = rng
        self.relay = Relay(me, node, routes, first_id)
        self.slots: dict[str, _Slot] = {}
        self._by_host: dict[bytes, str] = {}
        self.conns: dict[ConnId, _Conn] = {}
        self._next_id = first_id
        self.goodbye_cause = DisconnectCause.REBOOTING
        self.reconfigure(peers, routes)

    def reconfigure(self, peers: list[PeerInfo], routes: tuple[DiameterRoute, ...]) -> None:
        """Reload: new peers get a slot, removed or changed ones lose theirs (the daemon
        closes their connections), the routing table is replaced."""
        wanted = {p.name: p for p in peers}
        for name in list(self.slots):
            if wanted.get(name) != self.slots[name].info:
                del self.slots[name]
        for c in self.conns.values():  # connections of removed peers: the daemon closes them
            if c.peer is not None and c.peer not in self.slots:
                c.peer, c.fast = None, None
        for p in peers:
            self.slots.setdefault(p.name, _Slot(p))
        self._by_host = {p.host.lower().encode(): p.name for p in peers}
        self.relay.set_routes(routes)

    def _ids(self) -> tuple[int, int]:
        """Hop-by-hop and end-to-end ids for a message this node originates."""
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return self._next_id, self._next_id

    # --- connections ------------------------------------------------------------------

    def connected(
        self,
        conn: ConnId,
        peer: str | None,
        outbound: int,
        local_ips: list[str],
        now: float,
        remote_ips: frozenset[str] = frozenset(),
    ) -> list[Output]:
        """A transport connection is up: one we dialled to `peer`, or an accepted one."""
        c = _Conn(conn, outbound, local_ips, remote_ips=remote_ips)
        self.conns[conn] = c
        if peer is None:
            c.deadline = now + self.node.capabilities_timeout / 1000
            return []
        slot = self.slots.get(peer)
        if slot is None or slot.fsm.state is not PeerState.CLOSED:
            return [self._close(conn, "this peer has a connection already")]
        c.peer, slot.i_conn = peer, conn
        out = self._step(slot, PeerEvent.START, now, conn)  # I-Snd-Conn-Req: already dialled
        return out + self._step(slot, PeerEvent.I_RCV_CONN_ACK, now, conn)

    def disconnected(self, conn: ConnId, now: float) -> list[Output]:
        c = self.conns.pop(conn, None)
        if c is None or c.peer is None:
            return []
        slot = self.slots.get(c.peer)
        if slot is None or conn not in (slot.i_conn, slot.r_conn):
            return []
        event = PeerEvent.I_PEER_DISC if conn == slot.i_conn else PeerEvent.R_PEER_DISC
        return self._step(slot, event, now, conn)

    # --- messages ----------------------------------------------------------------------

    def received(self, conn: ConnId, data: bytes, now: float) -> Sequence[Output]:
        c = self.conns.get(conn)
        if c is None:
            return []
        slot = c.fast
        if slot is not None and len(data) >= 20 and data[5:8] not in _MANAGEMENT_CODES:
            slot.last_rx = now  # fed to the watchdog when its timer comes due
            if data[4] & FLAG_REQUEST:
                return self.relay.on_request(slot.info.name, data, now)
            return self.relay.on_answer(slot.info.name, data, now)
        return self._received_slowly(c, conn, data, now)

    def shed(self, conn: ConnId, data: bytes, now: float) -> Sequence[Output]:
        """The input is backing up: requests get a cheap 3004, everything else the
        usual treatment (answers, management and new peers are never shed)."""
        return self.shed_request(conn, data, now) or self.received(conn, data, now)

    def shed_requests(
        self, conn: ConnId, messages: list[bytes], now: float
    ) -> tuple[list[bytes], list[bytes]]:
        """shed_request for a batch read off one TCP connection at once: the 3004 answers
        to write back, and the messages that are not application requests (kept)."""
        c = self.conns.get(conn)
        slot = c.fast if c is not None else None
        if slot is None:
            return [], messages
        slot.last_rx = now
        relay, i, n = self.relay, 0, len(messages)
        answers: list[bytes] = []
        kept: list[bytes] = []
        while i < n:
            if _c is not None:  # the usual requests in C; it stops at a command new here
                i, taken = _c.shed_tcp(messages, i, relay.answers, relay.busy_tail, answers, kept)
                relay.count_shed(taken)
                if i >= n:
                    break
            data = messages[i]
            if len(data) >= 20 and data[4] & FLAG_REQUEST and data[5:8] not in _MANAGEMENT_CODES:
                answers.append(relay.busy_answer(data))
            else:
                kept.append(data)
            i += 1
        return answers, kept

    def shed_request(self, conn: ConnId, data: bytes, now: float) -> list[Send]:
        """A 3004 for an application request on an open connection; [] for anything else."""
        origin = self._shed_origin(conn, data, now)
        return [] if origin is None else self.relay.too_busy(origin, data)

    def busy_reply(self, conn: ConnId, data: bytes, now: float) -> tuple[bytes, int] | None:
        """shed_request without the output object, for shedding at the SCTP read: the 3004
        answer and the stream it goes back on, or None (not an application request on
        an open connection: the message takes the usual way)."""
        origin = self._shed_origin(conn, data, now)
        return None if origin is None else self.relay.busy_reply(origin, data)

    def shed_streams(self, conn: ConnId, now: float) -> int:
        """For shedding in bulk: the outbound streams towards the open peer on `conn`
        (its requests are shed as busy_reply would, and count as traffic from it), or 0
        if `conn` is not an open peer's connection."""
        c = self.conns.get(conn)
        slot = c.fast if c is not None else None
        peer = self.relay.peers.get(slot.info.name) if slot is not None else None
        if slot is None or peer is None:
            return 0
        slot.last_rx = now
        return peer.outbound

    def _shed_origin(self, conn: ConnId, data: bytes, now: float) -> str | None:
        """The peer an application request on an open connection came from (it counts as
        traffic from that peer); None for anything else."""
        c = self.conns.get(conn)
        slot = c.fast if c is not None else None
        request = len(data) >= 20 and data[4] & FLAG_REQUEST and data[5:8] not in _MANAGEMENT_CODES
        if slot is None or not request:
            return None
        slot.last_rx = now
        return slot.info.name

    def _received_slowly(self, c: _Conn, conn: ConnId, data: bytes, now: float) -> list[Output]:
        """Everything but application traffic on an open connection whose watchdog is OKAY."""
        if c.let_go:  # not a new connection's first message: no "no CER first", no 2nd close
            self.relay.stats["after_close"] += 1
            return []
        if len(data) < 20:
            return self._malformed(c, data, "shorter than a Diameter header")
        code = int.from_bytes(data[5:8], "big")
        if c.peer is None:
            return self._first_message(c, data, code, now)
        slot = self.slots[c.peer]
        if code not in MANAGEMENT_COMMANDS and slot.is_open and conn == slot.conn:
            slot.last_rx = now
            wd = slot.watchdog
            if wd is not None and wd.state is not WatchdogState.OKAY:
                acts = wd.received(now, False)
                slot.fed_rx = now
                out = self._watch(slot, acts, now)
                if WatchdogAction.DISCARD in acts:
                    return out
            if data[4] & FLAG_REQUEST:
                return list(self.relay.on_request(c.peer, data, now))
            return list(self.relay.on_answer(c.peer, data, now))
        return self._management(slot, c, data, code, now)

    def _first_message(self, c: _Conn, data: bytes, code: int, now: float) -> list[Output]:
        """The first message of an accepted connection must be a CER (RFC 6733 5.3)."""
        if code != Command.CAPABILITIES_EXCHANGE or not data[4] & FLAG_REQUEST:
            note = Note("no_cer_first", {"conn": str(c.id), "command": code})
            return [note, self._close(c.id, "the first message was not a CER")]
        try:
            cer = wire.scan(data)
            caps = local.capabilities(data)
        except wire.DiameterError as exc:
            return self._refuse_cer(c, data, exc.result_code, str(exc), exc.failed_avp)
        name = self._by_host.get(caps.origin_host.lower())
        if name is None:
            host = caps.origin_host.decode(errors="replace")
            return self._refuse_cer(c, data, ResultCode.UNKNOWN_PEER, f"unknown peer {host}")
        allowed = self.slots[name].info.addresses
        if allowed and c.remote_ips and not c.remote_ips & allowed:
            text = f"{caps.origin_host.decode(errors='replace')} from an address not configured"
            return self._refuse_cer(c, data, ResultCode.UNKNOWN_PEER, text)
        if not local.common_applications(self.me, caps):
            return self._refuse_cer(c, data, ResultCode.NO_COMMON_APPLICATION, "no common app")
        slot = self.slots[name]
        try:
            actions, _ = lookup(slot.fsm.state, PeerEvent.R_CONN_CER, Guard.ACCEPTED)
        except PeerFsmError:
            actions = ()
        if PeerAction.R_ACCEPT not in actions:  # R-Reject: open, or already electing
            return self._refuse_cer(c, data, ELECTION_LOST, "a connection to this peer exists")
        c.peer, c.deadline = name, None
        slot.r_conn, slot.r_caps, slot.r_cer = c.id, caps, cer.header
        return self._step(slot, PeerEvent.R_CONN_CER, now, c.id, cer.header, Guard.ACCEPTED)

    def _refuse_cer(
        self, c: _Conn, data: bytes, code: int, text: str, failed: bytes = b""
    ) -> list[Output]:
        """Answer a CER with a failure CEA, then close: an answer, not a hang-up."""
        self.relay.stats[f"cer_refused_{code}"] += 1
        out: list[Output] = [
            Note("cer_refused", {"conn": str(c.id), "result_code": code, "why": text})
        ]
        header = _loose_header(data)
        if header is not None:
            cea = local.cea(self.me, header, code, c.local_ips, text, failed)
            out.append(SendOn(c.id, cea, 0))
        out.append(self._close(c.id, text))
        return out

    def _malformed(self, c: _Conn, data: bytes, why: str) -> list[Output]:
        self.relay.stats["malformed_short"] += 1
        out: list[Output] = [Note("malformed", {"conn": str(c.id), "why": why, "bytes": len(data)})]
        return out + ([self._close(c.id, why)] if c.peer is None else [])

    def _close(self, conn: ConnId, reason: str) -> CloseConn:
        """Close a connection and let it go: its disconnect will not reach the table."""
        c = self.conns.get(conn)
        if c is not None:
            c.peer, c.deadline, c.fast, c.let_go = None, None, None, True
        return CloseConn(conn, reason)

    # --- management messages -------------------------------------------------------------

    def _management(
        self, slot: _Slot, c: _Conn, data: bytes, code: int, now: float
    ) -> list[Output]:
        try:
            header = wire.parse_header(data)
        except wire.DiameterError as exc:
            self.relay.stats[f"malformed_{exc.result_code}"] += 1
            return [Note("malformed", {"peer": slot.info.name, "why": str(exc)})]
        if code not in MANAGEMENT_COMMANDS and slot.fsm.state is PeerState.CLOSING:
            # In flight when the DPR crossed: answers still reach their clients.
            handle = self.relay.on_request if header.is_request else self.relay.on_answer
            return list(handle(slot.info.name, data, now))
        event = event_for_message(slot.fsm.state, c.id == slot.i_conn, code, header.is_request)
        guard = None
        if code == Command.CAPABILITIES_EXCHANGE and not header.is_request:
            caps = slot.cea_caps = _cea_caps(data)
            ok = caps is not None and caps.result_code == ResultCode.SUCCESS
            ok = ok and caps is not None and local.common_applications(self.me, caps)
            guard = Guard.ACCEPTED if ok else Guard.REFUSED
        elif code == Command.DISCONNECT_PEER and header.is_request:
            slot.dpr_cause = local.disconnect_cause(data)
        return self._step(slot, event, now, c.id, header, guard)

    # --- the peer table in action ------------------------------------------------------

    def _step(
        self,
        slot: _Slot,
        event: PeerEvent,
        now: float,
        conn: ConnId,
        header: wire.Header | None = None,
        guard: Guard | None = None,
    ) -> list[Output]:
        """Fire one event and carry out its row; `header` is the message behind it."""
        before = slot.fsm.state
        try:
            actions = slot.fsm.fire(event, guard)
        except PeerFsmError as exc:
            self.relay.stats["unexpected_events"] += 1
            return [Note("unexpected_event", {"peer": slot.info.name, "detail": str(exc)})]
        out: list[Output] = []
        for action in actions:
            out += self._act(slot, action, now, conn, header)
        return out + self._transition(slot, before, now)

    def _act(
        self, slot: _Slot, action: PeerAction, now: float, conn: ConnId, header: wire.Header | None
    ) -> list[Output]:
        A = PeerAction
        wait = now + self.node.capabilities_timeout / 1000
        if action is A.I_SND_CER and slot.i_conn in self.conns:
            slot.deadline = wait
            ips = self.conns[slot.i_conn].local_ips
            return [SendOn(slot.i_conn, local.cer(self.me, ips, *self._ids()), 0)]
        if action is A.R_SND_CEA and slot.r_conn in self.conns and slot.r_cer is not None:
            ips = self.conns[slot.r_conn].local_ips
            cea = local.cea(self.me, slot.r_cer, ResultCode.SUCCESS, ips)
            return [SendOn(slot.r_conn, cea, 0)]
        if action is A.PROCESS_CEA:
            slot.deadline = None
            return []
        if action is A.ELECT:
            peer_host = slot.r_caps.origin_host if slot.r_caps else b""
            won = slot.fsm.resolve_election(self.me.origin_host, peer_host)
            out: list[Output] = [Note("election", {"peer": slot.info.name, "won": bool(won)})]
            for a in won:
                out += self._act(slot, a, now, conn, header)
            return out
        if action in (A.I_DISC, A.R_DISC, A.ERROR):
            return self._disconnect(slot, action)
        if action in (A.PROCESS_DWR, A.PROCESS_DWA):
            return self._feed_watchdog(slot, now, action is A.PROCESS_DWA)
        if action in (A.I_SND_DWA, A.R_SND_DWA) and header is not None:
            return [SendOn(conn, local.dwa(self.me, header), 0)]
        if action in (A.I_SND_DPA, A.R_SND_DPA) and header is not None:
            slot.deadline = wait  # the DPR's sender closes; if it does not, we do
            return [SendOn(conn, local.dpa(self.me, header), 0)]
        if action in (A.I_SND_DPR, A.R_SND_DPR) and slot.conn is not None:
            slot.deadline = wait
            dpr = local.dpr(self.me, self.goodbye_cause, *self._ids())
            return [SendOn(slot.conn, dpr, 0)]
        return []  # Conn-Req, Accept, Reject, Process-CER, Cleanup: done by the caller

    def _disconnect(self, slot: _Slot, action: PeerAction) -> list[Output]:
        out: list[Output] = []
        if action in (PeerAction.I_DISC, PeerAction.ERROR) and slot.i_conn is not None:
            if slot.i_conn in self.conns:
                out.append(self._close(slot.i_conn, action.value))
            slot.i_conn = None
        if action in (PeerAction.R_DISC, PeerAction.ERROR) and slot.r_conn is not None:
            if slot.r_conn in self.conns:
                out.append(self._close(slot.r_conn, action.value))
            slot.r_conn, slot.r_caps, slot.r_cer = None, None, None
        return out

    def _transition(self, slot: _Slot, before: PeerState, now: float) -> list[Output]:
        after = slot.fsm.state
        if after is before:
            return []
        name = slot.info.name
        out: list[Output] = [
            Note("diameter_state", {"peer": name, "from": before.value, "to": after.value})
        ]
        if after in OPEN_STATES:
            return out + self._opened(slot, now)
        if slot.is_open:  # leaving Open: no new requests; answers in flight still come
            slot.is_open, slot.watchdog = False, None
            self._refresh_fast(slot)
            out += self.relay.peer_usable(name, False, now, move_pending=False)
        if after is PeerState.CLOSED:
            slot.deadline, slot.conn = None, None
            out += self.relay.peer_closed(name, now)
            if slot.dpr_cause == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU:
                out.append(HoldPeer(name))
            slot.dpr_cause = None
        return out

    def _opened(self, slot: _Slot, now: float) -> list[Output]:
        on_i = slot.fsm.state is PeerState.I_OPEN
        conn = slot.i_conn if on_i else slot.r_conn
        caps = slot.cea_caps if on_i else slot.r_caps
        if conn is None or caps is None or conn not in self.conns:
            return [Note("open_without_connection", {"peer": slot.info.name})]
        slot.conn, slot.is_open, slot.deadline = conn, True, None
        self.relay.peer_open(slot.info.name, caps.origin_host, self.conns[conn].outbound)
        tw = self.node.watchdog / 1000
        slot.watchdog = Watchdog(tw, self.rng, min(2.0, tw / 4))
        slot.last_rx = slot.fed_rx = now
        fields: dict[str, object] = {
            "peer": slot.info.name,
            "host": caps.origin_host.decode(errors="replace"),
            "realm": caps.origin_realm.decode(errors="replace"),
            "product": caps.product_name,
            "applications": sorted(caps.applications()),
            "streams": self.conns[conn].outbound,
        }
        out: list[Output] = [BindConn(conn, slot.info.name), Note("diameter_open", fields)]
        return out + self._watch(slot, slot.watchdog.connection_up(now), now)

    # --- watchdog ----------------------------------------------------------------------

    def _feed_watchdog(self, slot: _Slot, now: float, is_dwa: bool) -> list[Output]:
        if slot.watchdog is None:
            return []
        slot.last_rx = slot.fed_rx = now
        return self._watch(slot, slot.watchdog.received(now, is_dwa), now)

    def _watch(self, slot: _Slot, actions: list[WatchdogAction], now: float) -> list[Output]:
        out = self._watch_actions(slot, actions, now)
        self._refresh_fast(slot)
        return out

    def _refresh_fast(self, slot: _Slot) -> None:
        c = self.conns.get(slot.conn) if slot.conn is not None else None
        if c is not None:
            wd = slot.watchdog
            okay = slot.is_open and wd is not None and wd.state is WatchdogState.OKAY
            c.fast = slot if okay and c.peer == slot.info.name else None

    def _watch_actions(
        self, slot: _Slot, actions: list[WatchdogAction], now: float
    ) -> list[Output]:
        name, out = slot.info.name, list[Output]()
        for action in actions:
            if action is WatchdogAction.SEND_DWR and slot.conn is not None:
                out.append(SendOn(slot.conn, local.dwr(self.me, *self._ids()), 0))
            elif action is WatchdogAction.FAILOVER:
                out.append(Note("watchdog_failover", {"peer": name}))
                out += self.relay.peer_usable(name, False, now)
            elif action is WatchdogAction.FAILBACK:
                out.append(Note("watchdog_failback", {"peer": name}))
                out += self.relay.peer_usable(name, True, now)
            elif action is WatchdogAction.CLOSE_CONNECTION and slot.conn is not None:
                # Not _close: the disconnect must reach the table (Peer-Disc -> Closed).
                out += [Note("watchdog_down", {"peer": name}), CloseConn(slot.conn, "watchdog")]
        return out

    def watchdog_state(self, peer: str) -> WatchdogState | None:
        slot = self.slots.get(peer)
        return slot.watchdog.state if slot and slot.watchdog else None

    # --- time and stopping ---------------------------------------------------------------

    def timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        for c in list(self.conns.values()):
            if c.deadline is not None and c.deadline <= now:
                out += [Note("cer_timeout", {"conn": str(c.id)}), self._close(c.id, "no CER")]
        for slot in list(self.slots.values()):
            if slot.deadline is not None and slot.deadline <= now:
                slot.deadline = None
                conn = slot.conn or slot.i_conn or slot.r_conn
                out += self._step(slot, PeerEvent.TIMEOUT, now, conn)
            out += self._watchdog_timer(slot, now)
        return out + list(self.relay.on_timer(now))

    def _watchdog_timer(self, slot: _Slot, now: float) -> list[Output]:
        wd = slot.watchdog
        if wd is None or wd.next_deadline is None or wd.next_deadline > now:
            return []
        out: list[Output] = []
        if slot.last_rx > slot.fed_rx:  # traffic since the timer was set: re-arm from it
            slot.fed_rx = slot.last_rx
            out += self._watch(slot, wd.received(slot.last_rx, False), now)
        return out + self._watch(slot, wd.timer(now), now)

    def next_deadline(self) -> float | None:
        times = [c.deadline for c in self.conns.values() if c.deadline is not None]
        for slot in self.slots.values():
            times.append(slot.deadline) if slot.deadline is not None else None
            if slot.watchdog is not None and slot.watchdog.next_deadline is not None:
                times.append(slot.watchdog.next_deadline)
        relay = self.relay.next_deadline()
        return min([*times, relay] if relay is not None else times, default=None)

    def stop(self, now: float, cause: DisconnectCause = DisconnectCause.REBOOTING) -> list[Output]:
        """DPR to every open peer (RFC 6733 5.4); the table closes each on its DPA."""
        self.goodbye_cause = cause
        out: list[Output] = []
        for slot in self.slots.values():
            if slot.is_open and slot.conn is not None:
                out += self._step(slot, PeerEvent.STOP, now, slot.conn)
        return out

    def closing(self) -> list[str]:
        """Peers still waiting for a DPA (or for the peer to close)."""
        return [n for n, s in self.slots.items() if s.fsm.state is PeerState.CLOSING]

    def is_open(self, peer: str) -> bool:
        slot = self.slots.get(peer)
        return slot is not None and slot.is_open


def _loose_header(data: bytes) -> wire.Header | None:
    """Enough of a header to answer a message too broken for parse_header."""
    if len(data) < 20:
        return None
    return wire.Header(
        data[0],
        int.from_bytes(data[1:4], "big"),
        data[4] & 0xF0,
        int.from_bytes(data[5:8], "big"),
        int.from_bytes(data[8:12], "big"),
        int.from_bytes(data[12:16], "big"),
        int.from_bytes(data[16:20], "big"),
    )


_MANAGEMENT_CODES = frozenset(c.to_bytes(3, "big") for c in MANAGEMENT_COMMANDS)
assert all(c >> 8 == 1 for c in MANAGEMENT_COMMANDS)  # 257, 280, 282: 0x0001xx


def _cea_caps(data: bytes) -> local.Capabilities | None:
    try:
        return local.capabilities(data)
    except wire.DiameterError:
        return None
