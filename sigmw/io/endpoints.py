"""What the daemon needs from an endpoint, whichever transport carries it.

SctpEndpoint (one-to-many SCTP socket) and TcpEndpoint (Diameter over TCP) both
satisfy `Endpoint`; `endpoint_class` picks the one a listener or peer asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from sigmw.config.model import Transport
from sigmw.io.endpoint import Association, SctpEndpoint
from sigmw.io.tcp import TcpEndpoint
from sigmw.io.traffic import Traffic
from sigmw.io.transport import Received
from sigmw.sctp.addresses import Address
from sigmw.sctp.options import SctpTuning
from sigmw.sctp.structs import PathInfo


class Endpoint(Protocol):
    """Associations (SCTP) or connections (TCP) to peers, as the daemon uses them."""

    traffic: Traffic
    """Messages and bytes per association, by direction, PPID and stream."""

    @property
    def associations(self) -> Mapping[int, Association]:
        """Live associations by id, with their negotiated stream counts."""
        ...

    @property
    def port(self) -> int: ...

    def start_connect(self, remote: list[Address]) -> int:
        """Begin connecting; COMM_UP or CANT_STR_ASSOC arrives via recv()."""
        ...

    async def recv(self) -> Received:
        """Next message or notification; raises ConnectionError once closed."""
        ...

    def backlog(self) -> int:
        """Items received and not yet read."""
        ...

    def recv_nowait(self) -> Received | None:
        """The next queued item without waiting, or None."""
        ...

    async def send(self, data: bytes, assoc_id: int, stream: int = 0, ppid: int = 0) -> None: ...

    def try_send(self, data: bytes, assoc_id: int, stream: int = 0, ppid: int = 0) -> bool:
        """Send without waiting if possible; False: nothing was sent, use send()."""
        ...

    def defer(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """For the direct hot path: work that must wait, done by the reader in order."""
        ...

    def queued(self, assoc_id: int) -> int:
        """Messages waiting for room to send (backpressure)."""
        ...

    async def shutdown(self, assoc_id: int) -> None: ...

    async def abort(self, assoc_id: int, reason: bytes = b"") -> None: ...

    def peer_addresses(self, assoc_id: int) -> list[Address]: ...

    def local_addresses(self, assoc_id: int) -> list[Address]: ...

    def paths(self, assoc_id: int) -> list[PathInfo]: ...

    def apply_tuning(self, tuning: SctpTuning, assoc_id: int = 0) -> None: ...

    def read_tuning(self, assoc_id: int) -> SctpTuning: ...

    def set_primary(self, assoc_id: int, address: Address) -> None: ...

    def close(self) -> None: ...


def endpoint_class(transport: Transport) -> type[SctpEndpoint] | type[TcpEndpoint]:
    """The endpoint type for a transport; both have open() and open_now() alike."""
    return TcpEndpoint if transport is Transport.TCP else SctpEndpoint
