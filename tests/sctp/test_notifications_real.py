"""Notifications that need a peer to misbehave: provoked with real packets on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.constants import IPPROTO_SCTP, ErrorCause
from sigmw.sctp.notifications import RemoteError

from .support import error_chunk, init_tags, sctp_packet, wait_for

pytestmark = pytest.mark.sctp
LO = "127.0.0.1"


async def test_remote_error_from_an_error_chunk() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)  # sees INIT/INIT-ACK
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    tags = await asyncio.to_thread(init_tags, raw)
    # An ERROR chunk "from" the server, with the tag the client announced in its INIT.
    stream_info = b"\x00\x07\x00\x00"  # invalid stream 7
    packet = sctp_packet(
        server.port,
        client.port,
        tags[client.port],
        error_chunk(ErrorCause.INVALID_STREAM, stream_info),
    )
    raw.sendto(packet, (LO, 0))
    note = await wait_for(client, RemoteError)
    assert note.assoc_id == assoc.assoc_id
    assert note.error == ErrorCause.INVALID_STREAM
    assert note.data[: len(stream_info)] == stream_info
    raw.close()
    server.close()
    client.close()
