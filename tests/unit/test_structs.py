"""SCTP API structure layouts: sizes equal the kernel's sizeof, fields sit where C puts them."""

from __future__ import annotations

import socket
import struct

import pytest

from sigmw.io import transport
from sigmw.sctp import constants as c
from sigmw.sctp import structs as s
from sigmw.sctp.addresses import (
    AddressError,
    pack_sockaddr,
    pack_sockaddrs,
    pack_storage,
    unpack_sockaddr,
    unpack_sockaddr_list,
)


@pytest.mark.parametrize(
    ("layout", "size"),
    [
        (s.SNDINFO, 16),
        (s.RCVINFO, 28),
        (s.PRINFO, 8),
        (s.INITMSG, 8),
        (s.RTOINFO, 16),
        (s.ASSOCPARAMS, 20),
        (s.SACKINFO, 12),
        (s.PADDRPARAMS, 156),  # packed, aligned(4)
        (s.PADDRTHLDS_V2, 144),  # not packed: the packed size (142) gets EINVAL
        (s.PADDRINFO, 152),
        (s.ASSOC_STATS, 256),
    ],
)
def test_struct_sizes_match_linux(layout: struct.Struct, size: int) -> None:
    assert layout.size == size


def test_status_size_matches_linux() -> None:
    assert s.STATUS_SIZE == 176


def test_sndinfo_puts_ppid_on_the_wire_in_network_order() -> None:
    raw = s.pack_sndinfo(stream=7, flags=c.SendFlag.UNORDERED, ppid=46, context=9, assoc_id=42)
    sid, flags = struct.unpack_from("@HH", raw)
    assert (sid, flags) == (7, 1)
    assert raw[4:8] == b"\x00\x00\x00\x2e"
    assert struct.unpack_from("@i", raw, 12)[0] == 42


def test_rcvinfo_returns_ppid_in_host_order() -> None:
    raw = s.RCVINFO.pack(3, 11, 1, socket.htonl(46), 100, 99, 5, 17)
    info = s.unpack_rcvinfo(raw)
    assert (info.stream, info.ssn, info.flags, info.ppid) == (3, 11, 1, 46)
    assert info.assoc_id == 17


def test_the_receive_hot_path_reads_the_same_rcvinfo_fields() -> None:
    """transport's three-field read of SCTP_RCVINFO agrees with the full decode."""
    for values in [(3, 11, 1, 46, 100, 99, 5, 17), (65535, 0, 0, 0xFFFFFFFF, 0, 0, 0, -1)]:
        sid, ssn, flags, ppid, tsn, cumtsn, context, assoc = values
        raw = s.RCVINFO.pack(sid, ssn, flags, socket.htonl(ppid), tsn, cumtsn, context, assoc)
        info = s.unpack_rcvinfo(raw)
        stream, wire_ppid, assoc_id = transport._RCV_FIELDS.unpack_from(raw)
        assert transport._RCV_FIELDS.size == s.RCVINFO.size
        assert (stream, socket.ntohl(wire_ppid), assoc_id) == (
            info.stream,
            info.ppid,
            info.assoc_id,
        )


def test_prinfo_ttl_policy() -> None:
    policy, value = s.PRINFO.unpack(s.pack_prinfo_ttl(250))
    assert (policy, value) == (c.SCTP_PR_SCTP_TTL, 250)


def test_rtoinfo_field_order_is_initial_max_min() -> None:
    raw = s.pack_rtoinfo(5, s.RtoInfo(initial=200, min=100, max=500))
    assert struct.unpack("@iIII", raw) == (5, 200, 500, 100)
    assert s.unpack_rtoinfo(raw) == s.RtoInfo(200, 100, 500)


def _paddr_flags(raw: bytes) -> int:
    return int(s.PADDRPARAMS.unpack(raw)[6])


def test_paddrparams_flags_say_which_fields_apply() -> None:
    enabled = s.pack_paddrparams(1, s.PeerAddrParams(hb_interval_ms=200, path_max_retrans=2))
    assert _paddr_flags(enabled) == c.SPP_HB_ENABLE
    fields = s.PADDRPARAMS.unpack(enabled)
    assert (fields[2], fields[3]) == (200, 2)

    disabled = s.pack_paddrparams(1, s.PeerAddrParams(hb_enabled=False))
    assert _paddr_flags(disabled) == c.SPP_HB_DISABLE

    zero = s.pack_paddrparams(1, s.PeerAddrParams(hb_interval_ms=0))
    assert _paddr_flags(zero) == c.SPP_HB_ENABLE | c.SPP_HB_TIME_IS_ZERO

    no_sack_delay = s.pack_paddrparams(1, s.PeerAddrParams(sack_delay_ms=0))
    assert _paddr_flags(no_sack_delay) == c.SPP_SACKDELAY_DISABLE

    untouched = s.pack_paddrparams(1, s.PeerAddrParams())
    assert _paddr_flags(untouched) == 0


def test_paddrparams_read_back() -> None:
    raw = s.PADDRPARAMS.pack(
        1, pack_storage(None), 200, 2, 1500, 20, c.SPP_HB_ENABLE | c.SPP_SACKDELAY_ENABLE, 0, 0
    )
    got = s.unpack_paddrparams(raw)
    assert got == s.PeerAddrParams(200, True, 2, 20, 1500)


def test_thresholds_layout() -> None:
    raw = s.pack_thresholds(9, path_max_retrans=2, pf_threshold=1, address=("10.0.0.1", 0))
    assert struct.unpack_from("@i", raw)[0] == 9
    assert raw[8:10] == struct.pack("@H", socket.AF_INET)  # storage starts 8-aligned
    assert s.unpack_thresholds(raw) == (2, 1)


def test_status_decodes_primary_path() -> None:
    head = s.STATUS_HEAD.pack(7, c.AssocState.ESTABLISHED, 65536, 1, 2, 10, 16, 1452)
    path = s.PADDRINFO.pack(
        7, pack_storage(("10.0.1.2", 3868)), c.PathState.ACTIVE, 4380, 12, 200, 1500
    )
    status = s.unpack_status(head + path)
    assert status.outbound_streams == 16
    assert status.inbound_streams == 10
    assert status.primary.address == ("10.0.1.2", 3868)
    assert status.primary.state == c.PathState.ACTIVE
    assert (status.primary.srtt_ms, status.primary.rto_ms) == (12, 200)


def test_assoc_stats_decodes_every_counter() -> None:
    raw = s.ASSOC_STATS.pack(3, pack_storage(("::1", 9)), *range(1, 16))
    stats = s.unpack_assoc_stats(raw)
    assert stats.max_rto_address == ("::1", 9)
    assert stats.counters["max_rto_ms"] == 1
    assert stats.counters["retransmitted_chunks"] == 6
    assert stats.counters["in_control_chunks"] == 15


@pytest.mark.parametrize("address", [("10.1.2.3", 3868), ("fd00::1", 2905), ("::ffff:1.2.3.4", 1)])
def test_sockaddr_round_trip(address: tuple[str, int]) -> None:
    got, size = unpack_sockaddr(pack_sockaddr(address))
    assert got == address
    assert size == (16 if "." in address[0] and ":" not in address[0] else 28)


def test_sockaddr_list_mixes_families() -> None:
    addrs = [("10.0.0.1", 1), ("fd00::2", 1), ("10.0.1.1", 1)]
    assert unpack_sockaddr_list(pack_sockaddrs(addrs), 3) == addrs


def test_bad_address_is_named() -> None:
    with pytest.raises(AddressError, match=r"hss1\.example\.net"):
        pack_sockaddr(("hss1.example.net", 3868))


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(AddressError, match="family 99"):
        unpack_sockaddr(struct.pack("=H", 99) + bytes(126))
