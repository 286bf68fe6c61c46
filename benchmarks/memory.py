"""Memory: what each waiting order costs the client, with 10,000 waiting at once.

In one child process, against a sandbox that never delivers a code by itself: buy N
orders, collect garbage, read the resident set size (the baseline, same process), start
one ``wait_for_code`` task per order, wait until the watcher has registered all of them
and finished a poll round over them, and read the RSS again. The difference over N is
the RSS per waiting order (the caller's own task included: that is how waits are used).

Two diagnostics follow in the same process: the Python heap per wait traced by
``tracemalloc`` (the same waits, started again), with the source lines that allocate
most, and the same figure for a bare ``asyncio.sleep`` task — the least any
one-task-per-order design costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence

from ._common import Json, fmt, markdown_table, progress, rss_bytes, run_child, running_sandbox


@dataclasses.dataclass
class MemoryResult:
    """Bytes per waiting order, and what they were computed from."""

    n: int
    baseline_rss: int | None
    registered_rss: int | None
    polled_rss: int | None
    poll_round_requests: int
    traced_per_wait: float
    bare_task_per_wait: float
    top_allocations: list[str]

    @property
    def per_wait(self) -> float | None:
        """RSS growth per waiting order after a poll round (bytes)."""
        if self.baseline_rss is None or self.polled_rss is None:
            return None
        return (max(self.polled_rss, self.registered_rss or 0) - self.baseline_rss) / self.n

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        data["per_wait"] = self.per_wait
        return data


async def run_memory(seed: int, n: int, interval: float = 2.0) -> MemoryResult:
    """Start a sandbox without auto-delivery and measure ``n`` waits in a child."""
    progress(f"memory: {n:,} orders waiting at once")
    async with running_sandbox(seed) as sb:
        data = await run_child(
            "memory",
            {"base_url": sb.base_url, "api_key": sb.api_key, "n": n, "interval": interval},
        )
    return MemoryResult(**data)


def memory_table(result: MemoryResult) -> str:
    """The detail table of scenario 4."""

    def mib(value: int | None) -> str:
        return fmt(None if value is None else value / 2**20, 1)

    rows = [
        ["RSS before the waits (orders bought, baseline)", mib(result.baseline_rss), "-"],
        ["RSS once every wait is registered", mib(result.registered_rss), "-"],
        [
            f"RSS after a poll round ({result.poll_round_requests} requests)",
            mib(result.polled_rss),
            fmt(None if result.per_wait is None else result.per_wait / 1024, 2),
        ],
        ["Python heap per wait (tracemalloc)", "-", fmt(result.traced_per_wait / 1024, 2)],
        [
            "reference: a bare `asyncio.sleep` task (tracemalloc)",
            "-",
            fmt(result.bare_task_per_wait / 1024, 2),
        ],
    ]
    return markdown_table(
        [f"{result.n:,} orders waiting", "RSS MiB", "KiB per waiting order"], rows, "lrr"
    )


# -- the child -------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """Buy, measure, wait, measure; then the tracemalloc diagnostics."""
    import gsim_async

    n = config["n"]
    async with gsim_async.Client(
        config["api_key"], base_url=config["base_url"], poll_interval=config["interval"]
    ) as gsim:
        orders: list[gsim_async.Order] = []
        to_buy = iter(range(n))

        async def buyer() -> None:
            orders.extend([await gsim.orders.create("telegram", "russia") for _ in to_buy])

        # Few buyers at a time: thousands of purchases in flight would leave freed memory
        # in the allocator that the waits would then reuse, hiding their cost.
        await asyncio.gather(*(buyer() for _ in range(16)))
        watcher = gsim._orders_book.watcher  # private: rounds are not public

        async def wait(order: gsim_async.Order) -> None:
            await gsim_async.wait_for_code(order, timeout=3600, on_timeout="keep")

        gc.collect()
        baseline = rss_bytes()
        tasks = [asyncio.ensure_future(wait(order)) for order in orders]
        await _until(lambda: watcher.watching >= n)
        registered = rss_bytes()
        rounds, sent = watcher.rounds, gsim.requests_sent
        # rounds counts rounds started: one more than now means the current one is over.
        await _until(lambda: watcher.rounds >= max(rounds, 1) + 1)
        polled = rss_bytes()
        requests = gsim.requests_sent - sent
        await _cancel(tasks)

        # Python-level view: the same waits again, traced.
        gc.collect()
        tracemalloc.start(4)
        before_snapshot = tracemalloc.take_snapshot()
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.ensure_future(wait(order)) for order in orders]
        await _until(lambda: watcher.watching >= n)
        await asyncio.sleep(0)
        traced = tracemalloc.get_traced_memory()[0] - before
        snapshot = tracemalloc.take_snapshot()
        top = [
            f"{stat.size_diff / n:,.0f} B/wait  {stat.traceback[0]}"
            for stat in snapshot.compare_to(before_snapshot, "lineno")[:8]
        ]
        await _cancel(tasks)

        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        bare = [asyncio.ensure_future(asyncio.sleep(3600)) for _ in range(n)]
        await asyncio.sleep(0)
        bare_traced = tracemalloc.get_traced_memory()[0] - before
        await _cancel(bare)
        tracemalloc.stop()
    return {
        "n": n,
        "baseline_rss": baseline,
        "registered_rss": registered,
        "polled_rss": polled,
        "poll_round_requests": requests,
        "traced_per_wait": traced / n,
        "bare_task_per_wait": bare_traced / n,
        "top_allocations": top,
    }


async def _until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("memory benchmark: condition not reached in time")
        await asyncio.sleep(0.01)


async def _cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
