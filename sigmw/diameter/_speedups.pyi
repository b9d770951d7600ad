# Types of the C module built from _speedups.c, _hotpath.c, _shed.c and _shedsend.c.
from collections.abc import Callable
from typing import Any

from sigmw.core.histogram import Histogram
from sigmw.diameter.wire import Header, Scanned

def register(header: type[Header], scanned: type[Scanned], /) -> None: ...
def scan(data: bytes, /) -> Scanned | None: ...
def result_code(data: bytes | bytearray | memoryview, /) -> int | None: ...
def split(
    source: bytes | bytearray | memoryview, max_size: int, out: list[bytes], /
) -> tuple[int, int]: ...
def busy_answer(request: bytes, tail: bytes, /) -> bytes: ...

# _hotpath.c: the relay's usual request and answer.
def crc32(data: bytes, /) -> int: ...

class Pending:
    origin: str
    origin_hbh: int
    target: str
    request: bytes
    meta: Scanned
    deadline: float
    received: float
    resent: bool
    redirected: bool
    def __init__(
        self,
        origin: str,
        origin_hbh: int,
        target: str,
        request: bytes,
        meta: Scanned,
        deadline: float,
        received: float,
        resent: bool = False,
        redirected: bool = False,
    ) -> None: ...

class Peer:
    host: bytes
    outbound: int
    usable: bool
    pending: int
    route_record: bytes
    def __init__(
        self,
        host: bytes,
        outbound: int,
        usable: bool = True,
        pending: int = 0,
        route_record: bytes = b"",
    ) -> None: ...

class RelayHot:
    next_hbh: int
    cache: dict[Any, Any]
    relayed_requests: int
    relayed_answers: int
    def __init__(
        self,
        pending: dict[int, Pending],
        peers: dict[str, Peer],
        cache: dict[Any, Any],
        requests: dict[int, int],
        answers: dict[tuple[int, int, str], int],
        latency: Histogram,
        send: Callable[[str, bytes, int], Any],
        me: bytes,
        tx: float,
        max_pending: int,
        first_hbh: int,
        follow_redirects: bool,
    ) -> None: ...
    def request(self, origin: str, data: bytes, now: float, /) -> list[Any] | None: ...
    def answer(self, peer: str, data: bytes, now: float, /) -> list[Any] | None: ...
    def take_hbh(self) -> int: ...

# _shed.c: the SCTP shedder in bulk; _shedsend.c: the thread that sends its 3004s.
def shed_sctp(
    reads: list[Any],
    start: int,
    known: dict[int, int],
    cmsgs: dict[tuple[int, int, int], list[tuple[int, int, bytes]]],
    counts: dict[Any, list[int]],
    sender: ShedSender,
    answers: dict[tuple[int, int, str], int],
    tail: bytes,
    /,
) -> tuple[int, int, int]: ...
def recv_shed(
    fd: int,
    want: int,
    slot: int,
    room: tuple[int, int, float, int],
    known: dict[int, int] | None,
    learn: Callable[[int], int],
    cmsgs: dict[tuple[int, int, int], list[tuple[int, int, bytes]]],
    counts: dict[Any, list[int]],
    sender: ShedSender,
    answers: dict[tuple[int, int, str], int],
    tail: bytes,
    /,
) -> tuple[list[Any], int, int, int]: ...

class ShedSender:
    def __init__(self, fd: int, limit: int) -> None: ...
    def counts(self) -> tuple[int, int, int]: ...
    def drain(self, timeout: float, /) -> bool: ...
    def stop(self) -> None: ...
    def take(self) -> list[tuple[int, bytes, bytes]]: ...
