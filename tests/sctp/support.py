"""Helpers for tests on a real kernel SCTP stack: waiting for items, crafting packets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.transport import Message, Received, SctpTransport
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange

T = TypeVar("T")


async def wait_for(
    transport: SctpTransport,
    kind: type[T],
    match: Callable[[T], bool] = lambda _: True,
    timeout: float = 20.0,
    seen: list[Received] | None = None,
) -> T:
    """Read items until one of `kind` matches; others are dropped (or kept in `seen`)."""
    async with asyncio.timeout(timeout):
        while True:
            item = await transport.recv()
            if isinstance(item, kind) and match(item):
                return item
            if seen is not None:
                seen.append(item)


async def next_message(transport: SctpTransport, timeout: float = 20.0) -> Message:
    return await wait_for(transport, Message, timeout=timeout)


async def assoc_event(
    transport: SctpTransport, state: AssocChangeState, timeout: float = 20.0
) -> AssocChange:
    return await wait_for(transport, AssocChange, lambda n: n.state is state, timeout)


# --- raw SCTP packets (to make a peer send us an ERROR chunk) -------------------

_CRC32C_TABLE: list[int] = []
for _n in range(256):
    _crc = _n
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x82F63B78 if _crc & 1 else _crc >> 1
    _CRC32C_TABLE.append(_crc)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sctp_packet(src_port: int, dst_port: int, vtag: int, chunks: bytes) -> bytes:
    """An SCTP common header plus chunks, with the CRC32c checksum (RFC 9260 3.1)."""
    head = struct.pack("!HHII", src_port, dst_port, vtag, 0)
    checksum = crc32c(head + chunks)
    return head[:8] + struct.pack("<I", checksum) + chunks


def error_chunk(cause_code: int, info: bytes) -> bytes:
    cause = struct.pack("!HH", cause_code, 4 + len(info)) + info
    cause += b"\0" * (-len(cause) % 4)
    return struct.pack("!BBH", 9, 0, 4 + len(cause)) + cause


def init_tags(raw_sock: socket.socket, timeout: float = 10.0) -> dict[int, int]:
    """Read copies of SCTP packets on a raw socket; map each INIT/INIT-ACK's source
    port to the Initiate Tag it announced (the tag its peer must put on packets)."""
    raw_sock.settimeout(timeout)
    tags: dict[int, int] = {}
    while len(tags) < 2:
        packet = raw_sock.recv(65535)
        ihl = (packet[0] & 0x0F) * 4
        sport = struct.unpack_from("!H", packet, ihl)[0]
        chunk_type = packet[ihl + 12]
        if chunk_type in (1, 2):  # INIT, INIT ACK
            tags[sport] = struct.unpack_from("!I", packet, ihl + 16)[0]
    return tags


class Numbered:
    """Numbered messages from one endpoint to another, collected at the far end:
    `received == list(range(sent))` means none lost, none twice, all in order."""

    def __init__(
        self,
        sender: SctpEndpoint,
        assoc_id: int,
        receiver: SctpTransport,
        ppid: int,
        stream: int = 1,
        gap: float = 0.01,
    ) -> None:
        self.sender, self.assoc_id, self.ppid, self.stream, self.gap = (
            sender,
            assoc_id,
            ppid,
            stream,
            gap,
        )
        self.sent = 0
        self.received: list[int] = []
        self.other: list[Received] = []  # notifications seen at the receiver
        self._drain = asyncio.create_task(self._collect(receiver))

    async def _collect(self, receiver: SctpTransport) -> None:
        while True:
            item = await receiver.recv()
            if isinstance(item, Message):
                self.received.append(int(item.data))
            else:
                self.other.append(item)

    async def send_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await self.sender.send(b"%d" % self.sent, self.assoc_id, self.stream, self.ppid)
            self.sent += 1
            await asyncio.sleep(self.gap)

    async def settle(self, timeout: float = 30) -> None:
        """Wait until everything sent has arrived (or fail after timeout)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < self.sent:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self._drain.cancel()
