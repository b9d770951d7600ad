"""The relay agent end to end (RFC 6733 6.1-6.3, 6.7.1, 5.5.4, 6.13), with a fake clock; every
message is built and read back with python-diameter or by hand."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from diameter.message import Message
from diameter.message.avp import Avp as PdAvp
from diameter.message.commands import CreditControlAnswer, CreditControlRequest

from sigmw.config.diameter import DiameterNode, DiameterRoute, RedirectPolicy, RouteTarget
from sigmw.diameter.local import LocalIdentity
from sigmw.diameter.relay import Relay, Send

ME = LocalIdentity(b"relay.example.net", b"example.net", origin_state_id=1)
NODE = DiameterNode("relay.example.net", "example.net", request_timeout=1000, max_pending=100)
HSS = "hss.example.org"
ROUTES = (
    DiameterRoute(HSS, (RouteTarget("hss1", priority=1), RouteTarget("hss2", priority=2))),
    DiameterRoute("single.example.org", (RouteTarget("hss1"),)),
)
# name -> (Origin-Host learned in CER, negotiated outbound streams)
PEERS = {
    "client": (b"Client.Example.NET", 3),
    "hss1": (b"hss1.example.org", 2),
    "hss2": (b"hss2.example.org", 17),
    "hss3": (b"hss3.example.org", 1),
}
CLIENT_HBH = 0x0C0C0001
E2E = 0x5EED0001


def _relay(node: DiameterNode = NODE) -> Relay:
    r = Relay(ME, node, ROUTES, first_hop_by_hop=0x1000)
    for name, (host, outbound) in PEERS.items():
        r.peer_open(name, host, outbound)
    return r


def _checked(sends: list[Send]) -> list[Send]:
    """Every message goes on a stream the target negotiated."""
    for s in sends:
        assert 0 <= s.stream < PEERS[s.peer][1], s
    return sends


def _ccr(
    hbh: int = CLIENT_HBH,
    session: str = "client.example.net;1;1",
    realm: bytes | None = HSS.encode(),
    host: bytes | None = None,
    route_records: tuple[bytes, ...] = (),
    origin_host: bytes = b"client.example.net",
    proxiable: bool = True,
) -> bytes:
    m = CreditControlRequest()
    m.header.application_id = 4
    m.header.hop_by_hop_identifier = hbh
    m.header.end_to_end_identifier = E2E
    m.header.is_proxyable = proxiable
    m.session_id = session
    m.origin_host = origin_host
    m.origin_realm = b"example.net"
    m.destination_realm = realm
    m.destination_host = host
    m.auth_application_id = 4
    m.service_context_id = "32251@3gpp.org"
    m.cc_request_type = 1
    m.cc_request_number = 0
    if route_records:
        m.route_record = list(route_records)
    return bytes(m.as_bytes())


def _cca(
    request: bytes, result: int = 2001, origin: bytes = b"hss1.example.org", redirect: str = ""
) -> bytes:
    """The server's answer to a request as it arrived there (same ids)."""
    req = Message.from_bytes(request)
    m = CreditControlAnswer()
    m.header.application_id = 4
    m.header.hop_by_hop_identifier = req.header.hop_by_hop_identifier
    m.header.end_to_end_identifier = req.header.end_to_end_identifier
    m.header.is_error = 3000 <= result < 4000
    m.session_id = req.session_id
    m.origin_host = origin
    m.origin_realm = b"example.org"
    m.result_code = result
    m.auth_application_id = 4
    m.cc_request_type = 1
    m.cc_request_number = 0
    if redirect:
        m.append_avp(PdAvp.new(292, value=redirect))  # Redirect-Host
    return bytes(m.as_bytes())


def _hbh(data: bytes) -> int:
    return int(struct.unpack_from(">I", data, 12)[0])


def _flags(data: bytes) -> int:
    return data[4]


def _avps(data: bytes) -> list[tuple[int, int, bytes]]:
    return [(a.code, a.flags, a.payload) for a in Message.from_bytes(data, plain_msg=True).avps]


def _result(data: bytes) -> int:
    return int(Message.from_bytes(data).result_code)


def _idle(r: Relay) -> bool:
    return r.pending_count() == 0 and all(p.pending == 0 for p in r.peers.values())


def _one(sends: list[Send], peer: str) -> Send:
    assert len(_checked(sends)) == 1, sends
    assert sends[0].peer == peer, sends
    return sends[0]


# --- the normal path ----------------------------------------------------------------


def test_request_relayed_and_answer_returned() -> None:
    r = _relay()
    request = _ccr(route_records=(b"edge.example.net",))
    out = _one(r.on_request("client", request, 10.0), "hss1")
    fwd = Message.from_bytes(out.data)
    assert _hbh(out.data) != CLIENT_HBH  # a fresh hop-by-hop id
    assert fwd.header.end_to_end_identifier == E2E  # end-to-end untouched
    assert fwd.header.length == len(out.data)
    assert not fwd.header.is_retransmit
    # Route-Record naming the peer it came from, exactly as learned in its CER (6.7.1).
    assert fwd.route_record == [b"edge.example.net", b"Client.Example.NET"]
    assert out.data[20 : len(request)] == request[20:]  # the rest is untouched
    assert r.pending_count() == 1

    answer = _cca(out.data)
    back = _one(r.on_answer("hss1", answer, 10.25), "client")
    assert _hbh(back.data) == CLIENT_HBH
    assert back.data[:12] == answer[:12] and back.data[16:] == answer[16:]
    assert _idle(r)
    assert (r.latency.total, r.latency.sum) == (1, 0.25)
    assert (r.stats["relayed_requests"], r.stats["relayed_answers"]) == (1, 1)


def test_one_session_answers_on_one_stream() -> None:
    r = _relay()
    streams = set()
    for i in range(5):
        out = _one(r.on_request("client", _ccr(hbh=i, session="s;same"), 0), "hss1")
        streams.add(_one(r.on_answer("hss1", _cca(out.data), 0), "client").stream)
    assert len(streams) == 1 and streams != {0}  # stream 0 is for peer management
    sessions = {
        _one(r.on_request("client", _ccr(session=f"s;{i}"), 0), "hss1").stream for i in range(50)
    }
    assert sessions == {1}  # hss1 has 2 outbound streams: only stream 1 carries data


def test_destination_host_of_an_open_peer_goes_straight_there() -> None:
    r = _relay()
    _one(r.on_request("client", _ccr(host=b"HSS2.example.org"), 0), "hss2")
    # One that is not connected is routed by realm.
    _one(r.on_request("client", _ccr(host=b"hss9.example.org"), 0), "hss1")


def test_sessions_without_answers_stay_pending_until_answered_out_of_order() -> None:
    r = _relay()
    first = _one(r.on_request("client", _ccr(hbh=1), 0), "hss1")
    second = _one(r.on_request("client", _ccr(hbh=2), 0), "hss1")
    assert _hbh(_one(r.on_answer("hss1", _cca(second.data), 1), "client").data) == 2
    assert _hbh(_one(r.on_answer("hss1", _cca(first.data), 1), "client").data) == 1
    assert _idle(r)


# --- answers this node gives itself -------------------------------------------------


def _local_answer(sends: list[Send], result: int) -> Message:
    out = _one(sends, "client")
    msg = Message.from_bytes(out.data)
    assert msg.result_code == result
    assert msg.header.hop_by_hop_identifier == CLIENT_HBH
    assert msg.header.end_to_end_identifier == E2E
    assert not msg.header.is_request
    assert msg.header.is_error == (3000 <= result < 4000)
    assert msg.origin_host == b"relay.example.net"
    assert [p for c, _, p in _avps(out.data) if c == 294] == [b"relay.example.net"]
    return msg


def test_loop_is_3005() -> None:
    r = _relay()
    request = _ccr(route_records=(b"a.example.net", b"RELAY.example.NET"))
    msg = _local_answer(r.on_request("client", request, 0), 3005)
    assert msg.session_id == "client.example.net;1;1"
    assert r.stats["answered_locally_3005"] == 1 and _idle(r)


def test_no_route_is_3002() -> None:
    r = _relay()
    _local_answer(r.on_request("client", _ccr(realm=b"nowhere.example.org"), 0), 3002)


def test_no_live_peer_is_3002() -> None:
    r = _relay()
    r.peer_closed("hss1", 0)
    _local_answer(r.on_request("client", _ccr(realm=b"single.example.org"), 0), 3002)


def test_all_busy_is_3004_and_clears_when_answered() -> None:
    r = _relay(dataclasses.replace(NODE, max_pending=1))
    first = _one(r.on_request("client", _ccr(hbh=1), 0), "hss1")
    _one(r.on_request("client", _ccr(hbh=2), 0), "hss2")  # hss1 is at its bound
    _local_answer(r.on_request("client", _ccr(), 0), 3004)
    _one(r.on_answer("hss1", _cca(first.data), 0), "client")
    _one(r.on_request("client", _ccr(hbh=4), 0), "hss1")


def test_destination_host_is_this_relay_is_3007() -> None:
    r = _relay()
    _local_answer(r.on_request("client", _ccr(host=b"Relay.Example.Net"), 0), 3007)


def test_missing_destination_realm_is_5005_with_failed_avp() -> None:
    r = _relay()
    out = _local_answer(r.on_request("client", _ccr(realm=None), 0), 5005)
    failed = [p for c, _, p in _avps(bytes(out.as_bytes())) if c == 279]
    # RFC 6733 7.5: the missing AVP's code and a minimal (empty) payload.
    assert failed == [struct.pack(">II", 283, 0x40000008)]


def test_not_proxiable_is_refused() -> None:
    r = _relay()
    _local_answer(r.on_request("client", _ccr(proxiable=False), 0), 3002)


def test_bad_avp_length_is_5014_with_failed_avp_and_counted() -> None:
    r = _relay()
    good = _ccr()
    broken = bytearray(good + struct.pack(">II", 999, (0x40 << 24) | 1000) + b"\0" * 8)
    broken[1:4] = len(broken).to_bytes(3, "big")
    out = _one(r.on_request("client", bytes(broken), 0), "client")
    msg = Message.from_bytes(out.data)  # the answer itself is well formed
    assert msg.result_code == 5014 and not msg.header.is_error
    assert msg.header.hop_by_hop_identifier == CLIENT_HBH
    (failed,) = [p for c, _, p in _avps(out.data) if c == 279]
    code, flen = struct.unpack_from(">II", failed)
    assert code == 999 and flen >> 24 == 0x40 and failed[8:] == b"\0" * 4
    assert msg.avps[0].code == 263 and msg.session_id == "client.example.net;1;1"  # RFC 6733 8.8
    assert r.stats["malformed_5014"] == 1 and _idle(r)


def test_request_with_e_bit_is_3008() -> None:
    r = _relay()
    bad = bytearray(_ccr())
    bad[4] |= 0x20
    out = _one(r.on_request("client", bytes(bad), 0), "client")
    msg = Message.from_bytes(out.data)
    assert msg.result_code == 3008 and msg.header.is_error
    assert r.stats["malformed_3008"] == 1


# --- answers that match nothing ----------------------------------------------------


def test_unmatched_duplicate_and_wrong_peer_answers_are_dropped() -> None:
    r = _relay()
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    answer = _cca(out.data)
    assert r.on_answer("hss2", answer, 0) == []  # not the peer it was sent to
    assert r.pending_count() == 1
    bogus = bytearray(answer)
    bogus[12:16] = struct.pack(">I", 0xDEAD)
    assert r.on_answer("hss1", bytes(bogus), 0) == []
    _one(r.on_answer("hss1", answer, 0), "client")
    assert r.on_answer("hss1", answer, 0) == []  # a duplicate
    assert r.stats["unmatched_answers"] == 3
    assert _idle(r)


def test_answer_for_a_client_that_left_is_dropped() -> None:
    r = _relay()
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    r.peer_closed("client", 0)
    assert r.on_answer("hss1", _cca(out.data), 0) == []
    assert r.stats["answers_for_gone_clients"] == 1 and _idle(r)


# --- failover (RFC 6733 5.5.4) -------------------------------------------------------


def _two_pending(r: Relay) -> list[Send]:
    return [
        _one(r.on_request("client", _ccr(hbh=CLIENT_HBH + i, session=f"s;{i}"), 0), "hss1")
        for i in range(2)
    ]


def _assert_failed_over(r: Relay, sent: list[Send], moved: list[Send]) -> None:
    assert [s.peer for s in _checked(moved)] == ["hss2", "hss2"]
    old = {_hbh(s.data) for s in sent}
    for before, after in zip(sent, moved, strict=True):
        assert _flags(after.data) & 0x10  # T flag
        assert _hbh(after.data) not in old
        assert after.data[16:] == before.data[16:]  # the same request, same Route-Record
        assert Message.from_bytes(after.data).route_record == [b"Client.Example.NET"]
    # The failed peer's late answers match nothing; the alternate's reach the client once.
    for s in sent:
        assert r.on_answer("hss1", _cca(s.data), 1) == []
    answers = [_one(r.on_answer("hss2", _cca(m.data), 1), "client") for m in moved]
    assert sorted(_hbh(a.data) for a in answers) == [CLIENT_HBH, CLIENT_HBH + 1]
    assert _idle(r)


def test_transport_failure_resends_to_the_alternate_with_t_flag() -> None:
    r = _relay()
    sent = _two_pending(r)
    moved = r.peer_closed("hss1", 0.5)
    assert r.stats["failover_resent"] == 2
    r.peer_open("hss1", b"hss1.example.org", 2)  # it comes back and answers late
    _assert_failed_over(r, sent, moved)


def test_watchdog_failover_resends_to_the_alternate_with_t_flag() -> None:
    r = _relay()
    sent = _two_pending(r)
    moved = r.peer_usable("hss1", False, 0.5)
    assert r.peer_usable("hss1", False, 0.6) == []  # told twice: nothing more to move
    _assert_failed_over(r, sent, moved)
    # While unusable it gets no new work; once usable again, it does.
    _one(r.on_request("client", _ccr(), 2), "hss2")
    assert r.peer_usable("hss1", True, 3) == []
    _one(r.on_request("client", _ccr(), 3), "hss1")


def test_failover_without_alternate_is_3002() -> None:
    r = _relay()
    _one(r.on_request("client", _ccr(realm=b"single.example.org"), 0), "hss1")
    _local_answer(r.peer_closed("hss1", 0.5), 3002)
    assert _idle(r)


# --- Tx (request timeout) -------------------------------------------------------------


def test_tx_expiry_resends_once_then_answers_3002() -> None:
    r = _relay()
    sent = _one(r.on_request("client", _ccr(), 10.0), "hss1")
    assert r.next_deadline() == pytest.approx(11.0)
    assert r.on_timer(10.999) == []
    again = _one(r.on_timer(11.0), "hss2")
    assert _flags(again.data) & 0x10 and _hbh(again.data) != _hbh(sent.data)
    assert r.next_deadline() == pytest.approx(12.0)
    assert r.on_timer(11.5) == []
    _local_answer(r.on_timer(12.0), 3002)
    assert r.next_deadline() is None and _idle(r)
    # Answers arriving after the client was answered are dropped.
    assert r.on_answer("hss1", _cca(sent.data), 12.1) == []
    assert r.on_answer("hss2", _cca(again.data), 12.1) == []


def test_tx_expires_requests_in_deadline_order() -> None:
    r = _relay()
    _one(r.on_request("client", _ccr(hbh=1, session="s;first"), 0.0), "hss1")
    _one(r.on_request("client", _ccr(hbh=2, session="s;second"), 0.4), "hss1")
    moved = _one(r.on_timer(1.0), "hss2")
    assert Message.from_bytes(moved.data).session_id == "s;first"
    assert r.pending_count() == 2  # the second still waits on hss1
    assert r.next_deadline() == pytest.approx(1.4)


# --- redirects (RFC 6733 6.13) -------------------------------------------------------


REDIRECT_URI = "aaa://HSS3.example.org:3868;transport=sctp"


def test_redirect_pass_relays_the_3006() -> None:
    r = _relay()
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    back = _one(r.on_answer("hss1", _cca(out.data, 3006, redirect=REDIRECT_URI), 0), "client")
    assert _result(back.data) == 3006 and _hbh(back.data) == CLIENT_HBH
    assert _idle(r)


def test_redirect_follow_resends_to_the_redirect_host() -> None:
    r = _relay(dataclasses.replace(NODE, redirect=RedirectPolicy.FOLLOW))
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    again = _one(r.on_answer("hss1", _cca(out.data, 3006, redirect=REDIRECT_URI), 0), "hss3")
    assert again.stream == 0  # hss3 negotiated a single stream
    assert _hbh(again.data) != _hbh(out.data)
    assert again.data[16:] == out.data[16:]
    assert r.stats["redirects_followed"] == 1
    final = _cca(again.data, origin=b"hss3.example.org")
    back = _one(r.on_answer("hss3", final, 0.5), "client")
    assert _result(back.data) == 2001 and _hbh(back.data) == CLIENT_HBH
    assert _idle(r)


def test_redirect_follow_to_an_unknown_host_relays_the_3006() -> None:
    r = _relay(dataclasses.replace(NODE, redirect=RedirectPolicy.FOLLOW))
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    answer = _cca(out.data, 3006, redirect="aaa://elsewhere.example.org")
    assert _result(_one(r.on_answer("hss1", answer, 0), "client").data) == 3006
    assert _idle(r)


def test_redirect_follow_is_not_followed_twice() -> None:
    # hss3 redirects back to hss1: following again would ping-pong for ever.
    r = _relay(dataclasses.replace(NODE, redirect=RedirectPolicy.FOLLOW))
    out = _one(r.on_request("client", _ccr(), 0), "hss1")
    again = _one(r.on_answer("hss1", _cca(out.data, 3006, redirect=REDIRECT_URI), 0), "hss3")
    bounce = _cca(again.data, 3006, origin=b"hss3.example.org", redirect="aaa://hss1.example.org")
    assert _result(_one(r.on_answer("hss3", bounce, 0), "client").data) == 3006
    assert _idle(r)


def test_redirect_follow_gives_the_new_peer_a_full_tx() -> None:
    r = _relay(dataclasses.replace(NODE, redirect=RedirectPolicy.FOLLOW))
    a = _one(r.on_request("client", _ccr(hbh=1), 0.0), "hss1")
    _one(r.on_request("client", _ccr(hbh=2, session="s;b"), 0.5), "hss1")
    _one(r.on_answer("hss1", _cca(a.data, 3006, redirect=REDIRECT_URI), 0.9), "hss3")
    # b's Tx (1.5) comes first; the redirected request waits until 1.9.
    assert r.next_deadline() == pytest.approx(1.5)
    assert [s.peer for s in r.on_timer(1.6)] == ["hss2"]
    assert r.next_deadline() == pytest.approx(1.9)
    assert [s.peer for s in r.on_timer(1.9)] == ["hss1"]  # a, off hss3 to the best other


def test_too_busy_answers_3004_from_the_header_and_session_id() -> None:
    """Shedding under overload: a 3004 built without scanning, still a valid answer."""
    r = _relay()
    request = _ccr(session="client.example.net;shed;1")
    (out,) = r.too_busy("client", request)
    answer = Message.from_bytes(out.data)
    sent = Message.from_bytes(request)
    assert not answer.header.is_request and answer.header.is_error
    assert answer.header.is_proxyable
    assert answer.header.hop_by_hop_identifier == sent.header.hop_by_hop_identifier
    assert answer.header.end_to_end_identifier == sent.header.end_to_end_identifier
    assert answer.header.command_code == sent.header.command_code
    assert answer.avps[0].code == 263 and answer.avps[0].value == "client.example.net;shed;1"
    assert answer.result_code == 3004 and answer.origin_host == b"relay.example.net"
    assert out.peer == "client" and 1 <= out.stream < PEERS["client"][1]
    assert r.stats["shed_3004"] == 1 and r.pending_count() == 0
