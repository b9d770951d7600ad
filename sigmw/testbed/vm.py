"""Run a command as root inside a small VM whose kernel has SCTP.

For machines whose kernel lacks SCTP (containers, CI runners, WSL2): virtme-ng
boots Debian's kernel under qemu with the host's filesystem shared read-only, so
the same virtualenv, code and Debian programs run inside. Facts this relies on
(docs/testbed.md): KVM is unusable here (software emulation), the command must
travel in a script file (the kernel command line is cut at 2048 bytes), qemu
truncates a regular-file stdout (so we pipe it), and the guest writes its exit
status to a file so that a guest failure and a host-side kill are told apart.

    python -m sigmw.testbed.vm [--timeout S] -- CMD ...
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GUEST_MODULES = ("sctp", "veth", "sch_netem")
EXIT_TIMEOUT = 124
EXIT_NO_STATUS = 125


class TestbedError(RuntimeError):
    """The VM could not be started (missing kernel, qemu or vng)."""


def find_kernel() -> str:
    """Newest /boot/vmlinuz-*-amd64 whose modules include sctp.ko."""

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
    beside = Path(sys.executable).parent / "vng"
    if beside.exists():
        return beside
    found = shutil.which("vng")
    if found is None:
        raise TestbedError("virtme-ng (vng) is not installed: pip install virtme-ng")
    return Path(found)


def guest_script(argv: list[str], results: Path, cwd: Path, timeout: float) -> str:
    """What the guest runs: load modules, run the command, leave its status in a file."""
    keep = ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "LANG", "CI", "SIGMW_TEST_FILTER")
    env = "".join(f"export {k}={shlex.quote(os.environ[k])}\n" for k in keep if k in os.environ)
    status = shlex.quote(str(results / "status"))
    return (
        "#!/bin/sh\n"
        f"echo started > {shlex.quote(str(results / 'started'))}\n"
        f"for m in {' '.join(GUEST_MODULES)}; do modprobe $m; done\n"
        "ip link set lo up\n"
        f"{env}export HOME=/root PYTHONDONTWRITEBYTECODE=1\n"
        f"cd {shlex.quote(str(cwd))}\n"
        f"timeout -k 10 {int(timeout)} {shlex.join(argv)}\n"
        f"echo $? > {status}\n"
    )


def _pump(stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


def _boot(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # one process group: qemu dies with vng
    )
    threading.Thread(target=_pump, args=(proc.stdout,), daemon=True).start()
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_in_vm(
    argv: list[str],
    timeout: float = 1500,
    memory: str = "2G",
    cpus: int = 2,
    boot_timeout: float = 60,
    results: Path | None = None,
) -> int:
    """Run argv as root in the VM from the current directory; returns its exit status."""
    results = (results or Path(".bench/vm")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    script = results / "guest.sh"
    script.write_text(guest_script(argv, results, Path.cwd(), timeout))
    script.chmod(0o755)
    vng = find_vng()
    env = dict(os.environ, PATH=f"{vng.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [
        str(vng),
        "--run",
        find_kernel(),
        "--disable-kvm",
        "--force-9p",
        "--memory",
        memory,
        "--cpus",
        str(cpus),
        "--rwdir",
        str(results),
        "--exec",
        str(script),
    ]
    for attempt in (1, 2):
        for marker in ("started", "status"):
            (results / marker).unlink(missing_ok=True)
        start = time.monotonic()
        proc = _boot(cmd, env)
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            if not (results / "started").exists() and elapsed > boot_timeout:
                print(f"[vm] no start after {boot_timeout:.0f} s (attempt {attempt})", flush=True)
                _kill(proc)
                break
            if elapsed > timeout + boot_timeout + 30:
                print(f"[vm] killed after {elapsed:.0f} s: command did not finish", flush=True)
                _kill(proc)
                return EXIT_TIMEOUT
            time.sleep(0.5)
        if (results / "started").exists():
            return _status(results)
    print("[vm] the VM never started the command (twice); see the output above", flush=True)
    return EXIT_NO_STATUS


def _status(results: Path) -> int:
    try:
        return int((results / "status").read_text().strip())
    except (OSError, ValueError):
        print("[vm] the command left no exit status (VM crashed or was killed)", flush=True)
        return EXIT_NO_STATUS


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sigmw.testbed.vm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--timeout", type=float, default=1500, help="seconds for the command")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command given")
    try:
        return run_in_vm(command, ns.timeout, ns.memory, ns.cpus)
    except TestbedError as exc:
        print(f"sigmw testbed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
