"""The relay's per-pair cost of its hot path, from a message read to its send held for the
flush, C (_speedups.Direct) against the Python chain it replaces, in one run:
`python -m sigmw.benchkit.direct`.

A relay core with a client and a server connected (over SCTP and over TCP) takes rounds
of 64 requests from the client and their 64 answers from the server, the way the
endpoints hand them over (SCTP: one call a message; TCP: one call a framed batch).
`--route` picks how the requests are routed: by realm to the one server (`realm`, the
default), by realm shared by weight between two servers (`shared`), or by
Destination-Host naming the server (`host`). What
it prints is the CPU of the relay's own work per request + answer: no socket is read or
written (SCTP endpoints sit on a UNIX pair, TCP connections have no transport), held
sends are dropped between rounds, and the answers are built outside the timing. The
SCTP suite and the TCP daemon tests run the same code on real sockets.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import socket
import time
import types
from collections.abc import Callable
from typing import Any

from sigmw.benchkit.micro import best_of_alternating
from sigmw.benchkit.pygen import PyGen, avp, avp_u32, diameter_message
from sigmw.benchkit.tools import APP, CLIENT_REALM, SERVER_REALM
from sigmw.config.diameter import DiameterNode, DiameterRoute, RouteTarget
from sigmw.diameter import local, wire
from sigmw.diameter.node import DiameterCore, PeerInfo, SendOn
from sigmw.io.daemon import Daemon
from sigmw.io.diameter import DiameterService
from sigmw.io.endpoint import Association, SctpEndpoint
from sigmw.io.tcp import TcpEndpoint, _Connection

BATCH = 64
CLIENT_ASSOC, SERVER_ASSOC = 2, 1
ME = local.LocalIdentity(b"relay.bench", b"bench", 1)
SERVER = local.LocalIdentity(b"server.bench", SERVER_REALM.encode(), 1, auth_apps=(APP,))


class Host:
    """What the Diameter service asks of the daemon (io.diameter.Host), on a plain dict of
    connections; the events it reports are kept in `events`."""

    def __init__(self, where: dict[str, tuple[Any, int]]) -> None:
        self.where = where
        self.events: list[tuple[str, dict[str, object]]] = []

    def peer_conn(self, peer: str) -> tuple[Any, int] | None:
        return self.where.get(peer)

    def bind(self, conn: object, peer: str) -> None:
        pass

    def hold(self, peer: str) -> None:
        pass

    def emit(self, event: str, /, **fields: object) -> None:
        self.events.append((event, fields))


def idle_endpoint(tcp: bool, socks: list[socket.socket]) -> Any:
    """A TcpEndpoint that never listens, or an SctpEndpoint on one end of a UNIX pair
    (both ends added to `socks`, for the caller to close): nothing is ever read or
    written on it, so what it holds or corks to send stays there to be looked at."""
    if tcp:
        return TcpEndpoint([("127.0.0.1", 0)])
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    socks += [mine, theirs]
    return SctpEndpoint(mine)


def attach(ep: Any, assoc: int, streams: int) -> None:
    """Association `assoc` up on `ep` as the endpoint records one (TCP: with its
    connection, which has no transport)."""
    ep.associations[assoc] = Association(assoc, streams, streams)
    if isinstance(ep, TcpEndpoint):
        ep._conns[assoc] = _Connection(ep, assoc)


ROUTES = ("realm", "shared", "host")


class Relay:
    """A relay core between one client and one server (two for a shared route), fed
    through one of the two paths."""

    def __init__(self, tcp: bool, in_c: bool, route: str = "realm") -> None:
        self.tcp = tcp
        self.socks: list[socket.socket] = []
        names = ["server", "server2"] if route == "shared" else ["server"]
        peers = [PeerInfo("client", "gen-1." + CLIENT_REALM, CLIENT_REALM, dials=False)]
        peers += [PeerInfo(n, f"{n}.bench", SERVER_REALM, dials=True) for n in names]
        routes = (DiameterRoute(SERVER_REALM, tuple(RouteTarget(n, 1) for n in names)),)
        node = DiameterNode("relay.bench", "bench", max_pending=1 << 20)
        self.core = DiameterCore(ME, node, peers, routes, random.Random(1).random)
        self.where: dict[str, tuple[Any, int]] = {}
        svc = DiameterService.__new__(DiameterService)  # no Config: the core is built here
        svc.host, svc.now, svc.core = Host(self.where), time.monotonic, self.core
        self.client = self._endpoint()
        self.servers = [self._endpoint() for _ in names]
        for name, ep in zip(names, self.servers, strict=True):
            self._open_server(ep, name, 1 if tcp else 10)
        self._open_client(1 if tcp else 10)
        daemon: Any = types.SimpleNamespace(diameter=svc, dialers={})  # what the two need
        daemon._retired = functools.partial(Daemon._retired, daemon)
        self.direct: dict[Any, Callable[..., Any]] = {}
        for ep in (self.client, *self.servers):
            fast = svc.direct_in_c(ep, self.where, {}, "") if in_c else None
            if in_c and fast is None:
                raise SystemExit("sigmw.diameter._speedups is not built (or SIGMW_NO_SPEEDUPS)")
            reference = Daemon._direct if tcp else Daemon._direct_sctp
            self.direct[ep] = (
                (fast.take if tcp else fast)
                if fast
                else functools.partial(reference, daemon, ep, "")
            )

    def _endpoint(self) -> Any:
        return idle_endpoint(self.tcp, self.socks)

    def _connect(self, ep: Any, assoc: int, name: str, streams: int) -> None:
        attach(ep, assoc, streams)
        self.where[name] = (ep, assoc)

    def _open_server(self, ep: Any, name: str, streams: int) -> None:
        conn = (ep, SERVER_ASSOC)
        self._connect(*conn, name, streams)
        out = self.core.connected(conn, name, streams, ["10.0.0.1"], 0.0)
        (cer,) = [o.data for o in out if isinstance(o, SendOn)]
        server = dataclasses.replace(SERVER, origin_host=f"{name}.bench".encode())
        self.core.received(conn, local.cea(server, wire.parse_header(cer), 2001, []), 0.0)

    def _open_client(self, streams: int) -> None:
        conn = (self.client, CLIENT_ASSOC)
        self._connect(*conn, "client", streams)
        self.core.connected(conn, None, streams, ["10.0.0.1"], 0.0)
        self.core.received(conn, PyGen(("gen-1." + CLIENT_REALM).encode()).cer(), 0.0)

    def feed(self, ep: Any, assoc: int, batch: list[bytes]) -> None:
        direct = self.direct[ep]
        if self.tcp:
            direct(assoc, batch)
            return
        now = time.monotonic()
        for data in batch:
            direct(assoc, 46, data, now)

    def take_sent(self, ep: Any, assoc: int) -> list[bytes]:
        """What the relay held (SCTP) or corked (TCP) for `assoc`, dropped from there."""
        if self.tcp:
            conn = ep._conns[assoc]
            out, conn.out, conn.out_bytes = conn.out, [], 0
            return list(out)
        held = ep._held.pop(assoc, [])
        ep._held.clear()
        return [data for data, _ in held]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _answer(request: bytes) -> bytes:
    _, session = wire.leading_session_id(request)
    avps = avp(263, session or b"") + avp_u32(268, 2001)
    avps += avp(264, b"server.bench") + avp(296, SERVER_REALM.encode())
    hbh, e2e = int.from_bytes(request[12:16], "big"), int.from_bytes(request[16:20], "big")
    return diameter_message(0, 272, APP, hbh, e2e, avps)


def _with_host(request: bytes) -> bytes:
    """The request with a Destination-Host naming the server (a session's later ones)."""
    extra = avp(293, b"server.bench")
    return request[:1] + (len(request) + len(extra)).to_bytes(3, "big") + request[4:] + extra


async def _per_pair(tcp: bool, in_c: bool, rounds: int, route: str = "realm") -> float:
    """Seconds of CPU per relayed request + answer."""
    relay = Relay(tcp, in_c, route)
    gen = PyGen(("gen-1." + CLIENT_REALM).encode())

    def requests() -> list[bytes]:
        batch = [gen.request() for _ in range(BATCH)]
        return [_with_host(r) for r in batch] if route == "host" else batch

    def round_trip() -> float:
        """One round: 64 requests relayed and their answers; the CPU the relay took."""
        batch = requests()
        start = time.process_time()
        relay.feed(relay.client, CLIENT_ASSOC, batch)
        spent = time.process_time() - start
        forwarded = [(ep, relay.take_sent(ep, SERVER_ASSOC)) for ep in relay.servers]
        relayed = sum(len(sent) for _, sent in forwarded)
        if relayed != BATCH:
            raise SystemExit(f"{relayed} of {BATCH} requests relayed")
        for ep, sent in forwarded:
            answers = [_answer(r) for r in sent]
            start = time.process_time()
            relay.feed(ep, SERVER_ASSOC, answers)
            spent += time.process_time() - start
        if len(relay.take_sent(relay.client, CLIENT_ASSOC)) != BATCH:
            raise SystemExit("answers went missing")
        gen.outstanding.clear()
        return spent

    try:
        round_trip()  # the first of a command, a key or a burst takes the Python way
        spent = sum(round_trip() for _ in range(rounds))
    finally:
        relay.close()
    return spent / (rounds * BATCH)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds of 64 pairs per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--route", choices=ROUTES, default="realm", help="how requests route")
    args = parser.parse_args(argv)
    for tcp in (False, True):
        run = functools.partial(_per_pair, tcp, rounds=args.rounds, route=args.route)
        ref, c = best_of_alternating(run, args.repeat)
        name = "TCP " if tcp else "SCTP"
        print(f"{name} Python chain:     {ref * 1e9:7.0f} ns a request + answer")
        print(f"{name} Direct (C):       {c * 1e9:7.0f} ns a request + answer")
        print(f"{name} ratio C/Python:   {c / ref:7.2f}")


if __name__ == "__main__":
    main()
