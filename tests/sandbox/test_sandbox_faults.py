"""Fault injection: rate limit, provider errors, latency, drops, proxy 502s; request counters."""

from __future__ import annotations

import time
from decimal import Decimal

import aiohttp
import anyio
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio

ORDER = {"service": "telegram", "country": "russia"}


async def test_rate_limit_answers_429_with_retry_after(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=2)
    statuses = [(await api.get("balance")).status for _ in range(2)]
    assert statuses == [200, 200]  # the burst
    limited = await api.get("balance")
    assert (limited.status, limited.error_code) == (429, "RATE_LIMITED")
    assert limited.headers["Retry-After"] == "1"
    other = sb.add_key()
    assert (await api.get("balance", key=other)).status == 200  # per key
    assert sb.stats.count("GET /api/v1/balance", 429) == 1


async def test_retry_after_is_the_time_until_a_token(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=0.25)
    assert (await api.get("balance")).status == 200
    limited = await api.get("balance")
    assert limited.headers["Retry-After"] == "4"
    sb.set_faults(retry_after=60)
    assert (await api.get("balance")).headers["Retry-After"] == "60"


async def test_rate_limit_refills(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=20)
    replies = [await api.get("balance") for _ in range(25)]
    assert [r.status for r in replies].count(429) >= 1
    await anyio.sleep(0.1)  # two tokens back
    assert (await api.get("balance")).status == 200
    sb.set_faults(rate_limit=None)
    assert [(await api.get("balance")).status for _ in range(30)] == [200] * 30


async def test_provider_error_charges_nothing(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(provider_error_rate=1.0)
    reply = await api.post("orders", ORDER)
    assert (reply.status, reply.error_code) == (503, "PROVIDER_ERROR")
    found = await api.get("rentals/search", params={"country": "US"})
    number = found.body["numbers"][0]
    rent = await api.post(
        "rentals",
        {"phoneNumber": number["phoneNumber"], "numberType": "LOCAL", "country": "US",
         "monthlyPrice": 1.15},
    )  # fmt: skip
    assert (rent.status, rent.error_code) == (503, "PROVIDER_ERROR")
    assert (await api.get("balance")).status == 200  # reads are unaffected
    assert sb.orders() == []
    assert sb.rentals() == []
    assert sb.balance() == 100


async def test_latency_delays_every_request(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(latency=(0.15, 0.2))
    started = time.perf_counter()
    assert (await api.get("balance")).status == 200
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    assert (await api.get("/_sandbox/stats")).status == 200  # control: never delayed
    assert time.perf_counter() - started < 0.1


async def test_list_pages_can_leave_the_code_out(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.deliver_code(order["id"], "4321")
    sb.set_faults(list_omits_code=True)
    listed = (await api.get("orders", params={"status": "RECEIVED"})).body["orders"]
    assert [(o["id"], o["status"]) for o in listed] == [(order["id"], "RECEIVED")]
    assert "smsCode" not in listed[0]
    assert set(listed[0]) == {"id", "service", "country", "operator", "phoneNumber",
                              "status", "price", "createdAt", "expiresAt"}  # fmt: skip
    assert (await api.get(f"orders/{order['id']}")).body["smsCode"] == "4321"  # detail has it
    sb.set_faults(list_omits_code=False)
    assert (await api.get("orders")).body["orders"][0]["smsCode"] == "4321"


async def test_the_catalogue_can_leave_a_country_out_that_is_still_sold(
    api: Caller, sb: Sandbox
) -> None:
    sb.set_faults(countries_hidden=["russia"])
    for params in (None, {"service": "telegram"}):
        listed = (await api.get("countries", params=params)).body
        assert "russia" not in [c["id"] for c in listed] and len(listed) > 1
    assert (await api.post("orders", ORDER)).status == 200  # still sold
    assert (await api.get("operators", params=ORDER)).status == 200
    sb.set_faults(countries_hidden=[])
    assert "russia" in [c["id"] for c in (await api.get("countries")).body]


async def test_drop_before_closes_without_an_answer(sb: Sandbox) -> None:
    sb.set_faults(drop_before_rate=1.0)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Caller(session, sb)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.post("orders", ORDER)
        assert sb.orders() == []
        assert sb.balance() == 100
        assert sb.stats.dropped == 1
        sb.set_faults(drop_before_rate=0.0)
        assert (await api.get("balance")).status == 200


async def test_drop_after_purchase_charges_then_closes(sb: Sandbox) -> None:
    sb.set_faults(drop_after_purchase_rate=1.0)
    async with aiohttp.ClientSession() as session:
        api = Caller(session, sb)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.post("orders", ORDER)
        # The ambiguous case: the client saw nothing, yet the order exists and was paid.
        ledger = sb.ledger()
        assert len(ledger.orders) == 1
        order = ledger.orders[0]
        assert ledger.charges_by_order == {order.id: Decimal("0.18")}
        assert ledger.balance == Decimal("99.82")
        assert ledger.balanced
        assert sb.stats.count("POST /api/v1/orders", 0) == 1
        # Reads still work, and a client can reconcile by listing.
        listed = await api.get("orders", params={"status": "PENDING"})
        assert [o["id"] for o in listed.body["orders"]] == [order.id]


async def test_drop_after_any_request_acts_then_closes(sb: Sandbox) -> None:
    sb.set_faults(drop_after_rate=1.0)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Caller(session, sb)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.post("orders", ORDER)
        (order,) = sb.orders()
        assert order.charged == order.price
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.post(f"orders/{order.id}/cancel")
        # The cancel happened too: only its answer was lost.
        cancelled = sb.order(order.id)
        assert (cancelled.status, cancelled.refunded) == ("CANCELLED", order.price)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await api.get("balance")
        assert sb.balance() == 100
        assert sb.ledger().balanced
        # Every answer was dropped (aiohttp itself sends an idempotent GET a second time).
        assert sb.stats.dropped == sb.stats.total
        assert sb.stats.count("POST /api/v1/orders", 0) == 1
        assert sb.stats.count("POST /api/v1/orders/{id}/cancel", 0) == 1
        sb.set_faults(drop_after_rate=0.0)
        assert (await api.get(f"orders/{order.id}")).body["status"] == "CANCELLED"


async def test_drop_after_purchase_of_a_rental(api: Caller, sb: Sandbox) -> None:
    found = await api.get("rentals/search", params={"country": "US"})
    number = found.body["numbers"][0]
    sb.set_faults(dropAfterPurchaseRate=1)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await api.post(
            "rentals",
            {"phoneNumber": number["phoneNumber"], "numberType": "LOCAL", "country": "US",
             "monthlyPrice": 1.15},
        )  # fmt: skip
    assert [r.phone_number for r in sb.rentals()] == [number["phoneNumber"]]
    assert sb.balance() == Decimal("98.50")


async def test_html_502_like_a_proxy(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(html_502_rate=1.0)
    reply = await api.post("orders", ORDER)
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in reply.text
    assert sb.orders() == []
    assert (await api.get("/_sandbox/ledger")).status == 200  # control is never faulted


async def test_faults_are_seeded() -> None:
    async def pattern(seed: int) -> list[int]:
        async with (
            Sandbox(seed=seed, faults=Faults(html_502_rate=0.5)) as box,
            aiohttp.ClientSession() as session,
        ):
            api = Caller(session, box)
            return [(await api.get("balance")).status for _ in range(30)]

    first = await pattern(5)
    assert first == await pattern(5)
    assert {200, 502} == set(first)
    assert first != await pattern(6)


def test_faults_validate_values() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="provider_error_rate"):
        faults.provider_error_rate = 1.5
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="rate_limit"):
        Faults(rate_limit=0)
    assert Faults(latency=0.2).latency == (0.2, 0.2)
    with pytest.raises(ValueError, match="countries_hidden"):
        Faults(countries_hidden="russia")  # type: ignore[arg-type]
    assert Faults(countries_hidden=["russia"]).countries_hidden == ("russia",)


async def test_set_faults_rejects_unknown_names_and_changes_nothing(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sb.set_faults(html_502_rate=0.5, meteor_rate=1)
    with pytest.raises(ValueError, match="drop_before_rate"):
        sb.set_faults(html_502_rate=0.5, drop_before_rate=2)
    assert sb.faults == Faults()
    sb.set_faults(html502Rate=0.25)  # camelCase, as the control API accepts
    assert sb.faults.html_502_rate == 0.25
    sb.clear_faults()
    assert sb.faults == Faults()


async def test_stats_count_routes_and_statuses(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    await api.get(f"orders/{order['id']}")
    await api.get(f"orders/{order['id']}")
    await api.get("orders/cmnothing")
    await api.get("nowhere")
    await api.get("balance", key=None)
    await api.get("/_sandbox/stats")
    stats = sb.stats
    assert stats.total == 6
    assert stats.count("GET /api/v1/orders/{id}") == 3
    assert stats.count("GET /api/v1/orders/{id}", 200) == 2
    assert stats.count("GET /api/v1/orders/{id}", 404) == 1
    assert stats.count("POST /api/v1/orders", 200) == 1
    assert stats.count("GET (unmatched)", 404) == 1
    assert stats.by_status == {200: 3, 404: 2, 401: 1}
    sb.reset_stats()
    assert sb.stats.total == 0
    assert sb.stats.by_route == {}
