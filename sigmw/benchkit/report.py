"""The bench's report: one table per relay, the overload table, ratios and the targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sigmw.benchkit.tools import CpuBudget, Json, Run

PCTS = ("p50", "p99", "p999")
COMPARED = ("closed", "fixed", "share", "pygen")
"""Scenarios set side by side in the ratios (the overload and its max have their table)."""
MIB = 1024.0


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]


def non_ok_codes(gen: Json) -> str:
    """Answers other than 2001 by Result-Code, such as "3004:120 3002:3"; "-" for none."""
    codes = sorted((c, n) for c, n in gen.get("result_codes", {}).items() if c != "2001")
    return " ".join(f"{c}:{n}" for c, n in codes) or "-"


def latency_ms(gen: Json, key: str, klass: str | None = None) -> float | None:
    """A latency percentile in ms, of all answers or of one class (2001, 3004, other)."""
    lat = gen.get("latency_us", {}) if klass is None else gen["latency_by_code_us"][klass]
    n = lat.get("n", gen.get("answered", 0))
    return lat[key] / 1e3 if lat and n else None


BUDGET_HEAD = "CPUs relay/tools/idle"


def budget_cell(budget: CpuBudget | None) -> str:
    """The window's CPUs as "relay/tools/idle" (tools: the generator and the server)."""
    if budget is None:
        return "-"
    tools = budget.generator + (budget.server or 0.0)
    return f"{budget.relay:.2f}/{tools:.2f}/{budget.idle:.2f}"


def busiest_thread_cell(budget: CpuBudget | None) -> str:
    """The relay's busiest thread over the window as "ran/waited" (CPUs): 0.90/0.08 is a
    thread that would have run 0.98 of the time had it had the CPU."""
    if budget is None or not budget.threads:
        return "-"
    top = budget.threads[0]
    return f"{top.ran:.2f}/{top.waited:.2f}"


def render_table(title: str, runs: Sequence[Run], cpu_label: str) -> str:
    head = ("scenario", "rate", "answers/s", "2001/s", "p50 ms", "p99 ms", "p99.9 ms",
            cpu_label, "gen us/req", "non-2001 answers", "timeouts", "mismatch",
            BUDGET_HEAD)  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for r in runs:
        g = r.gen
        rate = _fmt(g["rate"], 0) if g.get("mode") == "open" else "max"
        ms = [_fmt(latency_ms(g, k), 2) for k in PCTS]
        rows.append((r.scenario, rate, _fmt(g["throughput"], 0), _fmt(g.get("goodput"), 0), *ms,
                     _fmt(r.relay_cpu_us, 2), _fmt(g.get("cpu_us_per_req"), 2), non_ok_codes(g),
                     str(g.get("timeouts", "-")), str(g.get("mismatches", 0)),
                     budget_cell(r.budget)))  # fmt: skip
    return "\n".join([title, *_table(rows)])


def best_closed(runs: Sequence[Run]) -> Run | None:
    """The closed-loop scenario with the highest throughput: the relay's max."""
    closed = [r for r in runs if r.kind == "closed"]
    return max(closed, key=lambda r: r.gen["throughput"]) if closed else None


def find(runs: Sequence[Run], kind: str) -> Run | None:
    return next((r for r in runs if r.kind == kind), None)


@dataclass(frozen=True)
class OverloadRound:
    """One overload run and the closed-loop maxima around it in the same relay process."""

    run: Run
    before: float
    """The max right before: the run was offered twice this."""
    after: float | None
    """The max right after, once the relay answered 2001 again (None: not measured)."""

    @property
    def yardstick(self) -> float:
        """What its goodput is set against: the mean of the maxima around it, so that the
        machine's speed changing over the run moves it less (the VM's does, by up to 45%
        within half a minute)."""
        return (self.before + self.after) / 2 if self.after else self.before

    @property
    def ratio(self) -> float:
        return float(self.run.gen["goodput"]) / self.yardstick if self.yardstick else 0.0


def overload_rounds(runs: Sequence[Run]) -> list[OverloadRound]:
    """Each overload run with the `max` runs around it; with none (an older report), pass
    1's best closed-loop max stands before every one."""
    best = best_closed(runs)
    last = best.gen["throughput"] if best else 0.0
    rounds: list[OverloadRound] = []
    waiting: Run | None = None  # an overload run whose max after is still to come
    for run in runs:
        if run.kind == "max":
            if waiting is not None:
                rounds.append(OverloadRound(waiting, last, run.gen["throughput"]))
                waiting = None
            last = run.gen["throughput"]
        elif run.kind == "overload":
            if waiting is not None:
                rounds.append(OverloadRound(waiting, last, None))
            waiting = run
    if waiting is not None:
        rounds.append(OverloadRound(waiting, last, None))
    return [r for r in rounds if r.before > 0]


def median_ratio(rounds: Sequence[OverloadRound]) -> float:
    return statistics.median(r.ratio for r in rounds)


def render_overload(results: dict[str, list[Run]]) -> str:
    head = ("relay", "offered/s", "max before/s", "max after/s", "2001/s", "2001/max",
            "2001 p99 ms", "3004 n", "3004 p50 ms", "3004 p99 ms", "other non-2001", "timeouts",
            "RSS start>end MiB", "peak MiB", "recover s", BUDGET_HEAD,
            "busiest thread ran/waited")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    summary: list[str] = []
    for name, runs in results.items():
        rounds = overload_rounds(runs)
        for r in rounds:
            run, g = r.run, r.run.gen
            busy = g["result_codes"].get("3004", 0)
            other = {c: n for c, n in g["result_codes"].items() if c not in ("2001", "3004")}
            rss = f"{run.rss_kb[0] / MIB:.0f}>{run.rss_kb[1] / MIB:.0f}" if run.rss_kb else "-"
            rows.append((name, _fmt(g["rate"], 0), _fmt(r.before, 0), _fmt(r.after, 0),
                         _fmt(g["goodput"], 0), f"{r.ratio:.2f}",
                         _fmt(latency_ms(g, "p99", "2001"), 1), str(busy),
                         _fmt(latency_ms(g, "p50", "3004"), 1),
                         _fmt(latency_ms(g, "p99", "3004"), 1),
                         non_ok_codes({"result_codes": other}), str(g["timeouts"]), rss,
                         _fmt(run.hwm_kb / MIB if run.hwm_kb else None, 0),
                         _recover(run), budget_cell(run.budget),
                         busiest_thread_cell(run.budget)))  # fmt: skip
        if rounds:
            pass1 = _fmt(_throughput(best_closed(runs)), 0)
            summary.append(f"  {name}: median 2001/max {median_ratio(rounds):.2f} over "
                           f"{len(rounds)} round(s); pass-1 max {pass1}/s")  # fmt: skip
    if len(rows) == 1:
        return ""
    title = "== overload: open loop at 2x the closed-loop max measured right before, in rounds"
    note = ("  (max before/after: closed loop in the same relay process around the run; "
            "2001/max: goodput over their mean; timeouts: no answer within the generator's "
            "--timeout after the window; recover s: until a probe got 2001 again; CPUs: "
            "what the relay, the generator with the server, and nothing used of the "
            "machine's CPUs over the window; busiest thread: the relay's, the CPU it ran "
            "and the CPU it waited for)")  # fmt: skip
    return "\n".join([title, *_table(rows), *summary, note])


def _recover(run: Run) -> str:
    return _fmt(run.recover_s, 1) if run.recover_s is not None else "never"


def _throughput(run: Run | None) -> float | None:
    return run.gen["throughput"] if run else None


def ratios(sigmw: Sequence[Run], fd: Sequence[Run]) -> str:
    """sigmw / freeDiameterd for each scenario both ran (overload has its own table)."""
    mine, theirs = {r.scenario: r for r in sigmw}, {r.scenario: r for r in fd}
    lines = ["== sigmw / freeDiameterd"]
    for name in [n for n in mine if n in theirs and mine[n].kind in COMPARED]:
        a, b = mine[name], theirs[name]
        figures: list[tuple[str, float | None, float | None]] = [
            ("relay us/answer", a.relay_cpu_us, b.relay_cpu_us)
        ]
        if a.kind in ("fixed", "share"):  # open loop: answers/s is the offered rate
            figures += [(k, latency_ms(a.gen, k), latency_ms(b.gen, k)) for k in PCTS]
        else:
            figures.insert(0, ("answers/s", a.gen["throughput"], b.gen["throughput"]))
        text = [f"{k} {x / y:.2f}" for k, x, y in figures if x is not None and y]
        lines.append(f"  {name:10} " + "  ".join(text))
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets with what this run measured."""

    name: str
    goal: str
    value: str
    ok: bool


def _ratio_target(name: str, goal: str, x: float | None, y: float | None, ok_if: str) -> Target:
    if x is None or not y:
        return Target(name, goal, "not measured", False)
    r = x / y
    limit = float(goal.split()[-1].rstrip("x"))
    return Target(name, goal, f"{r:.2f}x", r >= limit if ok_if == ">=" else r <= limit)


def relay_targets(sigmw: Sequence[Run], fd: Sequence[Run], transport: str) -> list[Target]:
    """Throughput and CPU (at each relay's max), and for TCP p99 at the fixed rate."""
    goals = {"tcp": (5.0, 0.15), "sctp": (2.5, 0.3)}[transport]
    a, b = best_closed(sigmw), best_closed(fd)
    tput = (a.gen["throughput"] if a else None, b.gen["throughput"] if b else None)
    cpu = (a.relay_cpu_us if a else None, b.relay_cpu_us if b else None)
    out = [
        _ratio_target(f"{transport} max throughput sigmw/fd", f">= {goals[0]:g}x", *tput, ">="),
        _ratio_target(f"{transport} CPU per pair at max, sigmw/fd", f"<= {goals[1]:g}x", *cpu,
                      "<="),
    ]  # fmt: skip
    if transport == "tcp":
        fa, fb = find(sigmw, "fixed"), find(fd, "fixed")
        rate = _fmt(fa.gen["rate"], 0) if fa else "?"
        p99 = (latency_ms(fa.gen, "p99") if fa else None, latency_ms(fb.gen, "p99") if fb else None)
        out.append(_ratio_target(f"tcp p99 at {rate} req/s sigmw/fd", "<= 1x", *p99, "<="))
    return out


def _round_figures(r: OverloadRound) -> tuple[float, float | None, bool, float | None, float]:
    """(3004 share of the excess, 3004 p99 ms, no excess, RSS growth MiB, timeouts/sent)."""
    g, run = r.run.gen, r.run
    # The excess: requests of the window not answered 2001 inside it (late 2001s count too).
    excess = g["sent"] - g["goodput"] * g["duration_s"]
    share = g["result_codes"].get("3004", 0) / excess if excess > 0 else 1.0
    growth = (run.rss_kb[1] - run.rss_kb[0]) / MIB if run.rss_kb else None
    lost = g["timeouts"] / g["sent"] if g["sent"] else 1.0
    return share, latency_ms(g, "p99", "3004"), excess <= 0, growth, lost


def _worst(values: Sequence[float | None]) -> float | None:
    """The highest of the rounds' figures; None if one was not measured (or none was)."""
    known = [v for v in values if v is not None]
    return max(known) if known and len(known) == len(values) else None


def overload_targets(sigmw: Sequence[Run], slow: float) -> list[Target]:
    """The issue's overload targets for sigmw; time limits are scaled by `slow` (the VM).
    Goodput is the median over the rounds; every other figure is the worst round's."""
    rounds = overload_rounds(sigmw)
    if not rounds:
        return [Target("overload (sigmw)", "measured", "not measured", False)]
    figures = [_round_figures(r) for r in rounds]
    ratios = ", ".join(f"{r.ratio:.2f}" for r in rounds)
    median = median_ratio(rounds)
    share = min(f[0] for f in figures)
    quick = 100 * slow
    p99s = [f[1] for f in figures if not f[2]]
    p99 = _worst(p99s)
    growth = _worst([f[3] for f in figures])
    lost = max(f[4] for f in figures)
    back = 5 * slow
    recover = _worst([r.run.recover_s for r in rounds])
    return [
        Target("overload goodput / max (median)", ">= 0.80",
               f"{median:.2f} of [{ratios}]{_least_idle(rounds)}", median >= 0.8),
        Target("overload excess answered 3004", ">= 90%", f"{share:.0%}", share >= 0.9),
        Target("overload 3004 p99", f"<= {quick:g} ms",
               _fmt(p99, 1) + " ms" if p99 is not None else "none",
               (p99 is not None and p99 <= quick) or not p99s),
        Target("overload RSS growth over the window", "<= 64 MiB",
               f"{growth:.1f} MiB" if growth is not None else "not sampled",
               growth is not None and growth <= 64),
        Target("overload no collapse: timeouts/sent", "<= 1%", f"{lost:.1%}", lost <= 0.01),
        Target("overload no collapse: 2001 again after", f"<= {back:g} s",
               f"{recover:.1f} s" if recover is not None else "never",
               recover is not None and recover <= back),
    ]  # fmt: skip


def _least_idle(rounds: Sequence[OverloadRound]) -> str:
    """How full the machine was in the rounds, as ", machine idle at most 0.04 of 2 CPUs"
    (nothing if a round was not sampled). Near zero, the goodput measured the machine's
    CPUs as much as the relay (CpuBudget)."""
    budgets = [r.run.budget for r in rounds if r.run.budget is not None]
    if not budgets or len(budgets) != len(rounds):
        return ""
    most = max(b.idle for b in budgets)
    return f", machine idle at most {most:.2f} of {budgets[0].cpus} CPUs"


def render_targets(targets: Sequence[Target]) -> str:
    rows = [("", "target", "goal", "measured")]
    rows += [("PASS" if t.ok else "FAIL", t.name, t.goal, t.value) for t in targets]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    passed = sum(t.ok for t in targets)
    return "\n".join(["== targets", *lines, f"{passed} of {len(targets)} targets met"])
