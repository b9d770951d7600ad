"""Numeric values of the Linux SCTP socket API (include/uapi/linux/sctp.h).

Kept here rather than taken from pysctp so that the pure codecs can be used and
tested on hosts whose Python has no SCTP module, and because pysctp lacks the
newer options (SCTP_EVENT, thresholds v2, PF state, association statistics).
"""

from __future__ import annotations

import enum

IPPROTO_SCTP = 132
SOL_SCTP = 132

# Socket options (level SOL_SCTP).
SCTP_RTOINFO = 0
SCTP_ASSOCINFO = 1
SCTP_INITMSG = 2
SCTP_NODELAY = 3
SCTP_AUTOCLOSE = 4
SCTP_SET_PEER_PRIMARY_ADDR = 5
SCTP_PRIMARY_ADDR = 6
SCTP_ADAPTATION_LAYER = 7
SCTP_DISABLE_FRAGMENTS = 8
SCTP_PEER_ADDR_PARAMS = 9
SCTP_MAXSEG = 13
SCTP_STATUS = 14
SCTP_GET_PEER_ADDR_INFO = 15
SCTP_DELAYED_SACK = 16
SCTP_FRAGMENT_INTERLEAVE = 18
SCTP_PARTIAL_DELIVERY_POINT = 19
SCTP_PEER_ADDR_THLDS = 31
SCTP_RECVRCVINFO = 32
SCTP_DEFAULT_SNDINFO = 34
SCTP_PEER_ADDR_THLDS_V2 = 37
SCTP_SOCKOPT_BINDX_ADD = 100
SCTP_SOCKOPT_PEELOFF = 102
SCTP_GET_PEER_ADDRS = 108
SCTP_GET_LOCAL_ADDRS = 109
SCTP_SOCKOPT_CONNECTX3 = 111
SCTP_GET_ASSOC_STATS = 112
SCTP_SOCKOPT_PEELOFF_FLAGS = 122
SCTP_EVENT = 127
SCTP_EXPOSE_POTENTIALLY_FAILED_STATE = 131

# Special association ids for one-to-many sockets.
SCTP_FUTURE_ASSOC = 0
SCTP_CURRENT_ASSOC = 1
SCTP_ALL_ASSOC = 2

# Ancillary data (cmsg) types at level IPPROTO_SCTP.
SCTP_INIT = 0
SCTP_SNDRCV = 1
SCTP_SNDINFO = 2
SCTP_RCVINFO = 3
SCTP_PRINFO = 5

# recvmsg() flags.
MSG_EOR = 0x80
MSG_NOTIFICATION = 0x8000

# PR-SCTP policies (struct sctp_prinfo.pr_policy).
SCTP_PR_SCTP_TTL = 0x0010

# SCTP_EXPOSE_POTENTIALLY_FAILED_STATE values: 1 hides the PF state, 2 exposes it.
SCTP_PF_EXPOSE_DISABLE = 1
SCTP_PF_EXPOSE_ENABLE = 2

# struct sctp_paddrparams.spp_flags
SPP_HB_ENABLE = 1 << 0
SPP_HB_DISABLE = 1 << 1
SPP_PMTUD_ENABLE = 1 << 3
SPP_PMTUD_DISABLE = 1 << 4
SPP_SACKDELAY_ENABLE = 1 << 5
SPP_SACKDELAY_DISABLE = 1 << 6
SPP_HB_TIME_IS_ZERO = 1 << 7


class SendFlag(enum.IntFlag):
    """Per-message send flags (snd_flags / sinfo_flags)."""

    NONE = 0
    UNORDERED = 1 << 0
    ADDR_OVER = 1 << 1
    ABORT = 1 << 2
    SACK_IMMEDIATELY = 1 << 3
    SENDALL = 1 << 6
    EOF = 0x200  # MSG_FIN


class NotificationType(enum.IntEnum):
    """enum sctp_sn_type: the first 16 bits of every notification."""

    ASSOC_CHANGE = 0x8001
    PEER_ADDR_CHANGE = 0x8002
    SEND_FAILED = 0x8003
    REMOTE_ERROR = 0x8004
    SHUTDOWN_EVENT = 0x8005
    PARTIAL_DELIVERY_EVENT = 0x8006
    ADAPTATION_INDICATION = 0x8007
    AUTHENTICATION_EVENT = 0x8008
    SENDER_DRY_EVENT = 0x8009
    STREAM_RESET_EVENT = 0x800A
    ASSOC_RESET_EVENT = 0x800B
    STREAM_CHANGE_EVENT = 0x800C
    SEND_FAILED_EVENT = 0x800D


class AssocChangeState(enum.IntEnum):
    """sac_state of an SCTP_ASSOC_CHANGE notification."""

    COMM_UP = 0
    COMM_LOST = 1
    RESTART = 2
    SHUTDOWN_COMP = 3
    CANT_STR_ASSOC = 4


class PeerAddrState(enum.IntEnum):
    """spc_state of an SCTP_PEER_ADDR_CHANGE notification."""

    ADDR_AVAILABLE = 0
    ADDR_UNREACHABLE = 1
    ADDR_REMOVED = 2
    ADDR_ADDED = 3
    ADDR_MADE_PRIM = 4
    ADDR_CONFIRMED = 5
    ADDR_POTENTIALLY_FAILED = 6


class PathState(enum.IntEnum):
    """spinfo_state of SCTP_GET_PEER_ADDR_INFO / SCTP_STATUS (enum sctp_spinfo_state)."""

    INACTIVE = 0
    PF = 1
    ACTIVE = 2
    UNCONFIRMED = 3
    UNKNOWN = 0xFFFF


class AssocState(enum.IntEnum):
    """sstat_state of SCTP_STATUS (enum sctp_sstat_state)."""

    EMPTY = 0
    CLOSED = 1
    COOKIE_WAIT = 2
    COOKIE_ECHOED = 3
    ESTABLISHED = 4
    SHUTDOWN_PENDING = 5
    SHUTDOWN_SENT = 6
    SHUTDOWN_RECEIVED = 7
    SHUTDOWN_ACK_SENT = 8


class ErrorCause(enum.IntEnum):
    """SCTP error cause codes (RFC 9260 3.3.10), as carried in ABORT and ERROR chunks."""

    INVALID_STREAM = 1
    MISSING_PARAMETER = 2
    STALE_COOKIE = 3
    OUT_OF_RESOURCE = 4
    UNRESOLVABLE_ADDRESS = 5
    UNRECOGNIZED_CHUNK = 6
    INVALID_MANDATORY_PARAMETER = 7
    UNRECOGNIZED_PARAMETERS = 8
    NO_USER_DATA = 9
    COOKIE_WHILE_SHUTTING_DOWN = 10
    RESTART_WITH_NEW_ADDRESSES = 11
    USER_INITIATED_ABORT = 12
    PROTOCOL_VIOLATION = 13


# Well-known payload protocol identifiers (IANA).
PPID_M3UA = 3
PPID_SUA = 4
PPID_DIAMETER = 46
PPID_DIAMETER_DTLS = 47
