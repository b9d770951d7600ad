"""peers.yaml -> Config, or ConfigError listing every problem with file and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sigmw.config import model as m
from sigmw.config.diameter import DiameterRoute
from sigmw.config.diameter_loader import diameter_routes, node_diameter
from sigmw.config.yamlread import Problem, Reader, Spec
from sigmw.config.yamlread import read_fields as _fields
from sigmw.core.errors import SigmwError

T = TypeVar("T")


class ConfigError(SigmwError):
    """The configuration is invalid; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


def load_config(path: str | Path) -> m.Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, str(path))


def parse_config(text: str, filename: str = "peers.yaml") -> m.Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError([Problem(filename, line, "", f"not valid YAML: {exc.problem}")]) from None
    if root is None:
        raise ConfigError([Problem(filename, 1, "", "the file is empty")])
    r = Reader(filename)
    config = _config(r, root)
    if r.problems or config is None:
        raise ConfigError(r.problems)
    return config


def _section(r: Reader, cls: type[T], spec: Spec) -> Callable[[yaml.Node, str], T | None]:
    def read(node: yaml.Node, path: str) -> T | None:
        got = _fields(r, node, path, spec)
        return None if got is None else cls(**got)

    return read


def _sctp(r: Reader) -> Callable[[yaml.Node, str], m.SctpParams | None]:
    count: Callable[[yaml.Node, str], int | None] = lambda n, p: r.integer(n, p, 0, 65535)  # noqa: E731
    dur = r.duration
    spec: Spec = {
        "streams": _section(
            r,
            m.Streams,
            {
                "outbound": lambda n, p: r.integer(n, p, 1, 65535),
                "inbound": lambda n, p: r.integer(n, p, 1, 65535),
            },
        ),
        "rto": _section(r, m.Rto, {"initial": dur, "min": dur, "max": dur}),
        "heartbeat": _section(r, m.Heartbeat, {"interval": dur, "enabled": r.boolean}),
        "path_max_retrans": count,
        "assoc_max_retrans": count,
        "potentially_failed_threshold": count,
        "init": _section(
            r, m.Init, {"max_attempts": lambda n, p: r.integer(n, p, 1, 255), "max_timeout": dur}
        ),
        "sack_delay": lambda n, p: r.duration(n, p, 0, 500),  # RFC 9260: at most 500 ms
        "peer_sack_delay": lambda n, p: r.duration(n, p, 0, 500),
        "nodelay": r.boolean,
        "receive_buffer": lambda n, p: r.integer(n, p, 0, 2**30),
        "send_buffer": lambda n, p: r.integer(n, p, 0, 2**30),
        "failback": _section(r, m.Failback, {"after": dur}),
    }

    def read(node: yaml.Node, path: str) -> m.SctpParams | None:
        got = _fields(r, node, path, spec)
        if got is None:
            return None
        params = m.SctpParams(**got)
        if not params.rto.min <= params.rto.initial <= params.rto.max:
            r.error_at(
                f"{path}.rto",
                f"need min <= initial <= max, got min {params.rto.min}ms, "
                f"initial {params.rto.initial}ms, max {params.rto.max}ms",
            )
            return None
        if params.potentially_failed_threshold > params.path_max_retrans:
            r.error_at(f"{path}.potentially_failed_threshold", "must not exceed path_max_retrans")
            return None
        return params

    return read


def _identity(r: Reader) -> Callable[[yaml.Node, str], m.DiameterIdentity | None]:
    def read(node: yaml.Node, path: str) -> m.DiameterIdentity | None:
        got = _fields(
            r,
            node,
            path,
            {"host": r.text, "realm": r.text, "origin_host": r.text, "origin_realm": r.text},
        )
        if got is None:
            return None
        host, realm = (
            got.get("host", got.get("origin_host")),
            got.get("realm", got.get("origin_realm")),
        )
        if host is None or realm is None:
            r.error(node, path, "needs host and realm (origin_host/origin_realm for the node)")
            return None
        return m.DiameterIdentity(host, realm)

    return read


def _addresses(r: Reader) -> Callable[[yaml.Node, str], tuple[str, ...] | None]:
    def read(node: yaml.Node, path: str) -> tuple[str, ...] | None:
        got = r.list_of(node, path, r.address)
        if got is not None and not got:
            r.error(node, path, "needs at least one address")
            return None
        if got is not None and len(set(got)) != len(got):
            r.error(node, path, "an address is listed twice")
            return None
        return None if got is None else tuple(got)

    return read


def _port(r: Reader) -> Callable[[yaml.Node, str], int | None]:
    return lambda n, p: r.integer(n, p, 1, 65535)


def _endpoint(r: Reader) -> Callable[[yaml.Node, str], m.HostPort | None]:
    def read(node: yaml.Node, path: str) -> m.HostPort | None:
        got = _fields(r, node, path, {"listen": r.text}, required=("listen",))
        if got is None:
            return None
        host, sep, port = str(got["listen"]).rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
            r.error_at(f"{path}.listen", f"'{got['listen']}' is not host:port")
            return None
        address = r.address(
            yaml.ScalarNode("tag:yaml.org,2002:str", host.strip("[]"), node.start_mark),
            f"{path}.listen",
        )
        return None if address is None else m.HostPort(address, int(port))

    return read


def _config(r: Reader, root: yaml.Node) -> m.Config | None:
    node_spec: Spec = {
        "name": r.text,
        "diameter": node_diameter(r),
        "m3ua": lambda n, p: _fields(r, n, p, {"point_code": r.text}),
    }
    common: Spec = {
        "name": r.text,
        "protocol": lambda n, p: r.choice(n, p, m.Protocol),
        "transport": lambda n, p: r.choice(n, p, m.Transport),
        "addresses": _addresses(r),
        "port": _port(r),
        "sctp": _sctp(r),
    }
    peer_spec: Spec = {
        **common,
        "role": lambda n, p: r.choice(n, p, m.Role),
        "local_addresses": _addresses(r),
        "diameter": _identity(r),
        "reconnect": _section(
            r,
            m.Reconnect,
            {
                "initial": r.duration,
                "max": r.duration,
                "jitter": lambda n, p: r.number(n, p, 0.0, 1.0),
            },
        ),
    }
    needed = ("name", "protocol", "transport", "addresses", "port")
    top = r.mapping(
        root,
        "",
        ("node", "listen", "peers", "routes", "metrics", "admin", "readiness"),
        required=("node",),
    )
    if top is None:
        return None
    node_fields = (
        _fields(r, top["node"], "node", node_spec, required=("name",)) if "node" in top else None
    )
    listeners = (
        [_fields(r, n, p, common, needed) for p, n in r.items(top["listen"], "listen")]
        if "listen" in top
        else []
    )
    peers = (
        [
            _fields(r, n, p, peer_spec, (*needed[:-1], "role"))  # port: connect peers only
            for p, n in r.items(top["peers"], "peers")
        ]
        if "peers" in top
        else []
    )
    routes = _routes(r, top["routes"]) if "routes" in top else ([], [])
    extra: dict[str, Any] = {k: _endpoint(r)(top[k], k) for k in ("metrics", "admin") if k in top}
    if "readiness" in top:
        ready = _fields(
            r,
            top["readiness"],
            "readiness",
            {"min_peers_up": lambda n, p: r.integer(n, p, 0, 65535)},
        )
        extra["readiness"] = None if ready is None else m.Readiness(**ready)
    if r.problems or node_fields is None or routes is None:
        return None
    m3ua = node_fields.pop("m3ua", None)
    node = m.Node(**node_fields, m3ua_point_code=(m3ua or {}).get("point_code"))
    config = m.Config(
        node=node,
        listen=tuple(m.Listener(**f) for f in listeners if f is not None),
        peers=tuple(_peer(f) for f in peers if f is not None),
        ppid_routes=tuple(routes[0]),
        diameter_routes=tuple(routes[1]),
        **{k: v for k, v in extra.items() if v is not None},
    )
    _cross_checks(r, config)
    return None if r.problems else config


def _peer(fields: dict[str, Any]) -> m.Peer:
    return m.Peer(**{"port": 0, **fields})  # an accept peer's own port is not ours to know


def _routes(r: Reader, node: yaml.Node) -> tuple[list[m.PpidRoute], list[DiameterRoute]] | None:
    found = r.mapping(node, "routes", ("ppid", "diameter"))
    if found is None:
        return None
    out = []
    for i, item in enumerate(r.sequence(found["ppid"], "routes.ppid") if "ppid" in found else []):
        path = f"routes.ppid[{i}]"
        got = _fields(
            r,
            item,
            path,
            {
                "ppid": lambda n, p: r.integer(n, p, 0, 2**32 - 1),
                "to": lambda n, p: r.list_of(n, p, r.text),
            },
            required=("ppid", "to"),
        )
        if got is not None:
            out.append(m.PpidRoute(got["ppid"], tuple(got["to"])))
    realms = diameter_routes(r, found["diameter"], "routes.diameter") if "diameter" in found else []
    return None if realms is None else (out, realms)


def _cross_checks(r: Reader, c: m.Config) -> None:
    """Rules that span fields; each problem is placed at the line of the field at fault."""
    _unique(r, "listen", [x.name for x in c.listen])
    _unique(r, "peers", [p.name for p in c.peers])
    for section, items in (("listen", c.listen), ("peers", c.peers)):
        for x in items:
            if x.transport is m.Transport.TCP and x.protocol is not m.Protocol.DIAMETER:
                r.error_at(
                    f"{section}[{x.name}].transport",
                    f"tcp carries only diameter, not {x.protocol.value}",
                )
            if x.protocol is m.Protocol.DIAMETER and c.node.diameter is None:
                r.error_at(
                    "node",
                    f"{section}[{x.name}] speaks diameter: node needs "
                    "diameter: {origin_host, origin_realm}",
                )
    for p in c.peers:
        path = f"peers[{p.name}]"
        if p.role is m.Role.ACCEPT and not any(
            lst.protocol is p.protocol and lst.transport is p.transport for lst in c.listen
        ):
            r.error_at(
                f"{path}.role",
                f"accept peer has no listener for {p.protocol.value} over {p.transport.value}",
            )
        if p.protocol is m.Protocol.DIAMETER and p.diameter is None:
            r.error_at(path, "a diameter peer needs diameter: {host, realm}")
        if p.role is m.Role.CONNECT and not p.port:
            r.error_at(path, "a connect peer needs the port to connect to")
        if p.reconnect.initial > p.reconnect.max:
            r.error_at(f"{path}.reconnect", "need initial <= max")
    names = {p.name for p in c.peers}
    diameter_peers = {p.name for p in c.peers if p.protocol is m.Protocol.DIAMETER}
    for i, droute in enumerate(c.diameter_routes):
        for target in droute.to:
            if target.peer not in diameter_peers:
                why = "is not a diameter peer" if target.peer in names else "is not a peer"
                r.error_at(f"routes.diameter[{i}].peers", f"'{target.peer}' {why}")
    wanted = c.readiness.min_peers_up
    if wanted is not None and wanted > len(c.peers):
        r.error_at(
            "readiness.min_peers_up", f"{wanted} peers can never be up: {len(c.peers)} configured"
        )
    if c.metrics == c.admin and c.metrics.port:
        r.error_at("admin.listen", "metrics and admin need different ports")
    seen: set[int] = set()
    for i, route in enumerate(c.ppid_routes):
        for name in route.to:
            if name not in names:
                r.error_at(f"routes.ppid[{i}].to", f"no peer named '{name}'")
        if route.ppid in seen:
            r.error_at(f"routes.ppid[{i}].ppid", f"PPID {route.ppid} is routed twice")
        seen.add(route.ppid)


def _unique(r: Reader, section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            r.error_at(f"{section}[{name}]", f"the name '{name}' is used twice")
        seen.add(name)
