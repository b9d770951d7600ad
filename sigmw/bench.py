"""Diameter relay benchmark: sigmw against freeDiameterd, same generator, same server.

    python -m sigmw.bench [--relays freediameter,sigmw] [--transport tcp] [--duration 5]

The load generator and answering server are small C programs (bench/*.c) built
here with gcc into .bench/bin, so neither is the bottleneck. Everything runs in
a network namespace of our own (freeDiameterd refuses loopback-only addresses;
the relay address is a /32 inside that namespace). Per relay it measures:
throughput with 64 and 256 requests in flight (closed loop), latency at 2000
req/s and at 25% of the relay's own maximum (open loop), and the relay's CPU
time per relayed request+answer from /proc/<pid>/stat over each measured
window. A slow independent generator (Python asyncio, closed loop over TCP)
runs too, to show the C generator's numbers are of the right magnitude.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sigmw.testbed.freediameter import FdPeer, FdRoute, FreeDiameter
from sigmw.testbed.netns import Host, Topology

SOURCES = Path(__file__).resolve().parent.parent / "bench"
TOOLS = ("diam_server", "diam_load")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
ADDRESS = "10.201.0.1"  # a /32 inside our own namespace, never routed anywhere
RELAY_PORT, SERVER_PORT = 3868, 3869
SERVER_HOST, SERVER_REALM, CLIENT_REALM, APP = "server.bench", "server.realm", "clients.bench", 4
RELAYS = ("freediameter", "sigmw")
PCTS = ("p50", "p99", "p999")

Json = dict[str, Any]


class BenchError(RuntimeError):
    """A bench step failed; the message says which and why."""


# --- building the C tools -------------------------------------------------------------


def build_tools(cache: Path, sources: Path = SOURCES) -> dict[str, Path]:
    """Compile the tools into cache/bin unless the sources are unchanged since the last build."""
    bindir = cache / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    files = sorted(sources.glob("*.[ch]"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files))
    digest.update(" ".join(CFLAGS).encode())
    stamp = bindir / "sources.sha256"
    tools = {name: bindir / name for name in TOOLS}
    fresh = stamp.exists() and stamp.read_text() == digest.hexdigest()
    if fresh and all(p.exists() for p in tools.values()):
        return tools
    for name, out in tools.items():
        argv = ["gcc", *CFLAGS, "-o", str(out), str(sources / f"{name}.c"), "-lm"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"building {name} failed:\n{done.stderr}")
    stamp.write_text(digest.hexdigest())
    return tools


# --- processes in the bench namespace ------------------------------------------------


@dataclass
class Net:
    """Where the bench runs: a namespace of ours (host) or, without root, this one."""

    host: Host | None
    address: str

    def argv(self, *argv: str) -> list[str]:
        return self.host.command(*argv) if self.host else list(argv)


@contextlib.contextmanager
def bench_net() -> Iterator[Net]:
    """A fresh namespace with lo up and ADDRESS on it; 127.0.0.1 here without root."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield Net(None, "127.0.0.1")
        return
    with Topology() as topo:
        host = topo.add_host("bench")
        done = host.run("ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo")
        if done.returncode != 0:
            raise BenchError(f"cannot add {ADDRESS} in the bench namespace: {done.stderr}")
        yield Net(host, ADDRESS)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    """Is pid running (not gone, not a zombie waiting to be reaped)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(net: Net, tool: Path, sctp: bool) -> subprocess.Popen[str]:
    argv = [str(tool), "--listen", net.address, "--port", str(SERVER_PORT)]
    argv += ["--origin-host", SERVER_HOST, "--origin-realm", SERVER_REALM, "--apps", str(APP)]
    proc = subprocess.Popen(
        net.argv(*argv, *(["--sctp"] if sctp else [])), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("READY"):
        stop(proc)
        raise BenchError("diam_server did not start")
    return proc


# --- one generator run with the relay's CPU sampled over the measured window ---------


@dataclass
class Run:
    """One scenario's outcome."""

    scenario: str
    gen: Json
    """The generator's JSON line."""
    relay_cpu_us: float | None
    """Relay CPU time per answered request over the measured window (None: not sampled)."""


def run_load(net: Net, tool: Path, args: Sequence[str], pid: int | None) -> tuple[Json, float]:
    """Run diam_load to the end; return its JSON and the CPU seconds pid used in the window."""
    proc = subprocess.Popen(
        net.argv(str(tool), *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    ticks, errors = [], []
    for line in proc.stderr:
        if line.strip() in ("MEASURE_START", "MEASURE_END"):
            if pid is not None:
                ticks.append(cpu_ticks(pid))
        else:
            errors.append(line.rstrip())
    out = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0 or not out.strip():
        raise BenchError(f"diam_load {' '.join(args)} failed: {' | '.join(errors)}")
    cpu = (ticks[-1] - ticks[0]) / os.sysconf("SC_CLK_TCK") if len(ticks) == 2 else 0.0
    result: Json = json.loads(out.strip().splitlines()[-1])
    return result, cpu


def load_args(net: Net, port: int, opts: argparse.Namespace, mode: list[str]) -> list[str]:
    args = ["--connect", net.address, "--port", str(port), "--conns", str(opts.conns)]
    args += ["--duration", str(opts.duration), "--warmup", str(opts.warmup)]
    args += ["--dest-realm", SERVER_REALM, "--origin-realm", CLIENT_REALM]
    return [*args, *mode, *(["--sctp"] if opts.transport == "sctp" else [])]


def measure(
    net: Net,
    tools: dict[str, Path],
    port: int,
    pid: int | None,
    opts: argparse.Namespace,
    name: str,
    mode: list[str],
) -> Run:
    gen, cpu = run_load(net, tools["diam_load"], load_args(net, port, opts, mode), pid)
    window_answers = gen["throughput"] * gen["duration_s"]
    per_req = cpu * 1e6 / window_answers if pid is not None and window_answers else None
    return Run(name, gen, per_req)


def wait_relay_ready(
    net: Net,
    tools: dict[str, Path],
    port: int,
    opts: argparse.Namespace,
    pid: int,
    timeout: float = 30.0,
) -> None:
    """Probe with tiny runs until requests through the relay come back 2001."""
    deadline = time.monotonic() + timeout
    last = ""
    probe = argparse.Namespace(**{**vars(opts), "duration": 0.2, "warmup": 0, "conns": 1})
    while time.monotonic() < deadline:
        if not alive(pid):
            raise BenchError("the relay exited")
        args = load_args(net, port, probe, ["--closed", "1", "--timeout", "1"])
        done = subprocess.run(
            net.argv(str(tools["diam_load"]), *args), capture_output=True, text=True, check=False
        )
        with contextlib.suppress(ValueError, IndexError):
            gen = json.loads(done.stdout.strip().splitlines()[-1])
            if gen["answered"] > 0 and set(gen["result_codes"]) == {"2001"}:
                return
            last = f"result codes {gen['result_codes']}"
        last = last or done.stderr.strip()
        time.sleep(0.5)
    raise BenchError(f"relay not ready after {timeout:.0f} s ({last})")


# --- the relays under test --------------------------------------------------------------


def sigmw_config(address: str, port: int, server_port: int, transport: str, conns: int) -> Json:
    """peers.yaml for `sigmw run`: clients accepted on port, everything to the server."""
    base = {"protocol": "diameter", "transport": transport, "addresses": [address]}
    server = {"host": SERVER_HOST, "realm": SERVER_REALM}
    generators = [
        {"name": f"gen{i}", **base, "role": "accept",
         "diameter": {"host": f"gen-{i}.{CLIENT_REALM}", "realm": CLIENT_REALM}}
        for i in range(1, conns + 1)
    ]  # fmt: skip
    return {
        "node": {"name": "bench-relay",
                 "diameter": {"origin_host": "relay.bench", "origin_realm": "bench"}},
        "listen": [{"name": "clients", **base, "port": port}],
        "peers": [{"name": "server", **base, "role": "connect", "port": server_port,
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
def start_relay(name: str, net: Net, workdir: Path, opts: argparse.Namespace) -> Iterator[int]:
    if name == "freediameter":
        with freediameter_relay(net, workdir, opts.transport) as pid:
            yield pid
    elif name == "sigmw":
        with sigmw_relay(net, workdir, opts.transport, opts.conns) as pid:
            yield pid
    else:
        raise BenchError(f"unknown relay {name!r} (known: {', '.join(RELAYS)})")


# --- scenarios -------------------------------------------------------------------------


def scenarios_through(
    net: Net,
    tools: dict[str, Path],
    port: int,
    pid: int,
    opts: argparse.Namespace,
    runs: list[Run],
    relay: bool,
) -> None:
    """Closed 64/256; for a relay also open 2000/s and 25% of its max; then the Python check.

    Appends to runs as it goes, so a later failure keeps the earlier figures. Before each
    relay scenario a probe waits until the relay answers again (an overloaded relay can
    take seconds to drain its queues, most of all over SCTP)."""

    def one(name: str, mode: list[str]) -> None:
        if relay:
            wait_relay_ready(net, tools, port, opts, pid, timeout=60)
        runs.append(measure(net, tools, port, pid, opts, name, mode))

    for n in (64, 256):
        one(f"closed{n}", ["--closed", str(n)])
    if relay:
        best = max(r.gen["throughput"] for r in runs)
        one("open2000", ["--rate", "2000"])
        one("open25%", ["--rate", str(max(10, round(best / 4)))])
    if opts.transport == "tcp":
        runs.append(run_pygen(net, port, pid, opts))


def run_pygen(net: Net, port: int, pid: int, opts: argparse.Namespace) -> Run:
    args = ["pygen", net.address, str(port), "64", str(opts.duration), str(opts.warmup)]
    argv = net.argv(sys.executable, "-m", "sigmw.bench", *args)
    before = cpu_ticks(pid)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    ticks = cpu_ticks(pid) - before  # whole run incl. warm-up: a rough figure
    if done.returncode != 0:
        raise BenchError(f"python generator failed: {done.stderr.strip()[-400:]}")
    gen: Json = json.loads(done.stdout.strip().splitlines()[-1])
    total = gen["answered_total"]
    cpu = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / total if total else None
    return Run("pygen64", gen, cpu)


# --- the independent check: a plain Python asyncio generator (closed loop, TCP) ---------

_HDR = struct.Struct("!IIIII")
_FLAG_R, _FLAG_P = 0x80, 0x40


def avp(code: int, data: bytes) -> bytes:
    """A vendor-less AVP with the M flag, padded to 4 bytes."""
    return struct.pack("!II", code, 0x40 << 24 | (8 + len(data))) + data + bytes(-len(data) % 4)


def avp_u32(code: int, value: int) -> bytes:
    return avp(code, struct.pack("!I", value))


def diameter_message(flags: int, cmd: int, app: int, hbh: int, e2e: int, avps: bytes) -> bytes:
    """Header (version 1, flags such as 0x80 request) followed by encoded AVPs."""
    return _HDR.pack(1 << 24 | (20 + len(avps)), flags << 24 | cmd, app, hbh, e2e) + avps


def result_code(msg: bytes) -> int:
    """The top-level Result-Code of a message; 0 when it has none."""
    off = 20
    while off + 12 <= len(msg):
        code, flags_len = struct.unpack_from("!II", msg, off)
        if code == 268 and not flags_len & 0x80000000:
            return int(struct.unpack_from("!I", msg, off + 8)[0])
        off += ((flags_len & 0xFFFFFF) + 3) & ~3
    return 0


@dataclass
class _PyGen:
    """Request building and answer matching for one connection."""

    identity: bytes
    seq: int = 0
    outstanding: set[int] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    mismatches: int = 0

    def ident_avps(self) -> bytes:
        return avp(264, self.identity) + avp(296, CLIENT_REALM.encode())

    def cer(self) -> bytes:
        avps = self.ident_avps() + avp(257, b"\0\1" + bytes([10, 201, 0, 1]))
        avps += avp_u32(266, 0) + avp(269, b"sigmw-bench-pygen") + avp_u32(258, APP)
        return diameter_message(_FLAG_R, 257, 0, 0, 0, avps)

    def request(self) -> bytes:
        self.seq += 1
        self.outstanding.add(self.seq)
        session = b"%s;py;%d" % (self.identity, self.seq // 4)
        avps = avp(263, session) + avp_u32(258, APP) + self.ident_avps()
        avps += avp(283, SERVER_REALM.encode()) + avp_u32(416, 1) + avp_u32(415, self.seq % 4)
        return diameter_message(_FLAG_R | _FLAG_P, 272, APP, self.seq, self.seq, avps)

    def ondiameter_message(self, msg: bytes, counted: bool) -> bytes:
        """Handle one message; returns what to send back (a DWA/DPA or the next request)."""
        _, flags_cmd, app, hbh, e2e = _HDR.unpack_from(msg)
        cmd = flags_cmd & 0xFFFFFF
        if flags_cmd >> 24 & _FLAG_R:  # the relay's DWR or DPR
            return diameter_message(0, cmd, app, hbh, e2e, avp_u32(268, 2001) + self.ident_avps())
        if cmd != 272:
            return b""
        if e2e not in self.outstanding or hbh != e2e:
            self.mismatches += 1
            return b""
        self.outstanding.discard(e2e)
        if counted:
            self.answered += 1
            code = str(result_code(msg))
            self.codes[code] = self.codes.get(code, 0) + 1
        return self.request()


async def _pygen(address: str, port: int, inflight: int, duration: float, warmup: float) -> Json:
    reader, writer = await asyncio.open_connection(address, port)
    gen = _PyGen(f"gen-1.{CLIENT_REALM}".encode())
    writer.write(gen.cer())
    header = await asyncio.wait_for(reader.readexactly(20), 5)
    cea = header + await reader.readexactly((int.from_bytes(header[1:4], "big")) - 20)
    if result_code(cea) != 2001:
        raise BenchError(f"CER refused ({result_code(cea)})")
    writer.write(b"".join(gen.request() for _ in range(inflight)))
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end, buf, total = start + duration, b"", 0
    while (now := loop.time()) < end:
        buf += await asyncio.wait_for(reader.read(262144), 5)
        out, off = [], 0
        while len(buf) - off >= 20 and len(buf) - off >= (
            n := int.from_bytes(buf[off + 1 : off + 4])
        ):
            out.append(gen.ondiameter_message(buf[off : off + n], now >= start))
            off, total = off + n, total + 1
        buf = buf[off:]
        writer.write(b"".join(out))
    writer.write(diameter_message(_FLAG_R, 282, 0, 0, 0, gen.ident_avps() + avp_u32(273, 0)))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 1)
    writer.close()
    return {
        "tool": "pygen",
        "inflight": inflight,
        "duration_s": duration,
        "throughput": gen.answered / duration,
        "answered": gen.answered,
        "answered_total": total,
        "mismatches": gen.mismatches,
        "result_codes": gen.codes,
    }


def _pygen_main(args: Sequence[str]) -> int:
    address, port, inflight, duration, warmup = args
    result = asyncio.run(_pygen(address, int(port), int(inflight), float(duration), float(warmup)))
    print(json.dumps(result))
    return 0


# --- report ----------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_table(title: str, runs: Sequence[Run], cpu_label: str) -> str:
    head = (
        "scenario",
        "rate",
        "answers/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        cpu_label,
        "gen us/req",
        "errors",
    )
    rows: list[tuple[str, ...]] = [head]
    for r in runs:
        g, lat = r.gen, r.gen.get("latency_us", {})
        bad = sum(n for c, n in g.get("result_codes", {}).items() if c != "2001")
        errors = f"{bad}/{g.get('timeouts', 0)}/{g.get('mismatches', 0)}"
        rate = _fmt(g["rate"], 0) if g.get("mode") == "open" else "max"
        ms = [_fmt(lat[k] / 1e3, 2) if lat and g["answered"] else "-" for k in PCTS]
        rows.append(
            (
                r.scenario,
                rate,
                _fmt(g["throughput"], 0),
                *ms,
                _fmt(r.relay_cpu_us, 2),
                _fmt(g.get("cpu_us_per_req"), 2),
                errors,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        title,
        *("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows),
    ]
    return "\n".join(lines) + "\n  (errors: not-2001 answers / timeouts / mismatches)"


def ratios(sigmw: Sequence[Run], fd: Sequence[Run]) -> str:
    """sigmw / freeDiameterd for each figure both have."""
    mine, theirs = {r.scenario: r for r in sigmw}, {r.scenario: r for r in fd}
    lines = ["sigmw / freeDiameterd"]
    for name in [n for n in mine if n in theirs]:
        a, b = mine[name], theirs[name]
        # Open-loop answers/s is just the offered rate: compare latency there instead.
        figures: list[tuple[str, float | None, float | None]] = [
            ("relay us/req", a.relay_cpu_us, b.relay_cpu_us)
        ]
        if name.startswith("open"):
            figures += [(k, a.gen["latency_us"][k], b.gen["latency_us"][k]) for k in PCTS]
        else:
            figures.insert(0, ("answers/s", a.gen["throughput"], b.gen["throughput"]))
        text = [f"{k} {x / y:.2f}" for k, x, y in figures if x is not None and y]
        lines.append(f"  {name:10} " + "  ".join(text))
    return "\n".join(lines)


# --- the command --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sigmw bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--relays",
        default=",".join(RELAYS),
        help="comma-separated relays to measure (freediameter, sigmw)",
    )
    p.add_argument("--transport", choices=("tcp", "sctp"), default="tcp")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--conns", type=int, default=1, help="generator connections to the relay")
    p.add_argument(
        "--no-direct",
        action="store_true",
        help="skip the generator -> server reference (the tools' own ceiling)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(".bench"),
        help="build and work directory (tools in CACHE/bin)",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    return p


def run_bench(opts: argparse.Namespace) -> tuple[dict[str, list[Run]], dict[str, str]]:
    """Measure the direct path and each relay; failures of one relay do not stop the others."""
    tools = build_tools(opts.cache)
    results: dict[str, list[Run]] = {}
    failures: dict[str, str] = {}
    with bench_net() as net:
        server = start_server(net, tools["diam_server"], opts.transport == "sctp")
        try:
            if not opts.no_direct:
                results["direct"] = []
                scenarios_through(
                    net, tools, SERVER_PORT, server.pid, opts, results["direct"], relay=False
                )
            for name in [n for n in opts.relays.split(",") if n]:
                try:
                    with start_relay(name, net, opts.cache / "run" / name, opts) as pid:
                        wait_relay_ready(net, tools, RELAY_PORT, opts, pid)
                        results[name] = []
                        scenarios_through(net, tools, RELAY_PORT, pid, opts, results[name], True)
                except (BenchError, RuntimeError, OSError) as exc:
                    why = str(exc).strip().splitlines()[0][:300]
                    failures[name] = f"{why} (logs in {opts.cache / 'run' / name})"
        finally:
            stop(server)
    return results, failures


def report(results: dict[str, list[Run]], failures: dict[str, str], transport: str) -> str:
    parts = []
    for name, runs in results.items():
        if not runs:
            continue
        title = (
            "generator -> server directly (the tools' ceiling)"
            if name == "direct"
            else f"{name} as the relay"
        )
        cpu = "server us/req" if name == "direct" else "relay us/req"
        parts.append(render_table(f"== {title}, {transport}", runs, cpu))
    parts += [f"== {name}: not measured: {why}" for name, why in failures.items()]
    if "sigmw" in results and "freediameter" in results:
        parts.append(ratios(results["sigmw"], results["freediameter"]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """`sigmw bench`: returns the exit status (1 when nothing could be measured)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["pygen"]:  # the bench runs its Python generator as a child in the namespace
        return _pygen_main(args[1:])
    opts = build_parser().parse_args(args)
    try:
        results, failures = run_bench(opts)
    except BenchError as exc:
        print(f"sigmw bench: {exc}", file=sys.stderr)
        return 1
    print(report(results, failures, opts.transport))
    if opts.json:
        data = {
            k: [{"scenario": r.scenario, "relay_cpu_us": r.relay_cpu_us, **r.gen} for r in v]
            for k, v in results.items()
        }
        opts.json.write_text(json.dumps({"results": data, "failures": failures}, indent=1))
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
