"""The transport's per-message cost of handing SCTP reads to the hot path, C against the
Python reference, in one run: `python -m sigmw.benchkit.take`.

It times SctpTransport._take_all on batches as recv_batch returns them (whole messages,
SCTP_RCVINFO, a few associations and streams) with a `direct` that only accepts, so
what it prints is the transport's own work per read: parsing the receive info,
counting traffic, calling `direct`. No socket is read (a UNIX pair stands in for the
SCTP socket, which _take_all never touches); the SCTP suite covers the real path.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time

from sigmw.benchkit.micro import best_of_alternating
from sigmw.io import transport
from sigmw.io.transport import Read, SctpTransport

BATCH = 64


def _batch() -> list[Read]:
    """64 reads of a 180-byte message over 2 associations and 4 streams."""
    reads: list[Read] = []
    for i in range(BATCH):
        info = struct.pack("@HHHxxIIIIi", 1 + i % 4, i, 0, socket.htonl(46), 0, 0, 0, 5 + i % 2)
        reads.append((bytes(180), 0x80, info, b""))
    return reads


async def _per_read(fast: bool, rounds: int) -> float:
    """Seconds per read of _take_all, with the C path or the reference."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        t = SctpTransport(mine)
        t.direct = lambda assoc, ppid, data, now: True
        batch = _batch()
        saved = transport._take_batch
        transport._take_batch = saved if fast else None
        try:
            start = time.perf_counter()
            for _ in range(rounds):
                t._take_all(batch)
            elapsed = time.perf_counter() - start
        finally:
            transport._take_batch = saved
            t.close()
    return elapsed / (rounds * BATCH)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20000, help="batches of 64 per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args(argv)
    if transport._take_batch is None:
        raise SystemExit("sigmw.io._mmsg is not built (or SIGMW_NO_SPEEDUPS is set)")
    ref, c = best_of_alternating(lambda fast: _per_read(fast, args.rounds), args.repeat)
    print(f"reference (_take, Python): {ref * 1e9:7.0f} ns a read")
    print(f"take_batch (C):            {c * 1e9:7.0f} ns a read")
    print(f"ratio C/reference:         {c / ref:7.2f}")


if __name__ == "__main__":
    main()
