"""Each retry rule (docs/architecture.md, "Money and codes are never lost"), in the sandbox."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_get_is_retried_after_a_dropped_connection(sandbox: Sandbox) -> None:
    events: list[gsim_async.RetryEvent] = []
    sandbox.set_faults(drop_before_rate=0.5)
    async with fast_client(sandbox, max_retries=10, on_retry=events.append) as gsim:
        for _ in range(10):
            assert (await gsim.balance()).balance == Decimal("100")
    assert len(events) == sandbox.stats.dropped
    assert all(e.method == "GET" and e.path == "/api/v1/balance" for e in events)


async def test_max_retries_zero_raises_at_once(sandbox: Sandbox) -> None:
    sandbox.set_faults(drop_before_rate=1.0)
    async with fast_client(sandbox, max_retries=0) as gsim:
        with pytest.raises(gsim_async.APIConnectionError):
            await gsim.balance()
    assert sandbox.stats.total == 1


async def test_html_502_on_get_is_retried(sandbox: Sandbox) -> None:
    sandbox.set_faults(html_502_rate=0.5)
    async with fast_client(sandbox, max_retries=10) as gsim:
        for _ in range(10):
            await gsim.services()
    assert sandbox.stats.by_status.get(502, 0) > 0


async def test_provider_error_on_purchase_is_retried_and_charged_once(sandbox: Sandbox) -> None:
    sandbox.set_faults(provider_error_rate=0.5)
    async with fast_client(sandbox, max_retries=10) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(10)]
    assert sandbox.stats.count("POST /api/v1/orders", 503) > 0
    ledger = sandbox.ledger()
    assert set(ledger.charges_by_order) == {o.id for o in orders}


async def test_provider_error_without_retries_raises(sandbox: Sandbox) -> None:
    sandbox.set_faults(provider_error_rate=1.0)
    async with fast_client(sandbox, max_retries=0) as gsim:
        with pytest.raises(gsim_async.ProviderError):
            await gsim.orders.create("telegram", "russia")
    assert sandbox.ledger().charged == 0


async def test_purchase_dropped_after_charge_is_adopted_not_bought_again(
    sandbox: Sandbox,
) -> None:
    sandbox.set_faults(drop_after_purchase_rate=1.0)
    async with fast_client(sandbox) as gsim:
        order = await gsim.orders.create("telegram", "russia")
    ledger = sandbox.ledger()
    assert list(ledger.charges_by_order) == [order.id]  # one charge, and it is ours
    assert sandbox.stats.count("POST /api/v1/orders") == 1
    assert sandbox.stats.count("GET /api/v1/orders") >= 1  # the reconciliation listing


async def test_concurrent_ambiguous_purchases_each_get_their_own_order(
    sandbox: Sandbox,
) -> None:
    sandbox.set_faults(drop_after_purchase_rate=0.5, latency=(0, 0.02))
    async with fast_client(sandbox) as gsim:
        orders: list[gsim_async.Order] = []

        async def buy() -> None:
            orders.append(await gsim.orders.create("telegram", "russia"))

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(buy)
    ids = [o.id for o in orders]
    assert len(set(ids)) == 40  # nobody adopted someone else's order
    assert set(sandbox.ledger().charges_by_order) == set(ids)  # nothing bought twice
    assert sandbox.stats.dropped > 0


async def test_purchase_dropped_before_processing_is_bought_again(sandbox: Sandbox) -> None:
    sandbox.set_faults(drop_before_rate=0.5)
    async with fast_client(sandbox, max_retries=10) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(5)]
    assert set(sandbox.ledger().charges_by_order) == {o.id for o in orders}


async def test_rental_dropped_after_charge_is_adopted(sandbox: Sandbox) -> None:
    async with fast_client(sandbox) as gsim:
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        sandbox.set_faults(drop_after_purchase_rate=1.0)
        rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    assert rental.phone_number == offer.phone_number
    assert list(sandbox.ledger().charges_by_rental) == [rental.id]


async def test_send_sms_is_never_repeated(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=5) as gsim:
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        sandbox.set_faults(drop_before_rate=1.0)
        with pytest.raises(gsim_async.OutcomeUnknownError, match="may have gone out"):
            await gsim.rentals.send_sms(rental, "+14155551234", "hi")
        with pytest.raises(gsim_async.OutcomeUnknownError, match="may have been placed"):
            await gsim.rentals.call(rental, "+14155551234")
    assert sandbox.stats.count("POST /api/v1/rentals/{id}/sms") == 1
    assert sandbox.stats.count("POST /api/v1/rentals/{id}/calls") == 1


async def test_429_pauses_and_retries_with_retry_after(sandbox: Sandbox) -> None:
    events: list[gsim_async.RetryEvent] = []
    sandbox.set_faults(rate_limit=5, retry_after=1)
    async with (
        fast_client(sandbox, max_retries=5, on_retry=events.append) as gsim,
        anyio.create_task_group() as tg,
    ):
        for _ in range(8):
            tg.start_soon(gsim.balance)
    assert sandbox.stats.by_status.get(429, 0) >= 1
    assert any(e.reason.startswith("429") and e.delay == 1 for e in events)


async def test_429_with_max_retries_zero_raises(sandbox: Sandbox) -> None:
    sandbox.set_faults(rate_limit=1, retry_after=7)
    async with fast_client(sandbox, max_retries=0) as gsim:
        await gsim.balance()
        with pytest.raises(gsim_async.RateLimitedError) as info:
            await gsim.balance()
    assert info.value.retry_after == 7


async def test_cancel_retried_after_lost_answer_counts_as_success(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=5) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        # 502 after the cancel went through is not what the sandbox does; a dropped
        # connection before processing followed by success shows the retry path.
        sandbox.set_faults(drop_before_rate=0.6)
        refund = await gsim.orders.cancel(order)
    assert refund.refunded == order.price
    assert sandbox.order(order.id).status == "CANCELLED"


async def test_with_options_changes_retries_for_one_call(sandbox: Sandbox) -> None:
    sandbox.set_faults(drop_before_rate=1.0)
    async with fast_client(sandbox, max_retries=0) as gsim:
        with pytest.raises(gsim_async.APIConnectionError):
            await gsim.with_options(max_retries=2).balance()
        assert sandbox.stats.total == 3
        with pytest.raises(gsim_async.APIConnectionError):
            await gsim.balance()  # the client itself is unchanged
        assert sandbox.stats.total == 4
        assert gsim.with_options(max_retries=2).requests_sent == gsim.requests_sent


async def test_failed_purchase_does_not_block_later_reconciliations(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=0) as gsim:
        sandbox.set_faults(provider_error_rate=1.0)
        with pytest.raises(gsim_async.ProviderError):
            await gsim.orders.create("telegram", "russia")
        sandbox.set_faults(provider_error_rate=0.0, drop_after_purchase_rate=1.0)
        with anyio.fail_after(10):
            lost = await gsim.orders.create("telegram", "russia")
        sandbox.clear_faults()
        with anyio.fail_after(10):
            fine = await gsim.orders.create("telegram", "russia")
    assert set(sandbox.ledger().charges_by_order) == {lost.id, fine.id}


async def test_lost_purchase_with_operator_any_is_adopted(sandbox: Sandbox) -> None:
    sandbox.set_faults(drop_after_purchase_rate=1.0)
    async with fast_client(sandbox) as gsim:
        order = await gsim.orders.create("telegram", "russia", operator="any")
    assert list(sandbox.ledger().charges_by_order) == [order.id]
