"""The association life cycle of one configured peer, as a transition table.

(state, event) -> (actions, next state); an unlisted pair is a bug, raised as
UnexpectedEvent so tests catch it, while the manager logs and ignores it in
production. Connect-role peers dial with backoff; accept-role peers wait.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    IDLE = "idle"  # configured; accept-role peers wait here for the peer to associate
    CONNECTING = "connecting"  # INIT sent
    UP = "up"  # association established
    WAITING = "waiting"  # connect-role: backoff timer running before the next attempt
    STOPPING = "stopping"  # our SHUTDOWN sent (SIGTERM, removed by reload)
    STOPPED = "stopped"


class Event(enum.Enum):
    START = "start"
    COMM_UP = "comm_up"
    CANT_START = "cant_start"
    COMM_LOST = "comm_lost"
    SHUTDOWN_COMP = "shutdown_comp"
    RESTART = "restart"
    RETRY_TIMER = "retry_timer"
    STOP = "stop"
    ADOPT = "adopt"  # a protocol bound an association the peer dialled in to this peer


class Action(enum.Enum):
    CONNECT = "connect"
    ARM_RETRY = "arm_retry"  # schedule RETRY_TIMER after the next backoff delay
    CANCEL_RETRY = "cancel_retry"
    RESET_BACKOFF = "reset_backoff"
    TUNE = "tune"  # apply the peer's SCTP settings to the association and read them back
    PEER_RESTARTED = "peer_restarted"  # the peer rebooted: protocol state must restart
    SHUTDOWN = "shutdown"  # graceful SCTP shutdown of the association


class UnexpectedEvent(RuntimeError):
    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.value} is not expected in state {state.value}")


S, E, A = State, Event, Action
Row = tuple[tuple[Action, ...], State]

CONNECT_ROLE: dict[tuple[State, Event], Row] = {
    (S.IDLE, E.START): ((A.CONNECT,), S.CONNECTING),
    (S.CONNECTING, E.COMM_UP): ((A.RESET_BACKOFF, A.TUNE), S.UP),
    (S.CONNECTING, E.CANT_START): ((A.ARM_RETRY,), S.WAITING),
    (S.CONNECTING, E.COMM_LOST): ((A.ARM_RETRY,), S.WAITING),
    (S.WAITING, E.RETRY_TIMER): ((A.CONNECT,), S.CONNECTING),
    (S.UP, E.COMM_LOST): ((A.ARM_RETRY,), S.WAITING),
    (S.UP, E.SHUTDOWN_COMP): ((A.ARM_RETRY,), S.WAITING),  # the peer said goodbye
    (S.UP, E.RESTART): ((A.TUNE, A.PEER_RESTARTED), S.UP),
    (S.IDLE, E.STOP): ((), S.STOPPED),
    (S.CONNECTING, E.STOP): ((A.SHUTDOWN,), S.STOPPED),
    (S.WAITING, E.STOP): ((A.CANCEL_RETRY,), S.STOPPED),
    (S.UP, E.STOP): ((A.SHUTDOWN,), S.STOPPING),
    (S.STOPPING, E.SHUTDOWN_COMP): ((), S.STOPPED),
    (S.STOPPING, E.COMM_LOST): ((), S.STOPPED),
    # Diameter election or a CER from a peer we were about to dial: its association is kept.
    (S.CONNECTING, E.ADOPT): ((A.RESET_BACKOFF, A.TUNE), S.UP),
    (S.WAITING, E.ADOPT): ((A.CANCEL_RETRY, A.RESET_BACKOFF, A.TUNE), S.UP),
    (S.UP, E.ADOPT): ((A.TUNE,), S.UP),
}

ACCEPT_ROLE: dict[tuple[State, Event], Row] = {
    (S.IDLE, E.START): ((), S.IDLE),
    (S.IDLE, E.COMM_UP): ((A.TUNE,), S.UP),
    (S.IDLE, E.ADOPT): ((A.TUNE,), S.UP),  # identified by its CER, not its address
    (S.UP, E.ADOPT): ((A.TUNE,), S.UP),  # a new CER after an SCTP restart
    (S.UP, E.COMM_LOST): ((), S.IDLE),
    (S.UP, E.SHUTDOWN_COMP): ((), S.IDLE),
    (S.UP, E.RESTART): ((A.TUNE, A.PEER_RESTARTED), S.UP),
    (S.IDLE, E.STOP): ((), S.STOPPED),
    (S.UP, E.STOP): ((A.SHUTDOWN,), S.STOPPING),
    (S.STOPPING, E.SHUTDOWN_COMP): ((), S.STOPPED),
    (S.STOPPING, E.COMM_LOST): ((), S.STOPPED),
}


def step(table: dict[tuple[State, Event], Row], state: State, event: Event) -> Row:
    try:
        return table[(state, event)]
    except KeyError:
        raise UnexpectedEvent(state, event) from None
