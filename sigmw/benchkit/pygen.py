"""The independent check: a plain Python Diameter generator (closed loop, TCP or SCTP).

    python -m sigmw.benchkit.pygen ADDRESS PORT INFLIGHT DURATION WARMUP [--sctp]

Much slower than diam_load, but written apart from it: when both agree on a relay's
throughput (as far as this one can push it), the C generator's figures are of the
right magnitude. TCP runs on asyncio; SCTP on one blocking one-to-one socket, a
message a system call each way (PPID 46, CER on stream 0, requests on stream 1),
with nothing but the standard library. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sigmw.benchkit.tools import APP, CLIENT_REALM, SERVER_REALM, BenchError, Json

_HDR = struct.Struct("!IIIII")
_FLAG_R, _FLAG_P = 0x80, 0x40


def avp(code: int, data: bytes) -> bytes:
    """A vendor-less AVP with the M flag, padded to 4 bytes."""
    return struct.pack("!II", code, 0x40 << 24 | (8 + len(data))) + data + bytes(-len(data) % 4)


def avp_u32(code: int, value: int) -> bytes:
    return avp(code, struct.pack("!I", value))


def diameter_message(flags: int, cmd: int, app: int, hbh: int, e2e: int, avps: bytes) -> bytes:
    """Header (version 1, flags such as 0x80 request) followed by encoded AVPs."""
    return _HDR.pack(1 << 24 | (20 + len(avps)), flags << 24 | cmd, app, hbh, e2e) + avps


def result_code(msg: bytes) -> int:
    """The top-level Result-Code of a message; 0 when it has none."""
    off = 20
    while off + 12 <= len(msg):
        code, flags_len = struct.unpack_from("!II", msg, off)
        if code == 268 and not flags_len & 0x80000000:
            return int(struct.unpack_from("!I", msg, off + 8)[0])
        off += ((flags_len & 0xFFFFFF) + 3) & ~3
    return 0


@dataclass
class PyGen:
    """Request building and answer matching for one connection."""

    identity: bytes
    seq: int = 0
    outstanding: set[int] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    mismatches: int = 0

    def ident_avps(self) -> bytes:
        return avp(264, self.identity) + avp(296, CLIENT_REALM.encode())

    def cer(self) -> bytes:
        avps = self.ident_avps() + avp(257, b"\0\1" + bytes([10, 201, 0, 1]))
        avps += avp_u32(266, 0) + avp(269, b"sigmw-bench-pygen") + avp_u32(258, APP)
        return diameter_message(_FLAG_R, 257, 0, 0, 0, avps)

    def request(self) -> bytes:
        self.seq += 1
        self.outstanding.add(self.seq)
        session = b"%s;py;%d" % (self.identity, self.seq // 4)
        avps = avp(263, session) + avp_u32(258, APP) + self.ident_avps()
        avps += avp(283, SERVER_REALM.encode()) + avp_u32(416, 1) + avp_u32(415, self.seq % 4)
        return diameter_message(_FLAG_R | _FLAG_P, 272, APP, self.seq, self.seq, avps)

    def on_message(self, msg: bytes, counted: bool) -> bytes:
        """Handle one message; returns what to send back (a DWA/DPA or the next request)."""
        _, flags_cmd, app, hbh, e2e = _HDR.unpack_from(msg)
        cmd = flags_cmd & 0xFFFFFF
        if flags_cmd >> 24 & _FLAG_R:  # the relay's DWR or DPR
            return diameter_message(0, cmd, app, hbh, e2e, avp_u32(268, 2001) + self.ident_avps())
        if cmd != 272:
            return b""
        if e2e not in self.outstanding or hbh != e2e:
            self.mismatches += 1
            return b""
        self.outstanding.discard(e2e)
        if counted:
            self.answered += 1
            code = str(result_code(msg))
            self.codes[code] = self.codes.get(code, 0) + 1
        return self.request()


async def pygen(address: str, port: int, inflight: int, duration: float, warmup: float) -> Json:
    """Keep `inflight` requests outstanding on one connection; count answers after warmup."""
    reader, writer = await asyncio.open_connection(address, port)
    gen = PyGen(f"gen-1.{CLIENT_REALM}".encode())
    writer.write(gen.cer())
    header = await asyncio.wait_for(reader.readexactly(20), 5)
    cea = header + await reader.readexactly((int.from_bytes(header[1:4], "big")) - 20)
    if result_code(cea) != 2001:
        raise BenchError(f"CER refused ({result_code(cea)})")
    writer.write(b"".join(gen.request() for _ in range(inflight)))
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end, buf, total = start + duration, b"", 0
    while (now := loop.time()) < end:
        buf += await asyncio.wait_for(reader.read(262144), 5)
        out, off = [], 0
        while len(buf) - off >= 20 and len(buf) - off >= (
            n := int.from_bytes(buf[off + 1 : off + 4])
        ):
            out.append(gen.on_message(buf[off : off + n], now >= start))
            off, total = off + n, total + 1
        buf = buf[off:]
        writer.write(b"".join(out))
    writer.write(diameter_message(_FLAG_R, 282, 0, 0, 0, gen.ident_avps() + avp_u32(273, 0)))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 1)
    writer.close()
    return _summary(gen, inflight, duration, total)


def _summary(gen: PyGen, inflight: int, duration: float, total: int) -> Json:
    return {
        "tool": "pygen",
        "inflight": inflight,
        "duration_s": duration,
        "throughput": gen.answered / duration,
        "goodput": gen.codes.get("2001", 0) / duration,
        "answered": gen.answered,
        "answered_total": total,
        "mismatches": gen.mismatches,
        "result_codes": gen.codes,
    }


# Linux SCTP, from <netinet/sctp.h> (the socket module does not export them).
_SOL_SCTP, _SCTP_SNDINFO = 132, 2
_SNDINFO = struct.Struct("=HHIII")  # sid, flags, ppid (network order), context, assoc id
_DIAMETER_PPID = 46


def _sctp_send(sock: socket.socket, msg: bytes, stream: int) -> None:
    """One Diameter message, one SCTP message: PPID 46 on `stream`."""
    info = _SNDINFO.pack(stream, 0, socket.htonl(_DIAMETER_PPID), 0, 0)
    sock.sendmsg([msg], [(_SOL_SCTP, _SCTP_SNDINFO, info)])


def _sctp_recv(sock: socket.socket) -> bytes:
    """The next whole message (a one-to-one socket returns one message a call)."""
    parts = []
    while True:
        data, _, flags, _ = sock.recvmsg(65536)
        if not data:
            raise BenchError("the relay closed the association")
        parts.append(data)
        if flags & socket.MSG_EOR:
            return b"".join(parts)


def pygen_sctp(address: str, port: int, inflight: int, duration: float, warmup: float) -> Json:
    """pygen's closed loop over one SCTP association."""
    gen = PyGen(f"gen-1.{CLIENT_REALM}".encode())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP) as sock:
        sock.settimeout(5)
        sock.connect((address, port))
        _sctp_send(sock, gen.cer(), 0)
        cea = _sctp_recv(sock)
        if result_code(cea) != 2001:
            raise BenchError(f"CER refused ({result_code(cea)})")
        for _ in range(inflight):
            _sctp_send(sock, gen.request(), 1)
        start = time.monotonic() + warmup
        end, total = start + duration, 0
        while (now := time.monotonic()) < end:
            reply = gen.on_message(_sctp_recv(sock), now >= start)
            total += 1
            if reply:
                _sctp_send(sock, reply, 1 if reply[4] & _FLAG_R else 0)  # answers on 0
        dpr = diameter_message(_FLAG_R, 282, 0, 0, 0, gen.ident_avps() + avp_u32(273, 0))
        with contextlib.suppress(OSError):
            _sctp_send(sock, dpr, 0)
    return _summary(gen, inflight, duration, total)


def main(args: Sequence[str]) -> int:
    address, port, inflight, duration, warmup, *flags = args
    values = (address, int(port), int(inflight), float(duration), float(warmup))
    sctp = flags == ["--sctp"]
    result = pygen_sctp(*values) if sctp else asyncio.run(pygen(*values))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
