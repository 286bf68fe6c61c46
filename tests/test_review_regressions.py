"""Regressions found in review: each scenario once lost money, a code, or hung."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import anyio
import pytest
from aiohttp import web
from helpers import StubServer, fast_client

import gsim_async
from gsim_async import OrderStatus
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_failed_purchase_does_not_block_later_reconciliations(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=0) as gsim:
        sandbox.set_faults(provider_error_rate=1.0)
        with pytest.raises(gsim_async.ProviderError):
            await gsim.orders.create("telegram", "russia")
        sandbox.set_faults(provider_error_rate=0.0, drop_after_purchase_rate=1.0)
        with anyio.fail_after(10):
            lost = await gsim.orders.create("telegram", "russia")
        sandbox.clear_faults()
        with anyio.fail_after(10):
            fine = await gsim.orders.create("telegram", "russia")
    assert set(sandbox.ledger().charges_by_order) == {lost.id, fine.id}


async def test_lost_purchase_with_operator_any_is_adopted(sandbox: Sandbox) -> None:
    sandbox.set_faults(drop_after_purchase_rate=1.0)
    async with fast_client(sandbox) as gsim:
        order = await gsim.orders.create("telegram", "russia", operator="any")
    assert list(sandbox.ledger().charges_by_order) == [order.id]


async def test_lost_purchase_is_adopted_when_the_server_clock_is_behind() -> None:
    async with Sandbox(seed=3, auto_deliver=False, clock_skew=-120) as sb:
        async with fast_client(sb) as gsim:
            await gsim.balance()  # learn the server's clock from its Date header
            sb.set_faults(drop_after_purchase_rate=1.0)
            order = await gsim.orders.create("telegram", "russia")
        assert list(sb.ledger().charges_by_order) == [order.id]


async def test_rental_reconciliation_ignores_an_old_rental_of_the_number(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox) as gsim:
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        old = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        sandbox.set_rental_status(old.id, "EXPIRED")
        sandbox.set_faults(html_502_rate=1.0)
        with pytest.raises(gsim_async.GsimError):
            await gsim.with_options(max_retries=0).rentals.create(
                offer.phone_number, "LOCAL", "US", offer.monthly_price
            )
    assert list(sandbox.ledger().charges_by_rental) == [old.id]


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


async def test_cleanup_waits_out_a_429(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=0) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        sandbox.set_faults(rate_limit=2, retry_after=1)
        with pytest.raises(gsim_async.CodeTimeoutError) as info:
            await gsim.orders.wait_for_code(order, timeout=0.3)
    assert info.value.refunded == order.price
    assert sandbox.order(order.id).status == "BANNED"


async def test_closing_the_client_during_an_activation_refunds_it(sandbox: Sandbox) -> None:
    gsim = fast_client(sandbox)
    errors: list[BaseException] = []

    async def use() -> None:
        try:
            async with gsim.orders.activation("telegram", "russia") as act:
                await act.wait_for_code()
        except (RuntimeError, gsim_async.GsimError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        await anyio.sleep(0.2)
        await gsim.aclose()
    [record] = sandbox.orders()
    assert record.status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")
    assert errors


async def test_gzip_body_is_capped_after_decompression() -> None:
    huge = json.dumps([{"id": "x" * 1000, "name": "n", "minPrice": 1}] * 3000).encode()

    async def handle(request: web.Request) -> web.Response:
        body = gzip.compress(huge)
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_get("/api/v1/services", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with gsim_async.Client(
            "2s_" + "k" * 40, base_url=f"http://127.0.0.1:{port}", max_response_size=1 << 20
        ) as gsim:
            with pytest.raises(gsim_async.APIConnectionError, match="limit"):
                await gsim.services()
    finally:
        await runner.cleanup()


async def test_429_without_retry_after_waits_the_documented_minute_capped(
    stub: StubServer,
) -> None:
    events: list[gsim_async.RetryEvent] = []
    stub.script(
        "GET",
        "/balance",
        (429, '{"error": "slow down", "code": "RATE_LIMITED"}'),
        (200, '{"balance": 1, "currency": "USD"}'),
    )
    async with gsim_async.Client(
        "2s_" + "k" * 40, base_url=stub.base_url, max_retry_after=0.3, on_retry=events.append
    ) as gsim:
        await gsim.balance()
    # The API documents 60 s when Retry-After is absent; max_retry_after caps it.
    assert [e.delay for e in events] == [0.3]


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
