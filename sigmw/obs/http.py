"""A small HTTP/1.1 server on the daemon's event loop, for /metrics, /healthz,
/readyz and the admin /status.

On the loop rather than prometheus-client's thread: a scrape then reads the
daemon's state between two events, never in the middle of one. GET and HEAD
only; one request per connection; requests are bounded in size and time, so a
stuck or hostile client costs nothing but its own socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("sigmw")
MAX_REQUEST = 8192
READ_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64
"""Open at once; beyond it a connection is closed unanswered (a flood of idle
clients must not pile up sockets in the relay's process)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Response]
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpServer:
    """Routes exact paths (query strings ignored) to handlers."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests = 0
        self.errors = 0
        self.refused = 0
        self._open = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self._open += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            response, method = self._answer(head)
            writer.write(_render(response, include_body=method != "HEAD"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.write(_render(Response(400, b"bad request\n"), include_body=True))
        except (ConnectionError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()

    def _answer(self, head: bytes) -> tuple[Response, str]:
        self.requests += 1
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response(400, b"bad request\n"), ""
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n"), method
        handler = self.routes.get(target)
        if handler is None:
            known = " ".join(sorted(self.routes))
            return Response(404, f"not found; try {known}\n".encode()), method
        try:
            return handler(), method
        except Exception:  # a bug in a handler must not take the daemon down
            self.errors += 1
            log.exception("http handler for %s failed", target)
            return Response(500, b"internal error\n"), method


def _render(r: Response, include_body: bool) -> bytes:
    head = (
        f"HTTP/1.1 {r.status} {REASONS.get(r.status, 'Error')}\r\n"
        f"Content-Type: {r.content_type}\r\n"
        f"Content-Length: {len(r.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + (r.body if include_body else b"")
