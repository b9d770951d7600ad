"""The bench itself: namespaces, both links, IPv6 and fault injection work, using only the
standard library (so a failure here points at the bench, not at sigmw)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sigmw.testbed.netns import TwoPaths

pytestmark = pytest.mark.sctp


@pytest.mark.parametrize(("path", "v6"), [(1, False), (2, True)])
def test_stdlib_sctp_between_hosts(net: TwoPaths, path: int, v6: bool) -> None:
    link = net.path1 if path == 1 else net.path2
    family = socket.AF_INET6 if v6 else socket.AF_INET
    server_addr = link.b_addr6 if v6 else link.b_addr
    with net.b.entered():
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    with net.a.entered():
        client = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    with listener, client:
        listener.bind((server_addr, 0))
        listener.listen()
        client.settimeout(10)
        client.connect((server_addr, listener.getsockname()[1]))  # the backlog completes it
        server, peer = listener.accept()
        with server:
            assert peer[0] == (link.a_addr6 if v6 else link.a_addr)
            client.sendall(b"hello from a")
            assert server.recv(100) == b"hello from a"
            server.sendall(b"hello from b")
            assert client.recv(100) == b"hello from b"


def test_link_down_cuts_one_path_only(net: TwoPaths) -> None:
    assert net.a.ping(net.path1.b_addr) and net.a.ping(net.path2.b_addr)
    net.topo.link_down(net.path1, "a")
    assert not net.a.ping(net.path1.b_addr, timeout=0.5)
    assert not net.b.ping(net.path1.a_addr, timeout=0.5)
    assert net.a.ping(net.path2.b_addr) and net.a.ping(net.path2.b_addr6)
    net.topo.link_up(net.path1, "a")
    assert net.a.ping(net.path1.b_addr, timeout=5)


def test_loss_drops_what_one_side_sends(net: TwoPaths) -> None:
    net.topo.loss(net.path1, 100, side="a")
    assert not net.a.ping(net.path1.b_addr, timeout=0.5)
    assert net.a.ping(net.path2.b_addr)
    net.topo.clear(net.path1, side="a")
    assert net.a.ping(net.path1.b_addr)


def test_topology_is_deleted_on_exit(net: TwoPaths) -> None:
    names = [net.a.netns, net.b.netns]
    net.topo.close()
    assert not any(Path("/run/netns", name).exists() for name in names)
