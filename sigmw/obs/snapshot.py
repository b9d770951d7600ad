"""One consistent read of the running daemon: peers, associations, paths,
traffic and Diameter state. Built on the event loop at scrape time (so nothing
changes under it), then turned into metrics (collector.py) or JSON (/status).
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sigmw import __version__
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.rxqueue import RxQueue, read_assocs
from sigmw.io.tcp import TcpEndpoint
from sigmw.io.traffic import IN, OUT
from sigmw.obs.events import UNIDENTIFIED, TrafficKey
from sigmw.peers.lifecycle import State
from sigmw.sctp.constants import PathState

if TYPE_CHECKING:
    from sigmw.core.histogram import Histogram
    from sigmw.io.daemon import Daemon
    from sigmw.io.endpoints import Endpoint

USABLE_PATHS = (PathState.ACTIVE, PathState.UNCONFIRMED)


@dataclass
class PathView:
    address: str
    port: int
    state: str
    up: bool
    primary: bool
    srtt_ms: int
    rto_ms: int
    cwnd: int
    mtu: int


@dataclass
class DiameterPeerView:
    state: str
    """RFC 6733 5.6 state."""
    watchdog: str | None
    """RFC 3539 state, once the peer was opened."""
    pending: int
    """Requests relayed to this peer, not yet answered."""


@dataclass
class PeerView:
    name: str
    protocol: str
    transport: str
    role: str
    state: str
    up: bool
    ready: bool
    """Up, and for Diameter also open (CER/CEA done): counts toward /readyz."""
    held: bool
    assoc_id: int | None
    outbound_streams: int | None
    inbound_streams: int | None
    queued: int
    connect_attempts: int
    restarts: int
    messages_in: int
    messages_out: int
    receive_queue: int | None = None
    """SCTP: bytes waiting in the kernel, unread (and the buffer they fill)."""
    receive_buffer: int | None = None
    paths: list[PathView] = field(default_factory=list)
    diameter: DiameterPeerView | None = None


@dataclass
class DiameterView:
    pending: int
    requests: Counter[int]
    answers: Counter[tuple[int, int, str]]
    latency: Histogram
    events: Counter[str]


@dataclass
class Snapshot:
    node: str
    version: str
    python: str
    started_at: float
    uptime_s: float
    ready: bool
    min_peers_up: int
    peers: list[PeerView]
    messages: dict[str, Counter[TrafficKey]]
    """Per peer (UNIDENTIFIED included): messages by (direction, ppid, stream)."""
    octets: dict[str, Counter[TrafficKey]]
    sctp: dict[str, Counter[str]]
    """Per peer: kernel association statistics, past associations plus the current one."""
    dropped: Counter[str]
    malformed: Counter[str]
    diameter: DiameterView | None

    def to_json(self) -> dict[str, Any]:
        """What /status serves: everything but the per-key counters (see /metrics)."""
        return {
            "node": self.node,
            "version": self.version,
            "started_at": self.started_at,
            "uptime_s": round(self.uptime_s, 3),
            "ready": self.ready,
            "min_peers_up": self.min_peers_up,
            "peers": [asdict(p) for p in self.peers],
            "dropped": dict(self.dropped),
            "malformed": dict(self.malformed),
            "diameter": None
            if self.diameter is None
            else {
                "pending": self.diameter.pending,
                "requests": sum(self.diameter.requests.values()),
                "answers": sum(self.diameter.answers.values()),
            },
        }


def take(d: Daemon, now: float, wall: float) -> Snapshot:
    """Read the daemon; `now` is the loop clock, `wall` Unix time."""
    messages = {p: Counter(c) for p, c in d.totals.messages.items()}
    octets = {p: Counter(c) for p, c in d.totals.octets.items()}
    sctp = {p: Counter(c) for p, c in d.totals.sctp.items()}
    _add_live(d, messages, octets)
    for name, reading in d.kernel.items():
        sctp.setdefault(name, Counter()).update(reading.stats)
    queues = read_assocs() if any(isinstance(ep, SctpEndpoint) for ep in _endpoints(d)) else {}
    peers = [_peer(d, name, messages.get(name, Counter()), queues) for name in d.manager.peers]
    return Snapshot(
        node=d.config.node.name,
        version=__version__,
        python=platform.python_version(),
        started_at=d.started_at,
        uptime_s=wall - d.started_at,
        ready=sum(p.ready for p in peers) >= d.min_peers_up(),
        min_peers_up=d.min_peers_up(),
        peers=peers,
        messages=messages,
        octets=octets,
        sctp=sctp,
        dropped=_dropped(d),
        malformed=_malformed(d),
        diameter=_diameter(d),
    )


def _add_live(
    d: Daemon, messages: dict[str, Counter[TrafficKey]], octets: dict[str, Counter[TrafficKey]]
) -> None:
    """The counts of associations still up, under the peer they belong to."""
    owner = {conn: name for name, conn in d.where.items()}
    for ep in _endpoints(d):
        for assoc, counts in ep.traffic.by_association().items():
            name = owner.get((ep, assoc), UNIDENTIFIED)
            m, o = messages.setdefault(name, Counter()), octets.setdefault(name, Counter())
            for key, (n, size) in counts.items():
                m[key] += n
                o[key] += size


def readiness(d: Daemon) -> tuple[int, int, int]:
    """(peers ready, peers configured, peers needed) for /readyz, without a snapshot."""
    ready = sum(is_ready(d, name) for name in d.manager.peers)
    return ready, len(d.manager.peers), d.min_peers_up()


def is_ready(d: Daemon, name: str) -> bool:
    """Up, and for a Diameter peer also open (CER/CEA done)."""
    if d.manager.peers[name].state is not State.UP:
        return False
    svc = d.diameter
    return svc is None or name not in svc.core.slots or svc.core.is_open(name)


def _endpoints(d: Daemon) -> tuple[Endpoint, ...]:
    return (*d.listeners.values(), *d.dialers.values())


def _peer(
    d: Daemon, name: str, traffic: Counter[TrafficKey], queues: dict[tuple[int, int], RxQueue]
) -> PeerView:
    rt = d.manager.peers[name]
    cfg = rt.config
    found = d.where.get(name) if rt.state is State.UP else None
    queue = None
    if found is not None and isinstance(found[0], SctpEndpoint):
        queue = queues.get((os.fstat(found[0].sock.fileno()).st_ino, found[1]))
    assoc = found[0].associations.get(found[1]) if found else None
    up = rt.state is State.UP
    diameter = _diameter_peer(d, name)
    return PeerView(
        name=name,
        protocol=cfg.protocol.value,
        transport=cfg.transport.value,
        role=cfg.role.value,
        state=rt.state.value,
        up=up,
        ready=is_ready(d, name),
        held=rt.held,
        assoc_id=rt.assoc_id if up else None,
        outbound_streams=assoc.outbound_streams if assoc else None,
        inbound_streams=assoc.inbound_streams if assoc else None,
        queued=found[0].queued(found[1]) if found else 0,
        connect_attempts=d.events.connect_attempts[name],
        restarts=d.events.restarts[name],
        messages_in=sum(n for (direction, _, _), n in traffic.items() if direction == IN),
        messages_out=sum(n for (direction, _, _), n in traffic.items() if direction == OUT),
        receive_queue=queue.queued if queue else None,
        receive_buffer=queue.rcvbuf if queue else None,
        paths=_paths(d, name) if up else [],
        diameter=diameter,
    )


def _paths(d: Daemon, name: str) -> list[PathView]:
    rt = d.manager.peers[name]
    reading = d.kernel.get(name)
    primary = reading.primary if reading else None
    if primary is None and rt.paths is not None:
        primary = rt.paths.current
    views = []
    for (host, port), p in sorted(rt.last_readout.items()):
        state = PathState(p.state) if p.state in PathState._value2member_map_ else None
        views.append(
            PathView(
                address=host,
                port=port,
                state=state.name if state else str(p.state),
                up=state in USABLE_PATHS,
                primary=primary == (host, port),
                srtt_ms=p.srtt_ms,
                rto_ms=p.rto_ms,
                cwnd=p.cwnd,
                mtu=p.mtu,
            )
        )
    return views


def _diameter_peer(d: Daemon, name: str) -> DiameterPeerView | None:
    svc = d.diameter
    slot = svc.core.slots.get(name) if svc is not None else None
    if svc is None or slot is None:
        return None
    relay_peer = svc.core.relay.peers.get(name)
    watchdog = svc.core.watchdog_state(name)
    return DiameterPeerView(
        state=slot.fsm.state.value,
        watchdog=watchdog.value if watchdog else None,
        pending=relay_peer.pending if relay_peer else 0,
    )


def _diameter(d: Daemon) -> DiameterView | None:
    if d.diameter is None:
        return None
    relay = d.diameter.core.relay
    return DiameterView(
        pending=relay.pending_count(),
        requests=Counter(relay.requests),
        answers=Counter(relay.answers),
        latency=relay.latency,
        events=Counter(relay.stats),
    )


def _dropped(d: Daemon) -> Counter[str]:
    """Messages not forwarded, by why (PPID routing; Diameter answers for itself)."""
    out: Counter[str] = Counter()
    out["no_route"] = sum(d.router.unrouted.values())
    out["no_live_peer"] = sum(d.router.no_live_peer.values())
    out["forward_failed"] = d.forward_failed
    for ep in _endpoints(d):
        if isinstance(ep, SctpEndpoint):
            ep.sync_sender()  # the 3004 sender thread's failures, up to now
            out["oversize"] += ep.stats.oversize_dropped
            out["forward_failed"] += ep.stats.send_failed  # coalesced sends, gone at the flush
    return out


def _malformed(d: Daemon) -> Counter[str]:
    """Malformed input by kind: Diameter result codes, TCP framing, bad notifications."""
    out: Counter[str] = Counter()
    if d.diameter is not None:
        for key, n in d.diameter.core.relay.stats.items():
            if key.startswith("malformed_"):
                out[key.removeprefix("malformed_")] += n
    for ep in _endpoints(d):
        if isinstance(ep, TcpEndpoint):
            out["tcp_framing"] += ep.stats.framing_errors
        elif isinstance(ep, SctpEndpoint):
            out["sctp_notification"] += ep.stats.bad_notifications
    out["daemon_input_error"] = d.events.input_errors
    return out
