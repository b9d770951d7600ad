"""Every tunable is applied by the kernel and reads back as set."""

from __future__ import annotations

import socket

import pytest

from sigmw.core.errors import SctpSocketOptionError
from sigmw.io import sockapi
from sigmw.io.connection import SctpConnection, SctpListener
from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp import structs as s
from sigmw.sctp.notifications import AdaptationIndication, AssocChange
from sigmw.sctp.options import DefaultSend, InitParams, SctpTuning

from .support import next_message, wait_for

pytestmark = pytest.mark.sctp
LO = "127.0.0.1"

# Multiples of 4 ms: the kernel keeps times in ticks (HZ=250 on Debian) and rounds up;
# test_timers_are_rounded_to_the_kernel_tick shows it.
TUNED = SctpTuning(
    rto_initial_ms=240,
    rto_min_ms=120,
    rto_max_ms=700,
    assoc_max_retrans=5,
    path_max_retrans=3,
    pf_threshold=1,
    hb_interval_ms=300,
    sack_delay_ms=40,
    sack_freq=2,
    nodelay=True,
    maxseg=1200,
    init=InitParams(12, 14, 3, 900),
)


def _read(sock: socket.socket, assoc_id: int) -> dict[str, object]:
    params = sockapi.read_paddrparams(sock, assoc_id)
    return {
        "rto": sockapi.read_rtoinfo(sock, assoc_id),
        "amr": sockapi.read_assoc_max_retrans(sock, assoc_id),
        "hb": (params.hb_enabled, params.hb_interval_ms),
        "pmr_pf": sockapi.read_thresholds(sock, assoc_id),
        "sack": sockapi.read_sackinfo(sock, assoc_id),
        "pf_expose": sockapi.read_pf_expose(sock, assoc_id),
    }


EXPECTED = {
    "rto": s.RtoInfo(initial=240, min=120, max=700),
    "amr": 5,
    "hb": (True, 300),
    "pmr_pf": (3, 1),
    "sack": (40, 2),
    "pf_expose": 2,
}


async def test_endpoint_defaults_reach_new_associations() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], TUNED, listen=False)
    assert sockapi.read_initmsg(client.sock) == (12, 14, 3, 900)
    assert sockapi.read_nodelay(client.sock) is True
    assoc = await client.connect([(LO, server.port)], timeout=10)
    assert assoc.outbound_streams == 12
    assert _read(client.sock, assoc.assoc_id) == EXPECTED
    server.close()
    client.close()


async def test_per_association_tuning_leaves_other_associations_alone() -> None:
    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    first = await client.connect([(LO, server.port)], timeout=10)
    other = await SctpEndpoint.open([(LO, 0)], listen=False)
    await other.connect([(LO, server.port)], timeout=10)
    again = await client.connect([(LO, server.port)], timeout=10)  # EISCONN: the same one
    assert again.assoc_id == first.assoc_id
    before = _read(client.sock, first.assoc_id)
    client.apply_tuning(TUNED, first.assoc_id)
    assert _read(client.sock, first.assoc_id) == EXPECTED
    assert _read(client.sock, 0)["rto"] == before["rto"]  # endpoint default untouched
    for ep in (server, client, other):
        ep.close()


async def test_nodelay_is_on_by_default_and_autoclose_reads_back() -> None:
    ep = await SctpEndpoint.open([(LO, 0)], SctpTuning(autoclose_s=7))
    assert sockapi.read_nodelay(ep.sock) is True
    assert sockapi.read_autoclose(ep.sock) == 7
    ep.close()


async def test_default_send_parameters_apply_to_plain_sends() -> None:
    listener = SctpListener.open([(LO, 0)])
    tuning = SctpTuning(default_send=DefaultSend(stream=3, ppid=46))
    client = await SctpConnection.connect([(LO, listener.port)], tuning=tuning, timeout=10)
    server, _ = await listener.accept()
    client.sock.send(b"no ancillary data")  # a plain send picks the defaults
    msg = await next_message(server)
    assert (msg.data, msg.stream, msg.ppid) == (b"no ancillary data", 3, 46)
    for t in (client, server):
        t.close()
    listener.close()


async def test_timers_are_rounded_to_the_kernel_tick() -> None:
    ep = await SctpEndpoint.open(
        [(LO, 0)], SctpTuning(rto_initial_ms=250, rto_min_ms=100, rto_max_ms=500)
    )
    initial = sockapi.read_rtoinfo(ep.sock).initial
    assert 250 <= initial < 260  # what sigmw reports back to operators as "clamped"
    ep.close()


async def test_rto_max_below_min_is_refused_with_the_option_named() -> None:
    with pytest.raises(SctpSocketOptionError, match="SCTP_RTOINFO"):
        await SctpEndpoint.open([(LO, 0)], SctpTuning(rto_max_ms=500))  # min stays 1000


async def test_heartbeat_disable_maxseg_fragments_adaptation() -> None:
    tuning = SctpTuning(
        hb_enabled=False, maxseg=1000, disable_fragments=True, adaptation_layer=0x51A4
    )
    server = await SctpEndpoint.open([(LO, 0)], tuning)
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    note = await wait_for(client, AdaptationIndication)  # the server's, seen by the client
    assert (note.assoc_id, note.indication) == (assoc.assoc_id, 0x51A4)
    up = await wait_for(server, AssocChange)
    assert sockapi.read_paddrparams(server.sock, up.assoc_id).hb_enabled is False
    assert sockapi.read_maxseg(server.sock, up.assoc_id) == 1000
    assert sockapi.read_disable_fragments(server.sock) is True
    with pytest.raises(OSError, match="Message too long"):  # no fragmentation allowed
        await server.send(b"x" * 5000, up.assoc_id)
    await server.send(b"x" * 900, up.assoc_id)
    assert len((await next_message(client)).data) == 900
    server.close()
    client.close()


async def test_read_tuning_returns_what_was_applied() -> None:
    from sigmw.sctp.options import tuning_differences

    server = await SctpEndpoint.open([(LO, 0)])
    client = await SctpEndpoint.open([(LO, 0)], listen=False)
    assoc = await client.connect([(LO, server.port)], timeout=10)
    client.apply_tuning(TUNED, assoc.assoc_id)
    assert tuning_differences(TUNED, sockapi.read_tuning(client.sock, assoc.assoc_id)) == []
    odd = SctpTuning(rto_initial_ms=250, rto_min_ms=100, rto_max_ms=500, init=None)
    client.apply_tuning(odd, assoc.assoc_id)
    diff = tuning_differences(odd, sockapi.read_tuning(client.sock, assoc.assoc_id))
    assert [name for name, _, _ in diff] == ["rto_initial_ms"]  # rounded to the tick
    server.close()
    client.close()
