"""The RFC 3539 watchdog with a fake clock and fixed or seeded randomness: no sleeps."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from sigmw.diameter import watchdog as wdm
from sigmw.diameter.watchdog import (
    TABLE,
    Cond,
    Step,
    Watchdog,
    WatchdogAction,
    WatchdogError,
    WatchdogEvent,
    WatchdogState,
)

W, V, C, A = WatchdogState, WatchdogEvent, Cond, WatchdogAction
TW = 6.0


def no_jitter() -> float:
    return 0.5  # the middle of [0, 1): every interval is exactly Tw


def make(rng: Callable[[], float] = no_jitter, tw: float = TW, jitter: float = 2.0) -> Watchdog:
    return Watchdog(tw, rng, jitter)


def expire(wd: Watchdog) -> list[WatchdogAction]:
    """Advance the fake clock to the deadline and fire."""
    deadline = wd.next_deadline
    assert deadline is not None
    return wd.timer(deadline)


# Scenarios from RFC 3539 3.4.1 and Appendix A, outcomes written out by hand.


def test_silence_leads_to_dwr_then_failover_then_close() -> None:
    wd = make()
    assert wd.connection_up(0.0) == []
    assert wd.state is W.OKAY and wd.usable
    assert wd.next_deadline == 6.0
    assert wd.timer(5.9) == []  # early: nothing
    assert wd.timer(6.0) == [A.SEND_DWR]
    assert wd.state is W.OKAY and wd.next_deadline == 12.0
    assert wd.timer(12.0) == [A.FAILOVER]
    assert wd.state is W.SUSPECT and not wd.usable
    assert wd.timer(18.0) == [A.CLOSE_CONNECTION]
    assert wd.state is W.DOWN and not wd.usable
    assert wd.timer(24.0) == [A.ATTEMPT_OPEN]
    assert wd.state is W.DOWN and wd.next_deadline == 30.0


def test_dwa_in_suspect_fails_back() -> None:
    wd = make()
    wd.connection_up(0.0)
    expire(wd)  # DWR out
    expire(wd)  # SUSPECT
    assert wd.received(13.0, is_dwa=True) == [A.FAILBACK]
    assert wd.state is W.OKAY and wd.usable
    assert wd.next_deadline == 19.0
    assert expire(wd) == [A.SEND_DWR]  # the DWA cleared Pending: a fresh probe


def test_other_message_in_suspect_fails_back_but_dwr_stays_pending() -> None:
    # Appendix A: any message fails back, but only a DWA clears Pending, so one more
    # silent Tw is enough to suspect the peer again, with no second DWR.
    wd = make()
    wd.connection_up(0.0)
    expire(wd)
    expire(wd)
    assert wd.received(13.0, is_dwa=False) == [A.FAILBACK]
    assert wd.state is W.OKAY
    assert expire(wd) == [A.FAILOVER]
    assert wd.state is W.SUSPECT


def _reopened() -> Watchdog:
    wd = make()
    wd.connection_up(0.0)
    assert wd.connection_down(1.0) == [A.CLOSE_CONNECTION, A.FAILOVER]
    assert wd.state is W.DOWN
    assert wd.connection_up(2.0) == [A.SEND_DWR]
    assert wd.state is W.REOPEN and not wd.usable
    return wd


def test_reopen_needs_three_dwas() -> None:
    wd = _reopened()
    assert wd.received(2.1, is_dwa=True) == []  # 1
    assert not wd.usable
    assert expire(wd) == [A.SEND_DWR]
    assert wd.received(8.1, is_dwa=True) == []  # 2
    assert not wd.usable
    assert expire(wd) == [A.SEND_DWR]
    assert wd.received(14.1, is_dwa=True) == [A.FAILBACK]  # 3
    assert wd.state is W.OKAY and wd.usable


def test_reopen_count_restarts_after_unanswered_dwr() -> None:
    wd = _reopened()
    wd.received(2.1, is_dwa=True)  # 1
    assert expire(wd) == [A.SEND_DWR]
    assert expire(wd) == []  # no answer within Tw: count forgotten, connection kept
    assert wd.state is W.REOPEN
    wd.received(14.5, is_dwa=True)  # the late answer: counts from zero again
    answered = 0
    while wd.state is W.REOPEN:
        assert expire(wd) == [A.SEND_DWR]
        deadline = wd.next_deadline
        assert deadline is not None
        actions = wd.received(deadline - 5.0, is_dwa=True)
        answered += 1
    assert actions == [A.FAILBACK]
    assert answered == 3


def test_reopen_second_unanswered_dwr_closes() -> None:
    wd = _reopened()
    assert expire(wd) == []  # first DWR unanswered
    assert expire(wd) == [A.CLOSE_CONNECTION]  # still unanswered
    assert wd.state is W.DOWN


def test_reopen_discards_application_messages() -> None:
    wd = _reopened()
    assert wd.received(3.0, is_dwa=False) == [A.DISCARD]
    assert wd.state is W.REOPEN
    assert wd.next_deadline == 8.0  # not reset by traffic: the probe must be answered


def test_traffic_resets_timer_so_no_dwr_is_sent() -> None:
    wd = make()
    wd.connection_up(0.0)
    sent: list[WatchdogAction] = []
    for tick in range(1, 601):  # 60 s in 0.1 s steps, a message every 5 s
        now = tick / 10
        deadline = wd.next_deadline
        assert deadline is not None
        if now >= deadline:
            sent += wd.timer(now)
        if tick % 50 == 0:
            sent += wd.received(now, is_dwa=False)
    assert sent == []
    assert wd.next_deadline == 66.0
    # And once the traffic stops, Tw after the last message, a DWR goes out.
    assert wd.timer(65.9) == []
    assert wd.timer(66.0) == [A.SEND_DWR]


def test_jitter_stays_within_bounds_and_is_used() -> None:
    wd = make(random.Random(6733).random, tw=30.0, jitter=2.0)
    wd.connection_up(0.0)
    intervals = []
    now = 0.0
    for _ in range(2000):
        now += 0.5
        wd.received(now, is_dwa=False)  # each receipt draws a new Tw
        deadline = wd.next_deadline
        assert deadline is not None
        intervals.append(deadline - now)
    assert all(28.0 <= i <= 32.0 for i in intervals)
    assert min(intervals) < 28.1 and max(intervals) > 31.9  # spread over the whole range


def test_extreme_draws_give_extreme_intervals() -> None:
    wd = make(lambda: 0.0, tw=9.0, jitter=3.0)
    wd.connection_up(100.0)
    assert wd.next_deadline == 106.0
    wd = make(lambda: 0.999999, tw=9.0, jitter=3.0)
    wd.connection_up(100.0)
    deadline = wd.next_deadline
    assert deadline is not None and 111.99 < deadline < 112.0


@pytest.mark.parametrize(("tw", "jitter"), [(0.0, 0.0), (-1.0, 0.0), (6.0, 2.01), (6.0, -0.1)])
def test_bad_interval_or_jitter_refused(tw: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Watchdog(tw, no_jitter, jitter)


def test_small_tw_for_tests_is_allowed() -> None:
    wd = Watchdog(0.3, no_jitter, 0.05)
    wd.connection_up(0.0)
    assert wd.next_deadline == pytest.approx(0.3)


def test_rng_out_of_range_refused() -> None:
    wd = make(lambda: 1.0)
    with pytest.raises(ValueError, match="rng"):
        wd.connection_up(0.0)


def test_no_timer_before_first_connection_unless_started() -> None:
    wd = make()
    assert wd.next_deadline is None
    assert wd.timer(1e9) == []
    wd.start(0.0)
    assert wd.timer(6.0) == [A.ATTEMPT_OPEN]
    assert wd.state is W.INITIAL
    assert wd.connection_up(7.0) == []
    assert wd.state is W.OKAY
    with pytest.raises(RuntimeError):
        wd.start(8.0)


def test_connection_up_while_up_is_an_error() -> None:
    wd = make()
    wd.connection_up(0.0)
    with pytest.raises(WatchdogError, match="connection up is not expected in state OKAY"):
        wd.connection_up(1.0)
    assert wd.state is W.OKAY


def test_transport_down_after_our_close_is_harmless() -> None:
    wd = make()
    wd.connection_up(0.0)
    expire(wd)
    expire(wd)
    assert expire(wd) == [A.CLOSE_CONNECTION]
    deadline = wd.next_deadline
    assert wd.connection_down(18.5) == []  # the transport confirms the close
    assert wd.state is W.DOWN and wd.next_deadline == deadline


# Every table row, reached through the public API with the condition it names.


def _okay() -> Watchdog:
    wd = make()
    wd.connection_up(0.0)
    return wd


def _okay_pending() -> Watchdog:
    wd = _okay()
    expire(wd)
    return wd


def _suspect() -> Watchdog:
    wd = _okay_pending()
    expire(wd)
    return wd


def _down() -> Watchdog:
    wd = _okay()
    wd.connection_down(1.0)
    return wd


def _initial_started() -> Watchdog:
    wd = make()
    wd.start(0.0)
    return wd


def _reopen_pending_count_0() -> Watchdog:
    wd = _down()
    wd.connection_up(2.0)
    return wd


def _reopen_count_1() -> Watchdog:
    wd = _reopen_pending_count_0()
    wd.received(3.0, is_dwa=True)
    return wd


def _reopen_count_2() -> Watchdog:
    wd = _reopen_count_1()
    expire(wd)
    wd.received(9.0, is_dwa=True)
    return wd


def _reopen_pending_count_forgotten() -> Watchdog:
    wd = _reopen_pending_count_0()
    expire(wd)
    return wd


SETUPS: dict[wdm.Key, Callable[[], Watchdog]] = {
    (W.OKAY, V.RECEIVE_DWA, C.ANY): _okay_pending,
    (W.OKAY, V.RECEIVE_OTHER, C.ANY): _okay,
    (W.SUSPECT, V.RECEIVE_DWA, C.ANY): _suspect,
    (W.SUSPECT, V.RECEIVE_OTHER, C.ANY): _suspect,
    (W.REOPEN, V.RECEIVE_DWA, C.NUM_DWA_EQ_2): _reopen_count_2,
    (W.REOPEN, V.RECEIVE_DWA, C.NUM_DWA_LT_2): _reopen_pending_count_0,
    (W.REOPEN, V.RECEIVE_OTHER, C.ANY): _reopen_count_1,
    (W.INITIAL, V.RECEIVE_DWA, C.ANY): make,
    (W.INITIAL, V.RECEIVE_OTHER, C.ANY): make,
    (W.DOWN, V.RECEIVE_DWA, C.ANY): _down,
    (W.DOWN, V.RECEIVE_OTHER, C.ANY): _down,
    (W.OKAY, V.TIMER, C.NOT_PENDING): _okay,
    (W.OKAY, V.TIMER, C.PENDING): _okay_pending,
    (W.SUSPECT, V.TIMER, C.ANY): _suspect,
    (W.INITIAL, V.TIMER, C.ANY): _initial_started,
    (W.DOWN, V.TIMER, C.ANY): _down,
    (W.REOPEN, V.TIMER, C.NOT_PENDING): _reopen_count_1,
    (W.REOPEN, V.TIMER, C.PENDING_NUM_DWA_LT_0): _reopen_pending_count_forgotten,
    (W.REOPEN, V.TIMER, C.PENDING_NUM_DWA_GE_0): _reopen_pending_count_0,
    (W.INITIAL, V.CONNECTION_UP, C.ANY): make,
    (W.DOWN, V.CONNECTION_UP, C.ANY): _down,
    (W.OKAY, V.CONNECTION_DOWN, C.ANY): _okay,
    (W.SUSPECT, V.CONNECTION_DOWN, C.ANY): _suspect,
    (W.REOPEN, V.CONNECTION_DOWN, C.ANY): _reopen_count_1,
    (W.DOWN, V.CONNECTION_DOWN, C.ANY): _down,
    (W.INITIAL, V.CONNECTION_DOWN, C.ANY): make,
}


def test_every_row_has_a_setup() -> None:
    assert list(SETUPS) == list(TABLE)
    assert len(TABLE) == 24 + 2  # Appendix A's rows plus two harmless connection-down rows


def _fire(wd: Watchdog, event: WatchdogEvent, now: float) -> list[WatchdogAction]:
    if event is V.TIMER:
        return wd.timer(now)
    if event is V.CONNECTION_UP:
        return wd.connection_up(now)
    if event is V.CONNECTION_DOWN:
        return wd.connection_down(now)
    return wd.received(now, is_dwa=event is V.RECEIVE_DWA)


@pytest.mark.parametrize(("key", "row"), list(TABLE.items()), ids=lambda v: str(v))
def test_row(key: wdm.Key, row: wdm.Row) -> None:
    state, event, _cond = key
    ops, nxt = row
    wd = SETUPS[key]()
    assert wd.state is state
    before = wd.next_deadline
    now = before if event is V.TIMER and before is not None else 50.0
    assert _fire(wd, event, now) == [op for op in ops if isinstance(op, WatchdogAction)]
    assert wd.state is nxt
    assert wd.next_deadline == (now + TW if Step.SET_WATCHDOG in ops else before)


def test_unlisted_events_raise() -> None:
    listed = {(s, e) for (s, e, _c) in TABLE}
    assert {(s, e) for s in W for e in V} - listed == {
        (W.OKAY, V.CONNECTION_UP),
        (W.SUSPECT, V.CONNECTION_UP),
        (W.REOPEN, V.CONNECTION_UP),
    }
