"""SyncClient: the async client's calls, models and errors, blocking, over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import inspect
import subprocess
import sys
from decimal import Decimal

import pytest
from sync_helpers import ENV, ThreadedSandbox, meanwhile, until, when_waiting

import gsim_async
from gsim_async import (
    Balance,
    ClientClosedError,
    ConflictError,
    Country,
    InsufficientBalanceError,
    InvalidArgumentError,
    NotFoundError,
    Operator,
    Order,
    OrderStatus,
    Page,
    Refund,
    Service,
    SyncClient,
)


def test_catalogue_and_account_calls_return_the_async_models(gsim: SyncClient) -> None:
    balance = gsim.balance()
    assert balance == Balance(balance=Decimal("100"), currency="USD")
    services = gsim.services()
    assert services and all(isinstance(s, Service) for s in services)
    countries = gsim.countries(service="telegram")
    assert countries and all(isinstance(c, Country) for c in countries)
    operators = gsim.operators("telegram", "RU")  # an ISO code, resolved as by Client
    assert operators and all(isinstance(o, Operator) for o in operators)


def test_orders_are_bought_read_listed_and_ended(
    gsim: SyncClient, sandbox: ThreadedSandbox
) -> None:
    first = gsim.orders.create("telegram", "russia")
    second = gsim.orders.create("telegram", "Russia")
    assert isinstance(first, Order) and first.status == OrderStatus.PENDING
    assert gsim.orders.get(first.id).phone_number == first.phone_number
    page = gsim.orders.list(limit=1)
    assert isinstance(page, Page) and page.total == 2 and len(page.items) == 1
    assert {o.id for o in gsim.orders.iterate(status="PENDING")} == {first.id, second.id}
    assert gsim.orders.cancel(first) == Refund(success=True, refunded=first.price)
    assert gsim.orders.ban(second.id).refunded == second.price
    assert [sandbox.order(o.id).status for o in (first, second)] == ["CANCELLED", "BANNED"]
    assert sandbox.ledger().balance == Decimal("100")


def test_errors_are_the_async_clients(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    with pytest.raises(InvalidArgumentError, match="did you mean"):
        gsim.orders.create("telegram", "Rusia")  # refused before anything is bought
    with pytest.raises(NotFoundError):
        gsim.orders.get("cm" + "0" * 23)
    order = gsim.orders.create("telegram", "russia")
    sandbox.deliver_code(order.id, "777111")
    with pytest.raises(ConflictError) as info:
        gsim.orders.cancel(order)
    assert info.value.order is not None and info.value.order.sms_code == "777111"
    sandbox.call(sandbox.sandbox.set_balance, "0")
    with pytest.raises(InsufficientBalanceError):
        gsim.orders.create("telegram", "russia")
    assert len(sandbox.call(sandbox.sandbox.orders)) == 1


def test_wait_for_code_returns_the_code(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    order = gsim.orders.create("telegram", "russia")
    with meanwhile(lambda: when_waiting(gsim, 1, lambda: sandbox.deliver_code(order.id, "4242"))):
        assert gsim.orders.wait_for_code(order, timeout=30) == "4242"
    other = gsim.orders.create("telegram", "russia")
    sandbox.deliver_code(other.id, "1234")
    assert gsim.orders.wait_for_code(other.id) == "1234"  # by id, as Client takes it


def test_timeout_bans_and_refunds(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    order = gsim.orders.create("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError) as info:
        gsim.orders.wait_for_code(order, timeout=0.1)
    assert info.value.refunded == order.price
    assert info.value.order.status == OrderStatus.BANNED
    assert sandbox.order(order.id).status == "BANNED"
    ledger = sandbox.ledger()
    assert ledger.refunds_by_order == {order.id: order.price}
    assert ledger.balance == Decimal("100")


def test_as_completed_yields_each_result(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    orders = [gsim.orders.create("telegram", "russia") for _ in range(3)]
    sandbox.deliver_code(orders[1].id, "2222")
    results = {r.order.id: r for r in gsim.orders.as_completed(orders, timeout=0.2)}
    assert results[orders[1].id].code == "2222"
    for order in (orders[0], orders[2]):
        assert isinstance(results[order.id].error, gsim_async.CodeTimeoutError)
        assert sandbox.order(order.id).status == "BANNED"
    assert sandbox.ledger().balance == Decimal("100") - orders[1].price


def test_leaving_as_completed_early_leaves_the_rest_as_they_are(
    gsim: SyncClient, sandbox: ThreadedSandbox
) -> None:
    orders = [gsim.orders.create("telegram", "russia") for _ in range(3)]
    sandbox.deliver_code(orders[0].id, "3333")
    for result in gsim.orders.as_completed(orders, timeout=30):
        assert result.code == "3333"
        break
    until(lambda: gsim.orders.waiting == 0, "the other waits to stop")
    assert [sandbox.order(o.id).status for o in orders[1:]] == ["PENDING", "PENDING"]


def test_activation_keeps_a_code_and_refunds_without_one(
    gsim: SyncClient, sandbox: ThreadedSandbox
) -> None:
    with gsim.orders.activation("telegram", "russia") as act:
        sandbox.deliver_code(act.order.id, "5555")
        assert act.wait_for_code(timeout=30) == "5555"
    assert act.code == "5555" and act.refunded is None
    failed = gsim.orders.activation("telegram", "russia")

    def sign_up() -> None:
        with failed:
            assert failed.phone_number.startswith("+7")
            raise RuntimeError("sign-up failed")

    with pytest.raises(RuntimeError, match="sign-up failed"):
        sign_up()
    assert failed.refunded == failed.order.price
    assert sandbox.order(failed.order.id).status == "CANCELLED"
    silent = gsim.orders.activation("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError), silent:
        silent.wait_for_code(timeout=0.1)
    assert sandbox.order(silent.order.id).status == "BANNED"
    assert sandbox.ledger().balance == Decimal("100") - act.order.price


def test_an_activation_not_entered_says_so(gsim: SyncClient) -> None:
    with pytest.raises(RuntimeError, match=r"with gsim\.orders\.activation"):
        _ = gsim.orders.activation("telegram", "russia").order


def test_activations_refund_each_try_without_a_code(
    gsim: SyncClient, sandbox: ThreadedSandbox
) -> None:
    loop = gsim.orders.activations("telegram", ["russia", "kazakhstan"], attempts=3)
    code = None
    for act in loop:
        with act:
            if loop.tries == 2:
                sandbox.deliver_code(act.order.id, "6666")
            code = act.wait_for_code(timeout=0.1)
    assert code == "6666" and loop.tries == 2
    first, second = loop.orders
    assert (first.country, second.country) == ("russia", "kazakhstan")
    assert sandbox.order(first.id).status == "BANNED"
    assert sandbox.ledger().refunds_by_order == {first.id: first.price}

    def never() -> None:
        for act in gsim.orders.activations("telegram", "russia", attempts=2):
            with act:
                act.wait_for_code(timeout=0.05)

    with pytest.raises(gsim_async.AttemptsExhaustedError) as info:
        never()
    assert len(info.value.orders) == 2
    assert all(sandbox.order(o.id).status == "BANNED" for o in info.value.orders)


def test_rentals(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    offer = gsim.rentals.search("US", sms_enabled=True, page_size=1)[0]
    assert offer.monthly_price is not None
    rental = gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    assert [r.id for r in gsim.rentals.iterate()] == [rental.id]
    assert gsim.rentals.list(status="ACTIVE").total == 1
    assert gsim.rentals.update(rental, auto_renew=True).auto_renew is True
    sent = gsim.rentals.send_sms(rental, "+14155551234", "hello")
    assert sent.status == "queued"
    gsim.rentals.call(rental, "+14155551234")
    assert gsim.rentals.calls(rental).total == 1

    def arrive() -> None:  # once the wait looked: only what arrives after it counts
        route = "GET /api/v1/rentals/{id}/sms"
        looked = sandbox.call(lambda: sandbox.sandbox.stats.count(route))
        until(lambda: sandbox.call(lambda: sandbox.sandbox.stats.count(route)) > looked, "a look")
        sandbox.call(sandbox.sandbox.add_inbound_sms, rental.id, "+14155550000", "code 918273")

    with meanwhile(arrive):
        message = gsim.rentals.wait_for_sms(rental, match=r"code \d+", timeout=30)
    assert gsim_async.extract_code(message.body) == "918273"
    assert gsim.rentals.messages(rental).total == 2
    assert len(gsim.rentals.get(rental.id).messages) == 2
    gsim.rentals.release(rental)
    assert sandbox.call(sandbox.sandbox.rental, rental.id).status == "CANCELLED"


def test_stats_and_cancel_stale(gsim: SyncClient, sandbox: ThreadedSandbox) -> None:
    # A closed client of an earlier test, not yet collected, may still claim an order id
    # that this test's sandbox (same seed) hands out again: cancel_stale would skip it.
    gc.collect()
    kept = gsim.orders.create("telegram", "russia")
    sandbox.deliver_code(kept.id, "1111")
    stale = gsim.orders.create("telegram", "russia")
    assert [(o.id, r.refunded) for o, r in gsim.orders.cancel_stale(older_than=0)] == [
        (stale.id, stale.price)
    ]
    (row,) = gsim.orders.stats(service="telegram")
    assert (row.orders, row.codes, row.refunded) == (2, 1, stale.price)


def test_with_options_is_a_view_of_the_same_client(gsim: SyncClient) -> None:
    view = gsim.with_options(max_retries=7, poll_interval=0.5)
    assert (view.max_retries, view.poll_interval) == (7, 0.5)
    assert (gsim.max_retries, gsim.poll_interval) == (3, 0.05)
    assert isinstance(view.balance(), Balance)
    assert gsim.requests_sent == view.requests_sent == 1
    view.close()
    assert gsim.closed
    with pytest.raises(ClientClosedError):
        gsim.balance()


def test_usable_from_a_thread_that_runs_an_event_loop(gsim: SyncClient) -> None:
    async def cell() -> Balance:  # a notebook cell: the work runs in the client's thread
        return gsim.balance()

    assert asyncio.run(cell()).currency == "USD"


def test_hooks_run_in_the_clients_thread_and_cannot_call_it(
    sandbox: ThreadedSandbox,
) -> None:
    seen: list[BaseException] = []

    def hook(order: Order) -> None:
        try:
            client.balance()
        except RuntimeError as exc:
            seen.append(exc)

    with sandbox.client(on_order_update=hook) as client:
        order = client.orders.create("telegram", "russia")
        sandbox.deliver_code(order.id, "8888")
        assert client.orders.wait_for_code(order) == "8888"
    assert "own event loop thread" in str(seen[0])


def test_arguments_are_the_clients() -> None:
    ours = inspect.signature(SyncClient.__init__).parameters
    theirs = inspect.signature(gsim_async.Client.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_a_session_is_refused_and_a_bad_argument_fails_at_once() -> None:
    with pytest.raises(InvalidArgumentError, match="session"):
        SyncClient("2s_" + "a" * 40, session=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="API key"):
        SyncClient("")


def test_repr_and_errors_never_show_the_key(sandbox: ThreadedSandbox) -> None:
    with SyncClient(sandbox.api_key, base_url=sandbox.base_url) as gsim:
        assert sandbox.api_key not in repr(gsim)
        assert repr(gsim) == f"<gsim_async.SyncClient base_url={sandbox.base_url!r}>"
    with SyncClient("2s_" + "b" * 40, base_url=sandbox.base_url, max_retries=0) as wrong:
        with pytest.raises(gsim_async.UnauthorizedError) as info:
            wrong.balance()
        assert "b" * 40 not in str(info.value) + repr(info.value)


def test_close_refunds_an_open_activation_and_ends_the_thread(sandbox: ThreadedSandbox) -> None:
    gsim = sandbox.client()
    act = gsim.orders.activation("telegram", "russia").__enter__()
    thread = gsim._runner._thread
    gsim.close()
    assert not thread.is_alive()
    assert sandbox.order(act.order.id).status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")
    gsim.close()  # twice: nothing
    with pytest.raises(ClientClosedError, match="closed"):
        gsim.orders.create("telegram", "russia")


def test_a_fleet_that_cannot_be_used_fails_on_entering_and_ends_the_thread(
    sandbox: ThreadedSandbox,
) -> None:
    from benchmarks._redis import free_port
    from gsim_async.fleet import RedisFleet

    gsim = sandbox.client(fleet=RedisFleet(f"redis://127.0.0.1:{free_port()}/0"))
    thread = gsim._runner._thread
    with pytest.raises(gsim_async.FleetError, match="cannot reach the fleet's Redis"), gsim:
        pytest.fail("the client opened")
    assert not thread.is_alive()
    assert sandbox.ledger().charged == 0


def test_an_unclosed_client_warns_and_closes_itself(sandbox: ThreadedSandbox) -> None:
    gsim = sandbox.client()
    gsim.balance()
    thread = gsim._runner._thread
    with pytest.warns(ResourceWarning, match="not closed"):
        del gsim  # nothing else holds it: collected at once
    thread.join(10)
    assert not thread.is_alive()


LEFT_OPEN = """
import sys, gsim_async
gsim = gsim_async.SyncClient(sys.argv[2], base_url=sys.argv[1])
act = gsim.orders.activation("telegram", "russia").__enter__()
print(act.order.id)
"""


def test_a_client_left_open_refunds_at_exit_without_holding_it_up(
    sandbox: ThreadedSandbox,
) -> None:
    result = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", LEFT_OPEN, sandbox.base_url, sandbox.api_key],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    order_id = result.stdout.strip()
    assert sandbox.order(order_id).status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")
