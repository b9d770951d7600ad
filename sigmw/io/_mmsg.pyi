# Types of the C module built from _mmsg.c (see that file).
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

def recv_batch(
    fd: int, max_messages: int, slot_size: int
) -> list[tuple[bytes, int, bytes | None, bytes]]: ...
def send_bursts(
    fd: int, bursts: list[list[tuple[bytes, list[tuple[int, int, bytes]]]]], more_flags: int
) -> tuple[int, list[tuple[int, int, int]] | None]: ...
def take_batch(
    batch: Sequence[tuple[bytes, int, bytes | None, object]],
    start: int,
    direct: Callable[[int, int, bytes, float], bool],
    rx: deque[Any],
    counts: dict[tuple[int, int, int, int], list[int]],
    new_cell: Callable[[tuple[int, int, int, int]], list[int]],
    now: float,
) -> tuple[int, int, bool]: ...
