"""The Prometheus harness against a real target: Debian's prometheus 2.42 scrapes a
prometheus_client HTTP server started here (private registry, a Counter and a Gauge
the test changes), and promtool lints exposition text and rules. No root needed.

One server for the module: targets appear only ~5 s after start (discovery throttle).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from sigmw.testbed.prometheus import (
    JOB,
    PrometheusError,
    PrometheusServer,
    Sample,
    available,
    free_port,
    promtool_check_config,
    promtool_check_metrics,
    promtool_check_rules,
    promtool_test_rules,
)

SCRAPE = 0.5  # seconds between scrapes: a few scrapes suffice


@dataclass
class Exporter:
    registry: CollectorRegistry
    messages: Counter
    depth: Gauge
    target: str


def _harness_available() -> None:
    reason = available()
    if reason:
        pytest.fail(f"the Prometheus harness cannot run: {reason}")


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    messages = Counter("sigmw_harness_messages", "Messages seen.", registry=registry)
    depth = Gauge("sigmw_harness_queue_depth", "Messages queued.", registry=registry)
    messages.inc(3)
    depth.set(42)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Exporter(registry, messages, depth, f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def dead_target() -> str:
    return f"127.0.0.1:{free_port()}"  # nobody listens there


@pytest.fixture(scope="module")
def prom(exporter: Exporter, dead_target: str) -> Iterator[PrometheusServer]:
    _harness_available()
    with PrometheusServer([exporter.target, dead_target], scrape_interval=SCRAPE) as server:
        yield server


def value(result: list[Sample]) -> float | None:
    """The single sample's value, None while the series is absent."""
    return result[0].value if len(result) == 1 else None


def test_scrapes_a_live_target_and_reports_a_dead_one(
    prom: PrometheusServer, exporter: Exporter, dead_target: str
) -> None:
    health = prom.wait_targets_up([exporter.target], timeout=60)
    live = next(t for t in health if t.instance == exporter.target)
    assert (live.job, live.health, live.last_error) == (JOB, "up", ""), health
    assert live.scrape_url == f"http://{exporter.target}/metrics"

    prom.wait_for(f'up{{instance="{dead_target}"}}', lambda r: value(r) == 0, timeout=30)
    dead = next(t for t in prom.targets_health() if t.instance == dead_target)
    assert dead.health == "down"
    assert "connection refused" in dead.last_error, dead


def test_gauge_and_counter_as_promql_sees_them(prom: PrometheusServer, exporter: Exporter) -> None:
    prom.wait_targets_up([exporter.target], timeout=60)
    gauge = prom.wait_for("sigmw_harness_queue_depth", lambda r: value(r) == 42, timeout=30)
    assert gauge[0].labels == {
        "__name__": "sigmw_harness_queue_depth",
        "instance": exporter.target,
        "job": JOB,
    }

    exporter.depth.set(-1.5)
    changed = prom.wait_for("sigmw_harness_queue_depth", lambda r: value(r) == -1.5, timeout=30)

    # The series holds both values between the two observations (sample timestamps are the
    # evaluation times; the end is one step later so that the last step is past the change).
    step = 0.25
    start, end = gauge[0].timestamp, changed[0].timestamp + step
    (series,) = prom.query_range("sigmw_harness_queue_depth", start, end, step)
    values = [v for _, v in series.points]
    assert values[0] == 42 and values[-1] == -1.5, series.points

    prom.wait_for("sigmw_harness_messages_total", lambda r: value(r) == 3, timeout=30)
    exporter.messages.inc(4)
    prom.wait_for("sigmw_harness_messages_total", lambda r: value(r) == 7, timeout=30)
    # increase() extrapolates to the window's edges, so it is at least the raw delta.
    increase = value(prom.query("increase(sigmw_harness_messages_total[1m])"))
    assert increase is not None and increase >= 4, increase
    assert value(prom.query("sum(sigmw_harness_messages_total) * 2")) == 14
    assert value(prom.query("scalar(sigmw_harness_messages_total)")) == 7


def test_api_errors_and_wait_timeouts_say_what_happened(prom: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum(")
    with pytest.raises(PrometheusError, match="last result: \\[\\]"):
        prom.wait_for("no_such_metric", bool, timeout=0.5)


def test_server_lifecycle_keeps_log_and_cleans_up() -> None:
    _harness_available()
    server = PrometheusServer([], scrape_interval=1.0)
    with server:
        workdir = server.workdir
        assert workdir is not None and (workdir / "data").is_dir()
        ok, output = promtool_check_config(server.config_path)
        assert ok, output
        assert server.query("vector(1)")[0].value == 1
    assert "Server is ready to receive web requests." in server.log
    assert not workdir.exists()
    with pytest.raises(ValueError, match="scrape_timeout"):
        PrometheusServer(["127.0.0.1:1"], scrape_interval=1, scrape_timeout=2).config_text()


def test_promtool_accepts_prometheus_client_exposition(exporter: Exporter) -> None:
    _harness_available()
    ok, output = promtool_check_metrics(generate_latest(exporter.registry).decode())
    assert ok, output


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        (
            "# HELP sigmw_sent Sent.\n# TYPE sigmw_sent counter\nsigmw_sent 1\n",
            'sigmw_sent counter metrics should have "_total" suffix',
        ),
        (
            "# HELP sigmw_rtt_milliseconds RTT.\n# TYPE sigmw_rtt_milliseconds gauge\n"
            "sigmw_rtt_milliseconds 3\n",
            'sigmw_rtt_milliseconds use base unit "seconds" instead of "milliseconds"',
        ),
        ("sigmw_peers 2\n", "sigmw_peers no help text"),
        ("sigmw peers 2\n", "text format parsing error"),
    ],
    ids=["counter-without-total", "non-base-unit", "no-help", "unparsable"],
)
def test_promtool_flags_bad_exposition(text: str, finding: str) -> None:
    _harness_available()
    ok, output = promtool_check_metrics(text)
    assert not ok
    assert finding in output, output


RULES = """\
groups:
  - name: sigmw
    rules:
      - record: sigmw:messages:rate1m
        expr: rate(sigmw_messages_total[1m])
"""

RULE_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'sigmw_messages_total{peer="a"}'
        values: '0+60x5'
    promql_expr_test:
      - expr: sigmw:messages:rate1m
        eval_time: 5m
        exp_samples:
          - labels: 'sigmw:messages:rate1m{peer="a"}'
            value: 1
"""


def test_promtool_rules(tmp_path: Path) -> None:
    _harness_available()
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "rules_test.yml").write_text(RULE_TEST)
    ok, output = promtool_check_rules(tmp_path / "rules.yml")
    assert ok and "SUCCESS: 1 rules found" in output, output
    ok, output = promtool_test_rules(tmp_path / "rules_test.yml")
    assert ok and "SUCCESS" in output, output

    (tmp_path / "rules_test.yml").write_text(RULE_TEST.replace("value: 1", "value: 2"))
    ok, output = promtool_test_rules(tmp_path / "rules_test.yml")
    assert not ok and "FAILED" in output, output

    (tmp_path / "bad.yml").write_text(RULES.replace("[1m]", "[1m"))
    ok, output = promtool_check_rules(tmp_path / "bad.yml")
    assert not ok and "parse error" in output, output
