"""First routing layer: payload protocol id -> an ordered group of peers.

Sans-IO. A message goes to the first peer of its group that is up (failover
order). Stream mapping keeps every inbound stream on one outbound stream of the
target, so what arrived in order leaves in order, never above the target's
negotiated outbound stream count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sigmw.config.model import PpidRoute


@dataclass(frozen=True, slots=True)
class Forward:
    """Where one message goes."""

    peer: str
    """Target peer name."""
    stream: int
    """Outbound stream on the target's association."""


def map_stream(in_stream: int, outbound_streams: int) -> int:
    """The same inbound stream always lands on the same valid outbound stream."""
    return in_stream if in_stream < outbound_streams else in_stream % outbound_streams


@dataclass
class PpidRouter:
    routes: dict[int, tuple[str, ...]]
    unrouted: dict[int, int] = field(default_factory=dict)
    """Messages dropped per PPID for want of a route."""
    no_live_peer: dict[int, int] = field(default_factory=dict)
    """Messages dropped per PPID because no peer of the group was up."""

    @classmethod
    def from_config(cls, routes: tuple[PpidRoute, ...]) -> PpidRouter:
        return cls({r.ppid: r.to for r in routes})

    def route(
        self, ppid: int, in_stream: int, outbound_of: Callable[[str], int | None]
    ) -> Forward | None:
        """outbound_of(peer) is its negotiated outbound stream count, None when down."""
        group = self.routes.get(ppid)
        if group is None:
            self.unrouted[ppid] = self.unrouted.get(ppid, 0) + 1
            return None
        for peer in group:
            outbound = outbound_of(peer)
            if outbound:
                return Forward(peer, map_stream(in_stream, outbound))
        self.no_live_peer[ppid] = self.no_live_peer.get(ppid, 0) + 1
        return None
