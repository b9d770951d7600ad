"""Which peer address to send to: pin the configured primary, fail over to the best
alternate when it fails, and fail back only after it has been stable for a while.

Linux moves traffic off a failed primary by itself but returns the moment the
path answers again, so a flapping link drags traffic back and forth. Setting the
alternate as primary at failover and the configured one back after `failback_ms`
of stability avoids that. Pure: events and a clock in, decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sigmw.sctp.addresses import Address
from sigmw.sctp.constants import PathState, PeerAddrState

USABLE = (PathState.ACTIVE, PathState.UNCONFIRMED)
_FROM_EVENT = {
    PeerAddrState.ADDR_AVAILABLE: PathState.ACTIVE,
    PeerAddrState.ADDR_CONFIRMED: PathState.ACTIVE,
    PeerAddrState.ADDR_UNREACHABLE: PathState.INACTIVE,
    PeerAddrState.ADDR_POTENTIALLY_FAILED: PathState.PF,
    PeerAddrState.ADDR_ADDED: PathState.UNCONFIRMED,
}


@dataclass(frozen=True, slots=True)
class PrimaryChoice:
    """Tell the kernel to send to this peer address by preference."""

    address: Address
    reason: str
    """'failover' or 'failback'."""


@dataclass
class PathSelector:
    """Primary-path decisions for one association."""

    preferred: Address
    """The configured primary (first configured address)."""
    failback_ms: int
    order: list[Address]
    """All peer addresses in configuration order (tie-break)."""
    states: dict[Address, PathState] = field(default_factory=dict)
    srtt_ms: dict[Address, int] = field(default_factory=dict)
    current: Address | None = None
    failback_at: float | None = None
    failovers: int = 0
    failbacks: int = 0

    def __post_init__(self) -> None:
        self.current = self.preferred
        for address in self.order:
            self.states.setdefault(address, PathState.ACTIVE)

    def on_event(self, address: Address, event: PeerAddrState, now: float) -> list[PrimaryChoice]:
        if event is PeerAddrState.ADDR_REMOVED:
            self.states.pop(address, None)
            return self._decide(now)
        state = _FROM_EVENT.get(event)
        if state is None:  # MADE_PRIM: our own doing, nothing to decide
            return []
        self.states[address] = state
        return self._decide(now)

    def on_readout(
        self, address: Address, state: PathState, srtt_ms: int, now: float
    ) -> list[PrimaryChoice]:
        """Periodic SCTP_GET_PEER_ADDR_INFO: catches changes whose event was missed."""
        self.states[address] = state
        self.srtt_ms[address] = srtt_ms
        return self._decide(now)

    def on_timer(self, now: float) -> list[PrimaryChoice]:
        return self._decide(now)

    def next_deadline(self) -> float | None:
        return self.failback_at

    def _usable(self, address: Address) -> bool:
        return self.states.get(address) in USABLE

    def _decide(self, now: float) -> list[PrimaryChoice]:
        if self.current is not None and not self._usable(self.current):
            best = self._best_alternate()
            self.failback_at = None
            if best is not None and best != self.current:
                self.current = best
                self.failovers += 1
                return [PrimaryChoice(best, "failover")]
        if self.current != self.preferred:
            if not self._usable(self.preferred):
                self.failback_at = None
            elif self.failback_ms > 0 and self.failback_at is None:
                self.failback_at = now + self.failback_ms / 1000
            elif self.failback_at is not None and now >= self.failback_at:
                self.failback_at = None
                self.current = self.preferred
                self.failbacks += 1
                return [PrimaryChoice(self.preferred, "failback")]
        return []

    def _best_alternate(self) -> Address | None:
        """The usable path with the lowest smoothed RTT, configuration order breaking ties."""
        usable = [a for a in self.order if self._usable(a)]
        if not usable:
            return None
        return min(usable, key=lambda a: (self.srtt_ms.get(a, 0), self.order.index(a)))
