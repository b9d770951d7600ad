"""Every metric sigmw exports: name, type, help and labels, in one place.

The collector builds its families from here, docs/metrics.md lists the same
entries, and the deploy/ alert rules and Grafana dashboard are tested against
`series_names()`, so a rename breaks a test rather than a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    """As exposed; counters end in _total (prometheus-client adds it back when built)."""
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def series(self) -> tuple[str, ...]:
        """The series names PromQL sees for this family."""
        if self.kind is Kind.HISTOGRAM:
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM
PEER = ("peer",)
PATH = ("peer", "address")

FAMILIES: tuple[Family, ...] = (
    # --- the process ---------------------------------------------------------------
    Family("sigmw_build_info", G, "Always 1; the running version.", ("version", "python")),
    Family("sigmw_ready", G, "1 when at least readiness.min_peers_up peers are up."),
    Family("sigmw_config_reloads_total", C, "Configuration reloads (SIGHUP).", ("result",)),
    Family("sigmw_config_last_reload_successful", G, "1 if the last reload was applied, else 0."),
    Family("sigmw_start_time_seconds", G, "When the daemon started (Unix time)."),
    # --- peers and associations --------------------------------------------------
    Family("sigmw_peer_up", G, "1 while the peer's association is up.", PEER),
    Family(
        "sigmw_peer_state",
        G,
        "1 for the peer's current life-cycle state, 0 for the others.",
        ("peer", "state"),
    ),
    Family(
        "sigmw_peer_transitions_total",
        C,
        "Association up and down transitions.",
        ("peer", "direction"),
    ),
    Family("sigmw_peer_connect_attempts_total", C, "Association attempts (connect role).", PEER),
    Family("sigmw_peer_restarts_total", C, "Peer restarts seen (SCTP RESTART).", PEER),
    Family(
        "sigmw_peer_streams",
        G,
        "Negotiated streams of the current association.",
        ("peer", "direction"),
    ),
    Family(
        "sigmw_peer_send_queue_messages",
        G,
        "Messages waiting for room in the kernel's send buffer.",
        PEER,
    ),
    Family(
        "sigmw_refused_associations_total",
        C,
        "Associations refused on a listener (no configured peer has that address).",
        ("listener",),
    ),
    # --- paths (kernel read-out every second) ------------------------------------------
    Family("sigmw_path_up", G, "1 if the path is ACTIVE or UNCONFIRMED, 0 otherwise.", PATH),
    Family(
        "sigmw_path_state",
        G,
        "1 for the path's current kernel state, 0 for the others.",
        ("peer", "address", "state"),
    ),
    Family("sigmw_path_primary", G, "1 for the path the kernel sends on by preference.", PATH),
    Family("sigmw_path_srtt_seconds", G, "Smoothed round-trip time of the path.", PATH),
    Family("sigmw_path_rto_seconds", G, "Current retransmission timeout of the path.", PATH),
    Family("sigmw_path_cwnd_bytes", G, "Congestion window of the path.", PATH),
    Family("sigmw_path_mtu_bytes", G, "Path MTU.", PATH),
    Family(
        "sigmw_path_state_changes_total",
        C,
        "Path state changes reported by the kernel (SCTP_PEER_ADDR_CHANGE).",
        ("peer", "address", "state"),
    ),
    Family("sigmw_path_failovers_total", C, "Primary path moved off the preferred one.", PEER),
    Family("sigmw_path_failbacks_total", C, "Primary path returned to the preferred one.", PEER),
    # --- kernel association statistics (SCTP_GET_ASSOC_STATS) --------------------------
    Family("sigmw_sctp_retransmitted_chunks_total", C, "DATA chunks retransmitted.", PEER),
    Family("sigmw_sctp_packets_total", C, "SCTP packets.", ("peer", "direction")),
    Family("sigmw_sctp_sacks_total", C, "SACK chunks.", ("peer", "direction")),
    Family("sigmw_sctp_gap_reports_total", C, "SACKs received reporting gaps.", PEER),
    Family("sigmw_sctp_out_of_sequence_tsns_total", C, "TSNs received out of sequence.", PEER),
    Family("sigmw_sctp_duplicate_chunks_total", C, "Duplicate DATA chunks received.", PEER),
    Family(
        "sigmw_sctp_data_chunks_total",
        C,
        "DATA chunks by direction and ordering.",
        ("peer", "direction", "ordering"),
    ),
    Family("sigmw_sctp_control_chunks_total", C, "Control chunks.", ("peer", "direction")),
    Family(
        "sigmw_sctp_receive_queue_bytes",
        G,
        "Received and not yet read by sigmw, in the kernel (grows when the relay falls behind).",
        PEER,
    ),
    Family("sigmw_sctp_receive_buffer_bytes", G, "The receive buffer of the peer's socket.", PEER),
    # --- messages --------------------------------------------------------------------
    Family(
        "sigmw_messages_total",
        C,
        "Messages by peer, payload protocol id and direction.",
        ("peer", "ppid", "direction"),
    ),
    Family(
        "sigmw_bytes_total",
        C,
        "Message payload bytes by peer, payload protocol id and direction.",
        ("peer", "ppid", "direction"),
    ),
    Family(
        "sigmw_stream_messages_total",
        C,
        "Messages per SCTP stream (streams above the label limit share one label).",
        ("peer", "stream", "direction"),
    ),
    Family(
        "sigmw_messages_refused_total",
        C,
        "Messages not forwarded, by reason (no route, no live peer, send failed, ...).",
        ("reason",),
    ),
    Family("sigmw_malformed_input_total", C, "Malformed input, by kind.", ("kind",)),
    # --- Diameter ----------------------------------------------------------------------
    Family(
        "sigmw_diameter_requests_total",
        C,
        "Diameter requests received for relaying, by command code.",
        ("command",),
    ),
    Family(
        "sigmw_diameter_answers_total",
        C,
        "Diameter answers sent to clients, by command, result code and source "
        "(relayed from a server, or local: answered by sigmw).",
        ("command", "result_code", "source"),
    ),
    Family(
        "sigmw_diameter_relay_latency_seconds",
        H,
        "Relay latency: request in to answer out.",
    ),
    Family(
        "sigmw_diameter_pending_requests",
        G,
        "Requests relayed to the peer and not yet answered.",
        PEER,
    ),
    Family(
        "sigmw_diameter_peer_state",
        G,
        "1 for the peer's RFC 6733 state, 0 for the others.",
        ("peer", "state"),
    ),
    Family(
        "sigmw_diameter_watchdog_state",
        G,
        "1 for the peer's RFC 3539 watchdog state, 0 for the others.",
        ("peer", "state"),
    ),
    Family(
        "sigmw_diameter_retransmitted_requests_total",
        C,
        "Pending requests re-sent with the T flag to another peer, by why.",
        ("reason",),
    ),
    Family(
        "sigmw_diameter_relay_events_total",
        C,
        "Every relay event counter by name (unmatched answers, redirects, re-sends, ...).",
        ("event",),
    ),
)

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def series_names() -> frozenset[str]:
    """Every series name a scrape of sigmw can contain."""
    return frozenset(s for f in FAMILIES for s in f.series())
