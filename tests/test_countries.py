"""Countries by id, ISO code or name, wherever a country is taken: one catalogue per client."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import gsim_async
from gsim_async import InvalidArgumentError
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

CATALOGUE = "GET /api/v1/countries"
PURCHASES = "POST /api/v1/orders"


@pytest.mark.parametrize("country", ["russia", "RU", "ru", "Russia", "RUSSIA", " russia "])
async def test_an_id_an_iso_code_or_a_name_buy_in_the_same_country(
    client: gsim_async.Client, sandbox: Sandbox, country: str
) -> None:
    order = await client.orders.create("telegram", country)
    assert order.country == "russia"
    assert sandbox.order(order.id).country == "russia"


async def test_an_id_costs_no_request_a_name_one_then_none(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    await client.orders.create("telegram", "russia")
    assert sandbox.stats.count(CATALOGUE) == 0  # an id goes as it is
    await client.orders.create("telegram", "United Kingdom")
    await client.orders.create("telegram", "KZ")
    await client.orders.create("telegram", "india")
    assert sandbox.stats.count(CATALOGUE) == 1  # read once, then kept
    assert [o.country for o in sandbox.orders()] == ["russia", "uk", "kazakhstan", "india"]


async def test_lookups_at_once_share_one_request(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    orders = await asyncio.gather(*(client.orders.create("telegram", "RU") for _ in range(10)))
    assert {o.country for o in orders} == {"russia"}
    assert sandbox.stats.count(CATALOGUE) == 1


async def test_the_full_country_list_fills_the_catalogue(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    await client.countries()
    await client.orders.create("telegram", "Germany")
    assert sandbox.stats.count(CATALOGUE) == 1
    await client.countries(service="telegram")  # a service's list: not the whole catalogue
    await client.orders.create("telegram", "BR")
    assert sandbox.stats.count(CATALOGUE) == 2


@pytest.mark.parametrize(
    ("country", "suggested"),
    [("Rusia", "russia (Russia)"), ("Kazakstan", "kazakhstan (Kazakhstan)"), ("Germny", "germany")],
)
async def test_an_unknown_name_names_close_matches_and_buys_nothing(
    client: gsim_async.Client, sandbox: Sandbox, country: str, suggested: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="did you mean") as caught:
        await client.orders.create("telegram", country)
    assert suggested in str(caught.value)
    assert sandbox.stats.count(PURCHASES) == 0
    assert sandbox.balance() == Decimal("100")


async def test_an_unknown_name_without_close_matches_says_where_to_look(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"client\.countries\(\)"):
        await client.orders.create("telegram", "Atlantis Prime")
    assert sandbox.stats.count(PURCHASES) == 0


async def test_repeated_unknown_names_do_not_reread_a_fresh_catalogue(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    for _ in range(3):
        with pytest.raises(InvalidArgumentError):
            await client.orders.create("telegram", "Narnia")
    assert sandbox.stats.count(CATALOGUE) == 1


async def test_an_unknown_id_is_refused_by_the_server_and_nothing_is_bought(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    # An id-shaped value goes as it is, the catalogue read or not: the server judges it.
    with pytest.raises(gsim_async.ValidationError, match="atlantis"):
        await client.orders.create("telegram", "atlantis")
    await client.countries()
    with pytest.raises(gsim_async.ValidationError, match="atlantis"):
        await client.orders.create("telegram", "atlantis")
    assert sandbox.stats.count(PURCHASES) == 2
    assert sandbox.ledger().charged == 0


async def get_code(loop: gsim_async.Activations, sandbox: Sandbox) -> str:
    """The code of the loop's first try (the sandbox delivers it at once)."""
    async for act in loop:
        async with act:
            sandbox.deliver_code(act.order.id, "654321")
            return await act.wait_for_code(timeout=5)
    raise AssertionError("the loop ended without a try")


async def test_an_id_the_catalogue_leaves_out_is_still_bought_wherever_a_country_is_taken(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    # Seen against a mock server: once the client had read a catalogue that did not list
    # "russia" (as a real one may, for a country out of stock for a moment), every call
    # naming it raised InvalidArgumentError "not a known country id".
    sandbox.set_faults(countries_hidden=["russia"])
    assert "russia" not in [c.id for c in await client.countries()]
    order = await client.orders.create("telegram", "russia")
    assert sandbox.order(order.id).country == "russia"
    assert await client.operators("telegram", "russia")
    async with client.orders.activation("telegram", "russia") as act:
        sandbox.deliver_code(act.order.id, "123456")
        assert await act.wait_for_code(timeout=5) == "123456"
    loop = client.orders.activations("telegram", ["russia", "KZ"])
    assert await get_code(loop, sandbox) == "654321"
    assert loop.orders[0].country == "russia"
    assert [s.country for s in await client.orders.stats(country="russia")] == ["russia"]


async def test_a_country_the_catalogue_leaves_out_is_unknown_by_code_or_name(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    # Only the catalogue knows codes and names: those it does not list fail here.
    sandbox.set_faults(countries_hidden=["russia"])
    for country in ("RU", "Russia"):
        with pytest.raises(InvalidArgumentError, match="not a known country"):
            await client.orders.create("telegram", country)
    assert sandbox.stats.count(PURCHASES) == 0


async def test_activations_ask_the_server_about_an_unlisted_id_before_buying(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", ["russia", "atlantis"])
    with pytest.raises(gsim_async.ValidationError, match="atlantis"):
        await get_code(loop, sandbox)
    assert sandbox.stats.count(PURCHASES) == 0


async def test_operators_take_a_country_name(client: gsim_async.Client) -> None:
    by_name = await client.operators("telegram", "Russia")
    assert by_name == await client.operators("telegram", "russia")
    assert [o.id for o in by_name][:2] == ["any", "mts"]


async def test_activation_takes_an_iso_code(client: gsim_async.Client, sandbox: Sandbox) -> None:
    async with client.orders.activation("telegram", "KZ", max_price="0.20") as act:
        sandbox.deliver_code(act.order.id, "123456")
        assert await act.wait_for_code(timeout=1) == "123456"
    assert act.order.country == "kazakhstan"


async def test_views_share_the_catalogue(client: gsim_async.Client, sandbox: Sandbox) -> None:
    await client.orders.create("telegram", "RU")
    await client.with_options(timeout=5).orders.create("telegram", "Kazakhstan")
    assert sandbox.stats.count(CATALOGUE) == 1
