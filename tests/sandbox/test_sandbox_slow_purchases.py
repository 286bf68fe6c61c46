"""Slow purchases: the application's processing time and what a client sees meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import anyio
import pytest
from aiohttp import web
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

ORDER = {"service": "telegram", "country": "russia"}


async def test_purchase_delay_takes_effect_at_the_end(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(purchase_delay=0.4)
    started = sb.clock.now()
    async with anyio.create_task_group() as tg:
        replies = []

        async def buy() -> None:
            replies.append(await api.post("orders", ORDER))

        tg.start_soon(buy)
        await anyio.sleep(0.2)
        # Still being processed: nothing taken, nothing charged.
        assert sb.orders() == []
        assert sb.balance() == 100
    assert replies[0].status == 200
    [record] = sb.orders()
    assert record.created_at >= started + 0.4
    assert sb.ledger().charges_by_order == {record.id: Decimal("0.18")}
    detail = (await api.get(f"orders/{record.id}")).body
    assert detail["createdAt"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(started)))


async def test_purchase_delay_validates_at_once(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(purchase_delay=5)
    started = time.monotonic()
    unknown = await api.post("orders", {"service": "nope", "country": "russia"})
    assert (unknown.status, unknown.error_code) == (400, "VALIDATION_ERROR")
    sb.set_balance("0.10")
    poor = await api.post("orders", ORDER)
    assert (poor.status, poor.error_code) == (402, "INSUFFICIENT_BALANCE")
    assert time.monotonic() - started < 1
    assert sb.orders() == []


async def test_purchase_delay_checks_again_when_it_takes_effect(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(purchase_delay=0.3)
    async with anyio.create_task_group() as tg:
        replies = []

        async def buy() -> None:
            replies.append(await api.post("orders", ORDER))

        tg.start_soon(buy)
        await anyio.sleep(0.1)
        sb.set_balance("0.05")  # the money went while the purchase was processed
    assert (replies[0].status, replies[0].error_code) == (402, "INSUFFICIENT_BALANCE")
    assert sb.orders() == []
    assert sb.ledger().charged == 0


async def test_purchase_delay_completes_after_the_client_hangs_up(sb: Sandbox) -> None:
    sb.set_faults(purchase_delay=0.4)
    timeout = aiohttp.ClientTimeout(total=0.1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = Caller(session, sb)
        body = await api.offer()
        # aiohttp raises asyncio.TimeoutError, the builtin only from Python 3.11.
        with pytest.raises(asyncio.TimeoutError):
            await api.post("orders", ORDER)
        with pytest.raises(asyncio.TimeoutError):
            await api.post("rentals", body)
    assert sb.orders() == []
    await anyio.sleep(0.6)
    [order] = sb.orders()
    [rental] = sb.rentals()
    assert rental.phone_number == body["phoneNumber"]
    ledger = sb.ledger()
    assert ledger.charges_by_order == {order.id: Decimal("0.18")}
    assert ledger.charges_by_rental == {rental.id: Decimal("1.50")}
    assert ledger.balanced


@pytest.fixture
async def cancelling_server(sb: Sandbox) -> AsyncIterator[str]:
    """``sb.app`` served by a runner that cancels a handler when its client hangs up."""
    runner = web.AppRunner(sb.app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def test_purchase_delay_survives_handler_cancellation(
    sb: Sandbox, cancelling_server: str
) -> None:
    sb.set_faults(purchase_delay=0.3)
    timeout = aiohttp.ClientTimeout(total=0.1)
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.post(cancelling_server + "/api/v1/orders", json=ORDER)
    await anyio.sleep(0.5)
    [order] = sb.orders()
    assert sb.ledger().charges_by_order == {order.id: Decimal("0.18")}


async def test_purchase_delay_range_over_http(api: Caller, sb: Sandbox) -> None:
    reply = await api.post("/_sandbox/faults", {"purchaseDelay": [0.1, 0.2]})
    assert reply.body["purchase_delay"] == [Decimal("0.1"), Decimal("0.2")]
    assert sb.faults.purchase_delay == (0.1, 0.2)
    bad = await api.post("/_sandbox/faults", {"purchase_delay": [0.3, 0.1]})
    assert (bad.status, bad.error_code) == (400, "VALIDATION_ERROR")
    started = time.monotonic()
    await api.buy()
    assert 0.1 <= time.monotonic() - started < 1


async def test_proxy_timeout_answers_504_while_the_purchase_goes_on(
    api: Caller, sb: Sandbox
) -> None:
    sb.set_faults(purchase_delay=0.6, proxy_timeout=0.2)
    started = time.monotonic()
    reply = await api.post("orders", ORDER)
    waited = time.monotonic() - started
    assert reply.status == 504
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<h1>504 Gateway Time-out</h1>" in reply.text
    assert 0.2 <= waited < 0.5
    assert sb.orders() == []
    await anyio.sleep(0.6)
    [order] = sb.orders()
    assert order.status == "PENDING"
    assert sb.ledger().charges_by_order == {order.id: Decimal("0.18")}
    assert sb.stats.count("POST /api/v1/orders", 504) == 1


async def test_proxy_timeout_applies_to_every_request(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(latency=0.3, proxy_timeout=0.1)
    assert (await api.get("balance")).status == 504
    sb.set_faults(latency=0)
    assert (await api.get("balance")).status == 200  # fast enough
    sb.set_faults(proxy_timeout=None)
    assert sb.stats.by_status == {504: 1, 200: 1}


async def test_a_late_drop_behind_the_proxy_leaves_the_client_connection_alone(
    sb: Sandbox,
) -> None:
    sb.set_faults(purchase_delay=0.3, proxy_timeout=0.1, drop_after_purchase_rate=1)
    connector = aiohttp.TCPConnector(limit=1)  # one connection, reused for every request
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Caller(session, sb)
        assert (await api.post("orders", ORDER)).status == 504
        # In flight on the same connection while the application "drops" its answer
        # (a POST: aiohttp would silently retry a GET on a reused connection).
        sb.set_faults(proxy_timeout=None, latency=0.4)
        assert (await api.post("orders/cmnothing/cancel")).status == 404
        assert (await api.get("balance")).body["balance"] == Decimal("99.82")
    assert len(sb.orders()) == 1
    assert sb.stats.dropped == 0


async def test_proxy_timeout_is_validated(api: Caller, sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="proxy_timeout"):
        sb.set_faults(proxy_timeout=0)
    reply = await api.post("/_sandbox/faults", {"proxyTimeout": 1.5})
    assert reply.body["proxy_timeout"] == 1.5
    reply = await api.post("/_sandbox/faults", {"proxy_timeout": None})
    assert reply.body["proxy_timeout"] is None
