"""`sigmw run`: the asyncio daemon. It performs the peer manager's decisions on
real sockets and feeds the kernel's notifications back; it routes raw messages
by PPID. One event loop; one SCTP endpoint per listener and per connect peer."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sigmw.config.loader import ConfigError, load_config
from sigmw.config.model import Config, Peer, Protocol, SctpParams
from sigmw.core.errors import SigmwError
from sigmw.diameter import wire
from sigmw.diameter.codes import ACCEPTED_PPIDS, SHED_BACKLOG, TICK_S
from sigmw.io import transport
from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.endpoints import Endpoint, endpoint_class
from sigmw.io.handlers import Outgoing, ProtocolHandler
from sigmw.io.kernel import kernel_advice, read_proc_sys
from sigmw.io.tcp import TcpEndpoint
from sigmw.io.transport import ENDED, Deferred, Message, Received
from sigmw.obs.events import EventCounts, Totals
from sigmw.obs.kernel import KernelReading
from sigmw.obs.service import Observability
from sigmw.peers import actions as act
from sigmw.peers.lifecycle import State
from sigmw.peers.manager import PeerManager
from sigmw.routing.ppid import PpidRouter
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange, PeerAddrChange
from sigmw.sctp.options import InitParams, SctpTuning, tuning_differences

if TYPE_CHECKING:
    from sigmw.io.diameter import DiameterService

log = logging.getLogger("sigmw")
DRAIN_S = 5.0  # SIGTERM: how long associations get to shut down gracefully
READOUT_S = 1.0  # path read-out period (state, srtt) for failover decisions
UNROUTED_LOG_EVERY_S = 10.0


def emit(event: str, /, **fields: object) -> None:
    """One structured log line (JSON) per state change."""
    log.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


def tuning_of(s: SctpParams, endpoint: bool) -> SctpTuning:
    """The SCTP settings of a peer or listener; INIT applies only to the endpoint."""
    init = (
        InitParams(s.streams.outbound, s.streams.inbound, s.init.max_attempts, s.init.max_timeout)
        if endpoint
        else None
    )
    return SctpTuning(
        rto_initial_ms=s.rto.initial,
        rto_min_ms=s.rto.min,
        rto_max_ms=s.rto.max,
        assoc_max_retrans=s.assoc_max_retrans,
        path_max_retrans=s.path_max_retrans,
        pf_threshold=s.potentially_failed_threshold,
        hb_interval_ms=s.heartbeat.interval,
        hb_enabled=s.heartbeat.enabled,
        sack_delay_ms=s.sack_delay,
        nodelay=s.nodelay,
        init=init,
        receive_buffer=(s.receive_buffer or None) if endpoint else None,
        send_buffer=(s.send_buffer or None) if endpoint else None,
    )


class Daemon:
    def __init__(
        self,
        config_path: str,
        config: Config,
        handlers: dict[Protocol, ProtocolHandler] | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.manager = PeerManager(config, random.random)
        self.router = PpidRouter.from_config(config.ppid_routes)
        self.listeners: dict[str, Endpoint] = {}
        self.dialers: dict[str, Endpoint] = {}  # one endpoint per connect-role peer
        self.where: dict[str, tuple[Endpoint, int]] = {}  # peer -> (endpoint, assoc)
        self.accepted: dict[tuple[str, int], str] = {}  # (listener, assoc) -> peer
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.stop_requested = asyncio.Event()
        self._unrouted_logged: dict[int, float] = {}
        self.forward_failed = 0
        self.handlers = handlers or {}
        self.diameter = (
            _diameter_service(config, self, self.loop.time) if _speaks_diameter(config) else None
        )
        self._listener_of: dict[Endpoint, str] = {}
        self._diameter_eps: set[Endpoint] = set()  # listeners and dialers that speak Diameter
        # What the metrics and /status read (sigmw.obs), fed from events, never from a core:
        self.started_at = time.time()
        self.events = EventCounts()
        self.totals = Totals()
        self.kernel: dict[str, KernelReading] = {}  # peer -> last SCTP read-out
        self.observability: Observability | None = None

    def min_peers_up(self) -> int:
        """Peers that must be up for /readyz (configured, or 1 if any peer is)."""
        wanted = self.config.readiness.min_peers_up
        return min(1, len(self.config.peers)) if wanted is None else wanted

    # --- life cycle -----------------------------------------------------------------

    async def run(self, install_signals: bool = True) -> int:
        # Peers get their first state before any listener can take a CER: a client
        # dialling in during start-up is then adopted, not started after it is up.
        self.perform(self.manager.start(self.loop.time()))
        for lst in self.config.listen:
            addrs = [(a, lst.port) for a in lst.addresses]
            opener = endpoint_class(lst.transport)  # TcpEndpoint for transport: tcp
            ep: Endpoint = await opener.open(addrs, tuning_of(lst.sctp, endpoint=True))
            self._limit(ep, lst.sctp, lst.name)
            self.listeners[lst.name] = ep
            self._listener_of[ep] = lst.name
            if lst.protocol is Protocol.DIAMETER:
                self._diameter_eps.add(ep)
                self._hot_path(ep)
            self._spawn(self._read(ep, listener=lst.name))
            self.emit("listening", listener=lst.name, addresses=list(lst.addresses), port=lst.port)
        if install_signals:
            self.loop.add_signal_handler(signal.SIGTERM, self.stop_requested.set)
            self.loop.add_signal_handler(signal.SIGINT, self.stop_requested.set)
            self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._spawn(self._readouts())
        self.observability = Observability(self)
        await self.observability.start(self.config.metrics, self.config.admin)
        if self.diameter is not None:
            self._spawn(self._diameter_ticks())
        for advice in kernel_advice(read_proc_sys):
            self.emit("kernel_advice", advice=advice)
        self.emit(
            "started",
            config=self.config_path,
            peers=[p.name for p in self.config.peers],
            c_speedups=wire.c_speedups is not None,  # False: built without a C compiler
            c_mmsg=transport.batched_io(),
        )
        _quiet_gc()
        await self.stop_requested.wait()
        return await self._shutdown()

    async def _shutdown(self) -> int:
        self.emit("stopping", drain_s=DRAIN_S)
        await self._goodbyes(DRAIN_S / 2)
        self.perform(self.manager.stop(self.loop.time()))
        deadline = self.loop.time() + DRAIN_S
        while self.loop.time() < deadline and any(
            rt.state is State.STOPPING for rt in self.manager.peers.values()
        ):
            await asyncio.sleep(0.05)
        for task in list(self.tasks):
            task.cancel()
        for ep in (*self.listeners.values(), *self.dialers.values()):
            ep.close()
        if self.observability is not None:
            self.observability.close()
        self.emit("stopped")
        return 0

    async def _goodbyes(self, wait_s: float) -> None:
        """The protocols' own goodbyes (DPR, ASPDN) before the SCTP SHUTDOWN, bounded."""
        if self.diameter is not None:
            await self.diameter.goodbye(wait_s)
        waiting = []
        for name, rt in self.manager.peers.items():
            handler = self.handlers.get(rt.config.protocol)
            if handler is not None and rt.state is State.UP and name in self.where:
                await self._send_all(name, handler.goodbye(name))
                waiting.append((name, handler))
        deadline = self.loop.time() + wait_s
        while waiting and self.loop.time() < deadline:
            waiting = [(n, h) for n, h in waiting if not h.goodbye_done(n)]
            await asyncio.sleep(0.02)
        for name, _ in waiting:
            self.emit("goodbye_unanswered", peer=name)

    async def _send_all(self, peer: str, messages: list[Outgoing]) -> None:
        found = self.where.get(peer)
        if found is None:
            return
        try:
            for out in messages:
                await found[0].send(out.data, found[1], out.stream, out.ppid)
        except (SigmwError, OSError) as exc:
            self.emit("send_failed", peer=peer, error=str(exc))

    def _handler_of(self, peer: str) -> ProtocolHandler | None:
        rt = self.manager.peers.get(peer)
        return self.handlers.get(rt.config.protocol) if rt is not None else None

    def reload(self) -> None:
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.emit("reload_refused", errors=[str(p) for p in exc.problems])
            return
        if new.listen != self.config.listen:
            self.emit("reload_listeners_unchanged", note="listener changes need a restart")
            new = dataclasses.replace(new, listen=self.config.listen)
        outputs = self.manager.reload(new, self.loop.time())
        # Goodbyes first, on the old endpoints, while they are still registered.
        self.perform([o for o in outputs if isinstance(o, act.Shutdown)])
        for name in list(self.where):
            old, now_cfg = self.config.peer(name), new.peer(name)
            if now_cfg is None or now_cfg != old:
                self._retire(name)
        self.config = new
        counts = self.router.unrouted, self.router.no_live_peer
        self.router = PpidRouter.from_config(new.ppid_routes)
        self.router.unrouted, self.router.no_live_peer = counts  # counters outlive a reload
        if self.diameter is not None:
            self.diameter.reload(new)
        self.perform([o for o in outputs if not isinstance(o, act.Shutdown)])

    def _retire(self, name: str) -> None:
        """A removed or changed peer: forget its association; close its own endpoint
        once the goodbye had time (an accepted one lives on a listener: kept). Its
        counts join the peer's totals now: the end of a retired association is not read."""
        conn = self.where.pop(name, None)
        if conn is not None:
            self._fold(conn[0], conn[1], name)
        ep = self.dialers.pop(name, None)
        if ep is not None:
            for assoc in ep.traffic.associations():
                self._fold(ep, assoc, name)
            self.loop.call_later(DRAIN_S, ep.close)

    # --- performing decisions ----------------------------------------------------

    def perform(self, outputs: list[act.Output]) -> None:
        for out in outputs:
            try:
                self._perform_one(out)
            except Exception as exc:  # one failed action must not stop the others
                self.emit("action_failed", action=type(out).__name__, error=str(exc))
        self._arm_timer()

    def _perform_one(self, out: act.Output) -> None:
        if isinstance(out, act.Log):
            self.emit(out.event, **out.fields)
        elif isinstance(out, act.Connect):
            self.events.connecting(out.peer)
            self._connect(out.peer)
        elif isinstance(out, act.Tune):
            self._tune(out.peer, out.assoc_id)
        elif isinstance(out, act.SetPrimary):
            ep = self._endpoint_of(out.peer)
            if ep is not None:
                ep.set_primary(out.assoc_id, out.address)
        elif isinstance(out, act.Shutdown):
            ep = self._endpoint_of(out.peer)
            if ep is not None:
                self._spawn(ep.shutdown(out.assoc_id))
        elif isinstance(out, act.Refuse):
            ep = self.listeners[out.listener]
            self._spawn(ep.abort(out.assoc_id, b"sigmw: address not configured"))

    def _limit(self, ep: Endpoint, sctp: SctpParams, owner: str) -> None:
        """TCP frames by the header's length: refuse messages over the configured size;
        under overload, shed in the endpoint itself (the cheapest place). SCTP: say when
        the kernel capped a socket buffer below what is configured."""
        if isinstance(ep, SctpEndpoint):
            for kind, option, wanted, sysctl in (
                ("receive", socket.SO_RCVBUF, sctp.receive_buffer, "net.core.rmem_max"),
                ("send", socket.SO_SNDBUF, sctp.send_buffer, "net.core.wmem_max"),
            ):
                got = ep.sock.getsockopt(socket.SOL_SOCKET, option)
                if wanted and got < wanted:
                    advice = f"sysctl {sysctl}={wanted // 2}, or run with CAP_NET_ADMIN"
                    self.emit(
                        "buffer_capped",
                        owner=owner,
                        buffer=kind,
                        wanted=wanted,
                        got=got,
                        advice=advice,
                    )
        if isinstance(ep, TcpEndpoint) and self.diameter is not None:
            assert self.config.node.diameter is not None
            ep.max_message = self.config.node.diameter.max_message_size
            ep.shedder = functools.partial(self.diameter.shed_batch, ep)
            ep.shed_backlog = SHED_BACKLOG

    def _hot_path(self, ep: Endpoint, dialer: str = "") -> None:
        """A Diameter endpoint hands messages to the Diameter service as they are read
        (no per-message object, no queue, no task switch)."""
        fast = None
        if self.diameter is not None:
            fast = self.diameter.direct_in_c(ep, self.where, self.dialers, dialer)
        if isinstance(ep, TcpEndpoint):
            ep.direct = fast.take if fast else functools.partial(self._direct, ep, dialer)
        elif isinstance(ep, SctpEndpoint):
            ep.direct = fast or functools.partial(self._direct_sctp, ep, dialer)
            if self.diameter is not None:
                ep.overloaded = self.diameter.sctp_shedder(ep, ep.direct)
                if (bulk := self.diameter.sctp_bulk_shedder(ep)) is not None:
                    ep.bulk_shed, ep.recv_shed = bulk
            ep.shed_backlog = SHED_BACKLOG

    def _direct(
        self, ep: TcpEndpoint | SctpEndpoint, dialer: str, assoc_id: int, messages: list[bytes]
    ) -> int:
        """TcpEndpoint.direct: the Diameter service's hot path, unless the endpoint was
        retired by a reload (then the reader drops what it queues, as for any message)."""
        if self.diameter is None or self._retired(ep, dialer):
            return 0
        return self.diameter.direct(ep, assoc_id, messages)

    def _direct_sctp(
        self, ep: SctpEndpoint, dialer: str, assoc_id: int, ppid: int, data: bytes, now: float
    ) -> bool:
        """SctpEndpoint.direct: Diameter PPIDs only (anything else goes to its handler),
        and not on an endpoint retired by a reload, as for TCP."""
        diameter = self.diameter
        if ppid not in ACCEPTED_PPIDS or diameter is None:
            return False
        if self._retired(ep, dialer):
            return False
        diameter.handle((ep, assoc_id), data, now)
        return True

    def _retired(self, ep: TcpEndpoint | SctpEndpoint, dialer: str) -> bool:
        """A dialer's endpoint a reload replaced: the reader drops what it still reads."""
        return bool(dialer) and self.dialers.get(dialer) is not ep

    def _endpoint_of(self, peer: str) -> Endpoint | None:
        found = self.where.get(peer)
        return found[0] if found else self.dialers.get(peer)

    def _connect(self, name: str) -> None:
        peer = self.manager.peers[name].config
        ep = self.dialers.get(name)
        if ep is None:
            ep = self._open_dialer(peer)
        try:
            ep.start_connect([(a, peer.port) for a in peer.addresses])
        except OSError as exc:
            self.emit("connect_failed", peer=name, error=str(exc))
            failed = AssocChange(0, AssocChangeState.CANT_STR_ASSOC, 0, 0, 0, (), ())
            self.loop.call_soon(
                lambda: self.perform(self.manager.assoc_event(name, failed, self.loop.time()))
            )

    def _open_dialer(self, peer: Peer) -> Endpoint:
        wildcard = "::" if any(":" in a for a in peer.addresses) else "0.0.0.0"
        local = [(a, 0) for a in peer.local_addresses] or [(wildcard, 0)]
        opener = endpoint_class(peer.transport)
        ep: Endpoint = opener.open_now(local, tuning_of(peer.sctp, endpoint=True), listen=False)
        self._limit(ep, peer.sctp, peer.name)
        self.dialers[peer.name] = ep
        if peer.protocol is Protocol.DIAMETER:
            self._diameter_eps.add(ep)
            self._hot_path(ep, dialer=peer.name)
        self._spawn(self._read(ep, dialer=peer.name))
        return ep

    def _tune(self, name: str, assoc_id: int) -> None:
        """Apply the peer's settings, read them back (log what the kernel changed), greet."""
        ep = self._endpoint_of(name)
        peer = self.manager.peers[name].config
        if ep is None:
            return
        wanted = tuning_of(peer.sctp, endpoint=False)
        ep.apply_tuning(wanted, assoc_id)
        for field, want, have in tuning_differences(wanted, ep.read_tuning(assoc_id)):
            self.emit("tuning_clamped", peer=name, field=field, wanted=want, kernel=have)
        handler = self._handler_of(name)
        assoc = ep.associations.get(assoc_id)
        if handler is not None and assoc is not None:
            self._spawn(self._send_all(name, handler.on_up(name, assoc.outbound_streams)))

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.manager.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(
                deadline, lambda: self.perform(self.manager.handle_timer(self.loop.time()))
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run in the background; forget it when done; a failure is logged, not lost."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.emit("action_failed", error=repr(task.exception()))

    # --- inputs --------------------------------------------------------------------

    async def _read(self, ep: Endpoint, listener: str = "", dialer: str = "") -> None:
        diameter = self.diameter if ep in self._diameter_eps else None
        while True:
            item = ep.recv_nowait()  # drain what is queued without an await per message
            if item is None:
                try:
                    item = await ep.recv()
                except ConnectionError:
                    return
            if dialer and self.dialers.get(dialer) is not ep:
                continue  # a retired endpoint: its peer was reloaded
            try:
                if type(item) is Deferred:  # the direct handler's send that had to wait
                    await item.work()
                    continue
                if diameter is not None and type(item) is Message and item.ppid in ACCEPTED_PPIDS:
                    # The relay's hot path: synchronous unless a peer pushes back.
                    conn = (ep, item.assoc_id)
                    shed = ep.backlog() > SHED_BACKLOG  # overload: shed, don't collapse
                    take = diameter.shed if shed else diameter.message
                    rest = diameter.perform_now(take(conn, item))
                    if rest:
                        await diameter.perform(rest)
                else:
                    await self._take(ep, item, listener, dialer)
            except Exception as exc:  # bad input is counted and logged, never fatal
                self.emit("input_error", error=repr(exc))

    async def _take(self, ep: Endpoint, item: Received, listener: str, dialer: str) -> None:
        now = self.loop.time()
        if isinstance(item, AssocChange):
            owner = self._owner((ep, item.assoc_id))
            if ep in self._diameter_eps and self.diameter is not None:
                self.perform(self._diameter_assoc(ep, item, dialer, now))
            else:
                self.perform(self._assoc_change(ep, item, listener, dialer, now))
            if item.state in ENDED:
                self._fold(ep, item.assoc_id, owner)
        elif isinstance(item, PeerAddrChange):
            name = dialer or self.accepted.get((listener, item.assoc_id))
            if name:
                self.perform(self.manager.path_event(name, item, now))
        elif isinstance(item, Message):
            peer = dialer or self.accepted.get((listener, item.assoc_id))
            handler = self._handler_of(peer) if peer else None
            if handler is not None and item.ppid not in handler.ppids:
                handler = None  # not this protocol's payload: plain PPID routing
            replies = handler.on_message(peer, item) if handler and peer else None
            if replies is None:
                source = peer or f"{listener}:{item.source[0] if item.source else '?'}"
                await self._route(item, source)
            elif peer:
                await self._send_all(peer, replies)

    def _assoc_change(
        self, ep: Endpoint, note: AssocChange, listener: str, dialer: str, now: float
    ) -> list[act.Output]:
        up = note.state in (AssocChangeState.COMM_UP, AssocChangeState.RESTART)
        if dialer:
            if up:
                self.where[dialer] = (ep, note.assoc_id)
            elif self.where.get(dialer, (None, -1))[1] == note.assoc_id:
                self.where.pop(dialer, None)
                self._down(dialer)
            return self.manager.assoc_event(dialer, note, now)
        key = (listener, note.assoc_id)
        if note.state is AssocChangeState.COMM_UP:
            name, outputs = self.manager.incoming(
                listener, note, ep.peer_addresses(note.assoc_id), now
            )
            if name is not None:
                self.accepted[key] = name
                self.where[name] = (ep, note.assoc_id)
            return outputs
        name = self.accepted.get(key)
        if name is None:
            return []
        if not up:
            self.accepted.pop(key, None)
            self.where.pop(name, None)
            self._down(name)
        return self.manager.assoc_event(name, note, now)

    def _diameter_assoc(
        self, ep: Endpoint, note: AssocChange, dialer: str, now: float
    ) -> list[act.Output]:
        """Diameter associations: the core decides who an accepted one belongs to (by
        its CER), the manager keeps each peer's association life cycle."""
        assert self.diameter is not None
        conn = (ep, note.assoc_id)
        up = note.state in (AssocChangeState.COMM_UP, AssocChangeState.RESTART)
        restarted = note.state is AssocChangeState.RESTART
        out: list[act.Output] = []
        if dialer and up and self.diameter.core.is_open(dialer) and self.where.get(dialer) != conn:
            self._spawn(self.diameter.close(conn))  # the peer dialled us first: ours is surplus
            return out  # the peer dialled us first (or won the election): ours is surplus
        if dialer:
            if up:
                self.where[dialer] = conn
            elif self.where.get(dialer) == conn:
                self.where.pop(dialer)
            out = self.manager.assoc_event(dialer, note, now)
        elif not up or restarted:
            name = self.accepted.get((self._listener_of[ep], note.assoc_id))
            if name is not None and not up:
                del self.accepted[(self._listener_of[ep], note.assoc_id)]
                if self.where.get(name) == conn:
                    self.where.pop(name)
            if name is not None:
                out = self.manager.assoc_event(name, note, now)
        svc = self.diameter
        changes = svc.down(conn) if not up or restarted else []
        if up:
            changes += svc.up(conn, dialer or None, note.outbound_streams)
        self._spawn(svc.perform(changes))
        return out

    def _owner(self, conn: tuple[Endpoint, int]) -> str | None:
        return next((name for name, c in self.where.items() if c == conn), None)

    def _fold(self, ep: Endpoint, assoc_id: int, peer: str | None) -> None:
        """An association ended: its counts join its peer's totals (counters never go
        back when the peer reconnects), and its kernel read-out is retired."""
        self.totals.fold_traffic(peer, ep.traffic.take(assoc_id))
        reading = self.kernel.get(peer) if peer else None
        if peer and reading is not None and reading.conn == (ep, assoc_id):
            del self.kernel[peer]
            self.totals.fold_sctp(peer, reading.stats)

    # --- what the Diameter service asks of the daemon (io.diameter.Host) ---------------

    def peer_conn(self, peer: str) -> tuple[Endpoint, int] | None:
        return self.where.get(peer)

    def bind(self, conn: tuple[Endpoint, int], peer: str) -> None:
        ep, assoc = conn
        listener = self._listener_of.get(ep)
        if listener is None:
            return  # our own dial: the manager tracks it already
        self.accepted[(listener, assoc)] = peer
        self.where[peer] = conn
        try:
            remote = ep.peer_addresses(assoc)
        except (SigmwError, OSError):
            remote = []
        self.perform(self.manager.adopt(peer, assoc, self.loop.time(), remote))

    def hold(self, peer: str) -> None:
        self.perform(self.manager.hold(peer, self.loop.time()))

    def emit(self, event: str, /, **fields: object) -> None:
        """Log the event and count what the metrics count of it."""
        self.events.observe(event, fields)
        emit(event, **fields)

    async def _diameter_ticks(self) -> None:
        assert self.diameter is not None
        while True:
            await asyncio.sleep(TICK_S)
            outputs = self.diameter.tick()
            if outputs:
                await self.diameter.perform(outputs)

    def _down(self, peer: str) -> None:
        handler = self._handler_of(peer)
        if handler is not None:
            handler.on_down(peer)

    def _outbound_of(self, peer: str) -> int | None:
        rt = self.manager.peers.get(peer)
        found = self.where.get(peer)
        if rt is None or rt.state is not State.UP or found is None:
            return None
        assoc = found[0].associations.get(found[1])
        return assoc.outbound_streams if assoc else None

    async def _route(self, msg: Message, source: str) -> None:
        fwd = self.router.route(msg.ppid, msg.stream, self._outbound_of)
        if fwd is None:
            last = self._unrouted_logged.get(msg.ppid, -UNROUTED_LOG_EVERY_S)
            if self.loop.time() - last >= UNROUTED_LOG_EVERY_S:
                self._unrouted_logged[msg.ppid] = self.loop.time()
                self.emit(
                    "dropped",
                    ppid=msg.ppid,
                    source=source,
                    reason=("no route" if msg.ppid not in self.router.routes else "no peer up"),
                    unrouted=self.router.unrouted,
                    no_live_peer=self.router.no_live_peer,
                )
            return
        ep, assoc_id = self.where[fwd.peer]
        try:
            await ep.send(msg.data, assoc_id, fwd.stream, msg.ppid)
        except (SigmwError, OSError) as exc:  # the target died just now: counted, logged
            self.forward_failed += 1
            self.emit(
                "forward_failed",
                peer=fwd.peer,
                ppid=msg.ppid,
                error=str(exc),
                total=self.forward_failed,
            )

    async def _readouts(self) -> None:
        while True:
            await asyncio.sleep(READOUT_S)
            for name, (ep, assoc_id) in list(self.where.items()):
                rt = self.manager.peers.get(name)
                if rt is None or rt.state is not State.UP:
                    continue
                try:
                    paths = ep.paths(assoc_id)
                    if isinstance(ep, SctpEndpoint):
                        self.kernel[name] = KernelReading.of(ep, assoc_id)
                except (SigmwError, OSError):  # the association went away meanwhile
                    continue
                self.perform(self.manager.path_readout(name, paths, self.loop.time()))


def run(config_path: str) -> int:
    config = load_config(config_path)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")

    async def main() -> int:
        return await Daemon(config_path, config).run()

    return asyncio.run(main())


def _quiet_gc() -> None:
    """Keep the cyclic collector off the relay's path. What start-up loaded (modules,
    the python-diameter dictionary) is frozen out of full collections, and young
    collections run less often: relayed messages hold no cycles and are freed by
    reference counting, so collections find nothing but cost pauses."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _diameter_service(config: Config, daemon: Daemon, now: Callable[[], float]) -> DiameterService:
    # Imported here: python-diameter's dictionary takes a while to load (seconds on a
    # slow machine), and a daemon without Diameter peers should not wait for it.
    from sigmw.io.diameter import DiameterService

    return DiameterService(config, daemon, now)


def _speaks_diameter(config: Config) -> bool:
    protocols = [x.protocol for x in config.listen] + [p.protocol for p in config.peers]
    return Protocol.DIAMETER in protocols
