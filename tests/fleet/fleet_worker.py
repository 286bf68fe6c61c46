"""A fleet member in its own process, driven by the fleet's tests.

``python fleet_worker.py CONFIG`` runs one scenario with a ``Client(fleet=RedisFleet)``
and prints one JSON object per line: ``ready``, what it bought, each code or error,
and ``done`` with its counters and the warnings it logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import gsim_async
from gsim_async.fleet import RedisFleet


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


async def main(config: dict[str, Any]) -> None:
    logger = logging.getLogger("gsim_async")
    logger.setLevel(logging.INFO)
    captured = Warnings()
    logger.addHandler(captured)
    retries: list[tuple[float, str]] = []
    fleet = RedisFleet(
        config["redis_url"],
        namespace=config["namespace"],
        heartbeat=config.get("heartbeat", 0.3),
        lease=config.get("lease", 1.0),
        dead_after=config.get("dead_after", 35.0),
    )
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config.get("poll_interval", 0.1),
        backoff_base=0,
        max_retry_after=config.get("max_retry_after", 2),
        reconcile_window=config.get("reconcile_window", 2),
        max_retries=config.get("max_retries", 3),
        on_retry=lambda e: retries.append((time.time(), e.reason)),
        max_requests_per_second=config.get("max_requests_per_second"),
        fleet=fleet,
        journal=(
            gsim_async.Journal(config["journal"], grace=config.get("grace", 10.0))
            if config.get("journal")
            else None
        ),
    ) as gsim:
        await gsim.balance()  # joins the fleet
        say("ready")
        scenario = config["scenario"]
        if scenario == "wait":
            await wait(gsim, config)
        elif scenario == "buy":
            await buy(gsim, config)
        elif scenario == "hammer":
            await hammer(gsim, config)
        elif scenario == "loop":
            await loop(gsim, config)
        elif scenario == "idle":
            await asyncio.sleep(config.get("stay", 60))
        watcher = gsim._orders_book.watcher  # private: rounds are not public
        say(
            "done",
            requests=gsim.requests_sent,
            rounds=watcher.rounds,
            retries=retries,
            log=captured.lines,
        )


async def wait(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(config["count"])]
    say("bought", ids=[o.id for o in orders])

    async def one(order: gsim_async.Order) -> None:
        try:
            code = await gsim.orders.wait_for_code(
                order,
                timeout=config.get("timeout", 20),
                on_timeout=config.get("on_timeout", "keep"),
            )
        except gsim_async.GsimError as exc:
            say("error", id=order.id, error=repr(exc))
        else:
            say("code", id=order.id, code=code)

    await asyncio.gather(*(one(o) for o in orders))


async def buy(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    async def one() -> None:
        try:
            order = await gsim.orders.create("telegram", "russia")
        except gsim_async.GsimError as exc:
            say("error", error=repr(exc))
        else:
            say("bought", ids=[order.id])

    await asyncio.gather(*(one() for _ in range(config["count"])))


async def loop(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    """``concurrency`` loops buying a number and waiting for its code, for ``duration`` s."""
    end = time.monotonic() + config["duration"]

    async def one() -> None:
        while time.monotonic() < end:
            try:
                order = await gsim.orders.create("telegram", "russia")
            except gsim_async.GsimError as exc:
                say("error", error=repr(exc))
                continue
            say("bought", ids=[order.id])
            try:
                code = await gsim.orders.wait_for_code(
                    order, timeout=config.get("timeout", 30), on_timeout="cancel"
                )
            except gsim_async.GsimError as exc:
                say("error", id=order.id, error=repr(exc))
            else:
                say("code", id=order.id, code=code, at=time.time())

    await asyncio.gather(*(one() for _ in range(config.get("concurrency", 4))))


async def hammer(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    counter = iter(range(config.get("count", 1 << 62)))
    until = time.monotonic() + config.get("seconds", 1e9)

    async def worker() -> None:
        for _ in counter:
            if time.monotonic() > until:
                break
            try:
                await gsim.balance()
            except gsim_async.GsimError as exc:
                say("error", error=repr(exc))

    await asyncio.gather(*(worker() for _ in range(config.get("concurrency", 10))))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
