"""A real Prometheus server scrapes sigmw on the SCTP bench: PromQL returns the
message counts the test generated and the path states, including a path going
down and coming back, and promtool accepts a live scrape.

sigmw (host b) relays client -> server over a multihomed association to host a;
Prometheus runs in b's namespace and scrapes sigmw's default metrics address."""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

import pytest

from sigmw.io.endpoint import SctpEndpoint
from sigmw.sctp.options import tuning_for
from sigmw.sctp.timing import FAST_FAILOVER
from sigmw.testbed.netns import Host, TwoPaths
from sigmw.testbed.prometheus import PrometheusServer, Sample, promtool_check_metrics

from .support import Numbered
from .test_daemon import Sigmw
from .test_daemon_failover import LISTEN_PORT, SERVER_PORT, _config, _log

pytestmark = pytest.mark.sctp
METRICS = "127.0.0.1:9464"  # the default metrics.listen: the config sets none


def one(samples: list[Sample]) -> float:
    assert len(samples) == 1, samples
    return samples[0].value


async def wait_value(prom: PrometheusServer, expr: str, want: float, timeout: float = 60) -> None:
    """Poll (off the loop: the harness blocks) until the query's single value is `want`."""
    await asyncio.to_thread(
        prom.wait_for, expr, lambda r: len(r) == 1 and r[0].value == want, timeout
    )


async def test_prometheus_sees_traffic_and_a_path_going_down_and_back(
    net: TwoPaths, tmp_path: Path
) -> None:
    with net.a.entered():
        server = await SctpEndpoint.open(net.a_addresses(SERVER_PORT), tuning_for(FAST_FAILOVER))
    config = tmp_path / "peers.yaml"
    config.write_text(_config(net))
    daemon = Sigmw(config, prefix=tuple(net.b.command()))
    prom = PrometheusServer([METRICS], scrape_interval=0.5, host=net.b, start_timeout=180)
    client: SctpEndpoint | None = None
    traffic: Numbered | None = None
    try:
        await daemon.peer_up("server")
        with net.b.entered():
            client = await SctpEndpoint.open([("127.0.0.1", 0)], listen=False)
        assoc = await client.connect([("127.0.0.1", LISTEN_PORT)], timeout=30)
        await daemon.peer_up("client")
        await asyncio.to_thread(prom.start)
        await asyncio.to_thread(prom.wait_targets_up, None, 120)

        traffic = Numbered(client, assoc.assoc_id, server, ppid=9999, gap=0.01)
        await traffic.send_for(2.0)
        await traffic.settle()
        sent = traffic.sent
        assert sent > 20 and traffic.received == list(range(sent))
        for peer, direction in (("client", "in"), ("server", "out")):
            expr = f'sigmw_messages_total{{peer="{peer}",ppid="9999",direction="{direction}"}}'
            await wait_value(prom, expr, sent)
        # The kernel's own count of DATA chunks sent to the server covers them all
        # (read with the paths, every second: it may lag the message counts).
        chunks = 'sigmw_sctp_data_chunks_total{peer="server",direction="out",ordering="ordered"}'
        await asyncio.to_thread(
            prom.wait_for, chunks, lambda r: len(r) == 1 and r[0].value >= sent, 30
        )

        # The kernel's receive queue for the server's association, read at scrape time.
        assert one(prom.query('sigmw_sctp_receive_buffer_bytes{peer="server"}')) > 0
        assert one(prom.query('sigmw_sctp_receive_queue_bytes{peer="server"}')) >= 0

        p1, p2 = net.path1.a_addr, net.path2.a_addr
        up = 'sigmw_path_up{{peer="server",address="{}"}}'
        primary = 'sigmw_path_primary{{peer="server",address="{}"}}'
        await wait_value(prom, up.format(p1), 1)
        await wait_value(prom, up.format(p2), 1)
        await wait_value(prom, primary.format(p1), 1)
        rows = await _paths_table(net.b)
        assert rows[p1][:2] == ["ACTIVE", "*"] and rows[p2][0] == "ACTIVE", rows

        net.topo.link_down(net.path1, "b")
        await daemon.wait_log(_log("path_failover", peer="server", to=p2))
        await wait_value(prom, up.format(p1), 0)
        await wait_value(prom, primary.format(p2), 1)
        await wait_value(prom, 'sigmw_path_failovers_total{peer="server"}', 1)
        await wait_value(prom, 'sigmw_peer_up{peer="server"}', 1)  # the association lives on
        rows = await _paths_table(net.b)  # `sigmw paths` tells the same story
        assert rows[p1][0] != "ACTIVE" and rows[p2][:2] == ["ACTIVE", "*"], rows

        net.topo.link_up(net.path1, "b")
        await daemon.wait_log(_log("path_failback", peer="server", to=p1), timeout=30)
        await wait_value(prom, up.format(p1), 1)
        await wait_value(prom, primary.format(p1), 1)
        await wait_value(prom, 'sigmw_path_failbacks_total{peer="server"}', 1)
        # Prometheus kept the history: path 1 was down, and came back.
        assert one(prom.query(f"min_over_time({up.format(p1)}[5m])")) == 0
        assert one(prom.query(f"changes({up.format(p1)}[5m])")) >= 2
        unreachable = prom.query(
            f'sigmw_path_state_changes_total{{peer="server",address="{p1}",'
            'state="ADDR_UNREACHABLE"}'
        )
        assert one(unreachable) >= 1
        # srtt is read from the kernel: a loopback-like veth path is well under a second.
        assert 0 <= one(prom.query(f'sigmw_path_srtt_seconds{{peer="server",address="{p1}"}}')) < 1

        text = await asyncio.to_thread(_scrape, net.b, f"http://{METRICS}/metrics")
        ok, report = promtool_check_metrics(text)
        assert ok, report
    finally:
        await asyncio.to_thread(prom.stop)
        if traffic is not None:
            traffic.close()
        daemon.proc.kill()
        daemon.proc.wait(timeout=30)  # reaped here, not by a finalizer at some later point
        if client is not None:
            client.close()
        server.close()


async def _paths_table(host: Host) -> dict[str, list[str]]:
    """`sigmw paths` run as an operator would, in the daemon's host: server's rows by
    address -> [STATE, PRIMARY mark (or ""), ...]."""
    argv = host.command(sys.executable, "-m", "sigmw", "paths", "--admin", "127.0.0.1:9465")
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out
    rows = {}
    for line in out.decode().splitlines()[1:]:
        cells = line.split()
        if cells and cells[0] == "server":
            state, rest = cells[2], cells[3:]
            rows[cells[1].rsplit(":", 1)[0]] = [state, rest[0] if rest[0] == "*" else ""]
    return rows


def _scrape(host: Host, url: str) -> str:
    """GET from inside the host's namespace (on this thread: entered() is per thread)."""
    with host.entered(), urllib.request.urlopen(url, timeout=30) as reply:
        return str(reply.read().decode())
