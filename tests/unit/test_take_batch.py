"""SctpTransport._take_all with _mmsg.take_batch (C) against the reference (_take, Python):
the same calls of `direct`, the same traffic counts, the same queue, the same stats, for
batches that mix whole messages with what only the Python path handles. Reads are built
as recv_batch gives them; the transport's socket is a UNIX pair (it is never read here).
Its SCTP use is covered by tests/sctp (every relayed message goes through it)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest

from sigmw.io import transport
from sigmw.io._mmsg import take_batch
from sigmw.io.transport import Deferred, Read, SctpTransport

EOR, NOTE = 0x80, 0x8000
Direct = Callable[[SctpTransport, list[tuple[int, int, bytes, float]]], Any]


def _read(data: bytes, assoc: int = 5, stream: int = 1, ppid: int = 46, flags: int = EOR) -> Read:
    rcvinfo = struct.pack("@HHHxxIIIIi", stream, 9, 0, socket.htonl(ppid), 0, 0, 0, assoc)
    return (data, flags, rcvinfo, b"")


def _accept_all(t: SctpTransport, calls: list[tuple[int, int, bytes, float]]) -> Any:
    def direct(assoc: int, ppid: int, data: bytes, now: float) -> bool:
        calls.append((assoc, ppid, data, now))
        return True

    return direct


def _decline_x(t: SctpTransport, calls: list[tuple[int, int, bytes, float]]) -> Any:
    """Declines messages starting with b"x" (they queue, and everything after them)."""

    def direct(assoc: int, ppid: int, data: bytes, now: float) -> bool:
        calls.append((assoc, ppid, data, now))
        return not data.startswith(b"x")

    return direct


def _defer_d(t: SctpTransport, calls: list[tuple[int, int, bytes, float]]) -> Any:
    """Defers work on messages starting with b"d" (what follows queues behind it)."""

    async def later() -> None:
        return None

    def direct(assoc: int, ppid: int, data: bytes, now: float) -> bool:
        calls.append((assoc, ppid, data, now))
        if data.startswith(b"d"):
            t.defer(later)
        return True

    return direct


BATCHES: dict[str, list[Read]] = {
    "whole messages, many keys": [
        _read(b"m%d" % i, assoc=5 + i % 3, stream=i % 5, ppid=(46, 0, 3)[i % 3]) for i in range(40)
    ],
    "a notification and pieces between": [
        _read(b"a1"),
        _read(b"not-a-notification", flags=EOR | NOTE),
        _read(b"a2"),
        _read(b"piece-", flags=0),
        _read(b"end", flags=EOR),
        _read(b"a3", stream=3),
        (b"no rcvinfo", EOR, None, b""),
        _read(b"a4"),
    ],
    "declined messages queue with what follows": [
        _read(b"b1"),
        _read(b"x-declined"),
        _read(b"b2"),
        _read(b"b3", assoc=8),
    ],
    "deferred work queues what follows": [_read(b"c1"), _read(b"d-defers"), _read(b"c2")],
    "a stream past the labels": [_read(b"s%d" % i, stream=40 + i) for i in range(3)],
}


def _run(batch: list[Read], make_direct: Direct, fast: bool) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            t = SctpTransport(mine)
            calls: list[tuple[int, int, bytes, float]] = []
            t.direct = make_direct(t, calls)
            t._read_at = 12.5
            saved = transport._take_batch
            transport._take_batch = saved if fast else None
            try:
                alive = t._take_all(batch)
            finally:
                transport._take_batch = saved
            queued = [
                type(item).__name__ if isinstance(item, Deferred) else repr(item) for item in t._rx
            ]
            stats, counts = t.stats, dict(t.traffic.counts)
            t.close()
            return {"alive": alive, "calls": calls, "queued": queued, "counts": counts,
                    "stats": stats}  # fmt: skip

    return asyncio.run(run())


@pytest.mark.parametrize("name", list(BATCHES))
@pytest.mark.parametrize("make_direct", [_accept_all, _decline_x, _defer_d])
def test_take_batch_does_what_the_python_path_does(name: str, make_direct: Direct) -> None:
    reference = _run(BATCHES[name], make_direct, fast=False)
    assert _run(BATCHES[name], make_direct, fast=True) == reference
    assert reference["calls"]  # something went to direct in every case


def test_the_c_path_hands_over_the_whole_messages_it_can() -> None:
    """Not only the same result: take_batch itself stops where the Python way must take
    over, and says whether `direct` declined that read."""
    counts: dict[Any, list[int]] = {}
    rx: Any = []
    seen: list[bytes] = []

    def direct(assoc: int, ppid: int, data: bytes, now: float) -> bool:
        seen.append(data)
        return data != b"no"

    def new_cell(key: Any) -> list[int]:
        return counts.setdefault(key, [0, 0])

    batch = [_read(b"one"), _read(b"two", stream=2), _read(b"no"), _read(b"three")]
    assert take_batch(batch, 0, direct, rx, counts, new_cell, 1.0) == (2, 2, True)
    assert seen == [b"one", b"two", b"no"]
    assert counts == {(5, 0, 46, 1): [2, 5], (5, 0, 46, 2): [1, 3]}  # "no" counted too
    note = [_read(b"n", flags=EOR | NOTE), _read(b"x")]
    assert take_batch(note, 0, direct, rx, counts, new_cell, 1.0) == (0, 0, False)
    assert take_batch(batch, 3, direct, rx, counts, new_cell, 1.0) == (4, 1, False)
    rx.append("waiting")
    assert take_batch(batch, 0, direct, rx, counts, new_cell, 1.0) == (1, 1, False)


def test_an_exception_in_direct_goes_up_with_what_was_counted() -> None:
    counts: dict[Any, list[int]] = {}

    def direct(assoc: int, ppid: int, data: bytes, now: float) -> bool:
        raise ValueError(data)

    with pytest.raises(ValueError, match="boom"):
        take_batch(
            [_read(b"boom")], 0, direct, [], counts, lambda k: counts.setdefault(k, [0, 0]), 0.0
        )
    assert counts == {(5, 0, 46, 1): [1, 4]}


def test_the_transport_uses_it_when_built() -> None:
    assert transport._take_batch is take_batch


def test_the_microbenchmark_prints_both_figures_and_their_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sigmw.benchkit import take

    take.main(["--rounds", "20", "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "reference (_take, Python)",
        "take_batch (C)",
        "ratio C/reference",
    ]
    ref, c = (float(line.split()[-4]) for line in lines[:2])
    assert float(lines[2].split()[-1]) == pytest.approx(c / ref, abs=0.01)
    assert transport._take_batch is take_batch  # put back
