"""/proc/net/sctp/assocs parsing for the receive-queue metrics (the format of Linux
6.1, as read in the bench VM with 200 unread 300-byte messages on one association)."""

from __future__ import annotations

from sigmw.io.rxqueue import RxQueue, parse_assocs

SAMPLE = (
    " ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT "
    "LADDRS <-> RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf\n"
    "9058631d 7c2e020d 0   7   3  0       3        0        0       0 11847 49228  5555  "
    "127.0.0.1 <-> *127.0.0.1 \t    7500    10    10   10    0    0        0        1        "
    "0   212992   212992\n"
    "fd9c45bd 96353b32 0   10  3  0       4        0   106400       0   663 5555  49228  "
    "10.0.0.1 10.0.1.1 <-> *10.0.0.2 10.0.1.2 \t    7500    10    10   10    0    0        "
    "0        1        0   212992   212992\n"
)


def test_each_association_has_its_queue_and_the_sockets_buffer() -> None:
    got = parse_assocs(SAMPLE)
    assert got == {(11847, 3): RxQueue(0, 212992), (663, 4): RxQueue(106400, 212992)}


def test_unknown_lines_are_skipped_not_fatal() -> None:
    assert parse_assocs("") == {}
    assert parse_assocs(SAMPLE.splitlines()[0] + "\ngarbage line\n1 2 3\n") == {}
