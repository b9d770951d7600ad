"""Decoding of every notification type from bytes laid out as Linux delivers them."""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigmw.sctp.addresses import pack_storage
from sigmw.sctp.constants import AssocChangeState, ErrorCause, NotificationType, PeerAddrState
from sigmw.sctp.notifications import (
    AdaptationIndication,
    AssocChange,
    AssocReset,
    NotificationError,
    PartialDeliveryEvent,
    PeerAddrChange,
    RemoteError,
    SenderDry,
    SendFailed,
    ShutdownEvent,
    StreamChange,
    StreamReset,
    UnknownNotification,
    parse_causes,
    parse_notification,
)

T = NotificationType


def _cause(code: int, info: bytes) -> bytes:
    body = struct.pack("!HH", code, 4 + len(info)) + info
    return body + b"\0" * (-len(body) % 4)


def _assoc_change(state: int, error: int, outs: int, ins: int, assoc: int, info: bytes) -> bytes:
    head = struct.pack(
        "@HHIHHHHi", T.ASSOC_CHANGE, 0, 20 + len(info), state, socket.htons(error), outs, ins, assoc
    )
    return head + info


def test_comm_up_carries_stream_counts() -> None:
    note = parse_notification(_assoc_change(AssocChangeState.COMM_UP, 0, 16, 10, 3, b""))
    assert note == AssocChange(3, AssocChangeState.COMM_UP, 0, 16, 10, (), ())


def test_comm_lost_from_user_abort_carries_the_reason() -> None:
    # Linux: sac_error is the first cause in network order; sac_info is the ABORT body.
    body = _cause(ErrorCause.USER_INITIATED_ABORT, b"goodbye")
    note = parse_notification(_assoc_change(AssocChangeState.COMM_LOST, 12, 0, 0, 4, body))
    assert isinstance(note, AssocChange)
    assert note.state is AssocChangeState.COMM_LOST
    assert note.error == ErrorCause.USER_INITIATED_ABORT
    assert [(c.name, c.info) for c in note.causes] == [("USER_INITIATED_ABORT", b"goodbye")]


def test_abort_delivered_as_whole_chunk_is_understood() -> None:
    causes = _cause(ErrorCause.PROTOCOL_VIOLATION, b"x")
    chunk = struct.pack("!BBH", 6, 0, 4 + len(causes)) + causes
    note = parse_notification(_assoc_change(AssocChangeState.CANT_STR_ASSOC, 13, 0, 0, 5, chunk))
    assert isinstance(note, AssocChange)
    assert [c.code for c in note.causes] == [ErrorCause.PROTOCOL_VIOLATION]


def test_peer_addr_change_potentially_failed() -> None:
    raw = struct.pack(
        "=HHI128siii",
        T.PEER_ADDR_CHANGE,
        0,
        148,
        pack_storage(("10.91.1.2", 3868)),
        PeerAddrState.ADDR_POTENTIALLY_FAILED,
        0,
        7,
    )
    note = parse_notification(raw)
    assert note == PeerAddrChange(7, ("10.91.1.2", 3868), PeerAddrState.ADDR_POTENTIALLY_FAILED, 0)


def test_send_failed_event_hands_back_the_message() -> None:
    # struct sctp_send_failed_event: 12-byte head, a whole sctp_sndinfo, then the assoc id.
    head = struct.pack(
        "@HHIIHHIIii", T.SEND_FAILED_EVENT, 0, 32 + 5, 0, 3, 0, socket.htonl(46), 77, 0, 9
    )
    assert len(head) == 32
    note = parse_notification(head + b"hello")
    assert note == SendFailed(9, False, 0, 3, 46, 0, 77, b"hello")


def test_old_send_failed_format_also_decodes() -> None:
    head = struct.pack(
        "@HHIIHHHIIIIIii", T.SEND_FAILED, 1, 48 + 2, 0, 4, 0, 0, socket.htonl(3), 5, 0, 0, 0, 0, 11
    )
    note = parse_notification(head + b"hi")
    assert note == SendFailed(11, True, 0, 4, 3, 0, 5, b"hi")


def test_remote_error() -> None:
    causes = _cause(ErrorCause.INVALID_STREAM, b"\x00\x20\x00\x00")
    raw = (
        struct.pack(
            "@HHIHi",
            T.REMOTE_ERROR,
            0,
            16 + len(causes),
            socket.htons(ErrorCause.INVALID_STREAM),
            2,
        )
        + causes
    )
    note = parse_notification(raw)
    assert isinstance(note, RemoteError)
    assert (note.assoc_id, note.error) == (2, ErrorCause.INVALID_STREAM)
    assert parse_causes(note.data)[0].code == ErrorCause.INVALID_STREAM


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (struct.pack("@HHIi", T.SHUTDOWN_EVENT, 0, 12, 5), ShutdownEvent(5)),
        (
            struct.pack("@HHIIiII", T.PARTIAL_DELIVERY_EVENT, 0, 24, 0, 6, 2, 9),
            PartialDeliveryEvent(6, 0, 2, 9),
        ),
        (
            struct.pack("@HHIIi", T.ADAPTATION_INDICATION, 0, 16, 0xCAFE, 4),
            AdaptationIndication(4, 0xCAFE),
        ),
        (struct.pack("@HHIi", T.SENDER_DRY_EVENT, 0, 12, 8), SenderDry(8)),
        (struct.pack("@HHIiHH", T.STREAM_RESET_EVENT, 1, 16, 3, 1, 5), StreamReset(3, 1, (1, 5))),
        (
            struct.pack("@HHIiII", T.ASSOC_RESET_EVENT, 0, 20, 3, 100, 200),
            AssocReset(3, 0, 100, 200),
        ),
        (
            struct.pack("@HHIiHH", T.STREAM_CHANGE_EVENT, 0, 16, 3, 10, 20),
            StreamChange(3, 0, 10, 20),
        ),
    ],
)
def test_other_notifications(raw: bytes, expected: object) -> None:
    assert parse_notification(raw) == expected


def test_unknown_type_is_kept_raw() -> None:
    raw = struct.pack("@HHI", 0x80FF, 0, 8)
    assert parse_notification(raw) == UnknownNotification(0x80FF, raw)


def test_truncated_notification_is_an_error() -> None:
    raw = _assoc_change(AssocChangeState.COMM_UP, 0, 1, 1, 1, b"")[:15]
    with pytest.raises(NotificationError, match="ASSOC_CHANGE"):
        parse_notification(raw)


def test_causes_stop_at_garbage() -> None:
    good = _cause(ErrorCause.NO_USER_DATA, b"\x00\x00\x00\x01")
    assert [c.code for c in parse_causes(good + b"\x00\x01\x00\x02")] == [9]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(NotificationError):
        parse_notification(raw)
