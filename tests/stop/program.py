"""A program waiting on codes, stopped by the tests with real signals.

``python program.py CONFIG`` (JSON) buys ``count`` numbers from the sandbox and waits
on them the way ``mode`` says, printing one JSON object per line: ``ready`` (with
the order ids) once it waits, what each wait ended with, ``exit``. ``kind`` is the
kind of program:

* ``async``: ``gsim_async.run(main())`` with a ``Client``; modes ``waits``
  (``orders.wait_for_code``), ``activations``, ``as_completed`` and ``idle`` (buys
  nothing: a later run of a journal);
* ``sync``: a script with a ``SyncClient``; modes ``threads`` (a thread pool, one
  wait per thread, the main thread blocked on the pool), ``as_completed`` and
  ``idle``;
* ``plain``: the ``async`` program under a plain ``asyncio.run(main())``, and with
  ``sigterm_default`` the ``sync`` one with SIGTERM put back to its default after the
  client is made: what programs were before stop signals were handled (the
  benchmark's baselines).

``own_handler``: ``"signal"`` installs a SIGTERM handler of its own before the
client exists (``signal.signal``), ``"loop"`` inside ``main`` with
``loop.add_signal_handler``; the handler says ``own_handler`` and the program waits on.
``journal``: a journal file; ``timeout``: each wait's (default 600 s).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import gsim_async


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def options(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_url": config["base_url"],
        "poll_interval": 0.05,
        "backoff_base": 0,
        "journal": config.get("journal") or False,
    }


def outcome(result: object) -> str:
    if isinstance(result, BaseException):
        return f"{type(result).__name__}: {result}"
    return f"code {result}"


# -- gsim_async.run(main()) ---------------------------------------------------------------


async def async_main(config: dict[str, Any]) -> None:
    if config.get("own_handler") == "loop":
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: say("own_handler", signum=int(signal.SIGTERM))
        )
    count, timeout = config["count"], config.get("timeout", 600)
    async with gsim_async.Client(config["api_key"], **options(config)) as gsim:
        mode = config["mode"]
        if mode == "idle":  # a later run with the journal: it refunds what is due
            say("ready", ids=[])
            await asyncio.sleep(600)
            return
        if mode == "activations":
            await activations(gsim, count, timeout)
            return
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(count)]
        ids = [o.id for o in orders]
        say("bought", ids=ids)
        if mode == "waits":

            async def wait(order: gsim_async.Order) -> str:
                try:
                    code = await gsim.orders.wait_for_code(order, timeout=timeout)
                except BaseException as exc:
                    say("result", id=order.id, outcome=outcome(exc))
                    raise
                say("result", id=order.id, outcome=outcome(code))
                return code

            waits = asyncio.gather(*(wait(o) for o in orders), return_exceptions=True)
            await all_waiting(gsim, count, ids)
            say("ended", results=[outcome(r) for r in await waits])
        elif mode == "as_completed":

            async def collect() -> None:
                async for result in gsim.orders.as_completed(orders, timeout=timeout):
                    say("result", id=result.order.id, error=str(result.error), code=result.code)

            collecting = asyncio.ensure_future(collect())
            await all_waiting(gsim, count, ids)
            await collecting
        else:
            raise ValueError(mode)


async def all_waiting(gsim: gsim_async.Client, count: int, ids: list[str]) -> None:
    """Say ``ready`` once every wait is registered: a signal then finds them all."""
    while gsim.orders.waiting < count:  # noqa: ASYNC110 (the client's count: no event)
        await asyncio.sleep(0.01)
    say("ready", ids=ids)


async def activations(gsim: gsim_async.Client, count: int, timeout: float) -> None:
    bought: list[str] = []
    all_in = asyncio.Event()

    async def one() -> str:
        async with gsim.orders.activation("telegram", "russia") as act:
            bought.append(act.order.id)
            if len(bought) == count:
                all_in.set()
            return await act.wait_for_code(timeout=timeout)

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    await all_in.wait()
    await all_waiting(gsim, count, bought)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    say("ended", results=[outcome(r) for r in results])


# -- a SyncClient script ------------------------------------------------------------------


def sync_main(config: dict[str, Any]) -> None:
    count, timeout = config["count"], config.get("timeout", 600)
    with gsim_async.SyncClient(config["api_key"], **options(config)) as gsim:
        if config.get("sigterm_default"):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        say("handler", sigterm=handler_name())
        orders = [gsim.orders.create("telegram", "russia") for _ in range(count)]
        ids = [o.id for o in orders]
        say("bought", ids=ids)
        mode = config["mode"]

        def all_waiting() -> None:
            while gsim.orders.waiting < count:
                time.sleep(0.01)
            say("ready", ids=ids)

        if mode == "threads":

            def wait(order: gsim_async.Order) -> str:
                try:
                    code = gsim.orders.wait_for_code(order, timeout=timeout)
                except BaseException as exc:
                    say("result", id=order.id, outcome=outcome(exc))
                    raise
                say("result", id=order.id, outcome=outcome(code))
                return code

            # Not daemon threads: a stop must end their calls for the program to exit.
            with concurrent.futures.ThreadPoolExecutor(count) as pool:
                futures = [pool.submit(wait, o) for o in orders]
                all_waiting()
                concurrent.futures.wait(futures)
            say("ended", results=[outcome(f.exception() or f.result()) for f in futures])
        elif mode == "as_completed":
            results = gsim.orders.as_completed(orders, timeout=timeout)
            threading.Thread(target=all_waiting, daemon=True).start()
            for result in results:
                say("result", id=result.order.id, error=str(result.error), code=result.code)
        elif mode == "idle":
            gsim.balance()
            say("ready", ids=[])
            time.sleep(600)
        else:
            raise ValueError(mode)


def handler_name() -> str:
    current = signal.getsignal(signal.SIGTERM)
    return getattr(current, "__qualname__", str(current))


def main(config: dict[str, Any]) -> int:
    # The dispositions this program relies on, whatever its parent left it: a
    # background job starts with SIGINT ignored; nothing here may depend on that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if config.get("own_handler") == "signal":

        def mine(signum: int, frame: FrameType | None) -> None:
            say("own_handler", signum=signum)

        signal.signal(signal.SIGTERM, mine)
    try:
        if config["kind"] == "async":
            gsim_async.run(async_main(config))
        elif config["kind"] == "plain":
            asyncio.run(async_main(config))
        else:
            sync_main(config)
    except SystemExit as exc:
        say("exit", status=exc.code)
        raise
    say("exit", status=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
