"""sigmw's Diameter relay against freeDiameterd 1.2.1 over TCP, on this host (root: it
makes namespaces; no kernel SCTP needed). sigmw runs in this process, in host a with the
Python test nodes; freeDiameterd in host b. Covered: CER/CEA with sigmw dialling and with
freeDiameterd dialling, watchdogs both ways, DPR/DPA both ways (and the reconnection
after freeDiameterd's REBOOTING), the election when both dial at once (sigmw winning and
losing), and traffic relayed through freeDiameterd.

The helpers here are shared with tests/sctp/test_freediameter_interop.py (the same
scenarios over kernel SCTP in the VM).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from diameter.message import constants as k

from sigmw.config.loader import load_config
from sigmw.diameter.node import SendOn
from sigmw.diameter.peer_fsm import PeerState
from sigmw.diameter.relay import Send
from sigmw.diameter.watchdog import WatchdogState
from sigmw.io.daemon import DRAIN_S, Daemon
from sigmw.testbed.freediameter import FdPeer, FdRoute, FreeDiameter, make_certificate, tail
from sigmw.testbed.netns import Host, TwoPaths, two_hosts_two_paths
from tests.diameter_node import DiameterTestClient, DiameterTestServer, avp_value, result_code

Transport = Literal["sctp", "tcp"]
PORT, SERVER_PORT = 3868, 3869  # sigmw and freeDiameterd each on 3868 (different hosts)
FD = "fd.test"
CER, DWR, DPR = 257, 280, 282
FD_TW = 6  # freeDiameterd's watchdog (its minimum)


# --- where everything sits ---------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """sigmw and the Python nodes in host a; freeDiameterd in host b (both its addresses)."""

    net: TwoPaths
    transport: Transport
    certs: Path
    """freeDiameterd's certificate and key, made once (openssl takes ~1 s in the VM)."""

    @property
    def a1(self) -> str:
        return self.net.path1.a_addr

    @property
    def a2(self) -> str:
        return self.net.path2.a_addr

    @property
    def b1(self) -> str:
        return self.net.path1.b_addr

    @property
    def b2(self) -> str:
        return self.net.path2.b_addr


def relay_config(
    lay: Layout,
    host: str = "relay.test",
    fd_role: Literal["connect", "accept"] = "connect",
    watchdog: str = "30s",
) -> str:
    """sigmw: a listener on both a addresses, peer `fd` (either role), a client, realm routes."""
    t = lay.transport
    return f"""\
node:
  name: relay-fd
  diameter: {{origin_host: {host}, origin_realm: test, watchdog: {watchdog},
              capabilities_timeout: 20s, request_timeout: 10s}}
listen:
  - {{name: dia, protocol: diameter, transport: {t}, addresses: [{lay.a1}, {lay.a2}],
     port: {PORT}}}
peers:
  - {{name: fd, protocol: diameter, transport: {t}, role: {fd_role},
     addresses: [{lay.b1}, {lay.b2}], port: {PORT}, diameter: {{host: {FD}, realm: test}},
     reconnect: {{initial: 200ms, max: 1s, jitter: 0.1}}}}
  - {{name: client, protocol: diameter, transport: {t}, role: accept,
     addresses: [{lay.a1}, {lay.a2}], diameter: {{host: c1.test, realm: test}}}}
routes:
  diameter:
    - {{realm: server, peers: [fd]}}
    - {{realm: test, peers: [fd]}}
metrics: {{listen: 127.0.0.1:0}}
admin: {{listen: 127.0.0.1:0}}
"""


def freediameter(
    lay: Layout,
    workdir: Path,
    dial: tuple[str, str] | None = None,
    server: bool = False,
) -> FreeDiameter:
    """freeDiameterd on b; `dial` = (sigmw's Origin-Host, address) makes it ConnectPeer sigmw;
    `server` makes it dial the test server on a and route realm `server` there."""
    peers, routes = [], []
    if dial is not None:
        peers.append(FdPeer(dial[0], dial[1], PORT, lay.transport))
    if server:
        peers.append(FdPeer("srv.server", lay.a1, SERVER_PORT, lay.transport))
        routes.append(FdRoute("server", "srv.server"))
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("cert.pem", "key.pem"):
        shutil.copy(lay.certs / name, workdir / name)
    return FreeDiameter(
        workdir,
        listen_addresses=[lay.b1, lay.b2],
        sctp=lay.transport == "sctp",
        tcp=lay.transport == "tcp",
        tw=FD_TW,
        peers=peers,
        routes=routes,
    )


async def start_fd(fd: FreeDiameter, host: Host) -> None:
    """fd.start in a thread: sigmw's loop keeps answering while freeDiameterd comes up."""
    await asyncio.to_thread(fd.start, host)


def fd_state(identity: str, state: str) -> str:
    """The line freeDiameterd logs when its peer `identity` enters `state`."""
    return f"-> '{state}'\t'{identity}'"


# --- sigmw in this process -----------------------------------------------------------


class _Events(logging.Handler):
    """Collects the daemon's JSON log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.append(json.loads(record.getMessage()))
        except ValueError:
            self.events.append({"event": "text", "text": record.getMessage()})


@dataclass
class Sigmw:
    """A running Daemon, its log events, and every Diameter message it handed to a socket."""

    daemon: Daemon
    events: list[dict[str, Any]]
    sent: list[tuple[int, bool]] = field(default_factory=list)
    """(command code, is request) of each message sigmw's Diameter core decided to send
    (observed on the sans-IO core's outputs, which the daemon then sends unchanged)."""
    task: asyncio.Task[int] | None = None
    stopped_after: float | None = None

    @property
    def core(self) -> Any:
        assert self.daemon.diameter is not None
        return self.daemon.diameter.core

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def count_sent(self, command: int, request: bool) -> int:
        return self.sent.count((command, request))

    async def wait_open(self, peer: str, timeout: float = 30.0) -> None:
        await wait_until(lambda: self.core.is_open(peer), timeout, f"sigmw: {peer} not open")

    async def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM's path (stop_requested); returns how long the daemon took to exit."""
        assert self.task is not None
        started = time.monotonic()
        self.daemon.stop_requested.set()
        await asyncio.wait_for(self.task, timeout)
        self.stopped_after = time.monotonic() - started
        return self.stopped_after

    def _recording(
        self, decide: Callable[..., Sequence[object]]
    ) -> Callable[..., Sequence[object]]:
        """Wrap one of the core's inputs: its outputs go on unchanged, the sends are noted."""

        def observed(*args: object, **kwargs: object) -> Sequence[object]:
            outputs = decide(*args, **kwargs)
            for out in outputs:
                if isinstance(out, Send | SendOn) and len(out.data) >= 20:
                    code = int.from_bytes(out.data[5:8], "big")
                    self.sent.append((code, bool(out.data[4] & 0x80)))
            return outputs

        return observed


@asynccontextmanager
async def running_sigmw(workdir: Path, config: str) -> AsyncIterator[Sigmw]:
    """sigmw's daemon from this configuration text, in the calling thread's namespace."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "sigmw.yaml"
    path.write_text(config)
    logger, handler = logging.getLogger("sigmw"), _Events()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    daemon = Daemon(str(path), load_config(path))
    sig = Sigmw(daemon, handler.events)
    core = sig.core
    for name in ("connected", "disconnected", "received", "timer", "stop"):
        setattr(core, name, sig._recording(getattr(core, name)))
    sig.task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        yield sig
    finally:
        if not sig.task.done():
            daemon.stop_requested.set()
            await asyncio.wait_for(sig.task, 30)
        logger.removeHandler(handler)
        logger.setLevel(level)


async def wait_until(cond: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(what or "condition not reached in time")
        await asyncio.sleep(0.05)


def established(host: Host, transport: Transport) -> int:
    """Established TCP connections / SCTP associations in a host (from /proc/net)."""
    if transport == "tcp":
        rows = host.run("cat", "/proc/net/tcp").stdout.splitlines()[1:]
        return sum(1 for row in rows if row.split()[3] == "01")
    rows = host.run("cat", "/proc/net/sctp/assocs").stdout.splitlines()[1:]
    return sum(1 for row in rows if row.split()[4] == "3")  # ST: SCTP_STATE_ESTABLISHED


def block_b_path2(net: TwoPaths) -> None:
    """Drop everything b sends on path 2 (a pfifo of length 0: no netem needed)."""
    done = net.b.run(
        "tc", "qdisc", "replace", "dev", net.path2.b_dev, "root", "pfifo", "limit", "0"
    )
    assert done.returncode == 0, done.stderr


def unblock_b_path2(net: TwoPaths) -> None:
    net.b.run("tc", "qdisc", "del", "dev", net.path2.b_dev, "root")


# --- the scenarios (each transport's test file calls these) -------------------------------


async def client_of(lay: Layout) -> DiameterTestClient:
    """A client connected to sigmw's listener from host a, capabilities exchanged."""
    client = DiameterTestClient("c1.test", "test")
    if lay.transport == "sctp":
        await client.connect_sctp([(lay.a1, PORT)], [(lay.a1, 0)])
    else:
        await client.connect_tcp(lay.a1, PORT)
    assert result_code(await client.capabilities_exchange(timeout=10)) == 2001
    return client


async def check_request_to_fd(lay: Layout, fd: FreeDiameter, sig: Sigmw) -> None:
    """client -> sigmw -> freeDiameterd, addressed to it: its 3007 comes back (no app 4)."""
    client = await client_of(lay)
    try:
        ccr = client.ccr("test", destination_host=FD)
        answer = await client.request(ccr, timeout=10)
        assert result_code(answer) == 3007, tail(fd.log)
        assert avp_value(answer, k.AVP_ORIGIN_HOST) == FD.encode()
        assert avp_value(answer, k.AVP_SESSION_ID) == ccr.session_id
    finally:
        await client.close()
    await wait_until(lambda: not sig.core.is_open("client"), 10, "client still open")


async def sigmw_dials_and_answers_watchdogs(lay: Layout, tmp_path: Path) -> None:
    """1 (sigmw dials freeDiameterd) and 2 (sigmw answers its DWRs). sigmw's own Tw is
    the default 30 s: any message resets a watchdog, so the side with the shorter Tw is
    the only one that sends DWRs."""
    fd = freediameter(lay, tmp_path / "fd")
    await start_fd(fd, lay.net.b)
    try:
        async with running_sigmw(tmp_path / "sigmw", relay_config(lay)) as sig:
            await sig.wait_open("fd")
            await fd.peer_open("relay.test")
            assert sig.core.slots["fd"].fsm.state is PeerState.I_OPEN
            # Tw 6 s (+- jitter; over SCTP also one right after the CEA): two answered...
            await wait_until(
                lambda: sig.count_sent(DWR, False) >= 2, 4 * FD_TW, str(sig.sent) + tail(fd.log)
            )
            # ...and fd had a whole Tw after the first to complain: no SUSPECT, no reconnection.
            assert "SUSPECT" not in fd.log, tail(fd.log)
            assert fd.log.count(fd_state("relay.test", "STATE_OPEN")) == 1
            assert sig.count_sent(DWR, True) == 0  # fd's DWRs keep resetting our 30 s
            await check_request_to_fd(lay, fd, sig)
    finally:
        await fd.stop_async()


async def fd_dials_then_sigmw_watchdogs_and_goodbye(lay: Layout, tmp_path: Path) -> None:
    """1 (freeDiameterd dials sigmw's listener), 2 (sigmw's DWRs, Tw 2 s, answered) and
    3 (sigmw stops: DPR, freeDiameterd's DPA ends the wait)."""
    fd = freediameter(lay, tmp_path / "fd", dial=("relay.test", lay.a1))
    text = relay_config(lay, fd_role="accept", watchdog="2s")
    async with running_sigmw(tmp_path / "sigmw", text) as sig:
        await start_fd(fd, lay.net.b)
        try:
            await sig.wait_open("fd")
            await fd.peer_open("relay.test")
            assert sig.core.slots["fd"].fsm.state is PeerState.R_OPEN
            # A DWR every 2-2.5 s of silence; one unanswered would make it SUSPECT a Tw later.
            await wait_until(lambda: sig.count_sent(DWR, True) >= 3, 20, "too few DWRs")
            assert sig.core.watchdog_state("fd") is WatchdogState.OKAY
            assert not sig.named("watchdog_failover") and not sig.named("watchdog_down")
            assert "SUSPECT" not in fd.log
            await check_request_to_fd(lay, fd, sig)

            took = await sig.stop()
            assert not sig.named("goodbye_unanswered"), tail(fd.log)
            assert took < DRAIN_S / 2, took  # the DPA ended the wait, not the bound
            assert sig.count_sent(DPR, True) == 1
            states = [(e["from"], e["to"]) for e in sig.named("diameter_state")]
            assert states[-2:] == [("R-Open", "Closing"), ("Closing", "Closed")]
            assert "Peer 'relay.test' sent a DPR with cause: REBOOTING" in fd.log
            assert fd_state("relay.test", "STATE_CLOSING") in fd.log
        finally:
            await fd.stop_async()


async def fd_stops_and_returns(lay: Layout, tmp_path: Path) -> None:
    """3: freeDiameterd's SIGTERM sends DPR (REBOOTING); sigmw answers and redials it."""
    fd = freediameter(lay, tmp_path / "fd")
    await start_fd(fd, lay.net.b)
    try:
        async with running_sigmw(tmp_path / "sigmw", relay_config(lay)) as sig:
            await sig.wait_open("fd")
            await fd.peer_open("relay.test")
            started = time.monotonic()
            assert await fd.stop_async() == 0
            # It waits for the DPA (or its own timeout) before it exits.
            assert time.monotonic() - started < 5, tail(fd.log)
            assert sig.count_sent(DPR, False) == 1  # our DPA
            await wait_until(lambda: not sig.core.is_open("fd"), 10, "sigmw kept fd open")
            assert sig.core.slots["fd"].fsm.state is PeerState.CLOSED
            assert not sig.named("goodbye_unanswered")

            await start_fd(fd, lay.net.b)  # REBOOTING: sigmw dials it again
            await sig.wait_open("fd")
            await fd.peer_open("relay.test")
            await check_request_to_fd(lay, fd, sig)
    finally:
        await fd.stop_async()


def dialling(host: Host, transport: Transport, port: int = PORT) -> bool:
    """Does the host have a connection attempt to `port` still waiting for its answer
    (TCP SYN-SENT, SCTP COOKIE-WAIT)?"""
    if transport == "tcp":
        rows = host.run("cat", "/proc/net/tcp").stdout.splitlines()[1:]
        return any(r.split()[3] == "02" and r.split()[2].endswith(f":{port:04X}") for r in rows)
    rows = host.run("cat", "/proc/net/sctp/assocs").stdout.splitlines()[1:]
    return any(r.split()[4] == "1" and r.split()[12] == str(port) for r in rows)


async def election(lay: Layout, tmp_path: Path, relay_host: str, settle: float) -> None:
    """4: both dial at once. freeDiameterd's dial (to a2) hangs while b's path 2 drops
    everything, so sigmw's CER reaches it in WAITCNXACK: it holds the CER (WAITCNXACK_ELEC)
    until its own connection is up, then sends its CER there and elects (RFC 6733 5.6.4).
    sigmw meanwhile waits for the CEA on its connection and sees fd's CER on its listener.
    The winner keeps the connection its peer dialled and answers the CER on it."""
    sigmw_wins = relay_host > FD
    block_b_path2(lay.net)
    fd = freediameter(lay, tmp_path / "fd", dial=(relay_host, lay.a2))
    await start_fd(fd, lay.net.b)
    try:
        await wait_until(lambda: dialling(lay.net.b, lay.transport), 30, "fd is not dialling")
        async with running_sigmw(tmp_path / "sigmw", relay_config(lay, relay_host)) as sig:
            slot = sig.core.slots["fd"]
            await wait_until(lambda: slot.fsm.state is PeerState.WAIT_I_CEA, 30)
            await asyncio.sleep(settle)  # our CER reaches fd, which holds it unanswered
            assert slot.fsm.state is PeerState.WAIT_I_CEA, tail(fd.log)
            assert dialling(lay.net.b, lay.transport)
            unblock_b_path2(lay.net)  # fd's next SYN / INIT gets through

            await fd.peer_open(relay_host)
            await sig.wait_open("fd")
            await wait_until(lambda: established(lay.net.b, lay.transport) == 1, 15)
            want = PeerState.R_OPEN if sigmw_wins else PeerState.I_OPEN
            assert slot.fsm.state is want, sig.named("diameter_state")
            # Two orders are possible, both ending as RFC 6733 5.6.4 says: fd's CER reaches
            # sigmw while its own CER waits for the CEA (sigmw elects), or fd, having elected
            # first, drops sigmw's connection before its CER arrives (sigmw is then Closed
            # and simply accepts the CER: no election of its own; seen in CI).
            elections = [e["won"] for e in sig.named("election")]
            assert elections in ([sigmw_wins], []), elections
            assert not sig.named("no_cer_first")  # the loser's 4003 CEA is not a new connection
            # fd opened on the CEA to its own CER (it lost), or on our CER (it won).
            opened_on = "Answer" if sigmw_wins else "Request"
            connected = [line for line in fd.log.splitlines() if "Capabilities-Exchange-" in line]
            assert len(connected) == 1 and f"Capabilities-Exchange-{opened_on}" in connected[0]
            assert fd.log.count(fd_state(relay_host, "STATE_OPEN")) == 1
            await check_request_to_fd(lay, fd, sig)
            assert sig.core.is_open("fd") and established(lay.net.b, lay.transport) == 1
            # No churn: the closed loser was not taken for a lost peer and redialled.
            assert sig.count_sent(CER, True) == 1
            if elections:  # (when fd dropped our connection, a redial was scheduled, then
                assert not sig.named("reconnect_scheduled")  # cancelled by the adoption)
    finally:
        unblock_b_path2(lay.net)
        await fd.stop_async()


async def relay_through_fd(
    lay: Layout, tmp_path: Path, sessions: int = 10, per_session: int = 3
) -> tuple[Sigmw, list[str]]:
    """5: client -> sigmw -> freeDiameterd -> server and back, answers matched end to end.
    Returns sigmw (stopped: its DPR is sent) and the session ids, for a capture's checks."""
    server = DiameterTestServer("srv.server", "server", app_ids=(4,))
    if lay.transport == "sctp":
        await server.listen_sctp([(lay.a1, SERVER_PORT), (lay.a2, SERVER_PORT)])
    else:
        await server.listen_tcp(lay.a1, SERVER_PORT)
    fd = freediameter(lay, tmp_path / "fd", server=True)
    await start_fd(fd, lay.net.b)
    try:
        await fd.peer_open("srv.server")
        async with running_sigmw(tmp_path / "sigmw", relay_config(lay, watchdog="2s")) as sig:
            await sig.wait_open("fd")
            await fd.peer_open("relay.test")
            client = await client_of(lay)
            ids = [f"c1.test;{n};interop" for n in range(sessions)]
            requests = []
            for number in range(per_session):
                for sid in ids:
                    ccr = client.ccr("server")
                    ccr.session_id, ccr.cc_request_number = sid, number
                    requests.append(ccr)
            answers = await asyncio.gather(*(client.request(r, timeout=30) for r in requests))
            for request, answer in zip(requests, answers, strict=True):
                assert result_code(answer) == 2001, tail(fd.log)
                assert avp_value(answer, k.AVP_SESSION_ID) == request.session_id
                assert avp_value(answer, k.AVP_ORIGIN_HOST) == b"srv.server"
                assert avp_value(answer, k.AVP_CC_REQUEST_NUMBER) == request.cc_request_number
            got = server.requests
            assert len(got) == len(requests)
            for item in got:  # Route-Record: the client (added by sigmw), then sigmw (by fd)
                records = [a.value for a in item.message.find_avps((k.AVP_ROUTE_RECORD, 0))]
                assert records == [b"c1.test", b"relay.test"]
            # a silence longer than sigmw's Tw: its DWR and fd's DWA on the wire too
            await wait_until(lambda: sig.count_sent(DWR, True) >= 1, 10)
            assert result_code(await client.disconnect(timeout=10)) == 2001
            await client.close()
            await sig.stop()
            assert not sig.named("goodbye_unanswered")
        return sig, ids
    finally:
        await fd.stop_async()
        await server.close()


# --- the TCP tests -----------------------------------------------------------------------


def two_hosts_and_cert(factory: pytest.TempPathFactory) -> Iterator[tuple[TwoPaths, Path]]:
    """Hosts a and b (shared by a module's tests: making them takes ~10 s in the VM)
    and freeDiameterd's certificate. Both transports' modules use it."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (they make network namespaces)")
    certs = factory.mktemp("fd-certs")
    make_certificate(certs, FD)
    with two_hosts_two_paths() as net:
        yield net, certs


def layout_in_a(hosts: tuple[TwoPaths, Path], transport: Transport) -> Iterator[Layout]:
    """This thread (so sigmw and the test nodes) inside host a."""
    net, certs = hosts
    with net.a.entered():
        yield Layout(net, transport, certs)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TwoPaths, Path]]:
    yield from two_hosts_and_cert(tmp_path_factory)


@pytest.fixture
def lay(hosts: tuple[TwoPaths, Path]) -> Iterator[Layout]:
    yield from layout_in_a(hosts, "tcp")


async def test_sigmw_dials_freediameter_and_answers_its_watchdogs(
    lay: Layout, tmp_path: Path
) -> None:
    await sigmw_dials_and_answers_watchdogs(lay, tmp_path)


async def test_freediameter_dials_sigmw_watchdogs_and_dpr_on_stop(
    lay: Layout, tmp_path: Path
) -> None:
    await fd_dials_then_sigmw_watchdogs_and_goodbye(lay, tmp_path)


async def test_freediameter_dpr_answered_and_sigmw_reconnects(lay: Layout, tmp_path: Path) -> None:
    await fd_stops_and_returns(lay, tmp_path)


@pytest.mark.parametrize("relay_host", ["zz-relay.test", "aa-relay.test"])
async def test_election_with_freediameter(lay: Layout, tmp_path: Path, relay_host: str) -> None:
    await election(lay, tmp_path, relay_host, settle=0.5)


async def test_relay_through_freediameter(lay: Layout, tmp_path: Path) -> None:
    sig, _ = await relay_through_fd(lay, tmp_path)
    assert sig.count_sent(CER, True) == 1 and sig.count_sent(DPR, True) == 1
