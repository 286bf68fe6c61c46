"""A fleet member with a spend limit, in its own process, for the spend guard's tests.

``python spend_worker.py CONFIG`` joins the fleet with ``Client(spend_limit=...)``,
prints ``ready``, waits until the wall-clock time ``at`` (so that several processes
buy at once), tries ``count`` purchases together and prints one ``bought`` or
``refused`` line for each, then ``done``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import gsim_async
from gsim_async.fleet import RedisFleet


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def main(config: dict[str, Any]) -> None:
    fleet = RedisFleet(config["redis_url"], namespace=config["namespace"], heartbeat=0.3, lease=1.0)
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=0.1,
        backoff_base=0,
        reconcile_window=2,
        fleet=fleet,
        spend_limit=gsim_async.SpendLimit.parse(config["spend_limit"]),
    ) as gsim:
        await gsim.balance()  # joins the fleet
        say("ready")
        await asyncio.sleep(max(config["at"] - time.time(), 0.0))

        async def one() -> None:
            try:
                order = await gsim.orders.create("telegram", "russia")
            except gsim_async.GuardError as exc:
                say("refused", error=type(exc).__name__)
            except gsim_async.GsimError as exc:
                say("error", error=repr(exc))
            else:
                say("bought", id=order.id)

        await asyncio.gather(*(one() for _ in range(config["count"])))
        say("done")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
