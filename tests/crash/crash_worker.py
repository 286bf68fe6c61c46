"""A program with a journal, in its own process, killed by the crash-safety tests.

``python crash_worker.py CONFIG`` runs one scenario with ``Client(journal=...)`` and
prints one JSON object per line (``ready``, what it bought, codes, ``done``). The
tests kill it (SIGKILL) at the moment they choose, or let it kill itself at a crash
point (``_GSIM_CRASH_AT``), then start it again on the same journal.

``clock_step`` (seconds) steps this process's wall clock: ``time.time`` is patched
before the SDK is imported, so the whole SDK sees a machine whose clock is off by that
much (as one is before NTP corrects it), while the sandbox keeps the true time.
"""

from __future__ import annotations

import json
import sys
import time

_CONFIG = json.loads(sys.argv[1]) if __name__ == "__main__" else {}
if _CONFIG.get("clock_step"):
    _true_time = time.time
    _step = float(_CONFIG["clock_step"])
    time.time = lambda: _true_time() + _step

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

import gsim_async  # noqa: E402


def say(event: str, **fields: Any) -> None:
    # One write(2) per line: a forked child shares the pipe, and print() in its thread
    # wrote the line and its newline apart, the parent's line landing between them.
    os.write(1, (json.dumps({"event": event, **fields}) + "\n").encode())


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
        base_url=config.get("client_url", config["base_url"]),
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


async def mixed(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    """Activation blocks and waits at once (the first run of a crash loop)."""

    async def block() -> None:
        async with gsim.orders.activation("telegram", "russia") as act:
            say("bought", ids=[act.order.id], kind="activation")
            await act.wait_for_code(timeout=600)

    async def waiting() -> None:
        order = await gsim.orders.create("telegram", "russia")
        say("bought", ids=[order.id], kind="wait")
        await gsim.orders.wait_for_code(order, timeout=config["timeout"])

    jobs = [block() for _ in range(config.get("activations", 2))]
    jobs += [waiting() for _ in range(config.get("waits", 2))]
    await asyncio.gather(*jobs)


def helper(gsim: gsim_async.Client, use: bool) -> None:
    """A forked child: lives on (as a worker pool's process does), maybe using the client."""
    if use:

        def buy() -> None:
            # A loop of its own, in a thread of its own (as a pool's task would run one).
            try:
                asyncio.run(asyncio.wait_for(gsim.orders.create("telegram", "russia"), 10))
            except Exception as exc:
                say("helper", error=type(exc).__name__, message=str(exc))
            else:
                say("helper", error=None)

        thread = threading.Thread(target=buy)
        thread.start()
        thread.join()
    # Let go of the test's pipe: it reads the parent's output to its end.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    time.sleep(120)


async def fork(gsim: gsim_async.Client, config: dict[str, Any]) -> None:
    """Orders waited on, then a helper forked (multiprocessing, fork start method)."""
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(config["count"])]
    say("bought", ids=[o.id for o in orders])
    waits = [
        asyncio.ensure_future(gsim.orders.wait_for_code(o, timeout=config["timeout"]))
        for o in orders
    ]
    await asyncio.sleep(0.3)  # the waits' rows are written
    child = multiprocessing.get_context("fork").Process(
        target=helper, args=(gsim, config.get("use", False))
    )
    child.start()
    say("forked", pid=child.pid)
    await asyncio.gather(*waits, return_exceptions=True)
    await asyncio.sleep(600)


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
    "mixed": mixed,
    "fork": fork,
    "recover": recover,
}

if __name__ == "__main__":
    asyncio.run(main(_CONFIG))
