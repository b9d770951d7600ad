"""What the SCTP timers imply: worst-case path and association failure detection.

Model (Linux, RFC 9260 6.3 and 8): every retransmission timeout or missed
heartbeat on a path adds one error and doubles the path's RTO up to RTO.max. A
path is reported unreachable after path_max_retrans + 1 consecutive errors; with
a potentially-failed threshold, traffic already leaves it after pf + 1 errors, but
Linux enters PF only while pf < errors < path_max_retrans, so pf must be at most
path_max_retrans - 2 to have any effect (pf_effective()).
An idle path only learns of errors from heartbeats, sent every interval plus
one RTO with +-50% jitter. The association is lost after assoc_max_retrans + 1
consecutive errors counted over all paths.

These are upper bounds an operator can rely on: the kernel never takes longer
(measured detection on Linux 6.1 was about half the bound), so tests assert
measured <= bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timers:
    """The timers that matter, in milliseconds."""

    rto_initial_ms: int
    rto_min_ms: int
    rto_max_ms: int
    hb_interval_ms: int
    hb_enabled: bool
    path_max_retrans: int
    assoc_max_retrans: int
    pf_threshold: int | None = None


LINUX_DEFAULTS = Timers(
    rto_initial_ms=3000,
    rto_min_ms=1000,
    rto_max_ms=60000,
    hb_interval_ms=30000,
    hb_enabled=True,
    path_max_retrans=5,
    assoc_max_retrans=10,
)


# Fast failover for signaling on a LAN: detection within 2 s, traffic moved within 1 s.
# Used by the demo and the bench tests; measured on Linux 6.1 (docs/testbed.md).
FAST_FAILOVER = Timers(
    rto_initial_ms=200,
    rto_min_ms=100,
    rto_max_ms=500,
    hb_interval_ms=200,
    hb_enabled=True,
    path_max_retrans=2,
    assoc_max_retrans=6,
    pf_threshold=0,
)


def _error_interval_ms(t: Timers, busy: bool) -> int:
    """Longest time between two consecutive errors on a failed path."""
    if busy:
        return t.rto_max_ms  # each T3-rtx timeout, RTO already at most RTO.max
    if not t.hb_enabled:
        raise ValueError("an idle path with heartbeats disabled is never checked")
    return t.hb_interval_ms + t.rto_max_ms + t.rto_max_ms // 2


def path_failure_detection_ms(t: Timers, busy: bool = True) -> int:
    """Worst case from a path failing to ADDR_UNREACHABLE.

    busy: data is flowing (T3-rtx timeouts detect the failure); otherwise only
    heartbeats do. One extra interval covers a timer started just before the cut.
    """
    return (t.path_max_retrans + 2) * _error_interval_ms(t, busy)


def pf_effective(t: Timers) -> bool:
    """Whether the potentially-failed state can ever be reached with these limits."""
    return t.pf_threshold is not None and t.pf_threshold + 1 < t.path_max_retrans


def path_switch_ms(t: Timers, busy: bool = True) -> int:
    """Worst case until new data leaves the failed path (PF threshold, else unreachable)."""
    if t.pf_threshold is None or not pf_effective(t):
        return path_failure_detection_ms(t, busy)
    return (t.pf_threshold + 2) * _error_interval_ms(t, busy)


def association_failure_ms(t: Timers, busy: bool = True) -> int:
    """Worst case from every path failing to COMM_LOST."""
    return (t.assoc_max_retrans + 2) * _error_interval_ms(t, busy)
