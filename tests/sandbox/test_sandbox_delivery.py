"""Which orders get their code by themselves (delivery rates) and which can be bought (stock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def auto() -> AsyncIterator[Sandbox]:
    """A sandbox whose codes arrive by themselves 1-2 s after purchase (``advance`` past it)."""
    async with Sandbox(seed=4, code_delay=(1, 2)) as sandbox:
        yield sandbox


def got_code(sb: Sandbox, *args: str) -> bool:
    order = sb.place_order(*args)
    sb.advance(3)
    return sb.order(order.id).sms_code is not None


async def test_the_most_specific_rule_wins(auto: Sandbox) -> None:
    auto.set_delivery_rate(0.0)
    auto.set_delivery_rate(1.0, service="telegram")
    auto.set_delivery_rate(0.0, country="usa")
    auto.set_delivery_rate(1.0, service="telegram", country="usa", operator="att")
    assert got_code(auto, "telegram", "russia")  # service beats global
    assert not got_code(auto, "telegram", "usa")  # country beats service
    assert got_code(auto, "telegram", "usa", "att")  # operator beats country
    assert not got_code(auto, "whatsapp", "russia")  # global
    auto.set_delivery_rate(None)  # removed: no_code_ratio (0) decides
    assert got_code(auto, "whatsapp", "russia")


async def test_an_operator_rule_beats_a_country_rule(auto: Sandbox) -> None:
    auto.set_delivery_rate(0.0, country="russia")
    auto.set_delivery_rate(1.0, operator="megafon")
    assert got_code(auto, "telegram", "russia", "megafon")
    assert not got_code(auto, "telegram", "russia", "mts")


async def test_a_rule_overrides_no_code_ratio() -> None:
    async with Sandbox(seed=4, code_delay=(1, 2), no_code_ratio=1) as sb:
        assert not got_code(sb, "telegram", "russia")
        sb.set_delivery_rate(1.0, service="telegram", country="russia")
        assert got_code(sb, "telegram", "russia")


async def test_rates_are_drawn_from_the_seed() -> None:
    async def codes(seed: int) -> list[bool]:
        async with Sandbox(seed=seed, code_delay=(1, 2)) as sb:
            sb.set_delivery_rate(0.5, service="google")
            return [got_code(sb, "google", "india") for _ in range(40)]

    first = await codes(8)
    assert 8 <= sum(first) <= 32
    assert first == await codes(8)


async def test_delivery_rates_over_http_and_validated(auto: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        api = Caller(session, auto)
        rule = {"rate": 0, "service": "discord", "operator": "any"}
        reply = await api.post("/_sandbox/delivery", rule)
        assert reply.body == {"rate": 0, "service": "discord", "country": None, "operator": "any"}
        assert not got_code(auto, "discord", "brazil")
        await api.post("/_sandbox/delivery", {"rate": None, "service": "discord"})
        assert got_code(auto, "discord", "brazil")
        for bad in ({}, {"rate": 2}, {"rate": "1"}, {"rate": 1, "country": "atlantis"}):
            reply = await api.post("/_sandbox/delivery", bad)
            assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR"), bad
    with pytest.raises(ValueError, match="operator"):
        auto.set_delivery_rate(1, operator="nokia")
    with pytest.raises(ValueError, match="rate"):
        auto.set_delivery_rate(-0.1)


async def test_any_skips_operators_without_stock(api: Caller, sb: Sandbox) -> None:
    sb.set_stock("whatsapp", "usa", 0, operator="tmobile")
    sb.set_stock("whatsapp", "usa", 0, operator="verizon")
    assert (await api.buy("whatsapp", "usa"))["operator"] == "att"
    named = await api.post("orders", {"service": "whatsapp", "country": "usa",
                                      "operator": "verizon"})  # fmt: skip
    assert (named.status, named.error_code) == (503, "PROVIDER_ERROR")
    await api.post(
        "/_sandbox/stock", {"service": "whatsapp", "country": "usa", "operator": "att", "count": 0}
    )
    operators = await api.get("operators", params={"service": "whatsapp", "country": "usa"})
    assert [o["count"] for o in operators.body] == [0, 0, 0, 0]
    reply = await api.post("orders", {"service": "whatsapp", "country": "usa"})
    assert (reply.status, reply.error_code) == (503, "PROVIDER_ERROR")
    assert "no numbers" in reply.body["error"]
    assert len(sb.orders()) == 1
