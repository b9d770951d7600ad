"""Per-endpoint and per-association SCTP tunables, as one typed value.

None means "leave the kernel's value": the I/O layer applies only what is set,
and reads the effective values back with the same type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sigmw.sctp.addresses import Address
from sigmw.sctp.timing import Timers


@dataclass(frozen=True, slots=True)
class InitParams:
    """SCTP_INITMSG: what the INIT chunk asks for (endpoint-wide, new associations only)."""

    outbound_streams: int = 16
    """Streams we ask to send on (the peer may grant fewer)."""
    max_inbound_streams: int = 16
    """Most streams we accept from the peer."""
    max_attempts: int = 0
    """INIT retransmissions before CANT_STR_ASSOC (0: kernel default, 8)."""
    max_init_timeout_ms: int = 0
    """Cap of the INIT retransmission timer (0: kernel default, RTO.max)."""


@dataclass(frozen=True, slots=True)
class DefaultSend:
    """SCTP_DEFAULT_SNDINFO: stream/PPID/flags used when a send names none."""

    stream: int = 0
    ppid: int = 0
    flags: int = 0
    context: int = 0


@dataclass(frozen=True, slots=True)
class SctpTuning:
    """Timers and limits of an association; all times in milliseconds."""

    rto_initial_ms: int | None = None
    rto_min_ms: int | None = None
    rto_max_ms: int | None = None
    assoc_max_retrans: int | None = None
    """Consecutive retransmissions (all paths) before the association is declared lost."""
    path_max_retrans: int | None = None
    """Consecutive retransmissions on one path before it is marked unreachable."""
    pf_threshold: int | None = None
    """Errors after which a path is 'potentially failed' and traffic moves (RFC 7829)."""
    expose_pf_state: bool | None = True
    """Report ADDR_POTENTIALLY_FAILED notifications (kernel value 2)."""
    hb_interval_ms: int | None = None
    hb_enabled: bool | None = None
    sack_delay_ms: int | None = None
    """Delayed-SACK timer (0 disables delayed SACK: every packet is acknowledged)."""
    sack_freq: int | None = None
    """Packets per SACK when delayed SACK is on."""
    nodelay: bool | None = True
    """Disable Nagle-style bundling delay (on by default: signaling is ping-pong)."""
    autoclose_s: int | None = None
    """Shut idle associations down after this many seconds (one-to-many only)."""
    maxseg: int | None = None
    """Largest DATA chunk payload before fragmentation (0: path MTU)."""
    disable_fragments: bool | None = None
    adaptation_layer: int | None = None
    """32-bit adaptation indication sent to peers at set-up (RFC 5061)."""
    partial_delivery_point: int | None = None
    """Bytes of a message held before the kernel starts handing it up in pieces."""
    init: InitParams | None = field(default_factory=InitParams)
    default_send: DefaultSend | None = None
    primary: Address | None = None
    """Our preferred destination address of the peer (SCTP_PRIMARY_ADDR)."""
    peer_primary: Address | None = None
    """Ask the peer to send to this local address of ours (needs ASCONF on both sides)."""
    receive_buffer: int | None = None
    """Socket receive buffer in bytes, as SO_RCVBUF reports it (socket-wide)."""
    send_buffer: int | None = None
    """Socket send buffer in bytes, as SO_SNDBUF reports it (socket-wide)."""


def tuning_for(timers: Timers, sack_delay_ms: int | None = 20) -> SctpTuning:
    """The tuning that gives an association these timers (sack delay below RTO.min)."""
    return SctpTuning(
        rto_initial_ms=timers.rto_initial_ms,
        rto_min_ms=timers.rto_min_ms,
        rto_max_ms=timers.rto_max_ms,
        hb_interval_ms=timers.hb_interval_ms,
        hb_enabled=timers.hb_enabled,
        path_max_retrans=timers.path_max_retrans,
        assoc_max_retrans=timers.assoc_max_retrans,
        pf_threshold=timers.pf_threshold,
        sack_delay_ms=sack_delay_ms,
    )


_COMPARED = (
    "rto_initial_ms",
    "rto_min_ms",
    "rto_max_ms",
    "assoc_max_retrans",
    "path_max_retrans",
    "pf_threshold",
    "expose_pf_state",
    "hb_interval_ms",
    "hb_enabled",
    "sack_delay_ms",
    "sack_freq",
    "nodelay",
)


def tuning_differences(wanted: SctpTuning, got: SctpTuning) -> list[tuple[str, object, object]]:
    """(field, wanted, effective) for every set field the kernel did not take as given."""
    out = []
    for name in _COMPARED:
        want, have = getattr(wanted, name), getattr(got, name)
        if want is not None and have is not None and want != have:
            out.append((name, want, have))
    return out
