"""client.orders.activations(): fresh numbers across countries until one gets its code.

Against the sandbox over real HTTP; what is checked is what the account shows: the
ledger's charges and refunds, the orders' statuses and the requests served.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async import (
    AttemptsExhaustedError,
    BudgetExceededError,
    InvalidArgumentError,
    NoCodeError,
    NoNumberAvailableError,
)
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

PURCHASES = "POST /api/v1/orders"
QUOTES = "GET /api/v1/operators"


async def get_code(loop: gsim_async.Activations, timeout: float = 0.3) -> str:
    """The loop of the issue, as a user writes it; the code it ended with."""
    code = None
    async for act in loop:
        async with act:
            code = await act.wait_for_code(timeout=timeout)
    assert code is not None
    return code


def assert_every_order_without_a_code_was_refunded(sandbox: Sandbox) -> None:
    ledger = sandbox.ledger()
    assert ledger.balanced
    for order in sandbox.orders():
        assert order.status != "PENDING", order
        if order.sms_code is None:
            assert ledger.refunds_by_order.get(order.id) == order.price, order
        else:
            assert order.id not in ledger.refunds_by_order, order


async def test_with_half_the_numbers_silent_every_loop_ends_with_a_code() -> None:
    async with Sandbox(seed=11, code_delay=(0.01, 0.05), no_code_ratio=0.5) as sandbox:
        async with fast_client(sandbox) as client:
            loops = [
                client.orders.activations("telegram", ["russia", "kazakhstan"], attempts=15)
                for _ in range(30)
            ]
            codes = await asyncio.gather(*(get_code(loop) for loop in loops))
        records = {o.id: o for o in sandbox.orders()}
        for loop, code in zip(loops, codes, strict=True):
            assert 1 <= loop.tries <= 15
            *failed, last = loop.orders
            assert records[last.id].sms_code == code  # the code of the loop's last number
            assert all(records[o.id].sms_code is None for o in failed)
        assert sum(loop.tries for loop in loops) == len(records)
        assert sum(loop.tries for loop in loops) > len(loops)  # some numbers got no code
        assert_every_order_without_a_code_was_refunded(sandbox)


async def test_with_half_the_numbers_silent_no_loop_passes_its_budget() -> None:
    async with Sandbox(seed=12, code_delay=(0.01, 0.05), no_code_ratio=0.5) as sandbox:
        async with fast_client(sandbox) as client:
            loops = [
                client.orders.activations(
                    "telegram", ["russia", "kazakhstan"], attempts=10, budget="0.30"
                )
                for _ in range(30)
            ]
            results = await asyncio.gather(
                *(get_code(loop) for loop in loops), return_exceptions=True
            )
        charges = sandbox.ledger().charges_by_order
        for loop, result in zip(loops, results, strict=True):
            assert isinstance(result, (str, BudgetExceededError)), result
            charged = sum((charges[o.id] for o in loop.orders), Decimal(0))
            assert charged == loop.spent <= Decimal("0.30")
        assert any(isinstance(r, BudgetExceededError) for r in results)
        assert any(isinstance(r, str) for r in results)
        assert_every_order_without_a_code_was_refunded(sandbox)


async def test_after_every_try_without_a_code_no_code_error_lists_every_order(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", "russia", attempts=3)
    with pytest.raises(AttemptsExhaustedError) as caught:
        await get_code(loop, timeout=0.1)
    error = caught.value
    assert isinstance(error, NoCodeError)
    bought = [o.id for o in sandbox.orders()]
    assert [o.id for o in error.orders] == bought and len(bought) == 3
    assert error.order.id == bought[-1]
    assert {o.status for o in error.orders} == {gsim_async.OrderStatus.BANNED}
    assert error.refunded == Decimal("0.54")
    assert sandbox.ledger().balance == Decimal("100")
    assert_every_order_without_a_code_was_refunded(sandbox)


async def test_each_try_moves_on_to_the_next_country(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    sandbox.set_delivery_rate(0.0, "telegram", "russia")
    loop = client.orders.activations("telegram", ["russia", "kazakhstan", "india"], attempts=3)
    async for act in loop:
        async with act:
            if act.order.country == "kazakhstan":
                sandbox.deliver_code(act.order.id, "424242")
            code = await act.wait_for_code(timeout=0.2)
    assert code == "424242"
    assert [o.country for o in loop.orders] == ["russia", "kazakhstan"]
    assert [o.status for o in loop.orders] == ["BANNED", "RECEIVED"]
    assert sandbox.stats.count(PURCHASES) == 2  # the loop stopped at the code
    assert_every_order_without_a_code_was_refunded(sandbox)


async def test_tries_wrap_around_to_the_first_country(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", ["RU", "KZ"], attempts=3)
    with pytest.raises(AttemptsExhaustedError) as caught:
        await get_code(loop, timeout=0.05)
    assert [o.country for o in caught.value.orders] == ["russia", "kazakhstan", "russia"]


async def test_a_sold_out_country_is_skipped_without_buying(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    sandbox.set_stock("telegram", "russia", 0)
    loop = client.orders.activations("telegram", ["russia", "kazakhstan"], attempts=2)
    async for act in loop:
        async with act:
            sandbox.deliver_code(act.order.id)
            await act.wait_for_code(timeout=1)
    assert [o.country for o in loop.orders] == ["kazakhstan"]
    assert [(s.country, s.reason) for s in loop.skipped] == [("russia", "sold_out")]
    stats = sandbox.stats
    assert stats.count(PURCHASES) == 1
    assert stats.count(PURCHASES, 503) == 0  # never even tried
    assert list(sandbox.ledger().charges_by_order.values()) == [Decimal("0.12")]


async def test_a_country_dearer_than_max_price_is_skipped_without_buying(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", ["usa", "russia"], max_price="0.20")
    async for act in loop:
        async with act:
            sandbox.deliver_code(act.order.id)
            await act.wait_for_code(timeout=1)
    (order,) = loop.orders
    assert order.country == "russia" and order.price == Decimal("0.18")
    (skip,) = loop.skipped
    assert (skip.country, skip.reason, skip.price) == ("usa", "too_dear", Decimal("0.30"))
    assert sandbox.stats.count(PURCHASES) == 1


async def test_nothing_to_buy_anywhere_raises_before_any_purchase(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    sandbox.set_stock("telegram", "russia", 0)
    loop = client.orders.activations("telegram", ["russia", "usa"], max_price="0.25")
    with pytest.raises(NoNumberAvailableError) as caught:
        await get_code(loop)
    assert not isinstance(caught.value, BudgetExceededError)
    assert caught.value.orders == () and caught.value.order is None
    assert {(s.country, s.reason) for s in caught.value.skipped} == {
        ("russia", "sold_out"),
        ("usa", "too_dear"),
    }
    assert "nothing was bought" in str(caught.value)
    assert sandbox.stats.count(PURCHASES) == 0
    assert sandbox.ledger().charged == 0


async def test_a_purchase_refused_for_lack_of_numbers_moves_on(sandbox: Sandbox) -> None:
    # The catalogue shows stock but every purchase meets the provider's 503.
    sandbox.set_faults(provider_error_rate=1.0)
    async with fast_client(sandbox, max_retries=0) as client:
        loop = client.orders.activations("telegram", ["russia", "kazakhstan"])
        with pytest.raises(NoNumberAvailableError) as caught:
            await get_code(loop)
    assert [(s.country, s.reason) for s in caught.value.skipped] == [
        ("russia", "sold_out"),
        ("kazakhstan", "sold_out"),
    ]
    assert sandbox.stats.count(PURCHASES, 503) == 2  # once each, nothing bought
    assert sandbox.ledger().charged == 0


async def test_the_budget_is_never_passed(client: gsim_async.Client, sandbox: Sandbox) -> None:
    loop = client.orders.activations("telegram", "russia", attempts=10, budget="0.50")
    with pytest.raises(BudgetExceededError) as caught:
        await get_code(loop, timeout=0.05)
    error = caught.value
    assert isinstance(error, NoNumberAvailableError)
    assert len(error.orders) == 2 and error.spent == Decimal("0.36")
    assert error.budget == Decimal("0.50")
    assert sandbox.ledger().charged == Decimal("0.36")  # a third 0.18 would pass 0.50
    assert_every_order_without_a_code_was_refunded(sandbox)


async def test_a_budget_too_small_for_any_number_buys_nothing(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", "russia", budget="0.10")
    with pytest.raises(BudgetExceededError):
        await get_code(loop)
    assert sandbox.stats.count(PURCHASES) == 0


async def test_when_the_budget_runs_low_a_cheaper_country_still_fits(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    # russia 0.18, kazakhstan 0.12: after 0.18 + 0.12 only kazakhstan fits 0.45.
    loop = client.orders.activations(
        "telegram", ["russia", "kazakhstan"], attempts=10, budget="0.45"
    )
    with pytest.raises(BudgetExceededError) as caught:
        await get_code(loop, timeout=0.05)
    assert [o.country for o in caught.value.orders] == ["russia", "kazakhstan", "kazakhstan"]
    assert sandbox.ledger().charged == Decimal("0.42")


async def test_operators_are_tried_in_the_order_given(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations(
        "telegram", ["russia", "kazakhstan"], operators=["megafon", "mts"], attempts=3
    )
    with pytest.raises(AttemptsExhaustedError) as caught:
        await get_code(loop, timeout=0.05)
    # kazakhstan has neither operator: left out without buying.
    assert [(o.country, o.operator) for o in caught.value.orders] == [
        ("russia", "megafon"),
        ("russia", "mts"),
        ("russia", "megafon"),
    ]
    assert {(s.country, s.operator, s.reason) for s in caught.value.skipped} == {
        ("kazakhstan", "megafon", "not_sold"),
        ("kazakhstan", "mts", "not_sold"),
    }


async def test_another_exception_is_refunded_and_leaves_the_loop(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    async def sign_up_fails() -> None:
        async for act in client.orders.activations("telegram", "russia", attempts=3):
            async with act:
                raise ValueError("sign-up failed")

    with pytest.raises(ValueError, match="sign-up failed"):
        await sign_up_fails()
    (order,) = sandbox.orders()
    assert order.status == "CANCELLED"
    assert sandbox.ledger().refunds_by_order == {order.id: order.price}


async def test_a_block_left_without_waiting_is_refunded_and_counts_as_a_try(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    seen = []

    async def pick_a_number() -> None:
        async for act in client.orders.activations("telegram", "russia", attempts=2):
            async with act:
                seen.append(act.phone_number)  # not a number we like: next one

    with pytest.raises(AttemptsExhaustedError):
        await pick_a_number()
    assert len(seen) == 2
    assert [o.status for o in sandbox.orders()] == ["CANCELLED", "CANCELLED"]
    assert_every_order_without_a_code_was_refunded(sandbox)


async def test_cancelling_the_loop_refunds_the_number_under_way(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", "russia", attempts=3)
    with anyio.move_on_after(0.3):
        await get_code(loop, timeout=60)
    (order,) = sandbox.orders()
    assert order.status == "CANCELLED"
    assert_every_order_without_a_code_was_refunded(sandbox)


async def test_a_code_that_races_the_cleanup_ends_the_loop(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", "russia", attempts=3)
    async for act in loop:
        async with act:
            sandbox.deliver_code(act.order.id, "777777")
            # The block is left without waiting: the cancel meets the code.
    assert loop.tries == 1
    assert act.order.sms_code == "777777"
    assert sandbox.ledger().refunds_by_order == {}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("telegram", []), {}),
        (("telegram", [""]), {}),
        (("telegram", None), {}),
        (("telegram", [1]), {}),
        (("", "russia"), {}),
        (("telegram", "russia"), {"attempts": 0}),
        (("telegram", "russia"), {"attempts": True}),
        (("telegram", "russia"), {"max_price": "-1"}),
        (("telegram", "russia"), {"budget": "lots"}),
        (("telegram", "russia"), {"operators": []}),
        (("telegram", "russia"), {"operators": [""]}),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    client: gsim_async.Client, sandbox: Sandbox, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    with pytest.raises(InvalidArgumentError):
        client.orders.activations(*args, **kwargs)  # type: ignore[arg-type]
    assert sandbox.stats.total == 0


async def test_an_unknown_country_fails_before_anything_is_bought(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", ["russia", "Kazakstan"])
    with pytest.raises(InvalidArgumentError, match=r"Kazakstan.*did you mean kazakhstan"):
        await get_code(loop)
    assert sandbox.stats.by_route == {"GET /api/v1/countries": 1}


async def test_requests_per_try_a_quote_of_its_country_and_a_purchase(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", ["russia", "KZ"], attempts=2)
    with pytest.raises(AttemptsExhaustedError):
        await get_code(loop, timeout=0.05)
    stats = sandbox.stats
    assert stats.count("GET /api/v1/countries") == 1  # the catalogue, once
    assert stats.count(QUOTES) == 2
    assert stats.count(PURCHASES) == 2


async def test_loops_started_together_share_one_quote_per_country(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loops = [client.orders.activations("telegram", "russia", attempts=1) for _ in range(10)]
    results = await asyncio.gather(
        *(get_code(loop, timeout=0.05) for loop in loops), return_exceptions=True
    )
    assert all(isinstance(r, AttemptsExhaustedError) for r in results)
    assert sandbox.stats.count(QUOTES) == 1
    assert sandbox.stats.count(PURCHASES) == 10


async def test_a_purchase_failure_caught_in_the_loop_uses_no_try(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    sandbox.set_balance("0.10")
    refused = 0
    loop = client.orders.activations("telegram", "russia", attempts=1)
    async for act in loop:
        try:
            async with act:
                sandbox.deliver_code(act.order.id, "515151")
                code = await act.wait_for_code(timeout=1)
        except gsim_async.InsufficientBalanceError:
            refused += 1
            sandbox.set_balance("1.00")  # topped up: the loop goes on
            continue
    assert code == "515151"
    assert refused == 1 and loop.tries == 1


async def test_an_activation_never_entered_is_a_usage_error(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    loop = client.orders.activations("telegram", "russia")
    await loop.__anext__()
    with pytest.raises(RuntimeError, match="async with act"):
        await loop.__anext__()
    assert sandbox.stats.count(PURCHASES) == 0
