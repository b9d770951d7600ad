"""Reconnect delays: exponential from `initial` to `max`, each scaled by random jitter.

Randomness is injected (a function returning [0, 1)) so tests are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Backoff:
    initial_ms: int
    max_ms: int
    jitter: float
    rng: Callable[[], float]
    attempt: int = 0

    def next_delay_ms(self) -> int:
        """The wait before the next attempt; each call doubles the base up to max."""
        base = min(self.max_ms, self.initial_ms << min(self.attempt, 30))  # doubles
        self.attempt += 1
        factor = 1.0 + self.jitter * (2.0 * self.rng() - 1.0)
        return max(1, round(base * factor))

    def reset(self) -> None:
        """After a success the next failure starts again from `initial`."""
        self.attempt = 0
