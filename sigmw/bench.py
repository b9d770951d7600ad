"""Diameter relay benchmark: sigmw against freeDiameterd, same generator, same server.

    python -m sigmw bench [--relays freediameter,sigmw] [--transport tcp] [--duration 5]

The load generator and answering server are small C programs (bench/*.c) built
here with gcc into CACHE/bin, so neither is the bottleneck. Everything runs in
a network namespace of our own (freeDiameterd refuses loopback-only addresses;
the relay address is a /32 inside that namespace). Per relay, in two passes (a
fresh relay process each):
1. throughput with 64 and 256 requests in flight (closed loop); the higher is
   the relay's max;
2. open loop: latency at a fixed rate (2000 req/s, capped at a share of the
   slower relay's max where that is lower, as in the VM) and at 25% of the
   relay's own max; the Python generator; then OVERLOAD_ROUNDS rounds of
   the max again (closed loop) and overload at 2x that max (the generator waking
   every OVERLOAD_TICK_US), and the max once more: each round reports goodput
   against the mean of the maxima around it, 3004 answers and their latency,
   timeouts, the relay's RSS and how long until it answers 2001 again.
The generator and the server run at nice TOOLS_NICE, so the relay under test gets a
CPU first where they share them. The relay's CPU time per answer comes from
/proc/<pid>/stat over each measured window. A "targets" block at the end checks the
figures against the goals.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sigmw.benchkit import report as rep
from sigmw.benchkit.relays import RELAYS, start_relay
from sigmw.benchkit.tools import (
    CLIENT_REALM,
    RELAY_PORT,
    SERVER_PORT,
    SERVER_REALM,
    BenchError,
    CpuBudget,
    Json,
    Net,
    Run,
    alive,
    bench_net,
    build_tools,
    cpu_ticks,
    machine_ticks,
    niced,
    start_server,
    status_kb,
    stop,
    thread_clocks,
    thread_times,
)

Results = dict[str, list[Run]]

OVERLOAD_TICK_US = 1000
"""The generator's wake-ups under overload (--overload-tick-us): every 1 ms it sends
what is due (by then a few requests, in one burst). At one wake-up and one packet a
request (the interval otherwise, 50 us at least) it cost twice as much a request at 2x
as at the maximum, 0.72-0.82 of the SCTP VM's two CPUs, taken from the relay it
measures; with 1 ms, 0.39-0.52. Latency still counts from each request's due time."""


OVERLOAD_ROUNDS = 3
"""Overload runs (--overload-rounds): max, 2x, max, 2x, ... max in one relay process, each
2x run's goodput set against the mean of the maxima around it, the median of those the
figure. In the SCTP VM one run's ratio moved from 0.44 to 0.96 with the machine's speed."""

TOOLS_NICE = 10
"""The generator's and the server's niceness (--tools-nice). Where they share CPUs with
the relay under test (the SCTP VM has two), the kernel's SCTP work they cause costs them
100-200 us a request there, far from the few microseconds the tools are meant to cost, and
at 2x load the relay's thread waited for a CPU 0.10-0.26 of the time. At nice 10 the
relay, either one, gets a CPU first; the tools still get what is left, and the report
shows whether they kept up (answers/s at the offered rate, latency from due times)."""


@dataclass
class Ctx:
    """What every scenario needs: where to run, the tools, the options."""

    net: Net
    tools: dict[str, Path]
    opts: argparse.Namespace
    server_pid: int | None = None
    """The answering server, whose CPU each run's budget reports."""


# --- one generator run with the relay's CPU and RSS sampled over the measured window -----


@dataclass(frozen=True)
class _Marker:
    """What is sampled as the generator marks its measured window's start and end."""

    at: float
    relay: int
    server: int | None
    machine: tuple[int, int]
    rss_kb: int
    threads: dict[int, tuple[str, int, int]]

    @classmethod
    def take(cls, pid: int, server: int | None) -> _Marker:
        server_ticks = cpu_ticks(server) if server is not None and server != pid else None
        return cls(time.monotonic(), cpu_ticks(pid), server_ticks, machine_ticks(),
                   status_kb(pid, "VmRSS"), thread_clocks(pid))  # fmt: skip


def _budget(start: _Marker, end: _Marker, gen: Json) -> CpuBudget | None:
    """The machine's CPUs between the two markers (None if the window had no length)."""
    wall = end.at - start.at
    all_ticks = end.machine[1] - start.machine[1]
    if wall <= 0 or all_ticks <= 0:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    idle = cpus * (end.machine[0] - start.machine[0]) / all_ticks
    relay = (end.relay - start.relay) / tick / wall
    server = None
    if start.server is not None and end.server is not None:
        server = (end.server - start.server) / tick / wall
    duration = float(gen.get("duration_s") or 0.0)
    generator = float(gen.get("cpu_s", 0.0)) / duration if duration else 0.0
    threads = thread_times(start.threads, end.threads, wall)
    return CpuBudget(cpus, round(idle, 3), round(relay, 3), round(generator, 3),
                     None if server is None else round(server, 3), threads)  # fmt: skip


def run_load(
    ctx: Ctx, args: Sequence[str], pid: int
) -> tuple[Json, float, list[int], CpuBudget | None]:
    """Run diam_load to the end: its JSON, pid's CPU seconds and VmRSS (kB) at both markers,
    and the machine's CPU budget between them."""
    argv = ctx.net.argv(*niced([str(ctx.tools["diam_load"]), *args], ctx.opts.tools_nice))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    marks: list[_Marker] = []
    errors = []
    for line in proc.stderr:
        if line.strip() in ("MEASURE_START", "MEASURE_END"):
            marks.append(_Marker.take(pid, ctx.server_pid))
        else:
            errors.append(line.rstrip())
    out = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0 or not out.strip():
        raise BenchError(f"diam_load {' '.join(args)} failed: {' | '.join(errors)}")
    result: Json = json.loads(out.strip().splitlines()[-1])
    if len(marks) != 2:
        return result, 0.0, [m.rss_kb for m in marks], None
    start, end = marks
    cpu = (end.relay - start.relay) / os.sysconf("SC_CLK_TCK")
    return result, cpu, [start.rss_kb, end.rss_kb], _budget(start, end, result)


def load_args(ctx: Ctx, port: int, mode: list[str], **override: float) -> list[str]:
    o = {**vars(ctx.opts), **override}
    args = ["--connect", ctx.net.address, "--port", str(port), "--conns", str(o["conns"])]
    args += ["--duration", str(o["duration"]), "--warmup", str(o["warmup"])]
    args += ["--timeout", str(o["timeout"])]
    args += ["--dest-realm", SERVER_REALM, "--origin-realm", CLIENT_REALM]
    return [*args, *mode, *(["--sctp"] if o["transport"] == "sctp" else [])]


def measure(ctx: Ctx, port: int, pid: int, name: str, kind: str, mode: list[str]) -> Run:
    gen, cpu, rss, budget = run_load(ctx, load_args(ctx, port, mode), pid)
    window_answers = gen["throughput"] * gen["duration_s"]
    per_answer = cpu * 1e6 / window_answers if window_answers else None
    start_end = (rss[0], rss[-1]) if len(rss) == 2 else None
    hwm = status_kb(pid, "VmHWM") or None
    return Run(name, kind, gen, per_answer, start_end, hwm, budget=budget)


def wait_relay_ready(ctx: Ctx, port: int, pid: int, timeout: float = 30.0) -> float:
    """Probe with tiny runs until requests through the relay come back 2001; the wait in s."""
    t0 = time.monotonic()
    last = ""
    while time.monotonic() < t0 + timeout:
        if not alive(pid):
            raise BenchError("the relay exited")
        args = load_args(ctx, port, ["--closed", "1"], duration=0.2, warmup=0, conns=1, timeout=1)
        argv = ctx.net.argv(str(ctx.tools["diam_load"]), *args)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        with contextlib.suppress(ValueError, IndexError):
            gen = json.loads(done.stdout.strip().splitlines()[-1])
            if gen["answered"] > 0 and set(gen["result_codes"]) == {"2001"}:
                return time.monotonic() - t0
            last = f"result codes {gen['result_codes']}"
        last = last or done.stderr.strip()
        time.sleep(0.2)
    raise BenchError(f"relay not ready after {timeout:.0f} s ({last})")


# --- scenarios -------------------------------------------------------------------------


def closed_scenarios(ctx: Ctx, port: int, pid: int, runs: list[Run], relay: bool) -> None:
    """Closed loop with 64 and 256 in flight; appends to runs as it goes."""
    for n in (64, 256):
        if relay:  # an overloaded relay can take seconds to drain (most of all over SCTP)
            wait_relay_ready(ctx, port, pid, timeout=60)
        runs.append(measure(ctx, port, pid, f"closed{n}", "closed", ["--closed", str(n)]))


def open_scenarios(ctx: Ctx, pid: int, fixed: int, runs: list[Run]) -> None:
    """Fixed rate, 25% of max, the Python check, then overload at 2x max (it goes last:
    it may leave the relay struggling)."""
    best = rep.best_closed(runs)
    top = best.gen["throughput"] if best else 0.0
    plan = [(f"open{fixed}", "fixed", fixed), ("open25%", "share", max(10, round(top / 4)))]
    for name, kind, rate in plan:
        wait_relay_ready(ctx, RELAY_PORT, pid, timeout=60)
        runs.append(measure(ctx, RELAY_PORT, pid, name, kind, ["--rate", str(rate)]))
    wait_relay_ready(ctx, RELAY_PORT, pid, timeout=60)
    runs.append(run_pygen(ctx.net, RELAY_PORT, pid, ctx.opts))
    # The max again, in this relay process right before each overload run and after the
    # last: the VM's speed drifts by up to 2x within a boot, so a max from pass 1, minutes
    # earlier, would set the offered rate and the goodput's yardstick from another
    # machine, in effect; and rounds give a median where one run carries that noise.
    closed = ["--closed", str(best.gen["inflight"] if best else 64)]
    rounds = ctx.opts.overload_rounds
    for k in range(1, rounds + 2):
        wait_relay_ready(ctx, RELAY_PORT, pid, timeout=60)
        last_max = measure(ctx, RELAY_PORT, pid, f"max{k}", "max", closed)
        runs.append(last_max)
        if k > rounds:
            break
        top = last_max.gen["throughput"] or top
        wait_relay_ready(ctx, RELAY_PORT, pid, timeout=60)
        mode = ["--rate", str(round(2 * top)), "--tick-us", str(ctx.opts.overload_tick_us)]
        over = measure(ctx, RELAY_PORT, pid, f"overload{k}", "overload", mode)
        runs.append(over)
        with contextlib.suppress(BenchError):
            over.recover_s = wait_relay_ready(ctx, RELAY_PORT, pid, timeout=ctx.opts.recover_wait)
        if over.recover_s is None:
            break  # it never answered 2001 again: no more rounds


def run_pygen(net: Net, port: int, pid: int, opts: argparse.Namespace) -> Run:
    args = [net.address, str(port), "64", str(opts.duration), str(opts.warmup)]
    args += ["--sctp"] if opts.transport == "sctp" else []
    argv = net.argv(sys.executable, "-m", "sigmw.benchkit.pygen", *args)
    before = cpu_ticks(pid)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    ticks = cpu_ticks(pid) - before  # whole run incl. warm-up: a rough figure
    if done.returncode != 0:
        raise BenchError(f"python generator failed: {done.stderr.strip()[-400:]}")
    gen: Json = json.loads(done.stdout.strip().splitlines()[-1])
    total = gen["answered_total"]
    cpu = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / total if total else None
    return Run("pygen64", "pygen", gen, cpu)


def fixed_rate(
    results: Results, relays: Sequence[str], opts: argparse.Namespace
) -> tuple[int, str]:
    """opts.rate, or a share of the slower relay's max when that is lower; and why."""
    tops = {n: b.gen["throughput"] for n in relays if (b := rep.best_closed(results.get(n, [])))}
    if not tops:
        return int(opts.rate), ""
    slowest = min(tops, key=lambda n: tops[n])
    cap = int(opts.fixed_share * tops[slowest])
    if opts.rate <= cap:
        return int(opts.rate), ""
    return max(10, cap), (
        f"fixed rate capped at {max(10, cap)} req/s = {opts.fixed_share:.0%} of {slowest}'s max "
        f"({tops[slowest]:,.0f}/s): {opts.rate:g} req/s is more than it can carry here"
    )


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
    p.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="seconds a request may wait for its answer after the window",
    )
    p.add_argument("--conns", type=int, default=1, help="generator connections to the relay")
    p.add_argument("--rate", type=float, default=2000.0, help="the fixed open-loop rate")
    p.add_argument(
        "--fixed-share",
        type=float,
        default=0.25,
        help="cap the fixed rate at this share of the slower relay's closed-loop max "
        "(in the VM freeDiameterd collapses in open loop at 50%%)",
    )
    p.add_argument(
        "--ready-wait",
        type=float,
        default=120.0,
        help="seconds a freshly started relay may take to answer (slow in the VM)",
    )
    p.add_argument(
        "--recover-wait",
        type=float,
        default=60.0,
        help="seconds to wait for 2001 answers after the overload run",
    )
    p.add_argument(
        "--overload-tick-us",
        type=float,
        default=OVERLOAD_TICK_US,
        help="the generator's wake-up interval under overload, microseconds",
    )
    p.add_argument(
        "--overload-rounds",
        type=int,
        default=OVERLOAD_ROUNDS,
        help="overload runs, each between two closed-loop max runs (the median counts)",
    )
    p.add_argument(
        "--tools-nice",
        type=int,
        default=TOOLS_NICE,
        help="niceness of the generator and the server (0: as the relay)",
    )
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


def run_relays(ctx: Ctx, relays: Sequence[str], results: Results) -> tuple[dict[str, str], str]:
    """Pass 1 (closed loop) for every relay, then pass 2 (open loop) with a common fixed rate.
    Failures of one relay do not stop the others; returns them and the fixed-rate note."""
    failures: dict[str, str] = {}
    opts = ctx.opts

    def attempt(name: str, body: Callable[[int, list[Run]], None]) -> None:
        try:
            with start_relay(name, ctx.net, opts.cache / "run" / name, opts.transport,
                             opts.conns) as pid:  # fmt: skip
                wait_relay_ready(ctx, RELAY_PORT, pid, timeout=opts.ready_wait)
                body(pid, results[name])
        except (BenchError, RuntimeError, OSError) as exc:
            why = str(exc).strip().splitlines()[0][:300]
            failures[name] = f"{why} (logs in {opts.cache / 'run' / name})"

    for name in relays:
        results[name] = []
        attempt(name, lambda pid, runs: closed_scenarios(ctx, RELAY_PORT, pid, runs, True))
    fixed, note = fixed_rate(results, [n for n in relays if n not in failures], opts)
    for name in [n for n in relays if n not in failures]:
        attempt(name, lambda pid, runs: open_scenarios(ctx, pid, fixed, runs))
    return failures, note


def run_bench(opts: argparse.Namespace) -> tuple[Results, dict[str, str], str]:
    """Measure the direct path and each relay."""
    tools = build_tools(opts.cache)
    results: Results = {}
    with bench_net() as net:
        server = start_server(net, tools["diam_server"], opts.transport == "sctp", opts.tools_nice)
        ctx = Ctx(net, tools, opts, server.pid)
        try:
            if not opts.no_direct:
                results["direct"] = []
                closed_scenarios(ctx, SERVER_PORT, server.pid, results["direct"], relay=False)
                results["direct"].append(run_pygen(net, SERVER_PORT, server.pid, opts))
            relays = [n for n in opts.relays.split(",") if n]
            failures, note = run_relays(ctx, relays, results)
        finally:
            stop(server)
    return results, failures, note


def report(results: Results, failures: dict[str, str], note: str, transport: str) -> str:
    parts = []
    for name, runs in results.items():
        if not runs:
            continue
        direct = name == "direct"
        title = (
            "generator -> server directly (the tools' ceiling)" if direct else f"{name} as relay"
        )
        cpu = "server us/ans" if direct else "relay us/ans"
        parts.append(rep.render_table(f"== {title}, {transport}", runs, cpu))
    if note:
        parts.append(f"note: {note}")
    parts += [f"== {name}: not (fully) measured: {why}" for name, why in failures.items()]
    relays = {k: v for k, v in results.items() if k != "direct"}
    if overload := rep.render_overload(relays):
        parts.append(overload)
    mine, theirs = results.get("sigmw", []), results.get("freediameter", [])
    if mine and theirs:
        parts.append(rep.ratios(mine, theirs))
    targets = rep.relay_targets(mine, theirs, transport)
    targets += rep.overload_targets(mine, slow=10.0 if transport == "sctp" else 1.0)
    parts.append(rep.render_targets(targets))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """`sigmw bench`: returns the exit status (1 when nothing could be measured)."""
    opts = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        results, failures, note = run_bench(opts)
    except BenchError as exc:
        print(f"sigmw bench: {exc}", file=sys.stderr)
        return 1
    print(report(results, failures, note, opts.transport))
    if opts.json:
        data = {k: [dataclasses.asdict(r) for r in v] for k, v in results.items()}
        blob = {"results": data, "failures": failures, "note": note, "load": os.getloadavg()}
        opts.json.write_text(json.dumps(blob, indent=1))
    return 0 if any(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
