"""A 2xx whose body cannot be read: the action happened, the answer is unparseable."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sandbox_helpers import Caller, Reply

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


def assert_unreadable(reply: Reply) -> None:
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.text.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


async def test_an_unreadable_purchase_was_charged(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(unreadable_2xx_rate=1)
    assert_unreadable(await api.post("orders", {"service": "telegram", "country": "russia"}))
    [order] = sb.orders()
    assert sb.ledger().charges_by_order == {order.id: Decimal("0.18")}
    listed = await api.get("orders")  # reads are answered as usual
    assert [o["id"] for o in listed.body["orders"]] == [order.id]


async def test_an_unreadable_rental_sms_and_call_happened(api: Caller, sb: Sandbox) -> None:
    offer = await api.offer()
    sb.set_faults(unreadable2xxRate=1)  # the camelCase name works too
    assert_unreadable(await api.post("rentals", offer))
    [rental] = sb.rentals()
    to = {"to": "+14155551234"}
    assert_unreadable(await api.post(f"rentals/{rental.id}/sms", {**to, "body": "hi"}))
    assert_unreadable(await api.post(f"rentals/{rental.id}/calls", to))
    assert (sb.rental(rental.id).messages, sb.rental(rental.id).calls) == (1, 1)
    assert sb.balance() == Decimal("100") - Decimal("1.50") - Decimal("0.05")
    assert sb.ledger().balanced


async def test_errors_and_reads_stay_readable(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(unreadable_2xx_rate=1)
    assert (await api.get("balance")).body["balance"] == 100
    bad = await api.post("orders", {"service": "nope", "country": "russia"})
    assert bad.error_code == "VALIDATION_ERROR"
