"""The relays under test, each started in the bench namespace and stopped afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from sigmw.benchkit.tools import (
    APP,
    CLIENT_REALM,
    RELAY_PORT,
    SERVER_HOST,
    SERVER_PORT,
    SERVER_REALM,
    BenchError,
    Json,
    Net,
    stop,
)
from sigmw.testbed.freediameter import FdPeer, FdRoute, FreeDiameter

RELAYS = ("freediameter", "sigmw")


def sigmw_config(address: str, port: int, server_port: int, transport: str, conns: int) -> Json:
    """peers.yaml for `sigmw run`: clients accepted on port, everything to the server."""

    def base() -> Json:  # a fresh dict each time: no YAML aliases in the file
        return {"protocol": "diameter", "transport": transport, "addresses": [address]}

    server = {"host": SERVER_HOST, "realm": SERVER_REALM}
    generators = [
        {"name": f"gen{i}", **base(), "role": "accept",
         "diameter": {"host": f"gen-{i}.{CLIENT_REALM}", "realm": CLIENT_REALM}}
        for i in range(1, conns + 1)
    ]  # fmt: skip
    return {
        "node": {"name": "bench-relay",
                 "diameter": {"origin_host": "relay.bench", "origin_realm": "bench"}},
        "listen": [{"name": "clients", **base(), "port": port}],
        "peers": [{"name": "server", **base(), "role": "connect", "port": server_port,
                   "diameter": server}, *generators],
        "routes": {"diameter": [{"realm": SERVER_REALM, "application": APP, "peers": ["server"]}]},
    }  # fmt: skip


@contextlib.contextmanager
def freediameter_relay(net: Net, workdir: Path, transport: str) -> Iterator[int]:
    """freeDiameterd relaying clients.bench -> server.realm; yields its pid."""
    if net.host is None:
        raise BenchError("freeDiameterd needs a namespace of its own: run as root")
    fd = FreeDiameter(
        workdir,
        identity="relay.bench",
        realm="bench",
        listen_addresses=[net.address],
        port=RELAY_PORT,
        sctp=transport == "sctp",
        tcp=transport == "tcp",
        peers=[
            FdPeer(SERVER_HOST, net.address, SERVER_PORT, "sctp" if transport == "sctp" else "tcp")
        ],
        routes=[FdRoute(SERVER_REALM, SERVER_HOST)],
        acl=[f"ALLOW_IPSEC *.{CLIENT_REALM}"],
    )
    fd.start(net.host)
    try:
        pid = fd.pid  # `ip netns exec` execs, so this is freeDiameterd itself
        if pid is None:
            raise BenchError("freeDiameterd is not running")
        yield pid
    finally:
        fd.stop()


@contextlib.contextmanager
def sigmw_relay(net: Net, workdir: Path, transport: str, conns: int) -> Iterator[int]:
    """`sigmw run` on a generated peers.yaml; yields its pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "peers.yaml"
    data = sigmw_config(net.address, RELAY_PORT, SERVER_PORT, transport, conns)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    log_path = workdir / "sigmw.log"
    with log_path.open("wb") as log:
        argv = net.argv(sys.executable, "-m", "sigmw", "run", "-c", str(config))
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"sigmw run exited ({proc.returncode}): {' | '.join(tail)}")
        yield proc.pid
    finally:
        stop(proc)


@contextlib.contextmanager
def start_relay(name: str, net: Net, workdir: Path, transport: str, conns: int) -> Iterator[int]:
    """Start relay `name` (one of RELAYS); yields its pid, stops it on exit."""
    if name == "freediameter":
        with freediameter_relay(net, workdir, transport) as pid:
            yield pid
    elif name == "sigmw":
        with sigmw_relay(net, workdir, transport, conns) as pid:
            yield pid
    else:
        raise BenchError(f"unknown relay {name!r} (known: {', '.join(RELAYS)})")
