"""The bench's C tools, built with gcc and run generator -> server over TCP on loopback."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sigmw import bench
from sigmw.benchkit.pygen import avp, avp_u32, diameter_message, result_code
from sigmw.benchkit.report import (
    budget_cell,
    busiest_thread_cell,
    overload_rounds,
    overload_targets,
    render_overload,
    render_table,
)
from sigmw.benchkit.tools import (
    SOURCES,
    CpuBudget,
    Net,
    Run,
    ThreadTime,
    build_tools,
    machine_ticks,
    niced,
    thread_clocks,
    thread_times,
)

FIELDS = {
    "sent", "answered", "timeouts", "mismatches", "duplicates", "result_codes", "throughput",
    "latency_us", "latency_by_code_us", "goodput", "cpu_s", "cpu_us_per_req", "duration_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tools(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def server(tools: dict[str, Path]) -> Iterator[int]:
    argv = [str(tools["diam_server"]), "--listen", "127.0.0.1", "--port", "0", "--apps", "4"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    assert ready[0] == "READY"
    yield int(ready[1])
    proc.terminate()
    proc.wait(5)


def load(tools: dict[str, Path], port: int, *mode: str) -> dict[str, Any]:
    argv = [str(tools["diam_load"]), "--connect", "127.0.0.1", "--port", str(port)]
    argv += ["--duration", "1", "--warmup", "0.2", *mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == ["MEASURE_START", "MEASURE_END"]
    result: dict[str, Any] = json.loads(done.stdout)
    assert result.keys() >= FIELDS
    return result


def test_closed_loop_every_request_answered_2001(tools: dict[str, Path], server: int) -> None:
    r = load(tools, server, "--closed", "32", "--conns", "2")
    assert r["sent"] > 1000
    assert r["answered"] == r["sent"]
    assert r["result_codes"] == {"2001": r["answered"]}
    assert r["timeouts"] == r["mismatches"] == r["duplicates"] == 0
    lat = r["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert 0.9 < r["duration_s"] < 1.2
    # Answers counted in the window match the rate reported for it.
    assert r["throughput"] == pytest.approx(r["answered"] / r["duration_s"], rel=0.2)


def test_open_loop_keeps_the_schedule(tools: dict[str, Path], server: int) -> None:
    r = load(tools, server, "--rate", "2000")
    # Requests due in a 1 s window at 2000/s: exactly the schedule, whatever the answers do.
    assert abs(r["sent"] - 2000) <= 2
    assert r["answered"] == r["sent"]
    assert r["result_codes"] == {"2001": r["sent"]}
    assert r["latency_us"]["p50"] <= r["latency_us"]["p99"]


def test_open_loop_with_coarse_wakeups_keeps_the_schedule_and_counts_the_wait(
    tools: dict[str, Path], server: int
) -> None:
    """--tick-us: fewer wake-ups, each sending all that is due; the schedule holds and
    latency still runs from each request's due time (a 10 ms tick: ~5 ms on average)."""
    r = load(tools, server, "--rate", "2000", "--tick-us", "10000")
    assert abs(r["sent"] - 2000) <= 2
    assert r["result_codes"] == {"2001": r["sent"]}
    assert r["latency_us"]["p50"] >= 2000
    bad = [str(tools["diam_load"]), "--connect", "127.0.0.1", "--port", str(server)]
    done = subprocess.run([*bad, "--rate", "10", "--tick-us", "0"], capture_output=True)
    assert done.returncode == 2


def _bad_server(listener: socket.socket) -> None:
    """CEA, then every request answered twice, plus one answer nobody asked for."""
    conn, _ = listener.accept()
    with conn:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            out = []
            while len(buf) >= 20 and len(buf) >= (n := int.from_bytes(buf[1:4], "big")):
                msg, buf = buf[:n], buf[n:]
                flags_cmd, app, hbh, e2e = struct.unpack_from("!IIII", msg, 4)
                cmd = flags_cmd & 0xFFFFFF
                ok = avp_u32(268, 2001) + avp(264, b"bad.server") + avp(296, b"server.realm")
                answer = diameter_message(0, cmd, app, hbh, e2e, ok)
                out.append(answer if cmd != 272 else answer * 2)
                if cmd == 272:
                    out.append(diameter_message(0, cmd, app, hbh, e2e ^ 0x5A5A5, ok))
            conn.sendall(b"".join(out))


def test_duplicates_and_strangers_are_counted(tools: dict[str, Path]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_bad_server, args=(listener,), daemon=True)
        thread.start()
        r = load(tools, listener.getsockname()[1], "--closed", "4")
        thread.join(5)
    assert r["answered"] == r["sent"] > 0
    assert r["duplicates"] >= r["answered"]
    assert r["mismatches"] >= r["answered"]


def _shedding_server(listener: socket.socket) -> None:
    """By end-to-end id: 1 in 4 answered 3004 at once, 1 in 4 answered 3002 at once except
    1 in 100 never answered, the other half answered 2001 after 20 ms (a relayed answer)."""
    conn, _ = listener.accept()
    conn.settimeout(0.002)
    held: list[tuple[float, bytes]] = []
    buf = b""
    with conn:
        while True:
            try:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            except TimeoutError:
                pass
            except OSError:
                return
            now, out = time.monotonic(), []
            while len(buf) >= 20 and len(buf) >= (n := int.from_bytes(buf[1:4], "big")):
                msg, buf = buf[:n], buf[n:]
                flags_cmd, app, hbh, e2e = struct.unpack_from("!IIII", msg, 4)
                cmd, ident = flags_cmd & 0xFFFFFF, avp(264, b"shed.server") + avp(296, b"r")
                code = 2001 if cmd != 272 or e2e % 4 >= 2 else (3004, 3002)[e2e % 4]
                answer = diameter_message(0, cmd, app, hbh, e2e, avp_u32(268, code) + ident)
                if cmd == 272 and code == 2001:
                    held.append((now + 0.02, answer))
                elif not (code == 3002 and e2e % 100 == 1):
                    out.append(answer)
            out += [a for due, a in held if due <= now]
            held = [(due, a) for due, a in held if due > now]
            conn.sendall(b"".join(out))


def test_overload_accounting_by_result_code(tools: dict[str, Path]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_shedding_server, args=(listener,), daemon=True)
        thread.start()
        r = load(tools, listener.getsockname()[1], "--rate", "2000", "--timeout", "0.3")
        thread.join(5)
    codes, by_code, sent = r["result_codes"], r["latency_by_code_us"], r["sent"]
    assert sum(codes.values()) + r["timeouts"] == sent
    assert abs(codes["2001"] - sent / 2) <= 2 and abs(codes["3004"] - sent / 4) <= 2
    assert abs(r["timeouts"] - sent / 100) <= 2 and r["timeouts"] > 0
    assert by_code["2001"]["n"] == codes["2001"] and by_code["3004"]["n"] == codes["3004"]
    assert by_code["other"]["n"] == codes["3002"] == r["answered"] - codes["2001"] - codes["3004"]
    # The fast rejections are timed apart from the slow real answers.
    assert by_code["3004"]["p50"] < 10_000 and by_code["2001"]["p50"] >= 20_000
    assert r["latency_us"]["p50"] < by_code["2001"]["p50"]
    assert r["goodput"] == pytest.approx(codes["2001"] / r["duration_s"], rel=0.1)


def _overload_run(codes: dict[str, int], timeouts: int, rss: tuple[int, int]) -> Run:
    sent = sum(codes.values()) + timeouts
    busy = {"n": codes.get("3004", 0), "p50": 900.0, "p99": 5000.0}
    gen = {"sent": sent, "rate": sent / 5, "goodput": codes.get("2001", 0) / 5, "duration_s": 5,
           "result_codes": codes, "timeouts": timeouts,
           "latency_by_code_us": {"3004": busy, "2001": {"n": 0}}}  # fmt: skip
    return Run("overload", "overload", gen, 10.0, rss, rss[1], recover_s=0.5)


def test_overload_targets_pass_and_fail() -> None:
    closed = Run("closed256", "closed", {"throughput": 1000.0}, 10.0)
    good = _overload_run({"2001": 4500, "3004": 5500}, 0, (40_000, 41_000))
    assert all(t.ok for t in overload_targets([closed, good], slow=1.0))
    bad = _overload_run({"2001": 3000, "3004": 1000, "3002": 5000}, 1000, (40_000, 140_000))
    failed = {t.name for t in overload_targets([closed, bad], slow=1.0) if not t.ok}
    assert failed == {
        "overload goodput / max (median)", "overload excess answered 3004",
        "overload RSS growth over the window", "overload no collapse: timeouts/sent",
    }  # fmt: skip
    assert not any(t.ok for t in overload_targets([closed], slow=1.0))
    # Goodput takes the median round; every other figure the worst round.
    rounds = [closed, good, closed, bad, closed, good, closed]
    failed = {t.name for t in overload_targets(rounds, slow=1.0) if not t.ok}
    assert "overload goodput / max (median)" not in failed
    assert "overload no collapse: timeouts/sent" in failed


def _max(throughput: float) -> Run:
    return Run("max", "max", {"throughput": throughput}, 10.0)


def test_each_overload_round_is_measured_against_the_maxima_around_it() -> None:
    good = _overload_run({"2001": 4500, "3004": 5500}, 0, (40_000, 41_000))  # 900/s
    fast_pass1 = Run("closed256", "closed", {"throughput": 2000.0}, 10.0)
    goodput = "overload goodput / max (median)"

    def value(runs: list[Run]) -> tuple[bool, str]:
        [t] = [t for t in overload_targets(runs, slow=1.0) if t.name == goodput]
        return t.ok, t.value

    assert value([fast_pass1, good]) == (False, "0.45 of [0.45]")  # older reports: pass 1
    assert value([fast_pass1, _max(1000), good]) == (True, "0.90 of [0.90]")  # no max after
    assert value([fast_pass1, _max(800), good, _max(1000)]) == (True, "1.00 of [1.00]")
    # Three rounds: 900 against (1000+1000)/2, (1000+2000)/2, (2000+1000)/2.
    runs = [fast_pass1, _max(1000), good, _max(1000), good, _max(2000), good, _max(1000)]
    assert value(runs) == (False, "0.60 of [0.90, 0.60, 0.60]")
    rounds = overload_rounds(runs)
    assert [(r.before, r.after) for r in rounds] == [(1000, 1000), (1000, 2000), (2000, 1000)]
    table = render_overload({"sigmw": runs}).splitlines()
    assert [row.split()[2:6] for row in table[2:5]] == [
        ["1,000", "1,000", "900", "0.90"], ["1,000", "2,000", "900", "0.60"],
        ["2,000", "1,000", "900", "0.60"],
    ]  # fmt: skip
    assert "sigmw: median 2001/max 0.60 over 3 round(s); pass-1 max 2,000/s" in table[5]


def test_rebuilds_only_when_sources_change(tmp_path: Path) -> None:
    sources = tmp_path / "src"
    shutil.copytree(SOURCES, sources)
    first = build_tools(tmp_path / "cache", sources)["diam_load"].stat().st_mtime_ns
    assert build_tools(tmp_path / "cache", sources)["diam_load"].stat().st_mtime_ns == first
    with (sources / "diam.h").open("a") as header:
        header.write("/* changed */\n")
    assert build_tools(tmp_path / "cache", sources)["diam_load"].stat().st_mtime_ns > first


def test_python_helpers_round_trip() -> None:
    msg = diameter_message(0x80, 272, 4, 1, 2, avp(263, b"s;1") + avp_u32(268, 3002))
    assert len(msg) % 4 == 0 and int.from_bytes(msg[1:4], "big") == len(msg)
    assert result_code(msg) == 3002


def test_tools_run_at_the_niceness_asked_with_their_own_pid(tools: dict[str, Path]) -> None:
    argv = [str(tools["diam_server"]), "--listen", "127.0.0.1", "--port", "0", "--apps", "4"]
    assert niced(argv, 0) == argv
    proc = subprocess.Popen(niced(argv, 7), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
        with open(f"/proc/{proc.pid}/stat") as f:
            stat = f.read()
        assert stat[stat.index("(") + 1 : stat.rindex(")")] == "diam_server"  # nice execs
        assert int(stat[stat.rindex(")") + 2 :].split()[16]) == min(os.nice(0) + 7, 19)
    finally:
        proc.terminate()
        proc.wait(5)


def _spinner() -> subprocess.Popen[bytes]:
    """A process that burns one CPU until terminated."""
    return subprocess.Popen(["python3", "-c", "while True: pass"])


def test_each_run_reports_where_the_machines_cpus_went(tools: dict[str, Path]) -> None:
    """The budget of a real run: the generator and server over loopback, and a process
    burning a CPU standing as the relay (it is the process the CPU is sampled from) and
    then as the server. The figures add up to the machine's CPUs at most; the spinner,
    always runnable, ran or waited for a CPU all the time (however busy the machine is:
    the share it got depends on that), and /proc's ticks agree with its schedstat."""
    argv = [str(tools["diam_server"]), "--listen", "127.0.0.1", "--port", "0", "--apps", "4"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    spinner = _spinner()
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        opts = bench.build_parser().parse_args(["--duration", "1", "--warmup", "0.3"])
        ctx = bench.Ctx(Net(None, "127.0.0.1"), tools, opts, server.pid)
        run = bench.measure(ctx, port, spinner.pid, "closed8", "closed", ["--closed", "8"])
        b = run.budget
        assert b is not None and b.cpus == os.cpu_count()
        [spin] = b.threads
        assert spin.name == "python3" and 0.9 <= spin.ran + spin.waited <= 1.1
        assert abs(b.relay - spin.ran) <= 0.1 and b.relay >= 0.25
        assert b.server is not None and b.server > 0.02 and b.generator > 0.02
        total = b.relay + b.server + b.generator + b.idle
        assert total <= b.cpus + 0.1
        # As the server it is, with the generator's real server the process "under test".
        ctx = bench.Ctx(Net(None, "127.0.0.1"), tools, opts, spinner.pid)
        run = bench.measure(ctx, port, server.pid, "closed8", "closed", ["--closed", "8"])
        assert run.budget is not None and run.budget.server is not None
        assert 0.25 <= run.budget.server <= 1.05  # the spinner
        assert budget_cell(run.budget).count("/") == 2
        # The server as both: it is not counted twice.
        ctx = bench.Ctx(Net(None, "127.0.0.1"), tools, opts, server.pid)
        run = bench.measure(ctx, port, server.pid, "closed8", "closed", ["--closed", "8"])
        assert run.budget is not None and run.budget.server is None
    finally:
        for proc in (spinner, server):
            proc.terminate()
            proc.wait(5)


def test_machine_ticks_read_idle_with_iowait_and_leave_guest_time_out(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 5 50 800 20 3 7 15 40 2\ncpu0 50 2 25 400 10 1 3 7 20 1\n")
    assert machine_ticks(stat) == (820, 1000)
    idle, total = machine_ticks()
    assert 0 <= idle <= total


def test_the_report_shows_the_budget_and_how_idle_the_overloaded_machine_was() -> None:
    full = CpuBudget(cpus=2, idle=0.02, relay=1.13, generator=0.58, server=0.16)
    assert budget_cell(full) == "1.13/0.74/0.02"
    assert budget_cell(CpuBudget(2, 0.5, 1.0, 0.5)) == "1.00/0.50/0.50"
    assert budget_cell(None) == "-"
    good = _overload_run({"2001": 4500, "3004": 5500}, 0, (40_000, 41_000))  # 900/s
    roomy = dataclasses.replace(good, budget=CpuBudget(2, 0.31, 1.0, 0.4, 0.2))
    runs = [_max(1000), dataclasses.replace(good, budget=full), _max(1000), roomy, _max(1000)]
    [target] = [t for t in overload_targets(runs, slow=1.0) if t.name.startswith("overload good")]
    assert target.value == "0.90 of [0.90, 0.90], machine idle at most 0.31 of 2 CPUs"
    # One round not sampled: no claim about the machine.
    [target] = [t for t in overload_targets([*runs, good, _max(1000)], 1.0) if "goodput" in t.name]
    assert target.value == "0.90 of [0.90, 0.90, 0.90]"
    assert "1.13/0.74/0.02" in render_overload({"sigmw": runs}).splitlines()[2]
    shown = dataclasses.replace(roomy, gen={**roomy.gen, "throughput": 1800.0})
    assert render_table("t", [shown], "relay us").splitlines()[2].endswith("1.00/0.60/0.31")


# Two threads that stay runnable together: hashing a large buffer releases the GIL.
SHARING = """
import hashlib, os, threading
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
BLOCK = bytes(1 << 20)
def spin():
    while True:
        hashlib.sha256(BLOCK).digest()
for _ in range(2):
    threading.Thread(target=spin, daemon=True).start()
threading.Event().wait()
"""


def test_thread_times_show_threads_that_share_one_cpu_waiting_for_it() -> None:
    """Two spinning threads on one CPU: each runs about half the time at most (less if
    other processes use that CPU) and waits for it the rest; the main thread, asleep,
    is not shown."""
    proc = subprocess.Popen(["python3", "-c", SHARING])
    try:
        time.sleep(0.3)
        start = thread_clocks(proc.pid)
        time.sleep(1.0)
        end = thread_clocks(proc.pid)
        assert len(start) == len(end) == 3
        shown = thread_times(start, end, 1.0)
        assert len(shown) == 2
        for t in shown:  # always runnable: it ran or waited all the time, half each at most
            assert 0.9 <= t.ran + t.waited <= 1.1 and t.ran <= 0.6 and t.waited >= 0.3, shown
        assert shown[1].ran <= shown[0].ran <= shown[1].ran + 0.15
    finally:
        proc.terminate()
        proc.wait(5)
    assert thread_clocks(proc.pid) == {}  # gone: nothing to read


def test_the_overload_table_shows_the_relays_busiest_thread() -> None:
    threads = (ThreadTime("python3", 0.9, 0.08), ThreadTime("python3", 0.23, 0.25))
    budget = CpuBudget(2, 0.03, 1.13, 0.6, 0.16, threads)
    assert busiest_thread_cell(budget) == "0.90/0.08"
    assert busiest_thread_cell(CpuBudget(2, 0.5, 1.0, 0.5)) == "-"
    assert busiest_thread_cell(None) == "-"
    good = _overload_run({"2001": 4500, "3004": 5500}, 0, (40_000, 41_000))
    runs = [_max(1000), dataclasses.replace(good, budget=budget), _max(1000)]
    row = render_overload({"sigmw": runs}).splitlines()[2]
    assert row.split()[-2:] == ["1.13/0.76/0.03", "0.90/0.08"]
