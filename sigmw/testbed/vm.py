"""Run a command as root inside a small VM whose kernel has SCTP.

For machines whose kernel lacks SCTP (containers, CI runners, WSL2): virtme-ng
boots Debian's kernel under qemu with the host's filesystem shared read-only, so
the same virtualenv, code and Debian programs run inside. Facts this relies on
(docs/testbed.md): KVM is unusable here (software emulation), the command must
travel in a script file (the kernel command line is cut at 2048 bytes), qemu
truncates a regular-file stdout (so we pipe it), and the guest writes its exit
status to a file so that a guest failure and a host-side kill are told apart.

    python -m sigmw.testbed.vm [--timeout S] [--memory 2G] [--cpus 2] -- CMD ...

Exit status: CMD's own; 124 if it ran out of time; 125 if it left no status
(the VM never started it, crashed or was killed); 2 if the VM cannot be booted.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

GUEST_MODULES = ("sctp", "veth", "sch_netem")
RESULTS_DIR = Path(".bench/vm")
EXIT_TIMEOUT = 124
EXIT_NO_STATUS = 125
# Host variables the guest command needs to find the same Python, code and switches.
KEEP_ENV = ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "LANG", "CI", "SIGMW_TEST_FILTER")


class TestbedError(RuntimeError):
    """The VM could not be started (missing kernel, qemu or vng)."""


def find_kernel() -> str:
    """Newest /boot/vmlinuz-* whose modules include sctp.ko."""

    def version(path: str) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", Path(path).name)]

    for image in sorted(glob.glob("/boot/vmlinuz-*"), key=version, reverse=True):
        release = Path(image).name.removeprefix("vmlinuz-")
        if glob.glob(f"/lib/modules/{release}/kernel/net/sctp/sctp.ko*"):
            return image
    raise TestbedError(
        "no kernel with sctp.ko under /boot: install it with "
        "'bash scripts/install-testbed.sh' (Debian package linux-image-amd64)"
    )


def find_vng() -> Path:
    """vng of this interpreter's environment first (it finds virtme-run beside it)."""
    beside = Path(sys.executable).parent / "vng"
    if beside.exists():
        return beside
    found = shutil.which("vng")
    if found is None:
        raise TestbedError("virtme-ng (vng) is not installed: pip install virtme-ng")
    return Path(found)


def guest_script(argv: list[str], started: Path, status: Path, cwd: Path, timeout: float) -> str:
    """What the guest runs: mark the start, load modules, run argv, leave its status."""
    env = "".join(f"export {k}={shlex.quote(os.environ[k])}\n" for k in KEEP_ENV if k in os.environ)
    return (
        "#!/bin/sh\n"
        f"echo started > {shlex.quote(str(started))}\n"
        f'for m in {" ".join(GUEST_MODULES)}; do modprobe $m || echo "[vm] no module $m"; done\n'
        "ip link set lo up\n"
        f"{env}"
        # A non-root caller's PATH lacks the sbin directories that ip, tc and modprobe live in.
        'export PATH="${PATH:-/usr/bin:/bin}:/usr/sbin:/sbin"\n'
        "export HOME=/root PYTHONDONTWRITEBYTECODE=1\n"
        f"cd {shlex.quote(str(cwd))} || exit 1\n"
        f"timeout -k 10 {int(timeout)} {shlex.join(argv)}\n"
        f"echo $? > {shlex.quote(str(status))}\n"
    )


def _pump(stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


def _say(text: str) -> None:
    print(f"[vm] {text}", flush=True)


class _Vm:
    """One boot of vng, its output copied to our stdout line by line."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,  # never our stdout: qemu would truncate a file there
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # one process group, so qemu dies with vng
        )
        assert self.proc.stdout is not None
        self.pump = threading.Thread(target=_pump, args=(self.proc.stdout,), daemon=True)
        self.pump.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.pump.join(5)

    def finish(self) -> None:
        """After vng exited: let the last lines through before we report."""
        self.pump.join(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers holding the pipe


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_in_vm(
    argv: list[str],
    timeout: float = 1500,
    memory: str = "2G",
    cpus: int = 2,
    boot_timeout: float = 90,
    results: Path | None = None,
) -> int:
    """Run argv as root in the VM from the current directory; returns its exit status.

    `results` (default .bench/vm) is the one host directory the guest can write to.
    """
    results = (results or RESULTS_DIR).resolve()
    results.mkdir(parents=True, exist_ok=True)
    run = f"{os.getpid()}-{secrets.token_hex(2)}"  # runs sharing the directory never clash
    script, started, status = (results / f"{n}-{run}" for n in ("guest", "started", "status"))
    script.write_text(guest_script(argv, started, status, Path.cwd(), timeout))
    script.chmod(0o755)
    vng = find_vng()
    env = dict(os.environ, PATH=f"{vng.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(vng), "--run", find_kernel(), "--disable-kvm", "--force-9p"]
    cmd += ["--memory", memory, "--cpus", str(cpus), "--rwdir", str(results), "--exec", str(script)]
    # qemu runs in its own session: a SIGTERM to us must still take it down (see finally).
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_on_sigterm) if on_main else None
    try:
        for attempt in (1, 2):
            vm = _Vm(cmd, env)
            try:
                code = _watch(vm, started, status, timeout, boot_timeout, attempt)
            finally:
                vm.kill()
            if code is not None:
                return code
        _say("the VM never started the command (tried twice); see the output above")
        return EXIT_NO_STATUS
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, old_term)
        for path in (script, started, status):
            path.unlink(missing_ok=True)


def _watch(
    vm: _Vm, started: Path, status: Path, timeout: float, boot_timeout: float, attempt: int
) -> int | None:
    """Wait for one boot; its exit status, or None to boot again."""
    boot: float | None = None
    while vm.proc.poll() is None:
        if boot is None and started.exists():
            boot = vm.elapsed()
            _say(f"command started {boot:.1f} s after boot")
        if boot is None and vm.elapsed() > boot_timeout:
            _say(f"command not started after {boot_timeout:.0f} s (attempt {attempt}): killing VM")
            return None
        if vm.elapsed() > timeout + boot_timeout + 30:
            _say(f"killed the VM after {vm.elapsed():.0f} s: the command did not finish")
            return EXIT_TIMEOUT
        time.sleep(0.25)
    vm.finish()
    if not started.exists():
        _say(f"vng exited ({vm.proc.returncode}) before the command started (attempt {attempt})")
        return None
    code = _status(status, timeout)
    _say(f"exit status {code} after {vm.elapsed():.1f} s in all")
    return code


def _status(status: Path, timeout: float) -> int:
    try:
        code = int(status.read_text().strip())
    except (OSError, ValueError):
        _say("the command left no exit status (the VM crashed or was killed)")
        return EXIT_NO_STATUS
    if code == EXIT_TIMEOUT:  # what the guest-side `timeout` exits with
        _say(f"the command ran out of time inside the VM ({timeout:.0f} s)")
        return EXIT_TIMEOUT
    return code


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sigmw.testbed.vm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--timeout", type=float, default=1500, help="seconds for the command")
    parser.add_argument("--boot-timeout", type=float, default=90, help="seconds to first command")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="guest-writable dir")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command given")
    try:
        return run_in_vm(command, ns.timeout, ns.memory, ns.cpus, ns.boot_timeout, ns.results)
    except TestbedError as exc:
        print(f"sigmw testbed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
