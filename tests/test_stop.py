"""``Client.stop()`` and ``aclose()``: what a stop does to waits, purchases and refunds.

A stop (design.md, money rule 9) gives every wait up as its ``on_timeout`` says and
refunds, unless a journal or a fleet keeps what the client owes; closing a client
stops it first, so a framework closing its clients on shutdown leaves nothing
charged. The process-level tests (real signals) are in ``tests/stop``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async import ClientClosedError
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def until(check: Callable[[], object], what: str) -> None:
    """Once ``check()`` holds (a guard against a hang, not a measurement)."""
    with anyio.fail_after(10):
        while not check():  # noqa: ASYNC110 (state in the sandbox or the client: no event)
            await anyio.sleep(0.01)


async def _waiting(gsim: gsim_async.Client, count: int) -> None:
    await until(lambda: gsim.orders.waiting >= count, f"{count} waits")


async def test_a_stop_gives_every_wait_up_as_its_on_timeout_says(sandbox: Sandbox) -> None:
    gsim = fast_client(sandbox)
    orders = {how: await gsim.orders.create("telegram", "russia") for how in ("ban", "cancel")}
    kept = await gsim.orders.create("telegram", "russia")
    errors: dict[str, ClientClosedError] = {}

    async def wait(how: str, order: gsim_async.Order) -> None:
        with pytest.raises(ClientClosedError) as info:
            await gsim.orders.wait_for_code(order, timeout=60, on_timeout=how)  # type: ignore[arg-type]
        errors[how] = info.value

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "ban", orders["ban"])
        tg.start_soon(wait, "cancel", orders["cancel"])
        tg.start_soon(wait, "keep", kept)
        await _waiting(gsim, 3)
        gsim.stop()
    assert gsim.orders.waiting == 0
    assert sandbox.order(orders["ban"].id).status == "BANNED"
    assert sandbox.order(orders["cancel"].id).status == "CANCELLED"
    assert sandbox.order(kept.id).status == "PENDING"  # on_timeout="keep" keeps it
    price = orders["ban"].price
    for how, status in (("ban", "BANNED"), ("cancel", "CANCELLED")):
        error = errors[how]
        assert error.order is not None and error.order.status == status
        assert error.refunded == price
        assert str(error).startswith(
            f"the client stopped while waiting for a code for order {orders[how].id}"
        )
    assert errors["keep"].refunded is None
    assert "kept" in str(errors["keep"])
    await gsim.aclose()
    assert sandbox.ledger().refunds_by_order == {o.id: price for o in orders.values()}


async def test_a_code_that_raced_the_stop_is_returned(sandbox: Sandbox) -> None:
    # The code is on the server, the client has not polled since: the stop's ban finds
    # the order RECEIVED (409), reads it again, and the wait returns the paid-for code.
    async with fast_client(sandbox, poll_interval=30) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        codes: list[str] = []

        async def wait() -> None:
            codes.append(await gsim.orders.wait_for_code(order, timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await _waiting(gsim, 1)
            await anyio.sleep(0.1)  # the first poll is done; the next is 30 s away
            sandbox.deliver_code(order.id, "771177")
            gsim.stop()
    assert codes == ["771177"]
    assert sandbox.order(order.id).status == "RECEIVED"


async def test_after_a_stop_nothing_is_bought_and_a_new_wait_gives_its_order_up(
    sandbox: Sandbox,
) -> None:
    async with fast_client(sandbox) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        gsim.stop()
        with pytest.raises(ClientClosedError, match="stopping: the purchase was not begun"):
            await gsim.orders.create("telegram", "russia")
        with pytest.raises(ClientClosedError, match="stopping"):
            async with gsim.orders.activation("telegram", "russia"):
                pass
        with pytest.raises(ClientClosedError) as info:
            await gsim.orders.wait_for_code(order, timeout=60)
        assert info.value.order is not None and info.value.order.status == "BANNED"
    assert [o.id for o in sandbox.orders()] == [order.id]
    assert sandbox.ledger().balance == Decimal("100")


async def test_a_purchase_on_the_wire_as_the_client_stops_is_cancelled(sandbox: Sandbox) -> None:
    sandbox.set_faults(purchase_delay=(0.5, 0.5))
    async with fast_client(sandbox) as gsim:
        await gsim.balance()
        errors: list[ClientClosedError] = []

        async def buy() -> None:
            with pytest.raises(ClientClosedError) as info:
                await gsim.orders.create("telegram", "russia")
            errors.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(buy)
            # A client lists the account once before its first purchase: then it buys.
            await until(lambda: sandbox.stats.by_route.get("GET /api/v1/orders"), "the listing")
            await anyio.sleep(0.2)  # the purchase on the wire (it takes 0.5 s to answer)
            gsim.stop()
    [record] = sandbox.orders()
    assert record.status == "CANCELLED"
    assert errors[0].order is not None and errors[0].order.id == record.id
    assert sandbox.ledger().balance == Decimal("100")


async def test_closing_gives_up_the_waits_of_as_completed_and_activations(
    sandbox: Sandbox,
) -> None:
    gsim = fast_client(sandbox)
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
    results: list[gsim_async.WaitResult] = []
    blocks: list[BaseException] = []

    async def collect() -> None:
        results.extend([r async for r in gsim.orders.as_completed(orders, timeout=60)])

    async def block() -> None:
        try:
            async with gsim.orders.activation("telegram", "russia") as act:
                await act.wait_for_code(timeout=60)
        except ClientClosedError as exc:
            blocks.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        tg.start_soon(block)
        await _waiting(gsim, 4)
        await gsim.aclose()
    assert sorted(r.order.id for r in results) == sorted(o.id for o in orders)
    assert all(isinstance(r.error, ClientClosedError) for r in results)
    assert all(r.order.status == "BANNED" for r in results)
    ledger = sandbox.ledger()
    # The activation's order is cancelled, as a block left any other way than a timeout.
    assert ledger.orders_by_status == {"BANNED": 3, "CANCELLED": 1}
    assert ledger.balance == Decimal("100")
    assert len(blocks) == 1


async def test_with_a_journal_a_stop_leaves_the_waits_to_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "gsim.db"
    gsim = fast_client(sandbox, journal=journal)
    order = await gsim.orders.create("telegram", "russia")
    errors: list[ClientClosedError] = []

    async def wait() -> None:
        with pytest.raises(ClientClosedError) as info:
            await gsim.orders.wait_for_code(order, timeout=60)
        errors.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await _waiting(gsim, 1)
        await gsim.aclose()
    assert sandbox.order(order.id).status == "PENDING"
    assert f"the journal {journal} keeps it" in str(errors[0])
    # A later run takes it back, as after a crash.
    async with fast_client(sandbox, journal=journal) as again:
        assert [o.id for o in await again.orders.recovered()] == [order.id]
        await again.orders.cancel(order)
    assert sandbox.ledger().balance == Decimal("100")


async def test_a_stop_timeout_bounds_the_close_when_the_server_pauses_the_client(
    sandbox: Sandbox, no_key_in_logs: list[str]
) -> None:
    gsim = fast_client(sandbox, max_retry_after=60)
    orders = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
    errors: list[BaseException] = []

    async def wait(order: gsim_async.Order) -> None:
        try:
            await gsim.orders.wait_for_code(order, timeout=600)
        except ClientClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(wait, order)
        await _waiting(gsim, 3)
        sandbox.set_faults(rate_limit=0.001, rate_limit_burst=1, retry_after=120)
        await until(lambda: sandbox.stats.by_status.get(429), "a 429")
        gsim.stop(timeout=1)
        with anyio.fail_after(10):  # a guard against a hang, not a measurement
            await gsim.aclose()
    assert gsim.closed
    assert [o.status for o in sandbox.orders()] == ["PENDING"] * 3
    (report,) = [line for line in no_key_in_logs if "left charged" in line]
    assert report.startswith("WARNING closing with 3 refund(s) not landed yet")
    assert all(o.id in report for o in orders)
    assert len(errors) == 3


async def test_stop_checks_its_timeout(sandbox: Sandbox) -> None:
    async with fast_client(sandbox) as gsim:
        with pytest.raises(gsim_async.InvalidArgumentError):
            gsim.stop(timeout=-1)
        assert not gsim.closed


async def test_a_stop_names_the_orders_it_leaves_with_no_wait_on_them(
    sandbox: Sandbox, no_key_in_logs: list[str]
) -> None:
    # An order bought and not waited on yet is the program's (as when its task is
    # cancelled): the stop leaves it as it is, and says so once the client closes.
    gsim = fast_client(sandbox)
    waited = await gsim.orders.create("telegram", "russia")
    held = await gsim.orders.create("telegram", "russia")

    async def wait() -> None:
        with pytest.raises(ClientClosedError):
            await gsim.orders.wait_for_code(waited, timeout=60)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await _waiting(gsim, 1)
        gsim.stop()
    await gsim.aclose()
    assert sandbox.order(waited.id).status == "BANNED"
    assert sandbox.order(held.id).status == "PENDING"
    (report,) = [line for line in no_key_in_logs if "left as they were" in line]
    assert report.startswith("WARNING stopped with 1 order(s) of this client left as they were")
    assert held.id in report and waited.id not in report


async def test_closing_alone_names_nothing_it_leaves(
    sandbox: Sandbox, no_key_in_logs: list[str]
) -> None:
    # `gsim buy`, a script that buys a number for later: closing leaves it, quietly.
    async with fast_client(sandbox) as gsim:
        order = await gsim.orders.create("telegram", "russia")
    assert sandbox.order(order.id).status == "PENDING"
    assert not [line for line in no_key_in_logs if line.startswith("WARNING")]
