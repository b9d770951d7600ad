"""Diameter message framing on a byte stream (TCP): bytes in, whole messages out.

Sans-IO. Every message starts with the 20-byte header of RFC 6733 3:
version(1) length(3) flags(1) code(3) application-id(4) hop-by-hop(4) end-to-end(4);
`length` counts the whole message, header included, and is a multiple of 4.

This is the hot path of a relay, so the work per `feed` is linear in the bytes
fed: while nothing is buffered, messages are sliced straight out of the caller's
bytes; only the unfinished tail is kept, and it is moved at most once.
A stream cannot resynchronise after a bad header (there is no marker to search
for), so the first error is final: the framer refuses further input.
"""

from __future__ import annotations

import struct

from sigmw.diameter.codes import HEADER_LEN, ResultCode
from sigmw.diameter.wire import DiameterError
from sigmw.diameter.wire import c_speedups as _c

HEADER_SIZE = HEADER_LEN
VERSION = 1
DEFAULT_MAX_SIZE = 65536
DIAMETER_UNSUPPORTED_VERSION = int(ResultCode.UNSUPPORTED_VERSION)
DIAMETER_INVALID_MESSAGE_LENGTH = int(ResultCode.INVALID_MESSAGE_LENGTH)
_WORD = struct.Struct("!I")  # version << 24 | length


class FramingError(DiameterError):
    """The stream carries something that is not a Diameter message; carries its Result-Code."""

    def __init__(
        self,
        result_code: int,
        header: bytes,
        message: str,
        data: bytes = b"",
        framed: list[bytes] | None = None,
    ) -> None:
        super().__init__(result_code, message)
        self.result_code = result_code
        """5011 DIAMETER_UNSUPPORTED_VERSION or 5015 DIAMETER_INVALID_MESSAGE_LENGTH."""
        self.header = header
        """The 20 header bytes of the offending message (hop-by-hop, end-to-end for an answer)."""
        self.data = data or header
        """What was read of the offending message: its header, and for a bad version the rest
        of its declared length as far as it had arrived."""
        self.framed = framed if framed is not None else []
        """Whole messages framed before the error in the same `feed` (deliver them first)."""


def check_header(header: bytes | bytearray | memoryview, max_size: int) -> FramingError | None:
    """The error in a 20-byte header, or None if it frames a plausible message."""
    word = _WORD.unpack_from(header)[0]
    version, length = word >> 24, word & 0xFFFFFF
    if version != VERSION:
        code, why = DIAMETER_UNSUPPORTED_VERSION, f"version {version}, only 1 is defined"
    elif length < HEADER_SIZE:
        code, why = DIAMETER_INVALID_MESSAGE_LENGTH, f"length {length} is below the header's 20"
    elif length % 4:
        code, why = DIAMETER_INVALID_MESSAGE_LENGTH, f"length {length} is not a multiple of 4"
    elif length > max_size:
        code, why = DIAMETER_INVALID_MESSAGE_LENGTH, f"length {length} is above {max_size}"
    else:
        return None
    return FramingError(code, bytes(header[:HEADER_SIZE]), f"bad Diameter header: {why}")


class DiameterFramer:
    """Splits a TCP byte stream into whole Diameter messages."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < HEADER_SIZE:
            raise ValueError(f"max_size {max_size} is below the 20-byte header")
        self.max_size = max_size
        self.error: FramingError | None = None
        """The framing error that ended this stream, if any."""
        self.copied = 0
        """Bytes moved into or within the internal buffer (the cost model the tests check)."""
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message held until the rest arrives."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Every whole message now available, in order; raises FramingError on a bad header."""
        if self.error is not None:
            raise FramingError(
                self.error.result_code,
                self.error.header,
                f"input refused after a framing error ({self.error})",
            )
        if self._buf:
            self._buf += data
            self.copied += len(data)
            source: bytes | bytearray | memoryview = self._buf
        else:
            source = data
        out: list[bytes] = []
        end = self._split(source, out)
        self._keep(source, end)
        return out

    def _split(self, source: bytes | bytearray | memoryview, out: list[bytes]) -> int:
        """Append each whole message of `source` to `out`; the offset where the rest starts."""
        if _c is not None:
            end, bad = _c.split(source, self.max_size, out)
            if bad >= 0:
                with memoryview(source) as view:
                    self._fail(view, bad, out)
            return int(end)
        return self._split_py(source, out)

    def _split_py(self, source: bytes | bytearray | memoryview, out: list[bytes]) -> int:
        """_split in Python: the reference the C version must match."""
        view = memoryview(source)
        total, pos, max_size, unpack = len(view), 0, self.max_size, _WORD.unpack_from
        try:
            while total - pos >= HEADER_SIZE:
                word = unpack(view, pos)[0]
                length = word & 0xFFFFFF
                if word >> 24 != VERSION or length & 3 or length > max_size or length < 20:
                    self._fail(view, pos, out)
                if total - pos < length:
                    break
                if pos == 0 and length == total and isinstance(source, bytes):
                    out.append(source)  # the whole feed is one message: no copy
                else:
                    out.append(bytes(view[pos : pos + length]))
                pos += length
        finally:
            view.release()
        return pos

    def _fail(self, view: memoryview, pos: int, framed: list[bytes]) -> None:
        error = check_header(view[pos : pos + HEADER_SIZE], self.max_size)
        assert error is not None  # _split calls this only for a header it rejected
        declared = _WORD.unpack_from(view, pos)[0] & 0xFFFFFF
        # Only a bad version leaves the length trustworthy; else the header is all we know.
        plausible = error.result_code == DIAMETER_UNSUPPORTED_VERSION and not declared % 4
        keep = declared if plausible and HEADER_SIZE <= declared <= self.max_size else HEADER_SIZE
        error.data = bytes(view[pos : pos + keep])
        error.framed = framed
        self.error = error
        self._buf = bytearray()
        raise error

    def _keep(self, source: bytes | bytearray | memoryview, end: int) -> None:
        """Hold the unfinished tail; the buffer is drained from its front (no copy in CPython)."""
        rest = len(source) - end
        if source is self._buf:
            if end:
                del self._buf[:end]
                self.copied += rest
        elif rest:
            self._buf = bytearray(source[end:])
            self.copied += rest
