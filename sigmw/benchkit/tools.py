"""The bench's C tools, its network namespace, and the /proc figures of a process under test."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigmw.testbed.netns import Host, Topology

SOURCES = Path(__file__).resolve().parent.parent.parent / "bench"
TOOLS = ("diam_server", "diam_load")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
ADDRESS = "10.201.0.1"  # a /32 inside our own namespace, never routed anywhere
RELAY_PORT, SERVER_PORT = 3868, 3869
SERVER_HOST, SERVER_REALM, CLIENT_REALM, APP = "server.bench", "server.realm", "clients.bench", 4

Json = dict[str, Any]


class BenchError(RuntimeError):
    """A bench step failed; the message says which and why."""


@dataclass(frozen=True)
class ThreadTime:
    """One thread of the process under test over a measured window, in CPUs: the time it
    ran, and the time it was runnable but waited for a CPU (from its schedstat)."""

    name: str
    ran: float
    waited: float


@dataclass(frozen=True)
class CpuBudget:
    """Where the machine's CPUs went over a measured window, in CPUs (CPU seconds a
    second). Where the tools share the relay's CPUs (the SCTP VM has two), a run with
    no idle CPU measured the machine as much as the relay: the excess of an overload
    costs the generator and the kernel as well, and the relay gets what is left."""

    cpus: int
    """How many the machine has."""
    idle: float
    """Left idle (iowait included)."""
    relay: float
    """The process under test, all its threads."""
    generator: float
    """The load generator (its own figure over the window)."""
    server: float | None = None
    """The answering server (None where it is the process under test)."""
    threads: tuple[ThreadTime, ...] = ()
    """The relay's threads that ran at least THREAD_SHOWN of a CPU, busiest first: a
    relay whose one thread waits for a CPU is short of the machine, not of speed."""


THREAD_SHOWN = 0.01


@dataclass
class Run:
    """One scenario's outcome."""

    scenario: str
    kind: str
    """closed, fixed, share, max (closed loop between overload runs), overload or pygen."""
    gen: Json
    """The generator's JSON line."""
    relay_cpu_us: float | None
    """Relay CPU time per answer over the measured window (None: not sampled)."""
    rss_kb: tuple[int, int] | None = None
    """The relay's VmRSS at the start and the end of the measured window."""
    hwm_kb: int | None = None
    """The relay's VmHWM (peak RSS since it started) at the end of the window."""
    recover_s: float | None = None
    """Overload only: seconds after the run until a probe got 2001 again (None: never)."""
    budget: CpuBudget | None = None
    """The machine's CPUs over the measured window (None: not sampled)."""


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
        # sigmw's advice for one-to-many SCTP sockets, per namespace; without kernel SCTP
        # these keys do not exist and the failure is harmless.
        for key in ("net.sctp.sndbuf_policy=1", "net.sctp.rcvbuf_policy=1"):
            host.run("sysctl", "-qw", key)
        yield Net(host, ADDRESS)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(idle, all) clock ticks of every CPU together so far: the first line of /proc/stat,
    idle counting iowait; all is its first eight fields (guest time is inside user)."""
    ticks = [int(v) for v in stat.read_text().splitlines()[0].split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


def thread_clocks(pid: int) -> dict[int, tuple[str, int, int]]:
    """Each thread of `pid`: (name, ns it ran, ns it waited for a CPU) so far, from
    /proc/<pid>/task/*/schedstat; {} where the kernel keeps no schedstat."""
    out: dict[int, tuple[str, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            ran, waited = (int(v) for v in (task / "schedstat").read_text().split()[:2])
            name = (task / "comm").read_text().strip()
        except (OSError, ValueError):
            continue  # the thread ended meanwhile, or no schedstat
        out[int(task.name)] = (name, ran, waited)
    return out


def thread_times(
    start: dict[int, tuple[str, int, int]], end: dict[int, tuple[str, int, int]], wall: float
) -> tuple[ThreadTime, ...]:
    """The threads alive at both samples, over `wall` seconds, busiest first (those that
    ran THREAD_SHOWN of a CPU or more)."""
    times = []
    for tid, (name, ran, waited) in end.items():
        if tid in start and wall > 0:
            was = start[tid]
            times.append(ThreadTime(name, round((ran - was[1]) / 1e9 / wall, 3),
                                    round((waited - was[2]) / 1e9 / wall, 3)))  # fmt: skip
    kept = [t for t in times if t.ran >= THREAD_SHOWN]
    return tuple(sorted(kept, key=lambda t: -t.ran))


def status_kb(pid: int, key: str) -> int:
    """A kB figure of /proc/<pid>/status such as VmRSS or VmHWM; 0 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


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


def niced(argv: Sequence[str], nice: int) -> list[str]:
    """argv run at that niceness (nice(1) execs, so the pid is the tool's own)."""
    return ["nice", "-n", str(nice), *argv] if nice else list(argv)


def start_server(net: Net, tool: Path, sctp: bool, nice: int = 0) -> subprocess.Popen[str]:
    argv = [str(tool), "--listen", net.address, "--port", str(SERVER_PORT)]
    argv += ["--origin-host", SERVER_HOST, "--origin-realm", SERVER_REALM, "--apps", str(APP)]
    argv += ["--sctp"] if sctp else []
    proc = subprocess.Popen(net.argv(*niced(argv, nice)), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("READY"):
        stop(proc)
        raise BenchError("diam_server did not start")
    return proc
