"""SyncClient from 8 threads against Client from 8 tasks: requests per code, CPU per call.

Waiting (each contender in its own process against its own fresh sandbox, same seed,
so the same code delays):

* ``async`` (the baseline): one ``Client``, 8 tasks, each buying and waiting for
  ``M`` codes in turn (``orders.create`` then ``orders.wait_for_code``);
* ``sync``: one ``SyncClient`` shared by 8 threads doing the same: design.md's target is
  its requests per code within 10 % of the baseline's;
* ``sync_per_thread`` (diagnostic): 8 ``SyncClient``\\ s, one per thread: what the one
  client's one watcher saves.

Requests per code count every request the sandbox served (purchases, polls, the listing
before a client's first purchase) over the codes returned; every code is checked against
the sandbox's own record of it. Time is scaled like the other benchmarks (default 1/10:
code delays of 5-60 s and a 2 s poll interval become 0.5-6 s and 0.2 s).

CPU per call (one process, both clients, paired repeats in alternating order): ``N``
``balance()`` calls one after another through each; the client CPU of the process
(every thread's) per call, and the median of each repeat's sync/async ratio.

    python -m benchmarks.sync_threads [--m 10] [--calls 2000] [--json sync.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import platform
import sys
import threading
import time
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

CONTENDERS: dict[str, str] = {
    "async": "`Client`, 8 tasks (baseline)",
    "sync": "`SyncClient`, 8 threads sharing it",
    "sync_per_thread": "8 `SyncClient`s, one per thread (diagnostic)",
}
THREADS = 8
REAL_DELAYS = (5.0, 60.0)
REAL_INTERVAL = 2.0
#: design.md: SyncClient's requests per code within 10 % of Client's.
MAX_REQUESTS_RATIO = 1.10


@dataclasses.dataclass
class WaitRun:
    """One contender's waits, from the sandbox's counters and the child's clock."""

    contender: str
    codes: int
    wanted: int
    wrong_codes: int
    requests: int
    by_route: dict[str, int]
    errors: int
    error_samples: list[str]
    cpu_s: float
    wall_s: float

    @property
    def label(self) -> str:
        return CONTENDERS[self.contender]

    @property
    def requests_per_code(self) -> float | None:
        return self.requests / self.codes if self.codes else None

    def to_dict(self) -> Json:
        return dataclasses.asdict(self) | {
            "label": self.label,
            "requests_per_code": self.requests_per_code,
        }


@dataclasses.dataclass
class CpuRun:
    """Client CPU µs per ``balance()`` call, per repeat, of each client."""

    calls: int
    cpu_us: dict[str, list[float]]
    wall_us: dict[str, list[float]]

    def median_cpu(self, variant: str) -> float | None:
        return median(self.cpu_us[variant])

    @property
    def paired_ratio(self) -> float | None:
        """Median over repeats of that repeat's sync/async CPU ratio."""
        pairs = [s / a for s, a in zip(self.cpu_us["sync"], self.cpu_us["async"], strict=True) if a]
        return median(pairs)

    def to_dict(self) -> Json:
        return dataclasses.asdict(self) | {
            "median_cpu_us": {v: self.median_cpu(v) for v in self.cpu_us},
            "paired_ratio": self.paired_ratio,
        }


@dataclasses.dataclass
class SyncResult:
    """Everything ``run_sync_threads`` measured."""

    m: int
    scale: float
    waits: list[WaitRun]
    cpu: CpuRun | None

    def run(self, contender: str) -> WaitRun | None:
        return next((w for w in self.waits if w.contender == contender), None)

    @property
    def requests_ratio(self) -> float | None:
        """The sync client's requests per code over the async client's."""
        sync, base = self.run("sync"), self.run("async")
        if sync is None or base is None:
            return None
        ours, theirs = sync.requests_per_code, base.requests_per_code
        return ours / theirs if ours is not None and theirs else None

    @property
    def met(self) -> bool | None:
        ratio = self.requests_ratio
        if ratio is None:
            return None
        complete = all(w.codes == w.wanted and not w.wrong_codes for w in self.waits)
        return ratio <= MAX_REQUESTS_RATIO and complete

    def to_dict(self) -> Json:
        return {
            "m": self.m,
            "threads": THREADS,
            "time_scale": self.scale,
            "waits": [w.to_dict() for w in self.waits],
            "requests_ratio": self.requests_ratio,
            "cpu": self.cpu.to_dict() if self.cpu else None,
        }


async def run_sync_threads(
    *,
    m: int,
    scale: float,
    seed: int,
    calls: int,
    repeats: int,
    contenders: list[str] | None = None,
) -> SyncResult:
    """Every contender's waits, then the CPU per call of both clients."""
    delays = (REAL_DELAYS[0] / scale, REAL_DELAYS[1] / scale)
    waits = []
    for contender in contenders or list(CONTENDERS):
        progress(f"sync threads: {contender}, {THREADS} x {m} codes")
        async with running_sandbox(seed, code_delay=delays, auto_deliver=True) as sb:
            await sb.post("stats/reset")
            data = await run_child(
                "sync_threads",
                {
                    "what": "waits",
                    "contender": contender,
                    "base_url": sb.base_url,
                    "api_key": sb.api_key,
                    "m": m,
                    "interval": REAL_INTERVAL / scale,
                },
            )
            stats = await sb.stats()
            records = {o["id"]: o.get("sms_code") for o in await sb.orders()}
        got: dict[str, str] = data["codes"]
        waits.append(
            WaitRun(
                contender=contender,
                codes=len(got),
                wanted=THREADS * m,
                wrong_codes=sum(1 for oid, code in got.items() if records.get(oid) != code),
                requests=int(stats["total"]),
                by_route=dict(stats.get("by_route", {})),
                errors=len(data["errors"]),
                error_samples=list(data["errors"][:3]),
                cpu_s=float(data["cpu_s"]),
                wall_s=float(data["wall_s"]),
            )
        )
    progress(f"sync threads: CPU per call, {repeats} repeats x {calls:,} balance() calls")
    async with running_sandbox(seed) as sb:
        data = await run_child(
            "sync_threads",
            {
                "what": "cpu",
                "base_url": sb.base_url,
                "api_key": sb.api_key,
                "calls": calls,
                "repeats": repeats,
            },
        )
    cpu = CpuRun(calls=calls, cpu_us=data["cpu_us"], wall_us=data["wall_us"])
    return SyncResult(m=m, scale=scale, waits=waits, cpu=cpu)


def waits_table(result: SyncResult) -> str:
    base = result.run("async")
    rows = []
    for w in result.waits:
        vs = (
            fmt(w.requests_per_code / base.requests_per_code, 3, "x")
            if base is not None and w.requests_per_code and base.requests_per_code
            else "-"
        )
        rows.append(
            [
                w.label,
                f"{w.codes}/{w.wanted}",
                str(w.wrong_codes),
                f"{w.requests:,}",
                fmt(w.requests_per_code, 3),
                vs,
                fmt(w.cpu_s / w.codes * 1e6 if w.codes else None, 0),
                fmt(w.wall_s, 1),
            ]
        )
    return markdown_table(
        [
            "contender",
            "codes",
            "wrong codes",
            "requests",
            "requests/code",
            "vs `Client`",
            "client CPU µs/code",
            "wall s",
        ],
        rows,
        "lrrrrrrr",
    )


def cpu_table(cpu: CpuRun) -> str:
    base = cpu.median_cpu("async")
    rows = []
    for variant, label in (("async", "`await gsim.balance()` (baseline)"),
                           ("sync", "`gsim.balance()`, `SyncClient`")):  # fmt: skip
        mine = cpu.median_cpu(variant)
        spread = cpu.cpu_us[variant]
        rows.append(
            [
                label,
                fmt(mine, 0),
                f"{min(spread):,.0f}-{max(spread):,.0f}" if spread else "-",
                fmt(mine / base if mine is not None and base else None, 2, "x"),
                fmt(median(cpu.wall_us[variant]), 0),
            ]
        )
    return markdown_table(
        ["call", "CPU µs/call (median)", "range over repeats", "vs async", "wall µs/call"],
        rows,
        "lrrrr",
    )


def report(result: SyncResult) -> str:
    ratio = result.requests_ratio
    verdict = {None: "not measured", True: "met", False: "**missed**"}[result.met]
    lines = [
        f"SyncClient from {THREADS} threads, {result.m} codes each, against Client from "
        f"{THREADS} tasks; code delays {REAL_DELAYS[0] / result.scale:g}-"
        f"{REAL_DELAYS[1] / result.scale:g} s, poll {REAL_INTERVAL / result.scale:g} s "
        f"(time scaled 1/{result.scale:g}); "
        f"{platform.python_implementation()} {platform.python_version()}",
        "",
        waits_table(result),
        "",
        f"requests per code, SyncClient over Client: {fmt(ratio, 3, 'x')} "
        f"(goal ≤ {MAX_REQUESTS_RATIO:.2f}x): {verdict}",
    ]
    if result.cpu is not None:
        lines += [
            "",
            f"CPU per call ({len(result.cpu.cpu_us['sync'])} paired repeats x "
            f"{result.cpu.calls:,} calls; sync/async paired median "
            f"{fmt(result.cpu.paired_ratio, 2, 'x')}):",
            "",
            cpu_table(result.cpu),
        ]
    return "\n".join(lines)


def write_json(path: Path, result: SyncResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


async def main(args: argparse.Namespace) -> int:
    result = await run_sync_threads(
        m=args.m,
        scale=args.time_scale,
        seed=args.seed,
        calls=args.calls,
        repeats=args.repeats,
        contenders=args.contenders,
    )
    print(report(result))
    if args.json:
        write_json(Path(args.json), result)
    errors = sum(w.errors + w.wrong_codes for w in result.waits)
    if errors:
        print(f"unexpected errors: {errors}, e.g. {result.waits[0].error_samples}", file=sys.stderr)
    return 0 if not errors else 1


# -- the children ----------------------------------------------------------------------


async def child(config: Json) -> Json:
    """One contender's waits, or the CPU per call of both clients."""
    if config["what"] == "cpu":
        return await _cpu_child(config)
    if config["contender"] == "async":
        return await _async_waits(config)
    # A blocking client blocks this process's (idle) loop as it would a notebook's.
    return _sync_waits(config)


async def _async_waits(config: Json) -> Json:
    import gsim_async

    codes: dict[str, str] = {}
    errors: list[str] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with gsim_async.Client(
        config["api_key"], base_url=config["base_url"], poll_interval=config["interval"]
    ) as gsim:

        async def worker() -> None:
            for _ in range(config["m"]):
                try:
                    order = await gsim.orders.create("telegram", "russia")
                    codes[order.id] = await gsim.orders.wait_for_code(order)
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc))

        await asyncio.gather(*(worker() for _ in range(THREADS)))
    return {
        "codes": codes,
        "errors": errors,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def _sync_waits(config: Json) -> Json:
    import gsim_async

    codes: dict[str, str] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> gsim_async.SyncClient:
        return gsim_async.SyncClient(
            config["api_key"], base_url=config["base_url"], poll_interval=config["interval"]
        )

    def worker(gsim: gsim_async.SyncClient) -> None:
        for _ in range(config["m"]):
            try:
                order = gsim.orders.create("telegram", "russia")
                code = gsim.orders.wait_for_code(order)
            except gsim_async.GsimError as exc:
                with lock:
                    errors.append(repr(exc))
            else:
                with lock:
                    codes[order.id] = code

    cpu0, wall0 = time.process_time(), time.perf_counter()
    shared = config["contender"] == "sync"
    clients = [client()] if shared else [client() for _ in range(THREADS)]
    try:
        threads = [
            threading.Thread(target=worker, args=(clients[0 if shared else i],))
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for gsim in clients:
            gsim.close()
    return {
        "codes": codes,
        "errors": errors,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


async def _cpu_child(config: Json) -> Json:
    import gsim_async

    calls, repeats = config["calls"], config["repeats"]
    options: dict[str, Any] = {"base_url": config["base_url"], "slow_start": False}
    cpu_us: dict[str, list[float]] = {"async": [], "sync": []}
    wall_us: dict[str, list[float]] = {"async": [], "sync": []}
    async with gsim_async.Client(config["api_key"], **options) as gsim:
        with gsim_async.SyncClient(config["api_key"], **options) as blocking:

            async def by_async() -> None:
                for _ in range(calls):
                    await gsim.balance()

            def by_sync() -> None:
                for _ in range(calls):
                    blocking.balance()

            async def batch(variant: str) -> None:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if variant == "async":
                    await by_async()
                else:
                    by_sync()
                cpu_us[variant].append((time.process_time() - cpu0) / calls * 1e6)
                wall_us[variant].append((time.perf_counter() - wall0) / calls * 1e6)

            for _ in range(2):  # warm up: connections, caches
                await by_async()
                by_sync()
            for repeat in range(repeats):
                order = ("async", "sync") if repeat % 2 == 0 else ("sync", "async")
                for variant in order:
                    await batch(variant)
    return {"cpu_us": cpu_us, "wall_us": wall_us}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=10, help="codes per thread (or task)")
    parser.add_argument("--calls", type=int, default=2000, help="balance() calls per batch")
    parser.add_argument("--repeats", type=int, default=9, help="paired CPU batches")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=10.0, help="1 is real time")
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=list(CONTENDERS),
        help=f"comma-separated, of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.m <= 1000 or args.calls < 1 or args.repeats < 1 or args.time_scale <= 0:
        parser.error("--m must be 1..1000, --calls and --repeats >= 1, --time-scale above 0")
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {list(CONTENDERS)}")
    return args


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parse_args())))
