"""Network topologies for real-kernel SCTP tests: namespaces as hosts, veth pairs as links.

    with two_hosts_two_paths() as net:
        with net.a.entered():
            client = await SctpEndpoint.open(net.a_addresses(), listen=False)
        net.topo.link_down(net.path1)         # fail one path
        net.topo.loss(net.path2, 100)         # or drop everything a sends on it

A socket stays in the namespace it was created in, so one test process can
hold sockets in several hosts: `entered()` switches the calling thread with
setns(2) and back. Needs root and iproute2; names carry a random tag so runs
never clash, and everything is deleted on exit, even after a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

Side = Literal["a", "b"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class TopologyError(RuntimeError):
    """An iproute2 command failed; carries the command and what it printed."""


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TopologyError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def _ip(*args: str) -> None:
    _run("ip", *args)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass(frozen=True, slots=True)
class Host:
    """A network namespace standing for one machine."""

    name: str
    """Short name in the topology ("a")."""
    netns: str
    """The namespace's name under /run/netns."""

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body (on this thread) inside the namespace; sockets made here stay here."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(target)

    def command(self, *argv: str) -> list[str]:
        """argv prefixed to run inside this host (for subprocess)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a program inside this host to completion; output captured as text."""
        return subprocess.run(self.command(*argv), capture_output=True, text=True, check=False)

    def popen(self, *argv: str, **options: Any) -> subprocess.Popen[Any]:
        """Start a program inside this host; options go to subprocess.Popen."""
        return subprocess.Popen(self.command(*argv), **options)

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        """Does address answer an ICMP echo from this host within timeout? (The VM has no
        ping.) Re-sent every 0.25 s like ping: a first echo can die in neighbour resolution."""
        v6 = ":" in address
        with self.entered():
            sock = socket.socket(
                socket.AF_INET6 if v6 else socket.AF_INET,
                socket.SOCK_RAW,
                socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP,
            )
        with sock:
            ident = secrets.randbits(16)
            packet = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + b"sigmw"
            if not v6:  # the kernel fills in the ICMPv6 checksum, not the ICMP one
                packet = packet[:2] + struct.pack("!H", _checksum(packet)) + packet[4:]
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(OSError):  # e.g. no route while the link is down
                    sock.sendto(packet, (address, 0))
                if _echo_reply(sock, ident, v6, min(left, 0.25)):
                    return True
            return False


def _echo_reply(sock: socket.socket, ident: int, v6: bool, wait: float) -> bool:
    """Read ICMP for `wait` seconds: did our echo reply come?"""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            return False
        if not v6:  # IPv4 raw sockets hand us the IP header too
            data = data[(data[0] & 0x0F) * 4 :]
        kind, _, _, got = struct.unpack_from("!BBHH", data)
        if kind == (129 if v6 else 0) and got == ident:
            return True
    return False


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    data += b"\0" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between two hosts, with one IPv4 and one IPv6 address per end."""

    name: str
    a: Host
    b: Host
    a_dev: str
    b_dev: str
    a_addr: str
    b_addr: str
    a_addr6: str
    b_addr6: str

    def end(self, side: Side) -> tuple[Host, str]:
        """(host, device) of side "a" or "b"."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        return (self.a, self.a_dev) if side == "a" else (self.b, self.b_dev)


@dataclass
class Topology:
    """Hosts and links made with iproute2; a context manager that cleans up."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)

    def add_host(self, name: str) -> Host:
        host = Host(name, f"sigmw-{self.tag}-{name}")
        _ip("netns", "add", host.netns)
        self.hosts[name] = host
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def add_link(self, name: str, a: Host, b: Host, subnet: int, ula: str = "fd00:91") -> Link:
        """Join a and b: 10.91.<subnet>.1/.2 and <ula>:<subnet>::1/::2."""
        link = Link(
            name,
            a,
            b,
            f"{name}a{self.tag}"[:15],
            f"{name}b{self.tag}"[:15],
            f"10.91.{subnet}.1",
            f"10.91.{subnet}.2",
            f"{ula}:{subnet}::1",
            f"{ula}:{subnet}::2",
        )
        _ip(
            "link",
            "add",
            link.a_dev,
            "netns",
            a.netns,
            "type",
            "veth",
            "peer",
            "name",
            link.b_dev,
            "netns",
            b.netns,
        )
        for host, dev, v4, v6 in (
            (a, link.a_dev, link.a_addr, link.a_addr6),
            (b, link.b_dev, link.b_addr, link.b_addr6),
        ):
            _ip("-n", host.netns, "addr", "add", f"{v4}/24", "dev", dev)
            _ip("-n", host.netns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _ip("-n", host.netns, "link", "set", dev, "up")
        self.links[name] = link
        return link

    # --- faults ---------------------------------------------------------------

    def link_down(self, link: Link, side: Side = "a") -> None:
        """Take one end down (both directions stop: the peer loses carrier)."""
        host, dev = link.end(side)
        _ip("-n", host.netns, "link", "set", dev, "down")

    def link_up(self, link: Link, side: Side = "a") -> None:
        host, dev = link.end(side)
        _ip("-n", host.netns, "link", "set", dev, "up")

    def netem(self, link: Link, side: Side = "a", *params: str) -> None:
        """Impose netem on what `side` sends over the link (replaces earlier netem)."""
        host, dev = link.end(side)
        _run(*host.command("tc", "qdisc", "replace", "dev", dev, "root", "netem", *params))

    def loss(self, link: Link, percent: float, side: Side = "a") -> None:
        """Drop percent% of what `side` sends: cut the sender's outgoing path first."""
        self.netem(link, side, "loss", f"{percent}%")

    def clear(self, link: Link, side: Side = "a") -> None:
        """Remove netem from `side` of the link."""
        host, dev = link.end(side)
        host.run("tc", "qdisc", "del", "dev", dev, "root")  # fails harmlessly if none

    # --- life cycle -------------------------------------------------------------

    def close(self) -> None:
        """Delete every namespace (its veth ends go with it)."""
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        self.hosts.clear()
        self.links.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class TwoPaths:
    """Hosts a and b joined by two independent links: a genuinely multihomed pair."""

    topo: Topology
    a: Host
    b: Host
    path1: Link
    path2: Link

    def a_addresses(self, port: int = 0, v6: bool = False) -> list[tuple[str, int]]:
        links = (self.path1, self.path2)
        return [((link.a_addr6 if v6 else link.a_addr), port) for link in links]

    def b_addresses(self, port: int = 0, v6: bool = False) -> list[tuple[str, int]]:
        links = (self.path1, self.path2)
        return [((link.b_addr6 if v6 else link.b_addr), port) for link in links]

    def __enter__(self) -> TwoPaths:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.topo.close()


def two_hosts_two_paths() -> TwoPaths:
    """a (10.91.1.1, 10.91.2.1) and b (10.91.1.2, 10.91.2.2) over two veth links."""
    topo = Topology()
    try:
        a, b = topo.add_host("a"), topo.add_host("b")
        path1 = topo.add_link("p1", a, b, subnet=1)
        path2 = topo.add_link("p2", a, b, subnet=2)
    except BaseException:
        topo.close()
        raise
    return TwoPaths(topo, a, b, path1, path2)
