"""A program with a journal, in its own process, killed by the crash-safety tests.

``python crash_worker.py CONFIG`` runs one scenario with ``Client(journal=...)`` and
prints one JSON object per line (``ready``, what it bought, codes, ``done``). The
tests kill it (SIGKILL) at the moment they choose, or let it kill itself at a crash
point (``_GSIM_CRASH_AT``), then start it again on the same journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

import gsim_async


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


async def main(config: dict[str, Any]) -> None:
    logger = logging.getLogger("gsim_async")
    logger.setLevel(logging.INFO)
    captured = Lines()
    logger.addHandler(captured)
    journal = gsim_async.Journal(config["journal"], grace=config.get("grace", 1.0))
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config.get("poll_interval", 0.1),
        backoff_base=0,
        max_retry_after=2,
        reconcile_window=config.get("reconcile_window", 1),
        journal=journal,
    ) as gsim:
        say("ready")
        await SCENARIOS[config["scenario"]](gsim, config)
    say("done", log=captured.lines)


async def activation(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    async def one() -> None:
        async with gsim.orders.activation("telegram", "russia") as act:
            say("bought", ids=[act.order.id])
            say("code", id=act.order.id, code=await act.wait_for_code(timeout=600))

    await asyncio.gather(*(one() for _ in range(config.get("count", 1))))


async def one_by_one(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    """Activations entered one after the other (each bought before the next is)."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(config.get("count", 2)):
            act = await stack.enter_async_context(gsim.orders.activation("telegram", "russia"))
            # Read back: its stamp pins the server's clock, as a wait's first poll would.
            await gsim.orders.get(act.order)
            say("bought", ids=[act.order.id])
        await asyncio.sleep(600)


async def wait(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(config["count"])]
    say("bought", ids=[o.id for o in orders])

    async def one(order: gsim_async.Order) -> None:
        try:
            code = await gsim.orders.wait_for_code(order, timeout=config["timeout"])
        except gsim_async.CodeTimeoutError as exc:
            say("timeout", id=order.id, refund_pending=exc.refund_pending)
        else:
            say("code", id=order.id, code=code)

    await asyncio.gather(*(one(o) for o in orders))
    await asyncio.sleep(config.get("stay", 0))


async def create(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(config["count"])]
    say("bought", ids=[o.id for o in orders])
    await asyncio.sleep(config.get("stay", 600))


async def rent(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    offer = (await gsim.rentals.search("US", page_size=1))[0]
    rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    say("rented", id=rental.id)


async def recover(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    if config.get("take_back"):
        orders = await gsim.orders.recovered()
        rentals = await gsim.rentals.recovered()
        say(
            "recovered",
            ids=[o.id for o in orders],
            codes={o.id: o.sms_code for o in orders},
            rentals=[r.id for r in rentals],
        )
        waiting = [o for o in orders if o.sms_code is None]
        codes = await asyncio.gather(
            *(gsim.orders.wait_for_code(o, timeout=config.get("timeout", 30)) for o in waiting)
        )
        say("codes", codes=dict(zip((o.id for o in waiting), codes, strict=True)))
    say("alive")
    await asyncio.sleep(config.get("stay", 0))


SCENARIOS = {
    "activation": activation,
    "one_by_one": one_by_one,
    "wait": wait,
    "create": create,
    "rent": rent,
    "recover": recover,
}

if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
