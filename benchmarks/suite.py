"""The benchmark suite: every target of design.md measured against a same-run baseline.

    python -m benchmarks [--time-scale 10] [--json results.json] [--only scale,memory]

Prints a markdown table with one row per design.md target (target, measured figure,
the baseline measured in the same run, verdict), then the detail tables. The sandbox
runs in its own process, and so does every contender, so the client CPU seconds and
peak RSS reported are the contender's alone. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from . import journal, limits, sandbox_throughput, telemetry
from ._common import Json, fmt, markdown_table, progress
from .chaos import ChaosResult, chaos_line, run_chaos
from .journal import JournalResult, burst_table, run_journal, waits_table
from .limits import (
    ActivationResult,
    LimitTiming,
    SteadyRun,
    activations_table,
    run_activations,
    run_steady,
    steady_table,
)
from .memory import MemoryResult, memory_table, run_memory
from .overhead import OverheadResult, overhead_table, run_overhead
from .slow_get import SlowGetCase, run_slow_get, slow_get_table
from .sync_threads import MAX_REQUESTS_RATIO, SyncResult, cpu_table, run_sync_threads
from .sync_threads import waits_table as sync_waits_table
from .telemetry import TelemetryResult, codes_table, requests_table, run_telemetry
from .verification import (
    SDK_ONLY_FROM,
    ContenderResult,
    Timing,
    rate_limit_table,
    run_rate_limited,
    run_scale,
    scale_table,
)

SCENARIOS = (
    "scale",
    "slow-get",
    "rate-limit",
    "activations",
    "steady",
    "overhead",
    "memory",
    "throughput",
    "chaos",
    "journal",
    "sync",
    "telemetry",
)

#: design.md's targets.
MAX_REQUESTS_PER_CODE = 1.12  # at 1,000 waiting
MAX_REQUESTS_PER_CODE_BIG = 1.10  # at 10,000 waiting
#: One purchase, plus one list page of 100 codes per 100 codes.
REQUESTS_PER_CODE_FLOOR = 1 + 1 / 100
P99_SLACK_S = 0.5
MAX_KIB_PER_WAIT = 5.0
MAX_CPU_RATIO = 1.15
MAX_429_SHARE = 0.01
#: The sandbox's own target (issue 2).
MIN_SANDBOX_RPS = sandbox_throughput.TARGET


@dataclasses.dataclass
class Results:
    """Everything one run measured (a scenario not run stays empty)."""

    timing: Timing
    scale: list[ContenderResult] = dataclasses.field(default_factory=list)
    rate_limit: list[ContenderResult] = dataclasses.field(default_factory=list)
    overhead: OverheadResult | None = None
    memory: MemoryResult | None = None
    throughput: list[sandbox_throughput.Result] = dataclasses.field(default_factory=list)
    chaos: ChaosResult | None = None
    journal: JournalResult | None = None
    slow_get: list[SlowGetCase] = dataclasses.field(default_factory=list)
    limit_timing: LimitTiming | None = None
    activations: list[ActivationResult] = dataclasses.field(default_factory=list)
    steady: list[SteadyRun] = dataclasses.field(default_factory=list)
    sync: SyncResult | None = None
    telemetry: TelemetryResult | None = None
    seconds: float = 0.0
    #: Scenarios that raised instead of finishing: name -> error.
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Target:
    """One row of the summary."""

    what: str
    target: str
    measured: str
    baseline: str
    met: bool | None
    miss: str = ""
    #: A figure design.md asks to report, with no target to meet.
    reported: bool = False

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        if self.reported:
            return "reported"
        return "met" if self.met else f"**missed** {self.miss}".rstrip()


def _find(results: list[ContenderResult], contender: str, n: int) -> ContenderResult | None:
    return next((r for r in results if r.contender == contender and r.n == n), None)


def _per_code_row(res: Results, n: int, goal: float, floor_note: str) -> Target:
    """Requests per delivered code at ``n`` waiting: SDK beside the floor and naive loop."""
    sdk = _find(res.scale, "sdk_wait", n)
    asc = _find(res.scale, "sdk_as_completed", n)
    naive = _find(res.scale, "naive", n)
    what = f"requests per delivered code (purchase included), {n:,} waiting"
    if sdk is None or sdk.requests_per_code is None:
        return Target(what, f"≤ {goal}", "-", "-", None)
    per_code = sdk.requests_per_code
    worst = max(per_code, asc.requests_per_code or 0) if asc else per_code
    measured = f"{per_code:.3f} (`wait_for_code`)"
    if asc is not None:
        measured += f", {fmt(asc.requests_per_code, 3)} (`as_completed`)"
    base = f"floor {REQUESTS_PER_CODE_FLOOR:.2f} ({floor_note})"
    if naive is None:
        naive = next((r for r in res.scale if r.contender == "naive" and r.n < n), None)
    if naive is not None and naive.requests_per_code:
        base += f"; naive loop {naive.requests_per_code:.2f}"
        if naive.n != n:
            base += f" at {naive.n:,}"
    complete = sdk.codes == sdk.n and (asc is None or asc.codes == asc.n)
    return Target(
        what,
        f"≤ {goal}",
        measured,
        base,
        worst <= goal and complete,
        f"by {worst / goal - 1:.1%}" if worst > goal else "(codes missing)",
    )


def _scale_rows(res: Results, small: int, big: int | None) -> list[Target]:
    floor_note = "1 purchase + 1 list page per 100 codes"
    rows = [_per_code_row(res, small, MAX_REQUESTS_PER_CODE, floor_note)]
    what = "requests per delivered code (purchase included), 10,000 waiting"
    if big is None:
        rows.append(Target(what, f"≤ {MAX_REQUESTS_PER_CODE_BIG}", "-", "-", None))
        rows.append(
            Target("client CPU per delivered code, 10,000 waiting", "report", "-", "-", None)
        )
        return rows
    rows.append(_per_code_row(res, big, MAX_REQUESTS_PER_CODE_BIG, floor_note))
    sdk = _find(res.scale, "sdk_wait", big)
    what = f"client CPU per delivered code, {big:,} waiting (purchase included)"
    if sdk is None or not sdk.codes:
        rows.append(Target(what, "report (no target)", "-", "-", None))
        return rows
    asc = _find(res.scale, "sdk_as_completed", big)
    measured = f"{sdk.cpu_s / sdk.codes * 1e6:,.0f} µs (`wait_for_code`)"
    if asc is not None and asc.codes:
        measured += f", {asc.cpu_s / asc.codes * 1e6:,.0f} µs (`as_completed`)"
    base_parts = []
    small_sdk = _find(res.scale, "sdk_wait", small)
    if small_sdk is not None and small_sdk.codes:
        base_parts.append(f"SDK at {small:,}: {small_sdk.cpu_s / small_sdk.codes * 1e6:,.0f} µs")
    naive = _find(res.scale, "naive", big) or _find(res.scale, "naive", small)
    if naive is not None and naive.codes:
        base_parts.append(f"naive loop at {naive.n:,}: {naive.cpu_s / naive.codes * 1e6:,.0f} µs")
    rows.append(Target(what, "report (no target)", measured, "; ".join(base_parts) or "-",
                       True, reported=True))  # fmt: skip
    return rows


def _p99_rows(res: Results, small: int, big: int | None) -> list[Target]:
    t = res.timing
    limit = t.interval + P99_SLACK_S
    goal = f"≤ interval + {P99_SLACK_S:g} s = {limit:.2f} s (interval {t.interval:g} s)"
    rows = []
    for n in (small, big):
        if n is None:
            continue
        sdk = _find(res.scale, "sdk_wait", n)
        asc = _find(res.scale, "sdk_as_completed", n)
        naive = _find(res.scale, "naive", n)
        what = f"code available → returned to caller, p99 ({n:,} waiting)"
        if sdk is None or sdk.p99_s is None:
            rows.append(Target(what, goal, "-", "-", None))
            continue
        worst_p99 = max(sdk.p99_s, asc.p99_s or 0) if asc else sdk.p99_s
        measured = f"{sdk.p99_s:.3f} s (`wait_for_code`)"
        if asc is not None:
            measured += f", {fmt(asc.p99_s, 3)} s (`as_completed`)"
        if naive is not None:
            base = f"naive loop {fmt(naive.p99_s, 3)} s"
        else:
            at_small = _find(res.scale, "sdk_wait", small)
            base = f"SDK at {small:,}: {fmt(at_small.p99_s if at_small else None, 3)} s"
        rows.append(
            Target(what, goal, measured, base, worst_p99 <= limit, f"by {worst_p99 - limit:.3f} s")
        )
    cases = {c.case: c for c in res.slow_get}
    for case, label in (
        ("few", "few waiting: per-order GETs"),
        ("many", "many waiting: list pages"),
    ):
        c = cases.get(case)
        if c is None:
            rows.append(Target(f"the same while one order's GET takes 10 s, {label}", goal,
                               "-", "-", None))  # fmt: skip
            continue
        slow, without = c.slow, c.baseline
        what = (
            f"the same while one order's GET takes 10 s ({slow.slow_get_s:g} s scaled), "
            f"{label} ({slow.waiting:,} per client)"
        )
        p99 = slow.p99_s
        rows.append(
            Target(
                what,
                f"≤ {slow.limit_s:.2f} s for the other orders",
                f"p99 {fmt(p99, 3)} s over {len(slow.delays):,} codes"
                + (f" ({slow.errors} failed)" if slow.errors else ""),
                f"no slow order: p99 {fmt(without.p99_s, 3)} s over {len(without.delays):,} codes",
                c.met,
                f"by {p99 - slow.limit_s:.3f} s" if p99 is not None else "",
            )
        )
    return rows


def _activation_rows(res: Results) -> list[Target]:
    lt = res.limit_timing
    by_variant = {r.variant: r for r in res.activations}
    rows = []
    for variant, what in (
        ("unknown", "activations started together under an unknown limit"),
        ("told", "the same, limit told (`max_requests_per_second`)"),
        ("headers-x", "the same, limit advertised: `X-RateLimit-*`"),
        ("headers-ietf", "the same, limit advertised: IETF `RateLimit-Policy`"),
    ):
        r = by_variant.get(variant)
        if variant == "unknown":
            goal = (
                f"≤ {limits.MAX_PAUSES_UNKNOWN} pause, ≤ {limits.MAX_429_SHARE_UNKNOWN:.0%} 429s, "
                f"last code ≤ {limits.UNKNOWN_SLACK:g} x (floor + Retry-After)"
            )
        else:
            goal = f"0 x 429, last code ≤ {limits.KNOWN_SLACK:g} x floor"
        if r is None or lt is None:
            rows.append(Target(f"1,000 {what}", goal, "-", "-", None))
            continue
        what = f"{r.n:,} {what}; {r.rate:g} req/s, Retry-After {r.retry_after} s" + (
            "" if r.scale == 1 else f" (time-scaled 1/{r.scale:g})"
        )
        measured = (
            f"{len(r.pauses)} pause(s), {r.status_429:,} x 429 "
            f"({fmt(None if r.share_429 is None else r.share_429 * 100, 2)} % of "
            f"{r.requests:,}), last code {fmt(r.last_code_s, 1)} s, "
            f"codes {r.codes:,}/{r.n:,}"
        )
        base = (
            f"floor {fmt(r.floor_s, 1)} s = ({r.n:,} - {r.burst:g})/{r.rate:g} + "
            f"{fmt(r.longest_delay_s, 1)} s; goal {fmt(r.limit_s, 1)} s"
        )
        missed = [name for name, ok in r.checks() if not ok]
        miss = ""
        if missed:
            miss = "on " + ", ".join(missed)
            if "time" in missed and r.last_code_s is not None and r.limit_s:
                miss += f" (time {r.last_code_s / r.limit_s - 1:+.0%})"
        rows.append(Target(what, goal, measured, base, r.met, miss))
    return rows


def _steady_rows(res: Results) -> list[Target]:
    rows = []
    goal = (
        f"≥ {limits.MIN_LIMIT_USED:.0%} of the limit used, ≤ {limits.MAX_429_SHARE_STEADY:.0%} 429s"
    )
    names = {run.name: run for run in res.steady}
    for name, what in (
        ("retry-after-60", "steady demand under the limit, after the first minute"),
        ("retry-after-1", "the same with a 1-second Retry-After"),
    ):
        run = names.get(name)
        this_goal = goal
        if name == "retry-after-1":
            this_goal += f", settled ≤ {limits.MAX_SETTLE_S:g} s after the first 429"
        if run is None:
            rows.append(Target(what, this_goal, "-", "-", None))
            continue
        sdk, naive = run.sdk, run.naive
        lt = run.timing
        what += (
            f"; {lt.rate:g} req/s, Retry-After {lt.retry_after} s, {sdk.workers} `orders.get` loops"
            + (" (real time)" if lt.scale == 1 else f" (time-scaled 1/{lt.scale:g})")
        )
        window = sdk.window
        measured = (
            f"{fmt(None if sdk.used is None else sdk.used * 100, 1)} % used, "
            f"{fmt(None if sdk.share_429 is None else sdk.share_429 * 100, 2)} % 429s"
        )
        if window is not None:
            measured += f" over {window[0]:.1f}-{window[1]:.1f} s"
        if name == "retry-after-1":
            measured += f"; settled {fmt(sdk.settled_after_s, 2)} s after the first 429"
        base = f"limit {lt.rate:g} req/s = 100 %"
        if naive is not None:
            base += (
                f"; plain loops without pacing: "
                f"{fmt(None if naive.used is None else naive.used * 100, 0)} % used, "
                f"{fmt(None if naive.share_429 is None else naive.share_429 * 100, 1)} % 429s"
            )
        missed = [n for n, ok in run.checks() if not ok]
        met = None if sdk.used is None else run.met
        rows.append(Target(what, this_goal, measured, base, met, "on " + ", ".join(missed)))
    return rows


def targets(res: Results, small: int, big: int | None) -> list[Target]:
    """The design.md targets, in its order, with what this run measured."""
    rows = _scale_rows(res, small, big)
    rows += _p99_rows(res, small, big)

    what = "client memory per waiting order"
    mem = res.memory
    if mem is not None and mem.per_wait is not None:
        kib = mem.per_wait / 1024
        rows.append(
            Target(
                f"{what} ({mem.n:,} waiting)",
                f"≤ {MAX_KIB_PER_WAIT:g} KiB",
                f"{kib:.2f} KiB RSS ({mem.traced_per_wait / 1024:.2f} KiB Python heap)",
                f"RSS before the waits {fmt((mem.baseline_rss or 0) / 2**20, 1)} MiB; "
                f"bare asyncio task {mem.bare_task_per_wait / 1024:.2f} KiB",
                kib <= MAX_KIB_PER_WAIT,
                f"by {kib / MAX_KIB_PER_WAIT - 1:.0%}",
            )
        )
    else:
        rows.append(Target(what, f"≤ {MAX_KIB_PER_WAIT:g} KiB", "-", "-", None))

    what = "client CPU per `GET /orders/{id}` vs raw aiohttp + `json.loads`"
    goal = f"≤ {MAX_CPU_RATIO}x (median of paired repeats)"
    ov = res.overhead
    if ov is not None and ov.paired_ratio is not None:
        rows.append(
            Target(
                what,
                goal,
                f"{ov.paired_ratio:.2f}x paired median ({fmt(ov.median_cpu('sdk'), 0)} µs/request; "
                f"ratio of medians {fmt(ov.ratio, 2)}x)",
                f"raw aiohttp {fmt(ov.median_cpu('raw'), 0)} µs/request",
                ov.paired_ratio <= MAX_CPU_RATIO,
                f"by {ov.paired_ratio / MAX_CPU_RATIO - 1:.0%}",
            )
        )
    else:
        rows.append(Target(what, goal, "-", "-", None))

    rows += _activation_rows(res)
    rows += _steady_rows(res)

    sdk_rl = next((r for r in res.rate_limit if r.contender == "sdk_wait"), None)
    naive_rl = next((r for r in res.rate_limit if r.contender == "naive"), None)
    n_rl = sdk_rl.n if sdk_rl else small
    t = res.timing
    what = (
        f"429s while {n_rl:,} orders wait under a 20 req/s limit set after the purchases "
        f"(scaled: {t.rate_limit:g})"
    )
    if sdk_rl is not None and sdk_rl.share_429 is not None:
        base = "-"
        if naive_rl is not None and naive_rl.share_429 is not None:
            base = f"naive loop {naive_rl.share_429:.1%} ({naive_rl.status_429:,} 429s)"
        rows.append(
            Target(
                what,
                f"≤ {MAX_429_SHARE:.0%} of requests",
                f"{sdk_rl.share_429:.2%} ({sdk_rl.status_429:,} of {sdk_rl.phase_requests:,})",
                base,
                sdk_rl.share_429 <= MAX_429_SHARE and sdk_rl.codes == sdk_rl.n,
                f"by {sdk_rl.share_429 - MAX_429_SHARE:.2%} points",
            )
        )
    else:
        rows.append(Target(what, f"≤ {MAX_429_SHARE:.0%} of requests", "-", "-", None))

    what = "chaos run: activations with drops, 503s, 502s, 429s, latency"
    ch = res.chaos
    zero = "0 double charges, 0 lost codes, 0 left PENDING"
    if ch is not None:
        rows.append(
            Target(
                f"chaos run: {ch.n:,} activations with drops, 503s, 502s, 429s, latency",
                zero,
                f"{ch.double_charges} double charges, {ch.lost_codes} lost codes, "
                f"{ch.left_pending} left PENDING, {ch.unrefunded} unrefunded"
                + (" — **run hung**" if ch.hung else ""),
                f"{sum(ch.faults_seen.values()):,} faults injected in {ch.requests:,} requests",
                ch.clean,
            )
        )
    else:
        rows.append(Target(what, zero, "-", "-", None))

    rows.append(_journal_row(res))
    rows += _sync_rows(res)
    rows.append(_telemetry_row(res))

    overall = next((r for r in res.throughput if r.scenario == "**all**"), None)
    what = "sandbox throughput (issue 2; not a design.md row)"
    if overall is not None:
        rows.append(
            Target(
                what,
                f"≥ {MIN_SANDBOX_RPS:,.0f} req/s",
                f"{overall.requests_per_s:,.0f} req/s",
                f"server-bound {fmt(overall.server_bound_requests_per_s, 0)} req/s",
                overall.requests_per_s >= MIN_SANDBOX_RPS,
            )
        )
    return rows


def _journal_row(res: Results) -> Target:
    what = "the journal's cost: the same waits with and without `Client(journal=...)`"
    goal = (
        f"CPU per code ≤ {journal.MAX_CPU_RATIO:g}x no journal; requests per code "
        f"(≤ {journal.MAX_REQUESTS_RATIO:g}x) and purchases per second "
        f"(≥ {journal.MIN_RATE_RATIO:g}x) unchanged"
    )
    j = res.journal
    if j is None or j.cpu_ratio("activations") is None:
        return Target(what, goal, "-", "-", None)
    what += f", {j.n:,} codes per run, {j.repeats} repeats interleaved"
    cpu = {w: j.cpu_ratio(w) for w in journal.WORKLOADS}
    req = {w: j.requests_ratio(w) for w in journal.WORKLOADS}
    measured = (
        "CPU per code "
        + ", ".join(f"{fmt(r, 3)}x ({w})" for w, r in cpu.items())
        + "; requests per code "
        + ", ".join(f"{fmt(r, 3)}x" for r in req.values())
        + f"; purchases/s {fmt(j.rate_ratio, 3)}x ({j.burst_n:,} at once)"
    )
    baseline = (
        "no journal: "
        + ", ".join(
            f"{fmt(j.median_of(w, 'none', 'cpu_per_code_us'), 0)} µs/code ({w})"
            for w in journal.WORKLOADS
        )
        + f", {fmt(j.median_rate('none'), 0)} purchases/s (medians)"
    )
    missed = [name for name, ok in j.checks() if not ok]
    return Target(what, goal, measured, baseline, j.met, "on " + ", ".join(missed))


def _telemetry_row(res: Results) -> Target:
    what = "tracing and metrics (`gsim-async[otel]`): client CPU with them off, and on"
    goal = (
        f"off: no measurable cost (its hooks ≤ {telemetry.MAX_OFF_SHARE:.0%} of a request); "
        "on: reported beside off"
    )
    t = res.telemetry
    if t is None or t.off_share is None:
        return Target(what, goal, "-", "-", None)
    what += f", {t.repeats} repeats"
    measured = (
        f"off: {fmt(t.hooks_us('off'), 2)} µs/request in the hooks ({t.off_share:.2%}), "
        f"end to end {fmt(t.request_ratio('off'), 3)}x the floor; on: "
        f"{fmt(t.request_ratio('noop'), 3)}x with no provider, "
        f"{fmt(t.request_ratio('sdk'), 3)}x with the SDK per request"
    )
    if t.code_runs:
        measured += (
            f", {fmt(t.code_ratio('noop'), 3)}x / {fmt(t.code_ratio('sdk'), 3)}x per code "
            f"({t.n:,} codes)"
        )
    baseline = f"floor {fmt(t.cpu_per_request('bare'), 0)} µs/request (no hook)"
    if t.code_runs:
        baseline += (
            f"; not installed {fmt(t.median_of('absent', 'cpu_per_code_us'), 0)} µs/code, "
            f"off {fmt(t.code_ratio('off'), 3)}x that"
        )
    missed = [name for name, ok in t.checks() if not ok]
    return Target(what, goal, measured, baseline, t.met, "on " + ", ".join(missed))


def _sync_rows(res: Results) -> list[Target]:
    what = "`SyncClient` from 8 threads: requests per code vs `Client` from 8 tasks"
    goal = f"within {MAX_REQUESTS_RATIO - 1:.0%} (≤ {MAX_REQUESTS_RATIO:.2f}x)"
    cpu_what = "client CPU per call, `SyncClient` vs `Client` (`balance()`)"
    sync = res.sync
    if sync is None or sync.requests_ratio is None:
        return [Target(what, goal, "-", "-", None), Target(cpu_what, "report", "-", "-", None)]
    ours, base = sync.run("sync"), sync.run("async")
    assert ours is not None
    assert base is not None
    what += f", {sync.m} codes each"
    per_thread = sync.run("sync_per_thread")
    baseline = f"`Client`: {fmt(base.requests_per_code, 3)} requests/code"
    if per_thread is not None:
        baseline += f"; a `SyncClient` per thread: {fmt(per_thread.requests_per_code, 3)}"
    rows = [
        Target(
            what,
            goal,
            f"{fmt(ours.requests_per_code, 3)} requests/code = {sync.requests_ratio:.3f}x",
            baseline,
            sync.met,
            f"by {sync.requests_ratio / MAX_REQUESTS_RATIO - 1:.0%}"
            if sync.requests_ratio > MAX_REQUESTS_RATIO
            else "(codes missing or wrong)",
        )
    ]
    cpu = sync.cpu
    if cpu is None or cpu.paired_ratio is None:
        rows.append(Target(cpu_what, "report (no target)", "-", "-", None))
    else:
        rows.append(
            Target(
                cpu_what,
                "report (no target)",
                f"{fmt(cpu.median_cpu('sync'), 0)} µs/call ({cpu.paired_ratio:.2f}x paired median)",
                f"`Client`: {fmt(cpu.median_cpu('async'), 0)} µs/call",
                True,
                reported=True,
            )
        )
    return rows


def targets_table(rows: Sequence[Target]) -> str:
    return markdown_table(
        ["target (design.md)", "goal", "measured", "baseline, same run", "verdict"],
        [[r.what, r.target, r.measured, r.baseline, r.verdict] for r in rows],
        "lllll",
    )


def environment() -> Json:
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def report(res: Results, args: argparse.Namespace, rows: Sequence[Target]) -> str:
    """The whole markdown report."""
    env = environment()
    out = [
        f"gsim-async benchmarks: {env['python']}, aiohttp {env['aiohttp']}, "
        f"{env['cpus']} CPUs, loopback, sandbox and each contender in its own process; "
        f"{res.timing.describe()}; seed {args.seed}; {res.seconds:.0f} s.",
    ]
    if res.limit_timing is not None and (res.activations or res.steady):
        out.append(f"Under a limit: {res.limit_timing.describe()}.")
    out += ["", targets_table(rows)]
    if res.scale:
        out += ["", "### Verification at scale", "", scale_table(res.scale)]
        big = [n for n in args.sizes if n >= args.sdk_only_from]
        if big and not args.big:
            out += [
                "",
                f"At {', '.join(f'{n:,}' for n in big)} waiting only the SDK's default ways "
                "of waiting run (`--big`: every contender).",
            ]
    if res.slow_get:
        out += [
            "",
            "### One order's GET slow (`set_order_latency`)",
            "",
            slow_get_table(res.slow_get),
        ]
    if res.activations:
        lt = res.limit_timing
        n = res.activations[0].n
        out += [
            "",
            f"### {n:,} activations started together under a limit"
            + (f" ({lt.describe()})" if lt else ""),
            "",
            "Floor = (N - burst)/rate + the longest code delay drawn; goal = 1.1 x (floor + "
            "Retry-After) when the limit is unknown, 1.15 x floor when told or advertised. "
            "Pauses: the client's `on_retry` events for 429s, overlapping ones grouped. "
            "Limit used while buying: accepted req/s from the end of the last pause to the "
            "last purchase, over the limit."
            + (
                ""
                if lt is None or lt.scale == 1
                else " Time-scaled, the client's slow start is not (its initial rate and "
                "steps are absolute): it takes ~10x longer in real-time equivalents, so the "
                "unknown-limit time is pessimistic; `--time-scale 1 --only activations` "
                "runs the real thing."
            ),
            "",
            activations_table(res.activations),
        ]
    if res.steady:
        out += [
            "",
            "### Steady demand under a limit",
            "",
            "The window opens when the first pause is over plus the settling time (real: "
            f"{limits.REAL_SETTLE:g} s); the baseline's after the settling time. Limit used: "
            "accepted requests in the window over rate x window. Settled: from the first "
            "429 until, after the last 429, the trailing 2-s (real-time equivalent) "
            "accepted rate first reached 85 % of the limit.",
            "",
            steady_table(res.steady),
        ]
    if res.rate_limit:
        out += [
            "",
            f"### Under a rate limit ({res.timing.rate_limit:g} req/s, set after the purchases)",
            "",
            rate_limit_table(res.rate_limit),
        ]
    if res.overhead is not None:
        ov = res.overhead
        out += [
            "",
            f"### Per-request overhead ({ov.repeats} repeats x {ov.requests_per_batch:,} GETs, "
            f"concurrency {ov.concurrency})",
            "",
            overhead_table(ov),
        ]
    if res.memory is not None:
        out += ["", "### Memory", "", memory_table(res.memory)]
    if res.throughput:
        out += ["", "### Sandbox throughput", "", sandbox_throughput.markdown(res.throughput)]
    if res.chaos is not None:
        out += ["", "### Chaos", "", chaos_line(res.chaos)]
    if res.journal is not None:
        out += [
            "",
            "### The journal's cost",
            "",
            "Each variant in its own process against its own sandbox, alternating; CPU is the "
            "process's (the journal's writer thread included) from the workload's start to the "
            "client's close; paired: the median of each repeat's journal/none ratio.",
            "",
            waits_table(res.journal),
            "",
            burst_table(res.journal),
        ]
    if res.telemetry is not None:
        out += [
            "",
            "### Tracing and metrics' cost",
            "",
            "CPU per request: the variants take turns in one process (OpenTelemetry blocked "
            "in a second one); paired: the median of each round's variant/floor ratio. CPU "
            "per code: each variant in its own process against its own sandbox.",
            "",
            requests_table(res.telemetry),
        ]
        if res.telemetry.code_runs:
            out += ["", codes_table(res.telemetry)]
    if res.sync is not None:
        out += ["", "### SyncClient from 8 threads", "", sync_waits_table(res.sync)]
        if res.sync.cpu is not None:
            out += ["", cpu_table(res.sync.cpu)]
    failures = [
        f"{r.label} N={r.n}: {r.errors} failed, e.g. {r.error_samples[:1]}"
        for r in res.scale + res.rate_limit
        if r.errors or r.wrong_codes or r.timed_out
    ]
    failures += [
        f"activations, {a.label}: {a.errors} failed, e.g. {a.error_samples[:1]}"
        + (" (timed out)" if a.timed_out else "")
        for a in res.activations
        if a.errors or a.wrong_codes or a.timed_out
    ]
    failures += [
        f"steady {run.name}: {run.sdk.errors} failed calls, e.g. {run.sdk.error_samples[:1]}"
        for run in res.steady
        if run.sdk.errors
    ]
    failures += [
        f"slow GET, {c.case}: {c.slow.errors} failed, e.g. {c.slow.error_samples[:1]}"
        for c in res.slow_get
        if c.slow.errors
    ]
    failures += [f"scenario {name} did not finish: {error}" for name, error in res.failed.items()]
    if failures:
        out += ["", "Failures:", *(f"- {line}" for line in failures)]
    return "\n".join(out)


def to_json(res: Results, args: argparse.Namespace, rows: Sequence[Target]) -> Json:
    lt = res.limit_timing
    return {
        "environment": environment(),
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "timing": {
            "scale": res.timing.scale,
            "interval": res.timing.interval,
            "delays": res.timing.delays,
            "rate_limit": res.timing.rate_limit,
        },
        "limit_timing": None
        if lt is None
        else {
            "scale": lt.scale,
            "rate": lt.rate,
            "burst": lt.burst,
            "retry_after": lt.retry_after,
            "delays": lt.delays,
            "interval": lt.interval,
        },
        "seconds": res.seconds,
        "targets": [dataclasses.asdict(r) | {"verdict": r.verdict} for r in rows],
        "scale": [r.to_dict() for r in res.scale],
        "slow_get": [c.to_dict() for c in res.slow_get],
        "activations": [r.to_dict() for r in res.activations],
        "steady": [r.to_dict() for r in res.steady],
        "rate_limit": [r.to_dict() for r in res.rate_limit],
        "overhead": res.overhead.to_dict() if res.overhead else None,
        "memory": res.memory.to_dict() if res.memory else None,
        "throughput": [r.to_dict() for r in res.throughput],
        "chaos": res.chaos.to_dict() if res.chaos else None,
        "journal": res.journal.to_dict() if res.journal else None,
        "sync": res.sync.to_dict() if res.sync else None,
        "telemetry": res.telemetry.to_dict() if res.telemetry else None,
        "failed": res.failed,
    }


async def run(args: argparse.Namespace) -> Results:
    """Run the selected scenarios, in order; one that fails does not stop the others."""
    started = time.perf_counter()
    res = Results(timing=Timing(args.time_scale), limit_timing=LimitTiming(args.time_scale))

    async def scale() -> None:
        res.scale = await run_scale(
            args.sizes,
            res.timing,
            args.seed,
            sdk_only_from=None if args.big else args.sdk_only_from,
        )

    async def slow_get() -> None:
        t = res.timing
        res.slow_get = await run_slow_get(
            scale=t.scale,
            interval=t.interval,
            delays=t.delays,
            seed=args.seed,
            groups=args.slow_get_clients,
            repeats=args.slow_get_repeats,
            many=args.slow_get_many,
        )

    async def rate_limit() -> None:
        res.rate_limit = await run_rate_limited(args.rate_limit_n, res.timing, args.seed)

    async def activations() -> None:
        assert res.limit_timing is not None
        res.activations = await run_activations(args.activations_n, res.limit_timing, args.seed)

    async def steady() -> None:
        # A 60 s Retry-After scaled like everything else; a 1 s one cannot be (the
        # sandbox sends whole seconds), so that variant runs in real time.
        # The smoke run: short runs, no baseline (the limit itself is the reference).
        cap = 1.5 if args.smoke else None
        for name, timing, real_window in (
            ("retry-after-60", LimitTiming(args.time_scale), limits.REAL_WINDOW),
            ("retry-after-1", LimitTiming(1.0, real_retry_after=1), 30.0),
        ):
            res.steady.append(
                await run_steady(
                    timing,
                    args.seed,
                    name=name,
                    window=real_window / timing.scale,
                    settle=limits.REAL_SETTLE / timing.scale,
                    workers=args.steady_loops,
                    max_duration=cap,
                    baseline=not args.smoke,
                )
            )

    async def overhead() -> None:
        res.overhead = await run_overhead(
            args.seed, requests=args.overhead_requests, repeats=args.repeats, ramp=not args.smoke
        )

    async def memory() -> None:
        interval = 0.1 if args.smoke else 2.0
        res.memory = await run_memory(args.seed, args.memory_n, interval=interval)

    async def throughput() -> None:
        progress(f"sandbox throughput: {args.throughput_requests:,} GETs")
        options = argparse.Namespace(
            requests=args.throughput_requests, concurrency=64, orders=300, seed=args.seed
        )
        res.throughput, _ = await sandbox_throughput.run(options)

    async def chaos() -> None:
        res.chaos = await run_chaos(2024, args.chaos_n, speed=4.0 if args.smoke else 1.0)

    async def journal_cost() -> None:
        res.journal = await run_journal(
            n=args.journal_n,
            burst=args.journal_burst,
            repeats=args.journal_repeats,
            scale=args.time_scale,
            seed=args.seed,
        )

    async def sync() -> None:
        res.sync = await run_sync_threads(
            m=args.sync_m,
            scale=args.time_scale,
            seed=args.seed,
            calls=args.sync_calls,
            repeats=args.repeats,
        )

    async def telemetry_cost() -> None:
        res.telemetry = await run_telemetry(
            requests=args.telemetry_requests,
            rounds=args.telemetry_rounds,
            repeats=args.telemetry_repeats,
            n=args.telemetry_n,
            scale=args.time_scale,
            seed=args.seed,
        )

    steps = {
        "scale": scale,
        "slow-get": slow_get,
        "rate-limit": rate_limit,
        "activations": activations,
        "steady": steady,
        "overhead": overhead,
        "memory": memory,
        "throughput": throughput,
        "chaos": chaos,
        "journal": journal_cost,
        "sync": sync,
        "telemetry": telemetry_cost,
    }
    for name, step in steps.items():
        if name not in args.only:
            continue
        try:
            await step()
        except Exception as exc:  # report it with the rest, then exit 1
            progress(f"{name} failed: {exc!r}")
            res.failed[name] = repr(exc)
    res.seconds = time.perf_counter() - started
    return res


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(not 1 <= n <= 100_000 for n in sizes):
        raise argparse.ArgumentTypeError("sizes are 1..100,000, comma-separated")
    return sizes


def _scenarios(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; known: {SCENARIOS}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[100, 1000, 10_000],
        help="N of the scale run, comma-separated (default 100,1000,10000)",
    )
    parser.add_argument(
        "--big",
        action="store_true",
        help="every contender at every size (by default the naive loop and forced "
        "per-order polling stop below 10,000)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=10.0,
        help="divide delays, interval and Retry-After by this and multiply the rate "
        "limit by it (1: real time: 5-60 s at 2 s, 20 req/s, Retry-After 60 s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sandbox seed (same delays for all)")
    parser.add_argument("--rate-limit-n", type=int, default=1000, help="orders under the limit")
    parser.add_argument(
        "--activations-n", type=int, default=1000, help="activations started together"
    )
    parser.add_argument(
        "--steady-loops", type=int, default=32, help="concurrent orders.get loops (steady)"
    )
    parser.add_argument(
        "--slow-get-clients", type=int, default=10, help="clients with few waiters (slow GET)"
    )
    parser.add_argument(
        "--slow-get-repeats", type=int, default=10, help="codes per client with few waiters"
    )
    parser.add_argument(
        "--slow-get-many", type=int, default=1000, help="orders waiting at once (slow GET)"
    )
    parser.add_argument("--repeats", type=int, default=15, help="overhead repeats")
    parser.add_argument("--overhead-requests", type=int, default=2000, help="GETs per batch")
    parser.add_argument("--memory-n", type=int, default=10_000, help="orders waiting at once")
    parser.add_argument("--chaos-n", type=int, default=1000, help="activations in the chaos run")
    parser.add_argument("--throughput-requests", type=int, default=10_000)
    parser.add_argument("--journal-n", type=int, default=1000, help="codes per journal run")
    parser.add_argument(
        "--journal-burst", type=int, default=1000, help="purchases at once (journal)"
    )
    parser.add_argument("--journal-repeats", type=int, default=5, help="journal repeats")
    parser.add_argument("--sync-m", type=int, default=10, help="codes per thread (sync)")
    parser.add_argument("--sync-calls", type=int, default=2000, help="calls per batch (sync)")
    parser.add_argument(
        "--telemetry-requests", type=int, default=2000, help="GETs per variant per round"
    )
    parser.add_argument("--telemetry-rounds", type=int, default=5, help="rounds per repeat")
    parser.add_argument("--telemetry-n", type=int, default=1000, help="codes per telemetry run")
    parser.add_argument("--telemetry-repeats", type=int, default=3, help="telemetry repeats")
    parser.add_argument(
        "--only", type=_scenarios, default=list(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the tiniest configuration (for the test suite)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    args.sdk_only_from = SDK_ONLY_FROM
    if args.smoke:
        # Two sizes: the first stands for 1,000 waiting, the second for 10,000.
        args.sizes, args.time_scale, args.rate_limit_n = [10, 20], 100.0, 20
        args.sdk_only_from = 20
        args.repeats, args.overhead_requests = 2, 100
        args.memory_n, args.chaos_n, args.throughput_requests = 100, 20, 1000
        args.activations_n, args.steady_loops = 10, 8
        args.slow_get_clients, args.slow_get_repeats, args.slow_get_many = 2, 2, 10
        args.sync_m, args.sync_calls = 2, 100
        args.journal_n, args.journal_burst, args.journal_repeats = 20, 30, 1
        args.telemetry_requests, args.telemetry_rounds = 250, 1
        args.telemetry_n, args.telemetry_repeats = 20, 1
    if args.time_scale <= 0 or args.repeats < 1 or args.overhead_requests < 1:
        parser.error("--time-scale must be > 0; --repeats and --overhead-requests >= 1")
    for name in (
        "rate_limit_n",
        "memory_n",
        "chaos_n",
        "throughput_requests",
        "activations_n",
        "steady_loops",
        "slow_get_clients",
        "slow_get_repeats",
        "slow_get_many",
        "sync_m",
        "sync_calls",
        "journal_n",
        "journal_burst",
        "journal_repeats",
        "telemetry_requests",
        "telemetry_rounds",
        "telemetry_n",
        "telemetry_repeats",
    ):
        if not 1 <= getattr(args, name) <= 1_000_000:
            parser.error(f"--{name.replace('_', '-')} must be 1..1,000,000")
    return args


def target_sizes(sizes: Sequence[int]) -> tuple[int, int | None]:
    """The sizes standing for design.md's 1,000 and 10,000 waiting (smaller when absent)."""
    ordered = sorted(set(sizes))
    small = 1000 if 1000 in ordered else ordered[0]
    big = 10_000 if 10_000 in ordered else ordered[-1] if ordered[-1] > small else None
    return small, big


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    res = await run(args)
    small, big = target_sizes(args.sizes)
    rows = targets(res, small, big)
    print(report(res, args, rows))
    if args.json:
        text = json.dumps(to_json(res, args, rows), indent=2, default=str) + "\n"
        await asyncio.to_thread(_write, Path(args.json), text)
    if res.failed or (args.check and any(r.met is False for r in rows)):
        return 1
    return 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cli() -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 130


if __name__ == "__main__":
    sys.exit(cli())
