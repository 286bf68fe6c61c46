"""Another client on the same key: purchases the sandbox makes as that client would."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox, StateError

pytestmark = pytest.mark.anyio


async def test_place_order_is_a_purchase_like_any_other(api: Caller, sb: Sandbox) -> None:
    mine = await api.buy()
    theirs = sb.place_order("telegram", "russia")
    assert (theirs.status, theirs.operator, theirs.price) == ("PENDING", "mts", Decimal("0.18"))
    assert theirs.api_key == sb.api_key
    listed = (await api.get("orders")).body["orders"]
    assert [o["id"] for o in listed] == [theirs.id, mine["id"]]
    detail = (await api.get(f"orders/{theirs.id}")).body
    assert detail["phoneNumber"] == theirs.phone_number
    ledger = sb.ledger()
    assert ledger.charges_by_order == {mine["id"]: Decimal("0.18"), theirs.id: Decimal("0.18")}
    assert ledger.balanced
    named = sb.place_order("telegram", "russia", "beeline")
    assert (named.operator, named.price) == ("beeline", Decimal("0.23"))


async def test_place_order_follows_the_purchase_rules(sb: Sandbox) -> None:
    other = sb.add_key(balance="0.10")
    with pytest.raises(StateError, match="INSUFFICIENT_BALANCE"):
        sb.place_order("telegram", "russia", key=other)
    with pytest.raises(ValueError, match="service"):
        sb.place_order("myspace", "russia")
    sb.set_stock("telegram", "russia", 0)
    with pytest.raises(StateError, match="PROVIDER_ERROR"):
        sb.place_order("telegram", "russia")
    sb.revoke_key(other)
    with pytest.raises(StateError, match="revoked"):
        sb.place_order("telegram", "usa", key=other)
    with pytest.raises(KeyError):
        sb.place_order("telegram", "russia", key="2s_nobody")
    assert sb.orders() == []
    assert sb.orders(other) == []


async def test_place_order_ignores_the_faults(sb: Sandbox) -> None:
    sb.set_faults(provider_error_rate=1, purchase_delay=5)
    order = sb.place_order("whatsapp", "usa")
    assert [o.id for o in sb.orders()] == [order.id]


async def test_place_rental_of_a_searched_number(api: Caller, sb: Sandbox) -> None:
    offer = await api.offer("GB", "Mobile")
    rental = sb.place_rental(offer["phoneNumber"])
    assert (rental.country, rental.number_type, rental.status) == ("GB", "MOBILE", "ACTIVE")
    assert rental.monthly_price == Decimal("2.60")
    listed = (await api.get("rentals")).body["rentals"]
    assert [r["id"] for r in listed] == [rental.id]
    mine = await api.post("rentals", offer)  # the other client got it first
    assert (mine.status, mine.error_code) == (409, "CONFLICT")
    assert sb.ledger().charges_by_rental == {rental.id: Decimal("2.60")}
    with pytest.raises(StateError, match="already rented"):
        sb.place_rental(offer["phoneNumber"])
    with pytest.raises(ValueError, match="numberType"):
        sb.place_rental(offer["phoneNumber"], number_type="LOCAL")


async def test_place_rental_of_a_number_never_offered(api: Caller, sb: Sandbox) -> None:
    oakland = sb.place_rental("+15105550123")
    assert (oakland.country, oakland.number_type) == ("US", "LOCAL")
    toll_free = sb.place_rental("+18005550123", key=sb.add_key())
    assert (toll_free.country, toll_free.number_type) == ("US", "TOLL_FREE")
    with pytest.raises(ValueError, match="number_type"):
        sb.place_rental("+33612345678")
    paris = sb.place_rental("+33612345678", number_type="MOBILE", country="fr")
    assert (paris.country, paris.monthly_price) == ("FR", Decimal("2.60"))
    with pytest.raises(ValueError, match=r"E\.164"):
        sb.place_rental("0612345678")
    found = await api.get("rentals/search", params={"country": "US", "areaCode": "510",
                                                    "contains": "5550123"})  # fmt: skip
    assert "+15105550123" not in [n["phoneNumber"] for n in found.body["numbers"]]
    assert sb.balance() == Decimal("100") - Decimal("1.50") - Decimal("2.60")


async def test_other_buyer_over_http(api: Caller, sb: Sandbox) -> None:
    other = sb.add_key()
    reply = await api.post(
        "/_sandbox/orders", {"service": "telegram", "country": "russia", "key": other}
    )
    assert reply.status == 200
    assert (reply.body["api_key"], reply.body["status"]) == (other, "PENDING")
    assert [o.id for o in sb.orders(other)] == [reply.body["id"]]
    unknown = await api.post("/_sandbox/orders", {"service": "nope", "country": "russia"})
    assert (unknown.status, unknown.error_code) == (400, "VALIDATION_ERROR")
    sb.set_balance(0)
    poor = await api.post("/_sandbox/orders", {"service": "telegram", "country": "russia"})
    assert (poor.status, poor.error_code) == (409, "CONFLICT")
    rented = await api.post("/_sandbox/rentals", {"phone_number": "+14155550199", "key": other})
    assert rented.status == 200
    assert (rented.body["country"], rented.body["number_type"]) == ("US", "LOCAL")
    assert [r.id for r in sb.rentals(other)] == [rented.body["id"]]
    missing = await api.post("/_sandbox/rentals", {})
    assert (missing.status, missing.error_code) == (400, "VALIDATION_ERROR")
