"""The RFC 3539 transport watchdog (section 3.4, Appendix A), as a transition table.

One Watchdog per Diameter peer connection. The adapter feeds it connection up/down,
every received message and timer expiries; it answers with actions (send a DWR, fail
over, fail back, close, reopen) and keeps the next deadline. Sans-IO: `now` and the
random source are passed in, nothing here reads a clock.

The table is the one at the end of Appendix A, row for row. Its "Event" column mixes
the event with a condition on the RFC's variables (Pending, NumDWA); that condition is
the third part of the key (Cond). A row is a list of steps: WatchdogAction values are
returned to the caller, Step values are the RFC's own bookkeeping done here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

TWINIT_DEFAULT = 30.0
TWINIT_MIN = 6.0
"""RFC 3539 3.4.1: Twinit MUST NOT be below 6 s. Only configuration enforces this, so
that tests can run a fast watchdog."""
JITTER_DEFAULT = 2.0
"""Each interval is Tw plus a value drawn from [-2, +2] seconds (3.4.1 [1])."""
NUM_DWA = 3
"""DWAs needed in a row, in REOPEN, before a reopened connection carries traffic again."""


class WatchdogState(enum.Enum):
    INITIAL = "INITIAL"  # never opened
    OKAY = "OKAY"  # in service
    SUSPECT = "SUSPECT"  # watchdog unanswered: traffic failed over, connection kept
    DOWN = "DOWN"  # closed
    REOPEN = "REOPEN"  # reconnected, proving itself with watchdogs before carrying traffic


class WatchdogEvent(enum.Enum):
    CONNECTION_UP = "connection up"
    CONNECTION_DOWN = "connection down"
    RECEIVE_DWA = "receive DWA"
    RECEIVE_OTHER = "receive non-DWA"  # any other message, requests and DWRs included
    TIMER = "timer expires"


class Cond(enum.Enum):
    """The condition the RFC writes into the Event column (Pending, NumDWA)."""

    ANY = ""
    NOT_PENDING = "!Pending"
    PENDING = "Pending"
    NUM_DWA_EQ_2 = "NumDWA == 2"  # this DWA is the third in a row
    NUM_DWA_LT_2 = "NumDWA < 2"
    PENDING_NUM_DWA_LT_0 = "Pending & NumDWA < 0"  # a second watchdog went unanswered
    PENDING_NUM_DWA_GE_0 = "Pending & NumDWA >= 0"  # the first one did


class WatchdogAction(enum.Enum):
    """What the caller must do."""

    SEND_DWR = "send DWR"  # SendWatchdog()
    FAILOVER = "failover"  # stop sending to this peer; move its pending requests away
    FAILBACK = "failback"  # the peer carries application traffic again
    CLOSE_CONNECTION = "close connection"
    ATTEMPT_OPEN = "attempt open"  # advisory: sigmw's peer manager owns reconnecting
    DISCARD = "discard"  # Throwaway(): do not hand the received message to the application


class Step(enum.Enum):
    """The RFC's bookkeeping, done by the Watchdog itself."""

    CLEAR_PENDING = "Pending = FALSE"
    SET_PENDING = "Pending = TRUE"
    ZERO_NUM_DWA = "NumDWA = 0"
    COUNT_DWA = "NumDWA++"
    FORGET_NUM_DWA = "NumDWA = -1"  # an unanswered DWR restarts the count of 3
    SET_WATCHDOG = "SetWatchdog()"


class WatchdogError(RuntimeError):
    """An event Appendix A calls "Shouldn't be here!" (e.g. connection up while up)."""

    def __init__(self, state: WatchdogState, event: WatchdogEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"watchdog: {event.value} is not expected in state {state.value}")


W, V, C, A, P = WatchdogState, WatchdogEvent, Cond, WatchdogAction, Step
Op = WatchdogAction | Step
Row = tuple[tuple[Op, ...], WatchdogState]
Key = tuple[WatchdogState, WatchdogEvent, Cond]

# fmt: off
TABLE: dict[Key, Row] = {
    # STATE    Event                Actions              New State
    # OKAY     Receive DWA          Pending = FALSE
    #                               SetWatchdog()        OKAY
    (W.OKAY, V.RECEIVE_DWA, C.ANY): ((P.CLEAR_PENDING, P.SET_WATCHDOG), W.OKAY),
    # OKAY     Receive non-DWA      SetWatchdog()        OKAY
    (W.OKAY, V.RECEIVE_OTHER, C.ANY): ((P.SET_WATCHDOG,), W.OKAY),
    # SUSPECT  Receive DWA          Pending = FALSE
    #                               Failback()
    #                               SetWatchdog()        OKAY
    (W.SUSPECT, V.RECEIVE_DWA, C.ANY): (
        (P.CLEAR_PENDING, A.FAILBACK, P.SET_WATCHDOG), W.OKAY),
    # SUSPECT  Receive non-DWA      Failback()
    #                               SetWatchdog()        OKAY
    (W.SUSPECT, V.RECEIVE_OTHER, C.ANY): ((A.FAILBACK, P.SET_WATCHDOG), W.OKAY),
    # REOPEN   Receive DWA &        Pending = FALSE
    #          NumDWA == 2          NumDWA++
    #                               Failback()           OKAY
    (W.REOPEN, V.RECEIVE_DWA, C.NUM_DWA_EQ_2): (
        (P.CLEAR_PENDING, P.COUNT_DWA, A.FAILBACK), W.OKAY),
    # REOPEN   Receive DWA &        Pending = FALSE
    #          NumDWA < 2           NumDWA++             REOPEN
    (W.REOPEN, V.RECEIVE_DWA, C.NUM_DWA_LT_2): ((P.CLEAR_PENDING, P.COUNT_DWA), W.REOPEN),
    # REOPEN   Receive non-DWA      Throwaway()          REOPEN
    (W.REOPEN, V.RECEIVE_OTHER, C.ANY): ((A.DISCARD,), W.REOPEN),
    # INITIAL  Receive DWA          Pending = FALSE
    #                               Throwaway()          INITIAL
    (W.INITIAL, V.RECEIVE_DWA, C.ANY): ((P.CLEAR_PENDING, A.DISCARD), W.INITIAL),
    # INITIAL  Receive non-DWA      Throwaway()          INITIAL
    (W.INITIAL, V.RECEIVE_OTHER, C.ANY): ((A.DISCARD,), W.INITIAL),
    # DOWN     Receive DWA          Pending = FALSE
    #                               Throwaway()          DOWN
    (W.DOWN, V.RECEIVE_DWA, C.ANY): ((P.CLEAR_PENDING, A.DISCARD), W.DOWN),
    # DOWN     Receive non-DWA      Throwaway()          DOWN
    (W.DOWN, V.RECEIVE_OTHER, C.ANY): ((A.DISCARD,), W.DOWN),
    # OKAY     Timer expires &      SendWatchdog()
    #          !Pending             SetWatchdog()
    #                               Pending = TRUE       OKAY
    (W.OKAY, V.TIMER, C.NOT_PENDING): ((A.SEND_DWR, P.SET_WATCHDOG, P.SET_PENDING), W.OKAY),
    # OKAY     Timer expires &      Failover()
    #          Pending              SetWatchdog()        SUSPECT
    (W.OKAY, V.TIMER, C.PENDING): ((A.FAILOVER, P.SET_WATCHDOG), W.SUSPECT),
    # SUSPECT  Timer expires        CloseConnection()
    #                               SetWatchdog()        DOWN
    (W.SUSPECT, V.TIMER, C.ANY): ((A.CLOSE_CONNECTION, P.SET_WATCHDOG), W.DOWN),
    # INITIAL  Timer expires        AttemptOpen()
    #                               SetWatchdog()        INITIAL
    (W.INITIAL, V.TIMER, C.ANY): ((A.ATTEMPT_OPEN, P.SET_WATCHDOG), W.INITIAL),
    # DOWN     Timer expires        AttemptOpen()
    #                               SetWatchdog()        DOWN
    (W.DOWN, V.TIMER, C.ANY): ((A.ATTEMPT_OPEN, P.SET_WATCHDOG), W.DOWN),
    # REOPEN   Timer expires &      SendWatchdog()
    #          !Pending             SetWatchdog()
    #                               Pending = TRUE       REOPEN
    (W.REOPEN, V.TIMER, C.NOT_PENDING): (
        (A.SEND_DWR, P.SET_WATCHDOG, P.SET_PENDING), W.REOPEN),
    # REOPEN   Timer expires &      CloseConnection()
    #          Pending &            SetWatchdog()
    #          NumDWA < 0                                DOWN
    (W.REOPEN, V.TIMER, C.PENDING_NUM_DWA_LT_0): (
        (A.CLOSE_CONNECTION, P.SET_WATCHDOG), W.DOWN),
    # REOPEN   Timer expires &      NumDWA = -1
    #          Pending &            SetWatchdog()
    #          NumDWA >= 0                               REOPEN
    (W.REOPEN, V.TIMER, C.PENDING_NUM_DWA_GE_0): (
        (P.FORGET_NUM_DWA, P.SET_WATCHDOG), W.REOPEN),
    # INITIAL  Connection up        SetWatchdog()        OKAY
    (W.INITIAL, V.CONNECTION_UP, C.ANY): ((P.SET_WATCHDOG,), W.OKAY),
    # DOWN     Connection up        NumDWA = 0
    #                               SendWatchdog()
    #                               SetWatchdog()
    #                               Pending = TRUE       REOPEN
    (W.DOWN, V.CONNECTION_UP, C.ANY): (
        (P.ZERO_NUM_DWA, A.SEND_DWR, P.SET_WATCHDOG, P.SET_PENDING), W.REOPEN),
    # OKAY     Connection down      CloseConnection()
    #                               Failover()
    #                               SetWatchdog()        DOWN
    (W.OKAY, V.CONNECTION_DOWN, C.ANY): (
        (A.CLOSE_CONNECTION, A.FAILOVER, P.SET_WATCHDOG), W.DOWN),
    # SUSPECT  Connection down      CloseConnection()
    #                               SetWatchdog()        DOWN
    (W.SUSPECT, V.CONNECTION_DOWN, C.ANY): ((A.CLOSE_CONNECTION, P.SET_WATCHDOG), W.DOWN),
    # REOPEN   Connection down      CloseConnection()
    #                               SetWatchdog()        DOWN
    (W.REOPEN, V.CONNECTION_DOWN, C.ANY): ((A.CLOSE_CONNECTION, P.SET_WATCHDOG), W.DOWN),
    # sigmw: not in the RFC. The transport reports the end of a connection we closed
    # ourselves (CLOSE_CONNECTION), or a dial that never came up: nothing to do.
    (W.DOWN, V.CONNECTION_DOWN, C.ANY): ((), W.DOWN),
    (W.INITIAL, V.CONNECTION_DOWN, C.ANY): ((), W.INITIAL),
}
# fmt: on


class Watchdog:
    """The watchdog of one peer. Tw is drawn afresh, with jitter, every time it is set."""

    def __init__(self, tw: float, rng: Callable[[], float], jitter: float = JITTER_DEFAULT) -> None:
        if tw <= 0:
            raise ValueError(f"watchdog interval must be positive, got {tw}")
        if not 0 <= jitter <= tw / 3:
            # Keeps every interval at least 2/3 Tw: a deadline never lands at or before now.
            raise ValueError(f"watchdog jitter must be within [0, Tw/3 = {tw / 3:g}], got {jitter}")
        self._tw = tw
        self._jitter = jitter
        self._rng = rng
        self._state = WatchdogState.INITIAL
        self._pending = False
        self._num_dwa = 0
        self._deadline: float | None = None

    @property
    def state(self) -> WatchdogState:
        return self._state

    @property
    def usable(self) -> bool:
        """True if application traffic may be sent to this peer."""
        return self._state is WatchdogState.OKAY

    @property
    def next_deadline(self) -> float | None:
        """When timer() must be called next; None before start() or the first connection."""
        return self._deadline

    def start(self, now: float) -> None:
        """Run the timer before the first connection, so that each Tw advises ATTEMPT_OPEN
        (the RFC's INITIAL timer row). Optional: without it the timer starts at connection up."""
        if self._state is not WatchdogState.INITIAL:
            raise RuntimeError(f"watchdog: start() is for INITIAL, state is {self._state.value}")
        self._set_watchdog(now)

    def connection_up(self, now: float) -> list[WatchdogAction]:
        return self._fire(now, WatchdogEvent.CONNECTION_UP)

    def connection_down(self, now: float) -> list[WatchdogAction]:
        return self._fire(now, WatchdogEvent.CONNECTION_DOWN)

    def received(self, now: float, is_dwa: bool) -> list[WatchdogAction]:
        """Any message from the peer, request or answer, DWR and DWA included."""
        event = WatchdogEvent.RECEIVE_DWA if is_dwa else WatchdogEvent.RECEIVE_OTHER
        return self._fire(now, event)

    def timer(self, now: float) -> list[WatchdogAction]:
        """Call when now >= next_deadline; an early or stray call does nothing."""
        if self._deadline is None or now < self._deadline:
            return []
        return self._fire(now, WatchdogEvent.TIMER)

    def _fire(self, now: float, event: WatchdogEvent) -> list[WatchdogAction]:
        key = (self._state, event, self._condition(event))
        row = TABLE.get(key)
        if row is None:
            raise WatchdogError(self._state, event)
        ops, self._state = row
        out: list[WatchdogAction] = []
        for op in ops:
            if isinstance(op, Step):
                self._apply(op, now)
            else:
                out.append(op)
        return out

    def _condition(self, event: WatchdogEvent) -> Cond:
        if event is WatchdogEvent.TIMER and self._state is WatchdogState.OKAY:
            return Cond.PENDING if self._pending else Cond.NOT_PENDING
        if event is WatchdogEvent.TIMER and self._state is WatchdogState.REOPEN:
            if not self._pending:
                return Cond.NOT_PENDING
            return Cond.PENDING_NUM_DWA_LT_0 if self._num_dwa < 0 else Cond.PENDING_NUM_DWA_GE_0
        if event is WatchdogEvent.RECEIVE_DWA and self._state is WatchdogState.REOPEN:
            return Cond.NUM_DWA_EQ_2 if self._num_dwa == NUM_DWA - 1 else Cond.NUM_DWA_LT_2
        return Cond.ANY

    def _apply(self, step: Step, now: float) -> None:
        if step is Step.CLEAR_PENDING:
            self._pending = False
        elif step is Step.SET_PENDING:
            self._pending = True
        elif step is Step.ZERO_NUM_DWA:
            self._num_dwa = 0
        elif step is Step.COUNT_DWA:
            self._num_dwa += 1
        elif step is Step.FORGET_NUM_DWA:
            self._num_dwa = -1
        else:
            self._set_watchdog(now)

    def _set_watchdog(self, now: float) -> None:
        # RFC: Tw = TWINIT - 2.0 + 4.0 * random(), with our jitter in place of 2.0.
        draw = self._rng()
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"watchdog rng must return a value in [0, 1), got {draw}")
        self._deadline = now + self._tw - self._jitter + 2.0 * self._jitter * draw
