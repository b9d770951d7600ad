"""`sigmw check-config`: the effective configuration, what each peer's timers imply,
and warnings about dangerous combinations. Pure: Config in, text out."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import yaml

from sigmw.config import model as m
from sigmw.config.diameter import DiameterNode, DiameterRoute
from sigmw.sctp.timing import (
    association_failure_ms,
    path_failure_detection_ms,
    path_switch_ms,
    pf_effective,
)

DIAMETER_TW_MS = 30_000  # RFC 3539 default watchdog interval


def warnings(peer: m.Peer) -> list[str]:
    """What an experienced operator would flag in this peer's settings."""
    s, t, out = peer.sctp, peer.sctp.timers(), []
    if s.sack_delay >= s.rto.min:
        out.append(
            f"sack_delay {s.sack_delay}ms is not below rto.min {s.rto.min}ms: the "
            "peer retransmits before our delayed SACK leaves (spurious retransmissions)"
        )
    if s.rto.min <= s.peer_sack_delay:
        out.append(
            f"rto.min {s.rto.min}ms is not above the peer's delayed-SACK time "
            f"({s.peer_sack_delay}ms, sctp.peer_sack_delay): expect spurious "
            "retransmissions whenever the peer has nothing to send back"
        )
    if not s.heartbeat.enabled:
        out.append("heartbeats are disabled: a failed idle path is never detected")
    elif peer.protocol is m.Protocol.DIAMETER and path_failure_detection_ms(t) > DIAMETER_TW_MS:
        out.append(
            f"path failure detection ({path_failure_detection_ms(t) / 1000:.1f}s) is "
            "slower than the Diameter watchdog (30s): the watchdog fails the peer over "
            "before SCTP moves to the other path"
        )
    if not pf_effective(t):
        out.append(
            f"potentially_failed_threshold {s.potentially_failed_threshold} has no "
            f"effect with path_max_retrans {s.path_max_retrans} (Linux needs it "
            "<= path_max_retrans - 2): traffic stays on a failing path until it is "
            "declared unreachable"
        )
    paths = len(peer.addresses)
    if paths > 1 and s.assoc_max_retrans > s.path_max_retrans * paths:
        out.append(
            f"assoc_max_retrans {s.assoc_max_retrans} exceeds path_max_retrans x paths "
            f"({s.path_max_retrans} x {paths}): every path can be down while the "
            "association still counts as up (RFC 9260 8.2)"
        )
    if not s.nodelay:
        out.append("nodelay is off: request/answer traffic stalls ~200ms per message")
    if s.streams.outbound < 2:
        out.append(
            "one outbound stream: sessions share stream 0 with management and block "
            "one another behind any loss"
        )
    if peer.role is m.Role.CONNECT and peer.reconnect.jitter == 0:
        out.append("reconnect jitter is 0: after an outage every relay reconnects in lockstep")
    return out


def timing_lines(peer: m.Peer) -> list[str]:
    t = peer.sctp.timers()
    lines = [
        f"path failure detected within {path_failure_detection_ms(t) / 1000:.1f}s with "
        f"traffic, {_idle(t)} idle",
        f"traffic leaves a failing path within {path_switch_ms(t) / 1000:.1f}s",
        f"association declared lost within {association_failure_ms(t) / 1000:.1f}s",
    ]
    if peer.sctp.failback.after and len(peer.addresses) > 1:
        lines.append(
            f"fails back to {peer.addresses[0]} after "
            f"{peer.sctp.failback.after / 1000:g}s of stability"
        )
    return lines


def _idle(t: Any) -> str:
    try:
        return f"{path_failure_detection_ms(t, busy=False) / 1000:.1f}s"
    except ValueError:
        return "never (heartbeats off)"


def render(config: m.Config, filename: str) -> str:
    out = [
        f"{filename}: valid",
        "",
        "# effective configuration (defaults filled in)",
        yaml.safe_dump(_plain(config), sort_keys=False, width=100).rstrip(),
        "",
    ]
    for peer in config.peers:
        out.append(
            f"peer {peer.name} ({peer.protocol.value}/{peer.transport.value}, "
            f"{peer.role.value}, {len(peer.addresses)} path(s)):"
        )
        out.extend(f"  {line}" for line in timing_lines(peer))
        out.extend(f"  WARNING: {w}" for w in warnings(peer))
    return "\n".join(out)


def _plain(value: Any, key: str = "") -> Any:
    """Dataclasses to YAML-ready values under their peers.yaml keys, times back to
    their '200ms' form: the output is itself a valid peers.yaml (tested)."""
    if isinstance(value, m.HostPort):
        host = f"[{value.host}]" if ":" in value.host else value.host
        return {"listen": f"{host}:{value.port}"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {
            f.name: _plain(getattr(value, f.name), f.name)
            for f in dataclasses.fields(value)
            if getattr(value, f.name) not in (None, ())  # unset: the loader's own default
        }
        return _reshape(value, out)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool) and key in _DURATION_FIELDS:
        return f"{value}ms"
    return value


def _reshape(value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Where the YAML nests differently from the model."""
    if isinstance(value, m.Config):
        routes = {"ppid": out.pop("ppid_routes", []), "diameter": out.pop("diameter_routes", [])}
        out["routes"] = {k: v for k, v in routes.items() if v}
    elif isinstance(value, m.Node) and "m3ua_point_code" in out:
        out["m3ua"] = {"point_code": out.pop("m3ua_point_code")}
    elif isinstance(value, DiameterRoute):
        out["peers"] = out.pop("to")
    elif isinstance(value, DiameterNode):
        out = {"origin_host": out.pop("host"), "origin_realm": out.pop("realm"), **out}
    elif isinstance(value, m.Peer) and not out["port"]:
        del out["port"]  # accept peers: not ours to know
    return out


_DURATION_FIELDS = {
    "initial",
    "min",
    "max",
    "interval",
    "max_timeout",
    "sack_delay",
    "peer_sack_delay",
    "after",
    "watchdog",
    "capabilities_timeout",
    "request_timeout",
}
