"""How a protocol (Diameter, M3UA) plugs into the daemon for the peers that speak it.

The daemon keeps associations and routes by PPID; a handler adds the protocol's
own conversation on top: its greeting when an association comes up (CER,
ASPUP), its answers to messages it consumes (DWA, ASPAC-ACK), and its goodbye
before the SCTP SHUTDOWN on SIGTERM (DPR, ASPDN). Messages a handler does not
consume fall through to PPID routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sigmw.io.transport import Message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a handler wants sent on the peer's association."""

    data: bytes
    """One whole protocol message."""
    stream: int
    """Stream (0 for management)."""
    ppid: int
    """Payload protocol id."""


class ProtocolHandler(Protocol):
    """Implemented once per protocol; the daemon calls it for that protocol's peers."""

    ppids: frozenset[int]
    """Payloads it takes (Diameter: 46 and 0, as freeDiameter sends 0; M3UA: 3)."""

    def on_up(self, peer: str, outbound_streams: int) -> list[Outgoing]:
        """The association to `peer` is up (or restarted): the protocol's greeting."""
        ...

    def on_message(self, peer: str, msg: Message) -> list[Outgoing] | None:
        """A message from `peer`: replies if consumed, None to route it by PPID."""
        ...

    def goodbye(self, peer: str) -> list[Outgoing]:
        """Shutting down: what to send before the SCTP SHUTDOWN."""
        ...

    def goodbye_done(self, peer: str) -> bool:
        """Whether the peer has acknowledged the goodbye (the daemon waits, bounded)."""
        ...

    def on_down(self, peer: str) -> None:
        """The association to `peer` is gone."""
        ...
