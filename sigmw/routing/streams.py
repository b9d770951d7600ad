"""Session -> SCTP stream: one session always on one stream (ordered), sessions
spread over the others (no head-of-line blocking between them).

Stream 0 is kept for peer management (CER, DWR, DPR; ASPSM). A session's stream
depends only on its key and the association's negotiated outbound count, so it
is stable for the association's life and the same in every sigmw process (crc32,
not Python's per-process salted hash). Never returns a stream >= outbound.
"""

from __future__ import annotations

from zlib import crc32


def session_stream(key: bytes, outbound: int) -> int:
    """The stream for a session on an association with `outbound` streams."""
    if outbound <= 1:
        return 0
    return crc32(key) % (outbound - 1) + 1


class Spreader:
    """Streams for sessionless messages: round robin over 1..outbound-1."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def stream(self, outbound: int) -> int:
        if outbound <= 1:
            return 0
        self._next += 1
        return self._next % (outbound - 1) + 1
