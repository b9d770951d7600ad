"""The Diameter node core (sans-IO) driven like the daemon drives it: connections
come up, CER/CEA, watchdog, relay traffic, DPR/DPA, election. Peers' messages are
built with python-diameter so nothing here trusts sigmw's own encoder."""

from __future__ import annotations

import random

import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
)

from sigmw.config.diameter import DiameterNode, DiameterRoute, RouteTarget
from sigmw.diameter import local
from sigmw.diameter import node as node_module
from sigmw.diameter.node import (
    BindConn,
    CloseConn,
    DiameterCore,
    HoldPeer,
    Output,
    PeerInfo,
    SendOn,
)
from sigmw.diameter.peer_fsm import PeerState
from sigmw.diameter.relay import Send
from sigmw.diameter.watchdog import WatchdogState
from sigmw.routing.streams import session_stream

ME = local.LocalIdentity(b"relay.test", b"test", 7)
NODE = DiameterNode("relay.test", "test", watchdog=6000, request_timeout=2000)
PEERS = [
    PeerInfo("client", "client.test", "test", dials=False),
    PeerInfo("server", "server.test", "srv.test", dials=True),
    PeerInfo("backup", "backup.test", "srv.test", dials=True),
]
ROUTES = (DiameterRoute("srv.test", (RouteTarget("server", 1), RouteTarget("backup", 2))),)


def core() -> DiameterCore:
    return DiameterCore(ME, NODE, PEERS, ROUTES, random.Random(1).random)


def cer(host: str, apps: list[int] | None = None) -> bytes:
    m = CapabilitiesExchangeRequest()
    m.header.hop_by_hop_identifier, m.header.end_to_end_identifier = 11, 12
    m.origin_host, m.origin_realm = host.encode(), b"test"
    m.host_ip_address, m.vendor_id, m.product_name = ["10.0.0.9"], 0, "peer"
    m.auth_application_id = [4] if apps is None else apps
    return bytes(m.as_bytes())


def cea(host: str, hbh: int, e2e: int, result: int = 2001) -> bytes:
    m = CapabilitiesExchangeAnswer()
    m.header.hop_by_hop_identifier, m.header.end_to_end_identifier = hbh, e2e
    m.result_code, m.origin_host, m.origin_realm = result, host.encode(), b"srv.test"
    m.host_ip_address, m.vendor_id, m.product_name = ["10.0.0.8"], 0, "srv"
    m.auth_application_id = [4]
    return bytes(m.as_bytes())


def ccr(session: str, hbh: int, realm: bytes = b"srv.test") -> bytes:
    m = CreditControlRequest()
    m.header.hop_by_hop_identifier, m.header.end_to_end_identifier = hbh, hbh + 1000
    m.header.is_proxyable = True
    m.session_id, m.origin_host, m.origin_realm = session, b"client.test", b"test"
    m.destination_realm, m.auth_application_id = realm, 4
    m.cc_request_type, m.cc_request_number = 1, 0
    return bytes(m.as_bytes())


def sent(outs: list[Output]) -> list[Message]:
    return [Message.from_bytes(o.data) for o in outs if isinstance(o, SendOn | Send)]


def open_server(c: DiameterCore, conn: object = ("srv", 1), name: str = "server") -> None:
    out = c.connected(conn, name, 10, ["10.0.0.1", "10.0.1.1"], 0.0)
    (req,) = sent(out)
    assert req.header.command_code == 257 and req.header.is_request
    assert [a for a in req.host_ip_address] == ["10.0.0.1", "10.0.1.1"] or len(
        req.host_ip_address
    ) == 2
    host = "server.test" if name == "server" else "backup.test"
    out = c.received(conn, cea(host, req.header.hop_by_hop_identifier, 1), 0.1)
    assert BindConn(conn, name) in out
    assert c.slots[name].fsm.state is PeerState.I_OPEN


def open_client(c: DiameterCore, conn: object = ("lst", 1)) -> None:
    assert c.connected(conn, None, 5, ["10.0.0.1"], 0.0) == []
    out = c.received(conn, cer("client.test"), 0.1)
    (answer,) = sent(out)
    assert answer.result_code == 2001 and answer.header.hop_by_hop_identifier == 11
    assert BindConn(conn, "client") in out


def test_relay_round_trip_with_streams() -> None:
    c = core()
    open_server(c)
    open_client(c)
    out = c.received(("lst", 1), ccr("s;1", 77), 1.0)
    (fwd,) = [o for o in out if isinstance(o, Send)]
    assert fwd.peer == "server" and 1 <= fwd.stream < 10
    req = Message.from_bytes(fwd.data)
    assert req.header.hop_by_hop_identifier != 77
    assert [a.value for a in req.avps if a.code == 282] == [b"client.test"]
    answer = req.to_answer()
    answer.result_code, answer.origin_host, answer.origin_realm = 2001, b"server.test", b"srv.test"
    answer.session_id = "s;1"
    out = c.received(("srv", 1), bytes(answer.as_bytes()), 1.2)
    (back,) = [o for o in out if isinstance(o, Send)]
    assert back.peer == "client" and 1 <= back.stream < 5
    assert Message.from_bytes(back.data).header.hop_by_hop_identifier == 77


def test_unknown_peer_gets_3010_then_close() -> None:
    c = core()
    c.connected(("lst", 2), None, 5, ["10.0.0.1"], 0.0)
    out = c.received(("lst", 2), cer("stranger.test"), 0.1)
    (answer,) = sent(out)
    assert answer.result_code == 3010 and answer.header.is_error
    assert isinstance(out[-1], CloseConn)


def test_no_common_application_gets_5010() -> None:
    c = core()
    c.connected(("lst", 2), None, 5, ["10.0.0.1"], 0.0)
    (answer,) = sent(c.received(("lst", 2), cer("client.test", apps=[]), 0.1))
    assert answer.result_code == 5010


def test_second_connection_from_open_peer_refused_with_answer() -> None:
    c = core()
    open_client(c)
    c.connected(("lst", 3), None, 5, ["10.0.0.1"], 0.0)
    out = c.received(("lst", 3), cer("client.test"), 0.2)
    (answer,) = sent(out)
    assert answer.result_code == 4003
    assert c.slots["client"].conn == ("lst", 1)


def test_watchdog_dwr_after_silence_then_failover_to_backup() -> None:
    c = core()
    open_server(c)
    open_server(c, ("bak", 1), "backup")
    open_client(c)
    out = c.received(("lst", 1), ccr("s;2", 5), 1.0)
    (fwd,) = [o for o in out if isinstance(o, Send)]
    assert fwd.peer == "server"
    # Silence from the server (the backup answers its DWRs): a DWR after ~Tw (6 s, +-1.5 s),
    # SUSPECT one Tw later, and the pending request moves to the backup with the T flag.
    dwrs, resent = [], []
    for t in range(2, 20):
        for o in c.timer(float(t)):
            if isinstance(o, Send) and o.peer == "backup":
                resent.append(o)
            elif isinstance(o, SendOn) and o.conn == ("srv", 1):
                dwrs.append(Message.from_bytes(o.data))
            elif isinstance(o, SendOn) and o.conn == ("bak", 1):
                c.received(("bak", 1), dwa_for(Message.from_bytes(o.data)), float(t))
    assert dwrs and dwrs[0].header.command_code == 280 and dwrs[0].header.is_request
    assert c.watchdog_state("server") in (WatchdogState.SUSPECT, WatchdogState.DOWN)
    assert c.watchdog_state("backup") is WatchdogState.OKAY
    (again,) = resent
    moved = Message.from_bytes(again.data)
    assert moved.header.is_retransmit and moved.session_id == "s;2"
    assert (
        moved.header.hop_by_hop_identifier
        != Message.from_bytes(fwd.data).header.hop_by_hop_identifier
    )


def dwa_for(dwr: Message) -> bytes:
    a = DeviceWatchdogAnswer()
    a.header.hop_by_hop_identifier = dwr.header.hop_by_hop_identifier
    a.header.end_to_end_identifier = dwr.header.end_to_end_identifier
    a.result_code, a.origin_host, a.origin_realm = 2001, b"peer.test", b"srv.test"
    return bytes(a.as_bytes())


def test_watchdog_answered_stays_okay_and_dwr_answered() -> None:
    c = core()
    open_server(c)
    req = DeviceWatchdogRequest()
    req.origin_host, req.origin_realm = b"server.test", b"srv.test"
    req.header.hop_by_hop_identifier = 99
    (dwa,) = sent(c.received(("srv", 1), bytes(req.as_bytes()), 1.0))
    assert dwa.header.command_code == 280 and not dwa.header.is_request
    assert dwa.header.hop_by_hop_identifier == 99 and dwa.result_code == 2001
    for t in range(2, 30):
        for m in sent(c.timer(float(t))):
            if m.header.command_code == 280 and m.header.is_request:
                c.received(("srv", 1), dwa_for(m), float(t) + 0.1)
    assert c.watchdog_state("server") is WatchdogState.OKAY


def test_stop_sends_dpr_and_closes_on_dpa() -> None:
    c = core()
    open_server(c)
    (dpr,) = sent(c.stop(5.0))
    assert dpr.header.command_code == 282 and dpr.disconnect_cause == 0  # REBOOTING
    assert c.closing() == ["server"]
    a = DisconnectPeerAnswer()
    a.header.hop_by_hop_identifier = dpr.header.hop_by_hop_identifier
    a.result_code, a.origin_host, a.origin_realm = 2001, b"server.test", b"srv.test"
    out = c.received(("srv", 1), bytes(a.as_bytes()), 5.1)
    assert CloseConn(("srv", 1), "I-Disc") in out
    assert c.closing() == []


def test_dpr_do_not_want_to_talk_holds_the_peer() -> None:
    c = core()
    open_server(c)
    r = DisconnectPeerRequest()
    r.header.hop_by_hop_identifier = 5
    r.origin_host, r.origin_realm, r.disconnect_cause = b"server.test", b"srv.test", 2
    (dpa,) = sent(c.received(("srv", 1), bytes(r.as_bytes()), 1.0))
    assert dpa.header.command_code == 282 and dpa.result_code == 2001
    out = c.disconnected(("srv", 1), 1.1)
    assert HoldPeer("server") in out
    assert c.slots["server"].fsm.state is PeerState.CLOSED


def test_election_local_wins_keeps_responder() -> None:
    # relay.test > backup.test: we win, close our initiator, answer their CER.
    c = core()
    out = c.connected(("bak", 1), "backup", 10, ["10.0.0.1"], 0.0)
    assert sent(out)[0].header.command_code == 257
    c.connected(("lst", 9), None, 7, ["10.0.0.1"], 0.1)
    out = c.received(("lst", 9), cer("backup.test"), 0.2)
    assert CloseConn(("bak", 1), "I-Disc") in out
    assert BindConn(("lst", 9), "backup") in out
    (answer,) = sent(out)
    assert answer.result_code == 2001
    assert c.slots["backup"].fsm.state is PeerState.R_OPEN
    # The loser (freeDiameterd does this) answers our CER 4003 on the connection we
    # already closed: dropped and counted, not taken for a new connection's first message.
    assert c.received(("bak", 1), cea("backup.test", 1, 1, result=4003), 0.3) == []
    assert c.relay.stats["after_close"] == 1
    assert c.slots["backup"].fsm.state is PeerState.R_OPEN


def test_election_local_loses_keeps_initiator() -> None:
    # server.test > relay.test: we lose, wait for the CEA on our connection.
    c = core()
    out = c.connected(("srv", 1), "server", 10, ["10.0.0.1"], 0.0)
    (our_cer,) = sent(out)
    c.connected(("lst", 9), None, 7, ["10.0.0.1"], 0.1)
    out = c.received(("lst", 9), cer("server.test"), 0.2)
    assert sent(out) == []
    out = c.received(("srv", 1), cea("server.test", our_cer.header.hop_by_hop_identifier, 1), 0.3)
    assert CloseConn(("lst", 9), "R-Disc") in out and BindConn(("srv", 1), "server") in out
    assert c.slots["server"].fsm.state is PeerState.I_OPEN


def test_no_route_3002_and_loop_3005() -> None:
    c = core()
    open_client(c)
    (a,) = sent(c.received(("lst", 1), ccr("s;3", 9, realm=b"nowhere.test"), 1.0))
    assert a.result_code == 3002 and a.header.is_error
    assert [x.value for x in a.find_avps((294, 0))] == [b"relay.test"]  # Error-Reporting-Host
    m = Message.from_bytes(ccr("s;4", 10))
    m.append_avp(Avp.new(282, value=b"relay.test"))
    (a,) = sent(c.received(("lst", 1), bytes(m.as_bytes()), 1.1))
    assert a.result_code == 3005


def test_cea_timeout_closes_and_cer_timeout_for_silent_accept() -> None:
    c = core()
    c.connected(("srv", 1), "server", 10, ["10.0.0.1"], 0.0)
    c.connected(("lst", 4), None, 5, ["10.0.0.1"], 0.0)
    out = c.timer(11.0)
    assert CloseConn(("srv", 1), "Error") in out
    assert any(isinstance(o, CloseConn) and o.conn == ("lst", 4) for o in out)
    assert c.slots["server"].fsm.state is PeerState.CLOSED


def test_shed_request_answers_only_application_requests_3004() -> None:
    c = core()
    open_server(c)
    open_client(c)
    (busy,) = c.shed_request(("lst", 1), ccr("s;9", 41), 1.0)
    answer = Message.from_bytes(busy.data)
    assert busy.peer == "client" and answer.result_code == 3004 and answer.header.is_error
    assert answer.header.hop_by_hop_identifier == 41 and answer.session_id == "s;9"
    dwr = DeviceWatchdogRequest()
    dwr.origin_host, dwr.origin_realm = b"client.test", b"test"
    assert c.shed_request(("lst", 1), bytes(dwr.as_bytes()), 1.0) == []  # management: never
    assert c.shed_request(("srv", 1), dwa_for(dwr), 1.0) == []  # answers: never
    assert c.shed_request(("nobody", 1), ccr("s;9", 42), 1.0) == []  # no open peer
    assert c.relay.pending_count() == 0 and c.relay.stats["shed_3004"] == 1


def test_busy_reply_is_the_3004_and_its_stream_for_application_requests_only() -> None:
    """What SCTP sheds at the read: the answer and the stream back, no output object."""
    c = core()
    open_server(c)
    open_client(c)
    reply = c.busy_reply(("lst", 1), ccr("s;9", 41), 1.0)
    assert reply is not None
    data, stream = reply
    answer = Message.from_bytes(data)
    assert answer.result_code == 3004 and answer.header.hop_by_hop_identifier == 41
    assert answer.session_id == "s;9"
    outbound = c.relay.peers["client"].outbound
    assert stream == session_stream(b"s;9", outbound)
    dwr = DeviceWatchdogRequest()
    dwr.origin_host, dwr.origin_realm = b"client.test", b"test"
    assert c.busy_reply(("lst", 1), bytes(dwr.as_bytes()), 1.0) is None  # management: never
    assert c.busy_reply(("srv", 1), dwa_for(dwr), 1.0) is None  # answers: never
    assert c.busy_reply(("srv", 1), ccr("s;9", 43)[:12], 1.0) is None  # not even a header
    assert c.busy_reply(("nobody", 1), ccr("s;9", 42), 1.0) is None  # no open peer
    assert c.relay.pending_count() == 0 and c.relay.stats["shed_3004"] == 1


def test_shed_requests_answers_a_batchs_requests_and_keeps_the_rest_in_order() -> None:
    c = core()
    open_server(c)
    open_client(c)
    dwr = DeviceWatchdogRequest()
    dwr.origin_host, dwr.origin_realm = b"client.test", b"test"
    management, answer = bytes(dwr.as_bytes()), dwa_for(dwr)
    batch = [ccr("s;1", 51), management, ccr("s;2", 52), answer]
    busy, kept = c.shed_requests(("lst", 1), batch, 1.0)
    assert kept == [management, answer]
    got = [Message.from_bytes(b) for b in busy]
    assert [(m.header.hop_by_hop_identifier, m.session_id) for m in got] == [
        (51, "s;1"),
        (52, "s;2"),
    ]
    assert all(m.result_code == 3004 and m.header.is_error for m in got)
    assert all(m.header.is_proxyable and not m.header.is_request for m in got)
    assert c.relay.answers[(272, 3004, "local")] == 2 and c.relay.stats["shed_3004"] == 2
    assert c.shed_requests(("nobody", 1), batch, 1.0) == ([], batch)  # no open peer: kept
    assert c.relay.pending_count() == 0


def test_shed_requests_in_c_matches_the_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """_speedups.shed_tcp against the Python loop it replaces: the same 3004s, the same kept
    messages in order, the same counts, for a batch that starts with a command not counted
    yet (C stops there for Python), mixes management, answers and short messages, and
    spans more commands than C's per-call table holds."""
    dwr = DeviceWatchdogRequest()
    dwr.origin_host, dwr.origin_realm = b"client.test", b"test"
    management, answer = bytes(dwr.as_bytes()), dwa_for(dwr)
    batch = [ccr("s;1", 51), management, ccr("s;2", 52), answer, b"\x01\x00\x00\x14\x80"]
    for code in range(1000, 1080):  # 80 commands: past the 64 slots of a call
        other = bytearray(ccr(f"o;{code}", code))
        other[5:8] = code.to_bytes(3, "big")
        batch += [bytes(other), ccr(f"s;{code}", code)]
    results = []
    for speedups in (None, node_module._c):
        monkeypatch.setattr(node_module, "_c", speedups)
        c = core()
        open_server(c)
        open_client(c)
        busy, kept = c.shed_requests(("lst", 1), batch, 1.0)
        busy2, kept2 = c.shed_requests(("lst", 1), batch, 2.0)  # every key known now
        results.append((busy, kept, busy2, kept2, dict(c.relay.answers), c.relay.stats))
    assert node_module._c is not None  # the second run was C's
    assert results[0] == results[1]
    busy, kept = results[1][:2]
    assert kept == [management, answer, b"\x01\x00\x00\x14\x80"]
    assert len(busy) == 2 + 160 and results[1][5]["shed_3004"] == 2 * len(busy)
