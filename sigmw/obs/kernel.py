"""The kernel's view of one SCTP association, read with the path read-out."""

from __future__ import annotations

from dataclasses import dataclass

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.addresses import Address

RESET_ON_READ = ("max_rto_ms",)
"""SCTP_GET_ASSOC_STATS fields the kernel resets when read: not counters."""


@dataclass(frozen=True, slots=True)
class KernelReading:
    conn: tuple[SctpEndpoint, int]
    """(endpoint, association id) it was read from."""
    stats: dict[str, int]
    """SCTP_GET_ASSOC_STATS counters since the association began."""
    primary: Address | None
    """The path the kernel sends on by preference (SCTP_STATUS)."""

    @classmethod
    def of(cls, ep: SctpEndpoint, assoc_id: int) -> KernelReading:
        counters = ep.stats_of(assoc_id).counters
        stats = {k: v for k, v in counters.items() if k not in RESET_ON_READ}
        return cls((ep, assoc_id), stats, ep.status(assoc_id).primary.address)
