"""Buy a number, print it, wait for its code.

Runs against the embedded sandbox (a local fake of the gsim API: no money is
spent) unless GSIM_API_KEY is set, in which case it uses the real service and
buys a real number. Usage: python examples/quickstart.py [service] [country]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import gsim_async
from gsim_async.sandbox import Sandbox


async def verify(gsim: gsim_async.Client, service: str, country: str) -> None:
    balance = await gsim.balance()
    print(f"balance: {balance.balance} {balance.currency}")
    async with gsim.orders.activation(service, country) as act:
        print(f"bought {act.phone_number} for {act.order.price} (order {act.order.id})")
        print("waiting for the SMS code ...")
        started = time.monotonic()
        code = await act.wait_for_code(timeout=300)
        print(f"code {code} arrived after {time.monotonic() - started:.1f} s")
    print(f"balance now: {(await gsim.balance()).balance}")


async def main() -> None:
    service = sys.argv[1] if len(sys.argv) > 1 else "telegram"
    country = sys.argv[2] if len(sys.argv) > 2 else "russia"
    if os.environ.get("GSIM_API_KEY"):
        print("GSIM_API_KEY is set: using the real gsim service")
        async with gsim_async.Client() as gsim:
            await verify(gsim, service, country)
        return
    async with Sandbox(code_delay=(2.0, 4.0)) as sandbox:
        print(f"no GSIM_API_KEY: using the embedded sandbox at {sandbox.base_url}")
        async with gsim_async.Client(
            sandbox.api_key, base_url=sandbox.base_url, poll_interval=0.5
        ) as gsim:
            await verify(gsim, service, country)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except gsim_async.GsimError as exc:
        sys.exit(f"error: {exc}")
