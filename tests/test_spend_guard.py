"""The spend guard in one client: a hard limit on net spend, and the breaker.

Everything over real HTTP against the sandbox; the money is read from its ledger and
"before any request" from its request counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async import (
    Breaker,
    BreakerOpenError,
    CodeTimeoutError,
    GuardError,
    InvalidArgumentError,
    NoCodeError,
    SpendLimit,
    SpendLimitError,
)
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

#: What the sandbox charges for telegram in russia, any operator (the cheapest, MTS).
PRICE = Decimal("0.18")
#: MegaFon, the next cheapest once MTS is sold out.
DEARER = Decimal("0.20")


class SignUpError(Exception):
    """The step after the code failed (the account could not be made)."""


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[Sandbox]:
    """Purchases take 0.3 s: every purchase started together is in flight at once."""
    async with Sandbox(seed=7, auto_deliver=False) as sb:
        sb.set_faults(purchase_delay=0.3)
        yield sb


def charged_orders(sandbox: Sandbox) -> int:
    return len(sandbox.ledger().charges_by_order)


def net(sandbox: Sandbox) -> Decimal:
    ledger = sandbox.ledger()
    return ledger.charged - ledger.refunded


async def enter(activation: gsim_async.Activation) -> None:
    async with activation:
        pytest.fail("the block must not run")


async def first_try(loop: gsim_async.Activations) -> None:
    async for act in loop:
        await enter(act)


async def buy_many(gsim: gsim_async.Client, n: int) -> list[gsim_async.Order | BaseException]:
    return await asyncio.gather(
        *(gsim.orders.create("telegram", "russia") for _ in range(n)), return_exceptions=True
    )


# -- the spend limit ----------------------------------------------------------------------


async def test_concurrent_purchases_cannot_pass_the_limit(slow_sandbox: Sandbox) -> None:
    limit = SpendLimit(PRICE * 5, per=timedelta(hours=1))
    async with fast_client(slow_sandbox, spend_limit=limit) as gsim:
        results = await buy_many(gsim, 20)
    bought = [r for r in results if isinstance(r, gsim_async.Order)]
    refused = [r for r in results if isinstance(r, SpendLimitError)]
    assert len(bought) == 5 and len(refused) == 15, results
    assert charged_orders(slow_sandbox) == 5
    assert net(slow_sandbox) == PRICE * 5  # exactly the limit, never past it
    assert all(e.limit == PRICE * 5 and e.retry_after is not None for e in refused)


async def test_a_purchase_in_flight_holds_its_reservation(slow_sandbox: Sandbox) -> None:
    # While the first purchases are on the wire nothing is spent yet, only reserved: a
    # check of what was spent alone would let every one of them through.
    async with fast_client(slow_sandbox, spend_limit=SpendLimit(PRICE * 2)) as gsim:
        await gsim.orders.create("telegram", "russia")  # the price is seen
        first = asyncio.ensure_future(gsim.orders.create("telegram", "russia"))
        await anyio.sleep(0.1)
        status = await gsim.guard.status()
        assert status.spend is not None
        assert status.spend.reserved == PRICE and status.spend.spent == PRICE
        assert status.spend.available == 0
        with pytest.raises(SpendLimitError) as refused:
            await gsim.orders.create("telegram", "russia")
        assert refused.value.reserved == PRICE
        await first
    assert charged_orders(slow_sandbox) == 2


async def test_a_refused_purchase_sends_no_request(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE)) as gsim:
        await gsim.orders.create("telegram", "russia")
        before = sandbox.stats.total
        with pytest.raises(SpendLimitError):
            await gsim.orders.create("telegram", "russia")
        with pytest.raises(SpendLimitError):
            await enter(gsim.orders.activation("telegram", "russia", max_price="0.50"))
        with pytest.raises(SpendLimitError):
            await first_try(gsim.orders.activations("telegram", ["russia", "kazakhstan"]))
        assert sandbox.stats.total == before


async def test_refunds_give_the_room_back(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE * 2)) as gsim:
        first = await gsim.orders.create("telegram", "russia")
        second = await gsim.orders.create("telegram", "russia")
        with pytest.raises(SpendLimitError):
            await gsim.orders.create("telegram", "russia")
        await gsim.orders.cancel(first)  # refunded by the program
        third = await gsim.orders.create("telegram", "russia")
        with pytest.raises(CodeTimeoutError):  # banned after its timeout: refunded
            await gsim.orders.wait_for_code(second, timeout=0.1)
        await gsim.orders.create("telegram", "russia")
        sandbox.set_order_status(third.id, "EXPIRED", refund=True)
        await gsim.orders.get(third)  # the client sees it expired (refunded in full)
        await gsim.orders.create("telegram", "russia")
        with pytest.raises(SpendLimitError):
            await gsim.orders.create("telegram", "russia")
    assert charged_orders(sandbox) == 5
    assert net(sandbox) == PRICE * 2


async def test_the_window_rolls(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE * 2, per=2)) as gsim:
        await gsim.orders.create("telegram", "russia")
        await anyio.sleep(1.0)
        await gsim.orders.create("telegram", "russia")
        with pytest.raises(SpendLimitError) as refused:
            await gsim.orders.create("telegram", "russia")
        # Room comes back when the first purchase leaves the window, a second from now.
        assert refused.value.retry_after is not None and 0.5 < refused.value.retry_after <= 1.0
        await anyio.sleep(refused.value.retry_after + 0.1)
        await gsim.orders.create("telegram", "russia")  # the first left the window
        with pytest.raises(SpendLimitError):
            await gsim.orders.create("telegram", "russia")
    assert charged_orders(sandbox) == 3


async def test_an_order_dearer_than_reserved_past_the_limit_is_cancelled(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE + Decimal("0.19"))) as gsim:
        await gsim.orders.create("telegram", "russia")  # 0.18: the price of "any"
        sandbox.set_stock("telegram", "russia", 0, operator="mts")  # "any" is now 0.20
        with pytest.raises(SpendLimitError) as refused:
            await gsim.orders.create("telegram", "russia")
        order = refused.value.order
        assert order is not None and order.price == DEARER and refused.value.code is None
        assert sandbox.order(order.id).status == "CANCELLED"
        status = await gsim.guard.status()
    assert status.spend is not None and status.spend.spent == PRICE
    assert net(sandbox) == PRICE


async def test_a_price_never_seen_is_read_from_the_catalogue_first(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE * 3)) as gsim:
        await gsim.orders.create("telegram", "russia", operator="beeline")  # 0.23, quoted
    assert sandbox.stats.count("GET /api/v1/operators") == 1
    assert charged_orders(sandbox) == 1


async def test_rentals_count_against_the_limit(sandbox: Sandbox) -> None:
    # A LOCAL number's base price is 1.15, charged 1.50 a month after the markup.
    async with fast_client(sandbox, spend_limit=SpendLimit("1.60")) as gsim:
        number = (await gsim.rentals.search("US", page_size=1))[0]
        await gsim.rentals.create(number.phone_number, "LOCAL", "US", "1.15")
        with pytest.raises(SpendLimitError):  # 0.10 left: no 0.18 order fits
            await gsim.orders.create("telegram", "russia")
        status = await gsim.guard.status()
    assert status.spend is not None and status.spend.spent == Decimal("1.50")
    assert charged_orders(sandbox) == 0


async def test_a_purchase_that_provably_bought_nothing_frees_its_reservation(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox, spend_limit=SpendLimit(PRICE)) as gsim:
        sandbox.set_faults(provider_error_rate=1.0)  # 503: nothing charged
        with pytest.raises(gsim_async.ProviderError):
            await gsim.orders.create("telegram", "russia", operator="mts")
        sandbox.clear_faults()
        await gsim.orders.create("telegram", "russia", operator="mts")
    assert charged_orders(sandbox) == 1


# -- the breaker ---------------------------------------------------------------------------


async def sign_up(gsim: gsim_async.Client, sandbox: Sandbox) -> None:
    """One activation whose code comes, and whose next step then fails."""
    async with gsim.orders.activation("telegram", "russia") as act:
        sandbox.deliver_code(act.order.id)
        await act.wait_for_code(timeout=5)
        raise SignUpError("the account could not be made")


async def fail_after_code(gsim: gsim_async.Client, sandbox: Sandbox) -> None:
    with pytest.raises(SignUpError):
        await sign_up(gsim, sandbox)


async def test_breaker_opens_after_blocks_fail_after_the_code(sandbox: Sandbox) -> None:
    # The reported case (openai-cpa #101): codes arrive, the step after them fails, and
    # the bot goes on buying.
    async with fast_client(sandbox, breaker=Breaker(3)) as gsim:
        for _ in range(3):
            await fail_after_code(gsim, sandbox)
        before = sandbox.stats.total
        with pytest.raises(BreakerOpenError) as held:
            await enter(gsim.orders.activation("telegram", "russia"))
        assert sandbox.stats.total == before  # refused before any request
        status = await gsim.guard.status()
    error = held.value
    assert (error.service, error.country, error.failures) == ("telegram", "russia", 3)
    assert error.after_code == 3 and error.last_error == "SignUpError"
    assert error.retry_after is not None and error.retry_after > 800  # the 15 min cooldown
    assert isinstance(error, GuardError) and isinstance(error, gsim_async.GsimError)
    assert charged_orders(sandbox) == 3
    assert [b.open for b in status.breakers] == [True]
    assert "left by an exception after the code came (SignUpError)" in status.breakers[0].describe()


async def test_breaker_opens_after_orders_end_without_a_code(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(3)) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        with pytest.raises(CodeTimeoutError):
            await gsim.orders.wait_for_code(order, timeout=0.05)
        async with gsim.orders.activation("telegram", "russia") as act:
            with pytest.raises(CodeTimeoutError):
                await act.wait_for_code(timeout=0.05)
        order = await gsim.orders.create("telegram", "russia")
        sandbox.set_order_status(order.id, "EXPIRED", refund=True)
        results = [r async for r in gsim.orders.as_completed([order], timeout=5)]
        assert isinstance(results[0].error, NoCodeError)
        before = sandbox.stats.total
        with pytest.raises(BreakerOpenError) as held:
            await gsim.orders.create("telegram", "russia")
        assert sandbox.stats.total == before
        other = await gsim.orders.create("telegram", "kazakhstan")  # per service and country
    assert held.value.no_code == 3
    assert charged_orders(sandbox) == 4
    assert net(sandbox) == other.price  # the three without a code refunded


async def test_a_success_resets_the_count(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(3)) as gsim:
        for _ in range(2):
            await fail_after_code(gsim, sandbox)
        async with gsim.orders.activation("telegram", "russia") as act:
            sandbox.deliver_code(act.order.id)
            await act.wait_for_code(timeout=5)
        for _ in range(2):
            await fail_after_code(gsim, sandbox)
        await gsim.orders.create("telegram", "russia")  # 2 in a row, not 4: still closed
        status = await gsim.guard.status()
    assert [(b.failures, b.open) for b in status.breakers] == [(2, False)]


async def test_cancelled_blocks_and_kept_orders_are_not_failures(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(1)) as gsim:
        async with gsim.orders.activation("telegram", "russia") as act:
            with pytest.raises(CodeTimeoutError):
                await act.wait_for_code(timeout=0.05, on_timeout="keep")
        task = asyncio.ensure_future(_block_cancelled_after_code(gsim, sandbox))
        await anyio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gsim.orders.create("telegram", "russia")
        status = await gsim.guard.status()
    assert status.breakers == ()


async def _block_cancelled_after_code(gsim: gsim_async.Client, sandbox: Sandbox) -> None:
    async with gsim.orders.activation("telegram", "russia") as act:
        sandbox.deliver_code(act.order.id)
        await act.wait_for_code(timeout=5)
        await anyio.sleep(60)  # stopped here, by the program's shutdown


async def test_after_the_cooldown_one_trial_goes_and_its_success_closes(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox, breaker=Breaker(2, cooldown=1)) as gsim:
        for _ in range(2):
            await fail_after_code(gsim, sandbox)
        with pytest.raises(BreakerOpenError):
            await gsim.orders.create("telegram", "russia")
        await anyio.sleep(1.1)
        async with gsim.orders.activation("telegram", "russia") as trial:
            with pytest.raises(BreakerOpenError) as held:  # one trial at a time
                await gsim.orders.create("telegram", "russia")
            assert "trial" in str(held.value)
            sandbox.deliver_code(trial.order.id)
            await trial.wait_for_code(timeout=5)
        await gsim.orders.create("telegram", "russia")  # closed
    assert charged_orders(sandbox) == 4


async def test_a_failed_trial_opens_it_again(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(2, cooldown=1)) as gsim:
        for _ in range(2):
            await fail_after_code(gsim, sandbox)
        await anyio.sleep(1.1)
        await fail_after_code(gsim, sandbox)  # the trial fails too
        with pytest.raises(BreakerOpenError) as held:
            await gsim.orders.create("telegram", "russia")
    assert held.value.failures == 3
    assert held.value.retry_after is not None and held.value.retry_after > 0.3


async def test_reset_closes_the_breaker(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(1)) as gsim:
        await fail_after_code(gsim, sandbox)
        with pytest.raises(BreakerOpenError):
            await gsim.orders.create("telegram", "russia")
        assert await gsim.guard.reset("telegram", "russia") == 1
        await gsim.orders.create("telegram", "russia")
        with pytest.raises(InvalidArgumentError):
            await gsim.guard.reset(country="russia")


async def test_waiting_and_refunds_go_on_while_purchases_are_held(sandbox: Sandbox) -> None:
    limit = SpendLimit(PRICE * 4)
    async with fast_client(sandbox, spend_limit=limit, breaker=Breaker(1)) as gsim:
        waiting = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
        await fail_after_code(gsim, sandbox)  # the breaker opens, the limit is reached
        with pytest.raises(BreakerOpenError):
            await gsim.orders.create("telegram", "russia")
        with pytest.raises(SpendLimitError):
            await gsim.orders.create("telegram", "kazakhstan")
        sandbox.deliver_code(waiting[0].id, "111111")
        assert await gsim.orders.wait_for_code(waiting[0], timeout=5) == "111111"
        with pytest.raises(CodeTimeoutError) as timed_out:
            await gsim.orders.wait_for_code(waiting[1], timeout=0.05)
        assert timed_out.value.refunded == PRICE
        assert (await gsim.orders.cancel(waiting[2])).refunded == PRICE
        # The refunds gave room back; the breaker still holds russia.
        await gsim.orders.create("telegram", "kazakhstan")
    assert sandbox.order(waiting[1].id).status == "BANNED"


async def test_activations_leave_out_a_country_whose_breaker_is_open(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, breaker=Breaker(1)) as gsim:
        await fail_after_code(gsim, sandbox)
        loop = gsim.orders.activations("telegram", ["russia", "kazakhstan"])
        async for act in loop:
            async with act:
                assert act.order.country == "kazakhstan"
                sandbox.deliver_code(act.order.id)
                await act.wait_for_code(timeout=5)
        assert [s.reason for s in loop.skipped] == ["breaker_open"]
        before = sandbox.stats.total
        with pytest.raises(BreakerOpenError):
            await first_try(gsim.orders.activations("telegram", "russia"))
        assert sandbox.stats.total == before


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"spend_limit": 20},
        {"spend_limit": "20/24h"},
        {"breaker": 5},
        {"breaker": True},
    ],
)
def test_bad_configuration_fails_when_the_client_is_made(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match=r"SpendLimit|Breaker"):
        gsim_async.Client("2s_" + "k" * 40, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpendLimit(0),
        lambda: SpendLimit(-1),
        lambda: SpendLimit("abc"),
        lambda: SpendLimit(float("nan")),
        lambda: SpendLimit("0.0000001"),
        lambda: SpendLimit(5, per=0),
        lambda: SpendLimit(5, per=timedelta(days=90)),
        lambda: Breaker(0),
        lambda: Breaker(2.5),  # type: ignore[arg-type]
        lambda: Breaker(3, cooldown=0.1),
        lambda: SpendLimit.parse("5/soon"),
        lambda: Breaker.parse("five"),
    ],
)
def test_bad_limits_are_refused_with_a_clear_error(make: object) -> None:
    with pytest.raises(InvalidArgumentError):
        make()  # type: ignore[operator]


def test_the_environment_configures_a_program_that_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GSIM_SPEND_LIMIT", "12.5/6h")
    monkeypatch.setenv("GSIM_BREAKER", "4")
    monkeypatch.setenv("GSIM_BREAKER_COOLDOWN", "90s")
    client = gsim_async.Client("2s_" + "k" * 40)
    assert client.guard.spend_limit == SpendLimit("12.5", per=timedelta(hours=6))
    assert client.guard.breaker == Breaker(4, cooldown=90)
    off = gsim_async.Client("2s_" + "k" * 40, spend_limit=False, breaker=False)
    assert off.guard.spend_limit is None and off.guard.breaker is None
    monkeypatch.setenv("GSIM_SPEND_LIMIT", "lots")
    with pytest.raises(InvalidArgumentError, match="GSIM_SPEND_LIMIT"):
        gsim_async.Client("2s_" + "k" * 40)


def test_limits_read_as_people_write_them() -> None:
    assert SpendLimit.parse("20") == SpendLimit(20, per=timedelta(hours=24))
    assert SpendLimit.parse(" $5.50 / 1h ") == SpendLimit("5.50", per=3600)
    assert str(SpendLimit(20, per=timedelta(days=7))) == "20 USD per 7d"
    assert Breaker.parse("3", "1h") == Breaker(3, cooldown=timedelta(hours=1))


async def test_without_a_guard_nothing_is_counted(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, spend_limit=False, breaker=False) as gsim:
        await buy_many(gsim, 3)
        status = await gsim.guard.status()
    assert status.spend is None and status.breakers == ()
    assert sandbox.stats.count("GET /api/v1/operators") == 0
