"""`sigmw demo`: watch a multihomed SCTP association survive a path failure.

Two hosts (network namespaces) joined by two links; b echoes, a sends one
numbered message every 20 ms. Link 1 (a's primary path) is cut, then repaired.
The timeline shows the kernel's path events, the path table, and at the end
whether every message came back exactly once and in order. Needs root and
kernel SCTP; without them it boots the project's VM and runs inside.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sigmw.io.endpoint import SctpEndpoint
from sigmw.io.kernel import kernel_has_sctp
from sigmw.io.transport import Message
from sigmw.sctp.constants import PathState
from sigmw.sctp.notifications import PeerAddrChange
from sigmw.sctp.options import tuning_for
from sigmw.sctp.timing import FAST_FAILOVER, path_failure_detection_ms, path_switch_ms
from sigmw.testbed.netns import TwoPaths, two_hosts_two_paths

TIMERS = FAST_FAILOVER
TUNING = tuning_for(TIMERS)


class Timeline:
    def __init__(self) -> None:
        self.start = asyncio.get_running_loop().time()

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.now():6.2f} s] {text}", flush=True)


def _path_table(ep: SctpEndpoint, assoc_id: int, primary: tuple[str, int]) -> str:
    rows = []
    for p in ep.paths(assoc_id):
        mark = "primary" if p.address == primary else "       "
        state = PathState(p.state).name if p.state in set(PathState) else str(p.state)
        rows.append(
            f"    {p.address[0] if p.address else '?':<12} {mark} {state:<9} "
            f"srtt {p.srtt_ms:>4} ms  rto {p.rto_ms:>4} ms  cwnd {p.cwnd}"
        )
    return "\n".join(rows)


async def _echo(server: SctpEndpoint) -> None:
    while True:
        item = await server.recv()
        if isinstance(item, Message):
            await server.send(item.data, item.assoc_id, item.stream, item.ppid)


async def run_demo(net: TwoPaths, duration: float) -> int:
    t = Timeline()
    t.say(
        f"host a {net.path1.a_addr}, {net.path2.a_addr}  <-- link 1, link 2 -->  "
        f"host b {net.path1.b_addr}, {net.path2.b_addr}"
    )
    with net.b.entered():
        server = await SctpEndpoint.open(net.b_addresses(3868), TUNING)
    with net.a.entered():
        client = await SctpEndpoint.open(net.a_addresses(), TUNING, listen=False)
    echo = asyncio.create_task(_echo(server))
    assoc = await client.connect(net.b_addresses(3868), timeout=20)
    primary = (net.path1.b_addr, 3868)
    client.set_primary(assoc.assoc_id, primary)
    t.say(
        f"a: association {assoc.assoc_id} up, {assoc.outbound_streams} streams out / "
        f"{assoc.inbound_streams} in; primary path {primary[0]}"
    )
    t.say(
        f"timers: RTO {TIMERS.rto_min_ms}-{TIMERS.rto_max_ms} ms, heartbeat "
        f"{TIMERS.hb_interval_ms} ms, path max retrans {TIMERS.path_max_retrans}: "
        f"failure detected within {path_failure_detection_ms(TIMERS) / 1000:.1f} s, "
        f"traffic moved within {path_switch_ms(TIMERS) / 1000:.1f} s"
    )
    print(_path_table(client, assoc.assoc_id, primary), flush=True)
    sent, echoed = 0, []
    cut_at, repaired_at = duration * 0.25, duration * 0.6

    async def receive() -> None:
        while True:
            item = await client.recv()
            if isinstance(item, Message):
                echoed.append(int(item.data))
            elif isinstance(item, PeerAddrChange) and item.address == primary:
                t.say(f"a: kernel says path {primary[0]} is {item.state.name}")
                if item.state.name == "ADDR_UNREACHABLE":
                    print(_path_table(client, assoc.assoc_id, primary), flush=True)

    rx = asyncio.create_task(receive())
    t.say("a: sending one message every 20 ms on stream 1; b echoes each one")
    while t.now() < duration:
        if cut_at and t.now() >= cut_at:
            net.topo.link_down(net.path1, "a")
            t.say("!! link 1 cut (a's interface down)")
            cut_at = 0
        if repaired_at and not cut_at and t.now() >= repaired_at:
            net.topo.link_up(net.path1, "a")
            t.say("!! link 1 repaired")
            repaired_at = 0
        await client.send(b"%d" % sent, assoc.assoc_id, stream=1)
        sent += 1
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    print(_path_table(client, assoc.assoc_id, primary), flush=True)
    for task in (rx, echo):
        task.cancel()
    lost = sent - len(set(echoed))
    dups = len(echoed) - len(set(echoed))
    in_order = echoed == sorted(echoed)
    t.say(
        f"summary: sent {sent}, echoed {len(echoed)}, lost {lost}, duplicates {dups}, "
        f"{'in order' if in_order else 'OUT OF ORDER'}"
    )
    server.close()
    client.close()
    return 0 if lost == 0 and dups == 0 and in_order else 1


def main(inside: bool, duration: float) -> int:
    if os.geteuid() == 0 and kernel_has_sctp():
        with two_hosts_two_paths() as net:
            return asyncio.run(run_demo(net, duration))
    if inside:
        print("sigmw demo: inside the VM but no SCTP or not root", file=sys.stderr)
        return 2
    from sigmw.testbed.vm import run_in_vm

    print(
        "This kernel has no SCTP (or we are not root): booting a small VM whose kernel has "
        "it; the demo starts in about 15 s.",
        flush=True,
    )
    argv = [sys.executable, "-m", "sigmw", "demo", "--inside", "--duration", str(duration)]
    return run_in_vm(argv, timeout=duration + 120)
