"""Pack and unpack the SCTP socket API structures (Linux layouts).

Pure functions over bytes: the I/O layer passes the results to setsockopt,
getsockopt and the ancillary data of sendmsg/recvmsg. Layouts follow
include/uapi/linux/sctp.h; sizes are asserted in tests/unit/test_structs.py.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from sigmw.sctp import constants as c
from sigmw.sctp.addresses import SOCKADDR_STORAGE_SIZE, Address, pack_storage, unpack_sockaddr

# --- ancillary data ----------------------------------------------------------

SNDINFO = struct.Struct("@HHIIi")  # sid, flags, ppid (network order), context, assoc id
RCVINFO = struct.Struct("@HHHIIIIi")  # sid, ssn, flags, ppid, tsn, cumtsn, context, assoc id
PRINFO = struct.Struct("@HI")  # policy, value
INITMSG = struct.Struct("@HHHH")  # ostreams, max instreams, max attempts, max init timeout


def pack_sndinfo(stream: int, flags: int, ppid: int, context: int, assoc_id: int) -> bytes:
    """struct sctp_sndinfo; the PPID goes on the wire as given, so it is byte-swapped here."""
    return SNDINFO.pack(stream, flags, socket.htonl(ppid), context, assoc_id)


@dataclass(frozen=True, slots=True)
class RcvInfo:
    """struct sctp_rcvinfo, with the PPID in host byte order."""

    stream: int
    ssn: int
    flags: int
    ppid: int
    tsn: int
    cumtsn: int
    context: int
    assoc_id: int


def unpack_rcvinfo(raw: bytes) -> RcvInfo:
    sid, ssn, flags, ppid, tsn, cumtsn, context, assoc_id = RCVINFO.unpack_from(raw)
    return RcvInfo(sid, ssn, flags, socket.ntohl(ppid), tsn, cumtsn, context, assoc_id)


def pack_prinfo_ttl(ttl_ms: int) -> bytes:
    """struct sctp_prinfo asking PR-SCTP to abandon the message after ttl_ms."""
    return PRINFO.pack(c.SCTP_PR_SCTP_TTL, ttl_ms)


# --- socket options ------------------------------------------------------------

RTOINFO = struct.Struct("@iIII")  # assoc id, initial, max, min (ms)
ASSOCPARAMS = struct.Struct("@iHHIII")  # assoc id, max rxt, peer dests, peer rwnd, lrwnd, cookie
SACKINFO = struct.Struct("@iII")  # assoc id, delay (ms), frequency
ASSOC_VALUE = struct.Struct("@iI")
EVENT = struct.Struct("@iHB")  # assoc id, type, on
PEELOFF_FLAGS_ARG = struct.Struct("@iiI")  # assoc id, returned sd, flags
# sctp_paddrparams is packed, aligned(4): 155 bytes of fields, 156 in all.
PADDRPARAMS = struct.Struct(f"=i{SOCKADDR_STORAGE_SIZE}sIHIIIIB1x")
# sctp_paddrthlds_v2 is NOT packed: the storage is 8-aligned, 144 bytes in all.
PADDRTHLDS_V2 = struct.Struct(f"@i4x{SOCKADDR_STORAGE_SIZE}sHHH2x")
# sctp_paddrinfo is packed, aligned(4).
PADDRINFO = struct.Struct(f"=i{SOCKADDR_STORAGE_SIZE}siIIII")
STATUS_HEAD = struct.Struct("@iiIHHHHI")
STATUS_SIZE = STATUS_HEAD.size + PADDRINFO.size
ASSOC_STATS = struct.Struct(f"@i4x{SOCKADDR_STORAGE_SIZE}s15Q")
GETADDRS_HEAD = struct.Struct("@iI")  # assoc id, number of addresses


def pack_initmsg(
    ostreams: int, max_instreams: int, max_attempts: int, max_init_timeo: int
) -> bytes:
    return INITMSG.pack(ostreams, max_instreams, max_attempts, max_init_timeo)


@dataclass(frozen=True, slots=True)
class RtoInfo:
    """Retransmission timeout bounds in milliseconds (0 on set: keep the current value)."""

    initial: int
    min: int
    max: int


def pack_rtoinfo(assoc_id: int, rto: RtoInfo) -> bytes:
    return RTOINFO.pack(assoc_id, rto.initial, rto.max, rto.min)


def unpack_rtoinfo(raw: bytes) -> RtoInfo:
    _, initial, max_, min_ = RTOINFO.unpack_from(raw)
    return RtoInfo(initial=initial, min=min_, max=max_)


def pack_assocparams(assoc_id: int, max_retrans: int) -> bytes:
    """Only the association retransmission limit; zeroes leave the other fields alone."""
    return ASSOCPARAMS.pack(assoc_id, max_retrans, 0, 0, 0, 0)


def unpack_assoc_max_retrans(raw: bytes) -> int:
    return int(ASSOCPARAMS.unpack_from(raw)[1])


@dataclass(frozen=True, slots=True)
class PeerAddrParams:
    """Path parameters; None leaves a value unchanged (struct sctp_paddrparams)."""

    hb_interval_ms: int | None = None
    hb_enabled: bool | None = None
    path_max_retrans: int | None = None
    sack_delay_ms: int | None = None
    path_mtu: int | None = None


def pack_paddrparams(
    assoc_id: int, params: PeerAddrParams, address: Address | None = None
) -> bytes:
    """Flags say which fields apply: this is what pysctp cannot express."""
    flags = 0
    hb_interval = params.hb_interval_ms or 0
    if params.hb_enabled is False:
        flags |= c.SPP_HB_DISABLE
    elif params.hb_enabled or params.hb_interval_ms is not None:
        flags |= c.SPP_HB_ENABLE
        if params.hb_interval_ms == 0:
            flags |= c.SPP_HB_TIME_IS_ZERO
    sack_delay = params.sack_delay_ms or 0
    if params.sack_delay_ms is not None:
        flags |= c.SPP_SACKDELAY_DISABLE if sack_delay == 0 else c.SPP_SACKDELAY_ENABLE
    mtu = params.path_mtu or 0
    if mtu:
        flags |= c.SPP_PMTUD_DISABLE
    return PADDRPARAMS.pack(
        assoc_id,
        pack_storage(address),
        hb_interval,
        params.path_max_retrans or 0,
        mtu,
        sack_delay,
        flags,
        0,
        0,
    )


def unpack_paddrparams(raw: bytes) -> PeerAddrParams:
    _, _, hb, pmr, mtu, sack, flags, _, _ = PADDRPARAMS.unpack_from(raw)
    return PeerAddrParams(
        hb_interval_ms=hb,
        hb_enabled=bool(flags & c.SPP_HB_ENABLE),
        path_max_retrans=pmr,
        sack_delay_ms=sack if flags & c.SPP_SACKDELAY_ENABLE else 0,
        path_mtu=mtu,
    )


def pack_sackinfo(assoc_id: int, delay_ms: int, freq: int) -> bytes:
    return SACKINFO.pack(assoc_id, delay_ms, freq)


def unpack_sackinfo(raw: bytes) -> tuple[int, int]:
    """(delay in ms, frequency)."""
    _, delay, freq = SACKINFO.unpack_from(raw)
    return int(delay), int(freq)


def pack_thresholds(
    assoc_id: int, path_max_retrans: int, pf_threshold: int, address: Address | None = None
) -> bytes:
    """struct sctp_paddrthlds_v2; the 'primary path switchover' threshold stays 0xffff (off)."""
    return PADDRTHLDS_V2.pack(
        assoc_id, pack_storage(address), path_max_retrans, pf_threshold, 0xFFFF
    )


def unpack_thresholds(raw: bytes) -> tuple[int, int]:
    """(path max retransmissions, potentially-failed threshold)."""
    _, _, pmr, pf, _ = PADDRTHLDS_V2.unpack_from(raw)
    return int(pmr), int(pf)


def pack_assoc_value(assoc_id: int, value: int) -> bytes:
    return ASSOC_VALUE.pack(assoc_id, value)


def pack_event(assoc_id: int, event_type: int, on: bool) -> bytes:
    return EVENT.pack(assoc_id, event_type, int(on)) + b"\0"  # padded to 8 bytes


def pack_setprim(assoc_id: int, address: Address) -> bytes:
    """struct sctp_setprim and sctp_setpeerprim (same packed layout, 132 bytes)."""
    return struct.pack("=i", assoc_id) + pack_storage(address)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """One path of an association, as the kernel reports it."""

    address: Address | None
    state: int
    cwnd: int
    srtt_ms: int
    rto_ms: int
    mtu: int


def pack_paddrinfo_query(assoc_id: int, address: Address) -> bytes:
    return PADDRINFO.pack(assoc_id, pack_storage(address), 0, 0, 0, 0, 0)


def unpack_paddrinfo(raw: bytes, offset: int = 0) -> PathInfo:
    _, storage, state, cwnd, srtt, rto, mtu = PADDRINFO.unpack_from(raw, offset)
    address, _ = unpack_sockaddr(storage)
    return PathInfo(address, state, cwnd, srtt, rto, mtu)


@dataclass(frozen=True, slots=True)
class Status:
    """SCTP_STATUS: the association's state and its primary path."""

    assoc_id: int
    state: int
    rwnd: int
    unacked: int
    pending: int
    inbound_streams: int
    outbound_streams: int
    fragmentation_point: int
    primary: PathInfo


def pack_status_query(assoc_id: int) -> bytes:
    return struct.pack("@i", assoc_id).ljust(STATUS_SIZE, b"\0")


def unpack_status(raw: bytes) -> Status:
    assoc_id, state, rwnd, unacked, pending, ins, outs, frag = STATUS_HEAD.unpack_from(raw)
    primary = unpack_paddrinfo(raw, STATUS_HEAD.size)
    return Status(assoc_id, state, rwnd, unacked, pending, ins, outs, frag, primary)


ASSOC_STATS_FIELDS = (
    "max_rto_ms",
    "in_sacks",
    "out_sacks",
    "out_packets",
    "in_packets",
    "retransmitted_chunks",
    "out_of_seq_tsns",
    "dup_chunks",
    "gap_reports",
    "out_unordered_chunks",
    "in_unordered_chunks",
    "out_ordered_chunks",
    "in_ordered_chunks",
    "out_control_chunks",
    "in_control_chunks",
)


@dataclass(frozen=True, slots=True)
class AssocStats:
    """SCTP_GET_ASSOC_STATS: counters since the association began."""

    max_rto_address: Address | None
    counters: dict[str, int]


def pack_assoc_stats_query(assoc_id: int) -> bytes:
    return struct.pack("@i", assoc_id).ljust(ASSOC_STATS.size, b"\0")


def unpack_assoc_stats(raw: bytes) -> AssocStats:
    _, storage, *values = ASSOC_STATS.unpack_from(raw)
    address, _ = unpack_sockaddr(storage)
    return AssocStats(address, dict(zip(ASSOC_STATS_FIELDS, values, strict=True)))
