"""Counters fed by the daemon's structured events (the same ones it logs), and
totals that outlive an association (traffic and kernel statistics).

A sans-IO core never calls in here: the daemon hands every event it emits to
`EventCounts.observe`, and folds an association's counts into `Totals` when the
association ends, so a peer's counters only ever grow across reconnects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

UNIDENTIFIED = "(unidentified)"
"""The peer label for traffic on associations never bound to a configured peer."""

TrafficKey = tuple[int, int, int]
"""(direction, ppid, stream), as sigmw.io.traffic keeps them."""


class EventCounts:
    """What the peer manager, daemon and reloads reported, counted by label."""

    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str]] = Counter()  # (peer, up|down)
        self.connect_attempts: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.path_changes: Counter[tuple[str, str, str]] = Counter()  # (peer, address, state)
        self.failovers: Counter[str] = Counter()
        self.failbacks: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # by listener
        self.reloads: Counter[str] = Counter()  # ok | failed
        self.last_reload_ok = True
        self.input_errors = 0

    def observe(self, event: str, fields: Mapping[str, object]) -> None:
        peer = str(fields.get("peer", ""))
        if event == "peer_state":
            if fields.get("to") == "up":
                self.transitions[(peer, "up")] += 1
            elif fields.get("from") == "up":
                self.transitions[(peer, "down")] += 1
        elif event == "path_state":
            self.path_changes[(peer, str(fields.get("address")), str(fields.get("state")))] += 1
        elif event == "path_failover":
            self.failovers[peer] += 1
        elif event == "path_failback":
            self.failbacks[peer] += 1
        elif event == "peer_restarted":
            self.restarts[peer] += 1
        elif event == "refused":
            self.refused[str(fields.get("listener"))] += 1
        elif event == "reload":
            self.reloads["ok"] += 1
            self.last_reload_ok = True
        elif event == "reload_refused":
            self.reloads["failed"] += 1
            self.last_reload_ok = False
        elif event == "input_error":
            self.input_errors += 1

    def connecting(self, peer: str) -> None:
        self.connect_attempts[peer] += 1


class Totals:
    """Per peer: the counts of its associations that have ended."""

    def __init__(self) -> None:
        self.messages: dict[str, Counter[TrafficKey]] = {}
        self.octets: dict[str, Counter[TrafficKey]] = {}
        self.sctp: dict[str, Counter[str]] = {}

    def fold_traffic(self, peer: str | None, counts: Mapping[TrafficKey, tuple[int, int]]) -> None:
        if not counts:
            return
        name = peer or UNIDENTIFIED
        messages = self.messages.setdefault(name, Counter())
        octets = self.octets.setdefault(name, Counter())
        for key, (n, size) in counts.items():
            messages[key] += n
            octets[key] += size

    def fold_sctp(self, peer: str, counters: Mapping[str, int]) -> None:
        self.sctp.setdefault(peer, Counter()).update(counters)
