"""A fixed-bucket histogram, cheap enough to observe every relayed message.

Bounded memory whatever the traffic; buckets are upper bounds in seconds, laid
out as Prometheus expects (cumulative counts are derived when exported).
"""

from __future__ import annotations

from bisect import bisect_left

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket (not cumulative); the last one is +Inf."""
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.total += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (inf if beyond the last)."""
        rank, seen = q * self.total, 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return 0.0
