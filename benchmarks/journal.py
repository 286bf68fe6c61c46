"""The journal's cost: the same work with and without ``Client(journal=...)``.

design.md: client CPU per delivered code within 5 % of no journal; HTTP requests per
code and purchases per second unchanged. Two variants, each run in a fresh child
process against a fresh sandbox (same seed, so the same code delays):

* ``none``: ``Client(journal=False)`` (the baseline);
* ``journal``: ``Client(journal=<temp dir>/gsim.db)``: an intent committed before each
  purchase leaves, then a row per order owed until its code.

Workloads (``N`` each, all started together, every code delivered after 5-60 s at a
2 s poll interval, time-scaled like the other benchmarks):

* ``activations``: ``async with orders.activation(...) as act: await
  act.wait_for_code(timeout=...)``;
* ``waits``: ``orders.create(...)`` then ``orders.wait_for_code(order, timeout=...)``
  (a wait with a timeout writes one row more: when its refund would fall due);
* ``burst``: ``B`` ``orders.create(...)`` at once, nothing else: purchases per second,
  from the first call to the last answer. ``slow_start=False``, so the client's ramp
  (the same with or without a journal) does not hide what the journal adds.

CPU is the child process's ``time.process_time()`` (every thread: the journal's writer
thread is part of its cost) from just before the workload until the client is closed
(so the journal's last commits are in). Requests are the sandbox's own count. Every
repeat runs each variant once, in alternating order, and the figures are medians
over repeats; "paired" ratios are the median of each repeat's journal/none ratio, so
load drifting on a small machine cancels out.

``python -m benchmarks.journal [--n 1000] [--burst 1000] [--repeats 7] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the package importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    Json,
    fmt,
    markdown_table,
    median,
    progress,
    run_child,
    running_sandbox,
)

REAL_DELAYS = (5.0, 60.0)
REAL_INTERVAL = 2.0
VARIANTS: dict[str, str] = {
    "none": "no journal (baseline)",
    "journal": "`Client(journal=tmp/gsim.db)`",
}
WORKLOADS: dict[str, str] = {
    "activations": "`activation()` + `wait_for_code(timeout)`",
    "waits": "`create()` + `wait_for_code(timeout)`",
}
#: design.md: CPU per code within 5 % of no journal.
MAX_CPU_RATIO = 1.05
#: "Unchanged": the journal sends no request; what differs is when polls land.
MAX_REQUESTS_RATIO = 1.02
#: "Unchanged": purchases per second at least this share of the baseline's.
MIN_RATE_RATIO = 0.95


@dataclasses.dataclass
class Run:
    """One child's waits: the sandbox's counters, the child's CPU and clock."""

    workload: str
    variant: str
    repeat: int
    n: int
    codes: int
    wrong_codes: int
    errors: int
    error_samples: list[str]
    requests: int
    cpu_s: float
    wall_s: float
    #: Journal rows not ``done`` once the client closed (every code came: 0).
    open_rows: int | None
    #: Of ``cpu_s``, the kernel's (file writes, thread wake-ups); and context switches.
    system_s: float = 0.0
    context_switches: int = 0

    @property
    def cpu_per_code_us(self) -> float | None:
        return self.cpu_s / self.codes * 1e6 if self.codes else None

    @property
    def requests_per_code(self) -> float | None:
        return self.requests / self.codes if self.codes else None

    def to_dict(self) -> Json:
        return dataclasses.asdict(self) | {
            "cpu_per_code_us": self.cpu_per_code_us,
            "requests_per_code": self.requests_per_code,
        }


@dataclasses.dataclass
class Burst:
    """One child's burst of purchases."""

    variant: str
    repeat: int
    n: int
    purchases: int
    errors: int
    error_samples: list[str]
    requests: int
    cpu_s: float
    wall_s: float
    system_s: float = 0.0
    context_switches: int = 0

    @property
    def per_second(self) -> float | None:
        return self.purchases / self.wall_s if self.wall_s > 0 else None

    @property
    def cpu_per_purchase_us(self) -> float | None:
        return self.cpu_s / self.purchases * 1e6 if self.purchases else None

    def to_dict(self) -> Json:
        return dataclasses.asdict(self) | {
            "per_second": self.per_second,
            "cpu_per_purchase_us": self.cpu_per_purchase_us,
        }


def _paired(pairs: Sequence[tuple[float | None, float | None]]) -> float | None:
    return median([a / b for a, b in pairs if a is not None and b])


@dataclasses.dataclass
class JournalResult:
    """Every run of ``run_journal``, and the figures design.md's target is about."""

    n: int
    burst_n: int
    repeats: int
    scale: float
    runs: list[Run]
    bursts: list[Burst]

    def _runs(self, workload: str, variant: str) -> list[Run]:
        return [r for r in self.runs if r.workload == workload and r.variant == variant]

    def _pairs(self, workload: str, attr: str) -> list[tuple[float | None, float | None]]:
        base = {r.repeat: r for r in self._runs(workload, "none")}
        return [
            (getattr(r, attr), getattr(base[r.repeat], attr))
            for r in self._runs(workload, "journal")
            if r.repeat in base
        ]

    def median_of(self, workload: str, variant: str, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self._runs(workload, variant)]
        return median([v for v in values if v is not None])

    def cpu_ratio(self, workload: str) -> float | None:
        """Median over repeats of journal/none CPU per code."""
        return _paired(self._pairs(workload, "cpu_per_code_us"))

    def requests_ratio(self, workload: str) -> float | None:
        """Journal over none, medians of requests per code."""
        ours = self.median_of(workload, "journal", "requests_per_code")
        base = self.median_of(workload, "none", "requests_per_code")
        return ours / base if ours is not None and base else None

    def median_rate(self, variant: str) -> float | None:
        rates = [b.per_second for b in self.bursts if b.variant == variant]
        return median([r for r in rates if r is not None])

    @property
    def rate_ratio(self) -> float | None:
        """Median over repeats of journal/none purchases per second."""
        base = {b.repeat: b for b in self.bursts if b.variant == "none"}
        return _paired(
            [
                (b.per_second, base[b.repeat].per_second)
                for b in self.bursts
                if b.variant == "journal" and b.repeat in base
            ]
        )

    @property
    def complete(self) -> bool:
        """Every code came, each right, and every burst bought what it asked for."""
        return all(
            r.codes == r.n and not r.wrong_codes and not r.errors and not r.open_rows
            for r in self.runs
        ) and all(b.purchases == b.n and not b.errors for b in self.bursts)

    def checks(self) -> list[tuple[str, bool]]:
        out = []
        for workload in WORKLOADS:
            cpu, req = self.cpu_ratio(workload), self.requests_ratio(workload)
            out.append((f"{workload} CPU", cpu is not None and cpu <= MAX_CPU_RATIO))
            out.append((f"{workload} requests", req is not None and req <= MAX_REQUESTS_RATIO))
        rate = self.rate_ratio
        out.append(("purchases/s", rate is not None and rate >= MIN_RATE_RATIO))
        out.append(("codes", self.complete))
        return out

    @property
    def met(self) -> bool:
        return all(ok for _, ok in self.checks())

    def to_dict(self) -> Json:
        return {
            "n": self.n,
            "burst_n": self.burst_n,
            "repeats": self.repeats,
            "time_scale": self.scale,
            "runs": [r.to_dict() for r in self.runs],
            "bursts": [b.to_dict() for b in self.bursts],
            "cpu_ratio": {w: self.cpu_ratio(w) for w in WORKLOADS},
            "requests_ratio": {w: self.requests_ratio(w) for w in WORKLOADS},
            "median_cpu_per_code_us": {
                w: {v: self.median_of(w, v, "cpu_per_code_us") for v in VARIANTS} for w in WORKLOADS
            },
            "median_requests_per_code": {
                w: {v: self.median_of(w, v, "requests_per_code") for v in VARIANTS}
                for w in WORKLOADS
            },
            "median_purchases_per_s": {v: self.median_rate(v) for v in VARIANTS},
            "rate_ratio": self.rate_ratio,
            "checks": dict(self.checks()),
            "met": self.met,
        }


async def run_journal(
    *, n: int, burst: int, repeats: int, scale: float, seed: int, workloads: Sequence[str] = ()
) -> JournalResult:
    """Every workload and the burst, each variant once per repeat, alternating."""
    delays = (REAL_DELAYS[0] / scale, REAL_DELAYS[1] / scale)
    runs: list[Run] = []
    bursts: list[Burst] = []
    names = list(VARIANTS)
    for repeat in range(repeats):
        order = names[repeat % 2 :] + names[: repeat % 2]
        for workload in workloads or list(WORKLOADS):
            for variant in order:
                progress(f"journal: repeat {repeat + 1}/{repeats}, {workload}, {variant}")
                runs.append(
                    await _waits(
                        workload, variant, repeat, n=n, delays=delays, scale=scale, seed=seed
                    )
                )
        if burst:
            for variant in order:
                progress(f"journal: repeat {repeat + 1}/{repeats}, burst of {burst:,}, {variant}")
                bursts.append(await _burst(variant, repeat, n=burst, seed=seed))
    return JournalResult(n, burst, repeats, scale, runs, bursts)


async def _waits(
    workload: str,
    variant: str,
    repeat: int,
    *,
    n: int,
    delays: tuple[float, float],
    scale: float,
    seed: int,
) -> Run:
    with tempfile.TemporaryDirectory(prefix="gsim-bench-journal-") as directory:
        path = Path(directory) / "gsim.db"
        async with running_sandbox(seed, code_delay=delays, auto_deliver=True) as sb:
            data = await run_child(
                "journal",
                {
                    "what": workload,
                    "base_url": sb.base_url,
                    "api_key": sb.api_key,
                    "journal": str(path) if variant == "journal" else None,
                    "n": n,
                    "interval": REAL_INTERVAL / scale,
                    # Every code comes; the timeout only makes a wait journal its deadline.
                    "timeout": 3 * REAL_DELAYS[1] / scale,
                },
            )
            stats = await sb.stats()
            records = {o["id"]: o.get("sms_code") for o in await sb.orders()}
        open_rows = await asyncio.to_thread(_open_rows, path) if variant == "journal" else None
    got: dict[str, str] = data["codes"]
    return Run(
        workload=workload,
        variant=variant,
        repeat=repeat,
        n=n,
        codes=len(got),
        wrong_codes=sum(1 for oid, code in got.items() if records.get(oid) != code),
        errors=len(data["errors"]),
        error_samples=data["errors"][:3],
        requests=int(stats["total"]),
        cpu_s=float(data["cpu_s"]),
        wall_s=float(data["wall_s"]),
        open_rows=open_rows,
        system_s=float(data["system_s"]),
        context_switches=int(data["context_switches"]),
    )


def _open_rows(path: Path) -> int:
    """Rows of the journal not ended (its client closed: none should be left)."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM entries WHERE state != 'done'").fetchone()
    finally:
        conn.close()
    return int(count)


async def _burst(variant: str, repeat: int, *, n: int, seed: int) -> Burst:
    with tempfile.TemporaryDirectory(prefix="gsim-bench-journal-") as directory:
        path = Path(directory) / "gsim.db"
        async with running_sandbox(seed) as sb:
            await sb.post("stats/reset")
            data = await run_child(
                "journal",
                {
                    "what": "burst",
                    "base_url": sb.base_url,
                    "api_key": sb.api_key,
                    "journal": str(path) if variant == "journal" else None,
                    "n": n,
                },
            )
            stats = await sb.stats()
            orders = await sb.orders()
    errors: list[str] = data["errors"]
    return Burst(
        variant=variant,
        repeat=repeat,
        n=n,
        purchases=min(len(orders), int(data["purchases"])),
        errors=len(errors),
        error_samples=errors[:3],
        requests=int(stats["total"]),
        cpu_s=float(data["cpu_s"]),
        wall_s=float(data["wall_s"]),
        system_s=float(data["system_s"]),
        context_switches=int(data["context_switches"]),
    )


# -- tables ----------------------------------------------------------------------------


def _spread(values: Sequence[float | None], digits: int = 0) -> str:
    known = [v for v in values if v is not None]
    return f"{min(known):,.{digits}f}-{max(known):,.{digits}f}" if known else "-"


def waits_table(result: JournalResult) -> str:
    rows = []
    for workload, wlabel in WORKLOADS.items():
        for variant, vlabel in VARIANTS.items():
            runs = result._runs(workload, variant)
            if not runs:
                continue
            ratio = result.cpu_ratio(workload) if variant == "journal" else None
            req_ratio = result.requests_ratio(workload) if variant == "journal" else None
            rows.append(
                [
                    wlabel,
                    vlabel,
                    fmt(result.median_of(workload, variant, "cpu_per_code_us"), 0),
                    _spread([r.cpu_per_code_us for r in runs]),
                    "-" if ratio is None else f"{ratio:.3f}x ({(ratio - 1) * 100:+.1f} %)",
                    fmt(median([r.system_s / r.codes * 1e6 for r in runs if r.codes]), 0),
                    fmt(median([r.context_switches / r.codes for r in runs if r.codes]), 1),
                    fmt(result.median_of(workload, variant, "requests_per_code"), 3),
                    "-" if req_ratio is None else f"{req_ratio:.3f}x",
                    f"{sum(r.codes for r in runs):,}/{sum(r.n for r in runs):,}",
                    fmt(median([r.wall_s for r in runs]), 1),
                ]
            )
    return markdown_table(
        [
            "workload",
            "variant",
            "CPU µs/code (median)",
            "range",
            "vs none (paired median)",
            "of which kernel µs",
            "context switches/code",
            "requests/code (median)",
            "vs none",
            "codes",
            "wall s",
        ],
        rows,
        "llrrrrrrrrr",
    )


def burst_table(result: JournalResult) -> str:
    rows = []
    for variant, label in VARIANTS.items():
        runs = [b for b in result.bursts if b.variant == variant]
        if not runs:
            continue
        ratio = result.rate_ratio if variant == "journal" else None
        rows.append(
            [
                label,
                fmt(result.median_rate(variant), 0),
                _spread([b.per_second for b in runs]),
                "-" if ratio is None else f"{ratio:.3f}x ({(ratio - 1) * 100:+.1f} %)",
                fmt(median([b.cpu_per_purchase_us or 0 for b in runs]), 0),
                fmt(median([b.requests / b.purchases for b in runs if b.purchases]), 3),
                f"{sum(b.purchases for b in runs):,}/{sum(b.n for b in runs):,}",
            ]
        )
    return markdown_table(
        [
            f"{result.burst_n:,} `orders.create` at once",
            "purchases/s (median)",
            "range",
            "vs none (paired median)",
            "CPU µs/purchase",
            "requests/purchase",
            "bought",
        ],
        rows,
        "lrrrrrr",
    )


def summary(result: JournalResult) -> str:
    """One line per check, each beside its goal."""
    lines = []
    for workload in WORKLOADS:
        cpu, req = result.cpu_ratio(workload), result.requests_ratio(workload)
        if cpu is None:
            continue
        lines.append(
            f"- {workload}: CPU per code {cpu:.3f}x no journal (goal <= {MAX_CPU_RATIO:g}x); "
            f"requests per code {fmt(req, 3)}x (goal <= {MAX_REQUESTS_RATIO:g}x)"
        )
    if result.rate_ratio is not None:
        lines.append(
            f"- burst: purchases per second {result.rate_ratio:.3f}x no journal "
            f"(goal >= {MIN_RATE_RATIO:g}x)"
        )
    failures = [
        f"{r.workload}/{r.variant} #{r.repeat}: {r.errors} errors, {r.codes}/{r.n} codes, "
        f"{r.wrong_codes} wrong, {r.open_rows} open rows; {r.error_samples[:1]}"
        for r in result.runs
        if r.codes != r.n or r.errors or r.wrong_codes or r.open_rows
    ]
    failures += [
        f"burst/{b.variant} #{b.repeat}: {b.purchases}/{b.n} bought; {b.error_samples[:1]}"
        for b in result.bursts
        if b.purchases != b.n or b.errors
    ]
    lines += [f"- **failed**: {line}" for line in failures]
    verdict = (
        "met"
        if result.met
        else "**missed** on " + ", ".join(name for name, ok in result.checks() if not ok)
    )
    lines.append(f"- verdict: {verdict}")
    return "\n".join(lines)


def report(result: JournalResult) -> str:
    low, high = REAL_DELAYS[0] / result.scale, REAL_DELAYS[1] / result.scale
    return "\n".join(
        [
            f"The journal's cost: {result.n:,} codes per run, delays {low:g}-{high:g} s, poll "
            f"interval {REAL_INTERVAL / result.scale:g} s (time scaled 1/{result.scale:g}); "
            f"{result.repeats} repeats, variants alternating; medians.",
            "",
            waits_table(result),
            "",
            burst_table(result),
            "",
            summary(result),
        ]
    )


# -- the child -------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """One variant's workload; what came back and the CPU it took."""
    import resource

    import gsim_async

    codes: dict[str, str] = {}
    errors: list[str] = []
    journal: Any = config["journal"] or False
    what = config["what"]
    options: Json = {"slow_start": False} if what == "burst" else {}
    if "interval" in config:
        options["poll_interval"] = config["interval"]
    purchases = 0
    wall_done: float | None = None
    gsim = gsim_async.Client(
        config["api_key"], base_url=config["base_url"], journal=journal, **options
    )
    async with gsim:
        await gsim.balance()  # the connection and the client's start, outside the figures
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if what == "activations":

            async def activate() -> None:
                try:
                    async with gsim.orders.activation("telegram", "russia") as act:
                        codes[act.order.id] = await act.wait_for_code(timeout=config["timeout"])
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc)[:300])

            await asyncio.gather(*(activate() for _ in range(config["n"])))
        elif what == "waits":

            async def wait() -> None:
                try:
                    order = await gsim.orders.create("telegram", "russia")
                    codes[order.id] = await gsim.orders.wait_for_code(
                        order, timeout=config["timeout"]
                    )
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc)[:300])

            await asyncio.gather(*(wait() for _ in range(config["n"])))
        else:

            async def buy() -> None:
                nonlocal purchases
                try:
                    await gsim.orders.create("telegram", "russia")
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc)[:300])
                else:
                    purchases += 1

            await asyncio.gather(*(buy() for _ in range(config["n"])))
            # Purchases per second end with the last answer, not with the close.
            wall_done = time.perf_counter()
    cpu = time.process_time() - cpu0
    wall = (wall_done or time.perf_counter()) - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        # Where the CPU went: user or kernel (the journal's file writes, thread wake-ups).
        "user_s": usage.ru_utime - usage0.ru_utime,
        "system_s": usage.ru_stime - usage0.ru_stime,
        "context_switches": (usage.ru_nvcsw - usage0.ru_nvcsw)
        + (usage.ru_nivcsw - usage0.ru_nivcsw),
        "codes": codes,
        "errors": errors,
        "purchases": purchases,
        "cpu_s": cpu,
        "wall_s": wall,
    }


# -- the command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.journal",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--n", type=int, default=1000, help="codes per run (default 1,000)")
    parser.add_argument(
        "--burst", type=int, default=1000, help="purchases at once in the burst (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="runs of each variant")
    parser.add_argument(
        "--time-scale", type=float, default=10.0, help="divide the code delays and interval"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if any(w not in WORKLOADS for w in args.workloads):
        parser.error(f"--workloads: known are {', '.join(WORKLOADS)}")
    if args.n < 1 or args.burst < 0 or args.repeats < 1 or args.time_scale <= 0:
        parser.error("--n and --repeats must be >= 1, --burst >= 0, --time-scale > 0")
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = await run_journal(
        n=args.n,
        burst=args.burst,
        repeats=args.repeats,
        scale=args.time_scale,
        seed=args.seed,
        workloads=args.workloads,
    )
    print(report(result))
    if args.json:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, text)
    return 0 if result.complete else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
