"""Diameter on the bytes: the relay's hot path (RFC 6733 3, 4).

A relayed message is never fully decoded. `parse_header` reads the 20-byte
header; `scan` walks the top-level AVPs once, keeping only the few a relay needs
(Session-Id, Destination-Realm/Host, Origin-Host/Realm, Route-Record, Result-
Code) and validating every AVP length on the way; the patch functions rewrite the
hop-by-hop id, set the T flag and append a Route-Record on the bytes.

Problems raise `DiameterError` carrying the Result-Code and, where RFC 6733 7.5
asks for it, the Failed-AVP contents, so one boundary can turn them into answers.
"""

from __future__ import annotations

import os
import struct
from types import ModuleType
from typing import NamedTuple

from sigmw.diameter.codes import (
    AVP_MANDATORY,
    AVP_VENDOR,
    FLAG_ERROR,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    FLAG_RETRANSMIT,
    FLAGS_RESERVED,
    HEADER_LEN,
    Avp,
    ResultCode,
)

_HEADER = struct.Struct(">I I I I I")  # version|length, flags|code, app, hbh, e2e
_AVP_HEAD = struct.Struct(">I I")  # code, flags|length
_U32 = struct.Struct(">I")
MAX_MESSAGE = (1 << 24) - 1

_c: ModuleType | None
try:  # optional C versions of the walks below (setup.py builds them when it can)
    from sigmw.diameter import _speedups

    _c = _speedups
except ImportError:
    _c = None
if os.environ.get("SIGMW_NO_SPEEDUPS"):  # an operator's switch back to the reference code
    _c = None
c_speedups = _c
"""The C module, or None when it is not built or SIGMW_NO_SPEEDUPS is set."""

# The AVPs the relay reads; every other AVP is only length-checked and skipped.
_SESSION_ID = int(Avp.SESSION_ID)
_DEST_REALM = int(Avp.DESTINATION_REALM)
_DEST_HOST = int(Avp.DESTINATION_HOST)
_ORIGIN_HOST = int(Avp.ORIGIN_HOST)
_ORIGIN_REALM = int(Avp.ORIGIN_REALM)
_ROUTE_RECORD = int(Avp.ROUTE_RECORD)
_RESULT_CODE = int(Avp.RESULT_CODE)
_PROXY_INFO = int(Avp.PROXY_INFO)
_REDIRECT_HOST = int(Avp.REDIRECT_HOST)
_RARE = frozenset((_DEST_HOST, _ROUTE_RECORD, _RESULT_CODE, _PROXY_INFO, _REDIRECT_HOST))


class DiameterError(Exception):
    """A message sigmw must refuse, with the answer's Result-Code (RFC 6733 7.1)."""

    def __init__(self, result_code: int, message: str, failed_avp: bytes = b"") -> None:
        super().__init__(message)
        self.result_code = result_code
        self.failed_avp = failed_avp
        """Whole AVP(s) to put inside Failed-AVP (RFC 6733 7.5), or empty."""


class Header(NamedTuple):
    """A parsed Diameter header. A tuple: the C scan builds it without running Python."""

    version: int
    """Always 1 once parsed."""
    length: int
    """Message length in bytes, header included."""
    flags: int
    """Command flags: R, P, E, T and reserved bits."""
    code: int
    """Command code."""
    app_id: int
    """Application id."""
    hop_by_hop: int
    """Hop-by-hop identifier (rewritten by every relay)."""
    end_to_end: int
    """End-to-end identifier (kept end to end; duplicate detection)."""

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


def parse_header(data: bytes | bytearray | memoryview) -> Header:
    """The header of one whole message; the checks RFC 6733 asks of every receiver."""
    if len(data) < HEADER_LEN:
        raise DiameterError(ResultCode.INVALID_MESSAGE_LENGTH, f"{len(data)} bytes: no header")
    vlen, fcode, app, hbh, e2e = _HEADER.unpack_from(data)
    version, length, flags, code = vlen >> 24, vlen & 0xFFFFFF, fcode >> 24, fcode & 0xFFFFFF
    if version != 1:
        raise DiameterError(ResultCode.UNSUPPORTED_VERSION, f"version {version}")
    if length != len(data) or length % 4:
        raise DiameterError(
            ResultCode.INVALID_MESSAGE_LENGTH, f"length field {length}, message {len(data)} bytes"
        )
    if flags & FLAGS_RESERVED:
        raise DiameterError(ResultCode.INVALID_BIT_IN_HEADER, f"reserved flag bits {flags:#04x}")
    if flags & FLAG_REQUEST and flags & FLAG_ERROR:
        raise DiameterError(ResultCode.INVALID_HDR_BITS, "request with the E bit set")
    return Header(version, length, flags, code, app, hbh, e2e)


class Scanned(NamedTuple):
    """What a relay needs of one message, read in one pass over its top-level AVPs.
    A tuple, like Header: the C scan builds it directly."""

    header: Header
    """The parsed header."""
    session_id: bytes | None = None
    """Session-Id, when present."""
    destination_realm: bytes | None = None
    """Destination-Realm (requests)."""
    destination_host: bytes | None = None
    """Destination-Host (requests)."""
    origin_host: bytes | None = None
    """Origin-Host."""
    origin_realm: bytes | None = None
    """Origin-Realm."""
    route_records: tuple[bytes, ...] = ()
    """Every Route-Record, in order."""
    result_code: int | None = None
    """Result-Code (answers)."""
    proxy_infos: tuple[bytes, ...] = ()
    """Every Proxy-Info AVP, whole, in order: copied untouched into local answers."""
    redirect_hosts: tuple[bytes, ...] = ()
    """Redirect-Host URIs of a 3006 answer."""


if _c is not None:
    _c.register(Header, Scanned)  # the C scan returns these tuple types


def scan(data: bytes) -> Scanned:
    """Parse the header and walk the top-level AVPs, validating each length.

    The relay's hottest walk: done by the C speedups when they are built and the
    message is well formed, else by scan_py (the reference, and the one place that
    names what is wrong in a malformed message).
    """
    if _c is not None:
        found = _c.scan(data)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return scan_py(data)


def scan_py(data: bytes) -> Scanned:
    """scan in Python: the reference the C version must match."""
    header = parse_header(data)
    session = drealm = dhost = ohost = orealm = None
    end = len(data)
    off = HEADER_LEN
    unpack = _AVP_HEAD.unpack_from
    rare: dict[int, list[bytes]] = {}
    while off < end:
        if end - off < 8:
            raise DiameterError(
                ResultCode.INVALID_AVP_LENGTH, "truncated AVP header", _failed_avp_of(data, off, 8)
            )
        code, flen = unpack(data, off)
        length = flen & 0xFFFFFF
        head = 12 if flen & 0x80000000 else 8
        if length < head or off + length > end:
            raise DiameterError(
                ResultCode.INVALID_AVP_LENGTH,
                f"AVP {code} at offset {off}: length {length}",
                _failed_avp_of(data, off, head),
            )
        if head == 8:
            if code == _SESSION_ID:
                session = data[off + 8 : off + length]
            elif code == _DEST_REALM:
                drealm = data[off + 8 : off + length]
            elif code == _ORIGIN_HOST:
                ohost = data[off + 8 : off + length]
            elif code == _ORIGIN_REALM:
                orealm = data[off + 8 : off + length]
            elif code in _RARE:
                rare.setdefault(code, []).append(_rare_value(code, data, off, length))
        off += (length + 3) & ~3
    if off != end:
        raise DiameterError(ResultCode.INVALID_MESSAGE_LENGTH, "AVP padding runs past the end")
    dhost = rare[_DEST_HOST][-1] if _DEST_HOST in rare else None
    result = _U32.unpack(rare[_RESULT_CODE][-1])[0] if _RESULT_CODE in rare else None
    return Scanned(
        header,
        session,
        drealm,
        dhost,
        ohost,
        orealm,
        tuple(rare.get(_ROUTE_RECORD, ())),
        result,
        tuple(rare.get(_PROXY_INFO, ())),
        tuple(rare.get(_REDIRECT_HOST, ())),
    )


_EXPERIMENTAL_RESULT = int(Avp.EXPERIMENTAL_RESULT)
_EXPERIMENTAL_RESULT_CODE = 298
_VENDOR_BIT = 0x80


def result_code(data: bytes) -> int | None:
    """The answer's Result-Code, or the Experimental-Result-Code inside an
    Experimental-Result; None if it has neither or its AVPs cannot be walked.

    For metrics on relayed answers, which are otherwise not scanned: only AVP
    headers are read, and the walk stops at the first hit (the Result-Code
    usually follows the Session-Id). Vendor-specific AVPs never match.
    """
    if _c is not None:
        return _c.result_code(data)  # type: ignore[no-any-return]
    return result_code_py(data)


def result_code_py(data: bytes) -> int | None:
    """result_code in Python: the reference the C version must match."""
    return _result_in(data, HEADER_LEN, len(data), _RESULT_CODE)


def _result_in(data: bytes, off: int, end: int, wanted: int) -> int | None:
    while off + 8 <= end:
        code, word = _AVP_HEAD.unpack_from(data, off)
        length = word & 0xFFFFFF
        base = not word >> 24 & _VENDOR_BIT
        if length < (8 if base else 12) or off + length > end:
            return None
        if base and code == wanted and length == 12:
            return int(_U32.unpack_from(data, off + 8)[0])
        if base and code == _EXPERIMENTAL_RESULT and wanted == _RESULT_CODE:
            inner = _result_in(data, off + 8, off + length, _EXPERIMENTAL_RESULT_CODE)
            if inner is not None:
                return inner
        off += (length + 3) & ~3
    return None


def leading_session_id(data: bytes) -> tuple[bytes, bytes]:
    """(whole AVP, value) of a Session-Id that is the first AVP, as RFC 6733 8.8 asks;
    (b"", b"") if it is not there. Reads nothing else: for answers built without a scan."""
    if len(data) >= 28 and _U32.unpack_from(data, 20)[0] == _SESSION_ID:
        length = int.from_bytes(data[25:28], "big")
        if 8 < length <= len(data) - 20:
            return data[20 : 20 + ((length + 3) & ~3)], data[28 : 20 + length]
    return b"", b""


def busy_answer(request: bytes, tail: bytes) -> bytes:
    """An answer to `request` (at least a header) made of its header with R and T cleared,
    E set, the request's Session-Id when it is the first AVP, then `tail` (the AVPs saying
    why): the cheapest whole answer, for shedding under overload."""
    if _c is not None:
        return _c.busy_answer(request, tail)  # type: ignore[no-any-return]
    return busy_answer_py(request, tail)


def busy_answer_py(request: bytes, tail: bytes) -> bytes:
    """busy_answer in Python: the reference the C version must match."""
    if len(request) < HEADER_LEN:
        raise ValueError("shorter than a Diameter header")
    session, _ = leading_session_id(request)
    size = (HEADER_LEN + len(session) + len(tail)).to_bytes(3, "big")
    flags = bytes(((request[4] & FLAG_PROXIABLE) | FLAG_ERROR,))
    return b"".join((b"\x01", size, flags, request[5:20], session, tail))


def _rare_value(code: int, data: bytes, off: int, length: int) -> bytes:
    """The value scan keeps of a rare AVP: whole for Proxy-Info, else its data."""
    if code == _RESULT_CODE and length != 12:
        raise DiameterError(
            ResultCode.INVALID_AVP_LENGTH,
            f"Result-Code of length {length}",
            data[off : off + ((length + 3) & ~3)],
        )
    if code == _PROXY_INFO:
        return data[off : off + ((length + 3) & ~3)]
    return data[off + 8 : off + length]


def _failed_avp_of(data: bytes, off: int, head: int) -> bytes:
    """RFC 6733 7.1.5: the offending AVP's header (zero-padded if cut short) and a
    zero-filled payload, since its real extent is unknown. Its length field is set to
    what is sent: the received one would make the answer itself unparseable (the
    error text carries the bad length instead)."""
    raw = bytearray(data[off : off + head])
    raw += b"\0" * (head - len(raw) + 4)
    raw[5:8] = len(raw).to_bytes(3, "big")
    return bytes(raw)


# --- encoding and patching --------------------------------------------------------


def encode_avp(code: int, value: bytes, flags: int = AVP_MANDATORY, vendor: int = 0) -> bytes:
    """One AVP, padded to 4 bytes; the V flag follows `vendor`."""
    if vendor:
        head = struct.pack(">III", code, ((flags | AVP_VENDOR) << 24) | (12 + len(value)), vendor)
    else:
        head = struct.pack(">II", code, ((flags & ~AVP_VENDOR) << 24) | (8 + len(value)))
    return head + value + b"\0" * (-len(value) % 4)


def encode_u32_avp(code: int, value: int, flags: int = AVP_MANDATORY) -> bytes:
    return encode_avp(code, _U32.pack(value), flags)


def set_length(msg: bytearray) -> None:
    """Write the message's current size into its length field."""
    msg[1:4] = len(msg).to_bytes(3, "big")


def set_hop_by_hop(msg: bytearray, hop_by_hop: int) -> None:
    msg[12:16] = _U32.pack(hop_by_hop)


def set_retransmit(msg: bytearray) -> None:
    """The T flag: a request re-sent after a failover (RFC 6733 5.5.4)."""
    msg[4] |= FLAG_RETRANSMIT


def append_avp(msg: bytearray, avp: bytes) -> None:
    msg += avp
    set_length(msg)


def uri_host(uri: bytes) -> bytes:
    """The host of a DiameterURI (RFC 6733 4.3.1), e.g. aaa://hss1.net:3868;transport=sctp."""
    rest = uri.partition(b"://")[2] or uri
    return rest.split(b";", 1)[0].rpartition(b":")[0] or rest.split(b";", 1)[0]


def answer_header(request: Header, flags: int) -> bytearray:
    """The header of an answer to `request`: R cleared, same code, app and ids."""
    return bytearray(
        _HEADER.pack(
            (1 << 24) | HEADER_LEN,
            (flags << 24) | request.code,
            request.app_id,
            request.hop_by_hop,
            request.end_to_end,
        )
    )
