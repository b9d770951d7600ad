"""peers.yaml: the shipped example loads; every kind of mistake gets its exact message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sigmw.config import model as m
from sigmw.config.loader import ConfigError, load_config, parse_config
from sigmw.config.report import render, warnings
from sigmw.io.daemon import tuning_of

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
node:
  name: relay1
  diameter: {origin_host: relay1.example.net, origin_realm: example.net}
listen:
  - name: raw-in
    protocol: raw
    transport: sctp
    addresses: [10.0.0.1]
    port: 9999
peers:
  - name: far
    protocol: raw
    transport: sctp
    role: connect
    addresses: [10.0.0.2, 10.0.1.2]
    port: 9999
    sctp:
      rto: {initial: 300ms, min: 250ms, max: 500ms}
routes:
  ppid:
    - {ppid: 9999, to: [far]}
"""


def test_shipped_example_is_valid() -> None:
    config = load_config(ROOT / "peers.yaml")
    hss1 = config.peer("hss1")
    assert hss1 is not None
    assert hss1.addresses == ("10.0.0.2", "10.0.1.2")
    assert hss1.sctp.rto == m.Rto(initial=200, min=100, max=500)
    assert hss1.sctp.failback.after == 5000
    assert hss1.reconnect == m.Reconnect(1000, 30000, 0.2)
    assert [r.to for r in config.ppid_routes] == [("lab-b", "lab-c")]
    s6a, shared = config.diameter_routes
    assert (s6a.realm, s6a.application) == ("example.net", 16777251)
    assert [(t.peer, t.priority) for t in s6a.to] == [("hss1", 1), ("hss2", 2)]
    assert [(t.peer, t.priority, t.weight) for t in shared.to] == [("hss1", 1, 2), ("hss2", 1, 1)]
    assert config.metrics == m.HostPort("127.0.0.1", 9464)
    assert all(not warnings(p) for p in config.peers)  # the example is sound


def test_defaults_are_filled_in() -> None:
    peer = parse_config(BASE).peers[0]
    assert peer.sctp.streams == m.Streams(16, 16)
    assert peer.sctp.heartbeat == m.Heartbeat(200, True)
    assert (peer.sctp.path_max_retrans, peer.sctp.assoc_max_retrans) == (2, 4)
    assert peer.sctp.nodelay is True
    assert (peer.sctp.receive_buffer, peer.sctp.send_buffer) == (2 * 1024 * 1024, 0)
    assert not warnings(peer)


def test_socket_buffers_are_read_and_reach_the_endpoint_tuning() -> None:
    config = parse_config(
        BASE.replace(
            "      rto:", "      receive_buffer: 4194304\n      send_buffer: 0\n      rto:"
        )
    )
    peer = config.peers[0]
    assert (peer.sctp.receive_buffer, peer.sctp.send_buffer) == (4194304, 0)
    endpoint = tuning_of(peer.sctp, endpoint=True)
    assert (endpoint.receive_buffer, endpoint.send_buffer) == (4194304, None)  # 0: kernel's
    association = tuning_of(peer.sctp, endpoint=False)  # socket-wide: never per association
    assert (association.receive_buffer, association.send_buffer) == (None, None)


BAD = [
    (
        "rto: {initial: 300ms, min: 250ms, max: 500ms}",
        "rto: {initial: 300ms, min: 250, max: 500ms}",
        "peers.yaml:18: peers[far].sctp.rto.min: '250' is not a duration; "
        "write e.g. 200ms, 1s, 1.5s, 2m",
    ),
    (
        "rto: {initial: 300ms, min: 250ms, max: 500ms}",
        "rto: {initial: 300ms, min: 600ms, max: 500ms}",
        "peers.yaml:18: peers[far].sctp.rto: need min <= initial <= max, got min 600ms, "
        "initial 300ms, max 500ms",
    ),
    (
        "    port: 9999\n    sctp",
        "    port: 99999\n    sctp",
        "peers.yaml:16: peers[far].port: 99999 is out of range; allowed: 1 to 65535",
    ),
    (
        "role: connect",
        "role: conect",
        "peers.yaml:14: peers[far].role: 'conect' is not allowed (did you mean 'connect'?); "
        "allowed: connect | accept",
    ),
    (
        "    sctp:\n",
        "    sctpp:\n",
        "peers.yaml:17: peers[far].sctpp: unknown key 'sctpp' (did you mean 'sctp'?); "
        "allowed: name, protocol, transport, addresses, port, sctp, role, local_addresses, "
        "diameter, reconnect",
    ),
    (
        "[10.0.0.2, 10.0.1.2]",
        "[10.0.0.2, hss.example.net]",
        "peers.yaml:15: peers[far].addresses[1]: 'hss.example.net' is not an IPv4 or IPv6 "
        "address (names are not resolved: a signaling peer's addresses must not depend on DNS)",
    ),
    (
        "[10.0.0.2, 10.0.1.2]",
        "[10.0.0.2, 10.0.0.2]",
        "peers.yaml:15: peers[far].addresses: an address is listed twice",
    ),
    (
        "[10.0.0.2, 10.0.1.2]",
        "[]",
        "peers.yaml:15: peers[far].addresses: needs at least one address",
    ),
    (
        "      rto:",
        "      streams: {outbound: 0}\n      rto:",
        "peers.yaml:18: peers[far].sctp.streams.outbound: 0 is out of range; allowed: 1 to 65535",
    ),
    (
        "      rto:",
        "      receive_buffer: -1\n      rto:",
        "peers.yaml:18: peers[far].sctp.receive_buffer: -1 is out of range; "
        "allowed: 0 to 1073741824",
    ),
    ("to: [far]", "to: [near]", "peers.yaml:21: routes.ppid[0].to: no peer named 'near'"),
    (
        "  - name: far",
        "  - name: far\n    protocol: raw\n    transport: sctp\n"
        "    role: connect\n    addresses: [10.0.0.3]\n    port: 1\n  - name: far",
        "peers.yaml:17: peers[far]: the name 'far' is used twice",
    ),
    (
        "role: connect",
        "role: accept\n    reconnect: {initial: 1s, max: 30s}",
        None,
    ),  # valid: an accept peer with a listener of its protocol and transport
    (
        "protocol: raw\n    transport: sctp\n    role: connect",
        "protocol: m3ua\n    transport: sctp\n    role: accept",
        "peers.yaml:14: peers[far].role: accept peer has no listener for m3ua over sctp",
    ),
    (
        "transport: sctp\n    role",
        "transport: tcp\n    role",
        "peers.yaml:13: peers[far].transport: tcp carries only diameter, not raw",
    ),
    (
        "    sctp:\n",
        "    reconnect: {initial: 10s, max: 1s}\n    sctp:\n",
        "peers.yaml:17: peers[far].reconnect: need initial <= max",
    ),
    (
        "    sctp:\n",
        "    reconnect: {jitter: 2}\n    sctp:\n",
        "peers.yaml:17: peers[far].reconnect.jitter: '2' is not a number from 0.0 to 1.0",
    ),
    ("  name: relay1\n", "", "peers.yaml:2: node: missing required key 'name'"),
    (
        "ppid: 9999,",
        "ppid: -1,",
        "peers.yaml:21: routes.ppid[0].ppid: -1 is out of range; allowed: 0 to 4294967295",
    ),
    (
        "node:",
        "metrics: {listen: localhost}\nnode:",
        "peers.yaml:1: metrics.listen: 'localhost' is not host:port",
    ),
    (
        "routes:",
        "peers2: []\nroutes:",
        "peers.yaml:19: peers2: unknown key 'peers2' (did you mean 'peers'?); allowed: node, "
        "listen, peers, routes, metrics, admin, readiness",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD)
def test_bad_config_gets_its_exact_message(old: str, new: str, message: str | None) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    if message is None:
        parse_config(text)
        return
    with pytest.raises(ConfigError) as failed:
        parse_config(text)
    assert [str(p) for p in failed.value.problems] == [message]


def test_role_accept_without_listener_is_named() -> None:
    text = (
        BASE.replace("listen:\n  - name: raw-in", "listen:\n  - name: dia-in")
        .replace(
            "    protocol: raw\n    transport: sctp\n    addresses: [10.0.0.1]",
            "    protocol: diameter\n    transport: tcp\n    addresses: [10.0.0.1]",
            1,
        )
        .replace("role: connect", "role: accept")
    )
    with pytest.raises(ConfigError, match="accept peer has no listener for raw over sctp"):
        parse_config(text)


def test_all_problems_are_reported_at_once() -> None:
    text = BASE.replace("port: 9999\n    sctp", "port: 0\n    sctp").replace(
        "role: connect", "role: x"
    )
    with pytest.raises(ConfigError) as failed:
        parse_config(text)
    assert len(failed.value.problems) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node: [", "peers.yaml:1: not valid YAML: expected the node content"),
        ("", "peers.yaml:1: the file is empty"),
        ("node: [1]\n", "peers.yaml:1: node: expected a mapping, got a list"),
    ],
)
def test_unreadable_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as failed:
        parse_config(text)
    assert str(failed.value.problems[0]).startswith(message)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml:0: cannot read: No such file"):
        load_config(tmp_path / "nope.yaml")


def _peer(**sctp: object) -> m.Peer:
    peer = parse_config(BASE).peers[0]
    return dataclasses.replace(peer, sctp=dataclasses.replace(peer.sctp, **sctp))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sack_delay": 300}, "sack_delay 300ms is not below rto.min 250ms"),
        ({"rto": m.Rto(200, 100, 500)}, "rto.min 100ms is not above the peer's delayed-SACK"),
        ({"heartbeat": m.Heartbeat(200, False)}, "heartbeats are disabled"),
        ({"potentially_failed_threshold": 1}, "has no effect with path_max_retrans 2"),
        ({"assoc_max_retrans": 10}, "assoc_max_retrans 10 exceeds path_max_retrans x paths"),
        ({"nodelay": False}, "nodelay is off"),
        ({"streams": m.Streams(1, 16)}, "one outbound stream"),
    ],
)
def test_dangerous_combinations_are_warned(change: dict[str, object], needle: str) -> None:
    found = warnings(_peer(**change))
    assert any(needle in w for w in found), found


def test_detection_slower_than_the_diameter_watchdog_is_warned() -> None:
    peer = dataclasses.replace(
        _peer(rto=m.Rto(3000, 1000, 60000)),
        protocol=m.Protocol.DIAMETER,
        diameter=m.DiameterIdentity("h", "r"),
    )
    assert any("slower than the Diameter watchdog" in w for w in warnings(peer))


def test_render_shows_effective_config_bounds_and_warnings() -> None:
    config = parse_config(BASE.replace("      rto:", "      nodelay: false\n      rto:"))
    text = render(config, "peers.yaml")
    assert text.startswith("peers.yaml: valid")
    assert "sack_delay: 20ms" in text  # a default, filled in and shown with its unit
    assert "path failure detected within 2.0s with traffic, 3.8s idle" in text
    assert "fails back to 10.0.0.2 after 5s of stability" in text
    assert "WARNING: nodelay is off" in text


def test_check_config_prints_a_peers_yaml_that_loads_back_the_same() -> None:
    """The effective configuration uses peers.yaml's own keys and units: an operator
    can paste it back, and it means the same (every default filled in)."""
    from pathlib import Path

    import yaml

    from sigmw.config.loader import parse_config
    from sigmw.config.report import render

    for source in (Path("peers.yaml"), Path("deploy/kubernetes/configmap.yaml")):
        text = source.read_text()
        if source.suffix == ".yaml" and "kind: ConfigMap" in text:
            text = yaml.safe_load(text)["data"]["peers.yaml"]
        config = parse_config(text, str(source))
        report = render(config, str(source))
        effective = report.split("# effective configuration (defaults filled in)\n", 1)[1]
        effective = effective.split("\npeer ", 1)[0]
        assert parse_config(effective, "effective") == config, source
        assert "watchdog: 30000ms" in effective or "watchdog: " not in effective
