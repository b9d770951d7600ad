"""Snapshot -> Prometheus metric families, named and labelled as catalog.py says.

A custom collector: nothing is counted twice, the hot path keeps its plain
integers, and a scrape reads them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sigmw.core.histogram import Histogram
from sigmw.diameter.peer_fsm import PeerState
from sigmw.diameter.watchdog import WatchdogState
from sigmw.io.traffic import IN, OTHER, STREAM_LABELS
from sigmw.obs.catalog import BY_NAME, Kind
from sigmw.obs.events import EventCounts
from sigmw.obs.snapshot import Snapshot
from sigmw.peers.lifecycle import State
from sigmw.sctp.constants import PathState

PATH_STATES = [s.name for s in PathState if s is not PathState.UNKNOWN]
_SCTP_SIMPLE = {
    "retransmitted_chunks": "sigmw_sctp_retransmitted_chunks_total",
    "gap_reports": "sigmw_sctp_gap_reports_total",
    "out_of_seq_tsns": "sigmw_sctp_out_of_sequence_tsns_total",
    "dup_chunks": "sigmw_sctp_duplicate_chunks_total",
}
_SCTP_DIRECTED = {  # kernel field -> (family, direction[, ordering])
    "in_packets": ("sigmw_sctp_packets_total", "in"),
    "out_packets": ("sigmw_sctp_packets_total", "out"),
    "in_sacks": ("sigmw_sctp_sacks_total", "in"),
    "out_sacks": ("sigmw_sctp_sacks_total", "out"),
    "in_control_chunks": ("sigmw_sctp_control_chunks_total", "in"),
    "out_control_chunks": ("sigmw_sctp_control_chunks_total", "out"),
}
_SCTP_DATA = {
    "in_ordered_chunks": ("in", "ordered"),
    "out_ordered_chunks": ("out", "ordered"),
    "in_unordered_chunks": ("in", "unordered"),
    "out_unordered_chunks": ("out", "unordered"),
}


def _family(name: str) -> Any:
    f = BY_NAME[name]
    if f.kind is Kind.COUNTER:
        return CounterMetricFamily(f.name.removesuffix("_total"), f.help, labels=f.labels)
    if f.kind is Kind.GAUGE:
        return GaugeMetricFamily(f.name, f.help, labels=f.labels)
    return HistogramMetricFamily(f.name, f.help, labels=f.labels)


def _label(value: int) -> str:
    return "other" if value == OTHER else str(value)


def _direction(value: int) -> str:
    return "in" if value == IN else "out"


class SigmwCollector(Collector):
    """Collects from a fresh snapshot on every scrape."""

    def __init__(self, source: Callable[[], tuple[Snapshot, EventCounts]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snap, events = self.source()
        yield from _process(snap, events)
        yield from _peers(snap, events)
        yield from _paths(snap, events)
        yield from _sctp(snap)
        yield from _messages(snap)
        if snap.diameter is not None:
            yield from _diameter(snap)


def _process(snap: Snapshot, events: EventCounts) -> Iterator[Metric]:
    build = _family("sigmw_build_info")
    build.add_metric([snap.version, snap.python], 1)
    ready = _family("sigmw_ready")
    ready.add_metric([], int(snap.ready))
    reloads = _family("sigmw_config_reloads_total")
    for result in ("ok", "failed"):
        reloads.add_metric([result], events.reloads[result])
    last = _family("sigmw_config_last_reload_successful")
    last.add_metric([], int(events.last_reload_ok))
    start = _family("sigmw_start_time_seconds")
    start.add_metric([], snap.started_at)
    yield from (build, ready, reloads, last, start)


def _peers(snap: Snapshot, events: EventCounts) -> Iterator[Metric]:
    up, state, trans = (
        _family(n) for n in ("sigmw_peer_up", "sigmw_peer_state", "sigmw_peer_transitions_total")
    )
    attempts, restarts = (
        _family("sigmw_peer_connect_attempts_total"),
        _family("sigmw_peer_restarts_total"),
    )
    streams, queue = _family("sigmw_peer_streams"), _family("sigmw_peer_send_queue_messages")
    for p in snap.peers:
        up.add_metric([p.name], int(p.up))
        for s in State:
            state.add_metric([p.name, s.value], int(p.state == s.value))
        for direction in ("up", "down"):
            trans.add_metric([p.name, direction], events.transitions[(p.name, direction)])
        attempts.add_metric([p.name], p.connect_attempts)
        restarts.add_metric([p.name], p.restarts)
        if p.outbound_streams is not None and p.inbound_streams is not None:
            streams.add_metric([p.name, "outbound"], p.outbound_streams)
            streams.add_metric([p.name, "inbound"], p.inbound_streams)
        queue.add_metric([p.name], p.queued)
    refused = _family("sigmw_refused_associations_total")
    for listener, n in sorted(events.refused.items()):
        refused.add_metric([listener], n)
    yield from (up, state, trans, attempts, restarts, streams, queue, refused)


def _paths(snap: Snapshot, events: EventCounts) -> Iterator[Metric]:
    names = (
        "sigmw_path_up",
        "sigmw_path_state",
        "sigmw_path_primary",
        "sigmw_path_srtt_seconds",
        "sigmw_path_rto_seconds",
        "sigmw_path_cwnd_bytes",
        "sigmw_path_mtu_bytes",
    )
    up, state, primary, srtt, rto, cwnd, mtu = (_family(n) for n in names)
    for p in snap.peers:
        for path in p.paths:
            labels = [p.name, path.address]
            up.add_metric(labels, int(path.up))
            for s in PATH_STATES:
                state.add_metric([*labels, s], int(path.state == s))
            primary.add_metric(labels, int(path.primary))
            srtt.add_metric(labels, path.srtt_ms / 1000)
            rto.add_metric(labels, path.rto_ms / 1000)
            cwnd.add_metric(labels, path.cwnd)
            mtu.add_metric(labels, path.mtu)
    changes = _family("sigmw_path_state_changes_total")
    for (peer, address, s), n in sorted(events.path_changes.items()):
        changes.add_metric([peer, address, s], n)
    failovers, failbacks = (
        _family("sigmw_path_failovers_total"),
        _family("sigmw_path_failbacks_total"),
    )
    for p in snap.peers:
        failovers.add_metric([p.name], events.failovers[p.name])
        failbacks.add_metric([p.name], events.failbacks[p.name])
    yield from (up, state, primary, srtt, rto, cwnd, mtu, changes, failovers, failbacks)


def _sctp(snap: Snapshot) -> Iterator[Metric]:
    families = {
        n: _family(n)
        for n in (
            *_SCTP_SIMPLE.values(),
            "sigmw_sctp_packets_total",
            "sigmw_sctp_sacks_total",
            "sigmw_sctp_control_chunks_total",
            "sigmw_sctp_data_chunks_total",
        )
    }
    for peer, counters in sorted(snap.sctp.items()):
        for field, name in _SCTP_SIMPLE.items():
            families[name].add_metric([peer], counters[field])
        for field, (name, direction) in _SCTP_DIRECTED.items():
            families[name].add_metric([peer, direction], counters[field])
        for field, (direction, ordering) in _SCTP_DATA.items():
            families["sigmw_sctp_data_chunks_total"].add_metric(
                [peer, direction, ordering], counters[field]
            )
    queue, buffer = (
        _family("sigmw_sctp_receive_queue_bytes"),
        _family("sigmw_sctp_receive_buffer_bytes"),
    )
    for p in snap.peers:
        if p.receive_queue is not None and p.receive_buffer is not None:
            queue.add_metric([p.name], p.receive_queue)
            buffer.add_metric([p.name], p.receive_buffer)
    yield from (*families.values(), queue, buffer)


def _messages(snap: Snapshot) -> Iterator[Metric]:
    messages, octets = _family("sigmw_messages_total"), _family("sigmw_bytes_total")
    streams = _family("sigmw_stream_messages_total")
    for peer in sorted(snap.messages):
        by_ppid: dict[tuple[str, str], list[int]] = {}
        by_stream: dict[tuple[str, str], int] = {}
        for (direction, ppid, stream), n in snap.messages[peer].items():
            key = (_label(ppid), _direction(direction))
            cell = by_ppid.setdefault(key, [0, 0])
            cell[0] += n
            cell[1] += snap.octets[peer][(direction, ppid, stream)]
            s = f"{STREAM_LABELS}+" if stream >= STREAM_LABELS else str(stream)
            skey = (s, _direction(direction))
            by_stream[skey] = by_stream.get(skey, 0) + n
        for (ppid_label, direction_label), (n, size) in sorted(by_ppid.items()):
            messages.add_metric([peer, ppid_label, direction_label], n)
            octets.add_metric([peer, ppid_label, direction_label], size)
        for (stream_label, direction_label), n in sorted(by_stream.items()):
            streams.add_metric([peer, stream_label, direction_label], n)
    refused = _family("sigmw_messages_refused_total")
    for reason, n in sorted(snap.dropped.items()):
        refused.add_metric([reason], n)
    malformed = _family("sigmw_malformed_input_total")
    for kind, n in sorted(snap.malformed.items()):
        malformed.add_metric([kind], n)
    yield from (messages, octets, streams, refused, malformed)


def _diameter(snap: Snapshot) -> Iterator[Metric]:
    d = snap.diameter
    assert d is not None
    requests = _family("sigmw_diameter_requests_total")
    for command, n in sorted(d.requests.items()):
        requests.add_metric([_label(command)], n)
    answers = _family("sigmw_diameter_answers_total")
    for (command, code, source), n in sorted(d.answers.items()):
        answers.add_metric([_label(command), _label(code), source], n)
    latency = _family("sigmw_diameter_relay_latency_seconds")
    latency.add_metric([], _buckets(d.latency), d.latency.sum)
    pending, peer_state, watchdog = (
        _family(n)
        for n in (
            "sigmw_diameter_pending_requests",
            "sigmw_diameter_peer_state",
            "sigmw_diameter_watchdog_state",
        )
    )
    for p in snap.peers:
        if p.diameter is None:
            continue
        pending.add_metric([p.name], p.diameter.pending)
        for ps in PeerState:
            peer_state.add_metric([p.name, ps.value], int(p.diameter.state == ps.value))
        for ws in WatchdogState:
            watchdog.add_metric([p.name, ws.value], int(p.diameter.watchdog == ws.value))
    resent = _family("sigmw_diameter_retransmitted_requests_total")
    for why in ("failover", "timeout"):
        resent.add_metric([why], d.events[f"{why}_resent"])
    other = _family("sigmw_diameter_relay_events_total")
    for event, n in sorted(d.events.items()):
        other.add_metric([event], n)
    yield from (requests, answers, latency, pending, peer_state, watchdog, resent, other)


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    """Cumulative counts per upper bound, +Inf last, as Prometheus expects."""
    out, seen = [], 0
    for bound, count in zip((*h.bounds, float("inf")), h.counts, strict=True):
        seen += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(seen)))
    return out
