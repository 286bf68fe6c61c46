"""Requests per second the sandbox serves on loopback, measured from another process.

Starts ``python -m gsim_async.sandbox --port 0`` as a subprocess, buys a few
hundred orders, then sends a fixed number of concurrent GETs with plain
aiohttp (bodies read, not parsed, to keep the load generator cheap) and
prints a markdown table: throughput, latency percentiles, and the server's
own CPU time per request (read from /proc where available), which gives the
rate the sandbox could sustain if the load generator were not sharing the
machine.

    python benchmarks/sandbox_throughput.py [--requests 20000] [--concurrency 64] [--json out.json]

The issue's target is >= 1,500 requests/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp

if __package__ in (None, ""):
    # Run as a script: make the package importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import cpu_seconds, start_sandbox, stop_sandbox

TARGET = 1500.0


@dataclasses.dataclass
class Result:
    """One row of the table."""

    scenario: str
    requests: int
    concurrency: int
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_s: float | None
    client_cpu_s: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_us_per_request(self) -> float | None:
        return None if self.server_cpu_s is None else self.server_cpu_s / self.requests * 1e6

    @property
    def server_bound_requests_per_s(self) -> float | None:
        return self.requests / self.server_cpu_s if self.server_cpu_s else None

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        for name in ("requests_per_s", "server_cpu_us_per_request", "server_bound_requests_per_s"):
            data[name] = getattr(self, name)
        return data

    def markdown_row(self) -> str:
        def fmt(value: float | None, digits: int = 0) -> str:
            return "-" if value is None else f"{value:,.{digits}f}"

        return (
            f"| {self.scenario} | {self.requests:,} | {self.concurrency} "
            f"| {fmt(self.requests_per_s)} | {fmt(self.p50_ms, 2)} | {fmt(self.p99_ms, 2)} "
            f"| {fmt(self.server_cpu_us_per_request)} | {fmt(self.server_bound_requests_per_s)} |"
        )


async def run_scenario(
    session: aiohttp.ClientSession,
    name: str,
    urls: Callable[[int], str],
    count: int,
    concurrency: int,
    server_pid: int,
) -> Result:
    """Send ``count`` GETs from ``concurrency`` workers; measure rate and latency."""
    latencies: list[float] = []
    errors = 0
    counter: Iterator[int] = iter(range(count))

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            async with session.get(urls(i)) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    cpu_before = cpu_seconds(server_pid)
    client_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    cpu_after = cpu_seconds(server_pid)
    latencies.sort()
    return Result(
        scenario=name,
        requests=count,
        concurrency=concurrency,
        errors=errors,
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        server_cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        client_cpu_s=client_cpu,
    )


def markdown(rows: list[Result]) -> str:
    """The results as a markdown table."""
    lines = [
        "| scenario | requests | concurrency | req/s | p50 ms | p99 ms "
        "| server CPU µs/req | server-bound req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(r.markdown_row() for r in rows)
    return "\n".join(lines)


async def measure(
    args: argparse.Namespace, session: aiohttp.ClientSession, pid: int
) -> list[Result]:
    """Buy orders, then run each scenario; returns one Result per scenario."""
    order_ids: list[str] = []
    for _ in range(args.orders):
        async with session.post(
            "api/v1/orders", json={"service": "telegram", "country": "russia"}
        ) as resp:
            resp.raise_for_status()
            order_ids.append((await resp.json())["id"])
    # Half of them with a code, so list pages mix statuses as in real use.
    for order_id in order_ids[::2]:
        async with session.post(f"_sandbox/orders/{order_id}/deliver") as resp:
            resp.raise_for_status()
    n = args.requests
    scenarios: list[tuple[str, Callable[[int], str], int]] = [
        ("GET /orders/{id}", lambda i: f"api/v1/orders/{order_ids[i % len(order_ids)]}", n // 2),
        ("GET /balance", lambda i: "api/v1/balance", n * 3 // 10),
        (
            "GET /orders?status=PENDING&limit=100",
            lambda i: f"api/v1/orders?status=PENDING&limit=100&page={i % 2 + 1}",
            n - n // 2 - n * 3 // 10,
        ),
    ]
    # Warm up connections and caches; not measured.
    await run_scenario(session, "warmup", scenarios[0][1], 500, args.concurrency, pid)
    rows = []
    for name, urls, count in scenarios:
        rows.append(await run_scenario(session, name, urls, count, args.concurrency, pid))
    cpu = [r.server_cpu_s for r in rows]
    rows.append(
        Result(
            scenario="**all**",
            requests=sum(r.requests for r in rows),
            concurrency=args.concurrency,
            errors=sum(r.errors for r in rows),
            seconds=sum(r.seconds for r in rows),
            p50_ms=None,
            p99_ms=None,
            server_cpu_s=None if None in cpu else sum(c for c in cpu if c is not None),
            client_cpu_s=sum(r.client_cpu_s for r in rows),
        )
    )
    return rows


def write_json(path: Path, rows: list[Result], status: int) -> None:
    """Save the results with the environment they were measured in."""
    report = {
        "benchmark": "sandbox_throughput",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "cpus": os.cpu_count(),
        "target_requests_per_s": TARGET,
        "sandbox_exit_status": status,
        "results": [r.to_dict() for r in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


async def run(args: argparse.Namespace) -> tuple[list[Result], int]:
    """Start the sandbox, measure, stop it; the rows and the sandbox's exit status."""
    proc, base_url, api_key = await start_sandbox(args.seed)
    try:
        async with aiohttp.ClientSession(
            base_url + "/",
            headers={"Authorization": f"Bearer {api_key}"},
            connector=aiohttp.TCPConnector(limit=args.concurrency),
        ) as session:
            rows = await measure(args, session, proc.pid)
    finally:
        status = await stop_sandbox(proc)
    return rows, status


async def main(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 on success."""
    rows, status = await run(args)
    overall = rows[-1]
    print(
        f"sandbox throughput: {platform.python_implementation()} {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs, loopback, "
        "sandbox in a separate process"
    )
    print()
    print(markdown(rows))
    verdict = "meets" if overall.requests_per_s >= TARGET else "MISSES"
    print()
    print(
        f"{overall.requests_per_s:,.0f} requests/s overall: "
        f"{verdict} the {TARGET:,.0f} requests/s target."
    )
    if args.json:
        write_json(Path(args.json), rows, status)
    if overall.errors or status != 0:
        print(f"errors: {overall.errors}, sandbox exit status {status}", file=sys.stderr)
        return 1
    return 1 if args.check and overall.requests_per_s < TARGET else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="GETs in total (bounded)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--orders", type=int, default=300, help="orders bought for the GETs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 below {TARGET:.0f} requests/s"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 1_000_000 or args.concurrency < 1 or args.orders < 1:
        parser.error("--requests must be 1..1,000,000; --concurrency and --orders >= 1")
    return args


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parse_args())))
