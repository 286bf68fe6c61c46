"""orders.activations(), countries by name and orders.stats() used as a user would.

Never executed: type-checked by mypy --strict (``[tool.mypy] files``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import gsim_async
from gsim_async import (
    Activation,
    Activations,
    AttemptsExhaustedError,
    BudgetExceededError,
    Client,
    NoCodeError,
    NoNumberAvailableError,
    Order,
    OrderStats,
    Skipped,
    StatsProgress,
)


async def sign_up(number: str) -> None: ...


async def with_fresh_numbers(gsim: Client) -> str | None:
    loop: Activations = gsim.orders.activations(
        "telegram", ["russia", "KZ"], attempts=3, max_price="0.30", operators=None, budget=None
    )
    code: str | None = None
    try:
        async for act in loop:
            a: Activation = act
            async with a:
                await sign_up(act.phone_number)
                code = await act.wait_for_code(timeout=120)
    except AttemptsExhaustedError as exc:
        tried: tuple[Order, ...] = exc.orders
        last: Order = exc.order
        base: NoCodeError = exc
        del tried, last, base
    except BudgetExceededError as exc:
        spent: Decimal = exc.spent + exc.budget
        del spent
    except NoNumberAvailableError as exc:
        maybe: Order | None = exc.order
        skipped: tuple[Skipped, ...] = exc.skipped
        reasons = [(s.country, s.operator, s.reason, s.price, s.describe()) for s in skipped]
        del maybe, reasons
    total: Decimal = loop.spent
    tries: int = loop.tries
    del total, tries
    return code


async def first_code_returns(gsim: Client) -> str:
    # A plain activation() block never swallows: a return inside it is the only exit.
    async with gsim.orders.activation("telegram", "Russia") as act:
        return await act.wait_for_code(timeout=60)


async def what_works(gsim: Client) -> list[tuple[str | None, float | None, Decimal | None]]:
    def show(progress: StatsProgress) -> None:
        print(progress.pages, progress.orders, progress.total_pages, progress.total)

    rows: list[OrderStats] = await gsim.orders.stats(
        since=timedelta(days=7), service="telegram", country="RU", on_progress=show
    )
    rows += await gsim.orders.stats(since=datetime(2026, 1, 1, tzinfo=timezone.utc))
    median: float | None = rows[0].median_time_to_code
    del median
    return [(r.country, r.success_rate, r.cost_per_code) for r in rows]


async def countries_by_name(gsim: Client) -> Order:
    await gsim.operators("telegram", "RU")
    return await gsim_async.Client().orders.create("telegram", "Kazakhstan")
