"""Decode SCTP notifications (recvmsg with MSG_NOTIFICATION) into typed events.

Pure: bytes in, a frozen dataclass out. Unknown or truncated notifications
decode to `UnknownNotification`/raise `NotificationError`, never crash a reader.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from sigmw.sctp.addresses import SOCKADDR_STORAGE_SIZE, Address, unpack_sockaddr
from sigmw.sctp.constants import AssocChangeState, ErrorCause, NotificationType, PeerAddrState

HEADER = struct.Struct("@HHI")  # type, flags, length
_ASSOC_CHANGE = struct.Struct("@HHIHHHHi")
_PADDR_CHANGE = struct.Struct(f"=HHI{SOCKADDR_STORAGE_SIZE}siii")  # packed, aligned(4)
_REMOTE_ERROR = struct.Struct("@HHIHi")  # ... sre_error is big-endian, fixed below
_SEND_FAILED_EVENT = struct.Struct("@HHIIHHIIii")  # error, sctp_sndinfo (16 bytes), assoc id
_SEND_FAILED_OLD = struct.Struct("@HHIIHHHIIIIIii")  # error, sctp_sndrcvinfo, assoc id
_SHUTDOWN = struct.Struct("@HHIi")
_PDAPI = struct.Struct("@HHIIiII")
_ADAPTATION = struct.Struct("@HHIIi")
_ASSOC_ONLY = struct.Struct("@HHIi")  # sender dry
_STREAM_RESET = struct.Struct("@HHIi")  # then a list of u16 stream ids
_ASSOC_RESET = struct.Struct("@HHIiII")
_STREAM_CHANGE = struct.Struct("@HHIiHH")

SCTP_DATA_SENT = 1  # send failed: the data went out at least once (else: never sent)


class NotificationError(ValueError):
    """A notification too short for its declared type."""


@dataclass(frozen=True, slots=True)
class Cause:
    """One error cause from an ABORT or ERROR chunk."""

    code: int
    """Cause code (RFC 9260 3.3.10), e.g. 12 user-initiated abort."""
    info: bytes
    """Cause-specific information; for a user abort, the upper-layer reason."""

    @property
    def name(self) -> str:
        try:
            return ErrorCause(self.code).name
        except ValueError:
            return f"CAUSE_{self.code}"


@dataclass(frozen=True, slots=True)
class AssocChange:
    """SCTP_ASSOC_CHANGE: an association came up, went down, restarted or failed to start."""

    assoc_id: int
    """The association's id on this socket."""
    state: AssocChangeState
    """COMM_UP, COMM_LOST, RESTART, SHUTDOWN_COMP or CANT_STR_ASSOC."""
    error: int
    """Cause code that ended the association (0: none, e.g. a timeout), host order."""
    outbound_streams: int
    """Streams we may send on (negotiated), valid at COMM_UP and RESTART."""
    inbound_streams: int
    """Streams the peer may send on."""
    causes: tuple[Cause, ...]
    """Error causes of the ABORT that ended the association (COMM_LOST, CANT_STR_ASSOC)."""
    features: tuple[int, ...]
    """Supported features (SCTP_ASSOC_SUPPORTS_*), reported at COMM_UP and RESTART."""


@dataclass(frozen=True, slots=True)
class PeerAddrChange:
    """SCTP_PEER_ADDR_CHANGE: one peer address (path) changed state."""

    assoc_id: int
    """The association the path belongs to."""
    address: Address | None
    """The peer address whose state changed."""
    state: PeerAddrState
    """New state: AVAILABLE, UNREACHABLE, POTENTIALLY_FAILED, ADDED, REMOVED, ..."""
    error: int
    """Error code the kernel attached (usually 0)."""


@dataclass(frozen=True, slots=True)
class SendFailed:
    """SCTP_SEND_FAILED(_EVENT): a message could not be delivered; it is handed back."""

    assoc_id: int
    """Association the message was sent on."""
    sent: bool
    """True if the data went on the wire at least once (SCTP_DATA_SENT)."""
    error: int
    """Error cause code."""
    stream: int
    """Stream the message was sent on."""
    ppid: int
    """Payload protocol id, host byte order."""
    flags: int
    """Send flags of the message."""
    context: int
    """Context value given at send time."""
    data: bytes
    """The undelivered message."""


@dataclass(frozen=True, slots=True)
class RemoteError:
    """SCTP_REMOTE_ERROR: the peer sent an ERROR chunk."""

    assoc_id: int
    """Association the ERROR chunk arrived on."""
    error: int
    """First cause code, host byte order."""
    data: bytes
    """The first cause's information (Linux strips its header), then any further causes."""


@dataclass(frozen=True, slots=True)
class ShutdownEvent:
    """SCTP_SHUTDOWN_EVENT: the peer started a graceful shutdown; no more sends."""

    assoc_id: int
    """The association being shut down."""


@dataclass(frozen=True, slots=True)
class PartialDeliveryEvent:
    """SCTP_PARTIAL_DELIVERY_EVENT: a partly delivered message was aborted."""

    assoc_id: int
    """Association of the aborted message."""
    indication: int
    """SCTP_PARTIAL_DELIVERY_ABORTED (0)."""
    stream: int
    """Stream of the aborted message (Linux: 0 unless I-DATA interleaving is on)."""
    sequence: int
    """Its stream sequence number (same caveat)."""


@dataclass(frozen=True, slots=True)
class AdaptationIndication:
    """SCTP_ADAPTATION_INDICATION: the peer's adaptation layer indication at set-up."""

    assoc_id: int
    """The new association."""
    indication: int
    """The 32-bit adaptation code point."""


@dataclass(frozen=True, slots=True)
class SenderDry:
    """SCTP_SENDER_DRY_EVENT: nothing left to send or retransmit."""

    assoc_id: int
    """The association with an empty send queue."""


@dataclass(frozen=True, slots=True)
class StreamReset:
    """SCTP_STREAM_RESET_EVENT (RFC 6525): streams were reset."""

    assoc_id: int
    """The association."""
    flags: int
    """Incoming/outgoing, denied/failed flags."""
    streams: tuple[int, ...]
    """Stream ids reset; empty means all."""


@dataclass(frozen=True, slots=True)
class AssocReset:
    """SCTP_ASSOC_RESET_EVENT (RFC 6525): TSNs were reset."""

    assoc_id: int
    """The association."""
    flags: int
    """Denied/failed flags."""
    local_tsn: int
    """New local TSN."""
    remote_tsn: int
    """New remote TSN."""


@dataclass(frozen=True, slots=True)
class StreamChange:
    """SCTP_STREAM_CHANGE_EVENT (RFC 6525): stream counts changed."""

    assoc_id: int
    """The association."""
    flags: int
    """Denied/failed flags."""
    inbound_streams: int
    """New inbound stream count."""
    outbound_streams: int
    """New outbound stream count."""


@dataclass(frozen=True, slots=True)
class UnknownNotification:
    """A notification type this decoder does not know (kept raw, counted by callers)."""

    type: int
    """sn_type."""
    data: bytes
    """The whole notification."""


Notification = (
    AssocChange
    | PeerAddrChange
    | SendFailed
    | RemoteError
    | ShutdownEvent
    | PartialDeliveryEvent
    | AdaptationIndication
    | SenderDry
    | StreamReset
    | AssocReset
    | StreamChange
    | UnknownNotification
)


def parse_causes(raw: bytes) -> tuple[Cause, ...]:
    """Error causes as TLVs (code, length, info), each padded to 4 bytes; stops at garbage."""
    causes: list[Cause] = []
    offset = 0
    while offset + 4 <= len(raw):
        code, length = struct.unpack_from("!HH", raw, offset)
        if length < 4 or offset + length > len(raw):
            break
        causes.append(Cause(code, raw[offset + 4 : offset + length]))
        offset += (length + 3) & ~3
    return tuple(causes)


def _abort_causes(info: bytes) -> tuple[Cause, ...]:
    """sac_info of COMM_LOST/CANT_STR_ASSOC: the causes of the ABORT that ended it.

    Linux copies the ABORT chunk's body (no chunk header); a whole chunk (type 6,
    its length matching) is accepted too, as other stacks deliver it that way.
    """
    if len(info) >= 4 and info[0] == 6 and struct.unpack_from("!H", info, 2)[0] == len(info):
        return parse_causes(info[4:])
    return parse_causes(info)


def _need(raw: bytes, layout: struct.Struct, name: str) -> None:
    if len(raw) < layout.size:
        raise NotificationError(f"{name} notification of {len(raw)} bytes, need {layout.size}")


def _assoc_change(raw: bytes) -> AssocChange:
    _need(raw, _ASSOC_CHANGE, "ASSOC_CHANGE")
    _, _, length, state, error_be, outs, ins, assoc_id = _ASSOC_CHANGE.unpack_from(raw)
    error = socket.ntohs(error_be)  # Linux stores the cause code in network order
    info = raw[_ASSOC_CHANGE.size : max(length, _ASSOC_CHANGE.size)]
    st = AssocChangeState(state)
    if st in (AssocChangeState.COMM_UP, AssocChangeState.RESTART):
        return AssocChange(assoc_id, st, error, outs, ins, (), tuple(info))
    return AssocChange(assoc_id, st, error, outs, ins, _abort_causes(info), ())


def _peer_addr_change(raw: bytes) -> PeerAddrChange:
    _need(raw, _PADDR_CHANGE, "PEER_ADDR_CHANGE")
    _, _, _, storage, state, error, assoc_id = _PADDR_CHANGE.unpack_from(raw)
    address, _ = unpack_sockaddr(storage)
    return PeerAddrChange(assoc_id, address, PeerAddrState(state), error)


def _send_failed_event(raw: bytes) -> SendFailed:
    _need(raw, _SEND_FAILED_EVENT, "SEND_FAILED_EVENT")
    _, flags, length, error, sid, sflags, ppid, context, _, assoc_id = (
        _SEND_FAILED_EVENT.unpack_from(raw)
    )
    data = raw[_SEND_FAILED_EVENT.size : max(length, _SEND_FAILED_EVENT.size)]
    sent = bool(flags & SCTP_DATA_SENT)
    return SendFailed(assoc_id, sent, error, sid, socket.ntohl(ppid), sflags, context, data)


def _send_failed_old(raw: bytes) -> SendFailed:
    _need(raw, _SEND_FAILED_OLD, "SEND_FAILED")
    fields = _SEND_FAILED_OLD.unpack_from(raw)
    _, flags, length, error, sid, _, sflags, ppid, context, _, _, _, _, assoc_id = fields
    data = raw[_SEND_FAILED_OLD.size : max(length, _SEND_FAILED_OLD.size)]
    sent = bool(flags & SCTP_DATA_SENT)
    return SendFailed(assoc_id, sent, error, sid, socket.ntohl(ppid), sflags, context, data)


def _remote_error(raw: bytes) -> RemoteError:
    _need(raw, _REMOTE_ERROR, "REMOTE_ERROR")
    _, _, length, error_be, assoc_id = _REMOTE_ERROR.unpack_from(raw)
    data = raw[_REMOTE_ERROR.size : max(length, _REMOTE_ERROR.size)]
    return RemoteError(assoc_id, socket.ntohs(error_be), data)


def _shutdown(raw: bytes) -> ShutdownEvent:
    _need(raw, _SHUTDOWN, "SHUTDOWN_EVENT")
    return ShutdownEvent(_SHUTDOWN.unpack_from(raw)[3])


def _pdapi(raw: bytes) -> PartialDeliveryEvent:
    _need(raw, _PDAPI, "PARTIAL_DELIVERY_EVENT")
    _, _, _, indication, assoc_id, stream, seq = _PDAPI.unpack_from(raw)
    return PartialDeliveryEvent(assoc_id, indication, stream, seq)


def _adaptation(raw: bytes) -> AdaptationIndication:
    _need(raw, _ADAPTATION, "ADAPTATION_INDICATION")
    _, _, _, indication, assoc_id = _ADAPTATION.unpack_from(raw)
    return AdaptationIndication(assoc_id, indication)


def _sender_dry(raw: bytes) -> SenderDry:
    _need(raw, _ASSOC_ONLY, "SENDER_DRY_EVENT")
    return SenderDry(_ASSOC_ONLY.unpack_from(raw)[3])


def _stream_reset(raw: bytes) -> StreamReset:
    _need(raw, _STREAM_RESET, "STREAM_RESET_EVENT")
    _, flags, length, assoc_id = _STREAM_RESET.unpack_from(raw)
    tail = raw[_STREAM_RESET.size : max(length, _STREAM_RESET.size)]
    streams = struct.unpack_from(f"@{len(tail) // 2}H", tail)
    return StreamReset(assoc_id, flags, tuple(streams))


def _assoc_reset(raw: bytes) -> AssocReset:
    _need(raw, _ASSOC_RESET, "ASSOC_RESET_EVENT")
    _, flags, _, assoc_id, local_tsn, remote_tsn = _ASSOC_RESET.unpack_from(raw)
    return AssocReset(assoc_id, flags, local_tsn, remote_tsn)


def _stream_change(raw: bytes) -> StreamChange:
    _need(raw, _STREAM_CHANGE, "STREAM_CHANGE_EVENT")
    _, flags, _, assoc_id, ins, outs = _STREAM_CHANGE.unpack_from(raw)
    return StreamChange(assoc_id, flags, ins, outs)


_PARSERS: dict[NotificationType, Callable[[bytes], Notification]] = {
    NotificationType.ASSOC_CHANGE: _assoc_change,
    NotificationType.PEER_ADDR_CHANGE: _peer_addr_change,
    NotificationType.SEND_FAILED: _send_failed_old,
    NotificationType.SEND_FAILED_EVENT: _send_failed_event,
    NotificationType.REMOTE_ERROR: _remote_error,
    NotificationType.SHUTDOWN_EVENT: _shutdown,
    NotificationType.PARTIAL_DELIVERY_EVENT: _pdapi,
    NotificationType.ADAPTATION_INDICATION: _adaptation,
    NotificationType.SENDER_DRY_EVENT: _sender_dry,
    NotificationType.STREAM_RESET_EVENT: _stream_reset,
    NotificationType.ASSOC_RESET_EVENT: _assoc_reset,
    NotificationType.STREAM_CHANGE_EVENT: _stream_change,
}


def parse_notification(raw: bytes) -> Notification:
    """Decode one complete notification; raises NotificationError if it is truncated."""
    if len(raw) < HEADER.size:
        raise NotificationError(f"notification of {len(raw)} bytes has no header")
    sn_type, _, _ = HEADER.unpack_from(raw)
    try:
        parser = _PARSERS[NotificationType(sn_type)]
    except (ValueError, KeyError):
        return UnknownNotification(sn_type, bytes(raw))
    try:
        return parser(raw)
    except ValueError as exc:  # unknown enum value inside a known type
        if isinstance(exc, NotificationError):
            raise
        return UnknownNotification(sn_type, bytes(raw))


# Types subscribed by default with SCTP_EVENT (sender-dry and authentication are opt-in).
DEFAULT_SUBSCRIPTIONS = (
    NotificationType.ASSOC_CHANGE,
    NotificationType.PEER_ADDR_CHANGE,
    NotificationType.SEND_FAILED_EVENT,
    NotificationType.REMOTE_ERROR,
    NotificationType.SHUTDOWN_EVENT,
    NotificationType.PARTIAL_DELIVERY_EVENT,
    NotificationType.ADAPTATION_INDICATION,
    NotificationType.STREAM_RESET_EVENT,
    NotificationType.ASSOC_RESET_EVENT,
    NotificationType.STREAM_CHANGE_EVENT,
)
