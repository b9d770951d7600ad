"""The RFC 6733 section 5.6 peer state machine, election included, as a transition table.

(state, event, guard) -> (actions, next state). The table holds every row of the RFC
table, in the RFC's order, with the RFC text above each entry. Pure: no I/O, no clock.

Prefixes as in the RFC: I- is the initiator connection (the one we dialled), R- the
responder connection (the one the peer dialled and sent its CER on). An unlisted
(state, event) pair is a protocol error, raised as PeerFsmError; the caller decides
what to do with the offending connection.

Guards. Three RFC rows hide a decision: Process-CER may refuse the peer (RFC 6733 5.3:
no common application, unknown host, ...), and a CEA may carry a failure Result-Code.
The RFC table shows only the success path; real code must answer a refused CER with a
failure CEA and drop that connection, and must not open on a failed CEA. So those rows
are keyed with Guard.ACCEPTED (the RFC row) and Guard.REFUSED (our addition, marked
"sigmw:"). All other rows are keyed with guard None and ignore the guard passed in.

Election (5.6.4) stays an event, as in the RFC: when the actions include ELECT, call
elect() with the Origin-Hosts and, if the local side won, fire WIN_ELECTION
(PeerFsm.resolve_election does both). The winner keeps the responder connection and
closes the one it initiated; the loser waits in Wait-Returns for the CEA on its
initiator connection.
"""

from __future__ import annotations

import enum

from sigmw.diameter.codes import Command


class PeerState(enum.Enum):
    CLOSED = "Closed"
    WAIT_CONN_ACK = "Wait-Conn-Ack"  # dialling the peer
    WAIT_I_CEA = "Wait-I-CEA"  # CER sent on our connection
    WAIT_CONN_ACK_ELECT = "Wait-Conn-Ack/Elect"  # dialling, and the peer's CER arrived
    WAIT_RETURNS = "Wait-Returns"  # both connections up: election pending
    R_OPEN = "R-Open"  # open on the connection the peer dialled
    I_OPEN = "I-Open"  # open on the connection we dialled
    CLOSING = "Closing"  # DPR sent, or DPA sent and waiting for the peer to close


class PeerEvent(enum.Enum):
    START = "Start"
    R_CONN_CER = "R-Conn-CER"  # a new inbound connection delivered its CER (5.6.1)
    I_RCV_CONN_ACK = "I-Rcv-Conn-Ack"
    I_RCV_CONN_NACK = "I-Rcv-Conn-Nack"
    TIMEOUT = "Timeout"  # whichever timer the current state runs (connect, CEA, DPA)
    I_RCV_CER = "I-Rcv-CER"  # in no RFC 6733 row: a CER on an established connection
    R_RCV_CER = "R-Rcv-CER"
    I_RCV_CEA = "I-Rcv-CEA"
    R_RCV_CEA = "R-Rcv-CEA"  # in no row: we never send a CER on the responder connection
    I_RCV_NON_CEA = "I-Rcv-Non-CEA"  # anything but a CEA while waiting for it
    I_PEER_DISC = "I-Peer-Disc"
    R_PEER_DISC = "R-Peer-Disc"
    I_RCV_DPR = "I-Rcv-DPR"
    R_RCV_DPR = "R-Rcv-DPR"
    I_RCV_DPA = "I-Rcv-DPA"
    R_RCV_DPA = "R-Rcv-DPA"
    I_RCV_DWR = "I-Rcv-DWR"
    R_RCV_DWR = "R-Rcv-DWR"
    I_RCV_DWA = "I-Rcv-DWA"
    R_RCV_DWA = "R-Rcv-DWA"
    WIN_ELECTION = "Win-Election"
    SEND_MESSAGE = "Send-Message"
    I_RCV_MESSAGE = "I-Rcv-Message"  # not CER, CEA, DPR, DPA, DWR or DWA
    R_RCV_MESSAGE = "R-Rcv-Message"
    STOP = "Stop"


class PeerAction(enum.Enum):
    I_SND_CONN_REQ = "I-Snd-Conn-Req"
    R_ACCEPT = "R-Accept"  # keep the R-Conn-CER's connection as the responder connection
    R_REJECT = "R-Reject"  # disconnect the R-Conn-CER's connection
    PROCESS_CER = "Process-CER"
    I_SND_CER = "I-Snd-CER"
    R_SND_CEA = "R-Snd-CEA"
    CLEANUP = "Cleanup"
    ERROR = "Error"  # disconnect (politely or not) on an error; free resources
    PROCESS_CEA = "Process-CEA"
    ELECT = "Elect"
    I_DISC = "I-Disc"
    R_DISC = "R-Disc"
    I_SND_MESSAGE = "I-Snd-Message"
    R_SND_MESSAGE = "R-Snd-Message"
    PROCESS = "Process"
    PROCESS_DWR = "Process-DWR"
    PROCESS_DWA = "Process-DWA"
    I_SND_DPR = "I-Snd-DPR"
    R_SND_DPR = "R-Snd-DPR"
    I_SND_DPA = "I-Snd-DPA"
    R_SND_DPA = "R-Snd-DPA"
    I_SND_DWA = "I-Snd-DWA"
    R_SND_DWA = "R-Snd-DWA"
    # Listed in 5.6.3 but used by no row: the RFC 3539 watchdog (watchdog.py) decides
    # when a DWR goes out, and it goes out as a Send-Message.
    I_SND_DWR = "I-Snd-DWR"
    R_SND_DWR = "R-Snd-DWR"


class Guard(enum.Enum):
    """Outcome of the capabilities check that a guarded row depends on."""

    ACCEPTED = "accepted"  # Process-CER accepted the peer / the CEA's Result-Code is success
    REFUSED = "refused"  # Process-CER refused the peer / the CEA carries a failure


class PeerFsmError(Exception):
    """An event the RFC table does not allow in this state (or a guarded row fired unguarded)."""

    def __init__(self, state: PeerState, event: PeerEvent, guard: Guard | None = None) -> None:
        self.state = state
        self.event = event
        self.guard = guard
        if guard is None and any((state, event, g) in TABLE for g in Guard):
            why = "needs a guard (ACCEPTED or REFUSED)"
        else:
            why = "is not expected"
        super().__init__(f"Diameter peer: event {event.value} {why} in state {state.value}")


S, E, A, G = PeerState, PeerEvent, PeerAction, Guard
Row = tuple[tuple[PeerAction, ...], PeerState]
Key = tuple[PeerState, PeerEvent, Guard | None]

# Refusing a CER: answer it on its own connection with the failure Result-Code chosen by
# Process-CER, then drop that connection. No R-Accept: it never becomes our responder
# connection, and whatever connection we already hold is untouched.
_REFUSE_CER = (A.PROCESS_CER, A.R_SND_CEA, A.R_REJECT)

# fmt: off
TABLE: dict[Key, Row] = {
    #  state            event              action         next state
    #  -----------------------------------------------------------------
    #  Closed           Start            I-Snd-Conn-Req   Wait-Conn-Ack
    (S.CLOSED, E.START, None): ((A.I_SND_CONN_REQ,), S.WAIT_CONN_ACK),
    #                   R-Conn-CER       R-Accept,        R-Open
    #                                    Process-CER,
    #                                    R-Snd-CEA
    (S.CLOSED, E.R_CONN_CER, G.ACCEPTED): ((A.R_ACCEPT, A.PROCESS_CER, A.R_SND_CEA), S.R_OPEN),
    # sigmw: CER refused.
    (S.CLOSED, E.R_CONN_CER, G.REFUSED): (_REFUSE_CER, S.CLOSED),

    #  Wait-Conn-Ack    I-Rcv-Conn-Ack   I-Snd-CER        Wait-I-CEA
    (S.WAIT_CONN_ACK, E.I_RCV_CONN_ACK, None): ((A.I_SND_CER,), S.WAIT_I_CEA),
    #                   I-Rcv-Conn-Nack  Cleanup          Closed
    (S.WAIT_CONN_ACK, E.I_RCV_CONN_NACK, None): ((A.CLEANUP,), S.CLOSED),
    #                   R-Conn-CER       R-Accept,        Wait-Conn-Ack/
    #                                    Process-CER      Elect
    (S.WAIT_CONN_ACK, E.R_CONN_CER, G.ACCEPTED): (
        (A.R_ACCEPT, A.PROCESS_CER), S.WAIT_CONN_ACK_ELECT),
    # sigmw: CER refused; our dial goes on.
    (S.WAIT_CONN_ACK, E.R_CONN_CER, G.REFUSED): (_REFUSE_CER, S.WAIT_CONN_ACK),
    #                   Timeout          Error            Closed
    (S.WAIT_CONN_ACK, E.TIMEOUT, None): ((A.ERROR,), S.CLOSED),

    #  Wait-I-CEA       I-Rcv-CEA        Process-CEA      I-Open
    (S.WAIT_I_CEA, E.I_RCV_CEA, G.ACCEPTED): ((A.PROCESS_CEA,), S.I_OPEN),
    # sigmw: the CEA carries a failure: the peer refused us (5.3: disconnect).
    (S.WAIT_I_CEA, E.I_RCV_CEA, G.REFUSED): ((A.PROCESS_CEA, A.I_DISC), S.CLOSED),
    #                   R-Conn-CER       R-Accept,        Wait-Returns
    #                                    Process-CER,
    #                                    Elect
    (S.WAIT_I_CEA, E.R_CONN_CER, G.ACCEPTED): (
        (A.R_ACCEPT, A.PROCESS_CER, A.ELECT), S.WAIT_RETURNS),
    # sigmw: CER refused; no election, our CER is still waiting for its CEA.
    (S.WAIT_I_CEA, E.R_CONN_CER, G.REFUSED): (_REFUSE_CER, S.WAIT_I_CEA),
    #                   I-Peer-Disc      I-Disc           Closed
    (S.WAIT_I_CEA, E.I_PEER_DISC, None): ((A.I_DISC,), S.CLOSED),
    #                   I-Rcv-Non-CEA    Error            Closed
    (S.WAIT_I_CEA, E.I_RCV_NON_CEA, None): ((A.ERROR,), S.CLOSED),
    #                   Timeout          Error            Closed
    (S.WAIT_I_CEA, E.TIMEOUT, None): ((A.ERROR,), S.CLOSED),

    #  Wait-Conn-Ack/   I-Rcv-Conn-Ack   I-Snd-CER,Elect  Wait-Returns
    (S.WAIT_CONN_ACK_ELECT, E.I_RCV_CONN_ACK, None): ((A.I_SND_CER, A.ELECT), S.WAIT_RETURNS),
    #  Elect            I-Rcv-Conn-Nack  R-Snd-CEA        R-Open
    (S.WAIT_CONN_ACK_ELECT, E.I_RCV_CONN_NACK, None): ((A.R_SND_CEA,), S.R_OPEN),
    #                   R-Peer-Disc      R-Disc           Wait-Conn-Ack
    (S.WAIT_CONN_ACK_ELECT, E.R_PEER_DISC, None): ((A.R_DISC,), S.WAIT_CONN_ACK),
    #                   R-Conn-CER       R-Reject         Wait-Conn-Ack/
    #                                                     Elect
    (S.WAIT_CONN_ACK_ELECT, E.R_CONN_CER, None): ((A.R_REJECT,), S.WAIT_CONN_ACK_ELECT),
    #                   Timeout          Error            Closed
    (S.WAIT_CONN_ACK_ELECT, E.TIMEOUT, None): ((A.ERROR,), S.CLOSED),

    #  Wait-Returns     Win-Election     I-Disc,R-Snd-CEA R-Open
    (S.WAIT_RETURNS, E.WIN_ELECTION, None): ((A.I_DISC, A.R_SND_CEA), S.R_OPEN),
    #                   I-Peer-Disc      I-Disc,          R-Open
    #                                    R-Snd-CEA
    (S.WAIT_RETURNS, E.I_PEER_DISC, None): ((A.I_DISC, A.R_SND_CEA), S.R_OPEN),
    #                   I-Rcv-CEA        R-Disc           I-Open
    # sigmw adds Process-CEA (as Wait-I-CEA does): the CEA's Result-Code is the guard.
    (S.WAIT_RETURNS, E.I_RCV_CEA, G.ACCEPTED): ((A.PROCESS_CEA, A.R_DISC), S.I_OPEN),
    # sigmw: the CEA carries a failure. The peer refused our CER, so we do not fall back
    # to its connection (it would refuse us again): close both.
    (S.WAIT_RETURNS, E.I_RCV_CEA, G.REFUSED): ((A.PROCESS_CEA, A.I_DISC, A.R_DISC), S.CLOSED),
    #                   R-Peer-Disc      R-Disc           Wait-I-CEA
    (S.WAIT_RETURNS, E.R_PEER_DISC, None): ((A.R_DISC,), S.WAIT_I_CEA),
    #                   R-Conn-CER       R-Reject         Wait-Returns
    (S.WAIT_RETURNS, E.R_CONN_CER, None): ((A.R_REJECT,), S.WAIT_RETURNS),
    #                   Timeout          Error            Closed
    (S.WAIT_RETURNS, E.TIMEOUT, None): ((A.ERROR,), S.CLOSED),

    #  R-Open           Send-Message     R-Snd-Message    R-Open
    (S.R_OPEN, E.SEND_MESSAGE, None): ((A.R_SND_MESSAGE,), S.R_OPEN),
    #                   R-Rcv-Message    Process          R-Open
    (S.R_OPEN, E.R_RCV_MESSAGE, None): ((A.PROCESS,), S.R_OPEN),
    #                   R-Rcv-DWR        Process-DWR,     R-Open
    #                                    R-Snd-DWA
    (S.R_OPEN, E.R_RCV_DWR, None): ((A.PROCESS_DWR, A.R_SND_DWA), S.R_OPEN),
    #                   R-Rcv-DWA        Process-DWA      R-Open
    (S.R_OPEN, E.R_RCV_DWA, None): ((A.PROCESS_DWA,), S.R_OPEN),
    #                   R-Conn-CER       R-Reject         R-Open
    (S.R_OPEN, E.R_CONN_CER, None): ((A.R_REJECT,), S.R_OPEN),
    #                   Stop             R-Snd-DPR        Closing
    (S.R_OPEN, E.STOP, None): ((A.R_SND_DPR,), S.CLOSING),
    #                   R-Rcv-DPR        R-Snd-DPA        Closing
    (S.R_OPEN, E.R_RCV_DPR, None): ((A.R_SND_DPA,), S.CLOSING),
    #                   R-Peer-Disc      R-Disc           Closed
    (S.R_OPEN, E.R_PEER_DISC, None): ((A.R_DISC,), S.CLOSED),

    #  I-Open           Send-Message     I-Snd-Message    I-Open
    (S.I_OPEN, E.SEND_MESSAGE, None): ((A.I_SND_MESSAGE,), S.I_OPEN),
    #                   I-Rcv-Message    Process          I-Open
    (S.I_OPEN, E.I_RCV_MESSAGE, None): ((A.PROCESS,), S.I_OPEN),
    #                   I-Rcv-DWR        Process-DWR,     I-Open
    #                                    I-Snd-DWA
    (S.I_OPEN, E.I_RCV_DWR, None): ((A.PROCESS_DWR, A.I_SND_DWA), S.I_OPEN),
    #                   I-Rcv-DWA        Process-DWA      I-Open
    (S.I_OPEN, E.I_RCV_DWA, None): ((A.PROCESS_DWA,), S.I_OPEN),
    #                   R-Conn-CER       R-Reject         I-Open
    (S.I_OPEN, E.R_CONN_CER, None): ((A.R_REJECT,), S.I_OPEN),
    #                   Stop             I-Snd-DPR        Closing
    (S.I_OPEN, E.STOP, None): ((A.I_SND_DPR,), S.CLOSING),
    #                   I-Rcv-DPR        I-Snd-DPA        Closing
    (S.I_OPEN, E.I_RCV_DPR, None): ((A.I_SND_DPA,), S.CLOSING),
    #                   I-Peer-Disc      I-Disc           Closed
    (S.I_OPEN, E.I_PEER_DISC, None): ((A.I_DISC,), S.CLOSED),

    #  Closing          I-Rcv-DPA        I-Disc           Closed
    (S.CLOSING, E.I_RCV_DPA, None): ((A.I_DISC,), S.CLOSED),
    #                   R-Rcv-DPA        R-Disc           Closed
    (S.CLOSING, E.R_RCV_DPA, None): ((A.R_DISC,), S.CLOSED),
    #                   Timeout          Error            Closed
    (S.CLOSING, E.TIMEOUT, None): ((A.ERROR,), S.CLOSED),
    #                   I-Peer-Disc      I-Disc           Closed
    (S.CLOSING, E.I_PEER_DISC, None): ((A.I_DISC,), S.CLOSED),
    #                   R-Peer-Disc      R-Disc           Closed
    (S.CLOSING, E.R_PEER_DISC, None): ((A.R_DISC,), S.CLOSED),
}
# fmt: on


def lookup(state: PeerState, event: PeerEvent, guard: Guard | None = None) -> Row:
    """The row for this state and event; a guard only matters where the row is guarded."""
    row = TABLE.get((state, event, guard))
    if row is None and guard is not None:
        row = TABLE.get((state, event, None))
    if row is None:
        raise PeerFsmError(state, event, guard)
    return row


def elect(local_host: bytes, peer_host: bytes) -> bool:
    """True if the local node wins the election (RFC 6733 5.6.4).

    The Origin-Hosts are compared as octet strings; the local side wins if its own
    lexicographically succeeds the peer's. ASCII letters compare equal to their other
    case (the RFC follows DNS case insensitivity), so both are folded to lower case
    (bytes.lower() touches only A-Z). Equal hosts: nobody succeeds, so no win.
    """
    return local_host.lower() > peer_host.lower()


class PeerFsm:
    """The state of one peer; fire() applies a row and returns the actions to perform."""

    def __init__(self, state: PeerState = PeerState.CLOSED) -> None:
        self._state = state

    @property
    def state(self) -> PeerState:
        return self._state

    def fire(self, event: PeerEvent, guard: Guard | None = None) -> tuple[PeerAction, ...]:
        """Apply the row for (state, event, guard); PeerFsmError leaves the state unchanged."""
        actions, self._state = lookup(self._state, event, guard)
        return actions

    def resolve_election(self, local_host: bytes, peer_host: bytes) -> tuple[PeerAction, ...]:
        """Finish an ELECT action: fire Win-Election if we won; if we lost, nothing happens
        until the CEA (or a disconnect) arrives on our initiator connection."""
        if self._state is not PeerState.WAIT_RETURNS:
            raise PeerFsmError(self._state, PeerEvent.WIN_ELECTION)
        if elect(local_host, peer_host):
            return self.fire(PeerEvent.WIN_ELECTION)
        return ()


_BY_COMMAND: dict[tuple[int, bool], tuple[PeerEvent, PeerEvent]] = {
    # (command code, request?) -> (event on the initiator connection, on the responder one)
    (Command.CAPABILITIES_EXCHANGE, True): (E.I_RCV_CER, E.R_RCV_CER),
    (Command.CAPABILITIES_EXCHANGE, False): (E.I_RCV_CEA, E.R_RCV_CEA),
    (Command.DEVICE_WATCHDOG, True): (E.I_RCV_DWR, E.R_RCV_DWR),
    (Command.DEVICE_WATCHDOG, False): (E.I_RCV_DWA, E.R_RCV_DWA),
    (Command.DISCONNECT_PEER, True): (E.I_RCV_DPR, E.R_RCV_DPR),
    (Command.DISCONNECT_PEER, False): (E.I_RCV_DPA, E.R_RCV_DPA),
}


def event_for_message(
    state: PeerState, on_initiator: bool, command_code: int, is_request: bool
) -> PeerEvent:
    """The event a message received on an established connection raises in this state.

    Not for a CER on a brand-new inbound connection: that is R_CONN_CER (RFC 6733 5.6.1).
    """
    pair = _BY_COMMAND.get((command_code, is_request), (E.I_RCV_MESSAGE, E.R_RCV_MESSAGE))
    event = pair[0] if on_initiator else pair[1]
    # Wait-I-CEA reacts to "anything but the CEA" on our connection as one event.
    if state is S.WAIT_I_CEA and on_initiator and event is not E.I_RCV_CEA:
        return E.I_RCV_NON_CEA
    return event
