"""Account and catalogue calls against the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_balance_is_exact_decimal(client: gsim_async.Client, sandbox: Sandbox) -> None:
    sandbox.set_balance("5.51")
    balance = await client.balance()
    assert balance == gsim_async.Balance(balance=Decimal("5.51"), currency="USD")


async def test_services_have_prices_and_stock(client: gsim_async.Client) -> None:
    services = await client.services()
    telegram = next(s for s in services if s.id == "telegram")
    assert telegram.name == "Telegram"
    assert isinstance(telegram.min_price, Decimal) and telegram.min_price > 0
    assert telegram.count > 0


async def test_countries_filtered_by_service(client: gsim_async.Client) -> None:
    every = await client.countries()
    for_telegram = await client.countries(service="telegram")
    assert {c.id for c in for_telegram} <= {c.id for c in every}
    russia = next(c for c in for_telegram if c.id == "russia")
    assert russia.iso == "RU"
    assert isinstance(russia.min_price, Decimal)


async def test_operators_include_any_with_cheapest_price(client: gsim_async.Client) -> None:
    operators = await client.operators("telegram", "russia")
    by_id = {o.id: o for o in operators}
    assert "any" in by_id
    assert by_id["any"].price == min(o.price for o in operators)


async def test_prices_add_up_exactly(client: gsim_async.Client) -> None:
    # Decimal arithmetic: ten purchases at the listed price cost exactly ten times it.
    price = (await client.operators("telegram", "russia"))[0].price
    before = (await client.balance()).balance
    for _ in range(10):
        await client.orders.create("telegram", "russia", operator="any")
    after = (await client.balance()).balance
    cheapest = min(o.price for o in await client.operators("telegram", "russia"))
    assert before - after == cheapest * 10
    assert price >= cheapest
