"""The peer manager: decides, for every configured peer, when to connect, retry,
tune, switch paths and shut down. Sans-IO: events and `now` in, actions out;
the asyncio daemon performs the actions and arms a timer at next_deadline()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sigmw.config.model import Config, Peer, Role, Transport
from sigmw.peers import lifecycle as lc
from sigmw.peers.actions import Connect, Log, Output, Refuse, SetPrimary, Shutdown, Tune
from sigmw.peers.backoff import Backoff
from sigmw.peers.paths import PathSelector, PrimaryChoice
from sigmw.peers.reload import plan_reload
from sigmw.sctp.addresses import Address
from sigmw.sctp.constants import AssocChangeState, PathState
from sigmw.sctp.notifications import AssocChange, PeerAddrChange
from sigmw.sctp.structs import PathInfo

_PATH_STATES = {int(s) for s in PathState}

_EVENTS = {
    AssocChangeState.COMM_UP: lc.Event.COMM_UP,
    AssocChangeState.CANT_STR_ASSOC: lc.Event.CANT_START,
    AssocChangeState.COMM_LOST: lc.Event.COMM_LOST,
    AssocChangeState.SHUTDOWN_COMP: lc.Event.SHUTDOWN_COMP,
    AssocChangeState.RESTART: lc.Event.RESTART,
}


@dataclass
class PeerRuntime:
    """What the manager knows about one peer."""

    config: Peer
    backoff: Backoff
    state: lc.State = lc.State.IDLE
    assoc_id: int | None = None
    retry_at: float | None = None
    paths: PathSelector | None = None
    restarts: int = 0
    attempts: int = 0
    refused: int = 0
    history: list[str] = field(default_factory=list)
    remote_port: int = 0
    """The port the peer's association uses (accepted ones: whatever it bound)."""
    held: bool = False
    """Stopped at the peer's request (Diameter DO_NOT_WANT_TO_TALK_TO_YOU) until reload."""
    last_readout: dict[Address, PathInfo] = field(default_factory=dict)
    """Latest state, srtt, rto, cwnd and mtu of each path of the current association."""

    @property
    def table(self) -> dict[tuple[lc.State, lc.Event], lc.Row]:
        return lc.CONNECT_ROLE if self.config.role is Role.CONNECT else lc.ACCEPT_ROLE


class PeerManager:
    def __init__(self, config: Config, rng: Callable[[], float]) -> None:
        self.config = config
        self._rng = rng
        self.peers: dict[str, PeerRuntime] = {p.name: self._runtime(p) for p in config.peers}
        self.refused = 0

    def _runtime(self, peer: Peer) -> PeerRuntime:
        r = peer.reconnect
        return PeerRuntime(peer, Backoff(r.initial, r.max, r.jitter, self._rng))

    # --- inputs -------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        out: list[Output] = []
        for rt in self.peers.values():
            out += self._fire(rt, lc.Event.START, now)
        return out

    def stop(self, now: float) -> list[Output]:
        out: list[Output] = []
        for rt in self.peers.values():
            if rt.state not in (lc.State.STOPPED, lc.State.STOPPING):
                out += self._fire(rt, lc.Event.STOP, now)
        return out

    def assoc_event(self, peer: str, note: AssocChange, now: float) -> list[Output]:
        rt = self.peers.get(peer)
        event = _EVENTS.get(note.state)
        if rt is None or event is None:
            return []
        if event in (lc.Event.COMM_UP, lc.Event.RESTART):
            rt.assoc_id = note.assoc_id
        elif rt.assoc_id not in (None, note.assoc_id):
            return []  # about an association we no longer track
        try:
            return self._fire(rt, event, now)
        except lc.UnexpectedEvent as exc:
            return [Log("unexpected_event", {"peer": peer, "detail": str(exc)})]

    def adopt(
        self, peer: str, assoc_id: int, now: float, remote: list[Address] | None = None
    ) -> list[Output]:
        """A protocol identified an association as `peer`'s (Diameter: by the CER's
        Origin-Host, or by winning an election): track it from now on."""
        rt = self.peers.get(peer)
        if rt is None:
            return []
        rt.assoc_id = assoc_id
        rt.remote_port = remote[0][1] if remote else 0
        try:
            return self._fire(rt, lc.Event.ADOPT, now)
        except lc.UnexpectedEvent as exc:
            return [Log("unexpected_event", {"peer": peer, "detail": str(exc)})]

    def hold(self, peer: str, now: float) -> list[Output]:
        """Stop reconnecting `peer` until the next reload (it asked us not to talk)."""
        rt = self.peers.get(peer)
        if rt is None or rt.state in (lc.State.STOPPED, lc.State.STOPPING):
            return []
        rt.held = True
        out = self._fire(rt, lc.Event.STOP, now)
        return [*out, Log("peer_held", {"peer": peer, "until": "reload"})]

    def incoming(
        self, listener: str, note: AssocChange, remote: list[Address], now: float
    ) -> tuple[str | None, list[Output]]:
        """An association arrived on a listener: which accept-role peer is it, if any."""
        hosts = {host for host, _ in remote}
        lst = next((x for x in self.config.listen if x.name == listener), None)
        for rt in self.peers.values():
            cfg = rt.config
            if lst is not None and (cfg.protocol, cfg.transport) != (lst.protocol, lst.transport):
                continue  # e.g. a TCP connection is not the same host's SCTP peer
            if cfg.role is Role.ACCEPT and hosts & set(cfg.addresses):
                if rt.state is lc.State.UP and rt.assoc_id != note.assoc_id:
                    break  # a second association from a peer that has one: refuse it
                rt.remote_port = remote[0][1] if remote else 0
                return cfg.name, self.assoc_event(cfg.name, note, now)
        self.refused += 1
        return None, [
            Refuse(listener, note.assoc_id, tuple(remote)),
            Log("refused", {"listener": listener, "remote": [h for h, _ in remote]}),
        ]

    def path_event(self, peer: str, note: PeerAddrChange, now: float) -> list[Output]:
        rt = self.peers.get(peer)
        if rt is None or rt.paths is None or note.address is None or rt.assoc_id is None:
            return []
        out: list[Output] = [
            Log("path_state", {"peer": peer, "address": note.address[0], "state": note.state.name})
        ]
        return out + self._primary(rt, rt.paths.on_event(note.address, note.state, now))

    def path_readout(self, peer: str, readings: list[PathInfo], now: float) -> list[Output]:
        """A periodic read-out of every path: kept for status and metrics, and it
        catches a path change whose event was missed."""
        rt = self.peers.get(peer)
        if rt is None or rt.paths is None:
            return []
        out: list[Output] = []
        for p in readings:
            if p.address is None or p.state not in _PATH_STATES:
                continue
            rt.last_readout[p.address] = p
            out += self._primary(
                rt, rt.paths.on_readout(p.address, PathState(p.state), p.srtt_ms, now)
            )
        return out

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        for rt in self.peers.values():
            if rt.retry_at is not None and now >= rt.retry_at:
                rt.retry_at = None
                out += self._fire(rt, lc.Event.RETRY_TIMER, now)
            if rt.paths is not None:
                out += self._primary(rt, rt.paths.on_timer(now))
        return out

    def next_deadline(self) -> float | None:
        times = [
            t
            for rt in self.peers.values()
            for t in (rt.retry_at, rt.paths.next_deadline() if rt.paths else None)
            if t is not None
        ]
        return min(times, default=None)

    def reload(self, new: Config, now: float) -> list[Output]:
        """Touch only added, removed and changed peers; the rest keep their associations."""
        plan = plan_reload(self.config, new)
        out: list[Output] = [
            Log(
                "reload",
                {
                    "added": [p.name for p in plan.added],
                    "removed": list(plan.removed),
                    "changed": [p.name for p in plan.changed],
                    "unchanged": list(plan.unchanged),
                },
            )
        ]
        held = [n for n in plan.unchanged if self.peers[n].held]
        for name in (*plan.removed, *(p.name for p in plan.changed), *held):
            rt = self.peers.pop(name)
            if rt.state not in (lc.State.STOPPED, lc.State.STOPPING):
                out += self._fire(rt, lc.Event.STOP, now)
        self.config = new
        for peer in (*plan.added, *plan.changed, *(p for p in new.peers if p.name in held)):
            rt = self._runtime(peer)
            self.peers[peer.name] = rt
            out += self._fire(rt, lc.Event.START, now)
        return out

    # --- the table in action ----------------------------------------------------------

    def _fire(self, rt: PeerRuntime, event: lc.Event, now: float) -> list[Output]:
        actions, next_state = lc.step(rt.table, rt.state, event)
        before, rt.state = rt.state, next_state
        rt.history.append(f"{before.value} --{event.value}--> {next_state.value}")
        out: list[Output] = []
        if before is not next_state:
            out.append(
                Log(
                    "peer_state",
                    {
                        "peer": rt.config.name,
                        "from": before.value,
                        "to": next_state.value,
                        "trigger": event.value,
                    },
                )
            )
        for action in actions:
            out += self._act(rt, action, now)
        if next_state in (lc.State.WAITING, lc.State.IDLE, lc.State.STOPPED):
            rt.paths = None
            rt.last_readout.clear()
            if next_state is not lc.State.WAITING:
                rt.assoc_id = None
        return out

    def _act(self, rt: PeerRuntime, action: lc.Action, now: float) -> list[Output]:
        name = rt.config.name
        if action is lc.Action.CONNECT:
            rt.attempts += 1
            return [Connect(name)]
        if action is lc.Action.ARM_RETRY:
            delay = rt.backoff.next_delay_ms()
            rt.retry_at = now + delay / 1000
            rt.assoc_id = None
            return [Log("reconnect_scheduled", {"peer": name, "delay_ms": delay})]
        if action is lc.Action.CANCEL_RETRY:
            rt.retry_at = None
            return []
        if action is lc.Action.RESET_BACKOFF:
            rt.backoff.reset()
            return []
        if action is lc.Action.TUNE and rt.assoc_id is not None:
            return self._up(rt)
        if action is lc.Action.PEER_RESTARTED:
            rt.restarts += 1
            return [Log("peer_restarted", {"peer": name, "assoc": rt.assoc_id})]
        if action is lc.Action.SHUTDOWN and rt.assoc_id is not None:
            return [Shutdown(name, rt.assoc_id)]
        return []

    def _up(self, rt: PeerRuntime) -> list[Output]:
        """A new (or restarted) association: tune it and pin the configured primary."""
        assert rt.assoc_id is not None
        cfg = rt.config
        if cfg.transport is not Transport.SCTP:  # one path per TCP connection: nothing to pick
            return [Tune(cfg.name, rt.assoc_id)]
        port = rt.remote_port or cfg.port
        if not port:  # accepted, remote port unknown: the kernel's choice of path stands
            return [Tune(cfg.name, rt.assoc_id)]
        order = [(host, port) for host in cfg.addresses]
        rt.paths = PathSelector(order[0], cfg.sctp.failback.after, order)
        out: list[Output] = [Tune(cfg.name, rt.assoc_id)]
        if len(order) > 1:
            out.append(SetPrimary(cfg.name, rt.assoc_id, order[0], "initial"))
        return out

    def _primary(self, rt: PeerRuntime, decisions: list[PrimaryChoice]) -> list[Output]:
        out: list[Output] = []
        for d in decisions:
            if rt.assoc_id is not None:
                out += [
                    SetPrimary(rt.config.name, rt.assoc_id, d.address, d.reason),
                    Log(f"path_{d.reason}", {"peer": rt.config.name, "to": d.address[0]}),
                ]
        return out
