"""Threads sharing one SyncClient: one event loop, one watcher, every code to its waiter."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sync_helpers import ThreadedSandbox, serve, until

from gsim_async import ClientClosedError, SyncClient

THREADS = 8


def test_eight_threads_get_every_code_each_their_own(no_key_in_logs: list[str]) -> None:
    for sandbox in serve(no_key_in_logs, seed=3, code_delay=(0.02, 0.2)):
        with sandbox.client() as gsim:

            def verify(_: int) -> list[tuple[str, str]]:
                got = []
                for _ in range(5):
                    order = gsim.orders.create("telegram", "russia")
                    got.append((order.id, gsim.orders.wait_for_code(order, timeout=30)))
                return got

            with ThreadPoolExecutor(THREADS) as pool:
                codes = [pair for got in pool.map(verify, range(THREADS)) for pair in got]
        assert len(codes) == len({oid for oid, _ in codes}) == THREADS * 5
        for order_id, code in codes:
            assert sandbox.order(order_id).sms_code == code
        ledger = sandbox.ledger()
        assert ledger.orders_by_status == {"RECEIVED": THREADS * 5}
        assert ledger.balance == Decimal("100") - THREADS * 5 * Decimal("0.18")


def test_eight_threads_waiting_are_polled_by_one_watcher(
    gsim: SyncClient, sandbox: ThreadedSandbox
) -> None:
    orders = [gsim.orders.create("telegram", "russia") for _ in range(THREADS)]
    codes: dict[str, str] = {}

    def wait(index: int) -> None:
        codes[orders[index].id] = gsim.orders.wait_for_code(orders[index], timeout=60)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    until(lambda: gsim.orders.waiting == THREADS, "every thread's wait in the one watcher")

    def stats() -> dict[str, int]:
        return sandbox.call(lambda: dict(sandbox.sandbox.stats.by_route))

    before = stats()
    lists = "GET /api/v1/orders"
    until(lambda: stats().get(lists, 0) >= before.get(lists, 0) + 10, "ten list requests")
    after = stats()
    # One watcher of eight orders reads them from list pages; eight watchers of one
    # order each would fetch every order on its own, every round.
    single = "GET /api/v1/orders/{id}"
    # (An order a page happened not to show is fetched on its own, on a loaded machine.)
    assert after.get(single, 0) - before.get(single, 0) < THREADS
    for order in orders:
        sandbox.deliver_code(order.id, order.id[-6:])
    for thread in threads:
        thread.join(30)
    assert codes == {order.id: order.id[-6:] for order in orders}


def test_closing_ends_the_calls_other_threads_are_blocked_in(
    sandbox: ThreadedSandbox,
) -> None:
    gsim = sandbox.client()
    order = gsim.orders.create("telegram", "russia")
    errors: list[ClientClosedError] = []

    def wait() -> None:
        with pytest.raises(ClientClosedError) as info:
            gsim.orders.wait_for_code(order, timeout=60)
        errors.append(info.value)

    thread = threading.Thread(target=wait)
    thread.start()
    until(lambda: gsim.orders.waiting == 1, "the wait")
    gsim.close()
    thread.join(10)
    assert len(errors) == 1
    # Closing gives the wait up as its on_timeout says (ban), refunded before close returns.
    assert sandbox.order(order.id).status == "BANNED"
    assert errors[0].order is not None and errors[0].order.status == "BANNED"
    assert errors[0].refunded == order.price
    assert sandbox.ledger().refunds_by_order == {order.id: order.price}
