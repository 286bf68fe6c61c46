"""Auth, account and catalogue endpoints, unknown routes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_balance_is_a_json_number_in_usd(api: Caller) -> None:
    reply = await api.get("balance")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body == {"balance": Decimal(100), "currency": "USD"}


async def test_money_is_serialised_exactly(api: Caller, sb: Sandbox) -> None:
    sb.set_balance("5.51")
    assert (await api.get("balance")).text == '{"balance":5.51,"currency":"USD"}'
    operators = await api.get("operators", params={"service": "telegram", "country": "russia"})
    assert '"price":0.18,' in operators.text


async def test_missing_key_is_401(api: Caller) -> None:
    reply = await api.get("balance", key=None)
    assert reply.status == 401
    assert reply.body["code"] == "UNAUTHORIZED"
    assert reply.body["error"]


@pytest.mark.parametrize("header", ["Bearer 2s_nope", "Basic abc", "Bearer", "2s_token"])
async def test_unknown_or_malformed_key_is_401(api: Caller, header: str) -> None:
    reply = await api.get("balance", key=None, headers={"Authorization": header})
    assert (reply.status, reply.error_code) == (401, "UNAUTHORIZED")


async def test_revoked_key_is_403(api: Caller, sb: Sandbox) -> None:
    other = sb.add_key(balance=5)
    assert (await api.get("balance", key=other)).body["balance"] == 5
    sb.revoke_key(other)
    reply = await api.get("balance", key=other)
    assert (reply.status, reply.error_code) == (403, "FORBIDDEN")
    assert (await api.get("balance")).status == 200


async def test_default_key_looks_like_a_gsim_key(sb: Sandbox) -> None:
    assert sb.api_key.startswith("2s_")
    assert len(sb.api_key) == 43
    assert sb.api_key[3:].isalnum()


async def test_services_list_prices_and_stock(api: Caller) -> None:
    services = (await api.get("services")).body
    ids = {s["id"] for s in services}
    assert {"telegram", "whatsapp", "google", "discord", "instagram", "openai"} <= ids
    for service in services:
        assert set(service) == {"id", "name", "minPrice", "count"}
        assert isinstance(service["minPrice"], Decimal)
        assert service["minPrice"] > 0
        assert service["count"] > 0


async def test_countries_all_and_for_one_service(api: Caller) -> None:
    countries = (await api.get("countries")).body
    by_id = {c["id"]: c for c in countries}
    assert by_id["russia"]["iso"] == "RU"
    assert by_id["usa"]["iso"] == "US"
    assert set(by_id["uk"]) == {"id", "name", "iso", "minPrice", "count"}
    telegram = {
        c["id"]: c for c in (await api.get("countries", params={"service": "telegram"})).body
    }
    assert telegram["russia"]["minPrice"] == Decimal("0.18")
    assert telegram["russia"]["count"] < by_id["russia"]["count"]


async def test_countries_of_an_unknown_service_is_400(api: Caller) -> None:
    reply = await api.get("countries", params={"service": "myspace"})
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert "service" in reply.body["error"]


async def test_operators_any_first_at_the_cheapest_price(api: Caller) -> None:
    reply = await api.get("operators", params={"service": "telegram", "country": "russia"})
    operators = reply.body
    assert operators[0]["id"] == "any"
    assert operators[0]["price"] == min(o["price"] for o in operators[1:])
    assert operators[0]["count"] == sum(o["count"] for o in operators[1:])
    assert {o["id"] for o in operators[1:]} == {"mts", "megafon", "beeline"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"country": "russia"}, "service"),
        ({"service": "telegram"}, "country"),
        ({"service": "nope", "country": "russia"}, "service"),
        ({"service": "telegram", "country": "atlantis"}, "country"),
    ],
)
async def test_operators_validation_names_the_field(
    api: Caller, params: dict[str, str], field: str
) -> None:
    reply = await api.get("operators", params=params)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)


async def test_stock_goes_down_on_purchase(api: Caller) -> None:
    params = {"service": "telegram", "country": "russia"}
    before = (await api.get("operators", params=params)).body
    order = await api.buy()
    after = (await api.get("operators", params=params)).body
    assert after[0]["count"] == before[0]["count"] - 1
    bought = next(o for o in after if o["id"] == order["operator"])
    assert bought["count"] == next(o for o in before if o["id"] == order["operator"])["count"] - 1


async def test_unknown_route_is_a_json_404(api: Caller) -> None:
    reply = await api.get("nothing/here")
    assert (reply.status, reply.error_code) == (404, "NOT_FOUND")
    outside = await api.get("/favicon.ico")
    assert (outside.status, outside.error_code) == (404, "NOT_FOUND")


async def test_wrong_method_is_a_json_405(api: Caller) -> None:
    reply = await api.request("PUT", "orders")
    assert reply.status == 405
    assert reply.body["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in reply.headers["Allow"]
