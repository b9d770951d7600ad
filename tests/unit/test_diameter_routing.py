"""Realm routing (first matching rule, priorities, weighted rendezvous by Session-Id) and the
session -> stream map."""

from __future__ import annotations

from collections import Counter

import pytest

from sigmw.config.diameter import DiameterRoute, RouteTarget
from sigmw.routing.diameter import NoPeer, RealmTable, Usable
from sigmw.routing.streams import Spreader, session_stream

T = RouteTarget


def _all(state: Usable = Usable.YES, **overrides: Usable) -> dict[str, Usable]:
    peers = ("a", "b", "c", "d", "e")
    return {p: overrides.get(p, state) for p in peers}


def _pick(
    table: RealmTable,
    states: dict[str, Usable],
    realm: bytes = b"hss.example.org",
    app: int = 4,
    origin: bytes | None = b"example.net",
    key: bytes = b"s;1",
    exclude: frozenset[str] = frozenset(),
) -> str | NoPeer:
    return table.choose(realm, app, origin, key, states.__getitem__, exclude)


def _keys(n: int) -> list[bytes]:
    return [f"client{i % 7}.example.net;{1000 + i};{i * 7919}".encode() for i in range(n)]


def test_first_matching_rule_in_file_order_wins() -> None:
    table = RealmTable(
        (
            DiameterRoute("hss.example.org", (T("a"),), application=16777251),
            DiameterRoute("hss.example.org", (T("b"),)),
            DiameterRoute("*", (T("c"),)),
            DiameterRoute("hss.example.org", (T("d"),)),  # shadowed by the two above
        )
    )
    up = _all()
    assert _pick(table, up, app=16777251) == "a"
    assert _pick(table, up, app=4) == "b"
    assert _pick(table, up, realm=b"other.example.org") == "c"


def test_realms_match_case_insensitively() -> None:
    table = RealmTable((DiameterRoute("HSS.Example.ORG", (T("a"),)),))
    assert _pick(table, _all(), realm=b"hss.EXAMPLE.org") == "a"
    assert _pick(table, _all(), realm=b"hss.example.org.evil") is NoPeer.NO_ROUTE


def test_origin_realm_filter() -> None:
    table = RealmTable(
        (
            DiameterRoute("*", (T("a"),), origin_realm="Visited.Example.NET"),
            DiameterRoute("*", (T("b"),)),
        )
    )
    assert _pick(table, _all(), origin=b"visited.example.net") == "a"
    assert _pick(table, _all(), origin=b"home.example.net") == "b"
    assert _pick(table, _all(), origin=None) == "b"


def test_no_rule_is_no_route() -> None:
    table = RealmTable((DiameterRoute("hss.example.org", (T("a"),), application=4),))
    assert _pick(table, _all(), app=5) is NoPeer.NO_ROUTE
    assert RealmTable(()).choose(b"x", 0, None, b"", lambda _: Usable.YES) is NoPeer.NO_ROUTE


def test_priorities_fail_over_in_order() -> None:
    # Given out of order: lower priority number is preferred.
    table = RealmTable(
        (DiameterRoute("*", (T("c", priority=3), T("a", priority=1), T("b", priority=2))),)
    )
    assert _pick(table, _all()) == "a"
    assert _pick(table, _all(a=Usable.DOWN)) == "b"
    assert _pick(table, _all(a=Usable.BUSY)) == "b"
    assert _pick(table, _all(a=Usable.DOWN, b=Usable.DOWN)) == "c"
    assert _pick(table, _all(), exclude=frozenset({"a", "b"})) == "c"


def test_busy_versus_down() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b", priority=2))),))
    assert _pick(table, _all(Usable.DOWN)) is NoPeer.NO_LIVE_PEER
    assert _pick(table, _all(Usable.DOWN, b=Usable.BUSY)) is NoPeer.ALL_BUSY
    assert _pick(table, _all(Usable.BUSY)) is NoPeer.ALL_BUSY
    # An excluded busy peer does not count: nobody else could take it.
    assert (
        _pick(table, _all(Usable.DOWN, b=Usable.BUSY), exclude=frozenset({"b"}))
        is NoPeer.NO_LIVE_PEER
    )


def test_same_session_same_peer() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b"), T("c"))),))
    for key in _keys(200):
        first = _pick(table, _all(), key=key)
        assert all(_pick(table, _all(), key=key) == first for _ in range(3))
        # A second table built from the same config agrees (no per-process salt).
        again = RealmTable((DiameterRoute("*", (T("a"), T("b"), T("c"))),))
        assert _pick(again, _all(), key=key) == first


def _shares(table: RealmTable, states: dict[str, Usable], n: int) -> Counter[str | NoPeer]:
    return Counter(_pick(table, states, key=k) for k in _keys(n))


def test_equal_weights_share_evenly() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b"), T("c"), T("d"))),))
    n = 20000
    got = _shares(table, _all(), n)
    assert set(got) == {"a", "b", "c", "d"}
    for peer in "abcd":
        assert abs(got[peer] / n - 0.25) < 0.02, got


@pytest.mark.parametrize("weights", [(1, 3), (1, 1, 2), (5, 3, 2)])
def test_weights_give_proportional_shares(weights: tuple[int, ...]) -> None:
    names = "abcde"[: len(weights)]
    table = RealmTable(
        (DiameterRoute("*", tuple(T(p, weight=w) for p, w in zip(names, weights, strict=True))),)
    )
    n = 20000
    got = _shares(table, _all(), n)
    for peer, w in zip(names, weights, strict=True):
        assert abs(got[peer] / n - w / sum(weights)) < 0.02, got


def test_a_failed_peer_moves_only_its_own_sessions() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b", weight=2), T("c"))),))
    keys = _keys(3000)
    before = {k: _pick(table, _all(), key=k) for k in keys}
    after = {k: _pick(table, _all(b=Usable.DOWN), key=k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "b" for k in moved)
    assert all(after[k] in ("a", "c") for k in moved)
    # The moved sessions spread over the survivors, not all onto one.
    assert Counter(after[k] for k in moved).keys() == {"a", "c"}
    # And they come back when it recovers.
    assert {k: _pick(table, _all(), key=k) for k in keys} == before


def test_a_busy_peer_moves_only_its_own_sessions_too() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b"), T("c"))),))
    keys = _keys(1000)
    before = {k: _pick(table, _all(), key=k) for k in keys}
    after = {k: _pick(table, _all(c=Usable.BUSY), key=k) for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "c")


def test_exclude_removes_a_peer_like_a_failure() -> None:
    table = RealmTable((DiameterRoute("*", (T("a"), T("b"), T("c"))),))
    for k in _keys(300):
        first = _pick(table, _all(), key=k)
        assert isinstance(first, str)
        other = _pick(table, _all(), key=k, exclude=frozenset({first}))
        assert other != first and other == _pick(table, _all(**{first: Usable.DOWN}), key=k)


# --- streams ------------------------------------------------------------------------


@pytest.mark.parametrize("outbound", [2, 3, 10, 17, 64, 65535])
def test_session_stream_is_in_range_stable_and_never_zero(outbound: int) -> None:
    for key in _keys(500):
        s = session_stream(key, outbound)
        assert 1 <= s < outbound
        assert session_stream(key, outbound) == s


@pytest.mark.parametrize("outbound", [3, 8, 17])
def test_session_streams_cover_every_data_stream(outbound: int) -> None:
    seen = {session_stream(k, outbound) for k in _keys(2000)}
    assert seen == set(range(1, outbound))


def test_one_outbound_stream_means_stream_zero() -> None:
    assert session_stream(b"s;1", 1) == 0
    assert Spreader().stream(1) == 0


def test_spreader_round_robins_over_data_streams() -> None:
    spread = Spreader()
    got = [spread.stream(5) for _ in range(8)]
    assert set(got) == {1, 2, 3, 4}
    assert got[:4] == got[4:] and len(set(got[:4])) == 4  # each stream once per round
    assert all(1 <= spread.stream(2) < 2 for _ in range(5))
