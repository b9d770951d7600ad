"""Capture a test's packets with tcpdump and decode the Diameter in them with tshark.

    with Capture(results / "fd.pcap").started(net.b):    # a namespace, or None
        ...                                                # the exchange under test
    rows = decode_diameter(results / "fd.pcap", ports=[3868, 3869])
    assert (rows[0].command, rows[0].request, rows[0].stream) == (257, True, 0)

Facts this relies on (measured on Debian 12, tcpdump 4.99, tshark 4.0):
- tcpdump must run with `--immediate-mode`: without it packets wait in the
  kernel ring buffer and a SIGINT ends the capture with "0 packets captured".
  `-Z root` keeps it from dropping to the `tcpdump` user, which may not write
  to the output directory.
- Wireshark decodes SCTP port 3868 as Diameter whatever the PPID, so
  freeDiameterd's PPID 0 needs nothing special there. Other ports (a test
  server on 3869) need decode-as: `-d sctp.port==3869,diameter` (and
  `-d tcp.port==3869,diameter`); `ports` adds these. `-d sctp.ppi==0,diameter`
  is not needed and would claim every PPID-0 payload.
- Field names (tshark -G fields): sctp.data_sid, sctp.data_payload_proto_id,
  diameter.cmd.code, diameter.flags.request, diameter.hopbyhopid,
  diameter.endtoendid, diameter.applicationId, diameter.Session-Id,
  diameter.Origin-Host, diameter.Result-Code.
- One frame may carry several Diameter messages (SCTP bundles DATA chunks, TCP
  segments hold several messages), and `-T fields` aggregates each field
  separately, so optional AVPs (Session-Id, Result-Code) cannot be matched to
  their message. We read `-T json --no-duplicate-keys` instead, where each
  message is its own object; the SCTP DATA chunks of a frame are paired with
  its Diameter messages in order (a message fragmented over several chunks
  gets stream/PPID None).
- tshark starts in about 0.2 s on the host but takes far longer inside the
  emulated VM (docs/testbed.md has the figure): capture in the VM with tcpdump
  into a `--rwdir` directory, decode on the host after the run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sigmw.testbed.netns import Host

DIAMETER_PORT = 3868  # Wireshark's own Diameter port


class CaptureError(RuntimeError):
    """tcpdump or tshark failed; the message holds what it printed."""


@dataclass(frozen=True, slots=True)
class DiameterRow:
    """One Diameter message seen on the wire."""

    frame: int
    time: float
    """Seconds since the first captured packet."""
    transport: Literal["sctp", "tcp"]
    src: str
    dst: str
    src_port: int
    dst_port: int
    stream: int | None
    """SCTP stream id (None over TCP or when the message spans several chunks)."""
    ppid: int | None
    """SCTP payload protocol id (None as for stream)."""
    command: int
    request: bool
    application: int
    hop_by_hop: int
    end_to_end: int
    session_id: str | None
    origin_host: str | None
    result_code: int | None


class Capture:
    """tcpdump writing one pcap file, started in a namespace (or this one)."""

    def __init__(self, path: Path, interface: str = "any", bpf: Sequence[str] = ()) -> None:
        self.path = path
        self.interface = interface
        self.bpf = list(bpf)
        """Capture filter words, e.g. ["sctp"] or ["port", "3868"]."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def stderr_path(self) -> Path:
        return self.path.with_suffix(".tcpdump.txt")

    @property
    def report(self) -> str:
        """What tcpdump printed (its packet counts once stopped)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, host: Host | None = None, timeout: float = 30.0) -> None:
        """Start tcpdump and wait until it says it is listening."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["tcpdump", "-i", self.interface, "--immediate-mode", "-U", "-Z", "root"]
        argv += ["-w", str(self.path), *self.bpf]
        with self.stderr_path.open("wb") as err:
            options: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": err}
            self._proc = host.popen(*argv, **options) if host else subprocess.Popen(argv, **options)
        deadline = time.monotonic() + timeout
        while "listening on" not in self.report:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CaptureError(f"tcpdump did not start: {self.report}")
            time.sleep(0.02)

    def stop(self, settle: float = 0.2) -> None:
        """Let the last packets arrive, then stop tcpdump (SIGINT flushes the file)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            time.sleep(settle)
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @contextmanager
    def started(self, host: Host | None = None) -> Iterator[Capture]:
        self.start(host)
        try:
            yield self
        finally:
            self.stop()


def tshark_argv(path: Path, ports: Sequence[int] = (DIAMETER_PORT,)) -> list[str]:
    """The tshark command decode_diameter runs (for a shell or a log)."""
    argv = ["tshark", "-r", str(path), "-n", "-Y", "diameter"]
    for port in ports:
        if port != DIAMETER_PORT:
            argv += ["-d", f"sctp.port=={port},diameter", "-d", f"tcp.port=={port},diameter"]
    return [*argv, "-T", "json", "--no-duplicate-keys", "-J", "frame ip ipv6 tcp sctp diameter"]


def decode_diameter(path: Path, ports: Sequence[int] = (DIAMETER_PORT,)) -> list[DiameterRow]:
    """Every Diameter message in a capture, in frame order."""
    done = subprocess.run(tshark_argv(path, ports), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CaptureError(f"tshark failed on {path}: {done.stderr.strip()}")
    rows: list[DiameterRow] = []
    for packet in json.loads(done.stdout or "[]"):
        rows += _frame_rows(packet["_source"]["layers"])
    return rows


def _frame_rows(layers: dict[str, Any]) -> list[DiameterRow]:
    messages = layers.get("diameter", [])
    messages = messages if isinstance(messages, list) else [messages]
    transport: Literal["sctp", "tcp"] = "sctp" if "sctp" in layers else "tcp"
    net = layers.get("ip") or layers.get("ipv6") or {}
    family = "ip" if "ip" in layers else "ipv6"
    ports = layers[transport]
    sids = _find(layers.get("sctp"), "sctp.data_sid")
    ppids = _find(layers.get("sctp"), "sctp.data_payload_proto_id")
    paired = transport == "sctp" and len(sids) == len(messages) == len(ppids)
    common = {
        "frame": int(_first(layers["frame"], "frame.number") or 0),
        "time": float(_first(layers["frame"], "frame.time_relative") or 0),
        "transport": transport,
        "src": _first(net, f"{family}.src") or "",
        "dst": _first(net, f"{family}.dst") or "",
        "src_port": int(_first(ports, f"{transport}.srcport") or 0),
        "dst_port": int(_first(ports, f"{transport}.dstport") or 0),
    }
    return [
        _row(
            common,
            message,
            int(sids[i], 0) if paired else None,
            int(ppids[i], 0) if paired else None,
        )
        for i, message in enumerate(messages)
    ]


def _row(common: dict[str, Any], msg: Any, stream: int | None, ppid: int | None) -> DiameterRow:
    result = _first(msg, "diameter.Result-Code")
    return DiameterRow(
        **common,
        stream=stream,
        ppid=ppid,
        command=int(_first(msg, "diameter.cmd.code") or 0),
        request=_first(msg, "diameter.flags.request") in ("1", "True", "true"),
        application=int(_first(msg, "diameter.applicationId") or 0),
        hop_by_hop=int(_first(msg, "diameter.hopbyhopid") or "0", 0),
        end_to_end=int(_first(msg, "diameter.endtoendid") or "0", 0),
        session_id=_first(msg, "diameter.Session-Id"),
        origin_host=_first(msg, "diameter.Origin-Host"),
        result_code=int(result) if result is not None else None,
    )


def _find(tree: Any, key: str) -> list[str]:
    """Every value of `key` in a tshark JSON tree, depth first in document order."""
    found: list[str] = []
    if isinstance(tree, dict):
        for name, value in tree.items():
            if name == key:
                found += value if isinstance(value, list) else [value]
            else:
                found += _find(value, key)
    elif isinstance(tree, list):
        for item in tree:
            found += _find(item, key)
    return found


def _first(tree: Any, key: str) -> str | None:
    values = _find(tree, key)
    return values[0] if values else None


def warm_up_tshark() -> subprocess.Popen[bytes]:
    """Start `tshark -v` in the background so a later decode starts warm: inside the VM
    the first start reads libwireshark (110 MB) over 9p, about 70 s; later ones about 20 s."""
    return subprocess.Popen(["tshark", "-v"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m sigmw.testbed.capture FILE [PORT ...]: print the Diameter rows of a capture
    (e.g. on the host, of a capture a VM test left in its --results directory)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m sigmw.testbed.capture FILE [PORT ...]", file=sys.stderr)
        return 2
    ports = [int(p) for p in args[1:]] or [DIAMETER_PORT]
    for row in decode_diameter(Path(args[0]), ports):
        flag = "R" if row.request else "A"
        print(
            f"{row.frame:5} {row.time:9.6f} {row.transport} {row.src}:{row.src_port} -> "
            f"{row.dst}:{row.dst_port} sid={row.stream} ppid={row.ppid} {row.command}{flag} "
            f"e2e={row.end_to_end:#x} rc={row.result_code} sess={row.session_id}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
