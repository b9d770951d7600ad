"""The relay's C hot path (sigmw/diameter/_hotpath.c) against the Python reference: two
relays get the same random traffic (usual requests and answers, and every kind that must
take the Python way), one with RelayHot and one without; after every step their sends and
every table, count and id must be the same. Requests are built by hand (as the wire has
them), answers from the forwarded bytes."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmw.config.diameter import DiameterNode, DiameterRoute, RedirectPolicy, RouteTarget
from sigmw.diameter import _speedups, relay, wire
from sigmw.diameter.local import LocalIdentity
from sigmw.diameter.relay import Relay, Send
from sigmw.io.endpoint import Association, SctpEndpoint
from sigmw.io.transport import SENDER_DRAIN_S, SctpTransport, send_cmsgs

ME = LocalIdentity(b"relay.example.net", b"example.net", origin_state_id=1)
ROUTES = (
    # best priority alone: the C path's kind of rule
    DiameterRoute("hss.example.org", (RouteTarget("hss1", 1), RouteTarget("hss2", 2))),
    # load shared by weight at the best priority: C picks among the usable ones
    DiameterRoute("share.example.org", (RouteTarget("hss1", 1, 2), RouteTarget("hss2", 1, 3))),
    # ... with the origin among them: the Python path's (it excludes the origin)
    DiameterRoute(
        "mixed.example.org",
        (RouteTarget("client", 1, 2), RouteTarget("hss1", 1, 1), RouteTarget("hss2", 1, 5)),
    ),
    DiameterRoute("client.example.net", (RouteTarget("client", 1),)),
)
PEERS = {
    "client": (b"Client.Example.NET", 3),
    "hss1": (b"hss1.example.org", 1),
    "hss2": (b"HSS2.example.org", 17),
}
REALMS = [
    b"hss.example.org",
    b"HSS.example.org",
    b"share.example.org",
    b"share.example.org",
    b"mixed.example.org",
    b"client.example.net",
    b"nowhere.org",
]


def _avp(code: int, value: bytes) -> bytes:
    return (
        struct.pack(">II", code, 0x40 << 24 | (8 + len(value))) + value + b"\0" * (-len(value) % 4)
    )


def _request(
    command: int, hbh: int, session: bytes | None, realm: bytes, extra: bytes, flags: int
) -> bytes:
    body = (_avp(263, session) if session is not None else b"") + _avp(264, b"client.example.net")
    body += _avp(296, b"example.net") + _avp(283, realm) + extra
    return (
        struct.pack(">IIIII", 1 << 24 | (20 + len(body)), flags << 24 | command, 4, hbh, 7) + body
    )


def _answer(request: bytes, result: bytes, flags: int) -> bytes:
    length = struct.unpack_from(">I", request, 24)[0] & 0xFFFFFF
    session = request[20 : 20 + (length + 3) // 4 * 4]
    body = (session if request[20:24] == b"\0\0\1\7" else b"") + result
    body += _avp(264, b"hss1.example.org") + _avp(296, b"example.org")
    first = struct.unpack_from(">I", request, 4)[0] & 0xFFFFFF
    head = struct.pack(">II", 1 << 24 | (20 + len(body)), flags << 24 | first) + request[8:20]
    return head + body


EXTRAS = {
    "none": b"",
    "dest_host": _avp(293, b"hss2.example.org"),
    "route_record": _avp(282, b"other.example.net"),
    "looped": _avp(282, b"RELAY.example.net"),
    "proxy_info": _avp(284, _avp(280, b"proxy.example.net") + _avp(33, b"state")),
}
RESULTS = {
    "2001": _avp(268, struct.pack(">I", 2001)),
    "5012": _avp(268, struct.pack(">I", 5012)),
    "experimental": _avp(297, _avp(298, struct.pack(">I", 5420))),
    "none": b"",
    "3006": _avp(268, struct.pack(">I", 3006)) + _avp(292, b"aaa://hss2.example.org"),
}

# Weighted towards the usual request, so that most examples take the C path many times.
request_op = st.tuples(
    st.just("request"),
    st.sampled_from(list(PEERS)),
    st.sampled_from([272, 272, 272, 316, 9999]),
    st.sampled_from([None, *(b"client.example.net;1;%d" % i for i in range(9))]),
    st.sampled_from(REALMS[:1] * 5 + [b"share.example.org"] * 3 + REALMS[1:]),
    st.sampled_from(["none"] * 5 + list(EXTRAS)[1:]),
    st.sampled_from([0xC0] * 6 + [0x80, 0xC4]),  # proxiable; not; a reserved bit
    st.sampled_from([False] * 6 + [True]),  # cut short (malformed)
)
answer_op = st.tuples(
    st.just("answer"),
    st.integers(0, 4),  # which forwarded request, counting back from the last
    st.sampled_from([True] * 4 + [False]),  # from the peer it went to, or another
    st.sampled_from(["2001"] * 4 + list(RESULTS)),
    st.sampled_from([0x40] * 4 + [0x60]),  # E bit sometimes
)
peer_op = st.tuples(
    st.sampled_from(["usable", "unusable", "closed", "reopen", "timer", "reroute"]),
    st.sampled_from(list(PEERS)),
)
ops = st.lists(st.one_of(request_op, answer_op, answer_op, peer_op), max_size=60)


def _state(r: Relay) -> Any:
    return (
        [
            (
                k,
                p.origin,
                p.origin_hbh,
                p.target,
                p.request,
                p.meta,
                p.deadline,
                p.received,
                p.resent,
                p.redirected,
            )
            for k, p in r._pending.items()
        ],
        {n: (p.host, p.outbound, p.usable, p.pending, p.route_record) for n, p in r.peers.items()},
        r.requests.copy(),
        r.answers.copy(),
        dict(r.stats),
        (list(r.latency.counts), r.latency.sum, r.latency.total),
        r._hot.next_hbh if r._hot is not None else r._next_hbh,
    )


def _pair(redirect: RedirectPolicy) -> tuple[Relay, Relay]:
    node = DiameterNode(
        "relay.example.net", "example.net", request_timeout=1000, max_pending=6, redirect=redirect
    )
    hot, ref = Relay(ME, node, ROUTES, 0xFFFFFFF0), Relay(ME, node, ROUTES, 0xFFFFFFF0)
    ref._hot = None  # the Python reference
    assert hot._hot is not None
    for r in (hot, ref):
        for name, (host, outbound) in PEERS.items():
            r.peer_open(name, host, outbound)
        # Warm up as traffic would: the commands and results counted once (in Python) and
        # the route cached, so that what follows can take the C path from the start.
        for command in (272, 316):
            for result in ("2001", "5012"):
                data = _request(command, 1, b"warm", REALMS[0], b"", 0xC0)
                (s,) = r.on_request("client", data, 0.5)
                r.on_answer(s.peer, _answer(s.data, RESULTS[result], 0x40), 0.75)
    return hot, ref


def _step(r: Relay, op: tuple[Any, ...], sent: list[Send], now: float) -> list[Send]:
    kind = op[0]
    if kind == "request":
        _, origin, command, session, realm, extra, flags, cut = op
        if origin not in r.peers:
            return []  # the node hands the relay requests of open peers only
        data = _request(command, 0x100 + len(sent), session, realm, EXTRAS[extra], flags)
        return r.on_request(origin, data[:-3] if cut else data, now)
    if kind == "answer":
        _, which, right_peer, result, flags = op
        forwarded = [s for s in sent if s.data[4] & 0x80 and s.peer != "client"]
        if not forwarded:
            return []
        s = forwarded[-1 - which % len(forwarded)]
        peer = s.peer if right_peer else "hss2" if s.peer == "hss1" else "hss1"
        return r.on_answer(peer, _answer(s.data, RESULTS[result], flags), now)
    _, peer = op
    if kind in ("usable", "unusable"):
        return r.peer_usable(peer, kind == "usable", now)
    if kind == "closed":
        return r.peer_closed(peer, now)
    if kind == "reopen":
        r.peer_open(peer, *PEERS[peer])
        return []
    if kind == "timer":
        return r.on_timer(now + 1.5)
    r.set_routes(ROUTES[1:] + ROUTES[:1])
    return []


@settings(max_examples=300, deadline=None)
@given(ops, st.sampled_from([RedirectPolicy.PASS, RedirectPolicy.FOLLOW]))
def test_hot_path_leaves_what_the_python_reference_leaves(
    steps: list[tuple[Any, ...]], redirect: RedirectPolicy
) -> None:
    hot, ref = _pair(redirect)
    sent: list[Send] = []
    for i, op in enumerate(steps):
        now = 1.0 + i / 8
        out = _step(hot, op, sent, now)
        assert out == _step(ref, op, sent, now), op
        assert _state(hot) == _state(ref), op
        sent += out


def test_usual_traffic_takes_the_c_path() -> None:
    """The differential test above would pass if C never ran: this one says it does, and
    that hop-by-hop ids wrap as in Python."""
    hot, ref = _pair(RedirectPolicy.PASS)
    for r in (hot, ref):
        for i in range(20):
            data = _request(272, i, b"s;%d" % i, b"hss.example.org", b"", 0xC0)
            (s,) = r.on_request("client", data, 1.0)
            (back,) = r.on_answer("hss1", _answer(s.data, RESULTS["2001"], 0x40), 1.25)
            assert back.peer == "client" and back.data[12:16] == data[12:16]
    assert hot._hot.relayed_requests == 20 + 2 and hot._hot.relayed_answers == 20  # + warm-up
    assert hot.stats["relayed_requests"] == ref.stats["relayed_requests"] == 20 + 4
    assert _state(hot) == _state(ref)
    assert hot._hot.next_hbh == (0xFFFFFFF0 + 4 + 20) & 0xFFFFFFFF


def test_load_shared_traffic_takes_the_c_path_and_picks_the_pythons_peers() -> None:
    """Weighted rendezvous in C: the same peer for every session as routing.diameter's,
    both peers used, each session on one; and with one of them unusable, the other."""
    hot, ref = _pair(RedirectPolicy.PASS)
    picked: dict[str, set[str]] = {"hss1": set(), "hss2": set()}
    for r in (hot, ref):
        for i in range(40):
            session = b"s;%d" % (i % 20)
            data = _request(272, i, session, b"share.example.org", b"", 0xC0)
            (s,) = r.on_request("client", data, 1.0)
            r.on_answer(s.peer, _answer(s.data, RESULTS["2001"], 0x40), 1.25)
            picked[s.peer].add(session.decode())
    assert _state(hot) == _state(ref)
    # The warm-up's 2, and all but the first (whose lookup caches the rule) in C.
    assert hot._hot.relayed_requests == 2 + 39
    assert picked["hss1"] and picked["hss2"] and not picked["hss1"] & picked["hss2"]
    for r in (hot, ref):
        r.peer_usable("hss1", False, 2.0)
        data = _request(272, 99, b"s;1", b"share.example.org", b"", 0xC0)
        assert [s.peer for s in r.on_request("client", data, 2.0)] == ["hss2"]
    assert hot._hot.relayed_requests == 2 + 40 and _state(hot) == _state(ref)


def test_failover_to_the_next_priority_takes_the_c_path() -> None:
    """The best priority's peer down: its sessions go to the next priority's, in C too."""
    hot, ref = _pair(RedirectPolicy.PASS)
    for r in (hot, ref):
        r.peer_usable("hss1", False, 1.0)
        for i in range(5):  # under max_pending (6)
            data = _request(272, i, b"f;%d" % i, b"hss.example.org", b"", 0xC0)
            assert [s.peer for s in r.on_request("client", data, 1.0)] == ["hss2"]
    assert hot._hot.relayed_requests == 2 + 5 and _state(hot) == _state(ref)


def test_destination_host_and_route_record_requests_take_the_c_path() -> None:
    """A session's later requests name their server (Destination-Host) and requests that
    came through other agents carry Route-Records: both are relayed in C, to the named
    peer while it can take them and by the route when it cannot; a loop and a request
    for this node itself are Python's to answer."""
    hot, ref = _pair(RedirectPolicy.PASS)
    via = EXTRAS["route_record"]
    for r in (hot, ref):
        out = []
        for i, extra in enumerate([EXTRAS["dest_host"], via, EXTRAS["dest_host"] + via]):
            data = _request(272, i, b"d;%d" % i, b"hss.example.org", extra, 0xC0)
            out += [s.peer for s in r.on_request("client", data, 1.0)]
        r.peer_usable("hss2", False, 1.0)  # the named peer down: the route decides
        data = _request(272, 9, b"d;9", b"hss.example.org", EXTRAS["dest_host"], 0xC0)
        out += [s.peer for s in r.on_request("client", data, 1.0)]
        assert out == ["hss2", "hss1", "hss2", "hss1"]
    assert hot._hot.relayed_requests == 2 + 4 and _state(hot) == _state(ref)
    for extra in (EXTRAS["looped"], _avp(293, b"RELAY.example.net")):
        for r in (hot, ref):
            data = _request(272, 20, b"x;1", b"hss.example.org", extra, 0xC0)
            (answer,) = r.on_request("client", data, 1.0)
            assert answer.peer == "client" and answer.data[4] & 0x20  # answered here
    assert hot._hot.relayed_requests == 2 + 4 and _state(hot) == _state(ref)


def test_records_are_the_c_structs() -> None:
    assert relay._new_pending is _speedups.Pending and relay._new_peer is _speedups.Peer
    peer = _speedups.Peer(b"h", 3, route_record=b"rr")
    assert (peer.host, peer.outbound, peer.usable, peer.pending, peer.route_record) == (
        b"h", 3, True, 0, b"rr"
    )  # fmt: skip
    peer.pending += 1
    peer.usable = False
    assert (peer.pending, peer.usable) == (1, False)


@given(st.binary(max_size=300))
def test_crc32_is_zlibs(data: bytes) -> None:
    assert _speedups.crc32(data) == zlib.crc32(data)


# --- shed_sctp: the SCTP shedder in bulk --------------------------------------------------

TAIL = _avp(268, struct.pack(">I", 3004))


def _read(data: bytes, assoc: int = 5, stream: int = 2, ppid: int = 46, flags: int = 0x80) -> Any:
    """A read as recv_batch gives it: (data, flags, raw SCTP_RCVINFO, source)."""
    rcvinfo = struct.pack("@HHHxxIIIIi", stream, 0, 0, socket.htonl(ppid), 0, 0, 0, assoc)
    return (data, flags, rcvinfo, b"")


def _control(cmsgs: list[tuple[int, int, bytes]]) -> bytes:
    """Ancillary data laid out as sendmsg(2) takes it (struct cmsghdr, data, padding)."""
    out = b""
    for level, kind, data in cmsgs:
        head = struct.pack("@Nii", socket.CMSG_LEN(len(data)), level, kind)
        out += (head + data).ljust(socket.CMSG_SPACE(len(data)), b"\0")
    return out


def _queued(sender: Any) -> dict[int, list[tuple[bytes, bytes]]]:
    """A thread-less ShedSender's queue, by association: (3004, ancillary data) in order."""
    out: dict[int, list[tuple[bytes, bytes]]] = {}
    for assoc, control, answer in sender.take():
        out.setdefault(assoc, []).append((answer, control))
    return out


def _sinks(streams: int = 4) -> tuple[dict[int, int], dict[Any, Any], dict[Any, Any]]:
    """known associations, cached ancillary data and traffic cells, all present."""
    known = {5: streams}
    cmsgs = {(5, s, 46): [(132, 2, b"sndinfo%d" % s)] for s in range(streams)}
    counts: dict[Any, Any] = {(5, 0, p, s): [0, 0] for s in range(8) for p in (0, 46)}
    counts.update({(5, 1, 46, s): [0, 0] for s in range(streams)})
    return known, cmsgs, counts


def test_shed_sctp_answers_requests_and_stops_at_the_first_it_cannot_take() -> None:
    known, cmsgs, counts = _sinks()
    sender = _speedups.ShedSender(-1, 1024)
    answers = {(272, 3004, "local"): 0}
    requests = [_request(272, i, b"s;%d" % i, REALMS[0], b"", 0xC0) for i in range(5)]
    stoppers = [
        _read(requests[0], flags=0x8080),  # a notification
        _read(requests[0], flags=0),  # a piece of a message
        _read(requests[0], ppid=3),  # not Diameter
        _read(requests[0], assoc=6),  # an association not known
        _read(_answer(requests[0], RESULTS["2001"], 0x40)),  # an answer
        _read(_request(280, 1, b"s;1", REALMS[0], b"", 0xC0)),  # a DWR
        _read(_request(272, 1, None, REALMS[0], b"", 0xC0)),  # no Session-Id: the spreader's
        _read(_request(316, 1, b"s;1", REALMS[0], b"", 0xC0)),  # 3004 of 316 not counted yet
    ]
    for stopper in stoppers:
        reads = [_read(requests[0]), _read(requests[1], ppid=0), stopper, _read(requests[2])]
        got = _speedups.shed_sctp(reads, 1, known, cmsgs, counts, sender, answers, TAIL)
        assert got == (2, 1, 0)
    assert answers[(272, 3004, "local")] == len(stoppers)
    sent = _queued(sender)[5]
    assert len(sent) == len(stoppers)
    stream = zlib.crc32(b"s;1") % 3 + 1
    want = (wire.busy_answer(requests[1], TAIL), _control(cmsgs[(5, stream, 46)]))
    assert all(pair == want for pair in sent)
    assert counts[(5, 0, 0, 2)] == [len(stoppers), len(stoppers) * len(requests[1])]
    assert counts[(5, 1, 46, stream)] == [len(stoppers), sum(len(p[0]) for p in sent)]
    # A key not there yet stops it too, with nothing touched: the Python path makes it.
    del cmsgs[(5, stream, 46)]
    before = (answers.copy(), {k: list(v) for k, v in counts.items()})
    assert _speedups.shed_sctp(
        [_read(requests[1])], 0, known, cmsgs, counts, sender, answers, TAIL
    ) == (0, 0, 0)
    assert before == (answers, {k: list(v) for k, v in counts.items()})
    assert sender.take() == []
    # One stream: everything on stream 0.
    known, cmsgs, counts = _sinks(streams=1)
    reads = [_read(r) for r in requests]
    got = _speedups.shed_sctp(reads, 0, known, cmsgs, counts, sender, answers, TAIL)
    assert got == (5, 5, 0)
    assert [cm for _, cm in _queued(sender)[5]] == [_control(cmsgs[(5, 0, 46)])] * 5


shed_read = st.tuples(
    st.sampled_from([5, 6]),  # association
    st.integers(0, 9),  # inbound stream
    st.sampled_from([0, 46]),  # PPID (freeDiameter sends 0)
    st.sampled_from([272, 316, 318]),  # command
    st.integers(0, 30),  # session
)


@settings(max_examples=200, deadline=None)
@given(st.lists(shed_read, min_size=1, max_size=80))
def test_shed_sctp_matches_a_read_by_read_model(spec: list[tuple[int, int, int, int, int]]) -> None:
    """Across associations, streams, PPIDs and commands, one call queues the 3004s in read
    order on each session's stream and adds up exactly the counts a read-by-read shedder
    would (the C side looks each key up once a call and adds the counts at its end)."""
    outbound = {5: 4, 6: 9}
    cmsgs = {
        (a, s, 46): [(132, 2, b"%d/%d" % (a, s))] for a, n in outbound.items() for s in range(n)
    }
    counts: dict[Any, list[int]] = {
        (a, d, p, s): [1, 10] for a in outbound for d in (0, 1) for p in (0, 46) for s in range(10)
    }
    answers = {(c, 3004, "local"): 100 + c for c in (272, 316, 318)}
    want_counts = {k: list(v) for k, v in counts.items()}
    want_answers = dict(answers)
    want_held: dict[int, list[tuple[bytes, bytes]]] = {}
    reads = []
    for i, (assoc, stream_in, ppid, command, session) in enumerate(spec):
        sid = b"client.example.net;%d" % session
        request = _request(command, i, sid, REALMS[0], b"", 0xC0)
        reads.append(_read(request, assoc, stream_in, ppid))
        stream = zlib.crc32(sid) % (outbound[assoc] - 1) + 1
        answer = wire.busy_answer(request, TAIL)
        want_held.setdefault(assoc, []).append((answer, _control(cmsgs[(assoc, stream, 46)])))
        for key, size in (
            ((assoc, 0, ppid, stream_in), len(request)),
            ((assoc, 1, 46, stream), len(answer)),
        ):
            want_counts[key][0] += 1
            want_counts[key][1] += size
        want_answers[(command, 3004, "local")] += 1
    sender = _speedups.ShedSender(-1, 1024)
    got = _speedups.shed_sctp(reads, 0, outbound, cmsgs, counts, sender, answers, TAIL)
    assert got == (len(reads), len(reads), 0)
    assert (_queued(sender), counts, answers) == (want_held, want_counts, want_answers)


def test_shed_sctp_refuses_a_negative_start() -> None:
    known, cmsgs, counts = _sinks()
    reads = [_read(_request(272, 1, b"s;1", REALMS[0], b"", 0xC0))]
    sender = _speedups.ShedSender(-1, 1024)
    with pytest.raises(ValueError, match="start"):
        _speedups.shed_sctp(reads, -1, known, cmsgs, counts, sender, {}, TAIL)


def test_shed_sctp_stops_when_its_tables_are_full_and_keeps_the_counts_so_far() -> None:
    """More distinct inbound streams than a call keeps (64) stop it at the first that does
    not fit: that read is the Python path's, the ones before are counted."""
    known = {5: 2}
    cmsgs = {(5, 1, 46): [(132, 2, b"x")]}
    counts: dict[Any, Any] = {(5, 0, 46, s): [0, 0] for s in range(100)}
    counts[(5, 1, 46, 1)] = [0, 0]
    answers = {(272, 3004, "local"): 0}
    request = _request(272, 1, b"s;1", REALMS[0], b"", 0xC0)
    reads = [_read(request, stream=s) for s in range(100)]
    sender = _speedups.ShedSender(-1, 1024)
    got = _speedups.shed_sctp(reads, 0, known, cmsgs, counts, sender, answers, TAIL)
    assert got == (64, 64, 0)
    queued = len(sender.take())
    assert answers[(272, 3004, "local")] == 64 == queued == counts[(5, 1, 46, 1)][0]
    assert [counts[(5, 0, 46, s)][0] for s in range(100)] == [1] * 64 + [0] * 36
    got = _speedups.shed_sctp(reads, 64, known, cmsgs, counts, sender, answers, TAIL)
    assert got == (100, 36, 0)


# --- ShedSender: the thread that sends shed_sctp's 3004s ----------------------------------


def _shed(sender: Any, sessions: list[bytes], assoc: int = 5) -> tuple[list[bytes], Any]:
    """Shed one request per session on `assoc` (4 streams); the 3004s and the counts."""
    known, cmsgs, counts = _sinks()
    known[assoc] = 4
    cmsgs.update({(assoc, s, 46): [(132, 2, b"sndinfo%d" % s)] for s in range(4)})
    counts.update({(assoc, d, 46, s): [0, 0] for d in (0, 1) for s in range(8)})
    answers = {(272, 3004, "local"): 0}
    requests = [_request(272, i, sid, REALMS[0], b"", 0xC0) for i, sid in enumerate(sessions)]
    reads = [_read(r, assoc) for r in requests]
    got = _speedups.shed_sctp(reads, 0, known, cmsgs, counts, sender, answers, TAIL)
    assert got[:2] == (len(reads), len(reads))
    return [wire.busy_answer(r, TAIL) for r in requests], (got[2], counts, answers)


def test_shed_sctp_drops_past_an_associations_bound_and_counts_only_what_it_queued() -> None:
    """At most `limit` 3004s wait for one association: the rest are dropped (returned as
    dropped, not counted out); every request still counts in and as answered 3004."""
    sender = _speedups.ShedSender(-1, 3)
    sessions = [b"s;%d" % i for i in range(5)]
    answers, (dropped, counts, by_command) = _shed(sender, sessions)
    assert dropped == 2
    assert by_command[(272, 3004, "local")] == 5
    assert counts[(5, 0, 46, 2)][0] == 5  # all five read on inbound stream 2
    out = [c for k, c in counts.items() if k[:3] == (5, 1, 46)]
    assert sum(c[0] for c in out) == 3
    assert sum(c[1] for c in out) == sum(map(len, answers[:3]))
    assert [a for a, _ in _queued(sender)[5]] == answers[:3]
    # Another association has its own bound; taken ones make room again.
    assert _shed(sender, sessions[:3], assoc=6)[1][0] == 0
    assert _shed(sender, sessions[:3])[1][0] == 0


def _receive_all(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    sock.settimeout(timeout)
    return [sock.recv(65536) for _ in range(count)]


SCHED_BATCH = 3


def _thread_policies() -> list[int]:
    """The scheduling policy of each thread of this process (field 41 of its stat)."""
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/stat") as f:
            stat = f.read()
        out.append(int(stat[stat.rindex(")") + 2 :].split()[38]))
    return out


def test_shed_sender_thread_sends_every_3004_in_order_and_counts_them() -> None:
    """With a socket, the thread sends what shed_sctp queued, in order (a Unix seqpacket
    pair stands in for the one-to-many socket: it ignores SCTP's ancillary data; the
    SCTP suite runs the same on the kernel's SCTP)."""
    gc.collect()  # an earlier test's sender, unreferenced: stopped as it is collected
    others = _thread_policies().count(SCHED_BATCH)  # any still referenced
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        mine.setblocking(False)
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        want: list[bytes] = []
        for call in range(10):
            want += _shed(sender, [b"c%d;%d" % (call, i) for i in range(64)])[0]
        assert _receive_all(theirs, len(want)) == want
        assert sender.drain(5.0)
        assert sender.counts() == (len(want), 0, 0)
        # SCHED_BATCH: it never preempts the relay's thread.
        assert _thread_policies().count(SCHED_BATCH) == others + 1
        sender.stop()
        sender.stop()  # idempotent
        assert _thread_policies().count(SCHED_BATCH) <= others


def test_shed_sender_waits_for_room_and_then_sends_the_rest() -> None:
    """A peer that does not read fills the socket: the thread waits (EAGAIN, then poll)
    and sends the rest, in order, once the peer reads; nothing fails or is lost."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        mine.setblocking(False)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        want = _shed(sender, [b"blocked;%d" % i for i in range(300)])[0]
        assert not sender.drain(0.3)  # the peer reads nothing: they wait
        sent, failed, waiting = sender.counts()
        assert failed == 0 and waiting == 300 - sent and waiting > 0
        assert _receive_all(theirs, len(want)) == want
        assert sender.drain(5.0)
        assert sender.counts() == (300, 0, 0)
        sender.stop()


def test_a_graceful_shutdown_waits_for_the_3004s_without_blocking_the_loop() -> None:
    """SctpEndpoint.shutdown lets the 3004s shed before it leave first, but awaits them:
    the event loop keeps running meanwhile (other associations' traffic goes on). The
    wait ends once they left, or after SENDER_DRAIN_S when the peer reads nothing."""

    async def drain(ep: SctpEndpoint) -> tuple[bool, int, float]:
        loop = asyncio.get_running_loop()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        began = loop.time()
        done = await ep.drain_sender_soon()
        took = loop.time() - began
        ticker.cancel()
        return done, ticks, took

    async def main(mine: socket.socket, theirs: socket.socket) -> None:
        ep = SctpEndpoint(mine)
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        ep.attach_sender(sender)
        want = _shed(sender, [b"waiting;%d" % i for i in range(300)])[0]
        done, ticks, took = await drain(ep)  # nobody reads: it gives up
        assert not done and SENDER_DRAIN_S <= took < SENDER_DRAIN_S + 0.5
        assert ticks >= 20  # a blocking wait would have let the ticker run once
        assert sender.counts()[2] > 0
        loop = asyncio.get_running_loop()
        reader = loop.run_in_executor(None, _receive_all, theirs, len(want))
        done, ticks, took = await drain(ep)  # the peer reads: they all leave
        assert done and sender.counts() == (300, 0, 0)
        assert await reader == want
        # Nothing waits: it returns without yielding, so a close does not hold back the
        # outputs after it.
        idle = ep.drain_sender_soon()
        with pytest.raises(StopIteration) as finished:
            idle.send(None)
        assert finished.value.value is True
        ep.close()

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        mine.setblocking(False)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        asyncio.run(main(mine, theirs))


def test_shed_sender_counts_a_gone_peer_as_failed_and_stop_drops_what_waits() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine:
        mine.setblocking(False)
        theirs.close()
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        _shed(sender, [b"gone;%d" % i for i in range(40)])
        assert sender.drain(5.0)
        assert sender.counts() == (0, 40, 0)  # EPIPE: the association's queue is dropped
        sender.stop()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        mine.setblocking(False)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        _shed(sender, [b"stuck;%d" % i for i in range(300)])
        assert not sender.drain(0.2)
        sender.stop()  # the peer never reads: what waits is dropped, as failed
        sent, failed, waiting = sender.counts()
        assert (sent + failed, waiting) == (300, 0) and failed > 0


def test_a_transport_folds_its_sender_threads_counts_and_stops_it_when_closed() -> None:
    async def run() -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        with theirs:
            transport = SctpTransport(mine)
            replaced = _speedups.ShedSender(mine.fileno(), 1024)
            transport.attach_sender(replaced)
            sender = _speedups.ShedSender(mine.fileno(), 1024)
            transport.attach_sender(sender)
            assert replaced.take() == []  # stopped: no thread, no descriptor left
            want = _shed(sender, [b"fold;%d" % i for i in range(50)])[0]
            assert _receive_all(theirs, 50) == want
            assert sender.drain(5.0)
            before = transport.stats.messages_out
            transport.sync_sender()
            transport.sync_sender()  # only what is new counts
            assert transport.stats.messages_out == before + 50
            theirs.close()
            _shed(sender, [b"late;%d" % i for i in range(7)])
            assert sender.drain(5.0)
            transport.close()
            assert transport.stats.send_failed == 7
            assert sender.counts() == (50, 7, 0)
            assert _shed(sender, [b"closed;1"])[1][0] == 1  # stopped: dropped
            assert sender.counts() == (50, 7, 0)

    asyncio.run(run())


def test_shed_sender_sends_on_its_own_descriptor_until_stopped() -> None:
    """It holds a duplicate of the descriptor: its owner closing the socket first cannot
    make it write to a number reused meanwhile; stopping it closes the duplicate."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        mine.setblocking(False)
        sender = _speedups.ShedSender(mine.fileno(), 1024)
        mine.close()
        want = _shed(sender, [b"dup;%d" % i for i in range(20)])[0]
        assert _receive_all(theirs, 20) == want
        assert sender.drain(5.0)
        sender.stop()
        theirs.settimeout(5.0)
        assert theirs.recv(100) == b""  # the last reference to the socket is gone


def test_a_3004_queued_behind_other_sends_caches_its_ancillary_data_for_the_bulk_path() -> None:
    """send_nowait with sends already queued for the association still fills the cache
    the bulk shedder reads (else every later read on that stream went the Python way)."""

    async def run() -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        with theirs:
            ep = SctpEndpoint(mine)
            ep.associations[7] = Association(7, 4, 4)
            assert ep._queue_nowait(7, b"first", [], 10)  # something waits for room
            assert not ep.try_send(b"3004", 7, 2, 46)
            assert ep.send_nowait(b"3004", 7, 2, 46)
            cmsgs, _ = ep.bulk_state()
            assert cmsgs[(7, 2, 46)] == send_cmsgs(2, 46, 0, 0, 7, None)
            ep.close()

    asyncio.run(run())


class _Unshed:
    """What SctpTransport._room reads of a transport (the Python reference)."""

    def __init__(self, sock: socket.socket, queued: int, backlog: int) -> None:
        self.sock, self._rx, self.shed_backlog = sock, [None] * queued, backlog


@pytest.mark.parametrize(("queued", "backlog"), [(0, 1000), (0, 5), (2, 5), (7, 5), (0, 0)])
def test_recv_shed_reads_a_batch_and_keeps_what_the_python_bound_keeps(
    queued: int, backlog: int
) -> None:
    """recv_shed's read and its split of a full batch agree with _mmsg.recv_batch and
    SctpTransport._room. On a Unix seqpacket pair no read carries SCTP_RCVINFO, so it
    sheds none of them and hands them all back (the SCTP suite sheds on the kernel's SCTP).
    """
    from sigmw.io import transport as t
    from sigmw.io._mmsg import recv_batch

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        mine.setblocking(False)
        requests = [_request(272, i, b"s;%d" % i, REALMS[0], b"", 0xC0) for i in range(9)]
        sender = _speedups.ShedSender(-1, 1024)
        known, cmsgs, counts = _sinks()
        room = (queued, backlog, t.SHED_BUFFER_SHARE, t.SKB_OVERHEAD)

        def recv(want: int, may_shed: bool = True) -> tuple[list[Any], int, int, int]:
            shed_known = known if may_shed else None
            return _speedups.recv_shed(
                mine.fileno(), want, 4096, room, shed_known, lambda a: 4, cmsgs, counts,
                sender, {}, TAIL,
            )  # fmt: skip

        for r in requests:
            theirs.send(r)
        reads, keep, taken, dropped = recv(4)
        assert (taken, dropped) == (0, 0) and len(reads) == 4
        assert keep == t.SctpTransport._room(_Unshed(mine, queued, backlog), reads)  # type: ignore[arg-type]
        assert [r[0] for r in reads] == requests[:4] and all(r[2] is None for r in reads)
        assert recv(8, may_shed=False)[1:] == (5, 0, 0)  # not a full batch: all kept
        theirs.send(requests[0])
        theirs.send(requests[0])
        [reference] = recv_batch(mine.fileno(), 1, 4096)
        assert recv(4) == ([reference], 1, 0, 0)  # the same read, the same tuple
        assert recv(4) == ([], 0, 0, 0)  # nothing waits
    with pytest.raises(OSError):
        recv(4)  # closed
    assert sender.take() == []
