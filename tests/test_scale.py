"""Many concurrent waits: everyone gets their own code, with few requests per code."""

from __future__ import annotations

import anyio
import pytest

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

N = 1000


async def test_thousand_concurrent_waits_cost_at_most_1_5_requests_per_code() -> None:
    # Code delays 0.5-6 s at a 0.2 s interval: the same ratios as 5-60 s at 2 s.
    async with (
        Sandbox(seed=11, balance=1000, code_delay=(0.5, 6.0)) as sb,
        gsim_async.Client(
            sb.api_key, base_url=sb.base_url, poll_interval=0.2, connection_limit=50
        ) as gsim,
    ):
        orders: list[gsim_async.Order] = []

        async def buy() -> None:
            orders.append(await gsim.orders.create("telegram", "russia"))

        async with anyio.create_task_group() as tg:
            for _ in range(N):
                tg.start_soon(buy)

        codes: dict[str, str] = {}

        async def wait(order: gsim_async.Order) -> None:
            codes[order.id] = await gsim_async.wait_for_code(order, timeout=60)

        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(wait, order)

        expected = {r.id: r.sms_code for r in sb.orders()}
        assert codes == expected  # each caller got its own order's code
        requests = sb.stats.total
        per_code = requests / len(codes)
        print(f"\n{N} waits: {requests} requests, {per_code:.3f} per delivered code")
        assert per_code <= 1.5
