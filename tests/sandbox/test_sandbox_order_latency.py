"""One slow order: every GET of it takes long, nothing else does."""

from __future__ import annotations

import time
from decimal import Decimal

import anyio
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def timed(api: Caller, path: str) -> float:
    started = time.monotonic()
    assert (await api.get(path)).status == 200
    return time.monotonic() - started


async def test_only_that_orders_gets_are_slow(api: Caller, sb: Sandbox) -> None:
    slow, fast = await api.buy(), await api.buy()
    sb.set_order_latency(slow["id"], 0.4)
    finished: list[str] = []

    async def get(order_id: str) -> None:
        await api.get(f"orders/{order_id}")
        finished.append(order_id)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(get, slow["id"])
        await anyio.sleep(0.05)
        tg.start_soon(get, fast["id"])
    assert finished == [fast["id"], slow["id"]]
    assert time.monotonic() - started >= 0.4
    assert await timed(api, "orders") < 0.3  # listing it is not slowed
    assert await timed(api, f"orders/{fast['id']}") < 0.3
    sb.set_order_latency(slow["id"], 0)
    assert await timed(api, f"orders/{slow['id']}") < 0.3


async def test_the_answer_is_as_of_the_end_of_the_delay(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.set_order_latency(order["id"], 0.3)
    async with anyio.create_task_group() as tg:
        replies = []

        async def get() -> None:
            replies.append(await api.get(f"orders/{order['id']}"))

        tg.start_soon(get)
        await anyio.sleep(0.1)
        sb.deliver_code(order["id"], "424242")
    assert replies[0].body["smsCode"] == "424242"


async def test_order_latency_over_http(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    reply = await api.post(f"/_sandbox/orders/{order['id']}/latency", {"seconds": 0.3})
    assert reply.body == {"id": order["id"], "seconds": Decimal("0.3")}
    assert await timed(api, f"orders/{order['id']}") >= 0.3
    await api.post("/_sandbox/faults/reset")  # clears per-order latency too
    assert await timed(api, f"orders/{order['id']}") < 0.3
    missing = await api.post("/_sandbox/orders/cmnothing/latency", {"seconds": 1})
    assert (missing.status, missing.error_code) == (404, "NOT_FOUND")
    bad = await api.post(f"/_sandbox/orders/{order['id']}/latency", {"seconds": -1})
    assert (bad.status, bad.error_code) == (400, "VALIDATION_ERROR")
    with pytest.raises(KeyError):
        sb.set_order_latency("cmnothing", 1)
