"""deploy/: the systemd unit, kernel settings, container image, Kubernetes manifests,
Prometheus rules and Grafana dashboard are checked against each other and against
sigmw itself (its metric catalog, its configuration loader, its kernel advice).

promtool (Debian's `prometheus` package, installed by scripts/install-testbed.sh) is
required: the rule tests fail rather than skip without it. systemd-analyze and kubectl
are used when present, on top of checks that need neither.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sigmw.config import model as m
from sigmw.config.loader import load_config
from sigmw.diameter.watchdog import WatchdogState
from sigmw.io.daemon import DRAIN_S
from sigmw.io.kernel import SYSCTL_ADVICE
from sigmw.obs.catalog import series_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "sigmw.service"
SYSUSERS = DEPLOY / "systemd" / "sigmw.sysusers"
SYSCTL = DEPLOY / "sysctl.d" / "90-sigmw-sctp.conf"
MODULES = DEPLOY / "modules-load.d" / "sctp.conf"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
K8S = DEPLOY / "kubernetes"
RULES = DEPLOY / "prometheus" / "sigmw-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "sigmw-alerts.test.yml"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "sigmw-dashboard.json"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

METRIC = re.compile(r"\bsigmw_[a-z0-9_]+")
# SIGTERM: protocol goodbyes for up to DRAIN_S / 2, then SCTP SHUTDOWN for up to DRAIN_S.
MAX_STOP_S = DRAIN_S / 2 + DRAIN_S
CONFIG_PATH = "/etc/sigmw/peers.yaml"

Doc = dict[str, Any]


def unknown_metrics(text: str) -> set[str]:
    return set(METRIC.findall(text)) - series_names()


# --- systemd ---------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections of `Key=value`, keys may repeat (kept in order)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not Key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as 20s, 1min 30s or a bare number of seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None, f"[{section}] has no {key}="
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times: {values}"
    return values[0]


def test_systemd_unit_runs_sigmw_as_its_own_user(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    exec_start = shlex.split(one(unit, service, "ExecStart"))
    assert Path(exec_start[0]).name == "sigmw" and Path(exec_start[0]).is_absolute()
    assert exec_start[1:] == ["run", "-c", CONFIG_PATH]
    assert one(unit, service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, service, "User") == "sigmw"
    assert one(unit, service, "DynamicUser") == "no"
    assert one(unit, service, "Restart") == "on-failure"
    assert seconds(one(unit, service, "RestartSec")) > 0
    stop = seconds(one(unit, service, "TimeoutStopSec"))
    assert stop > MAX_STOP_S, f"TimeoutStopSec {stop}s would SIGKILL a {MAX_STOP_S}s drain"
    assert int(one(unit, service, "LimitNOFILE")) >= 4096
    for key in ("Wants", "After"):
        assert "network-online.target" in " ".join(unit["Unit"][key]).split()
    assert "multi-user.target" in one(unit, "Install", "WantedBy").split()


def test_systemd_unit_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        # Every port sigmw uses is above 1024: no capability at all.
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }
    got = {key: one(unit, service, key) for key in expected}
    assert got == expected
    # SCTP sockets are AF_INET/AF_INET6; nothing else beyond AF_UNIX.
    families = one(unit, service, "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    filters = unit[service]["SystemCallFilter"]
    assert filters[0] == "@system-service", "the allow-list must come first"
    assert all(f.startswith("~") for f in filters[1:]), "later filters may only deny"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointing at a stand-in executable (it
    checks the binary exists, and sigmw is not installed at /usr/local/bin here). It
    works without systemd running as PID 1, as in this container."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "no systemd-analyze: scripts/install-testbed.sh installs Debian's systemd"
    text = UNIT.read_text()
    binary = shlex.split(one(parse_unit(text), "Service", "ExecStart"))[0]
    stand_in = tmp_path / "sigmw"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / "sigmw.service"
    copy.write_text(text.replace(binary, str(stand_in)))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    # Unknown keys and bad values are warnings (exit 0): demand silence.
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_sysusers_creates_the_units_user(unit: dict[str, dict[str, list[str]]]) -> None:
    entries = [
        shlex.split(line)
        for line in SYSUSERS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [e for e in entries if e[0] == "u"]
    assert len(users) == 1
    _kind, name, uid, _gecos, _home, shell = users[0]
    assert name == one(unit, "Service", "User") == one(unit, "Service", "Group")
    assert uid == "-", "let systemd-sysusers pick a free system uid"
    assert shell.endswith("nologin")


def conf_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", ";"))
    ]


def test_sysctl_file_sets_what_sigmw_advises() -> None:
    """This kernel has no SCTP, so /proc/sys/net/sctp cannot be consulted: every key
    must be one sigmw's kernel_advice checks, with the value it advises, and every
    advised setting must be in the file."""
    settings = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in conf_lines(SYSCTL))
    )
    advised = {key.replace("/", "."): wanted for key, (wanted, _) in SYSCTL_ADVICE.items()}
    assert settings == advised


def test_modules_load_loads_sctp() -> None:
    assert conf_lines(MODULES) == ["sctp"]


# --- container -------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not logical):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not logical, "the Dockerfile ends in a continuation"
    return out


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(starts) >= 2, "multi-stage: a builder and a runtime stage"
    return steps[starts[-1] :]


def test_dockerfile_is_multi_stage_from_python_311_slim() -> None:
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)
    assert froms[0].split()[1:] == ["AS", "builder"]
    builder = steps[: next(i for i, (w, _) in enumerate(steps) if i and w == "FROM")]
    assert any("pip wheel" in args for word, args in builder if word == "RUN")
    copied = " ".join(args for word, args in builder if word == "COPY").split()
    assert "setup.py" in copied, "setup.py builds the C speedups into the wheel"


def test_dockerfile_final_stage_is_non_root(final_stage: list[tuple[str, str]]) -> None:
    users = [args for word, args in final_stage if word == "USER"]
    assert users, "the final stage must set USER"
    for user in users:
        name = user.split(":")[0]
        assert name not in ("root", "0"), f"USER {user} in the final stage"
    assert users[-1].split(":")[0] == "10001"
    # USER is the last word on who runs: nothing after it may switch back.
    last_user = max(i for i, (word, _) in enumerate(final_stage) if word == "USER")
    assert all(word != "RUN" for word, _ in final_stage[last_user:])


def test_dockerfile_final_stage_contents(final_stage: list[tuple[str, str]]) -> None:
    words = [word for word, _ in final_stage]
    # Only the installed wheels: no source tree, no wheel file copied into a layer.
    assert "COPY" not in words and "ADD" not in words
    runs = [args for word, args in final_stage if word == "RUN"]
    assert any("from=builder" in r and "pip install" in r and "--no-index" in r for r in runs)
    for module in ("sigmw.diameter._speedups", "sigmw.io._mmsg"):  # the image has the C code
        assert any(module in r and "import" in r for r in runs), module
    entrypoint = json.loads(dict(final_stage)["ENTRYPOINT"])
    assert entrypoint == ["sigmw", "run", "-c", CONFIG_PATH]
    exposed = " ".join(args for word, args in final_stage if word == "EXPOSE").split()
    metrics_port = m.Config(node=m.Node("x")).metrics.port
    assert f"{metrics_port}/tcp" in exposed and "3868/sctp" in exposed
    admin_port = m.Config(node=m.Node("x")).admin.port
    assert not any(e.startswith(f"{admin_port}/") for e in exposed), "admin stays private"
    healthcheck = dict(final_stage)["HEALTHCHECK"]
    assert "urllib" in healthcheck
    env = " ".join(args for word, args in final_stage if word == "ENV")
    assert f"http://127.0.0.1:{metrics_port}/healthz" in env


# --- Kubernetes ------------------------------------------------------------------------


def k8s(name: str) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    assert docs, f"{name} is empty"
    return docs


def single(name: str, kind: str) -> Doc:
    docs = k8s(name)
    assert [d["kind"] for d in docs] == [kind]
    return docs[0]


@pytest.fixture(scope="module")
def configmap() -> Doc:
    return single("configmap.yaml", "ConfigMap")


@pytest.fixture(scope="module")
def deployment() -> Doc:
    doc = single("deployment.yaml", "Deployment")
    assert doc["apiVersion"] == "apps/v1"
    return doc


@pytest.fixture(scope="module")
def service() -> Doc:
    doc = single("service.yaml", "Service")
    assert doc["apiVersion"] == "v1"
    return doc


@pytest.fixture(scope="module")
def servicemonitor() -> Doc:
    doc = single("servicemonitor.yaml", "ServiceMonitor")
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    return doc


@pytest.fixture(scope="module")
def config(configmap: Doc, tmp_path_factory: pytest.TempPathFactory) -> m.Config:
    """The ConfigMap's peers.yaml through sigmw's own loader (raises ConfigError)."""
    path = tmp_path_factory.mktemp("configmap") / "peers.yaml"
    path.write_text(configmap["data"]["peers.yaml"])
    return load_config(path)


def container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Doc = containers[0]
    return result


def container_port(deployment: Doc, port: int | str) -> Doc:
    """A container port by name or number, as probes and Services refer to them."""
    ports = container(deployment)["ports"]
    found = [p for p in ports if port in (p.get("name"), p["containerPort"])]
    assert len(found) == 1, f"port {port!r} is not one container port: {ports}"
    result: Doc = found[0]
    return result


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_configmap_peers_yaml_loads(config: m.Config) -> None:
    assert config.peers, "an example with peers"
    assert config.metrics.host == "0.0.0.0", "probes and Prometheus come from outside the pod"
    assert config.admin.host == "127.0.0.1", "the admin endpoint stays on loopback"
    # /readyz must be reachable with the peers sigmw dials itself (accept peers come in
    # through the Service, which sends nothing to an unready pod).
    connect = [p for p in config.peers if p.role is m.Role.CONNECT]
    wanted = config.readiness.min_peers_up
    assert wanted is not None and 1 <= wanted <= len(connect)


def test_deployment_wiring(deployment: Doc, configmap: Doc, config: m.Config) -> None:
    spec = deployment["spec"]
    template = spec["template"]
    assert matches(spec["selector"]["matchLabels"], template["metadata"]["labels"])
    assert template["spec"]["terminationGracePeriodSeconds"] > MAX_STOP_S
    c = container(deployment)
    # The ConfigMap is mounted where the image's ENTRYPOINT reads peers.yaml.
    mount = next(v for v in c["volumeMounts"] if v["mountPath"] == str(Path(CONFIG_PATH).parent))
    assert mount.get("readOnly") is True
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    keys = [item["key"] for item in volume["configMap"].get("items", [{"key": "peers.yaml"}])]
    assert "peers.yaml" in keys
    assert "args" not in c or not c["args"], "the image's ENTRYPOINT runs sigmw"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    sctp = [p for p in c["ports"] if p.get("protocol") == "SCTP"]
    assert [p["containerPort"] for p in sctp] == [3868]
    assert container_port(deployment, "metrics")["containerPort"] == config.metrics.port


def test_deployment_probes_hit_the_metrics_listener(deployment: Doc, config: m.Config) -> None:
    c = container(deployment)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert container_port(deployment, get["port"])["containerPort"] == config.metrics.port


def test_deployment_runs_unprivileged(deployment: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = pod["securityContext"]["runAsUser"]
    assert uid != 0
    final_user = [a for w, a in dockerfile_instructions(DOCKERFILE.read_text()) if w == "USER"]
    assert str(uid) == final_user[-1].split(":")[0], "the same uid as the image"
    sc = container(deployment)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")


def test_service_exposes_sctp_and_metrics(service: Doc, deployment: Doc, config: m.Config) -> None:
    spec = service["spec"]
    assert matches(spec["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    ports = spec["ports"]
    sctp = [p for p in ports if p.get("protocol") == "SCTP"]
    assert [p["port"] for p in sctp] == [3868]
    metrics = [p for p in ports if p.get("name") == "metrics"]
    assert len(metrics) == 1 and metrics[0].get("protocol", "TCP") == "TCP"
    assert metrics[0]["port"] == config.metrics.port
    target = container_port(deployment, metrics[0].get("targetPort", metrics[0]["port"]))
    assert target["containerPort"] == config.metrics.port
    for p in sctp:
        assert container_port(deployment, p["targetPort"])["protocol"] == "SCTP"


def test_servicemonitor_scrapes_the_service(servicemonitor: Doc, service: Doc) -> None:
    spec = servicemonitor["spec"]
    assert matches(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p.get("name") for p in service["spec"]["ports"]}
    assert spec["endpoints"], "at least one endpoint"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    # SigmwDown selects up{job="sigmw"}: the job label must come out as "sigmw".
    job = service["metadata"]["labels"][spec["jobLabel"]] if "jobLabel" in spec else None
    assert (job or service["metadata"]["name"]) == "sigmw"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = single("kustomization.yaml", "Kustomization")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "no kubectl: scripts/install-testbed.sh installs kubernetes-client"
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]


# --- Prometheus ------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, (
        "promtool is missing: install Debian's prometheus package (scripts/install-testbed.sh)"
    )
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=False, cwd=RULES.parent
    )


def alerting_rules() -> Iterator[Doc]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                yield rule


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_config() -> None:
    done = promtool("check", "config", PROMETHEUS_YML.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert RULES.name in yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]


def test_rules_use_only_catalogued_metrics() -> None:
    for rule in alerting_rules():
        assert METRIC.search(rule["expr"]) or rule["alert"] == "SigmwDown", rule["alert"]
        assert not unknown_metrics(rule["expr"]), (rule["alert"], unknown_metrics(rule["expr"]))


def alerts_section() -> str:
    text = DEPLOY_DOC.read_text()
    heading = "## Alerts: what each means and what to do"
    assert heading in text
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_alerts_are_labelled_annotated_and_documented() -> None:
    headings = re.findall(r"^### (\S+)\s*$", alerts_section(), re.MULTILINE)
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        # GitHub's anchor for "### SigmwFoo" is #sigmwfoo.
        assert notes["runbook_url"] == f"docs/deploy.md#{name.lower()}", name
    assert headings == names, "one ### heading per alert, in the rules' order"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - fires == set(), "alerts no test makes fire"
    assert names - silent == set(), "alerts no test shows staying silent"
    assert fires | silent <= names, "tests for alerts that do not exist"


def test_a_healthy_relay_fires_no_alert() -> None:
    """One test group feeds only healthy series and checks every alert stays silent."""
    healthy = [
        {case["alertname"] for case in group["alert_rule_test"]}
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        if not any(case.get("exp_alerts") for case in group.get("alert_rule_test", []))
    ]
    assert {rule["alert"] for rule in alerting_rules()} in healthy


# --- Grafana ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> Doc:
    doc: Doc = json.loads(DASHBOARD.read_text())
    return doc


def panels(dashboard: Doc) -> list[Doc]:
    out: list[Doc] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def template_vars(dashboard: Doc) -> dict[str, Doc]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def variable_query(variable: Doc) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def test_dashboard_structure(dashboard: Doc) -> None:
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels(dashboard):
        assert panel.get("targets"), f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_variables_and_datasource(dashboard: Doc) -> None:
    variables = template_vars(dashboard)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    peer = variable_query(variables["peer"])
    assert re.fullmatch(r"label_values\(sigmw_peer_up(\{[^}]*\})?, peer\)", peer), peer
    ds = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard):
        assert panel["datasource"] == ds, panel["title"]
        assert all(t["datasource"] == ds for t in panel["targets"]), panel["title"]


def dashboard_exprs(dashboard: Doc) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for name, variable in template_vars(dashboard).items():
        if variable["type"] == "query":
            yield f"${name}", variable_query(variable)


def test_dashboard_uses_only_catalogued_metrics(dashboard: Doc) -> None:
    for where, expr in dashboard_exprs(dashboard):
        assert METRIC.search(expr), f"{where}: no sigmw metric in {expr!r}"
        assert not unknown_metrics(expr), (where, unknown_metrics(expr))
    used = {name for _, expr in dashboard_exprs(dashboard) for name in METRIC.findall(expr)}
    for wanted in (
        "sigmw_peer_up",
        "sigmw_path_up",
        "sigmw_path_srtt_seconds",
        "sigmw_path_rto_seconds",
        "sigmw_sctp_retransmitted_chunks_total",
        "sigmw_messages_total",
        "sigmw_diameter_answers_total",
        "sigmw_diameter_relay_latency_seconds_bucket",
        "sigmw_diameter_pending_requests",
        "sigmw_diameter_watchdog_state",
    ):
        assert wanted in used, f"no panel shows {wanted}"
    assert any("histogram_quantile(0.99" in expr for _, expr in dashboard_exprs(dashboard))


def test_dashboard_watchdog_panel_knows_every_state(dashboard: Doc) -> None:
    """The watchdog panel encodes each state as a number (value mappings name them)."""
    panel = next(p for p in panels(dashboard) if "sigmw_diameter_watchdog_state" in str(p))
    exprs = " ".join(t["expr"] for t in panel["targets"])
    states = set(re.findall(r'state="(\w+)"', exprs))
    assert states == {s.value for s in WatchdogState}
    mapped = {
        o["text"] for o in panel["fieldConfig"]["defaults"]["mappings"][0]["options"].values()
    }
    assert mapped == states


def test_dashboard_queries_parse(dashboard: Doc, tmp_path: Path) -> None:
    """promtool has no `check expr`; it parses a recording rule's expr, so wrap each
    panel query in one, with Grafana's variables replaced by what they expand to."""
    grafana = {"$__rate_interval": "1m", "$__interval": "1m", "$instance": ".*", "$peer": ".*"}
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs(dashboard)):
        if expr.startswith("label_values("):
            continue
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# --- docs ------------------------------------------------------------------------------


def test_deploy_doc_names_only_real_metrics_and_files() -> None:
    text = DEPLOY_DOC.read_text()
    assert not unknown_metrics(text), unknown_metrics(text)
    for path in re.findall(r"`(deploy/[\w./-]+)`", text):
        assert (ROOT / path).exists(), path
