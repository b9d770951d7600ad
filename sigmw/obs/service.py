"""The daemon's observability endpoints: the metrics listener (/metrics, /healthz,
/readyz) and the admin listener (/status, and the health checks again)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from sigmw.core.errors import SigmwError
from sigmw.obs import snapshot
from sigmw.obs.collector import SigmwCollector
from sigmw.obs.events import EventCounts
from sigmw.obs.http import HttpServer, Response

if TYPE_CHECKING:
    from sigmw.config.model import HostPort
    from sigmw.io.daemon import Daemon


class ListenError(SigmwError):
    def __init__(self, what: str, where: HostPort, exc: OSError) -> None:
        super().__init__(f"cannot listen for {what} on {where.host} port {where.port}: {exc}")


class Observability:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SigmwCollector(self._read))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
        health = {"/healthz": self.healthz, "/readyz": self.readyz}
        self.metrics_server = HttpServer({"/metrics": self.metrics, **health})
        self.admin_server = HttpServer({"/status": self.status, **health})
        self.ports: dict[str, int] = {}

    async def start(self, metrics: HostPort, admin: HostPort) -> None:
        for what, server, where in (
            ("metrics", self.metrics_server, metrics),
            ("admin", self.admin_server, admin),
        ):
            try:
                self.ports[what] = await server.start(where.host, where.port)
            except OSError as exc:
                self.close()
                raise ListenError(what, where, exc) from None
            self.daemon.emit(f"{what}_listening", address=where.host, port=self.ports[what])

    def close(self) -> None:
        self.metrics_server.close()
        self.admin_server.close()

    def _read(self) -> tuple[snapshot.Snapshot, EventCounts]:
        d = self.daemon
        return snapshot.take(d, d.loop.time(), time.time()), d.events

    # --- handlers ----------------------------------------------------------------------

    def metrics(self) -> Response:
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def healthz(self) -> Response:
        return Response(200, b"ok\n")

    def readyz(self) -> Response:
        up, peers, needed = snapshot.readiness(self.daemon)  # probes: no full snapshot
        text = f"{up} of {peers} peers up, {needed} needed\n".encode()
        return Response(200 if up >= needed else 503, text)

    def status(self) -> Response:
        snap, _ = self._read()
        body = json.dumps(snap.to_json(), indent=1).encode() + b"\n"
        return Response(200, body, "application/json")
