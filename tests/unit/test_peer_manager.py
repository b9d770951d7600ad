"""The peer manager's decisions, with a fake clock and fixed randomness: no sockets."""

from __future__ import annotations

import dataclasses

import pytest

from sigmw.config import model as m
from sigmw.config.loader import parse_config
from sigmw.peers import lifecycle as lc
from sigmw.peers.actions import Connect, Log, Refuse, SetPrimary, Shutdown, Tune
from sigmw.peers.backoff import Backoff
from sigmw.peers.manager import PeerManager
from sigmw.peers.paths import PathSelector, PrimaryChoice
from sigmw.peers.reload import plan_reload
from sigmw.sctp.constants import AssocChangeState, PathState, PeerAddrState
from sigmw.sctp.notifications import AssocChange, PeerAddrChange

CONFIG = """\
node: {name: relay1}
listen:
  - {name: raw-in, protocol: raw, transport: sctp, addresses: [10.0.0.1], port: 9999}
peers:
  - name: far
    protocol: raw
    transport: sctp
    role: connect
    addresses: [10.0.0.2, 10.0.1.2]
    port: 9999
    reconnect: {initial: 1s, max: 8s, jitter: 0.2}
    sctp: {failback: {after: 5s}}
  - {name: lab, protocol: raw, transport: sctp, role: accept, addresses: [10.0.2.5], port: 9999}
"""
P1, P2 = ("10.0.0.2", 9999), ("10.0.1.2", 9999)


def note(state: AssocChangeState, assoc: int = 7) -> AssocChange:
    return AssocChange(assoc, state, 0, 16, 16, (), ())


def path(address: tuple[str, int], state: PeerAddrState, assoc: int = 7) -> PeerAddrChange:
    return PeerAddrChange(assoc, address, state, 0)


def actions(outputs: list[object]) -> list[object]:
    return [o for o in outputs if not isinstance(o, Log)]


# --- backoff ------------------------------------------------------------------------


def test_backoff_doubles_to_max_and_resets() -> None:
    b = Backoff(1000, 8000, 0.0, rng=lambda: 0.5)
    assert [b.next_delay_ms() for _ in range(6)] == [1000, 2000, 4000, 8000, 8000, 8000]
    b.reset()
    assert b.next_delay_ms() == 1000


@pytest.mark.parametrize(("rnd", "delay"), [(0.0, 800), (0.5, 1000), (0.999999, 1200)])
def test_backoff_jitter_spreads_within_bounds(rnd: float, delay: int) -> None:
    assert Backoff(1000, 8000, 0.2, rng=lambda: rnd).next_delay_ms() == delay


# --- the transition tables, row by row ----------------------------------------------------


@pytest.mark.parametrize(("key", "row"), list(lc.CONNECT_ROLE.items()))
def test_connect_role_rows(key: tuple[lc.State, lc.Event], row: lc.Row) -> None:
    assert lc.step(lc.CONNECT_ROLE, *key) == row


@pytest.mark.parametrize(("key", "row"), list(lc.ACCEPT_ROLE.items()))
def test_accept_role_rows(key: tuple[lc.State, lc.Event], row: lc.Row) -> None:
    assert lc.step(lc.ACCEPT_ROLE, *key) == row


def test_unlisted_pair_is_an_error() -> None:
    with pytest.raises(lc.UnexpectedEvent, match="retry_timer is not expected in state up"):
        lc.step(lc.CONNECT_ROLE, lc.State.UP, lc.Event.RETRY_TIMER)
    assert (lc.State.UP, lc.Event.RETRY_TIMER) not in lc.CONNECT_ROLE


# --- path selection ------------------------------------------------------------------


def test_failover_picks_the_best_usable_alternate() -> None:
    p3 = ("10.0.3.2", 9999)
    sel = PathSelector(P1, 5000, [P1, P2, p3])
    sel.on_readout(P2, PathState.ACTIVE, 30, now=0)
    sel.on_readout(p3, PathState.ACTIVE, 5, now=0)
    assert sel.on_event(P1, PeerAddrState.ADDR_POTENTIALLY_FAILED, now=1) == [
        PrimaryChoice(p3, "failover")
    ]  # lowest srtt wins
    assert sel.failovers == 1


def test_failback_waits_for_stability_and_a_flap_restarts_the_wait() -> None:
    sel = PathSelector(P1, 5000, [P1, P2])
    assert sel.on_event(P1, PeerAddrState.ADDR_UNREACHABLE, now=0) == [
        PrimaryChoice(P2, "failover")
    ]
    assert sel.on_event(P1, PeerAddrState.ADDR_AVAILABLE, now=10) == []
    assert sel.next_deadline() == 15
    assert sel.on_event(P1, PeerAddrState.ADDR_POTENTIALLY_FAILED, now=12) == []  # flap
    assert sel.next_deadline() is None
    sel.on_event(P1, PeerAddrState.ADDR_AVAILABLE, now=13)
    assert sel.on_timer(now=17.9) == []
    assert sel.on_timer(now=18) == [PrimaryChoice(P1, "failback")]
    assert (sel.current, sel.failbacks) == (P1, 1)


def test_no_failover_when_no_path_is_usable_and_zero_failback_means_never() -> None:
    sel = PathSelector(P1, 0, [P1, P2])
    sel.on_event(P2, PeerAddrState.ADDR_UNREACHABLE, now=0)
    assert sel.on_event(P1, PeerAddrState.ADDR_UNREACHABLE, now=1) == []
    assert sel.on_event(P2, PeerAddrState.ADDR_AVAILABLE, now=2) == [PrimaryChoice(P2, "failover")]
    sel.on_event(P1, PeerAddrState.ADDR_AVAILABLE, now=3)
    assert sel.next_deadline() is None  # failback disabled


# --- the manager -------------------------------------------------------------------------


def manager() -> PeerManager:
    return PeerManager(parse_config(CONFIG), rng=lambda: 0.5)


def test_connect_retry_with_backoff_then_up() -> None:
    pm = manager()
    assert actions(pm.start(now=0)) == [Connect("far")]
    pm.assoc_event("far", note(AssocChangeState.CANT_STR_ASSOC), now=0.5)
    assert pm.next_deadline() == 1.5
    assert actions(pm.handle_timer(now=1.4)) == []
    assert actions(pm.handle_timer(now=1.5)) == [Connect("far")]
    pm.assoc_event("far", note(AssocChangeState.CANT_STR_ASSOC), now=2)
    assert pm.next_deadline() == 4  # 2 s: doubled
    pm.handle_timer(now=4)
    up = actions(pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=4.1))
    assert up == [Tune("far", 7), SetPrimary("far", 7, P1, "initial")]
    assert pm.peers["far"].state is lc.State.UP
    pm.assoc_event("far", note(AssocChangeState.COMM_LOST), now=9)
    assert pm.next_deadline() == 10  # backoff was reset by the success


def test_path_failover_and_failback_through_the_manager() -> None:
    pm = manager()
    pm.start(now=0)
    pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=0)
    out = actions(pm.path_event("far", path(P1, PeerAddrState.ADDR_UNREACHABLE), now=1))
    assert out == [SetPrimary("far", 7, P2, "failover")]
    pm.path_event("far", path(P1, PeerAddrState.ADDR_AVAILABLE), now=2)
    assert pm.next_deadline() == 7
    assert actions(pm.handle_timer(now=7)) == [SetPrimary("far", 7, P1, "failback")]


def test_restart_retunes_and_is_counted() -> None:
    pm = manager()
    pm.start(now=0)
    pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=0)
    out = pm.assoc_event("far", note(AssocChangeState.RESTART), now=5)
    assert Tune("far", 7) in out
    assert pm.peers["far"].restarts == 1
    assert any(isinstance(o, Log) and o.event == "peer_restarted" for o in out)


def test_accept_peer_by_address_and_unlisted_address_refused() -> None:
    pm = manager()
    pm.start(now=0)
    name, out = pm.incoming(
        "raw-in", note(AssocChangeState.COMM_UP, 3), [("10.0.2.5", 40000)], now=1
    )
    assert name == "lab"
    assert Tune("lab", 3) in out
    name, out = pm.incoming(
        "raw-in", note(AssocChangeState.COMM_UP, 4), [("10.9.9.9", 40000)], now=1
    )
    assert name is None
    assert actions(out) == [Refuse("raw-in", 4, (("10.9.9.9", 40000),))]
    assert pm.refused == 1


def test_stop_shuts_up_associations_and_cancels_retries() -> None:
    pm = manager()
    pm.start(now=0)
    pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=0)
    assert actions(pm.stop(now=1)) == [Shutdown("far", 7)]
    assert pm.peers["far"].state is lc.State.STOPPING
    pm.assoc_event("far", note(AssocChangeState.SHUTDOWN_COMP), now=1.1)
    assert pm.peers["far"].state is lc.State.STOPPED


def test_reload_touches_only_added_removed_and_changed_peers() -> None:
    old = parse_config(CONFIG)
    far = old.peers[0]
    new = dataclasses.replace(
        old,
        peers=(
            dataclasses.replace(far, reconnect=m.Reconnect(2000, 8000, 0.2)),  # changed
            dataclasses.replace(far, name="extra"),  # added; "lab" removed
        ),
    )
    plan = plan_reload(old, new)
    assert (
        [p.name for p in plan.added],
        plan.removed,
        [p.name for p in plan.changed],
        plan.unchanged,
    ) == (["extra"], ("lab",), ["far"], ())
    pm = PeerManager(old, rng=lambda: 0.5)
    pm.start(now=0)
    pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=0)
    out = actions(pm.reload(new, now=1))
    assert out == [Shutdown("far", 7), Connect("extra"), Connect("far")]
    assert set(pm.peers) == {"far", "extra"}
    unchanged = actions(pm.reload(new, now=2))
    assert unchanged == []  # nothing differs: nothing is touched


# --- PPID routing ----------------------------------------------------------------------


def test_ppid_router_failover_order_and_stream_mapping() -> None:
    from sigmw.routing.ppid import Forward, PpidRouter, map_stream

    router = PpidRouter({9999: ("b", "c")})
    up = {"b": None, "c": 4}
    assert router.route(9999, 6, up.get) == Forward("c", 2)  # b down: c; stream 6 -> 2 of 4
    up["b"] = 16
    assert router.route(9999, 6, up.get) == Forward("b", 6)
    assert router.route(46, 0, up.get) is None
    assert router.unrouted == {46: 1}
    assert router.route(9999, 0, {"b": None, "c": None}.get) is None
    assert router.no_live_peer == {9999: 1}
    assert {map_stream(s, 5) for s in range(100)} == set(range(5))  # never >= outbound


def test_path_readouts_are_kept_and_catch_a_missed_event() -> None:
    from sigmw.sctp.structs import PathInfo

    pm = manager()
    pm.start(now=0)
    pm.assoc_event("far", note(AssocChangeState.COMM_UP), now=0)
    readings = [
        PathInfo(P1, PathState.INACTIVE, 4380, 3, 500, 1500),
        PathInfo(P2, PathState.ACTIVE, 6000, 2, 200, 1500),
    ]
    out = actions(pm.path_readout("far", readings, now=1))
    assert out == [SetPrimary("far", 7, P2, "failover")]  # no event was seen, the read-out told
    assert pm.peers["far"].last_readout[P2].cwnd == 6000
    pm.assoc_event("far", note(AssocChangeState.COMM_LOST), now=2)
    assert pm.peers["far"].last_readout == {}


def test_adopted_accept_peer_pins_primary_on_its_real_port() -> None:
    """An accepted (Diameter) association: the primary is pinned on the port the peer
    actually uses, never on port 0 (which the kernel refuses)."""
    from sigmw.config.loader import parse_config
    from sigmw.peers.actions import SetPrimary

    config = parse_config(
        """\
node: {name: n, diameter: {origin_host: n.test, origin_realm: test}}
listen: [{name: l, protocol: diameter, transport: sctp, addresses: [10.0.0.1], port: 3868}]
peers:
  - {name: mme, protocol: diameter, transport: sctp, role: accept,
     addresses: [10.0.2.1, 10.0.3.1], diameter: {host: mme.test, realm: test}}
"""
    )
    manager = PeerManager(config, lambda: 0.5)
    manager.start(0.0)
    out = manager.adopt("mme", 7, 1.0, [("10.0.2.1", 40001), ("10.0.3.1", 40001)])
    primaries = [o for o in out if isinstance(o, SetPrimary)]
    assert [(p.assoc_id, p.address) for p in primaries] == [(7, ("10.0.2.1", 40001))]
    unknown = PeerManager(config, lambda: 0.5)
    unknown.start(0.0)
    assert not [o for o in unknown.adopt("mme", 8, 1.0) if isinstance(o, SetPrimary)]
