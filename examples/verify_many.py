"""Verify 100 accounts at once: buy 100 numbers, sign each one up as its code arrives.

One client waits on every order (``orders.as_completed``), so 100 waits cost a few
requests per poll round, not 100. A rich progress bar shows how far it got. Orders
whose code does not come in time are banned and refunded by ``as_completed``; the
ones still waiting when you press Ctrl-C are cancelled and refunded on the way out.

Runs against the embedded sandbox (no money; about one in twenty codes never comes,
to show refunds) unless GSIM_API_KEY is set. Needs rich: ``pip install 'gsim-async[cli]'``.
Usage: python examples/verify_many.py [count] [service] [country]
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from decimal import Decimal

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import gsim_async
from gsim_async.sandbox import Sandbox


async def sign_up(phone_number: str, code: str) -> None:
    """Stand-in for your own sign-up step that uses the number and its code."""
    await asyncio.sleep(0)


async def buy(
    gsim: gsim_async.Client, service: str, country: str, count: int
) -> list[gsim_async.Order]:
    """Buy ``count`` numbers at once; a purchase that fails is reported and skipped."""
    results = await asyncio.gather(
        *(gsim.orders.create(service, country) for _ in range(count)), return_exceptions=True
    )
    orders = [r for r in results if isinstance(r, gsim_async.Order)]
    for error in {str(r) for r in results if isinstance(r, BaseException)}:
        print(f"a purchase failed: {error}", file=sys.stderr)
    return orders


async def refund(gsim: gsim_async.Client, orders: Iterable[gsim_async.Order]) -> Decimal:
    """Cancel orders nobody waits for any more; return what came back."""

    async def one(order: gsim_async.Order) -> Decimal:
        try:
            return (await gsim.orders.cancel(order)).refunded
        except gsim_async.ConflictError:
            return Decimal(0)  # it left PENDING meanwhile: a code came, or it expired

    return sum(await asyncio.gather(*map(one, orders)), Decimal(0))


async def verify_all(
    gsim: gsim_async.Client, service: str, country: str, count: int, *, timeout: float
) -> dict[str, int]:
    """Buy ``count`` numbers and sign up each one whose code arrives within ``timeout``."""
    orders = await buy(gsim, service, country, count)
    waiting = {order.id: order for order in orders}
    done = {"verified": 0, "refunded": 0}
    columns = (
        TextColumn("[bold]verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[verified]} verified · {task.fields[refunded]} refunded"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        bar = progress.add_task("", total=len(orders), verified=0, refunded=0)
        try:
            async for result in gsim.orders.as_completed(orders, timeout=timeout):
                waiting.pop(result.order.id, None)
                if result.code is not None:
                    await sign_up(result.order.phone_number, result.code)
                    done["verified"] += 1
                else:
                    done["refunded"] += 1  # banned after the timeout, and refunded
                progress.update(bar, advance=1, **done)
        finally:
            if waiting:
                # Interrupted: leaving as_completed keeps the orders; get the money back.
                # Shielded, so a cancelled task still waits for its refunds.
                back = await asyncio.shield(refund(gsim, waiting.values()))
                progress.console.print(f"cancelled {len(waiting)} orders, {back} USD refunded")
    return done


async def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    service = sys.argv[2] if len(sys.argv) > 2 else "telegram"
    country = sys.argv[3] if len(sys.argv) > 3 else "russia"
    if os.environ.get("GSIM_API_KEY"):
        print(f"GSIM_API_KEY is set: buying {count} real numbers")
        async with gsim_async.Client() as gsim:
            done = await verify_all(gsim, service, country, count, timeout=300)
    else:
        async with Sandbox(code_delay=(1.0, 6.0), no_code_ratio=0.05) as sandbox:
            print(f"no GSIM_API_KEY: using the embedded sandbox at {sandbox.base_url}")
            async with gsim_async.Client(
                sandbox.api_key, base_url=sandbox.base_url, poll_interval=0.5
            ) as gsim:
                done = await verify_all(gsim, service, country, count, timeout=8)
                print(f"requests sent: {gsim.requests_sent}")
            print(f"no money lost (ledger balanced): {sandbox.ledger().balanced}")
    print(f"{done['verified']} accounts verified, {done['refunded']} numbers refunded")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except gsim_async.GsimError as exc:
        sys.exit(f"error: {exc}")
