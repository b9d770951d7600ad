"""Run a real Prometheus server (and promtool) against sigmw's metrics in tests.

A mock scraper would accept exposition text that Prometheus rejects or reads
differently; this runs Debian's `prometheus` 2.42 (/usr/bin/prometheus,
/usr/bin/promtool) so tests assert on what PromQL really returns.

    with PrometheusServer(["127.0.0.1:9464"], scrape_interval=0.5) as prom:
        prom.wait_targets_up()
        prom.wait_for("sigmw_peers_up", lambda r: len(r) == 1 and r[0].value == 2)
    ok, output = promtool_check_metrics(exposition_text)

Facts this relies on (measured with 2.42 on Debian 12, on the host and in the VM):
- /-/ready answers 200 about 0.1 s after start on the host (about 5 s on a first
  start in the VM, where the 50 MB binary is read over 9p), but targets appear
  only about 5 s later: the service-discovery manager throttles its updates to
  one every 5 s (hard-coded). `wait_targets_up` covers that; start one server
  per test module, not per test.
- Everything Prometheus writes (TSDB, WAL, queries.active, its log) goes to a
  temporary directory: in the VM the root filesystem is read-only and /tmp is a
  writable overlay.
- `promtool check metrics` reads the Prometheus text format 0.0.4 on stdin (not
  OpenMetrics: a `# EOF` exposition reads as missing HELP). It exits 0 when
  clean, 3 on lint problems and 1 on a parse error, and prints its findings
  on stderr, one `name message` line each.
- urllib obeys http_proxy variables, so the HTTP client here ignores proxies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from sigmw.testbed.netns import Host

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
JOB = "sigmw"
INSTALL_HINT = "run 'bash scripts/install-testbed.sh' (Debian package prometheus)"


class PrometheusError(RuntimeError):
    """Prometheus did not start, an API call failed, or a wait ran out; the message says why."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    """All labels, `__name__` included when the expression keeps it."""
    value: float
    timestamp: float
    """Evaluation time, Unix seconds."""

    @property
    def name(self) -> str | None:
        return self.labels.get("__name__")


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and (time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One active target from /api/v1/targets, so a test can wait until it is scraped."""

    instance: str
    job: str
    health: str
    """"up", "down" or "unknown" (not scraped yet)."""
    last_error: str
    scrape_url: str
    last_scrape: str
    labels: dict[str, str]


def available() -> str | None:
    """Why the harness cannot run here (for a clear test failure), or None if it can."""
    missing = [str(p) for p in (PROMETHEUS, PROMTOOL) if not os.access(p, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing: {INSTALL_HINT}"
    return None


def free_port(address: str = "127.0.0.1", host: Host | None = None) -> int:
    """A TCP port nobody listens on now (in `host`'s namespace when given)."""
    with _in(host), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration ("500ms"): the config has no fractional seconds."""
    return f"{max(1, round(seconds * 1000))}ms"


def tail(text: str, lines: int = 40) -> str:
    """The end of a log, for exception messages."""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _in(host: Host | None) -> Iterator[None]:
    if host is None:
        yield
    else:
        with host.entered():
            yield


# No proxies: an http_proxy variable would send our 127.0.0.1 queries elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class PrometheusServer:
    """One Prometheus process scraping `targets` ("host:port") as job `sigmw`.

    A context manager: entering starts it and waits for /-/ready; leaving stops it
    (SIGTERM, then SIGKILL) and removes its temporary directory (the log is kept
    in `log`). Timeouts are generous because in the VM everything is ~13x slower
    and the 50 MB binary is read over 9p on its first start.
    """

    targets: Sequence[str]
    scrape_interval: float = 1.0
    scrape_timeout: float | None = None
    """Default: 80% of the interval (Prometheus refuses one above the interval)."""
    metrics_path: str = "/metrics"
    rule_files: Sequence[Path] = ()
    """Recording/alerting rule files Prometheus evaluates every `evaluation_interval`."""
    evaluation_interval: float | None = None
    """Default: the scrape interval."""
    workdir: Path | None = None
    """Config, TSDB and log go here; default a fresh temporary directory, removed on stop."""
    host: Host | None = None
    """Run (and query) inside this network namespace; None: this one."""
    listen_address: str = "127.0.0.1"
    start_timeout: float = 120.0
    http_timeout: float = 30.0
    log_level: str = "info"
    extra_args: Sequence[str] = ()
    port: int = field(default=0, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_dir: bool = field(default=False, init=False, repr=False)
    _log: str = field(default="", init=False, repr=False)

    # --- files ------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self._dir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self._dir / "prometheus.log"

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise PrometheusError("no working directory yet: start() makes one")
        return self.workdir

    @property
    def url(self) -> str:
        return f"http://{self.listen_address}:{self.port}"

    @property
    def log(self) -> str:
        """Everything Prometheus logged so far (kept after stop), for failure messages."""
        if self.workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                self._log = self.log_path.read_text(errors="replace")
        return self._log

    def config_text(self) -> str:
        """prometheus.yml: one job, `sigmw`, with the static targets."""
        interval = self.scrape_interval
        timeout = self.scrape_timeout if self.scrape_timeout is not None else interval * 0.8
        if timeout > interval:
            raise ValueError(f"scrape_timeout {timeout} s above scrape_interval {interval} s")
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": duration(interval),
                "scrape_timeout": duration(timeout),
                "evaluation_interval": duration(self.evaluation_interval or interval),
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": list(self.targets)}],
                }
            ],
        }
        if self.rule_files:
            config["rule_files"] = [str(Path(p).resolve()) for p in self.rule_files]
        return yaml.safe_dump(config, sort_keys=False)

    # --- process ------------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start Prometheus and wait until /-/ready answers 200."""
        if self._proc is not None:
            raise PrometheusError("Prometheus is already running")
        reason = available()
        if reason:
            raise PrometheusError(reason)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="sigmw-prometheus-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        for attempt in (1, 2, 3):
            self.port = free_port(self.listen_address, self.host)
            self._spawn()
            try:
                self._wait_ready()
                return
            except PrometheusError:
                # Another process may have taken the port between free_port and bind.
                if attempt < 3 and "address already in use" in self.log:
                    continue
                self.stop()
                raise

    def _spawn(self) -> None:
        argv = [
            str(PROMETHEUS),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self._dir / 'data'}",
            f"--web.listen-address={self.listen_address}:{self.port}",
            f"--log.level={self.log_level}",
            *self.extra_args,
        ]
        with self.log_path.open("wb") as out:
            options: dict[str, Any] = {"stdout": out, "stderr": subprocess.STDOUT}
            options["stdin"] = subprocess.DEVNULL
            if self.host is not None:
                self._proc = self.host.popen(*argv, **options)
            else:
                self._proc = subprocess.Popen(argv, **options)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise PrometheusError(f"prometheus exited ({code}) at start-up:\n{tail(self.log)}")
            try:
                status, _ = self._get("/-/ready", {}, timeout=2.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except (OSError, PrometheusError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready after {self.start_timeout} s ({last}):\n{tail(self.log)}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, SIGKILL after `timeout`; keep the log, remove our temporary directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _ = self.log  # read it before the directory goes
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._own_dir = False

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- HTTP API -------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]:
        """GET from the server (inside its namespace); HTTP errors come back as statuses."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with _in(self.host):
            try:
                with _OPENER.open(f"{self.url}{path}{query}", timeout=timeout) as resp:
                    return int(resp.status), resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

    def api(self, path: str, **params: str) -> Any:
        """`data` of a /api/v1 answer; PrometheusError with its error text otherwise."""
        status, body = self._get(f"/api/v1/{path}", params, self.http_timeout)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"/api/v1/{path}: HTTP {status}: {body[:500]!r}") from None
        if status != 200 or answer.get("status") != "success":
            kind, error = answer.get("errorType", ""), answer.get("error", "")
            raise PrometheusError(f"/api/v1/{path} {params}: HTTP {status} {kind}: {error}")
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Evaluate PromQL now (or at Unix time `at`): a vector's elements, or one scalar."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        if kind == "string":
            raise PrometheusError(f"{expr!r} is a string, not a number: {result[1]!r}")
        if kind == "matrix":
            raise PrometheusError(f"{expr!r} is a range vector: use query_range or a function")
        return [
            Sample(dict(item["metric"]), float(item["value"][1]), float(item["value"][0]))
            for item in result
        ]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate PromQL at every `step` seconds between Unix times `start` and `end`."""
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )
        return [
            Series(dict(item["metric"]), [(float(t), float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[Sample]], bool],
        timeout: float = 30.0,
        interval: float = 0.2,
    ) -> list[Sample]:
        """Query until predicate(result) holds; its result, or PrometheusError with the last."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"{expr!r}: predicate still false after {timeout} s; last result: {result}"
                )
            time.sleep(interval)

    def targets_health(self) -> list[TargetHealth]:
        """Active targets with their scrape health (empty until discovery's first update)."""
        data = self.api("targets", state="active")
        return [
            TargetHealth(
                instance=t["labels"].get("instance", ""),
                job=t["labels"].get("job", ""),
                health=t["health"],
                last_error=t.get("lastError", ""),
                scrape_url=t.get("scrapeUrl", ""),
                last_scrape=t.get("lastScrape", ""),
                labels=dict(t["labels"]),
            )
            for t in data["activeTargets"]
        ]

    def wait_targets_up(
        self, targets: Sequence[str] | None = None, timeout: float = 60.0
    ) -> list[TargetHealth]:
        """Wait until each of `targets` (default: all) was scraped successfully.

        The first targets appear ~5 s after start (discovery's update throttle).
        """
        wanted = set(self.targets if targets is None else targets)
        deadline = time.monotonic() + timeout
        while True:
            health = self.targets_health()
            up = {t.instance for t in health if t.health == "up"}
            if wanted <= up:
                return health
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"targets not up after {timeout} s: {sorted(wanted - up)}; health: {health}"
                )
            time.sleep(0.2)


# --- promtool ------------------------------------------------------------------------


def _promtool(args: Sequence[str], stdin: str | None, timeout: float) -> tuple[bool, str]:
    reason = available()
    if reason:
        raise PrometheusError(reason)
    done = subprocess.run(
        [str(PROMTOOL), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def promtool_check_metrics(text: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Lint exposition text (Prometheus text format 0.0.4): (clean?, findings).

    Exit 3 on lint problems (counter without `_total`, non-base units such as
    `_milliseconds`, missing HELP, camelCase), 1 on a parse error.
    """
    return _promtool(["check", "metrics"], text, timeout)


def promtool_check_rules(*paths: Path | str, timeout: float = 120.0) -> tuple[bool, str]:
    """Validate recording/alerting rule files: (valid?, promtool's output)."""
    return _promtool(["check", "rules", *map(str, paths)], None, timeout)


def promtool_test_rules(*paths: Path | str, timeout: float = 120.0) -> tuple[bool, str]:
    """Run rule unit-test files (`promtool test rules`): (all passed?, output)."""
    return _promtool(["test", "rules", *map(str, paths)], None, timeout)


def promtool_check_config(path: Path | str, timeout: float = 120.0) -> tuple[bool, str]:
    """Validate a prometheus.yml (and the rule files it names): (valid?, output)."""
    return _promtool(["check", "config", str(path)], None, timeout)


__all__ = [
    "JOB",
    "PROMETHEUS",
    "PROMTOOL",
    "PrometheusError",
    "PrometheusServer",
    "Sample",
    "Series",
    "TargetHealth",
    "available",
    "duration",
    "free_port",
    "promtool_check_config",
    "promtool_check_metrics",
    "promtool_check_rules",
    "promtool_test_rules",
]
