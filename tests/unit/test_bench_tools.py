"""The bench's C tools, built with gcc and run generator -> server over TCP on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sigmw.bench import SOURCES, avp, avp_u32, build_tools, diameter_message, result_code

FIELDS = {
    "sent", "answered", "timeouts", "mismatches", "duplicates", "result_codes", "throughput",
    "latency_us", "cpu_s", "cpu_us_per_req", "duration_s",
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
