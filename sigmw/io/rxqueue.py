"""How much each SCTP association has waiting in the kernel, unread.

Overload over SCTP builds up in the kernel's receive queue, not in sigmw's: the
transport reads a few dozen messages per wake-up, so its own queue stays short
however far behind the relay is. /proc/net/sctp/assocs gives the bytes each
association holds (RX_QUEUE, skb truesize, counted whatever rcvbuf_policy says)
and the socket's receive buffer; the metrics export both, so a relay falling
behind shows before its peers time out.

Not what the relay sheds by: reading this file is too slow for every full read, so
the transport asks the socket itself (SO_MEMINFO, see SctpTransport._room).
"""

from __future__ import annotations

from dataclasses import dataclass

ASSOCS = "/proc/net/sctp/assocs"


@dataclass(frozen=True, slots=True)
class RxQueue:
    queued: int
    """Bytes received and not yet read (kernel accounting, overheads included)."""
    rcvbuf: int
    """The socket's receive buffer."""


def parse_assocs(text: str) -> dict[tuple[int, int], RxQueue]:
    """(socket inode, association id) -> its receive queue, from /proc/net/sctp/assocs.

    Columns: ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE ... rcvbuf
    (the addresses in between vary in number, so rcvbuf is read from the end)."""
    out: dict[tuple[int, int], RxQueue] = {}
    for line in text.splitlines()[1:]:
        cells = line.split()
        if len(cells) < 12 or not cells[6].lstrip("-").isdigit():
            continue
        try:
            key = (int(cells[10]), int(cells[6]))
            out[key] = RxQueue(int(cells[8]), int(cells[-1]))
        except ValueError:
            continue  # a format this parser does not know: no shedding, no crash
    return out


def read_assocs(path: str = ASSOCS) -> dict[tuple[int, int], RxQueue]:
    try:
        with open(path) as f:
            return parse_assocs(f.read())
    except OSError:
        return {}
