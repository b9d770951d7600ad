"""Message and byte counts per association, by direction, PPID and stream.

Kept by the endpoints (the one place every message passes, both ways) and read
by the metrics at scrape time. Cheap enough for the hot path: one dict lookup
and two additions per message. Label values are bounded whatever peers send:
streams at or above STREAM_LABELS share one key, and once MAX_PPIDS distinct
PPIDs were seen, new ones count as OTHER.
"""

from __future__ import annotations

from collections.abc import Sequence

IN, OUT = 0, 1
STREAM_LABELS = 32
"""Streams 0..31 get their own label; higher ones count under 32 ("32+")."""
MAX_PPIDS = 16
MAX_ALIASES = 4096
"""Bound on the dict itself, whatever a peer sends."""
OTHER = -1
"""The PPID key for payload protocols beyond the first MAX_PPIDS seen."""

Key = tuple[int, int, int, int]
"""(assoc_id, direction, ppid, stream)."""


class Traffic:
    __slots__ = ("_ppids", "counts")

    def __init__(self) -> None:
        self.counts: dict[Key, list[int]] = {}
        """[messages, bytes] per key; an association's keys go when it is taken."""
        self._ppids: set[int] = set()

    def count(
        self, assoc_id: int, direction: int, ppid: int, stream: int, size: int, messages: int = 1
    ) -> None:
        """`messages` messages of `size` bytes in all (TCP counts each corked write once)."""
        key = (assoc_id, direction, ppid, stream)
        cell = self.counts.get(key)
        if cell is None:
            cell = self.cell(key)
        cell[0] += messages
        cell[1] += size

    def count_many(
        self, assoc_id: int, direction: int, ppid: int, stream: int, messages: Sequence[bytes]
    ) -> None:
        """A batch on one key (TCP delivers what one read framed)."""
        key = (assoc_id, direction, ppid, stream)
        cell = self.counts.get(key)
        if cell is None:
            cell = self.cell(key)
        cell[0] += len(messages)
        cell[1] += sum(map(len, messages))

    def cell(self, key: Key) -> list[int]:
        """The [messages, bytes] cell `key` counts in, made if new (labels bounded)."""
        assoc_id, direction, ppid, stream = key
        if ppid not in self._ppids:
            if len(self._ppids) >= MAX_PPIDS:
                ppid = OTHER
            else:
                self._ppids.add(ppid)
        bounded = (assoc_id, direction, ppid, min(stream, STREAM_LABELS))
        cell = self.counts.setdefault(bounded, [0, 0])
        if bounded != key and len(self.counts) < MAX_ALIASES:
            self.counts[key] = cell  # an alias: later messages skip the bounding
        return cell

    def _is_alias(self, key: Key) -> bool:
        ppid, stream = key[2], key[3]
        return stream > STREAM_LABELS or (ppid != OTHER and ppid not in self._ppids)

    def of(self, assoc_id: int) -> dict[tuple[int, int, int], tuple[int, int]]:
        """(direction, ppid, stream) -> (messages, bytes) of one live association."""
        out: dict[tuple[int, int, int], tuple[int, int]] = {}
        for key, cell in self.counts.items():
            if key[0] == assoc_id and not self._is_alias(key):
                out[key[1:]] = (cell[0], cell[1])
        return out

    def associations(self) -> set[int]:
        return {key[0] for key in self.counts}

    def by_association(self) -> dict[int, dict[tuple[int, int, int], tuple[int, int]]]:
        """Every association's counts in one pass (a scrape with many associations)."""
        out: dict[int, dict[tuple[int, int, int], tuple[int, int]]] = {}
        for key, cell in self.counts.items():
            if not self._is_alias(key):
                out.setdefault(key[0], {})[key[1:]] = (cell[0], cell[1])
        return out

    def take(self, assoc_id: int) -> dict[tuple[int, int, int], tuple[int, int]]:
        """An ended association's counts, forgotten here (the caller keeps the totals)."""
        out = self.of(assoc_id)
        for key in [k for k in self.counts if k[0] == assoc_id]:
            del self.counts[key]
        return out
