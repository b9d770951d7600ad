"""The daemon's metrics, health checks and admin endpoint, on a real Diameter relay
over TCP on this host: what a scrape and `sigmw status` show is what the test did.

(Path metrics need SCTP: tests/sctp/test_prometheus.py has a real Prometheus
scrape sigmw in the VM, paths going down and coming back.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sigmw.cli import main as cli_main
from sigmw.io.daemon import Daemon
from sigmw.obs.catalog import BY_NAME
from sigmw.obs.http import MAX_CONNECTIONS
from tests.diameter_node import DiameterTestClient, DiameterTestServer, result_code
from tests.unit.test_diameter_daemon_tcp import RELAY, relay, wait_until

__all__ = ["relay"]  # the fixture, shared with the relay's own tests

Relay = tuple[Daemon, DiameterTestServer, DiameterTestServer, int]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(daemon: Daemon) -> Samples:
    assert daemon.observability is not None
    status, text = await http_get(daemon.observability.ports["metrics"], "/metrics")
    assert status == 200
    return parse(text)


@pytest.fixture
async def client(relay: Relay) -> AsyncIterator[DiameterTestClient]:
    c = DiameterTestClient("client.test", "test")
    await c.connect_tcp(RELAY, relay[3])
    assert result_code(await c.capabilities_exchange(timeout=5)) == 2001
    yield c
    await c.close()


async def test_scrape_counts_what_the_test_sent(relay: Relay, client: DiameterTestClient) -> None:
    daemon = relay[0]
    before = await scrape(daemon)
    answers = await asyncio.gather(
        *(client.request(client.ccr("srv.test"), timeout=5) for _ in range(40))
    )
    assert all(result_code(a) == 2001 for a in answers)
    after = await scrape(daemon)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0)

    assert grew("sigmw_diameter_requests_total", command="272") == 40
    assert (
        grew("sigmw_diameter_answers_total", command="272", result_code="2001", source="relayed")
        == 40
    )
    assert grew("sigmw_diameter_relay_latency_seconds_count") == 40
    assert value(after, "sigmw_diameter_relay_latency_seconds_bucket", le="+Inf") == value(
        after, "sigmw_diameter_relay_latency_seconds_count"
    )
    # 40 requests in from the client and out to the server; 40 answers the other way
    # (a watchdog exchange may add one message each way).
    for peer, direction in (
        ("client", "in"),
        ("server", "out"),
        ("server", "in"),
        ("client", "out"),
    ):
        got = grew("sigmw_messages_total", peer=peer, ppid="46", direction=direction)
        assert 40 <= got <= 42, (peer, direction, got)
    size = len(client.ccr("srv.test").as_bytes())
    got_bytes = grew("sigmw_bytes_total", peer="client", ppid="46", direction="in")
    assert 40 * (size - 8) <= got_bytes <= 42 * (size + 8)
    assert grew("sigmw_stream_messages_total", peer="client", stream="0", direction="in") >= 40
    assert value(after, "sigmw_diameter_pending_requests", peer="server") == 0
    assert value(after, "sigmw_peer_up", peer="client") == 1
    assert value(after, "sigmw_peer_state", peer="client", state="up") == 1
    assert value(after, "sigmw_peer_state", peer="client", state="idle") == 0
    assert value(after, "sigmw_diameter_watchdog_state", peer="server", state="OKAY") == 1
    assert value(after, "sigmw_diameter_peer_state", peer="server", state="I-Open") == 1
    assert value(after, "sigmw_peer_transitions_total", peer="client", direction="up") == 1
    assert value(after, "sigmw_ready") == 1
    version = next(k for k in after if k[0] == "sigmw_build_info")
    assert dict(version[1])["version"]


async def test_malformed_request_is_counted_and_answered(
    relay: Relay, client: DiameterTestClient
) -> None:
    daemon = relay[0]
    msg = client.ccr("srv.test")
    data = bytearray(msg.as_bytes())
    data[25:28] = (7).to_bytes(3, "big")  # the Session-Id AVP's length: below its header
    e2e = int(msg.header.end_to_end_identifier)
    waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    client._pending[e2e] = waiter  # type: ignore[assignment]
    assert client.conn is not None
    await client.conn.send(bytes(data), 0)
    answer = await asyncio.wait_for(waiter, 5)
    assert result_code(answer) == 5014  # type: ignore[arg-type]
    after = await scrape(daemon)
    assert value(after, "sigmw_malformed_input_total", kind="5014") == 1
    assert (
        value(
            after, "sigmw_diameter_answers_total", command="272", result_code="5014", source="local"
        )
        == 1
    )


async def test_peer_down_readiness_and_reconnect_counts(relay: Relay) -> None:
    daemon, server, backup, _ = relay
    assert daemon.observability is not None
    port = daemon.observability.ports["metrics"]
    assert await http_get(port, "/readyz") == (200, "2 of 3 peers up, 1 needed\n")
    await backup.close()
    await wait_until(lambda: daemon.manager.peers["backup"].state.value != "up")
    await server.close()
    await wait_until(lambda: daemon.manager.peers["server"].state.value != "up")
    status, text = await http_get(port, "/readyz")
    assert (status, text) == (503, "0 of 3 peers up, 1 needed\n")
    await asyncio.sleep(1.5)  # reconnect attempts with 200 ms..1 s backoff, refused
    samples = await scrape(daemon)
    assert value(samples, "sigmw_peer_up", peer="backup") == 0
    assert value(samples, "sigmw_peer_transitions_total", peer="backup", direction="down") == 1
    assert value(samples, "sigmw_peer_connect_attempts_total", peer="backup") >= 2
    assert value(samples, "sigmw_ready") == 0
    # The health check stays green: the process is alive, only not ready.
    assert await http_get(port, "/healthz") == (200, "ok\n")


async def test_http_answers_only_what_it_serves(relay: Relay) -> None:
    daemon = relay[0]
    assert daemon.observability is not None
    port = daemon.observability.ports["metrics"]
    status, text = await http_get(port, "/nope")
    assert status == 404 and "/metrics" in text
    assert (await http_get(port, "/metrics", method="POST"))[0] == 405
    status, text = await http_get(port, "/metrics", method="HEAD")
    assert status == 200 and text == ""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"garbage\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400")
    writer.close()
    # The admin endpoint is a different listener: no metrics there.
    assert (await http_get(daemon.observability.ports["admin"], "/metrics"))[0] == 404


async def test_every_exported_family_is_in_the_catalog(
    relay: Relay, client: DiameterTestClient
) -> None:
    await client.request(client.ccr("srv.test"), timeout=5)
    assert relay[0].observability is not None
    _, text = await http_get(relay[0].observability.ports["metrics"], "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {name for name in families if name.startswith("sigmw_")}
    expected = {f.name.removesuffix("_total") for f in BY_NAME.values()}
    # Path and kernel association families appear once an SCTP association is up.
    sctp_only = {n for n in expected if n.startswith(("sigmw_path_", "sigmw_sctp_"))}
    assert ours == expected - sctp_only | (ours & sctp_only)
    for name in ours:
        f = BY_NAME.get(name) or BY_NAME[name + "_total"]
        assert families[name].type == f.kind.value, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == set(f.labels), (name, sample.labels)


async def test_promtool_accepts_a_live_scrape(relay: Relay, client: DiameterTestClient) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install-testbed.sh installs Debian's prometheus"
    await client.request(client.ccr("srv.test"), timeout=5)
    assert relay[0].observability is not None
    _, text = await http_get(relay[0].observability.ports["metrics"], "/metrics")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_sigmw_status_reads_the_admin_endpoint(
    relay: Relay, client: DiameterTestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.request(client.ccr("srv.test"), timeout=5)
    assert relay[0].observability is not None
    admin = f"127.0.0.1:{relay[0].observability.ports['admin']}"
    # The CLI blocks (urllib): run it beside the loop that serves it.
    code = await asyncio.to_thread(cli_main, ["status", "--admin", admin])
    out = capsys.readouterr().out
    assert code == 0
    assert "ready (3 of 3 peers up, 1 needed)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["client"][1:4] == ["diameter/tcp", "accept", "up"]
    assert lines["server"][1:4] == ["diameter/tcp", "connect", "up"]
    assert "I-Open" in lines["server"] and "OKAY" in lines["server"]
    code = await asyncio.to_thread(cli_main, ["peers", "--admin", admin, "--json"])
    doc = json.loads(capsys.readouterr().out)
    client_view = next(p for p in doc["peers"] if p["name"] == "client")
    assert client_view["messages_in"] >= 2 and client_view["diameter"]["state"] == "R-Open"
    code = await asyncio.to_thread(cli_main, ["paths", "--admin", admin])
    assert "no SCTP paths" in capsys.readouterr().out


def test_status_says_clearly_when_no_daemon_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["status", "--admin", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot read http://127.0.0.1:1/status" in err and "admin.listen" in err


async def test_reloads_are_counted_ok_and_failed(relay: Relay) -> None:
    daemon = relay[0]
    path = Path(daemon.config_path)
    good = path.read_text()
    path.write_text(good + "peers2: []\n")  # unknown key: refused, old config kept
    daemon.reload()
    samples = await scrape(daemon)
    assert value(samples, "sigmw_config_reloads_total", result="failed") == 1
    assert value(samples, "sigmw_config_reloads_total", result="ok") == 0
    assert value(samples, "sigmw_config_last_reload_successful") == 0
    path.write_text(good)
    daemon.reload()
    samples = await scrape(daemon)
    assert value(samples, "sigmw_config_reloads_total", result="ok") == 1
    assert value(samples, "sigmw_config_last_reload_successful") == 1


async def test_idle_connections_cannot_pile_up(relay: Relay) -> None:
    """A flood of clients that send nothing: beyond the cap, connections are closed
    unanswered; once the idle ones go, scrapes are answered again."""
    daemon = relay[0]
    assert daemon.observability is not None
    port = daemon.observability.ports["metrics"]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    with contextlib.suppress(ConnectionResetError):  # unread request: a reset, else EOF
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, unanswered
    writer.close()
    assert daemon.observability.metrics_server.refused >= 1
    for _, w in idle:
        w.close()
    await asyncio.sleep(0.1)
    assert await http_get(port, "/healthz") == (200, "ok\n")
