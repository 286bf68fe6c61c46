"""The /_sandbox/ control API, which drives a sandbox from another process."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_info(api: Caller, sb: Sandbox) -> None:
    info = (await api.get("/_sandbox/", key=None)).body
    assert info["base_url"] == sb.base_url
    assert info["api_key"] == sb.api_key
    assert info["keys"] == [sb.api_key]


async def test_deliver_with_and_without_a_code(api: Caller, sb: Sandbox) -> None:
    first, second = await api.buy(), await api.buy()
    reply = await api.post(f"/_sandbox/orders/{first['id']}/deliver", {"code": "123456"}, key=None)
    assert reply.status == 200
    assert (reply.body["status"], reply.body["sms_code"]) == ("RECEIVED", "123456")
    assert reply.body["code_delivered_at"] > 0
    reply = await api.post(f"/_sandbox/orders/{second['id']}/deliver", key=None)
    assert len(reply.body["sms_code"]) == 6
    again = await api.post(f"/_sandbox/orders/{second['id']}/deliver", key=None)
    assert (again.status, again.error_code) == (409, "CONFLICT")
    missing = await api.post("/_sandbox/orders/cmnothing/deliver", key=None)
    assert (missing.status, missing.error_code) == (404, "NOT_FOUND")


async def test_force_order_status(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    reply = await api.post(
        f"/_sandbox/orders/{order['id']}/status", {"status": "CANCELLED", "refund": True}
    )
    assert reply.body["status"] == "CANCELLED"
    assert reply.body["refunded"] == Decimal("0.18")
    assert (await api.get(f"orders/{order['id']}")).body["status"] == "CANCELLED"
    bad = await api.post(f"/_sandbox/orders/{order['id']}/status", {})
    assert (bad.status, bad.error_code) == (400, "VALIDATION_ERROR")


async def test_orders_records(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    sb.deliver_code(order["id"], "555000")
    records = (await api.get("/_sandbox/orders")).body["orders"]
    assert len(records) == 1
    record = records[0]
    assert record["id"] == order["id"]
    assert record["sms_code"] == "555000"
    assert record["code_delivered_at"] >= record["created_at"]
    assert record["price"] == Decimal("0.18")
    one = (await api.get(f"/_sandbox/orders/{order['id']}")).body
    assert one == record


async def test_inbound_sms_and_call(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    reply = await api.post(
        f"/_sandbox/rentals/{rental['id']}/sms", {"from": "+14155550100", "body": "code 4321"}
    )
    assert reply.body["body"] == "code 4321"
    assert reply.body["direction"] == "INBOUND"
    call = await api.post(f"/_sandbox/rentals/{rental['id']}/calls", {"from": "+14155550100"})
    assert call.body["status"] == "COMPLETED"
    detail = (await api.get(f"rentals/{rental['id']}")).body
    assert detail["messages"][0]["id"] == reply.body["id"]
    assert detail["calls"][0]["id"] == call.body["id"]
    bad = await api.post(f"/_sandbox/rentals/{rental['id']}/sms", {"from": "+1415"})
    assert bad.status == 400
    status = await api.post(f"/_sandbox/rentals/{rental['id']}/status", {"status": "EXPIRED"})
    assert status.body["status"] == "EXPIRED"
    listed = (await api.get("/_sandbox/rentals")).body["rentals"]
    assert [r["status"] for r in listed] == ["EXPIRED"]


async def test_balance_and_keys(api: Caller, sb: Sandbox) -> None:
    reply = await api.post("/_sandbox/balance", {"balance": 5})
    assert reply.body == {"key": sb.api_key, "balance": 5}
    assert sb.balance() == 5
    created = (await api.post("/_sandbox/keys", {"balance": "2.50"})).body
    key = created["key"]
    assert created["balance"] == Decimal("2.50")
    assert (await api.get("balance", key=key)).body["balance"] == Decimal("2.50")
    await api.post("/_sandbox/balance", {"balance": 0.1, "key": key})
    assert (await api.get("/_sandbox/balance", params={"key": key})).body["balance"] == Decimal(
        "0.1"
    )
    await api.post(f"/_sandbox/keys/{key}/revoke")
    assert (await api.get("balance", key=key)).status == 403
    unknown = await api.post("/_sandbox/balance", {"balance": 1, "key": "2s_nobody"})
    assert unknown.status == 404


async def test_faults_over_http(api: Caller, sb: Sandbox) -> None:
    reply = await api.post("/_sandbox/faults", {"providerErrorRate": 1, "latency": [0, 0.01]})
    assert reply.body["provider_error_rate"] == 1.0
    assert sb.faults.provider_error_rate == 1.0
    assert sb.faults.latency == (0.0, 0.01)
    assert (await api.post("orders", {"service": "telegram", "country": "russia"})).status == 503
    assert (await api.get("/_sandbox/faults")).body["latency"] == [0, Decimal("0.01")]
    bad = await api.post("/_sandbox/faults", {"chaos": 1})
    assert (bad.status, bad.error_code) == (400, "VALIDATION_ERROR")
    await api.post("/_sandbox/faults/reset")
    assert sb.faults.provider_error_rate == 0.0


async def test_stats_and_ledger_over_http(api: Caller, sb: Sandbox) -> None:
    order = await api.buy()
    await api.post(f"orders/{order['id']}/cancel")
    await api.get("/_sandbox/ledger")
    stats = (await api.get("/_sandbox/stats")).body
    assert stats["total"] == 2
    assert stats["by_route_status"]["POST /api/v1/orders"] == {"200": 1}
    assert stats["by_status"] == {"200": 2}
    ledger = (await api.get("/_sandbox/ledger")).body
    assert ledger["balanced"] is True
    assert ledger["charged"] == Decimal("0.18")
    assert ledger["refunded"] == Decimal("0.18")
    assert ledger["orders_by_status"] == {"CANCELLED": 1}
    assert [e["kind"] for e in ledger["entries"]] == ["order", "order_refund"]
    reset = (await api.post("/_sandbox/stats/reset")).body
    assert reset["total"] == 0


async def test_advance_and_stock_over_http() -> None:
    async with (
        Sandbox(no_code_ratio=1, order_ttl=30) as sb,
        aiohttp.ClientSession() as session,
    ):
        api = Caller(session, sb)
        order = await api.buy()
        reply = await api.post("/_sandbox/advance", {"seconds": 31})
        assert reply.body["offset"] == 31
        assert sb.order(order["id"]).status == "EXPIRED"
        stock = {"service": "telegram", "country": "russia", "count": 0}
        assert (await api.post("/_sandbox/stock", stock)).status == 200
        reply = await api.post("orders", {"service": "telegram", "country": "russia"})
        assert reply.status == 503


async def test_unknown_control_route_is_404(api: Caller) -> None:
    reply = await api.get("/_sandbox/nothing")
    assert (reply.status, reply.error_code) == (404, "NOT_FOUND")
    assert (await api.request("DELETE", "/_sandbox/stats")).status == 405


async def test_sandbox_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="code_delay"):
        Sandbox(code_delay=(5, 1))
    with pytest.raises(ValueError, match="no_code_ratio"):
        Sandbox(no_code_ratio=2)
    with pytest.raises(ValueError, match="order_ttl"):
        Sandbox(order_ttl=0)
    idle = Sandbox(api_key="2s_" + "k" * 40, balance="12.5")
    assert idle.api_key == "2s_" + "k" * 40
    assert idle.balance() == Decimal("12.5")
    with pytest.raises(RuntimeError, match="not running"):
        _ = idle.base_url
    with pytest.raises(ValueError, match="exists"):
        idle.add_key(idle.api_key)
    with pytest.raises(TypeError):
        idle.add_key(42)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        idle.revoke_key("2s_nobody")
