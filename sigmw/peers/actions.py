"""What the peer manager asks the I/O layer to do. Frozen, slotted, one doc line a field."""

from __future__ import annotations

from dataclasses import dataclass, field

from sigmw.sctp.addresses import Address


@dataclass(frozen=True, slots=True)
class Connect:
    """Start an association to a connect-role peer."""

    peer: str
    """Configured peer name."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Gracefully shut an association down (SCTP SHUTDOWN)."""

    peer: str
    """Peer the association belongs to."""
    assoc_id: int
    """The association."""


@dataclass(frozen=True, slots=True)
class Tune:
    """Apply the peer's SCTP settings to the association, read them back, warn on clamps."""

    peer: str
    """Peer whose settings apply."""
    assoc_id: int
    """The association."""


@dataclass(frozen=True, slots=True)
class SetPrimary:
    """Send to this peer address by preference."""

    peer: str
    """The peer."""
    assoc_id: int
    """Its association."""
    address: Address
    """The path to prefer."""
    reason: str
    """'initial', 'failover' or 'failback'."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """Abort an association from an address no accept-role peer lists (and count it)."""

    listener: str
    """Listener it arrived on."""
    assoc_id: int
    """The association to abort."""
    remote: tuple[Address, ...]
    """The addresses it came from."""


@dataclass(frozen=True, slots=True)
class Log:
    """A structured state-change record."""

    event: str
    """What happened, e.g. 'peer_up', 'path_failover'."""
    fields: dict[str, object] = field(default_factory=dict)
    """Details: peer, association, address, delay, ..."""


Output = Connect | Shutdown | Tune | SetPrimary | Refuse | Log
