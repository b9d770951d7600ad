"""sigmw.diameter.wire against RFC 6733 sections 3 and 4 and 7.1.5 (expected bytes built by hand,
messages built and re-decoded with python-diameter)."""

from __future__ import annotations

import struct

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import ProxyInfo
from diameter.message.commands import CreditControlRequest

from sigmw.diameter import wire


def _header(
    length: int, flags: int = 0xC0, code: int = 272, app: int = 4, version: int = 1
) -> bytes:
    return struct.pack(">IIIII", (version << 24) | length, (flags << 24) | code, app, 7, 9)


def _msg(avps: bytes, flags: int = 0xC0) -> bytes:
    """A header claiming exactly the given AVP bytes."""
    return _header(20 + len(avps), flags) + avps


def _avp(code: int, value: bytes, flags: int = 0x40, vendor: int | None = None) -> bytes:
    """One AVP encoded by hand: header, value, zero padding."""
    if vendor is None:
        head = struct.pack(">II", code, (flags << 24) | (8 + len(value)))
    else:
        head = struct.pack(">III", code, ((flags | 0x80) << 24) | (12 + len(value)), vendor)
    return head + value + b"\0" * (-len(value) % 4)


def _ccr(
    route_records: tuple[bytes, ...] = (),
    proxy_infos: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    m = CreditControlRequest()
    m.header.application_id = 4
    m.header.hop_by_hop_identifier = 0x11223344
    m.header.end_to_end_identifier = 0x55667788
    m.session_id = "client.example.net;1;77"
    m.origin_host = b"client.example.net"
    m.origin_realm = b"example.net"
    m.destination_realm = b"hss.example.org"
    m.destination_host = b"hss1.example.org"
    m.auth_application_id = 4
    m.service_context_id = "32251@3gpp.org"
    m.cc_request_type = 1
    m.cc_request_number = 0
    if route_records:
        m.route_record = list(route_records)
    if proxy_infos:
        m.proxy_info = [ProxyInfo(proxy_host=h, proxy_state=s) for h, s in proxy_infos]
    return bytes(m.as_bytes())


# --- header (RFC 6733 3) -------------------------------------------------------------


def test_header_fields_are_read() -> None:
    h = wire.parse_header(_header(20, flags=0xD0, code=316, app=16777251))
    assert (h.version, h.length, h.flags, h.code, h.app_id) == (1, 20, 0xD0, 316, 16777251)
    assert (h.hop_by_hop, h.end_to_end) == (7, 9)
    assert h.is_request and not h.is_error


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (_header(20, version=2), 5011),  # DIAMETER_UNSUPPORTED_VERSION
        (_header(20)[:19], 5015),  # shorter than a header
        (_header(24), 5015),  # length field says 24, 20 bytes present
        (_header(20) + b"\0" * 4, 5015),  # 24 bytes present, length field says 20
        (_header(22) + b"\0\0", 5015),  # length matches but is not a multiple of 4
        (_header(20, flags=0xC1), 5013),  # a reserved bit set
        (_header(20, flags=0xC8), 5013),
        (_header(20, flags=0xA0), 3008),  # request with the E bit: DIAMETER_INVALID_HDR_BITS
    ],
)
def test_header_errors_carry_their_result_code(data: bytes, code: int) -> None:
    with pytest.raises(wire.DiameterError) as err:
        wire.parse_header(data)
    assert err.value.result_code == code


def test_answer_with_e_bit_is_fine() -> None:
    assert wire.parse_header(_header(20, flags=0x60)).is_error


# --- the AVP walk (RFC 6733 4) -------------------------------------------------------


def test_scan_reads_what_a_relay_needs_from_a_real_ccr() -> None:
    got = wire.scan(_ccr(route_records=(b"a.example.net", b"b.example.net", b"c.example.net")))
    assert got.session_id == b"client.example.net;1;77"
    assert got.origin_host == b"client.example.net"
    assert got.origin_realm == b"example.net"
    assert got.destination_realm == b"hss.example.org"
    assert got.destination_host == b"hss1.example.org"
    assert got.route_records == (b"a.example.net", b"b.example.net", b"c.example.net")
    assert got.result_code is None
    assert got.header.hop_by_hop == 0x11223344 and got.header.app_id == 4


def test_proxy_info_is_kept_whole_in_order() -> None:
    data = _ccr(proxy_infos=((b"p1.net", b"state-one"), (b"p2.net", b"s2")))
    # Proxy-Info = Proxy-Host (280) + Proxy-State (33), built by hand.
    first = _avp(284, _avp(280, b"p1.net") + _avp(33, b"state-one"))
    second = _avp(284, _avp(280, b"p2.net") + _avp(33, b"s2"))
    assert wire.scan(data).proxy_infos == (first, second)
    assert first in data and second in data  # python-diameter encoded the same bytes


def test_padding_is_skipped_and_the_next_avp_read() -> None:
    # Session-Id of 5 bytes: length 13, 3 padding bytes, then Origin-Host.
    avps = _avp(263, b"abcde") + _avp(264, b"h.net")
    assert len(avps) == 16 + 16
    got = wire.scan(_msg(avps))
    assert got.session_id == b"abcde" and got.origin_host == b"h.net"


def test_vendor_avps_are_skipped_even_with_a_base_code() -> None:
    # Code 263 with the V bit (vendor 10415) is not Session-Id.
    avps = _avp(263, b"not-a-session", vendor=10415) + _avp(296, b"realm.net")
    got = wire.scan(_msg(avps))
    assert got.session_id is None and got.origin_realm == b"realm.net"


def test_result_code_and_redirect_hosts_of_an_answer() -> None:
    avps = (
        _avp(268, struct.pack(">I", 3006))
        + _avp(292, b"aaa://hss2.net:3868")
        + _avp(292, b"aaa://hss3.net")
    )
    got = wire.scan(_msg(avps, flags=0x60))
    assert got.result_code == 3006
    assert got.redirect_hosts == (b"aaa://hss2.net:3868", b"aaa://hss3.net")


def test_result_code_of_wrong_length_is_5014() -> None:
    bad = _avp(268, b"\0\0\x07\xd1\0")  # 5 bytes, not an Unsigned32
    with pytest.raises(wire.DiameterError) as err:
        wire.scan(_msg(bad, flags=0x40))
    assert err.value.result_code == 5014
    assert err.value.failed_avp == bad  # the whole AVP, as received


def _inner(failed: bytes) -> tuple[int, int, int, bytes]:
    """code, flags, length field and payload of the AVP reported in Failed-AVP."""
    code, flen = struct.unpack_from(">II", failed)
    head = 12 if flen >> 31 else 8
    return code, flen >> 24, flen & 0xFFFFFF, failed[head:]


@pytest.mark.parametrize("bad_length", [4, 0, 7, 1000])
def test_avp_length_out_of_bounds_is_5014_with_header_and_zero_payload(bad_length: int) -> None:
    good = _avp(263, b"s;1")
    bad_head = struct.pack(">II", 999, (0x40 << 24) | bad_length)
    data = _msg(good + bad_head + b"\xaa" * 8)
    with pytest.raises(wire.DiameterError) as err:
        wire.scan(data)
    assert err.value.result_code == 5014
    code, flags, length, payload = _inner(err.value.failed_avp)
    # RFC 6733 7.5: the offending AVP's header and a zero-filled payload (4 bytes: the
    # minimum of any fixed-size type); the reported length matches what is sent, so the
    # answer stays parseable; the bad length itself goes in Error-Message.
    assert (code, flags, payload) == (999, 0x40, b"\0" * 4)
    assert length == 8 + 4 == len(err.value.failed_avp)
    assert str(bad_length) in str(err.value)


def test_vendor_avp_shorter_than_its_header_is_5014() -> None:
    bad = struct.pack(">III", 1407, (0xC0 << 24) | 10, 10415)
    with pytest.raises(wire.DiameterError) as err:
        wire.scan(_msg(bad))
    assert err.value.result_code == 5014
    failed = err.value.failed_avp
    assert _inner(failed) == (1407, 0xC0, 16, b"\0" * 4)
    assert failed[8:12] == struct.pack(">I", 10415)  # the vendor id is kept


def test_truncated_avp_header_is_5014() -> None:
    data = _msg(_avp(263, b"s;1") + struct.pack(">I", 264))  # 4 bytes where 8 are needed
    with pytest.raises(wire.DiameterError) as err:
        wire.scan(data)
    assert err.value.result_code == 5014
    code, _, length, payload = _inner(err.value.failed_avp)
    assert (code, length, payload) == (264, 12, b"\0" * 4)


def test_scan_checks_the_header_first() -> None:
    with pytest.raises(wire.DiameterError) as err:
        wire.scan(_header(20, flags=0xA0))
    assert err.value.result_code == 3008


# --- encoding and patching ----------------------------------------------------------


def test_encode_avp_pads_and_keeps_the_unpadded_length() -> None:
    assert wire.encode_avp(282, b"abcde") == struct.pack(">II", 282, 0x4000000D) + b"abcde\0\0\0"
    assert wire.encode_avp(282, b"abcd") == struct.pack(">II", 282, 0x4000000C) + b"abcd"
    assert wire.encode_avp(281, b"x", flags=0) == struct.pack(">II", 281, 9) + b"x\0\0\0"


def test_encode_avp_v_flag_follows_the_vendor() -> None:
    assert wire.encode_avp(1407, b"ab", vendor=10415) == (
        struct.pack(">III", 1407, 0xC000000E, 10415) + b"ab\0\0"
    )
    # A V flag asked for without a vendor is cleared: the header would lie about its size.
    assert (
        wire.encode_avp(263, b"abcd", flags=0xC0) == struct.pack(">II", 263, 0x4000000C) + b"abcd"
    )


def test_encode_u32_avp() -> None:
    assert wire.encode_u32_avp(268, 2001) == struct.pack(">III", 268, 0x4000000C, 2001)


def test_set_hop_by_hop_changes_only_that_field() -> None:
    data = _ccr()
    msg = bytearray(data)
    wire.set_hop_by_hop(msg, 0xCAFEBABE)
    assert msg[12:16] == b"\xca\xfe\xba\xbe"
    assert msg[:12] == data[:12] and msg[16:] == data[16:]
    assert Message.from_bytes(bytes(msg)).header.hop_by_hop_identifier == 0xCAFEBABE


def test_set_retransmit_sets_only_the_t_flag() -> None:
    msg = bytearray(_ccr())
    wire.set_retransmit(msg)
    assert msg[4] == 0xC0 | 0x10
    decoded = Message.from_bytes(bytes(msg)).header
    assert decoded.is_retransmit and decoded.is_request and decoded.is_proxyable


def test_append_avp_updates_length_and_decodes() -> None:
    data = _ccr(route_records=(b"a.example.net",))
    msg = bytearray(data)
    wire.append_avp(msg, wire.encode_avp(282, b"Client.Example.NET"))
    assert len(msg) == len(data) + 8 + 20  # 18 bytes of value padded to 20
    assert int.from_bytes(msg[1:4], "big") == len(msg)
    decoded = Message.from_bytes(bytes(msg))
    assert decoded.route_record == [b"a.example.net", b"Client.Example.NET"]
    assert decoded.session_id == "client.example.net;1;77"
    assert wire.scan(msg).route_records == (b"a.example.net", b"Client.Example.NET")


def test_set_length() -> None:
    msg = bytearray(_header(20)) + bytearray(8)
    wire.set_length(msg)
    assert msg[:4] == b"\x01\x00\x00\x1c"


def test_answer_header_clears_r_and_keeps_ids() -> None:
    req = wire.parse_header(_header(20, flags=0xD0, code=316, app=16777251))
    out = wire.answer_header(req, 0x60)
    assert bytes(out) == struct.pack(">IIIII", 0x01000014, 0x6000013C, 16777251, 7, 9)


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        (b"aaa://hss1.example.net:3868;transport=sctp;protocol=diameter", b"hss1.example.net"),
        (b"aaas://hss1.example.net:5658", b"hss1.example.net"),
        (b"aaa://hss1.example.net;transport=tcp", b"hss1.example.net"),
        (b"aaa://hss1.example.net", b"hss1.example.net"),
        (b"hss1.example.net", b"hss1.example.net"),
    ],
)
def test_uri_host(uri: bytes, host: bytes) -> None:
    assert wire.uri_host(uri) == host


def _answer(*avps: bytes) -> bytes:
    body = b"".join(avps)
    return struct.pack(">BBHI", 1, 0, 0, 272) + b"\0" * 12 + body  # lengths not checked


def test_result_code_of_a_relayed_answer_for_metrics() -> None:
    session = wire.encode_avp(263, b"client.test;1;2")
    vendor = wire.encode_avp(268, struct.pack(">I", 9999), vendor=10415)  # not the base one
    assert wire.result_code(_answer(session, vendor, wire.encode_u32_avp(268, 2001))) == 2001
    experimental = wire.encode_avp(
        297, wire.encode_u32_avp(266, 10415) + wire.encode_u32_avp(298, 5420)
    )
    assert wire.result_code(_answer(session, experimental)) == 5420
    # An Experimental-Result-Code outside an Experimental-Result is not one.
    assert wire.result_code(_answer(session, wire.encode_u32_avp(298, 5420))) is None
    assert wire.result_code(_answer(session)) is None
    broken = bytearray(_answer(session, wire.encode_u32_avp(268, 2001)))
    broken[25:28] = (7).to_bytes(3, "big")  # the first AVP shorter than its header
    assert wire.result_code(bytes(broken)) is None
    assert wire.result_code(_answer(session)[:-3] + b"\0\0\x01") is None  # cut mid-AVP
