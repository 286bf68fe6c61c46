"""wait_for_code, as_completed, activation and the stale sweep, against the sandbox."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import anyio
import pytest

import gsim_async
from gsim_async import OrderStatus
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def deliver_later(sandbox: Sandbox, order_id: str, code: str, delay: float) -> None:
    await anyio.sleep(delay)
    sandbox.deliver_code(order_id, code)


async def test_wait_for_code_returns_the_code(client: gsim_async.Client, sandbox: Sandbox) -> None:
    order = await client.orders.create("telegram", "russia")
    async with anyio.create_task_group() as tg:
        tg.start_soon(deliver_later, sandbox, order.id, "424242", 0.1)
        code = await gsim_async.wait_for_code(order)
    assert code == "424242"


async def test_wait_by_id_through_the_namespace(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.deliver_code(order.id, "1234")
    assert await client.orders.wait_for_code(order.id) == "1234"


async def test_timeout_bans_and_refunds(client: gsim_async.Client, sandbox: Sandbox) -> None:
    order = await client.orders.create("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError) as info:
        await client.orders.wait_for_code(order, timeout=0.2)
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, gsim_async.NoCodeError)
    assert err.refunded == order.price
    assert err.order.status == OrderStatus.BANNED
    assert sandbox.order(order.id).status == "BANNED"
    ledger = sandbox.ledger()
    assert ledger.refunds_by_order[order.id] == order.price
    assert ledger.balance == Decimal("100")


async def test_timeout_can_cancel_or_keep(client: gsim_async.Client, sandbox: Sandbox) -> None:
    cancelled = await client.orders.create("telegram", "russia")
    kept = await client.orders.create("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError):
        await client.orders.wait_for_code(cancelled, timeout=0.1, on_timeout="cancel")
    with pytest.raises(gsim_async.CodeTimeoutError) as info:
        await client.orders.wait_for_code(kept, timeout=0.1, on_timeout="keep")
    assert info.value.refunded is None
    assert sandbox.order(cancelled.id).status == "CANCELLED"
    assert sandbox.order(kept.id).status == "PENDING"


async def test_cancelled_during_cleanup_still_refunds(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    task = asyncio.ensure_future(client.orders.wait_for_code(order, timeout=0.1))
    await anyio.sleep(0.05)
    sandbox.set_faults(latency=(0.4, 0.4))  # the ban is now slow: cancel it in flight
    await anyio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sandbox.set_faults(latency=(0, 0))
    assert sandbox.order(order.id).status == "BANNED"
    assert sandbox.ledger().refunds_by_order[order.id] == order.price


async def test_cancelling_a_plain_wait_keeps_the_order(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    with anyio.move_on_after(0.2):
        await client.orders.wait_for_code(order)
    assert sandbox.order(order.id).status == "PENDING"
    assert client.orders.waiting == 0


async def test_code_arriving_during_the_ban_is_returned(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    async with anyio.create_task_group() as tg:
        tg.start_soon(deliver_later, sandbox, order.id, "909090", 0.05)
        # Polling too slow to see it: the ban answers 409 and the re-read finds the code.
        code = await client.orders.wait_for_code(order, timeout=0.3, poll_interval=30)
    assert code == "909090"
    assert sandbox.order(order.id).status == "RECEIVED"


async def test_order_cancelled_elsewhere_raises_no_code(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")

    async def cancel_elsewhere() -> None:
        await anyio.sleep(0.1)
        sandbox.set_order_status(order.id, "CANCELLED", refund=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_elsewhere)
        with pytest.raises(gsim_async.NoCodeError) as info:
            await client.orders.wait_for_code(order)
    assert not isinstance(info.value, gsim_async.CodeTimeoutError)
    assert info.value.order.status == OrderStatus.CANCELLED


async def test_unknown_status_keeps_waiting_and_yields_the_code(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.set_order_status(order.id, "ON_HOLD")

    async def then_code() -> None:
        await anyio.sleep(0.3)
        sandbox.set_order_status(order.id, "PENDING")
        sandbox.deliver_code(order.id, "313131")

    async with anyio.create_task_group() as tg:
        tg.start_soon(then_code)
        assert await client.orders.wait_for_code(order, timeout=5) == "313131"


async def test_code_present_is_returned_whatever_the_status(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.deliver_code(order.id, "5555")
    sandbox.set_order_status(order.id, "EXPIRED")
    assert await client.orders.wait_for_code(order.id) == "5555"


async def test_expired_order_raises_no_code(sandbox: Sandbox) -> None:
    async with (
        Sandbox(seed=3, auto_deliver=False, order_ttl=0.3) as sb,
        gsim_async.Client(sb.api_key, base_url=sb.base_url, poll_interval=0.05) as gsim,
    ):
        order = await gsim.orders.create("telegram", "russia")
        with pytest.raises(gsim_async.NoCodeError) as info:
            await gsim.orders.wait_for_code(order, timeout=5)
        assert info.value.order.status == OrderStatus.EXPIRED
        assert sb.ledger().refunds_by_order[order.id] == order.price


async def test_several_waiters_share_one_registration(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    codes: list[str] = []

    async def waiter() -> None:
        codes.append(await client.orders.wait_for_code(order))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(waiter)
        await anyio.sleep(0.02)
        assert client.orders.waiting == 1
        sandbox.deliver_code(order.id, "8888")
    assert codes == ["8888"] * 5


async def test_as_completed_yields_in_arrival_order(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    a, b, c = [await client.orders.create("telegram", "russia") for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(deliver_later, sandbox, b.id, "2222", 0.1)
        tg.start_soon(deliver_later, sandbox, a.id, "1111", 0.4)
        results = [r async for r in client.orders.as_completed([a, b, c], timeout=0.8)]
    assert [(r.order.id, r.code) for r in results[:2]] == [(b.id, "2222"), (a.id, "1111")]
    last = results[2]
    assert last.order.id == c.id and last.code is None
    assert isinstance(last.error, gsim_async.CodeTimeoutError)
    assert sandbox.order(c.id).status == "BANNED"


async def test_activation_gives_the_code(client: gsim_async.Client, sandbox: Sandbox) -> None:
    async with client.orders.activation("telegram", "russia") as act:
        assert act.phone_number.startswith("+")
        sandbox.deliver_code(act.order.id, "6543")
        assert await act.wait_for_code() == "6543"
    assert sandbox.order(act.order.id).status == "RECEIVED"


async def test_activation_refunds_on_exception(client: gsim_async.Client, sandbox: Sandbox) -> None:
    with pytest.raises(RuntimeError, match="signup failed"):
        async with client.orders.activation("telegram", "russia") as act:
            raise RuntimeError("signup failed")
    assert sandbox.order(act.order.id).status == "CANCELLED"
    assert act.refunded == act.order.price
    assert sandbox.ledger().balance == Decimal("100")


async def test_activation_refunds_on_cancellation(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    acts: list[gsim_async.Activation] = []

    async def use() -> None:
        async with client.orders.activation("telegram", "russia") as act:
            acts.append(act)
            await act.wait_for_code()

    with anyio.move_on_after(0.3):
        await use()
    assert sandbox.order(acts[0].order.id).status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")


async def test_activation_respects_max_price(client: gsim_async.Client, sandbox: Sandbox) -> None:
    with pytest.raises(gsim_async.PriceTooHighError) as info:
        async with client.orders.activation("telegram", "russia", max_price="0.01"):
            pytest.fail("the block must not run")
    assert info.value.max_price == Decimal("0.01")
    assert sandbox.orders() == []  # nothing bought
    assert sandbox.stats.count("POST /api/v1/orders") == 0


async def test_activation_timeout_bans(client: gsim_async.Client, sandbox: Sandbox) -> None:
    with pytest.raises(gsim_async.CodeTimeoutError):
        async with client.orders.activation("telegram", "russia") as act:
            await act.wait_for_code(timeout=0.1)
    assert sandbox.order(act.order.id).status == "BANNED"
    assert sandbox.stats.count("POST /api/v1/orders/{id}/cancel") == 0


async def test_cancel_stale_refunds_old_pending_orders(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    old = [await client.orders.create("telegram", "russia") for _ in range(3)]
    received = await client.orders.create("telegram", "russia")
    sandbox.deliver_code(received.id)
    await anyio.sleep(0.2)
    fresh = await client.orders.create("telegram", "russia")
    swept = await client.orders.cancel_stale(older_than=0.1)
    assert sorted(o.id for o, _ in swept) == sorted(o.id for o in old)
    assert all(r.refunded == o.price for o, r in swept)
    assert sandbox.order(fresh.id).status == "PENDING"
    assert sandbox.order(received.id).status == "RECEIVED"


async def test_top_level_wait_needs_an_order_from_a_client() -> None:
    stray = gsim_async.Order(
        id="cmstray",
        service="x",
        phone_number="+10000000",
        status=OrderStatus.PENDING,
        price=Decimal(1),
    )
    with pytest.raises(ValueError, match=r"client\.orders\.wait_for_code"):
        await gsim_async.wait_for_code(stray)


async def test_activation_cancelled_while_buying_still_refunds(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    sandbox.set_faults(latency=(0.3, 0.3))  # the purchase is on the wire when we cancel

    async def use() -> None:
        async with client.orders.activation("telegram", "russia"):
            pytest.fail("the block must not run")

    with anyio.move_on_after(0.1):
        await use()
    sandbox.set_faults(latency=(0, 0))
    await client.aclose()  # waits for the refund started in the background
    [record] = sandbox.orders()
    assert record.status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")


async def test_code_of_a_received_order_without_code_yet_is_not_given_up(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")

    async def race() -> None:
        await anyio.sleep(0.05)
        sandbox.set_order_status(order.id, "RECEIVED")  # the ban will meet 409
        await anyio.sleep(0.4)
        sandbox.deliver_code(order.id, "246810")

    async with anyio.create_task_group() as tg:
        tg.start_soon(race)
        code = await client.orders.wait_for_code(order, timeout=0.2, poll_interval=30)
    assert code == "246810"


async def test_as_completed_ends_when_the_client_closes(
    client: gsim_async.Client,
) -> None:
    orders = [await client.orders.create("telegram", "russia") for _ in range(2)]

    async def close_soon() -> None:
        await anyio.sleep(0.2)
        await client.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close_soon)
        with anyio.fail_after(10):
            results = [r async for r in client.orders.as_completed(orders)]
    assert len(results) == 2
    assert all(r.code is None and r.error is not None for r in results)


async def test_orders_bought_through_a_view_can_be_waited_on(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.with_options(timeout=5).orders.create("telegram", "russia")
    import gc

    gc.collect()  # the view is gone; the order still finds its client
    sandbox.deliver_code(order.id, "1357")
    assert await gsim_async.wait_for_code(order) == "1357"


async def test_unknown_status_order_is_polled_not_banned_at_409(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.set_order_status(order.id, "ON_HOLD")

    async def later() -> None:
        await anyio.sleep(0.4)
        sandbox.set_order_status(order.id, "PENDING")
        sandbox.deliver_code(order.id, "8080")

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        assert await client.orders.wait_for_code(order, timeout=0.1) == "8080"
    assert sandbox.order(order.id).status == OrderStatus.RECEIVED
