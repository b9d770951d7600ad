"""The typed configuration (peers.yaml), with every default. Pure data, no I/O.

Times are milliseconds (ints) once parsed; docs/configuration.md documents each
field with its unit and default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sigmw.config.diameter import DiameterNode, DiameterRoute
from sigmw.sctp.timing import Timers


class Protocol(StrEnum):
    DIAMETER = "diameter"
    M3UA = "m3ua"
    RAW = "raw"


class Transport(StrEnum):
    SCTP = "sctp"
    TCP = "tcp"


class Role(StrEnum):
    CONNECT = "connect"
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True)
class DiameterIdentity:
    host: str
    realm: str


@dataclass(frozen=True, slots=True)
class Streams:
    outbound: int = 16
    inbound: int = 16


@dataclass(frozen=True, slots=True)
class Rto:
    initial: int = 300
    min: int = 240
    """Above the peer's delayed-SACK time (200 ms on most stacks), or SACKs come too late."""
    max: int = 500


@dataclass(frozen=True, slots=True)
class Heartbeat:
    interval: int = 200
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Init:
    max_attempts: int = 4
    max_timeout: int = 1000


@dataclass(frozen=True, slots=True)
class Failback:
    after: int = 5000
    """Time the configured primary must stay reachable before traffic returns (0: never)."""


@dataclass(frozen=True, slots=True)
class SctpParams:
    """Per-peer SCTP timing. Defaults are the fast-failover preset, not the kernel's."""

    streams: Streams = field(default_factory=Streams)
    rto: Rto = field(default_factory=Rto)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    path_max_retrans: int = 2
    assoc_max_retrans: int = 4
    potentially_failed_threshold: int = 0
    init: Init = field(default_factory=Init)
    sack_delay: int = 20
    peer_sack_delay: int = 200
    """The peer's delayed-SACK time, as far as the operator knows (for check-config)."""
    nodelay: bool = True
    receive_buffer: int = 2 * 1024 * 1024
    """Bytes (SO_RCVBUF, as the kernel reports it; 0: the kernel's default). Room to queue
    input while the relay sheds overload: at the kernel's default (208 KiB) a burst fills
    it first, the kernel drops, and the peers' retransmission timers take over."""
    send_buffer: int = 0
    """Bytes (SO_SNDBUF, as the kernel reports it; 0: the kernel's default)."""
    failback: Failback = field(default_factory=Failback)

    def timers(self) -> Timers:
        return Timers(
            rto_initial_ms=self.rto.initial,
            rto_min_ms=self.rto.min,
            rto_max_ms=self.rto.max,
            hb_interval_ms=self.heartbeat.interval,
            hb_enabled=self.heartbeat.enabled,
            path_max_retrans=self.path_max_retrans,
            assoc_max_retrans=self.assoc_max_retrans,
            pf_threshold=self.potentially_failed_threshold,
        )


@dataclass(frozen=True, slots=True)
class Reconnect:
    initial: int = 1000
    max: int = 30000
    jitter: float = 0.2
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    protocol: Protocol
    transport: Transport
    addresses: tuple[str, ...]
    port: int
    sctp: SctpParams = field(default_factory=SctpParams)


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    protocol: Protocol
    transport: Transport
    role: Role
    addresses: tuple[str, ...]
    """Remote addresses; the first is the preferred primary path."""
    port: int
    local_addresses: tuple[str, ...] = ()
    diameter: DiameterIdentity | None = None
    sctp: SctpParams = field(default_factory=SctpParams)
    reconnect: Reconnect = field(default_factory=Reconnect)


@dataclass(frozen=True, slots=True)
class PpidRoute:
    ppid: int
    to: tuple[str, ...]
    """Peer names in failover order."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Readiness:
    min_peers_up: int | None = None
    """Peers that must be up for /readyz; None: 1 if any peer is configured, else 0."""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    diameter: DiameterNode | None = None
    m3ua_point_code: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    node: Node
    listen: tuple[Listener, ...] = ()
    peers: tuple[Peer, ...] = ()
    ppid_routes: tuple[PpidRoute, ...] = ()
    diameter_routes: tuple[DiameterRoute, ...] = ()
    metrics: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 9464))
    admin: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 9465))
    readiness: Readiness = field(default_factory=Readiness)

    def peer(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)
