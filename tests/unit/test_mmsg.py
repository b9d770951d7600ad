"""sigmw.io._mmsg (one recvmmsg a wake-up, sendmmsg for a loop iteration's sends) on
what this machine has: UNIX datagram sockets. Its SCTP use (ancillary data, partial
messages, MSG_MORE bundling, both read and send paths) is tested on a real kernel in
tests/sctp."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator

import pytest

from sigmw.io import transport
from sigmw.io._mmsg import recv_batch, send_bursts
from sigmw.sctp.addresses import pack_sockaddr

Burst = list[tuple[bytes, list[tuple[int, int, bytes]]]]
Sender = Callable[[socket.socket, list[Burst], int], tuple[int, list[tuple[int, int, int]] | None]]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_the_transport_uses_it_when_built() -> None:
    assert transport._recv_batch is recv_batch
    assert transport._send_bursts is send_bursts
    assert transport.batched_io()


def test_nothing_waiting_is_an_empty_batch(pair: tuple[socket.socket, socket.socket]) -> None:
    assert recv_batch(pair[1].fileno(), 64, 1024) == []


def test_reads_every_waiting_message_in_order_up_to_the_bound(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    sent = [bytes([i]) * (i + 1) for i in range(70)]
    for data in sent:
        a.send(data)
    first = recv_batch(b.fileno(), 64, 1024)
    rest = recv_batch(b.fileno(), 64, 1024)
    assert [data for data, *_ in first + rest] == sent
    assert len(first) == 64
    assert all(flags == 0 and rcvinfo is None for _, flags, rcvinfo, _ in first + rest)


def test_a_message_longer_than_a_slot_is_cut_and_flagged(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.send(b"x" * 100)
    ((data, flags, _, _),) = recv_batch(b.fileno(), 4, 10)
    assert data == b"x" * 10 and flags & socket.MSG_TRUNC


def test_bad_arguments_and_descriptors_raise() -> None:
    with pytest.raises(ValueError):
        recv_batch(0, 65, 1024)
    with pytest.raises(ValueError):
        recv_batch(0, 1, 0)
    with pytest.raises(OSError) as failed:
        recv_batch(-1, 1, 1024)
    assert failed.value.errno == errno.EBADF


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (pack_sockaddr(("192.0.2.7", 3868)), ("192.0.2.7", 3868)),
        (pack_sockaddr(("2001:db8::7", 3868)), ("2001:db8::7", 3868)),
        (b"", None),
        (b"\xff\xff" + bytes(14), None),  # unknown family
        (socket.AF_INET.to_bytes(2, "little") + bytes(3), None),  # cut short
    ],
)
def test_a_raw_source_address_is_decoded(raw: bytes, expected: object) -> None:
    assert transport._address(raw) == expected


# --- send_bursts, and the Python reference it mirrors -----------------------------

SENDERS: dict[str, Sender] = {
    "c": lambda sock, bursts, more: send_bursts(sock.fileno(), bursts, more),
    "reference": transport._send_each,
}
BAD_CMSG = [(socket.SOL_SOCKET, 0x7FFF, b"?")]  # a UNIX socket refuses it: EINVAL


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


@pytest.fixture(params=sorted(SENDERS))
def sender(request: pytest.FixtureRequest) -> Sender:
    return SENDERS[request.param]


@pytest.mark.parametrize(
    "sizes",
    [
        {b"a": 3, b"b": 1, b"c": 2},
        {b"a": 70, b"b": 33, b"c": 1, b"d": 64},  # past MAX_CORKED: sent in rounds
    ],
)
def test_every_burst_is_sent_in_order(
    sender: Sender, pair: tuple[socket.socket, socket.socket], sizes: dict[bytes, int]
) -> None:
    a, b = pair
    a.setblocking(False)
    bursts: list[Burst] = [[(key + b"%03d" % i, []) for i in range(n)] for key, n in sizes.items()]
    assert sender(a, bursts, socket.MSG_MORE) == (sum(sizes.values()), None)
    got = _drain(b)
    for key, n in sizes.items():  # each burst's order holds, and every message leaves
        assert [data for data in got if data[:1] == key] == [key + b"%03d" % i for i in range(n)]
    assert len(got) == sum(sizes.values())


def test_a_failure_stops_its_burst_and_the_others_go_on(
    sender: Sender, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    a.setblocking(False)
    bursts: list[Burst] = [
        [(b"a1", []), (b"a2", BAD_CMSG), (b"a3", [])],
        [(b"b1", BAD_CMSG), (b"b2", [])],
        [(b"c1", []), (b"c2", [])],
    ]
    sent, stopped = sender(a, bursts, socket.MSG_MORE)
    assert (sent, stopped) == (3, [(0, 1, errno.EINVAL), (1, 0, errno.EINVAL)])
    assert sorted(_drain(b)) == [b"a1", b"c1", b"c2"]


def test_a_full_buffer_stops_a_burst_with_eagain(
    sender: Sender, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    a.setblocking(False)
    burst: Burst = [(b"%06d" % i + b"x" * 4000, []) for i in range(2000)]
    sent, stopped = sender(a, [burst], 0)
    assert 0 < sent < len(burst)
    assert stopped == [(0, sent, errno.EAGAIN)]
    got = _drain(b)
    assert [int(data[:6]) for data in got] == list(range(sent))


def test_bytes_like_data_is_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    burst = [(bytearray(b"copied"), []), (memoryview(b"viewed"), []), (b"plain", [])]
    assert send_bursts(a.fileno(), [burst], 0) == (3, None)  # type: ignore[list-item]
    assert _drain(b) == [b"copied", b"viewed", b"plain"]


@pytest.mark.parametrize(
    "bad",
    [
        [[b"no cmsgs"]],
        [(b"not a list", [])],
        [[(b"ok", []), (b"last", [(1, 2)])]],  # a bad last: nothing at all is sent
        [[(b"ok", []), (b"last", [(1, 2, b"y" * 200)])]],  # more ancillary data than fits
        [[(b"ok", []), (b"last", [("level", 2, b"")])]],
    ],
)
def test_a_bad_shape_raises_before_anything_is_sent(
    bad: object, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    with pytest.raises((TypeError, ValueError)):
        send_bursts(a.fileno(), bad, 0)  # type: ignore[arg-type]
    assert _drain(b) == []
