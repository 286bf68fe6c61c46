"""client.orders: buy, read, list, cancel, ban — against the sandbox."""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal

import pytest

import gsim_async
from gsim_async import OrderStatus
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_create_charges_the_price_and_returns_a_pending_order(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    assert order.status == OrderStatus.PENDING
    assert order.phone_number.startswith("+")
    assert order.service == "telegram"
    assert order.country == "russia"
    assert order.expires_at is not None and order.expires_at.tzinfo == timezone.utc
    ledger = sandbox.ledger()
    assert ledger.charges_by_order == {order.id: order.price}
    assert ledger.balance == Decimal("100") - order.price


async def test_get_returns_the_code_once_delivered(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    assert order.created_at is None  # the purchase answer has no createdAt (documented)
    assert (await client.orders.get(order.id)).sms_code is None
    sandbox.deliver_code(order.id, "123456")
    fresh = await client.orders.get(order)
    assert fresh.status == OrderStatus.RECEIVED
    assert fresh.sms_code == "123456"
    assert fresh.created_at is not None
    # Fields the detail response may omit are kept from what we knew.
    assert fresh.country == "russia"


async def test_list_pages_newest_first(client: gsim_async.Client) -> None:
    bought = [await client.orders.create("telegram", "russia") for _ in range(5)]
    page = await client.orders.list(page=1, limit=2)
    assert page.total == 5 and page.total_pages == 3 and page.limit == 2 and page.page == 1
    assert [o.id for o in page.items] == [bought[4].id, bought[3].id]
    last = await client.orders.list(page=3, limit=2)
    assert [o.id for o in last] == [bought[0].id]
    assert not last.has_next


async def test_list_filters_by_status(client: gsim_async.Client, sandbox: Sandbox) -> None:
    first = await client.orders.create("telegram", "russia")
    await client.orders.create("telegram", "russia")
    sandbox.deliver_code(first.id)
    received = await client.orders.list(status="RECEIVED")
    assert [o.id for o in received] == [first.id]
    assert received.items[0].sms_code is not None


async def test_iterate_walks_every_page(client: gsim_async.Client, sandbox: Sandbox) -> None:
    ids = {(await client.orders.create("whatsapp", "india")).id for _ in range(105)}
    sandbox.reset_stats()
    seen = [o.id async for o in client.orders.iterate()]
    assert len(seen) == 105 and set(seen) == ids
    hits = sandbox.stats.count("GET /api/v1/orders")
    assert hits == 2  # 100 per request


async def test_cancel_refunds_the_price(client: gsim_async.Client, sandbox: Sandbox) -> None:
    order = await client.orders.create("telegram", "russia")
    refund = await client.orders.cancel(order)
    assert refund == gsim_async.Refund(success=True, refunded=order.price)
    assert (await client.orders.get(order.id)).status == OrderStatus.CANCELLED
    assert sandbox.ledger().balance == Decimal("100")


async def test_ban_refunds_the_price(client: gsim_async.Client, sandbox: Sandbox) -> None:
    order = await client.orders.create("telegram", "russia")
    refund = await client.orders.ban(order.id)
    assert refund.refunded == order.price
    assert (await client.orders.get(order.id)).status == OrderStatus.BANNED


async def test_cancel_after_code_raises_conflict_with_the_code(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.deliver_code(order.id, "777777")
    with pytest.raises(gsim_async.ConflictError) as info:
        await client.orders.cancel(order)
    assert info.value.status == 409 and info.value.code == "CONFLICT"
    assert info.value.order is not None and info.value.order.sms_code == "777777"


async def test_insufficient_balance(client: gsim_async.Client, sandbox: Sandbox) -> None:
    sandbox.set_balance("0.01")
    with pytest.raises(gsim_async.InsufficientBalanceError) as info:
        await client.orders.create("telegram", "russia")
    assert info.value.status == 402
    assert info.value.method == "POST" and info.value.path == "/api/v1/orders"
    assert sandbox.ledger().charged == 0


async def test_unknown_order_is_not_found(client: gsim_async.Client) -> None:
    with pytest.raises(gsim_async.NotFoundError) as info:
        await client.orders.get("cmdoesnotexist")
    assert info.value.status == 404
    assert "/api/v1/orders/cmdoesnotexist" in str(info.value)


async def test_unknown_status_parses_and_stays_readable(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    order = await client.orders.create("telegram", "russia")
    sandbox.set_order_status(order.id, "ON_HOLD")
    fresh = await client.orders.get(order.id)
    assert fresh.status == "ON_HOLD"
    assert not fresh.status.is_known
    assert fresh.status != OrderStatus.PENDING
