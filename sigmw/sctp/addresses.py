"""Socket addresses as the SCTP API packs them (sockaddr_in / sockaddr_in6 / storage)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

Address = tuple[str, int]
"""(host, port): an IPv4 or IPv6 literal and a port."""

SOCKADDR_STORAGE_SIZE = 128
_SOCKADDR_IN = struct.Struct("=HH4s8x")  # family, port (network order), addr
_SOCKADDR_IN6 = struct.Struct("=HHI16sI")  # family, port, flowinfo, addr, scope id


class AddressError(ValueError):
    """An address that is not an IPv4/IPv6 literal, or an unknown family on the wire."""


def family_of(host: str) -> int:
    """AF_INET or AF_INET6 for an address literal."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError as exc:
        raise AddressError(f"not an IP address: {host!r}") from exc


def pack_sockaddr(address: Address) -> bytes:
    """Pack (host, port) into a sockaddr_in or sockaddr_in6."""
    host, port = address
    if family_of(host) == socket.AF_INET:
        return _SOCKADDR_IN.pack(
            socket.AF_INET, socket.htons(port), socket.inet_pton(socket.AF_INET, host)
        )
    return _SOCKADDR_IN6.pack(
        socket.AF_INET6, socket.htons(port), 0, socket.inet_pton(socket.AF_INET6, host), 0
    )


def pack_sockaddrs(addresses: Iterable[Address]) -> bytes:
    """Pack addresses back to back, as bindx/connectx and the addrs lists expect."""
    return b"".join(pack_sockaddr(a) for a in addresses)


def pack_storage(address: Address | None) -> bytes:
    """A sockaddr_storage (128 bytes): the address, or all zeroes for 'none'."""
    raw = b"" if address is None else pack_sockaddr(address)
    return raw.ljust(SOCKADDR_STORAGE_SIZE, b"\0")


def unpack_sockaddr(raw: bytes, offset: int = 0) -> tuple[Address | None, int]:
    """Decode one sockaddr at offset: (address or None if AF_UNSPEC, its length)."""
    (family,) = struct.unpack_from("=H", raw, offset)
    if family == socket.AF_INET:
        _, port, addr = _SOCKADDR_IN.unpack_from(raw, offset)
        return (socket.inet_ntop(socket.AF_INET, addr), socket.ntohs(port)), _SOCKADDR_IN.size
    if family == socket.AF_INET6:
        _, port, _, addr, _ = _SOCKADDR_IN6.unpack_from(raw, offset)
        return (socket.inet_ntop(socket.AF_INET6, addr), socket.ntohs(port)), _SOCKADDR_IN6.size
    if family == socket.AF_UNSPEC:
        return None, SOCKADDR_STORAGE_SIZE
    raise AddressError(f"unknown address family {family}")


def unpack_sockaddr_list(raw: bytes, count: int) -> list[Address]:
    """Decode count packed sockaddrs (SCTP_GET_PEER_ADDRS / SCTP_GET_LOCAL_ADDRS)."""
    out: list[Address] = []
    offset = 0
    for _ in range(count):
        address, size = unpack_sockaddr(raw, offset)
        if address is not None:
            out.append(address)
        offset += size
    return out
