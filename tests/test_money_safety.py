"""Money and codes are never lost when the server is slow, clocks disagree or the key is shared.

Each test stages one case of docs/architecture.md's money rules against the sandbox
over real HTTP and reads the outcome from the sandbox's ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def client_from(
    sandbox: Sandbox, address: str, **options: object
) -> AsyncIterator[gsim_async.Client]:
    """A client whose connections come from ``address``: the ledger's ``buyer``."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        fast_client(sandbox, session=session, **options) as gsim,
    ):
        yield gsim


def charges(sandbox: Sandbox) -> dict[str, Decimal]:
    return sandbox.ledger().charges_by_order


# -- 1. a purchase the server is still working on when the client gives up ---------


async def test_slow_purchase_is_charged_once_and_returned(sandbox: Sandbox) -> None:
    # The proxy gives up at 0.3 s, the application creates the order at 1 s.
    sandbox.set_faults(purchase_delay=1.0, proxy_timeout=0.3)
    async with fast_client(sandbox, reconcile_window=3) as gsim:
        order = await gsim.orders.create("telegram", "russia")
    assert list(charges(sandbox)) == [order.id]


async def test_client_timeout_on_a_slow_purchase_is_charged_once(sandbox: Sandbox) -> None:
    sandbox.set_faults(purchase_delay=1.0)
    async with fast_client(sandbox, timeout=0.3, reconcile_window=3) as gsim:
        order = await gsim.orders.create("telegram", "russia")
    assert list(charges(sandbox)) == [order.id]


# -- 2. a Date header far from the orders' timestamps --------------------------------


@pytest.mark.parametrize("offset", [45.0, -45.0, 590.0])
async def test_date_header_off_the_orders_clock_changes_nothing(offset: float) -> None:
    async with Sandbox(seed=2, auto_deliver=False, date_offset=offset) as sb:
        async with fast_client(sb, max_retries=3) as gsim:
            await gsim.balance()  # the client has seen the (rewritten) Date header
            sb.set_faults(drop_after_purchase_rate=1.0)
            order = await gsim.orders.create("telegram", "russia")
        assert list(sb.ledger().charges_by_order) == [order.id]
        assert sb.order(order.id).status == "PENDING"


async def test_date_header_off_after_the_clock_was_pinned(sandbox: Sandbox) -> None:
    sandbox.set_faults(date_offset=45)
    async with fast_client(sandbox) as gsim:
        first = await gsim.orders.get(await gsim.orders.create("telegram", "russia"))
        sandbox.set_faults(drop_after_purchase_rate=1.0)
        second = await gsim.orders.create("telegram", "russia")
    assert set(charges(sandbox)) == {first.id, second.id}


# -- 3. two clients, one key: orders ------------------------------------------------


async def test_lost_purchase_is_not_matched_to_another_clients_earlier_order(
    sandbox: Sandbox,
) -> None:
    async with client_from(sandbox, "127.0.0.2") as a, client_from(sandbox, "127.0.0.3") as b:
        theirs = await b.orders.create("telegram", "russia")
        sandbox.set_faults(drop_after_purchase_rate=1.0)
        mine = await a.orders.create("telegram", "russia")
        sandbox.clear_faults()
        assert mine.id != theirs.id
        assert sandbox.order(mine.id).buyer == "127.0.0.2"
        # B's code still reaches B; A's timeout ban touches only A's order.
        sandbox.deliver_code(theirs.id, "1111")
        assert await b.orders.wait_for_code(theirs, timeout=5) == "1111"
        with pytest.raises(gsim_async.CodeTimeoutError):
            await a.orders.wait_for_code(mine, timeout=0.2)
    assert sandbox.order(theirs.id).status == "RECEIVED"
    assert sandbox.order(mine.id).status == "BANNED"
    assert len(charges(sandbox)) == 2


async def test_lost_purchase_beside_another_buyer_is_not_guessed(sandbox: Sandbox) -> None:
    async with client_from(sandbox, "127.0.0.2") as a, client_from(sandbox, "127.0.0.3") as b:
        await a.orders.create("telegram", "russia")  # A has bought before: its baseline
        theirs = await b.orders.create("telegram", "russia")
        sandbox.set_faults(drop_after_purchase_rate=1.0)
        with pytest.raises(gsim_async.OutcomeUnknownError) as info:
            await a.orders.create("telegram", "russia")
    lost = [o for o in sandbox.orders() if o.buyer == "127.0.0.2"][-1]
    assert {c.id for c in info.value.candidates} == {theirs.id, lost.id}
    assert len(charges(sandbox)) == 3  # nothing bought again
    assert sandbox.order(theirs.id).status == "PENDING"


# -- 4. two clients, one key: rentals -----------------------------------------------


async def test_rental_cut_before_processing_does_not_adopt_anothers_rental(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox) as a, fast_client(sandbox) as b:
        offer = (await a.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        theirs = await b.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        sandbox.set_faults(drop_purchase_before_rate=1.0)
        with pytest.raises(gsim_async.GsimError) as info:
            await a.with_options(max_retries=1).rentals.create(
                offer.phone_number, "LOCAL", "US", offer.monthly_price
            )
        sandbox.clear_faults()
        assert not isinstance(info.value, gsim_async.OutcomeUnknownError) or not any(
            c.id == theirs.id for c in info.value.candidates
        )
    assert sandbox.rental(theirs.id).status == "ACTIVE"
    assert list(sandbox.ledger().charges_by_rental) == [theirs.id]


# -- 5. cancel_stale beside a live waiter ---------------------------------------------


async def test_cancel_stale_leaves_an_order_another_client_waits_on(sandbox: Sandbox) -> None:
    async with fast_client(sandbox) as a, fast_client(sandbox) as b:
        order = await a.orders.create("telegram", "russia")
        codes: list[str] = []

        async def wait() -> None:
            codes.append(await a.orders.wait_for_code(order, timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.2)
            swept = await b.orders.cancel_stale(older_than=0)
            sandbox.deliver_code(order.id, "4242")
    assert swept == []
    assert codes == ["4242"]


# -- 6. a 2xx whose body cannot be read -----------------------------------------------


@pytest.mark.parametrize("retries", [0, 3])
async def test_unreadable_purchase_answer_is_charged_once(sandbox: Sandbox, retries: int) -> None:
    # A 200 means it happened, even when the account cannot show it in the window
    # the Date header suggests.
    sandbox.set_faults(date_offset=45)
    async with fast_client(sandbox, max_retries=retries) as gsim:
        await gsim.balance()
        sandbox.set_faults(unreadable_2xx_rate=1.0)
        order = await gsim.orders.create("telegram", "russia")
    assert list(charges(sandbox)) == [order.id]


async def test_unreadable_answer_to_an_sms_says_it_was_sent(sandbox: Sandbox) -> None:
    async with fast_client(sandbox) as gsim:
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        sandbox.set_faults(unreadable_2xx_rate=1.0)
        with pytest.raises(gsim_async.APIResponseValidationError, match="the SMS was sent"):
            await gsim.rentals.send_sms(rental, "+14155551234", "hello")
        with pytest.raises(gsim_async.APIResponseValidationError, match="the call was placed"):
            await gsim.rentals.call(rental, "+14155551234")
    assert sandbox.rental(rental.id).messages == 1
    assert sandbox.rental(rental.id).calls == 1


async def test_every_rfc3339_timestamp_the_server_may_send_is_read() -> None:
    async with Sandbox(seed=4, auto_deliver=False, timestamp_style="varied") as sb:
        async with fast_client(sb) as gsim:
            orders = [await gsim.orders.create("telegram", "russia") for _ in range(20)]
            read = [await gsim.orders.get(o) for o in orders]
            listed = await gsim.orders.list(limit=100)
        assert all(o.created_at is not None and o.expires_at is not None for o in read)
        assert {o.id for o in listed} == {o.id for o in orders}
        assert len(sb.ledger().charges_by_order) == 20


# -- 7. activation(max_price=...) when the code wins the race with the cancel ---------


async def test_dear_order_whose_code_came_first_keeps_its_code() -> None:
    async with Sandbox(seed=1, code_delay=(0.0, 0.0)) as sb:
        # The purchase is priced when it takes effect: the cheapest operator sells out
        # meanwhile, so "any" comes back dearer than the price checked before buying.
        sb.set_faults(purchase_delay=0.4)
        async with fast_client(sb) as gsim:

            async def buy() -> None:
                async with gsim.orders.activation("telegram", "russia", max_price="0.18"):
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(_sell_out_soon, sb)
                with pytest.raises(gsim_async.PriceTooHighError) as info:
                    await buy()
        [record] = sb.orders()
        assert record.status == "RECEIVED" and record.sms_code is not None
        assert info.value.code == record.sms_code
        assert info.value.order is not None and info.value.order.id == record.id


async def _sell_out_soon(sb: Sandbox) -> None:
    await anyio.sleep(0.2)
    sb.set_stock("telegram", "russia", 0, operator="mts")


# -- 8. the client closes while an activation block does the user's sign-up ----------


async def test_closing_the_client_under_an_open_activation_refunds_it(sandbox: Sandbox) -> None:
    gsim = fast_client(sandbox)
    entered = anyio.Event()
    errors: list[BaseException] = []

    async def sign_up() -> None:
        async with gsim.orders.activation("telegram", "russia") as act:
            entered.set()
            await anyio.sleep(0.5)  # filling in the form, not waiting for the code
            try:
                await act.wait_for_code()
            except gsim_async.GsimError as exc:
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sign_up)
        await entered.wait()
        await gsim.aclose()
    [record] = sandbox.orders()
    assert record.status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")
    assert [type(e) for e in errors] == [gsim_async.ClientClosedError]


# -- 9. ids that would be rewritten into other endpoints ------------------------------

BAD_IDS = [".", "..", "%2e%2e", "search", "a/b", "a?b", "a b", ""]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_ids_are_refused_before_any_request(
    client: gsim_async.Client, sandbox: Sandbox, bad: str
) -> None:
    calls = [
        client.rentals.get(bad),
        client.rentals.release(bad),
        client.rentals.messages(bad),
        client.rentals.send_sms(bad, "+14155551234", "x"),
        client.rentals.update(bad, auto_renew=True),
    ]
    if bad != "search":  # an order may be called that; a rental may not
        calls += [client.orders.get(bad), client.orders.cancel(bad), client.orders.ban(bad)]
    for call in calls:
        with pytest.raises(gsim_async.InvalidArgumentError):
            await call
    assert sandbox.stats.total == 0


async def test_lost_purchase_is_adopted_when_the_server_clock_is_behind() -> None:
    async with Sandbox(seed=3, auto_deliver=False, clock_skew=-120) as sb:
        async with fast_client(sb) as gsim:
            await gsim.balance()  # learn the server's clock from its Date header
            sb.set_faults(drop_after_purchase_rate=1.0)
            order = await gsim.orders.create("telegram", "russia")
        assert list(sb.ledger().charges_by_order) == [order.id]


async def test_rental_reconciliation_ignores_an_old_rental_of_the_number(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox) as gsim:
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        old = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        sandbox.set_rental_status(old.id, "EXPIRED")
        sandbox.set_faults(html_502_rate=1.0)
        with pytest.raises(gsim_async.GsimError):
            await gsim.with_options(max_retries=0).rentals.create(
                offer.phone_number, "LOCAL", "US", offer.monthly_price
            )
    assert list(sandbox.ledger().charges_by_rental) == [old.id]
