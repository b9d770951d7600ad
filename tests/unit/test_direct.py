"""_speedups.Direct (the relay's hot path in C, from a read message to its held send)
against the Python chain it replaces (Daemon._direct_sctp / Daemon._direct ->
DiameterService.handle -> DiameterCore -> perform_now -> the endpoint's try_send).

Two identical worlds get the same messages, one through each path, and must end in the
same state: what each endpoint holds or corks to send, its traffic counts, the sends
deferred to its reader, the relay's tables and counts, the events reported, and what each
call returned. The messages mix the usual relayed traffic with everything the C path must
leave to Python: other PPIDs, management, malformed and routed-by-host requests, unknown
connections, a retired dialer, a peer with no connection, a send the target pushes back
on, a stream past the association's outbound count, a new traffic key, a flush between.

Endpoints are real SctpEndpoint/TcpEndpoint objects on sockets never read (a UNIX pair
stands in for the SCTP socket): nothing here awaits, so every held burst and cork is
still there to compare. The SCTP suite (tests/sctp) runs the C path on the kernel's SCTP.
"""

from __future__ import annotations

import asyncio
import functools
import random
import socket
import types
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from diameter.message.commands import DeviceWatchdogRequest

from sigmw.benchkit.direct import Host, attach, idle_endpoint
from sigmw.diameter import wire
from sigmw.diameter.node import DiameterCore, SendOn
from sigmw.io.daemon import Daemon
from sigmw.io.diameter import DiameterService
from sigmw.io.endpoint import Association
from sigmw.io.tcp import CORK_BYTES
from sigmw.io.transport import Deferred
from tests.unit.test_diameter_node import ME, NODE, PEERS, ROUTES, ccr, cea, cer

CLIENT, SERVER = 2, 1  # association ids


class World:
    """A relay with a client and a server connected, over SCTP or TCP, taking its messages
    through the C path or the Python one."""

    def __init__(self, tcp: bool, in_c: bool) -> None:
        self.tcp = tcp
        self.socks: list[socket.socket] = []
        self.lst, self.srv = self._endpoint(), self._endpoint()
        self.core = DiameterCore(ME, NODE, PEERS, ROUTES, random.Random(1).random, 1000)
        self.where: dict[str, tuple[Any, int]] = {}
        self.dialers: dict[str, Any] = {"server": self.srv}
        self.host = Host(self.where)
        svc = DiameterService.__new__(DiameterService)  # no Config: the core is built here
        svc.host, svc.now, svc.core = self.host, lambda: 1.0, self.core
        self.svc = svc
        streams = 1 if tcp else 10
        self._open(self.srv, SERVER, "server", streams)
        self._open(self.lst, CLIENT, "client", 1 if tcp else 5)
        # The daemon's own direct handlers are the reference.
        daemon = types.SimpleNamespace(diameter=svc, dialers=self.dialers)
        daemon._retired = functools.partial(Daemon._retired, daemon)
        self.direct: dict[Any, Callable[..., Any]] = {}
        self.fast: list[Any] = []
        for ep, dialer in ((self.lst, ""), (self.srv, "server")):
            fast = svc.direct_in_c(ep, self.where, self.dialers, dialer) if in_c else None
            if fast is not None:
                self.fast.append(fast)
                self.direct[ep] = fast.take if tcp else fast
            elif tcp:
                self.direct[ep] = functools.partial(Daemon._direct, daemon, ep, dialer)
            else:
                self.direct[ep] = functools.partial(Daemon._direct_sctp, daemon, ep, dialer)
        assert len(self.fast) == (2 if in_c else 0)

    def _endpoint(self) -> Any:
        return idle_endpoint(self.tcp, self.socks)

    def _open(self, ep: Any, assoc: int, name: str, streams: int) -> None:
        attach(ep, assoc, streams)
        self.where[name] = (ep, assoc)
        if name == "server":
            out = self.core.connected((ep, assoc), name, streams, ["10.0.0.1"], 0.0)
            (request,) = [o.data for o in out if isinstance(o, SendOn)]  # the CER
            hbh = int.from_bytes(request[12:16], "big")
            self.core.received((ep, assoc), cea("server.test", hbh, 1), 0.1)
        else:
            self.core.connected((ep, assoc), None, streams, ["10.0.0.1"], 0.0)
            self.core.received((ep, assoc), cer("client.test"), 0.1)

    def feed(self, ep: Any, assoc: int, data: bytes, now: float, ppid: int = 46) -> object:
        if self.tcp:
            return self.direct[ep](assoc, [data])
        return self.direct[ep](assoc, ppid, data, now)

    def feed_batch(self, ep: Any, assoc: int, batch: list[bytes]) -> object:
        assert self.tcp
        return self.direct[ep](assoc, batch)

    def sent(self, ep: Any, assoc: int) -> list[bytes]:
        """What `ep` holds (SCTP) or has corked (TCP) for `assoc`, in order."""
        if self.tcp:
            return list(ep._conns[assoc].out)
        return [data for data, _ in ep._held.get(assoc, [])]

    def state(self) -> dict[str, object]:
        relay = self.core.relay
        out: dict[str, object] = {
            # Which way Direct sent each message is counted on its side only.
            "stats": {k: n for k, n in relay.stats.items() if not k.startswith("hot_path_")},
            "requests": dict(relay.requests),
            "answers": dict(relay.answers),
            "pending": sorted(
                (hbh, p.origin, p.origin_hbh, p.target, p.request)
                for hbh, p in relay._pending.items()
            ),
            "peer_pending": {n: p.pending for n, p in relay.peers.items()},
            "latency": (list(relay.latency.counts), relay.latency.total),
            "events": self.host.events,
            "last_rx": {n: s.last_rx for n, s in self.core.slots.items()},
        }
        for name, ep in (("lst", self.lst), ("srv", self.srv)):
            deferred = [d.work.args for d in ep._rx if isinstance(d, Deferred)]  # type: ignore[attr-defined]
            out[f"{name}.deferred"] = deferred
            out[f"{name}.traffic"] = dict(ep.traffic.counts)
            if self.tcp:
                out[f"{name}.cork"] = {a: (list(c.out), c.out_bytes) for a, c in ep._conns.items()}
            else:
                out[f"{name}.held"] = {a: list(b) for a, b in ep._held.items()}
                out[f"{name}.cmsgs"] = dict(ep._cmsgs)
        return out

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _answer_to(request: bytes, result: int = 2001) -> bytes:
    """The server's answer: the request's header with R cleared, its Session-Id, a
    Result-Code."""
    session = wire.encode_avp(263, wire.leading_session_id(request)[1] or b"x")
    body = session + wire.encode_avp(268, result.to_bytes(4, "big"))
    size = (20 + len(body)).to_bytes(3, "big")
    flags = bytes([request[4] & 0x7F & ~0x10])
    return b"\x01" + size + flags + request[5:20] + body


def _dwr() -> bytes:
    m = DeviceWatchdogRequest()
    m.header.hop_by_hop_identifier, m.header.end_to_end_identifier = 5, 6
    m.origin_host, m.origin_realm = b"client.test", b"test"
    return bytes(m.as_bytes())


def _with_host(request: bytes) -> bytes:
    """A request routed by Destination-Host (the Python path)."""
    avp = wire.encode_avp(293, b"server.test")
    size = (len(request) + len(avp)).to_bytes(3, "big")
    return request[:1] + size + request[4:] + avp


def _sctp_script(w: World) -> list[object]:
    """Every case, fed in one order; returns what each call returned."""
    got: list[object] = []
    lst, srv = w.lst, w.srv
    now = 1.0
    for i in range(12):  # usual requests; ppid 0 from freeDiameter is accepted
        got.append(w.feed(lst, CLIENT, ccr(f"s;{i}", 100 + i), now, ppid=0 if i == 3 else 46))
    got.append(w.feed(lst, CLIENT, b"\x01" * 40, now, ppid=3))  # another protocol's
    got.append(w.feed(lst, CLIENT, _dwr(), now))  # management: answered in Python
    got.append(w.feed(lst, CLIENT, _with_host(ccr("h;1", 300)), now))
    got.append(w.feed(lst, CLIENT, ccr("m;1", 301)[:-3] + b"\x00\x00\x00", now))  # bad AVP
    got.append(w.feed(lst, 99, ccr("u;1", 302), now))  # an association nobody knows
    for data in w.sent(srv, SERVER):  # the server answers what it got
        if data[4] & 0x80:
            got.append(w.feed(srv, SERVER, _answer_to(data), now + 0.01))
    srv._held = {}  # a flush between (flush_held makes a new dict)
    lst._held = {}
    srv._tx[SERVER] = deque([object()])  # the server pushes back: the sends are deferred
    got.append(w.feed(lst, CLIENT, ccr("q;1", 400), now + 0.02))
    del srv._tx[SERVER]
    srv.associations[SERVER] = Association(SERVER, 2, 2)  # fewer streams than the core knows
    for i in range(4):
        got.append(w.feed(lst, CLIENT, ccr(f"n;{i}", 410 + i), now + 0.03))
    srv.associations[SERVER] = Association(SERVER, 10, 10)
    del w.where["server"]  # no connection: the send is skipped, as perform_now does
    got.append(w.feed(lst, CLIENT, ccr("w;1", 420), now + 0.04))
    w.where["server"] = (srv, SERVER)
    w.dialers["server"] = object()  # a reload replaced the dialer: it reads for nobody
    got.append(w.feed(srv, SERVER, _answer_to(ccr("s;1", 100)), now + 0.05))
    w.dialers["server"] = srv
    for data in w.sent(srv, SERVER):
        got.append(w.feed(srv, SERVER, _answer_to(data, 5012), now + 0.06))
    return got


def _tcp_script(w: World) -> list[object]:
    got: list[object] = []
    lst, srv = w.lst, w.srv
    batch = [ccr(f"s;{i}", 100 + i) for i in range(8)]
    batch[4:4] = [_dwr(), _with_host(ccr("h;1", 300))]
    got.append(w.feed_batch(lst, CLIENT, batch))
    got.append(w.feed_batch(lst, 99, [ccr("u;1", 302)]))
    answers = [_answer_to(d) for d in w.sent(srv, SERVER) if d[4] & 0x80]
    got.append(w.feed_batch(srv, SERVER, answers))
    for conn in (lst._conns[CLIENT], srv._conns[SERVER]):
        conn.out.clear()
        conn.out_bytes = 0
    srv._conns[SERVER].out_bytes = CORK_BYTES - 10  # the next write flushes (Python's)
    got.append(w.feed_batch(lst, CLIENT, [ccr("c;1", 500), ccr("c;2", 501)]))  # re-armed
    srv._conns[SERVER].write_paused = True  # pushes back: deferred, the rest queues
    got.append(w.feed_batch(lst, CLIENT, [ccr("p;1", 510), ccr("p;2", 511), ccr("p;3", 512)]))
    srv._conns[SERVER].write_paused = False
    w.dialers["server"] = object()
    got.append(w.feed_batch(srv, SERVER, answers[:2]))
    w.dialers["server"] = srv
    return got


@pytest.mark.parametrize("tcp", [False, True], ids=["sctp", "tcp"])
def test_c_path_leaves_the_same_state_as_the_python_chain(tcp: bool) -> None:
    async def run() -> None:
        python, c = World(tcp, in_c=False), World(tcp, in_c=True)
        script = _tcp_script if tcp else _sctp_script
        try:
            assert script(c) == script(python)
            want, got = python.state(), c.state()
            for key in want:
                assert got[key] == want[key], key
            stats = c.core.relay.stats
            assert stats["hot_path_in_c"] >= 12 and stats["hot_path_to_python"] >= 4
            assert c.core.relay.hot.relayed_answers >= 8  # answers came back through it
        finally:
            python.close()
            c.close()

    asyncio.run(run())


def test_an_error_in_the_c_path_is_reported_and_the_message_taken() -> None:
    async def run() -> None:
        w = World(False, in_c=True)
        try:
            assert w.feed(w.lst, CLIENT, ccr("e;0", 1), 1.0) is True  # counts the command
            w.where["server"] = ("not", "a", "connection")  # type: ignore[assignment]
            assert w.feed(w.lst, CLIENT, ccr("e;1", 2), 1.0) is True
            stats = w.core.relay.stats  # the error was in C:
            assert (stats["hot_path_in_c"], stats["hot_path_to_python"]) == (0, 1)
            assert [e for e, _ in w.host.events] == ["input_error"]
            assert "where: peer -> (endpoint, assoc)" in str(w.host.events[0][1]["error"])
        finally:
            w.close()

    asyncio.run(run())


@pytest.mark.parametrize("route", ["realm", "shared", "host"])
def test_the_microbenchmark_prints_both_paths_for_both_transports(
    capsys: pytest.CaptureFixture[str], route: str
) -> None:
    """python -m sigmw.benchkit.direct: the Python chain and Direct side by side, per
    transport, and the ratio of the two (it checks every round relayed all 64 pairs, to
    one server, shared between two, or named by Destination-Host)."""
    from sigmw.benchkit import direct

    direct.main(["--rounds", "5", "--repeat", "1", "--route", route])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].split(maxsplit=1) for line in lines] == [
        [transport, what]
        for transport in ("SCTP", "TCP")
        for what in ("Python chain", "Direct (C)", "ratio C/Python")
    ]
    for first in (0, 3):
        python, c = (float(line.split()[-6]) for line in lines[first : first + 2])
        assert c > 0 and float(lines[first + 2].split()[-1]) == pytest.approx(c / python, abs=0.01)
