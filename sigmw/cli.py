"""The `sigmw` command. Errors of sigmw's own print as one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sigmw import __version__
from sigmw.core.errors import SigmwError


def _check_sctp(_: argparse.Namespace) -> int:
    from sigmw.io.kernel import check_sctp

    check_sctp()
    print("kernel SCTP: available")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from sigmw.config.loader import load_config
    from sigmw.config.report import render

    print(render(load_config(args.config), args.config))
    return 0


def _run(args: argparse.Namespace) -> int:
    from sigmw.config.loader import load_config
    from sigmw.config.model import Transport
    from sigmw.io.daemon import run
    from sigmw.io.kernel import check_sctp

    config = load_config(args.config)
    transports = [x.transport for x in config.listen] + [p.transport for p in config.peers]
    if Transport.SCTP in transports:
        check_sctp()  # a TCP-only Diameter relay runs without kernel SCTP
    return run(args.config)


def _status(args: argparse.Namespace) -> int:
    from sigmw.obs import status

    if args.admin:
        host, _, port = args.admin.rpartition(":")
        if not port.isdigit():
            raise SigmwError(f"--admin wants host:port, not {args.admin!r}")
        where = (host.strip("[]") or "127.0.0.1", int(port))
    else:
        from sigmw.config.loader import load_config

        admin = load_config(args.config).admin
        where = (admin.host, admin.port)
    doc = status.fetch(*where)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    render = {"status": status.render_status, "peers": status.render_peers}
    print(render.get(args.command, status.render_paths)(doc))
    return 0 if doc["ready"] or args.command != "status" else 1


def _bench(argv: Sequence[str]) -> int:
    from sigmw.bench import main as bench_main

    return bench_main(list(argv))


def _demo(args: argparse.Namespace) -> int:
    from sigmw.demo import main as demo_main

    return demo_main(inside=bool(args.inside), duration=float(args.duration))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigmw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sigmw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-sctp", help="say whether this kernel offers SCTP sockets")
    check.set_defaults(func=_check_sctp)
    check_config = sub.add_parser(
        "check-config",
        help="validate peers.yaml; print the effective configuration, what each peer's "
        "timers imply, and warnings",
    )
    check_config.add_argument("-c", "--config", default="peers.yaml")
    check_config.set_defaults(func=_check_config)
    run = sub.add_parser("run", help="run the relay daemon (SIGHUP reloads, SIGTERM stops)")
    run.add_argument("-c", "--config", default="peers.yaml")
    run.set_defaults(func=_run)
    for name, what in (
        ("status", "the running daemon: readiness, peers, paths, Diameter (exit 1 if not ready)"),
        ("peers", "the running daemon's peers: state, streams, watchdog, pending, traffic"),
        ("paths", "the running daemon's SCTP paths: state, primary, srtt, rto, cwnd, mtu"),
    ):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("-c", "--config", default="peers.yaml", help="read admin.listen here")
        cmd.add_argument("--admin", help="host:port of the admin endpoint (overrides -c)")
        cmd.add_argument("--json", action="store_true", help="the raw /status document")
        cmd.set_defaults(func=_status)
    sub.add_parser(  # its options are sigmw.bench's own: `sigmw bench --help`
        "bench",
        help="Diameter relay benchmark: sigmw and freeDiameterd side by side "
        "(throughput, latency, CPU per request)",
        add_help=False,
    )
    demo = sub.add_parser(
        "demo",
        help="watch a multihomed SCTP association survive a path failure "
        "(boots a small VM when this kernel has no SCTP)",
    )
    demo.add_argument("--duration", type=float, default=9.0, help="seconds of traffic")
    demo.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["bench"]:
            return _bench(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except SigmwError as exc:
        print(f"sigmw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
