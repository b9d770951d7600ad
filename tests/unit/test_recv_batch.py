"""sigmw.io._recv (one recvmmsg a wake-up) on what this machine has: UNIX datagram
sockets. Its SCTP use (ancillary data, partial messages, both read paths) is tested on
a real kernel in tests/sctp."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from sigmw.io import transport
from sigmw.io._recv import recv_batch
from sigmw.sctp.addresses import pack_sockaddr


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_the_transport_uses_it_when_built() -> None:
    assert transport._recv_batch is recv_batch


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
