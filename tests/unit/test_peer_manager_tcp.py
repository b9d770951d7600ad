"""The peer manager with Diameter-over-TCP peers: one path per connection, no primary to pin."""

from __future__ import annotations

from sigmw.config.loader import parse_config
from sigmw.peers import lifecycle as lc
from sigmw.peers.actions import Log, Refuse, SetPrimary, Tune
from sigmw.peers.manager import PeerManager
from sigmw.sctp.constants import AssocChangeState
from sigmw.sctp.notifications import AssocChange
from sigmw.sctp.structs import PathInfo

CONFIG = """\
node: {name: relay1, diameter: {origin_host: relay.example, origin_realm: example}}
listen:
  - {name: dia-tcp, protocol: diameter, transport: tcp, addresses: [10.0.0.1], port: 3868}
  - {name: dia-sctp, protocol: diameter, transport: sctp, addresses: [10.0.0.1], port: 3868}
peers:
  - name: hss
    protocol: diameter
    transport: tcp
    role: connect
    addresses: [10.0.0.2, 10.0.1.2]
    port: 3868
    diameter: {host: hss.example, realm: example}
  - name: mme-sctp
    protocol: diameter
    transport: sctp
    role: accept
    addresses: [10.0.2.5]
    port: 3868
    diameter: {host: mme.example, realm: example}
  - name: mme-tcp
    protocol: diameter
    transport: tcp
    role: accept
    addresses: [10.0.2.5]
    port: 3868
    diameter: {host: mme2.example, realm: example}
"""


def up(assoc: int) -> AssocChange:
    return AssocChange(assoc, AssocChangeState.COMM_UP, 0, 1, 1, (), ())


def manager() -> PeerManager:
    mgr = PeerManager(parse_config(CONFIG, "peers.yaml"), lambda: 0.5)
    mgr.start(0.0)
    return mgr


def test_tcp_peer_up_is_tuned_without_paths_or_primary() -> None:
    mgr = manager()
    out = mgr.assoc_event("hss", up(3), 1.0)
    assert [o for o in out if not isinstance(o, Log)] == [Tune("hss", 3)]  # no SetPrimary
    rt = mgr.peers["hss"]
    assert rt.state is lc.State.UP and rt.paths is None
    reading = PathInfo(("10.0.0.2", 3868), 1, 0, 5, 200, 1500)
    assert mgr.path_readout("hss", [], 2.0) == []
    assert mgr.path_readout("hss", [reading], 2.0) == []
    assert mgr.handle_timer(10.0) == []
    assert mgr.next_deadline() is None


def test_incoming_tcp_connection_goes_to_the_tcp_peer_of_that_host() -> None:
    mgr = manager()
    name, out = mgr.incoming("dia-tcp", up(4), [("10.0.2.5", 40000)], 1.0)
    assert name == "mme-tcp"
    assert mgr.peers["mme-tcp"].state is lc.State.UP
    assert mgr.peers["mme-sctp"].state is not lc.State.UP
    assert not any(isinstance(o, SetPrimary) for o in out)
    name, _ = mgr.incoming("dia-sctp", up(9), [("10.0.2.5", 3868)], 1.0)
    assert name == "mme-sctp"


def test_incoming_from_an_unknown_host_is_refused() -> None:
    name, out = manager().incoming("dia-tcp", up(5), [("10.9.9.9", 40000)], 1.0)
    assert name is None
    assert Refuse("dia-tcp", 5, (("10.9.9.9", 40000),)) in out
