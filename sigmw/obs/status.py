"""`sigmw status`, `sigmw peers`, `sigmw paths`: the running daemon's state, read
from its admin endpoint (/status) and printed as tables, or as JSON for scripts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from sigmw.core.errors import SigmwError

TIMEOUT_S = 5.0


class AdminUnreachableError(SigmwError):
    pass


def fetch(host: str, port: int, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """The daemon's /status document."""
    where = f"[{host}]" if ":" in host else host
    url = f"http://{where}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            doc: dict[str, Any] = json.load(reply)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminUnreachableError(
            f"cannot read {url}: {reason} (is `sigmw run` running with this admin.listen?)"
        ) from None
    return doc


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def render_peers(doc: dict[str, Any]) -> str:
    rows = []
    for p in doc["peers"]:
        d = p.get("diameter") or {}
        streams = (
            f"{p['outbound_streams']}/{p['inbound_streams']}"
            if p.get("outbound_streams") is not None
            else None
        )
        rows.append(
            (
                p["name"],
                f"{p['protocol']}/{p['transport']}",
                p["role"],
                p["state"] + (" (held)" if p.get("held") else ""),
                p.get("assoc_id"),
                streams,
                d.get("state"),
                d.get("watchdog"),
                d.get("pending"),
                p["queued"],
                p["messages_in"],
                p["messages_out"],
            )
        )
    headers = (
        "PEER",
        "PROTOCOL",
        "ROLE",
        "STATE",
        "ASSOC",
        "STREAMS OUT/IN",
        "DIAMETER",
        "WATCHDOG",
        "PENDING",
        "QUEUED",
        "MSGS IN",
        "MSGS OUT",
    )
    return table(headers, rows)


def render_paths(doc: dict[str, Any]) -> str:
    rows = [
        (
            p["name"],
            f"{path['address']}:{path['port']}",
            path["state"],
            "*" if path["primary"] else "",
            path["srtt_ms"],
            path["rto_ms"],
            path["cwnd"],
            path["mtu"],
        )
        for p in doc["peers"]
        for path in p["paths"]
    ]
    if not rows:
        return "no SCTP paths (no SCTP association is up)"
    return table(("PEER", "PATH", "STATE", "PRIMARY", "SRTT MS", "RTO MS", "CWND", "MTU"), rows)


def render_status(doc: dict[str, Any]) -> str:
    up = sum(p["ready"] for p in doc["peers"])
    ready = "ready" if doc["ready"] else "NOT READY"
    head = (
        f"sigmw {doc['version']} node {doc['node']}: {ready} "
        f"({up} of {len(doc['peers'])} peers up, {doc['min_peers_up']} needed), "
        f"up {_duration(doc['uptime_s'])}"
    )
    parts = [head, "", render_peers(doc), "", render_paths(doc)]
    d = doc.get("diameter")
    if d is not None:
        parts += [
            "",
            f"diameter: {d['pending']} pending, {d['requests']} requests, {d['answers']} answers",
        ]
    bad = {k: v for k, v in {**doc["dropped"], **doc["malformed"]}.items() if v}
    if bad:
        parts += ["", "dropped/malformed: " + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))]
    return "\n".join(parts)


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{s:02d}"
