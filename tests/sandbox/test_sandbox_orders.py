"""Orders: purchase, detail, lifecycle (delivery, cancel, ban, expiry), listing."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import anyio
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox, StateError

pytestmark = pytest.mark.anyio

ID = re.compile(r"cm[a-z0-9]{23}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


async def test_purchase_charges_and_returns_a_pending_order(api: Caller, sb: Sandbox) -> None:
    order = await api.buy("telegram", "russia")
    assert set(order) == {
        "id", "service", "country", "operator", "phoneNumber", "status", "price", "expiresAt"
    }  # fmt: skip
    assert ID.fullmatch(order["id"])
    assert E164.fullmatch(order["phoneNumber"])
    assert order["status"] == "PENDING"
    assert order["price"] == Decimal("0.18")
    assert order["operator"] == "mts"  # "any" takes the cheapest operator
    assert TIMESTAMP.fullmatch(order["expiresAt"])
    assert sb.balance() == Decimal("99.82")
    assert (await api.get("balance")).body["balance"] == Decimal("99.82")


async def test_purchase_with_a_named_operator_pays_its_price(api: Caller) -> None:
    order = await api.buy("telegram", "russia", operator="beeline")
    assert order["operator"] == "beeline"
    assert order["price"] == Decimal("0.23")


async def test_detail_has_created_at_and_null_code_until_received(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    detail = (await api.get(f"orders/{order['id']}")).body
    assert detail["smsCode"] is None
    assert detail["status"] == "PENDING"
    created, expires = parse_ts(detail["createdAt"]), parse_ts(detail["expiresAt"])
    assert (expires - created).total_seconds() == pytest.approx(1200, abs=0.01)
    assert sb.deliver_code(order["id"], "123456") == "123456"
    detail = (await api.get(f"orders/{order['id']}")).body
    assert (detail["status"], detail["smsCode"]) == ("RECEIVED", "123456")
    assert sb.order(order["id"]).code_delivered_at is not None


async def test_deliver_code_draws_six_digits_and_refuses_a_finished_order(
    sb: Sandbox, api: Caller
) -> None:
    order = await api.buy()
    code = sb.deliver_code(order["id"])
    assert re.fullmatch(r"\d{6}", code)
    with pytest.raises(StateError):
        sb.deliver_code(order["id"])
    with pytest.raises(KeyError):
        sb.deliver_code("cmnope")


async def test_phone_numbers_are_unique(api: Caller) -> None:
    numbers = {(await api.buy())["phoneNumber"] for _ in range(30)}
    assert len(numbers) == 30


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"country": "russia"}, "service"),
        ({"service": "telegram"}, "country"),
        ({"service": 5, "country": "russia"}, "service"),
        ({"service": "telegram", "country": ""}, "country"),
        ({"service": "friendster", "country": "russia"}, "service"),
        ({"service": "telegram", "country": "atlantis"}, "country"),
        ({"service": "telegram", "country": "russia", "operator": "nokia"}, "operator"),
        ({"service": "telegram", "country": "russia", "operator": 3}, "operator"),
    ],
)
async def test_purchase_validation_names_the_field(
    api: Caller, sb: Sandbox, body: dict[str, object], field: str
) -> None:
    reply = await api.post("orders", body)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)
    assert sb.ledger().charged == 0


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "", "NaN"])
async def test_malformed_body_is_400(api: Caller, raw: str) -> None:
    reply = await api.request(
        "POST", "orders", data=raw, headers={"Content-Type": "application/json"}
    )
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")


async def test_insufficient_balance_is_402_and_charges_nothing(api: Caller, sb: Sandbox) -> None:
    sb.set_balance("0.17")
    reply = await api.post("orders", {"service": "telegram", "country": "russia"})
    assert (reply.status, reply.error_code) == (402, "INSUFFICIENT_BALANCE")
    assert sb.balance() == Decimal("0.17")
    assert sb.orders() == []


async def test_out_of_stock_is_a_503_provider_error(api: Caller, sb: Sandbox) -> None:
    sb.set_stock("telegram", "russia", 0, operator="mts")
    order = await api.buy()
    assert order["operator"] == "megafon"  # the next cheapest in stock
    sb.set_stock("telegram", "russia", 0)
    reply = await api.post("orders", {"service": "telegram", "country": "russia"})
    assert (reply.status, reply.error_code) == (503, "PROVIDER_ERROR")
    assert "no numbers" in reply.body["error"]


async def test_another_keys_order_is_not_found(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    other = sb.add_key()
    for reply in [
        await api.get(f"orders/{order['id']}", key=other),
        await api.post(f"orders/{order['id']}/cancel", key=other),
        await api.get("orders/cmdoesnotexist00000000000"),
    ]:
        assert (reply.status, reply.error_code) == (404, "NOT_FOUND")
    assert (await api.get("orders", key=other)).body["total"] == 0


@pytest.mark.parametrize(("action", "status"), [("cancel", "CANCELLED"), ("ban", "BANNED")])
async def test_cancel_and_ban_refund_once_then_conflict(
    api: Caller, sb: Sandbox, action: str, status: str
) -> None:
    order = await api.buy()
    reply = await api.post(f"orders/{order['id']}/{action}")
    assert reply.status == 200
    assert reply.text == '{"success":true,"refunded":0.18}'
    assert (await api.get(f"orders/{order['id']}")).body["status"] == status
    assert sb.balance() == Decimal(100)
    for again in ("cancel", "ban"):
        conflict = await api.post(f"orders/{order['id']}/{again}")
        assert (conflict.status, conflict.error_code) == (409, "CONFLICT")
    assert sb.ledger().refunds_by_order == {order["id"]: Decimal("0.18")}


async def test_a_received_order_cannot_be_cancelled(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.deliver_code(order["id"], "4242")
    reply = await api.post(f"orders/{order['id']}/cancel")
    assert (reply.status, reply.error_code) == (409, "CONFLICT")
    assert sb.ledger().refunded == 0


async def test_codes_arrive_by_themselves_after_the_delay() -> None:
    async with Sandbox(seed=3, code_delay=(0.05, 0.15)) as sb, aiohttp.ClientSession() as s:
        api = Caller(s, sb)
        orders = [await api.buy() for _ in range(5)]
        await anyio.sleep(0.4)
        for order in orders:
            detail = (await api.get(f"orders/{order['id']}")).body
            assert detail["status"] == "RECEIVED"
            assert re.fullmatch(r"\d{6}", detail["smsCode"])
        record = sb.order(orders[0]["id"])
        assert 0.05 <= record.code_delivered_at - record.created_at <= 0.4  # type: ignore[operator]


async def test_no_code_ratio_one_means_no_code_ever_arrives() -> None:
    async with (
        Sandbox(code_delay=(0.01, 0.02), no_code_ratio=1.0) as sb,
        aiohttp.ClientSession() as s,
    ):
        order = await Caller(s, sb).buy()
        await anyio.sleep(0.1)
        assert sb.order(order["id"]).status == "PENDING"


async def test_expiry_refunds_automatically() -> None:
    async with Sandbox(order_ttl=0.3, auto_deliver=False) as sb, aiohttp.ClientSession() as s:
        api = Caller(s, sb)
        order = await api.buy()
        kept = await api.buy()
        sb.deliver_code(kept["id"], "111111")
        await anyio.sleep(0.5)
        detail = (await api.get(f"orders/{order['id']}")).body
        assert detail["status"] == "EXPIRED"
        assert detail["smsCode"] is None
        assert (await api.get(f"orders/{kept['id']}")).body["status"] == "RECEIVED"
        assert sb.balance() == Decimal(100) - Decimal("0.18")
        ledger = sb.ledger()
        assert ledger.refunds_by_order == {order["id"]: Decimal("0.18")}
        assert ledger.balanced
        conflict = await api.post(f"orders/{order['id']}/ban")
        assert (conflict.status, conflict.error_code) == (409, "CONFLICT")


async def test_advance_delivers_codes_that_became_due() -> None:
    async with Sandbox(code_delay=(10, 20), order_ttl=60) as sb, aiohttp.ClientSession() as s:
        order = await Caller(s, sb).buy()
        sb.advance(5)
        assert sb.order(order["id"]).status == "PENDING"
        sb.advance(20)
        assert sb.order(order["id"]).status == "RECEIVED"
        assert sb.clock.offset == 25


async def test_advance_expires_and_refunds() -> None:
    async with Sandbox(no_code_ratio=1, order_ttl=60) as sb, aiohttp.ClientSession() as s:
        api = Caller(s, sb)
        order = await api.buy()
        sb.advance(61)
        assert (await api.get(f"orders/{order['id']}")).body["status"] == "EXPIRED"
        assert sb.ledger().refunded == Decimal("0.18")
        assert sb.balance() == Decimal(100)


async def test_forced_statuses_are_served_as_is(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.set_order_status(order["id"], "ON_HOLD")
    assert (await api.get(f"orders/{order['id']}")).body["status"] == "ON_HOLD"
    listed = (await api.get("orders")).body["orders"]
    assert listed[0]["status"] == "ON_HOLD"
    assert (await api.get("orders", params={"status": "PENDING"})).body["total"] == 0
    record = sb.set_order_status(order["id"], "CANCELLED", refund=True)
    assert record.refunded == Decimal("0.18")
    sb.set_order_status(order["id"], "REFUNDED", refund=True)  # refunded at most once
    assert sb.ledger().refunded == Decimal("0.18")


async def test_received_without_code_can_still_get_one(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.set_order_status(order["id"], "RECEIVED")
    assert (await api.get(f"orders/{order['id']}")).body["smsCode"] is None
    sb.deliver_code(order["id"], "999000")
    assert (await api.get(f"orders/{order['id']}")).body["smsCode"] == "999000"


# -- listing ---------------------------------------------------------------------


async def test_list_is_newest_first_with_totals(api: Caller) -> None:
    ids = [(await api.buy())["id"] for _ in range(5)]
    page = (await api.get("orders", params={"limit": 2})).body
    assert [o["id"] for o in page["orders"]] == ids[::-1][:2]
    assert (page["total"], page["page"], page["limit"], page["totalPages"]) == (5, 1, 2, 3)
    assert set(page["orders"][0]) >= {"id", "smsCode", "status", "createdAt", "phoneNumber"}


async def test_list_pagination_edges(api: Caller) -> None:
    ids = [(await api.buy())["id"] for _ in range(5)]
    last = (await api.get("orders", params={"limit": 2, "page": 3})).body
    assert [o["id"] for o in last["orders"]] == [ids[0]]
    beyond = (await api.get("orders", params={"limit": 2, "page": 4})).body
    assert beyond["orders"] == []
    assert (beyond["total"], beyond["page"], beyond["totalPages"]) == (5, 4, 3)
    default = (await api.get("orders")).body
    assert default["limit"] == 20
    everything = (await api.get("orders", params={"limit": 100})).body
    assert [o["id"] for o in everything["orders"]] == ids[::-1]


async def test_empty_list_has_zero_pages(api: Caller) -> None:
    body = (await api.get("orders")).body
    assert body == {"orders": [], "total": 0, "page": 1, "limit": 20, "totalPages": 0}


async def test_list_limit_100_of_many(api: Caller, sb: Sandbox) -> None:
    for _ in range(120):
        await api.buy("discord", "india")
    body = (await api.get("orders", params={"limit": 100, "page": 2})).body
    assert len(body["orders"]) == 20
    assert body["totalPages"] == 2


async def test_list_filtered_by_status_stays_newest_first(api: Caller, sb: Sandbox) -> None:
    ids = [(await api.buy())["id"] for _ in range(6)]
    # Codes arrive out of creation order; the RECEIVED list is still by creation.
    for i in (4, 1, 3):
        sb.deliver_code(ids[i])
    await api.post(f"orders/{ids[0]}/cancel")
    received = (await api.get("orders", params={"status": "RECEIVED"})).body
    assert [o["id"] for o in received["orders"]] == [ids[4], ids[3], ids[1]]
    assert all(o["smsCode"] for o in received["orders"])
    pending = (await api.get("orders", params={"status": "PENDING", "limit": 1})).body
    assert ([o["id"] for o in pending["orders"]], pending["total"]) == ([ids[5]], 2)
    cancelled = (await api.get("orders", params={"status": "CANCELLED"})).body
    assert [o["id"] for o in cancelled["orders"]] == [ids[0]]
    assert sb.ledger().orders_by_status == {"PENDING": 2, "RECEIVED": 3, "CANCELLED": 1}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "x"}, "page"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"status": "LOST"}, "status"),
        ({"status": "pending"}, "status"),
    ],
)
async def test_list_validation_names_the_field(
    api: Caller, params: dict[str, str], field: str
) -> None:
    reply = await api.get("orders", params=params)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)
    if field == "limit":
        assert reply.body["error"] == "limit must be between 1 and 100"
