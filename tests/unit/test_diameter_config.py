"""peers.yaml: node.diameter (identity, capabilities, relay timers) and routes.diameter."""

from __future__ import annotations

import pytest

from sigmw.config.diameter import (
    DiameterNode,
    DiameterRoute,
    RedirectPolicy,
    RouteTarget,
    VendorApplication,
)
from sigmw.config.loader import ConfigError, parse_config

BASE = """\
node:
  name: relay1
  diameter: {origin_host: relay1.example.net, origin_realm: example.net}
peers:
  - name: hss1
    protocol: diameter
    transport: sctp
    role: connect
    addresses: [10.0.0.2]
    port: 3868
    diameter: {host: hss1.example.org, realm: example.org}
  - name: hss2
    protocol: diameter
    transport: tcp
    role: connect
    addresses: [10.0.0.3]
    port: 3868
    diameter: {host: hss2.example.org, realm: example.org}
  - name: far
    protocol: raw
    transport: sctp
    role: connect
    addresses: [10.0.0.4]
    port: 9999
routes:
  diameter:
    - {realm: example.org, peers: [hss1, hss2]}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as failed:
        parse_config(text)
    return [str(p) for p in failed.value.problems]


def test_node_diameter_defaults() -> None:
    node = parse_config(BASE).node.diameter
    assert node == DiameterNode("relay1.example.net", "example.net")
    assert node.auth_applications == (0xFFFFFFFF,)  # the relay application
    assert (node.vendor_id, node.product_name) == (0, "sigmw")
    assert (node.acct_applications, node.vendor_applications, node.supported_vendors) == (
        (),
        (),
        (),
    )
    assert (node.watchdog, node.capabilities_timeout, node.request_timeout) == (
        30000,
        10000,
        10000,
    )
    assert node.max_pending == 4096
    assert node.redirect is RedirectPolicy.PASS
    assert node.max_message_size == 65536


def test_node_diameter_every_field() -> None:
    text = BASE.replace(
        "  diameter: {origin_host: relay1.example.net, origin_realm: example.net}\n",
        """\
  diameter:
    origin_host: relay1.example.net
    origin_realm: example.net
    vendor_id: 10415
    product_name: lab-relay
    auth_applications: [relay, 4]
    acct_applications: [3]
    vendor_applications:
      - {vendor: 10415, auth: 16777251}
      - {vendor: 10415, acct: 9}
    supported_vendors: [10415, 5535]
    watchdog: 6s
    capabilities_timeout: 2s
    request_timeout: 1500ms
    max_pending: 100
    redirect: follow
    max_message_size: 8192
""",
    )
    assert parse_config(text).node.diameter == DiameterNode(
        "relay1.example.net",
        "example.net",
        vendor_id=10415,
        product_name="lab-relay",
        auth_applications=(0xFFFFFFFF, 4),
        acct_applications=(3,),
        vendor_applications=(
            VendorApplication(10415, auth=16777251),
            VendorApplication(10415, acct=9),
        ),
        supported_vendors=(10415, 5535),
        watchdog=6000,
        capabilities_timeout=2000,
        request_timeout=1500,
        max_pending=100,
        redirect=RedirectPolicy.FOLLOW,
        max_message_size=8192,
    )


def test_plain_names_get_their_position_as_priority() -> None:
    config = parse_config(BASE)
    assert config.diameter_routes == (
        DiameterRoute("example.org", (RouteTarget("hss1", 1, 1), RouteTarget("hss2", 2, 1))),
    )


def test_route_entries_with_priority_weight_and_filters() -> None:
    text = BASE.replace(
        "    - {realm: example.org, peers: [hss1, hss2]}\n",
        """\
    - realm: example.org
      application: 16777251
      origin_realm: visited.example.net
      peers:
        - {peer: hss1, priority: 1, weight: 3}
        - {peer: hss2, priority: 1}
    - realm: "*"
      application: relay
      peers: [hss2]
""",
    )
    assert parse_config(text).diameter_routes == (
        DiameterRoute(
            "example.org",
            (RouteTarget("hss1", 1, 3), RouteTarget("hss2", 1, 1)),
            application=16777251,
            origin_realm="visited.example.net",
        ),
        DiameterRoute("*", (RouteTarget("hss2", 1, 1),), application=0xFFFFFFFF),
    )


def test_no_diameter_routes_is_an_empty_table() -> None:
    text = BASE.replace(
        "routes:\n  diameter:\n    - {realm: example.org, peers: [hss1, hss2]}\n", ""
    )
    assert parse_config(text).diameter_routes == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "peers: [hss1, hss2]",
            "peers: [hss1, hss9]",
            "peers.yaml:27: routes.diameter[0].peers: 'hss9' is not a peer",
        ),
        (
            "peers: [hss1, hss2]",
            "peers: [hss1, far]",
            "peers.yaml:27: routes.diameter[0].peers: 'far' is not a diameter peer",
        ),
        (
            "peers: [hss1, hss2]",
            "peers: []",
            "peers.yaml:27: routes.diameter[0].peers: needs at least one peer",
        ),
        (
            "peers: [hss1, hss2]",
            "peers: [{peer: hss1, weight: 0}]",
            "peers.yaml:27: routes.diameter[0].peers[0].weight: 0 is out of range; "
            "allowed: 1 to 1000",
        ),
        (
            "{realm: example.org, peers",
            "{peers",
            "peers.yaml:27: routes.diameter[0]: missing required key 'realm'",
        ),
        (
            "origin_realm: example.net}",
            "origin_realm: example.net, redirect: bounce}",
            "peers.yaml:3: node.diameter.redirect: 'bounce' is not allowed; allowed: pass | follow",
        ),
        (
            "origin_realm: example.net}",
            "origin_realm: example.net, vendor_applications: [{vendor: 1, auth: 2, acct: 3}]}",
            "peers.yaml:3: node.diameter.vendor_applications[0]: give exactly one of auth or acct",
        ),
        (
            "{origin_host: relay1.example.net, origin_realm: example.net}",
            "{origin_host: relay1.example.net}",
            "peers.yaml:3: node.diameter: missing required key 'origin_realm'",
        ),
    ],
)
def test_mistakes_are_located(old: str, new: str, message: str) -> None:
    assert old in BASE
    assert _problems(BASE.replace(old, new, 1)) == [message]
