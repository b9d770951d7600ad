"""Messages sigmw originates (RFC 6733 5.3, 5.5, 5.4, 7.2), checked by decoding them with
python-diameter, and the reading of a peer's CER/CEA."""

from __future__ import annotations

import struct

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import ProxyInfo, VendorSpecificApplicationId
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DisconnectPeerRequest,
)

from sigmw.diameter import local, wire
from sigmw.diameter.codes import DisconnectCause

ME = local.LocalIdentity(b"relay.example.net", b"example.net", origin_state_id=1234)
TGPP = 10415


def _plain(data: bytes) -> list[tuple[int, int, bytes]]:
    """(code, flags, payload) of each top-level AVP, in wire order."""
    return [(a.code, a.flags, a.payload) for a in Message.from_bytes(data, plain_msg=True).avps]


def _codes(data: bytes) -> list[int]:
    return [c for c, _, _ in _plain(data)]


def _flags(data: bytes, code: int) -> int:
    return next(f for c, f, _ in _plain(data) if c == code)


# --- CER / CEA ----------------------------------------------------------------------


def test_cer_defaults() -> None:
    data = local.cer(ME, ["10.0.0.1", "10.0.1.1", "2001:db8::1"], 0x10, 0x20)
    msg = Message.from_bytes(data)
    assert isinstance(msg, CapabilitiesExchangeRequest)
    h = msg.header
    assert (h.command_code, h.application_id, h.is_request, h.is_proxyable) == (257, 0, True, False)
    assert (h.hop_by_hop_identifier, h.end_to_end_identifier) == (0x10, 0x20)
    assert msg.origin_host == b"relay.example.net"
    assert msg.origin_realm == b"example.net"
    assert _codes(data).count(257) == 3  # one Host-IP-Address per address
    assert [ip for _, ip in msg.host_ip_address] == ["10.0.0.1", "10.0.1.1", "2001:db8::1"]
    assert msg.vendor_id == 0
    assert msg.product_name == "sigmw"
    assert msg.firmware_revision == 1
    assert msg.origin_state_id == 1234
    assert msg.auth_application_id == [0xFFFFFFFF]  # the relay application
    assert 260 not in _codes(data) and 265 not in _codes(data)
    # Product-Name and Firmware-Revision MUST NOT carry the M bit (RFC 6733 5.3).
    assert _flags(data, 269) & 0x40 == 0 and _flags(data, 267) & 0x40 == 0


def test_cer_with_vendor_applications() -> None:
    me = local.LocalIdentity(
        b"relay.example.net",
        b"example.net",
        7,
        vendor_id=99,
        product_name="sigmw-lab",
        firmware_revision=3,
        auth_apps=(4,),
        acct_apps=(3,),
        vendor_apps=(local.VendorApp(TGPP, auth_app=16777251), local.VendorApp(TGPP, acct_app=9)),
        supported_vendors=(TGPP, 5535),
    )
    msg = Message.from_bytes(local.cer(me, ["192.0.2.1"], 1, 2))
    assert msg.vendor_id == 99 and msg.product_name == "sigmw-lab"
    assert msg.firmware_revision == 3
    assert msg.auth_application_id == [4] and msg.acct_application_id == [3]
    assert msg.supported_vendor_id == [TGPP, 5535]
    assert msg.vendor_specific_application_id == [
        VendorSpecificApplicationId(TGPP, 16777251, None),
        VendorSpecificApplicationId(TGPP, None, 9),
    ]


def _request_header(code: int = 257, flags: int = 0x80, app: int = 0) -> wire.Header:
    return wire.Header(1, 20, flags, code, app, 0xAABBCCDD, 0x01020304)


def test_cea_success_has_no_e_bit() -> None:
    data = local.cea(ME, _request_header(), 2001, ["10.0.0.1"])
    msg = Message.from_bytes(data)
    assert isinstance(msg, CapabilitiesExchangeAnswer)
    assert msg.result_code == 2001
    assert not msg.header.is_request and not msg.header.is_error
    assert (msg.header.hop_by_hop_identifier, msg.header.end_to_end_identifier) == (
        0xAABBCCDD,
        0x01020304,
    )
    assert msg.origin_host == b"relay.example.net" and msg.host_ip_address == [(1, "10.0.0.1")]


def test_cea_3010_has_the_e_bit_5010_has_not() -> None:
    e3010 = Message.from_bytes(local.cea(ME, _request_header(), 3010, ["10.0.0.1"], "who?"))
    assert e3010.result_code == 3010 and e3010.header.is_error
    assert e3010.error_message == "who?"
    e5010 = Message.from_bytes(local.cea(ME, _request_header(), 5010, ["10.0.0.1"]))
    assert e5010.result_code == 5010 and not e5010.header.is_error


def test_cea_error_message_has_no_m_bit_and_failed_avp_wraps_the_avp() -> None:
    missing = wire.encode_avp(264, b"")
    data = local.cea(ME, _request_header(), 5005, ["10.0.0.1"], "Origin-Host missing", missing)
    assert _flags(data, 281) & 0x40 == 0  # Error-Message: M MUST NOT be set (RFC 6733 7.3)
    failed = next(p for c, _, p in _plain(data) if c == 279)
    assert failed == missing


# --- DWR / DWA / DPR / DPA ----------------------------------------------------------


def test_watchdog_and_disconnect_messages() -> None:
    dwr = Message.from_bytes(local.dwr(ME, 5, 6))
    assert (dwr.header.command_code, dwr.header.is_request) == (280, True)
    assert (dwr.origin_host, dwr.origin_state_id) == (b"relay.example.net", 1234)
    dwa = Message.from_bytes(local.dwa(ME, _request_header(280)))
    assert (dwa.header.command_code, dwa.header.is_request, dwa.result_code) == (280, False, 2001)
    assert dwa.header.hop_by_hop_identifier == 0xAABBCCDD
    dpr_bytes = local.dpr(ME, DisconnectCause.BUSY, 8, 9)
    dpr = Message.from_bytes(dpr_bytes)
    assert isinstance(dpr, DisconnectPeerRequest) and dpr.disconnect_cause == 1
    assert local.disconnect_cause(dpr_bytes) == 1
    dpa = Message.from_bytes(local.dpa(ME, _request_header(282)))
    assert (dpa.header.command_code, dpa.header.is_request, dpa.result_code) == (282, False, 2001)


# --- error answers (RFC 6733 7.2) ---------------------------------------------------


def _ccr(flags_t: bool = False) -> bytes:
    m = CreditControlRequest()
    m.header.application_id = 4
    m.header.hop_by_hop_identifier = 0x0A0B0C0D
    m.header.end_to_end_identifier = 0x0E0F1011
    m.header.is_retransmit = flags_t
    m.session_id = "client.example.net;9;1"
    m.origin_host = b"client.example.net"
    m.origin_realm = b"example.net"
    m.destination_realm = b"hss.example.org"
    m.auth_application_id = 4
    m.service_context_id = "32251@3gpp.org"
    m.cc_request_type = 1
    m.cc_request_number = 0
    m.proxy_info = [
        ProxyInfo(proxy_host=b"p1.example.net", proxy_state=b"one"),
        ProxyInfo(proxy_host=b"p2.example.net", proxy_state=b"second"),
    ]
    return bytes(m.as_bytes())


def test_error_answer_layout() -> None:
    request = _ccr(flags_t=True)
    failed = wire.encode_avp(283, b"")
    data = local.error_answer(ME, wire.scan(request), 3002, "no route", failed)
    msg = Message.from_bytes(data)
    req = Message.from_bytes(request).header
    h = msg.header
    assert (h.command_code, h.application_id) == (272, 4)
    assert (h.hop_by_hop_identifier, h.end_to_end_identifier) == (0x0A0B0C0D, 0x0E0F1011)
    assert not h.is_request and h.is_proxyable and h.is_error  # P copied, 3xxx -> E
    assert req.is_retransmit and not h.is_retransmit  # T is never set in an answer
    assert h.length == len(data)

    avps = _plain(data)
    assert avps[0] == (263, 0x40, b"client.example.net;9;1")  # Session-Id first (RFC 6733 8.8)
    assert msg.origin_host == b"relay.example.net" and msg.origin_realm == b"example.net"
    assert msg.result_code == 3002
    assert [p for c, _, p in avps if c == 294] == [b"relay.example.net"]  # Error-Reporting-Host
    assert [p for c, _, p in avps if c == 281] == [b"no route"]  # Error-Message
    assert [p for c, _, p in avps if c == 279] == [failed]
    # Proxy-Info copied untouched and in order (RFC 6733 6.2); python-diameter agrees.
    infos = [c for c, _, _ in avps if c == 284]
    assert len(infos) == 2
    assert [(p.proxy_host, p.proxy_state) for p in msg.proxy_info] == [
        (b"p1.example.net", b"one"),
        (b"p2.example.net", b"second"),
    ]
    assert wire.scan(data).proxy_infos == wire.scan(request).proxy_infos


def test_error_answer_avp_flags() -> None:
    data = local.error_answer(ME, wire.scan(_ccr()), 3002, "no route")
    # RFC 6733 7.3, 7.4: Error-Message and Error-Reporting-Host MUST NOT have M (or V).
    assert _flags(data, 281) == 0
    assert _flags(data, 294) == 0
    for code in (263, 264, 296, 268):
        assert _flags(data, code) == 0x40


def test_error_answer_5xxx_has_no_e_bit_and_no_session_when_unknown() -> None:
    header = wire.Header(1, 20, 0x80, 316, 16777251, 1, 2)  # not proxiable
    data = local.error_answer(ME, wire.Scanned(header), 5014, "", wire.encode_avp(999, b"\0" * 4))
    msg = Message.from_bytes(data, plain_msg=True)
    assert not msg.header.is_error and not msg.header.is_proxyable and not msg.header.is_request
    assert _codes(data)[:3] == [264, 296, 268]
    assert 281 not in _codes(data)  # no text given, no Error-Message
    assert struct.unpack(">I", next(p for c, _, p in _plain(data) if c == 268)) == (5014,)


# --- reading a peer's capabilities --------------------------------------------------


def test_capabilities_of_a_peer_cea() -> None:
    m = CapabilitiesExchangeAnswer()
    m.result_code = 2001
    m.origin_host = b"hss1.example.org"
    m.origin_realm = b"example.org"
    m.host_ip_address = ["192.0.2.7", "2001:db8::7"]
    m.vendor_id = TGPP
    m.product_name = "HSS"
    m.origin_state_id = 42
    m.auth_application_id = [4]
    m.acct_application_id = [3]
    m.supported_vendor_id = [TGPP]
    m.vendor_specific_application_id = [VendorSpecificApplicationId(TGPP, 16777251, None)]
    caps = local.capabilities(bytes(m.as_bytes()))
    assert caps.origin_host == b"hss1.example.org" and caps.origin_realm == b"example.org"
    assert caps.host_ips == ("192.0.2.7", "2001:db8::7")
    assert caps.auth_apps == {4} and caps.acct_apps == {3}
    assert caps.vendor_apps == (local.VendorApp(TGPP, 16777251, None),)
    assert caps.supported_vendors == {TGPP}
    assert caps.origin_state_id == 42 and caps.product_name == "HSS"
    assert caps.result_code == 2001
    assert caps.applications() == {3, 4, 16777251}


def test_capabilities_without_origin_realm_is_5005_naming_it() -> None:
    m = CapabilitiesExchangeRequest()
    m.origin_host = b"hss1.example.org"
    m.host_ip_address = ["192.0.2.7"]
    m.vendor_id = 0
    m.product_name = "HSS"
    with pytest.raises(wire.DiameterError) as err:
        local.capabilities(bytes(m.as_bytes()))
    assert err.value.result_code == 5005
    assert err.value.failed_avp == struct.pack(">II", 296, 0x40000008)


def test_render_never_fails() -> None:
    assert "Capabilities-Exchange" in local.render(local.cer(ME, ["10.0.0.1"], 1, 2))
    assert local.render(b"\x01\x00").startswith("<undecodable Diameter message, 2 bytes")
