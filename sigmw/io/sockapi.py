"""Kernel SCTP calls on a socket, one function per API call.

Which mechanism serves which call, and why (see docs/sctp-api.md):
- pysctp: bindx, peer and local address lists (sound in pysctp 0.7.3).
- ctypes getsockopt: connectx (SCTP_SOCKOPT_CONNECTX3 returns the association id
  even on EINPROGRESS; pysctp drops it), peeloff (pysctp leaks a descriptor), and
  every read-out that takes an association id as input (status, path info,
  statistics, per-association option values): Python's getsockopt cannot pass
  an input buffer.
- socket.setsockopt with packed structs: every option, incl. those pysctp lacks or
  gets wrong (SCTP_EVENT, PEER_ADDR_PARAMS flags, THLDS_V2, DEFAULT_SNDINFO).
- socket.sendmsg/recvmsg with SCTP_SNDINFO/SCTP_RCVINFO (in endpoint.py): send
  to an association id, PPID in host order, SENDALL with its real value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct

import _sctp  # pysctp's C module

from sigmw.core.errors import SctpBindError, SctpSocketOptionError, SctpUnavailableError
from sigmw.sctp import constants as c
from sigmw.sctp import structs as s
from sigmw.sctp.addresses import Address, family_of, pack_sockaddrs
from sigmw.sctp.notifications import DEFAULT_SUBSCRIPTIONS
from sigmw.sctp.options import SctpTuning

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.getsockopt.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]


def new_socket(family: int, one_to_many: bool) -> socket.socket:
    """A non-blocking SCTP socket; a kernel without SCTP gives SctpUnavailableError."""
    kind = socket.SOCK_SEQPACKET if one_to_many else socket.SOCK_STREAM
    try:
        sock = socket.socket(family, kind, c.IPPROTO_SCTP)
    except OSError as exc:
        if exc.errno in (errno.ESOCKTNOSUPPORT, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            raise SctpUnavailableError(exc.errno) from None
        raise
    sock.setblocking(False)
    return sock


def socket_family(addresses: list[Address]) -> int:
    """AF_INET6 if any address is IPv6 (v4 then travels as mapped addresses), else AF_INET."""
    families = {family_of(host) for host, _ in addresses}
    return socket.AF_INET6 if socket.AF_INET6 in families else socket.AF_INET


def bindx(sock: socket.socket, addresses: list[Address]) -> None:
    """Bind every address on one port; port 0 takes the port the first bind picked.

    One address at a time, so that a failure names the address that failed.
    """
    port = addresses[0][1]
    for host, _ in addresses:
        try:
            _sctp.bindx(sock.fileno(), [(host, port)], _sctp.getconstant("BINDX_ADD"))
        except OSError as exc:
            raise SctpBindError((host, port), exc.errno or errno.EINVAL) from None
        port = int(sock.getsockname()[1])


def _getsockopt_inout(sock: socket.socket, option: int, buf: bytes) -> bytes:
    """getsockopt with an input buffer (assoc id, address) that the kernel fills in."""
    cbuf = ctypes.create_string_buffer(buf, len(buf))
    size = ctypes.c_uint32(len(buf))
    # Some options return a value (peeloff: the new descriptor); only < 0 is an error.
    if _libc.getsockopt(sock.fileno(), c.SOL_SCTP, option, cbuf, ctypes.byref(size)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getsockopt({option}): {errno.errorcode.get(err, err)}")
    return cbuf.raw[: size.value]


class _GetAddrsOld(ctypes.Structure):
    _fields_ = (
        ("assoc_id", ctypes.c_int32),
        ("addr_num", ctypes.c_int32),
        ("addrs", ctypes.c_void_p),
    )


def connectx(sock: socket.socket, addresses: list[Address]) -> int:
    """Start an association to all of the peer's addresses; returns its id at once.

    On a non-blocking socket the handshake continues in the kernel (EINPROGRESS);
    COMM_UP or CANT_STR_ASSOC follows as a notification.
    """
    packed = pack_sockaddrs(addresses)
    addrs = ctypes.create_string_buffer(packed, len(packed))
    param = _GetAddrsOld(0, len(packed), ctypes.cast(addrs, ctypes.c_void_p))
    size = ctypes.c_uint32(ctypes.sizeof(param))
    rc = _libc.getsockopt(
        sock.fileno(), c.SOL_SCTP, c.SCTP_SOCKOPT_CONNECTX3, ctypes.byref(param), ctypes.byref(size)
    )
    err = ctypes.get_errno() if rc != 0 else 0
    if rc != 0 and err != errno.EINPROGRESS:
        raise OSError(err, f"connectx to {addresses}: {errno.errorcode.get(err, err)}")
    return int(param.assoc_id)


def peeloff(sock: socket.socket, assoc_id: int) -> socket.socket:
    """Detach one association into its own one-to-one socket (close-on-exec, blocking)."""
    arg = s.PEELOFF_FLAGS_ARG.pack(assoc_id, 0, socket.SOCK_CLOEXEC)
    out = _getsockopt_inout(sock, c.SCTP_SOCKOPT_PEELOFF_FLAGS, arg)
    _, fd, _ = s.PEELOFF_FLAGS_ARG.unpack(out)
    return socket.socket(fileno=fd)


def peer_addresses(sock: socket.socket, assoc_id: int) -> list[Address]:
    return [(h, p) for h, p in _sctp.getpaddrs(sock.fileno(), assoc_id)]


def local_addresses(sock: socket.socket, assoc_id: int) -> list[Address]:
    return [(h, p) for h, p in _sctp.getladdrs(sock.fileno(), assoc_id)]


def _set(sock: socket.socket, name: str, option: int, value: bytes | int) -> None:
    try:
        sock.setsockopt(c.SOL_SCTP, option, value)
    except OSError as exc:
        raise SctpSocketOptionError(name, exc.errno or errno.EINVAL, repr(value)) from None


def subscribe(sock: socket.socket, types: tuple[int, ...] = DEFAULT_SUBSCRIPTIONS) -> None:
    """Per-event subscription (SCTP_EVENT) plus SCTP_RCVINFO on every received message."""
    for event_type in types:
        _set(
            sock,
            f"SCTP_EVENT {event_type:#x}",
            c.SCTP_EVENT,
            s.pack_event(c.SCTP_ALL_ASSOC, event_type, True),
        )
    _set(sock, "SCTP_RECVRCVINFO", c.SCTP_RECVRCVINFO, 1)


def apply_tuning(sock: socket.socket, tuning: SctpTuning, assoc_id: int = 0) -> None:
    """Apply every set field; assoc_id 0 sets the endpoint default for new associations."""
    t = tuning
    if t.init is not None and assoc_id == 0:
        i = t.init
        _set(
            sock,
            "SCTP_INITMSG",
            c.SCTP_INITMSG,
            s.pack_initmsg(
                i.outbound_streams, i.max_inbound_streams, i.max_attempts, i.max_init_timeout_ms
            ),
        )
    if any(v is not None for v in (t.rto_initial_ms, t.rto_min_ms, t.rto_max_ms)):
        rto = s.RtoInfo(t.rto_initial_ms or 0, t.rto_min_ms or 0, t.rto_max_ms or 0)
        _set(sock, "SCTP_RTOINFO", c.SCTP_RTOINFO, s.pack_rtoinfo(assoc_id, rto))
    if t.assoc_max_retrans is not None:
        _set(
            sock,
            "SCTP_ASSOCINFO",
            c.SCTP_ASSOCINFO,
            s.pack_assocparams(assoc_id, t.assoc_max_retrans),
        )
    params = s.PeerAddrParams(t.hb_interval_ms, t.hb_enabled, t.path_max_retrans)
    if params != s.PeerAddrParams():
        _set(
            sock,
            "SCTP_PEER_ADDR_PARAMS",
            c.SCTP_PEER_ADDR_PARAMS,
            s.pack_paddrparams(assoc_id, params),
        )
    if t.sack_delay_ms is not None or t.sack_freq is not None:
        _set(
            sock,
            "SCTP_DELAYED_SACK",
            c.SCTP_DELAYED_SACK,
            s.pack_sackinfo(assoc_id, t.sack_delay_ms or 0, t.sack_freq or 0),
        )
    if t.expose_pf_state is not None:
        value = c.SCTP_PF_EXPOSE_ENABLE if t.expose_pf_state else c.SCTP_PF_EXPOSE_DISABLE
        _set(
            sock,
            "SCTP_EXPOSE_POTENTIALLY_FAILED_STATE",
            c.SCTP_EXPOSE_POTENTIALLY_FAILED_STATE,
            s.pack_assoc_value(assoc_id, value),
        )
    if t.pf_threshold is not None:
        pmr = (
            t.path_max_retrans
            if t.path_max_retrans is not None
            else read_thresholds(sock, assoc_id)[0]
        )
        _set(
            sock,
            "SCTP_PEER_ADDR_THLDS_V2",
            c.SCTP_PEER_ADDR_THLDS_V2,
            s.pack_thresholds(assoc_id, pmr, t.pf_threshold),
        )
    _apply_socket_wide(sock, t, assoc_id)


SO_SNDBUFFORCE = 32  # Linux; not exported by Python's socket module
SO_RCVBUFFORCE = 33


def set_buffer(sock: socket.socket, receive: bool, size: int) -> int:
    """Make the socket's receive (or send) buffer `size` bytes as the kernel reports it
    (it doubles what it is given, for its own overheads); past net.core.rmem_max
    (wmem_max) when the process may (CAP_NET_ADMIN), else as far as that allows.
    Returns the size the kernel reports."""
    plain, forced = (
        (socket.SO_RCVBUF, SO_RCVBUFFORCE) if receive else (socket.SO_SNDBUF, SO_SNDBUFFORCE)
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size // 2)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size // 2)
    return sock.getsockopt(socket.SOL_SOCKET, plain)


def _apply_socket_wide(sock: socket.socket, t: SctpTuning, assoc_id: int) -> None:
    """Options that are per socket, or per association through a different struct."""
    if t.receive_buffer is not None and assoc_id == 0:
        set_buffer(sock, True, t.receive_buffer)
    if t.send_buffer is not None and assoc_id == 0:
        set_buffer(sock, False, t.send_buffer)
    if t.nodelay is not None:
        _set(sock, "SCTP_NODELAY", c.SCTP_NODELAY, int(t.nodelay))
    if t.autoclose_s is not None and sock.type == socket.SOCK_SEQPACKET:
        _set(sock, "SCTP_AUTOCLOSE", c.SCTP_AUTOCLOSE, t.autoclose_s)
    if t.maxseg is not None:
        _set(sock, "SCTP_MAXSEG", c.SCTP_MAXSEG, s.pack_assoc_value(assoc_id, t.maxseg))
    if t.disable_fragments is not None:
        _set(sock, "SCTP_DISABLE_FRAGMENTS", c.SCTP_DISABLE_FRAGMENTS, int(t.disable_fragments))
    if t.adaptation_layer is not None:
        _set(
            sock,
            "SCTP_ADAPTATION_LAYER",
            c.SCTP_ADAPTATION_LAYER,
            struct.pack("@I", t.adaptation_layer),
        )
    if t.partial_delivery_point is not None:
        _set(
            sock,
            "SCTP_PARTIAL_DELIVERY_POINT",
            c.SCTP_PARTIAL_DELIVERY_POINT,
            t.partial_delivery_point,
        )
    if t.default_send is not None:
        d = t.default_send
        _set(
            sock,
            "SCTP_DEFAULT_SNDINFO",
            c.SCTP_DEFAULT_SNDINFO,
            s.pack_sndinfo(d.stream, d.flags, d.ppid, d.context, assoc_id),
        )
    if t.primary is not None and assoc_id:
        set_primary(sock, assoc_id, t.primary)
    if t.peer_primary is not None and assoc_id:
        request_peer_primary(sock, assoc_id, t.peer_primary)


def set_primary(sock: socket.socket, assoc_id: int, address: Address) -> None:
    """Send to this peer address by preference (SCTP_PRIMARY_ADDR)."""
    _set(sock, "SCTP_PRIMARY_ADDR", c.SCTP_PRIMARY_ADDR, s.pack_setprim(assoc_id, address))


def request_peer_primary(sock: socket.socket, assoc_id: int, local: Address) -> None:
    """Ask the peer to use one of our addresses as its primary (ASCONF SET PRIMARY)."""
    _set(
        sock,
        "SCTP_SET_PEER_PRIMARY_ADDR",
        c.SCTP_SET_PEER_PRIMARY_ADDR,
        s.pack_setprim(assoc_id, local),
    )


def _query(sock: socket.socket, name: str, option: int, buf: bytes) -> bytes:
    try:
        return _getsockopt_inout(sock, option, buf)
    except OSError as exc:
        raise SctpSocketOptionError(name, exc.errno or errno.EINVAL, "read") from None


def read_rtoinfo(sock: socket.socket, assoc_id: int = 0) -> s.RtoInfo:
    q = s.pack_rtoinfo(assoc_id, s.RtoInfo(0, 0, 0))
    return s.unpack_rtoinfo(_query(sock, "SCTP_RTOINFO", c.SCTP_RTOINFO, q))


def read_assoc_max_retrans(sock: socket.socket, assoc_id: int = 0) -> int:
    q = s.pack_assocparams(assoc_id, 0)
    return s.unpack_assoc_max_retrans(_query(sock, "SCTP_ASSOCINFO", c.SCTP_ASSOCINFO, q))


def read_paddrparams(
    sock: socket.socket, assoc_id: int = 0, address: Address | None = None
) -> s.PeerAddrParams:
    q = s.pack_paddrparams(assoc_id, s.PeerAddrParams(), address)
    raw = _query(sock, "SCTP_PEER_ADDR_PARAMS", c.SCTP_PEER_ADDR_PARAMS, q)
    return s.unpack_paddrparams(raw)


def read_sackinfo(sock: socket.socket, assoc_id: int = 0) -> tuple[int, int]:
    q = s.pack_sackinfo(assoc_id, 0, 0)
    return s.unpack_sackinfo(_query(sock, "SCTP_DELAYED_SACK", c.SCTP_DELAYED_SACK, q))


def read_thresholds(
    sock: socket.socket, assoc_id: int = 0, address: Address | None = None
) -> tuple[int, int]:
    q = s.pack_thresholds(assoc_id, 0, 0, address)
    raw = _query(sock, "SCTP_PEER_ADDR_THLDS_V2", c.SCTP_PEER_ADDR_THLDS_V2, q)
    return s.unpack_thresholds(raw)


def read_initmsg(sock: socket.socket) -> tuple[int, int, int, int]:
    raw = sock.getsockopt(c.SOL_SCTP, c.SCTP_INITMSG, s.INITMSG.size)
    out, ins, attempts, timeo = s.INITMSG.unpack(raw)
    return int(out), int(ins), int(attempts), int(timeo)


def read_status(sock: socket.socket, assoc_id: int) -> s.Status:
    raw = _query(sock, "SCTP_STATUS", c.SCTP_STATUS, s.pack_status_query(assoc_id))
    return s.unpack_status(raw)


def read_path(sock: socket.socket, assoc_id: int, address: Address) -> s.PathInfo:
    q = s.pack_paddrinfo_query(assoc_id, address)
    return s.unpack_paddrinfo(_query(sock, "SCTP_GET_PEER_ADDR_INFO", c.SCTP_GET_PEER_ADDR_INFO, q))


def read_paths(sock: socket.socket, assoc_id: int) -> list[s.PathInfo]:
    """Every path (peer address) of an association with its state, srtt, rto, cwnd, mtu."""
    return [read_path(sock, assoc_id, a) for a in peer_addresses(sock, assoc_id)]


def read_assoc_stats(sock: socket.socket, assoc_id: int) -> s.AssocStats:
    q = s.pack_assoc_stats_query(assoc_id)
    return s.unpack_assoc_stats(_query(sock, "SCTP_GET_ASSOC_STATS", c.SCTP_GET_ASSOC_STATS, q))


def read_maxseg(sock: socket.socket, assoc_id: int = 0) -> int:
    raw = _query(sock, "SCTP_MAXSEG", c.SCTP_MAXSEG, s.pack_assoc_value(assoc_id, 0))
    return int(struct.unpack_from("@iI", raw)[1])


def read_disable_fragments(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(c.SOL_SCTP, c.SCTP_DISABLE_FRAGMENTS))


def read_nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(c.SOL_SCTP, c.SCTP_NODELAY))


def read_autoclose(sock: socket.socket) -> int:
    return int(sock.getsockopt(c.SOL_SCTP, c.SCTP_AUTOCLOSE))


def read_pf_expose(sock: socket.socket, assoc_id: int = 0) -> int:
    raw = _query(
        sock,
        "SCTP_EXPOSE_POTENTIALLY_FAILED_STATE",
        c.SCTP_EXPOSE_POTENTIALLY_FAILED_STATE,
        s.pack_assoc_value(assoc_id, 0),
    )
    return int(struct.unpack_from("@iI", raw)[1])


def read_tuning(sock: socket.socket, assoc_id: int = 0) -> SctpTuning:
    """The association's (or endpoint default's) effective timers and limits."""
    rto = read_rtoinfo(sock, assoc_id)
    params = read_paddrparams(sock, assoc_id)
    pmr, pf = read_thresholds(sock, assoc_id)
    sack_delay, sack_freq = read_sackinfo(sock, assoc_id)
    return SctpTuning(
        rto_initial_ms=rto.initial,
        rto_min_ms=rto.min,
        rto_max_ms=rto.max,
        assoc_max_retrans=read_assoc_max_retrans(sock, assoc_id),
        path_max_retrans=pmr,
        pf_threshold=pf,
        hb_interval_ms=params.hb_interval_ms,
        hb_enabled=params.hb_enabled,
        sack_delay_ms=sack_delay,
        sack_freq=sack_freq,
        nodelay=read_nodelay(sock),
        expose_pf_state=read_pf_expose(sock, assoc_id) == c.SCTP_PF_EXPOSE_ENABLE,
        init=None,
    )
