"""The benchmark suite: every target of design.md measured against a same-run baseline.

    python -m benchmarks [--big] [--time-scale 10] [--json results.json] [--only scale,memory]

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

from . import sandbox_throughput
from ._common import Json, fmt, markdown_table, progress
from .chaos import ChaosResult, chaos_line, run_chaos
from .memory import MemoryResult, memory_table, run_memory
from .overhead import OverheadResult, overhead_table, run_overhead
from .verification import (
    ContenderResult,
    Timing,
    rate_limit_table,
    run_rate_limited,
    run_scale,
    scale_table,
)

SCENARIOS = ("scale", "rate-limit", "overhead", "memory", "throughput", "chaos")

#: design.md's targets.
MAX_REQUESTS_PER_CODE = 1.5
P99_SLACK_S = 0.5
MAX_KIB_PER_WAIT = 10.0
MAX_CPU_RATIO = 1.3
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

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else f"**missed** {self.miss}".rstrip()


def _find(results: list[ContenderResult], contender: str, n: int) -> ContenderResult | None:
    return next((r for r in results if r.contender == contender and r.n == n), None)


def targets(res: Results, n_target: int) -> list[Target]:
    """The design.md targets, in its order, with what this run measured."""
    rows: list[Target] = []
    t = res.timing
    sdk = _find(res.scale, "sdk_wait", n_target)
    asc = _find(res.scale, "sdk_as_completed", n_target)
    naive = _find(res.scale, "naive", n_target)
    what = f"requests per delivered code (purchase included), {n_target:,} orders"
    if sdk is not None and sdk.requests_per_code is not None:
        per_code = sdk.requests_per_code
        worst = max(per_code, asc.requests_per_code or 0) if asc else per_code
        measured = f"{per_code:.2f} (`wait_for_code`)"
        if asc is not None:
            measured += f", {fmt(asc.requests_per_code, 2)} (`as_completed`)"
        base = "-"
        if naive is not None and naive.requests_per_code:
            base = (
                f"naive loop {naive.requests_per_code:.2f} "
                f"({naive.requests_per_code / per_code:.1f}x the SDK)"
            )
        rows.append(
            Target(
                what,
                f"≤ {MAX_REQUESTS_PER_CODE}",
                measured,
                base,
                worst <= MAX_REQUESTS_PER_CODE and sdk.codes == sdk.n,
                f"by {worst / MAX_REQUESTS_PER_CODE - 1:.0%}",
            )
        )
    else:
        rows.append(Target(what, f"≤ {MAX_REQUESTS_PER_CODE}", "-", "-", None))

    what = "code available → returned to caller, p99"
    limit = t.interval + P99_SLACK_S
    if sdk is not None and sdk.p99_s is not None:
        worst_p99 = max(sdk.p99_s, asc.p99_s or 0) if asc else sdk.p99_s
        measured = f"{sdk.p99_s:.3f} s (`wait_for_code`)"
        if asc is not None:
            measured += f", {fmt(asc.p99_s, 3)} s (`as_completed`)"
        base = f"naive loop {fmt(naive.p99_s, 3)} s" if naive is not None else "-"
        rows.append(
            Target(
                what,
                f"≤ interval + {P99_SLACK_S:g} s = {limit:.2f} s (interval {t.interval:g} s)",
                measured,
                base,
                worst_p99 <= limit,
                f"by {worst_p99 - limit:.3f} s",
            )
        )
    else:
        rows.append(Target(what, f"≤ interval + {P99_SLACK_S:g} s", "-", "-", None))

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
    ov = res.overhead
    if ov is not None and ov.ratio is not None:
        rows.append(
            Target(
                what,
                f"≤ {MAX_CPU_RATIO}x",
                f"{ov.ratio:.2f}x ({fmt(ov.median_cpu('sdk'), 0)} µs/request; "
                f"paired median {fmt(ov.paired_ratio, 2)}x)",
                f"raw aiohttp {fmt(ov.median_cpu('raw'), 0)} µs/request",
                ov.ratio <= MAX_CPU_RATIO,
                f"by {ov.ratio / MAX_CPU_RATIO - 1:.0%}",
            )
        )
    else:
        rows.append(Target(what, f"≤ {MAX_CPU_RATIO}x", "-", "-", None))

    sdk_rl = next((r for r in res.rate_limit if r.contender == "sdk_wait"), None)
    naive_rl = next((r for r in res.rate_limit if r.contender == "naive"), None)
    n_rl = sdk_rl.n if sdk_rl else n_target
    what = f"429s while {n_rl:,} orders wait under a 20 req/s limit (scaled: {t.rate_limit:g})"
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
        "",
        targets_table(rows),
    ]
    if res.scale:
        out += ["", "### Verification at scale", "", scale_table(res.scale)]
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
    failures = [
        f"{r.label} N={r.n}: {r.errors} failed, e.g. {r.error_samples[:1]}"
        for r in res.scale + res.rate_limit
        if r.errors or r.wrong_codes or r.timed_out
    ]
    failures += [f"scenario {name} did not finish: {error}" for name, error in res.failed.items()]
    if failures:
        out += ["", "Failures:", *(f"- {line}" for line in failures)]
    return "\n".join(out)


def to_json(res: Results, args: argparse.Namespace, rows: Sequence[Target]) -> Json:
    return {
        "environment": environment(),
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "timing": {
            "scale": res.timing.scale,
            "interval": res.timing.interval,
            "delays": res.timing.delays,
            "rate_limit": res.timing.rate_limit,
        },
        "seconds": res.seconds,
        "targets": [dataclasses.asdict(r) | {"verdict": r.verdict} for r in rows],
        "scale": [r.to_dict() for r in res.scale],
        "rate_limit": [r.to_dict() for r in res.rate_limit],
        "overhead": res.overhead.to_dict() if res.overhead else None,
        "memory": res.memory.to_dict() if res.memory else None,
        "throughput": [r.to_dict() for r in res.throughput],
        "chaos": res.chaos.to_dict() if res.chaos else None,
        "failed": res.failed,
    }


async def run(args: argparse.Namespace) -> Results:
    """Run the selected scenarios, in order; one that fails does not stop the others."""
    started = time.perf_counter()
    res = Results(timing=Timing(args.time_scale))

    async def scale() -> None:
        res.scale = await run_scale(args.sizes, res.timing, args.seed)

    async def rate_limit() -> None:
        res.rate_limit = await run_rate_limited(args.rate_limit_n, res.timing, args.seed)

    async def overhead() -> None:
        res.overhead = await run_overhead(
            args.seed, requests=args.overhead_requests, repeats=args.repeats
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

    steps = {
        "scale": scale,
        "rate-limit": rate_limit,
        "overhead": overhead,
        "memory": memory,
        "throughput": throughput,
        "chaos": chaos,
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
    parser.add_argument("--sizes", type=_sizes, default=[100, 1000], help="N, comma-separated")
    parser.add_argument("--big", action="store_true", help="also N=10,000 in the scale run")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=10.0,
        help="divide delays and interval by this (1: real time, 5-60 s at 2 s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sandbox seed (same delays for all)")
    parser.add_argument("--rate-limit-n", type=int, default=1000, help="orders under the limit")
    parser.add_argument("--repeats", type=int, default=15, help="overhead repeats")
    parser.add_argument("--overhead-requests", type=int, default=2000, help="GETs per batch")
    parser.add_argument("--memory-n", type=int, default=10_000, help="orders waiting at once")
    parser.add_argument("--chaos-n", type=int, default=1000, help="activations in the chaos run")
    parser.add_argument("--throughput-requests", type=int, default=10_000)
    parser.add_argument(
        "--only", type=_scenarios, default=list(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the tiniest configuration (for the test suite)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.time_scale, args.rate_limit_n = [20], 100.0, 20
        args.repeats, args.overhead_requests = 2, 100
        args.memory_n, args.chaos_n, args.throughput_requests = 200, 20, 1000
    if args.big and 10_000 not in args.sizes:
        args.sizes.append(10_000)
    if args.time_scale <= 0 or args.repeats < 1 or args.overhead_requests < 1:
        parser.error("--time-scale must be > 0; --repeats and --overhead-requests >= 1")
    for name in ("rate_limit_n", "memory_n", "chaos_n", "throughput_requests"):
        if not 1 <= getattr(args, name) <= 1_000_000:
            parser.error(f"--{name.replace('_', '-')} must be 1..1,000,000")
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    res = await run(args)
    n_target = 1000 if 1000 in args.sizes else max(args.sizes)
    rows = targets(res, n_target)
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
