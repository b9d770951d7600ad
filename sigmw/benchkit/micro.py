"""What the microbenchmarks (benchkit.take, benchkit.direct) share: the two paths timed in
alternating runs, in one process, so that both see the same machine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

Run = Callable[[bool], Coroutine[Any, Any, float]]
"""One timed run: in C (True) or the Python reference (False) -> seconds a unit."""


def best_of_alternating(run: Run, repeat: int) -> tuple[float, float]:
    """`repeat` runs of each, the reference first each time: the best of each (the least
    disturbed), as (reference, C)."""
    reference: list[float] = []
    fast: list[float] = []
    for _ in range(repeat):
        reference.append(asyncio.run(run(False)))
        fast.append(asyncio.run(run(True)))
    return min(reference), min(fast)
