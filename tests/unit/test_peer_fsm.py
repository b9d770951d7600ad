"""The RFC 6733 5.6 peer state machine: every table row, the RFC text, and scenarios."""

from __future__ import annotations

import itertools

import pytest

from sigmw.diameter import peer_fsm as pf
from sigmw.diameter.peer_fsm import (
    TABLE,
    Guard,
    PeerAction,
    PeerEvent,
    PeerFsm,
    PeerFsmError,
    PeerState,
    elect,
    event_for_message,
)

S, E, A, G = PeerState, PeerEvent, PeerAction, Guard

# RFC 6733 section 5.6, row by row in the RFC's order and spelling:
# state | event | actions | next state. Written out separately from TABLE so that a
# wrong enum member or a mistyped row in the module shows up as a mismatch here.
RFC_6733_TABLE = """
Closed | Start | I-Snd-Conn-Req | Wait-Conn-Ack
Closed | R-Conn-CER | R-Accept, Process-CER, R-Snd-CEA | R-Open
Wait-Conn-Ack | I-Rcv-Conn-Ack | I-Snd-CER | Wait-I-CEA
Wait-Conn-Ack | I-Rcv-Conn-Nack | Cleanup | Closed
Wait-Conn-Ack | R-Conn-CER | R-Accept, Process-CER | Wait-Conn-Ack/Elect
Wait-Conn-Ack | Timeout | Error | Closed
Wait-I-CEA | I-Rcv-CEA | Process-CEA | I-Open
Wait-I-CEA | R-Conn-CER | R-Accept, Process-CER, Elect | Wait-Returns
Wait-I-CEA | I-Peer-Disc | I-Disc | Closed
Wait-I-CEA | I-Rcv-Non-CEA | Error | Closed
Wait-I-CEA | Timeout | Error | Closed
Wait-Conn-Ack/Elect | I-Rcv-Conn-Ack | I-Snd-CER, Elect | Wait-Returns
Wait-Conn-Ack/Elect | I-Rcv-Conn-Nack | R-Snd-CEA | R-Open
Wait-Conn-Ack/Elect | R-Peer-Disc | R-Disc | Wait-Conn-Ack
Wait-Conn-Ack/Elect | R-Conn-CER | R-Reject | Wait-Conn-Ack/Elect
Wait-Conn-Ack/Elect | Timeout | Error | Closed
Wait-Returns | Win-Election | I-Disc, R-Snd-CEA | R-Open
Wait-Returns | I-Peer-Disc | I-Disc, R-Snd-CEA | R-Open
Wait-Returns | I-Rcv-CEA | R-Disc | I-Open
Wait-Returns | R-Peer-Disc | R-Disc | Wait-I-CEA
Wait-Returns | R-Conn-CER | R-Reject | Wait-Returns
Wait-Returns | Timeout | Error | Closed
R-Open | Send-Message | R-Snd-Message | R-Open
R-Open | R-Rcv-Message | Process | R-Open
R-Open | R-Rcv-DWR | Process-DWR, R-Snd-DWA | R-Open
R-Open | R-Rcv-DWA | Process-DWA | R-Open
R-Open | R-Conn-CER | R-Reject | R-Open
R-Open | Stop | R-Snd-DPR | Closing
R-Open | R-Rcv-DPR | R-Snd-DPA | Closing
R-Open | R-Peer-Disc | R-Disc | Closed
I-Open | Send-Message | I-Snd-Message | I-Open
I-Open | I-Rcv-Message | Process | I-Open
I-Open | I-Rcv-DWR | Process-DWR, I-Snd-DWA | I-Open
I-Open | I-Rcv-DWA | Process-DWA | I-Open
I-Open | R-Conn-CER | R-Reject | I-Open
I-Open | Stop | I-Snd-DPR | Closing
I-Open | I-Rcv-DPR | I-Snd-DPA | Closing
I-Open | I-Peer-Disc | I-Disc | Closed
Closing | I-Rcv-DPA | I-Disc | Closed
Closing | R-Rcv-DPA | R-Disc | Closed
Closing | Timeout | Error | Closed
Closing | I-Peer-Disc | I-Disc | Closed
Closing | R-Peer-Disc | R-Disc | Closed
"""

# The one documented change to an RFC row: Process-CEA before R-Disc (its Result-Code
# is what the guard reports).
SIGMW_CHANGES = {("Wait-Returns", "I-Rcv-CEA"): ("Process-CEA", "R-Disc")}


def rfc_rows() -> list[tuple[str, str, tuple[str, ...], str]]:
    rows = []
    for line in RFC_6733_TABLE.strip().splitlines():
        state, event, actions, nxt = (part.strip() for part in line.split("|"))
        rows.append((state, event, tuple(a.strip() for a in actions.split(",")), nxt))
    return rows


def rfc_view_of_table() -> list[tuple[str, str, tuple[str, ...], str]]:
    """TABLE's rows that stand for RFC rows (unguarded or ACCEPTED), in TABLE order."""
    return [
        (state.value, event.value, tuple(a.value for a in actions), nxt.value)
        for (state, event, guard), (actions, nxt) in TABLE.items()
        if guard is not G.REFUSED
    ]


def test_table_is_the_rfc_table_in_order() -> None:
    expected = [(s, e, SIGMW_CHANGES.get((s, e), actions), n) for s, e, actions, n in rfc_rows()]
    assert len(expected) == 43
    assert rfc_view_of_table() == expected


def test_every_refused_row_has_its_accepted_twin() -> None:
    refused = {(s, e) for (s, e, g) in TABLE if g is G.REFUSED}
    accepted = {(s, e) for (s, e, g) in TABLE if g is G.ACCEPTED}
    assert refused == accepted
    assert len(refused) == 5


@pytest.mark.parametrize(
    ("key", "row"),
    list(TABLE.items()),
    ids=lambda v: "-".join(str(getattr(x, "value", x)) for x in v),
)
def test_fire_applies_row(key: pf.Key, row: pf.Row) -> None:
    state, event, guard = key
    actions, nxt = row
    fsm = PeerFsm(state)
    assert fsm.fire(event, guard) == actions
    assert fsm.state is nxt


def _listed_pairs() -> set[tuple[PeerState, PeerEvent]]:
    return {(s, e) for (s, e, _g) in TABLE}


UNLISTED = [p for p in itertools.product(PeerState, PeerEvent) if p not in _listed_pairs()]


@pytest.mark.parametrize("guard", [None, G.ACCEPTED, G.REFUSED])
def test_unlisted_pairs_raise_and_keep_state(guard: Guard | None) -> None:
    assert len(UNLISTED) == len(PeerState) * len(PeerEvent) - 43
    for state, event in UNLISTED:
        fsm = PeerFsm(state)
        with pytest.raises(PeerFsmError) as info:
            fsm.fire(event, guard)
        assert (info.value.state, info.value.event) == (state, event)
        assert fsm.state is state


def test_guarded_row_fired_without_guard_raises() -> None:
    fsm = PeerFsm(S.CLOSED)
    with pytest.raises(PeerFsmError, match="needs a guard"):
        fsm.fire(E.R_CONN_CER)
    assert fsm.state is S.CLOSED


def test_unguarded_row_ignores_guard() -> None:
    # The caller evaluates every CER; where the row just rejects, the verdict is moot.
    fsm = PeerFsm(S.R_OPEN)
    assert fsm.fire(E.R_CONN_CER, G.ACCEPTED) == (A.R_REJECT,)
    assert fsm.state is S.R_OPEN


# Scenarios: expected outcomes written out by hand, from the RFC, not read from TABLE.


def test_initiator_happy_path() -> None:
    fsm = PeerFsm()
    assert fsm.fire(E.START) == (A.I_SND_CONN_REQ,)
    assert fsm.state is S.WAIT_CONN_ACK
    assert fsm.fire(E.I_RCV_CONN_ACK) == (A.I_SND_CER,)
    assert fsm.state is S.WAIT_I_CEA
    assert fsm.fire(E.I_RCV_CEA, G.ACCEPTED) == (A.PROCESS_CEA,)
    assert fsm.state is S.I_OPEN
    assert fsm.fire(E.SEND_MESSAGE) == (A.I_SND_MESSAGE,)
    assert fsm.fire(E.I_RCV_DWR) == (A.PROCESS_DWR, A.I_SND_DWA)
    assert fsm.fire(E.I_RCV_MESSAGE) == (A.PROCESS,)
    assert fsm.state is S.I_OPEN


def test_responder_path() -> None:
    fsm = PeerFsm()
    assert fsm.fire(E.R_CONN_CER, G.ACCEPTED) == (A.R_ACCEPT, A.PROCESS_CER, A.R_SND_CEA)
    assert fsm.state is S.R_OPEN
    assert fsm.fire(E.SEND_MESSAGE) == (A.R_SND_MESSAGE,)
    assert fsm.fire(E.R_RCV_DWA) == (A.PROCESS_DWA,)


def _collision_in_wait_i_cea() -> PeerFsm:
    """We dialled and sent our CER; the peer's CER arrives on its own connection."""
    fsm = PeerFsm()
    fsm.fire(E.START)
    fsm.fire(E.I_RCV_CONN_ACK)
    assert fsm.fire(E.R_CONN_CER, G.ACCEPTED) == (A.R_ACCEPT, A.PROCESS_CER, A.ELECT)
    assert fsm.state is S.WAIT_RETURNS
    return fsm


def test_election_won_keeps_responder_connection() -> None:
    # RFC 6733 5.6.4: the winner closes the connection it initiated.
    fsm = _collision_in_wait_i_cea()
    assert fsm.resolve_election(b"zz.example.net", b"aa.example.net") == (A.I_DISC, A.R_SND_CEA)
    assert fsm.state is S.R_OPEN
    assert fsm.fire(E.SEND_MESSAGE) == (A.R_SND_MESSAGE,)


def test_election_lost_keeps_initiator_connection() -> None:
    fsm = _collision_in_wait_i_cea()
    assert fsm.resolve_election(b"aa.example.net", b"zz.example.net") == ()
    assert fsm.state is S.WAIT_RETURNS
    # The winner answers our CER on our connection; we drop the one it dialled.
    assert fsm.fire(E.I_RCV_CEA, G.ACCEPTED) == (A.PROCESS_CEA, A.R_DISC)
    assert fsm.state is S.I_OPEN
    assert fsm.fire(E.SEND_MESSAGE) == (A.I_SND_MESSAGE,)


def test_election_while_still_dialling() -> None:
    fsm = PeerFsm()
    fsm.fire(E.START)
    assert fsm.fire(E.R_CONN_CER, G.ACCEPTED) == (A.R_ACCEPT, A.PROCESS_CER)
    assert fsm.state is S.WAIT_CONN_ACK_ELECT
    assert fsm.fire(E.I_RCV_CONN_ACK) == (A.I_SND_CER, A.ELECT)
    assert fsm.resolve_election(b"peer-b", b"peer-a") == (A.I_DISC, A.R_SND_CEA)
    assert fsm.state is S.R_OPEN


def test_dial_fails_after_peer_cer_opens_on_responder() -> None:
    fsm = PeerFsm()
    fsm.fire(E.START)
    fsm.fire(E.R_CONN_CER, G.ACCEPTED)
    assert fsm.fire(E.I_RCV_CONN_NACK) == (A.R_SND_CEA,)
    assert fsm.state is S.R_OPEN


def test_election_lost_then_initiator_drops_falls_back_to_responder() -> None:
    fsm = _collision_in_wait_i_cea()
    fsm.resolve_election(b"a", b"b")
    assert fsm.fire(E.I_PEER_DISC) == (A.I_DISC, A.R_SND_CEA)
    assert fsm.state is S.R_OPEN


def test_resolve_election_outside_wait_returns_raises() -> None:
    with pytest.raises(PeerFsmError):
        PeerFsm(S.I_OPEN).resolve_election(b"z", b"a")


def test_local_stop_dpr_dpa_closes() -> None:
    fsm = PeerFsm(S.I_OPEN)
    assert fsm.fire(E.STOP) == (A.I_SND_DPR,)
    assert fsm.state is S.CLOSING
    assert fsm.fire(E.I_RCV_DPA) == (A.I_DISC,)
    assert fsm.state is S.CLOSED


def test_peer_dpr_answered_then_peer_closes() -> None:
    # RFC 6733 5.4: the receiver of the DPA disconnects, so we wait in Closing.
    fsm = PeerFsm(S.R_OPEN)
    assert fsm.fire(E.R_RCV_DPR) == (A.R_SND_DPA,)
    assert fsm.state is S.CLOSING
    assert fsm.fire(E.R_PEER_DISC) == (A.R_DISC,)
    assert fsm.state is S.CLOSED


def test_peer_never_closes_after_dpa_times_out() -> None:
    fsm = PeerFsm(S.I_OPEN)
    fsm.fire(E.I_RCV_DPR)
    assert fsm.fire(E.TIMEOUT) == (A.ERROR,)
    assert fsm.state is S.CLOSED


def test_timeout_waiting_for_cea_closes() -> None:
    fsm = PeerFsm()
    fsm.fire(E.START)
    fsm.fire(E.I_RCV_CONN_ACK)
    assert fsm.fire(E.TIMEOUT) == (A.ERROR,)
    assert fsm.state is S.CLOSED
    assert fsm.fire(E.START) == (A.I_SND_CONN_REQ,)  # and the peer can be started again


def test_non_cea_while_waiting_for_cea_closes() -> None:
    fsm = PeerFsm(S.WAIT_I_CEA)
    assert fsm.fire(E.I_RCV_NON_CEA) == (A.ERROR,)
    assert fsm.state is S.CLOSED


def test_refused_cer_gets_failure_cea_and_disconnect() -> None:
    fsm = PeerFsm()
    assert fsm.fire(E.R_CONN_CER, G.REFUSED) == (A.PROCESS_CER, A.R_SND_CEA, A.R_REJECT)
    assert fsm.state is S.CLOSED


def test_refused_cer_during_our_handshake_leaves_it_alone() -> None:
    fsm = PeerFsm(S.WAIT_I_CEA)
    actions = fsm.fire(E.R_CONN_CER, G.REFUSED)
    assert A.ELECT not in actions and A.R_ACCEPT not in actions
    assert actions[-1] is A.R_REJECT
    assert fsm.state is S.WAIT_I_CEA
    assert fsm.fire(E.I_RCV_CEA, G.ACCEPTED) == (A.PROCESS_CEA,)
    assert fsm.state is S.I_OPEN


def test_failed_cea_closes_instead_of_opening() -> None:
    fsm = PeerFsm(S.WAIT_I_CEA)
    assert fsm.fire(E.I_RCV_CEA, G.REFUSED) == (A.PROCESS_CEA, A.I_DISC)
    assert fsm.state is S.CLOSED


def test_failed_cea_after_lost_election_closes_both() -> None:
    fsm = _collision_in_wait_i_cea()
    fsm.resolve_election(b"a", b"b")
    assert fsm.fire(E.I_RCV_CEA, G.REFUSED) == (A.PROCESS_CEA, A.I_DISC, A.R_DISC)
    assert fsm.state is S.CLOSED


def test_second_inbound_cer_is_rejected_when_open() -> None:
    fsm = PeerFsm(S.I_OPEN)
    assert fsm.fire(E.R_CONN_CER, G.ACCEPTED) == (A.R_REJECT,)
    assert fsm.state is S.I_OPEN


def test_error_names_state_and_event() -> None:
    with pytest.raises(PeerFsmError, match=r"I-Rcv-DPA is not expected in state I-Open"):
        PeerFsm(S.I_OPEN).fire(E.I_RCV_DPA)


# Election (5.6.4)


@pytest.mark.parametrize(
    ("local", "peer", "won"),
    [
        (b"b.example", b"a.example", True),
        (b"a.example", b"b.example", False),
        (b"peer10", b"peer1", True),  # a longer string with the same prefix succeeds
        (b"peer1", b"peer10", False),
        (b"same.host", b"same.host", False),
        (b"B.example", b"a.example", True),  # case-folded: b > a, though b"B" < b"a"
        (b"A.example", b"b.example", False),
        (b"Node.Realm", b"node.realm", False),  # equal once case is ignored
        (b"\xff", b"z", True),  # octets above ASCII compare by value
    ],
)
def test_elect(local: bytes, peer: bytes, won: bool) -> None:
    assert elect(local, peer) is won


def test_election_results_are_inverse_on_both_sides() -> None:
    hosts = [b"a", b"B", b"ab", b"aB1", b"hss.epc.example", b"dra-1", b"dra-2", b"\x80"]
    for x, y in itertools.permutations(hosts, 2):
        assert elect(x, y) != elect(y, x), (x, y)


# Classifying received messages


@pytest.mark.parametrize(
    ("initiator", "code", "is_request", "event"),
    [
        (True, 280, True, E.I_RCV_DWR),
        (False, 280, True, E.R_RCV_DWR),
        (True, 280, False, E.I_RCV_DWA),
        (False, 282, True, E.R_RCV_DPR),
        (True, 282, False, E.I_RCV_DPA),
        (True, 257, True, E.I_RCV_CER),
        (False, 257, False, E.R_RCV_CEA),
        (True, 272, True, E.I_RCV_MESSAGE),  # Credit-Control
        (False, 316, False, E.R_RCV_MESSAGE),  # Update-Location answer
    ],
)
def test_event_for_message_when_open(
    initiator: bool, code: int, is_request: bool, event: PeerEvent
) -> None:
    state = S.I_OPEN if initiator else S.R_OPEN
    assert event_for_message(state, initiator, code, is_request) is event


def test_event_for_message_waiting_for_cea() -> None:
    assert event_for_message(S.WAIT_I_CEA, True, 257, False) is E.I_RCV_CEA
    assert event_for_message(S.WAIT_I_CEA, True, 280, True) is E.I_RCV_NON_CEA
    assert event_for_message(S.WAIT_I_CEA, True, 272, False) is E.I_RCV_NON_CEA
    # The responder connection is not the one waiting for a CEA.
    assert event_for_message(S.WAIT_I_CEA, False, 280, True) is E.R_RCV_DWR
