"""Waiting correctness (design.md, "Polling at scale" and money rule 6), over real HTTP.

A slow answer for one order holds up no other order's code; a RECEIVED order a list
shows without its code is read on its own; an SMS is not missed for arriving early;
leaving ``as_completed`` early touches nothing; a closed client says so with a
``GsimError``; and the process-wide registry of orders forgets the ones that settled.
Outcomes are read from the sandbox (statuses, ledger) and from the order of events,
never from how long something took.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from helpers import fast_client
from yarl import URL

import gsim_async
from gsim_async.sandbox import Sandbox

if TYPE_CHECKING:
    from gsim_async._registry import Owners

pytestmark = pytest.mark.anyio

#: Seconds one order's every GET takes in the hostage tests: far longer than the rest.
SLOW = 10.0
#: Clients that buy many orders in a row are told a generous limit (no slow start).
FAST = 2000

Orders = list[gsim_async.Order]


class SlowGet:
    """Watches the client's requests: ``GET /orders/{order_id}`` and every other answer."""

    def __init__(self, order_id: str) -> None:
        self.path = f"/api/v1/orders/{order_id}"
        self.started = anyio.Event()
        self.ended = False
        #: Set when a request other than the slow GET is answered after it started.
        self.other_answered = anyio.Event()

    def config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._start)
        trace.on_request_end.append(self._end)
        trace.on_request_exception.append(self._end)
        return trace

    def _is_it(self, method: str, url: URL) -> bool:
        return method == "GET" and url.path == self.path

    async def _start(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if self._is_it(params.method, params.url):
            self.started.set()

    async def _end(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams | aiohttp.TraceRequestExceptionParams,
    ) -> None:
        if self._is_it(params.method, params.url):
            self.ended = True
        elif self.started.is_set():
            self.other_answered.set()


@contextlib.asynccontextmanager
async def traced_client(
    sandbox: Sandbox, slow: SlowGet, **options: object
) -> AsyncIterator[gsim_async.Client]:
    async with (
        aiohttp.ClientSession(trace_configs=[slow.config()]) as session,
        fast_client(sandbox, session=session, **options) as gsim,
    ):
        yield gsim


async def buy(gsim: gsim_async.Client, n: int) -> Orders:
    return [await gsim.orders.create("telegram", "russia") for _ in range(n)]


# -- no round held hostage by one slow GET ----------------------------------------------


async def hostage(sandbox: Sandbox, n: int, *, listed: bool) -> None:
    """``n`` orders wait; one order's GET takes SLOW s; the others' codes still come."""
    async with fast_client(sandbox, max_requests_per_second=FAST) as buyer:
        orders = await buy(buyer, n)
    slow_order, others = orders[0], orders[1:]
    sandbox.set_order_latency(slow_order.id, SLOW)
    if listed:
        # A status no list shows: the watcher must fetch this order on its own.
        sandbox.set_order_status(slow_order.id, "ON_HOLD")
    slow = SlowGet(slow_order.id)
    codes: dict[str, str] = {}
    async with traced_client(sandbox, slow) as gsim:

        async def wait(order: gsim_async.Order) -> None:
            codes[order.id] = await gsim.orders.wait_for_code(order, timeout=3 * SLOW)

        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(wait, order)
            await slow.started.wait()  # the slow GET is on its way, for SLOW seconds
            # The others were read once more since: their codes come after that read.
            await slow.other_answered.wait()
            for order in others:
                sandbox.deliver_code(order.id, order.id[-6:])
            while len(codes) < len(others):
                await anyio.sleep(0.01)
                assert not slow.ended, "the other codes waited for the slow GET"
            tg.cancel_scope.cancel()
    assert codes == {o.id: o.id[-6:] for o in others}


async def test_a_slow_get_holds_up_no_other_code_per_order(sandbox: Sandbox) -> None:
    # Two orders: the watcher reads each with its own GET.
    await hostage(sandbox, 2, listed=False)


async def test_a_slow_get_holds_up_no_other_code_in_list_mode(sandbox: Sandbox) -> None:
    # Many orders: the watcher reads list pages, and the odd one out with its own GET.
    await hostage(sandbox, 40, listed=True)


# -- (1) a RECEIVED order listed without its code -------------------------------------


@pytest.mark.parametrize("on_timeout", ["ban", "keep"])
async def test_received_without_code_in_a_list_is_fetched_for_its_code(
    sandbox: Sandbox, on_timeout: str
) -> None:
    sandbox.set_faults(list_omits_code=True)
    async with fast_client(sandbox, max_requests_per_second=FAST) as gsim:
        orders = await buy(gsim, 40)  # enough for the watcher to read list pages
        codes: dict[str, str] = {}

        async def wait(order: gsim_async.Order) -> None:
            codes[order.id] = await gsim.orders.wait_for_code(
                order,
                timeout=5,
                on_timeout=on_timeout,  # type: ignore[arg-type]
            )

        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(wait, order)
            await anyio.sleep(0.2)  # the watcher has listed them PENDING
            for order in orders:
                sandbox.deliver_code(order.id, order.id[-6:])
    assert codes == {o.id: o.id[-6:] for o in orders}
    assert {r.status for r in sandbox.orders()} == {"RECEIVED"}
    # Read by the watcher, not found by a ban after the wait timed out.
    assert sandbox.stats.by_route.get("POST /api/v1/orders/{id}/ban", 0) == 0


# -- (2) an SMS that arrives before the first look answers -----------------------------


async def test_wait_for_sms_returns_an_sms_that_arrived_during_the_first_look(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    [offer] = await client.rentals.search("US", sms_enabled=True, page_size=1)
    assert offer.monthly_price is not None
    rental = await client.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    sandbox.set_faults(latency=0.5)  # the first listing answers after the SMS came
    async with anyio.create_task_group() as tg:
        waited: list[gsim_async.Message] = []

        async def wait() -> None:
            waited.append(await client.rentals.wait_for_sms(rental, timeout=5))

        tg.start_soon(wait)
        await anyio.sleep(0.2)
        sent = sandbox.add_inbound_sms(rental.id, "+14155550000", "Your code is 271828")
    assert [m.id for m in waited] == [sent["id"]]


async def test_wait_for_sms_on_a_rental_bought_elsewhere_behind_a_date_rewriting_proxy(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    # The rental comes from another process (the client never saw its purchase), and a
    # proxy's Date header is a few seconds ahead of the API's timestamps: nothing pins
    # the API's clock, so the caller says from when (the documented remedy).
    record = sandbox.place_rental("+14155551234")
    since = datetime.now(timezone.utc)
    sandbox.set_faults(date_offset=5)
    await client.rentals.get(record.id)  # the client has seen the proxy's Date
    sandbox.set_faults(latency=0.5)
    async with anyio.create_task_group() as tg:
        waited: list[gsim_async.Message] = []

        async def wait() -> None:
            waited.append(await client.rentals.wait_for_sms(record.id, timeout=3, since=since))

        tg.start_soon(wait)
        await anyio.sleep(0.2)
        sent = sandbox.add_inbound_sms(record.id, "+14155550000", "Your code is 314159")
    assert [m.id for m in waited] == [sent["id"]]


# -- (3) leaving as_completed early ----------------------------------------------------


async def test_breaking_out_of_as_completed_leaves_the_other_orders_pending(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    orders = await buy(client, 3)
    sandbox.deliver_code(orders[0].id, "1111")
    results = client.orders.as_completed(orders, timeout=0.3)
    async for result in results:  # the iterator is still referenced after the break
        assert result.code == "1111"
        break
    await anyio.sleep(1.0)  # the others' timeouts pass while nobody takes their results
    assert [sandbox.order(o.id).status for o in orders[1:]] == ["PENDING", "PENDING"]
    assert sandbox.ledger().refunded == 0
    await results.aclose()  # type: ignore[attr-defined]
    assert [sandbox.order(o.id).status for o in orders[1:]] == ["PENDING", "PENDING"]


# -- (4) a closed client --------------------------------------------------------------


async def _wait_by_order(gsim: gsim_async.Client, order: gsim_async.Order) -> object:
    return await gsim.orders.wait_for_code(order, timeout=1)


async def _wait_by_id(gsim: gsim_async.Client, order: gsim_async.Order) -> object:
    return await gsim.orders.wait_for_code(order.id, timeout=1)


async def _wait_top_level(gsim: gsim_async.Client, order: gsim_async.Order) -> object:
    return await gsim_async.wait_for_code(order, timeout=1)


async def _as_completed(gsim: gsim_async.Client, order: gsim_async.Order) -> object:
    async for result in gsim.orders.as_completed([order], timeout=1):
        if result.error is not None:
            raise result.error
    return None


async def _activation(gsim: gsim_async.Client, order: gsim_async.Order) -> object:
    async with gsim.orders.activation("telegram", "russia") as act:
        return await act.wait_for_code(timeout=1)


WAYS: dict[str, Callable[[gsim_async.Client, gsim_async.Order], Awaitable[object]]] = {
    "orders.wait_for_code(order)": _wait_by_order,
    "orders.wait_for_code(id)": _wait_by_id,
    "wait_for_code(order)": _wait_top_level,
    "as_completed": _as_completed,
    "activation": _activation,
}


@pytest.mark.parametrize("way", list(WAYS))
async def test_waiting_on_a_closed_client_raises_a_gsim_error(sandbox: Sandbox, way: str) -> None:
    gsim = fast_client(sandbox)
    order = await gsim.orders.create("telegram", "russia")
    await gsim.aclose()
    with pytest.raises(gsim_async.GsimError) as info:
        await WAYS[way](gsim, order)
    assert isinstance(info.value, gsim_async.ClientClosedError)
    assert sandbox.order(order.id).status == "PENDING"
    assert len(sandbox.orders()) == 1  # nothing more was bought


async def test_closing_the_client_under_a_wait_raises_a_gsim_error(sandbox: Sandbox) -> None:
    gsim = fast_client(sandbox)
    order = await gsim.orders.create("telegram", "russia")
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await gsim.orders.wait_for_code(order, timeout=10)
        except BaseException as exc:  # whatever it is, the test looks at it
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.2)
        await gsim.aclose()
    assert [type(e) for e in errors] == [gsim_async.ClientClosedError]
    assert isinstance(errors[0], gsim_async.GsimError)


# -- (5) the order -> client registry ---------------------------------------------------


def registry() -> Owners[Any]:
    """The process-wide order -> client registry, after dropping what is garbage."""
    from gsim_async._resources._shared import OWNERS

    gc.collect()
    return OWNERS


async def _settle_by_waiting(gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders) -> None:
    for order in orders:
        sandbox.deliver_code(order.id)
    async with anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(gsim_async.wait_for_code, order)


async def _settle_by_as_completed(
    gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders
) -> None:
    for order in orders[::2]:
        sandbox.deliver_code(order.id)
    async for _ in gsim.orders.as_completed(orders, timeout=0.5):
        pass


async def _settle_by_timeouts(gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders) -> None:
    async def wait(order: gsim_async.Order) -> None:
        with pytest.raises(gsim_async.CodeTimeoutError):
            await gsim.orders.wait_for_code(order, timeout=0.3)

    async with anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(wait, order)


async def _settle_by_cancel(gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders) -> None:
    for order in orders:
        await gsim.orders.cancel(order)


async def _settle_by_reading(gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders) -> None:
    # The code is read with orders.get(), without waiting.
    for order in orders:
        sandbox.deliver_code(order.id)
        assert (await gsim.orders.get(order)).sms_code is not None


async def _settle_elsewhere(gsim: gsim_async.Client, sandbox: Sandbox, orders: Orders) -> None:
    # Cancelled by another process on the key; this one learns it by waiting.
    for order in orders:
        sandbox.set_order_status(order.id, "CANCELLED", refund=True)

    async def wait(order: gsim_async.Order) -> None:
        with pytest.raises(gsim_async.NoCodeError):
            await gsim.orders.wait_for_code(order)

    async with anyio.create_task_group() as tg:
        for order in orders:
            tg.start_soon(wait, order)


SETTLE = {
    "wait_for_code": _settle_by_waiting,
    "as_completed": _settle_by_as_completed,
    "timeouts": _settle_by_timeouts,
    "cancel": _settle_by_cancel,
    "orders.get": _settle_by_reading,
    "ended elsewhere": _settle_elsewhere,
}


@pytest.mark.parametrize("how", list(SETTLE))
async def test_the_order_registry_forgets_settled_orders(how: str) -> None:
    n = 200
    before = len(registry())  # what other tests' clients left (orders still open)
    # A seed of its own: order ids no other test's client registered.
    seed = 1100 + list(SETTLE).index(how)
    async with (
        Sandbox(seed=seed, auto_deliver=False, balance=1000) as sandbox,
        fast_client(sandbox, max_requests_per_second=FAST) as gsim,
    ):
        orders = await buy(gsim, n)
        # Each order is known while it may get a code.
        owners = registry()
        assert all(owners.owner(o.id) is not None for o in orders)
        await SETTLE[how](gsim, sandbox, orders)
        assert {sandbox.order(o.id).status for o in orders} <= {"RECEIVED", "BANNED", "CANCELLED"}
        assert len(registry()) <= before + 2
