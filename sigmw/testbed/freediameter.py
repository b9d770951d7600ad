"""Run freeDiameterd (Debian `freediameter` 1.2.1) as a real Diameter peer in tests.

    fd = FreeDiameter(tmp_path, listen_addresses=["10.91.1.2"], tcp=False,
                      acl=["ALLOW_IPSEC *.test"],
                      peers=[FdPeer("srv.server", "10.91.1.1", 3868)],
                      routes=[FdRoute("server", "srv.server")])
    fd.start(net.b)        # a namespace from netns.py, or None for this one
    ...                    # on failure, show fd.log
    fd.stop()

Facts this relies on (measured; docs/testbed.md has the list):
- TLS_Cred is mandatory even when every peer is No_TLS, and a self-signed
  certificate is refused ("hasn't got a known issuer") unless it is also TLS_CA.
- ListenOn with a 127/8 address is ignored, and with no other address it
  refuses to start ("Unable to find the address(es) of the local system"). Any
  other address works, even on `lo`; missing listen addresses are added as /32
  (on a dummy interface when the kernel has the module, else on `lo`).
- Unknown peers are rejected unless acl_wl lists them (ALLOW_IPSEC: they may
  connect without TLS); a wildcard is allowed as the first label only.
- TwTimer below 6 s is refused by freeDiameterd (RFC 3539).
- Readiness: "freeDiameterd daemon initialized." is logged after the listening
  sockets exist.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sigmw.testbed.netns import Host

EXTENSIONS = Path("/usr/lib/freeDiameter")  # dpkg -L freediameter-extensions
READY_LINE = "freeDiameterd daemon initialized."
DUMMY_DEV = "sigmwfd0"
MIN_TW = 6  # freeDiameterd refuses smaller Tw (RFC 3539)

Transport = Literal["sctp", "tcp"]


class FreeDiameterError(RuntimeError):
    """freeDiameterd did not start (or a set-up step failed); the message holds its log."""


@dataclass(frozen=True, slots=True)
class FdPeer:
    """A peer freeDiameterd knows by name."""

    identity: str
    """Its Diameter identity (Origin-Host it must send in CER/CEA)."""
    address: str
    """IP address to connect to."""
    port: int = 3868
    transport: Transport = "sctp"
    connect: bool = True
    """True: freeDiameterd connects (ConnectPeer); False: it only accepts this peer (ACL)."""


@dataclass(frozen=True, slots=True)
class FdRoute:
    """An rt_default rule: requests whose Destination-Realm is `realm` go to peer `host`."""

    realm: str
    host: str
    score: str = "FINALDEST"
    """rt_default score added to that peer (a number or a constant such as REALM)."""


@dataclass
class FreeDiameter:
    """One freeDiameterd process with its configuration, certificate and log in workdir."""

    workdir: Path
    identity: str = "fd.test"
    realm: str = "test"
    listen_addresses: Sequence[str] = ()
    port: int = 3868
    sctp: bool = True
    tcp: bool = True
    peers: Sequence[FdPeer] = ()
    routes: Sequence[FdRoute] = ()
    acl: Sequence[str] = ("ALLOW_IPSEC *.test",)
    """acl_wl lines: which unknown peers may connect (peers with connect=False are added)."""
    tw: int = 30
    """Watchdog timer Tw in seconds (>= 6)."""
    tc: int = 1
    """Seconds between reconnection attempts to ConnectPeer peers."""
    streams: int = 30
    """SCTP streams freeDiameterd asks for (its default is 30)."""
    relay: bool = True
    """Advertise the relay application and forward what is not for itself."""
    dump_messages: bool = False
    """Load dbg_msg_dumps to log every message in full (verbose: for debugging)."""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _added: AddedAddresses | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tw < MIN_TW:
            raise ValueError(f"freeDiameterd refuses TwTimer {self.tw} (minimum {MIN_TW} s)")
        if not (self.sctp or self.tcp):
            raise ValueError("enable at least one of sctp and tcp")
        if not self.listen_addresses:
            raise ValueError("freeDiameterd needs a non-loopback listen address")

    # --- files ------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.workdir / "freeDiameter.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "freeDiameterd.log"

    @property
    def log(self) -> str:
        """Everything freeDiameterd printed so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def write_files(self) -> None:
        """Certificate, extension configurations and freeDiameter.conf in workdir."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_certificate(self.workdir, self.identity)
        acl = [*self.acl, *(f"ALLOW_IPSEC {p.identity}" for p in self.peers if not p.connect)]
        (self.workdir / "acl_wl.conf").write_text("".join(f"{line}\n" for line in acl))
        rules = [f'dr="{r.realm}" : "{r.host}" += {r.score} ;\n' for r in self.routes]
        (self.workdir / "rt_default.conf").write_text("".join(rules))
        self.conf_path.write_text(self.config_text())

    def config_text(self) -> str:
        """freeDiameter.conf, each line with the reason it is there."""
        lines = [
            f'Identity = "{self.identity}";',
            f'Realm = "{self.realm}";',
            f"Port = {self.port};",
            "SecPort = 0;  # no TLS port: every peer is No_TLS",
            f"TwTimer = {self.tw};  # watchdog interval (>= 6 s)",
            f"TcTimer = {self.tc};  # reconnect soon after a test peer restarts",
            f"SCTP_streams = {self.streams};",
            "No_IPv6;  # the test topologies are IPv4",
            *(["No_SCTP;"] if not self.sctp else []),
            *(["No_TCP;"] if not self.tcp else []),
            *(["NoRelay;  # answer 3002 rather than forward"] if not self.relay else []),
            "# 127/8 is ignored here; these must be real (dummy or /32) addresses",
            *(f'ListenOn = "{a}";' for a in self.listen_addresses),
            "# mandatory even with No_TLS everywhere; self-signed, so it is its own CA",
            f'TLS_Cred = "{self.workdir / "cert.pem"}", "{self.workdir / "key.pem"}";',
            f'TLS_CA = "{self.workdir / "cert.pem"}";',
            "# unknown peers may connect without TLS (ALLOW_IPSEC)",
            _extension("acl_wl", self.workdir / "acl_wl.conf"),
            "# realm -> peer rules for relaying",
            _extension("rt_default", self.workdir / "rt_default.conf"),
        ]
        if self.dump_messages:
            lines += ["# log every message in full", _extension("dbg_msg_dumps", "0x0080")]
        lines += [_connect_peer(p, self.tc, self.tw) for p in self.peers if p.connect]
        return "\n".join(lines) + "\n"

    # --- process ------------------------------------------------------------------

    def start(self, host: Host | None = None, timeout: float = 60.0) -> None:
        """Write the files, add missing listen addresses, start and wait until it listens."""
        if self._proc is not None:
            raise FreeDiameterError("freeDiameterd is already running")
        if shutil.which("freeDiameterd") is None or not (EXTENSIONS / "acl_wl.fdx").exists():
            raise FreeDiameterError(
                "freeDiameterd or its extensions are missing: run 'bash scripts/install-testbed.sh'"
                " (Debian packages freediameter, freediameter-extensions)"
            )
        self.write_files()
        self._added = add_local_addresses(host, self.listen_addresses)
        argv = ["freeDiameterd", "-c", str(self.conf_path)]
        with self.log_path.open("wb") as out:
            options: dict[str, Any] = {"stdout": out, "stderr": subprocess.STDOUT}
            options["stdin"] = subprocess.DEVNULL
            self._proc = host.popen(*argv, **options) if host else subprocess.Popen(argv, **options)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log:
            if self._proc.poll() is not None:
                self._proc = None
                raise FreeDiameterError(f"freeDiameterd exited at start-up:\n{self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise FreeDiameterError(f"freeDiameterd not ready after {timeout} s:\n{self.log}")
            time.sleep(0.05)

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        """Block until text appears in the log (e.g. a peer's state change)."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise FreeDiameterError(f"{text!r} not in the log after {timeout} s:\n{self.log}")
            time.sleep(0.05)

    async def log_reaches(self, text: str, timeout: float = 30.0) -> None:
        """wait_log for asyncio code: the loop keeps serving (e.g. a peer's CER)."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise FreeDiameterError(f"{text!r} not in the log after {timeout} s:\n{self.log}")
            await asyncio.sleep(0.05)

    async def peer_open(self, identity: str, timeout: float = 30.0) -> None:
        """Wait until freeDiameterd logs that its connection with `identity` is open."""
        await self.log_reaches(f"-> 'STATE_OPEN'\t'{identity}'", timeout)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """freeDiameterd's own pid (`ip netns exec` execs it), e.g. for CPU time from /proc."""
        return self._proc.pid if self._proc is not None else None

    async def stop_async(self, timeout: float = 10.0) -> int | None:
        """stop() for asyncio code: the loop keeps answering the DPR freeDiameterd sends."""
        return await asyncio.to_thread(self.stop, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (it sends DPR to its peers), wait, then SIGKILL; returns the exit status."""
        proc, self._proc = self._proc, None
        status: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
        if self._added is not None:
            remove_local_addresses(self._added)
            self._added = None
        return status

    def __enter__(self) -> FreeDiameter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class AddedAddresses:
    """What add_local_addresses changed, so remove_local_addresses can undo exactly that."""

    host: Host | None
    addresses: tuple[tuple[str, str], ...] = ()
    """(address/32, device) pairs added."""
    device: str | None = None
    """The dummy device, if it was created here."""


def _ip(host: Host | None, *args: str) -> subprocess.CompletedProcess[str]:
    if host is not None:
        return host.run("ip", *args)
    return subprocess.run(("ip", *args), capture_output=True, text=True, check=False)


def add_local_addresses(host: Host | None, addresses: Sequence[str]) -> AddedAddresses:
    """Give the namespace each address it lacks, as a /32 on a dummy device (or on lo
    when the kernel has no dummy module: freeDiameterd accepts any non-127/8 address)."""
    present = _ip(host, "-o", "addr", "show").stdout
    missing = [a for a in addresses if f" {a}/" not in present]
    if not missing:
        return AddedAddresses(host)
    dev, made = DUMMY_DEV, None
    if _ip(host, "link", "show", DUMMY_DEV).returncode != 0:
        if _ip(host, "link", "add", DUMMY_DEV, "type", "dummy").returncode == 0:
            made = DUMMY_DEV
            _check(_ip(host, "link", "set", DUMMY_DEV, "up"))
        else:
            dev = "lo"
    added = []
    for address in missing:
        _check(_ip(host, "addr", "add", f"{address}/32", "dev", dev))
        added.append((f"{address}/32", dev))
    return AddedAddresses(host, tuple(added), made)


def remove_local_addresses(added: AddedAddresses) -> None:
    for address, dev in added.addresses:
        _ip(added.host, "addr", "del", address, "dev", dev)
    if added.device is not None:
        _ip(added.host, "link", "del", added.device)


def _extension(name: str, conf: Path | str) -> str:
    return f'LoadExtension = "{EXTENSIONS / (name + ".fdx")}" : "{conf}";'


def _connect_peer(peer: FdPeer, tc: int, tw: int) -> str:
    # No_TLS: plain Diameter; the other transport is disabled so it never falls back.
    other = "No_TCP" if peer.transport == "sctp" else "No_SCTP"
    return (
        f'ConnectPeer = "{peer.identity}" {{ ConnectTo = "{peer.address}"; '
        f"Port = {peer.port}; No_TLS; {other}; TcTimer = {tc}; TwTimer = {tw}; }};"
    )


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise FreeDiameterError(f"{' '.join(map(str, done.args))}: {done.stderr.strip()}")


def make_certificate(directory: Path, common_name: str) -> None:
    """A self-signed certificate and key (cert.pem, key.pem) unless present.

    EC P-256: as good as RSA to freeDiameterd (it never uses TLS here), and made
    in 1 s inside the emulated VM where RSA-2048 takes about 7 s."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    argv += ["-nodes", "-days", "7"]
    argv += ["-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise FreeDiameterError(f"openssl could not make a certificate: {done.stderr}")


def tail(text: str, lines: int = 60) -> str:
    """The end of a log, for assertion messages."""
    return "\n".join(text.splitlines()[-lines:])


__all__ = [
    "AddedAddresses",
    "FdPeer",
    "FdRoute",
    "FreeDiameter",
    "FreeDiameterError",
    "add_local_addresses",
    "make_certificate",
    "remove_local_addresses",
    "tail",
]
