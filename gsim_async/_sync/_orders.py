"""``SyncClient.orders``: the blocking twin of ``client.orders``, and its activations."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import TypeVar

from .._attempts import Activations, Skipped
from .._enums import OrderStatus
from .._exceptions import GsimError
from .._models import Order, OrderStats, Page, Refund
from .._resources._orders import OrderRef, Orders, order_id
from .._stats import ProgressHook
from .._waiting import Activation, OnTimeout, Settled, WaitResult, settle
from ._portal import Runner

T = TypeVar("T")

log = logging.getLogger("gsim_async")


class SyncOrders:
    """One-time activation numbers: ``gsim.orders.create("telegram", "russia")``.

    Every method is that of ``Client.orders``, blocking. Ctrl-C during
    ``wait_for_code()`` or ``as_completed()`` gives the orders up as their timeout
    would (``on_timeout``) and waits for the refunds before ``KeyboardInterrupt``
    leaves; during ``create()`` it lets the purchase end and cancels what it bought.
    """

    def __init__(self, runner: Runner, orders: Orders) -> None:
        self._runner = runner
        self._orders = orders

    @property
    def waiting(self) -> int:
        """How many orders this client is waiting on for a code right now."""
        return self._orders.waiting

    def recovered(self) -> builtins.list[Order]:
        """An earlier run's orders still owed, handed back (see ``Client.orders.recovered``)."""
        return self._runner.call(self._orders.recovered)

    # -- buying -------------------------------------------------------------------------

    def create(self, service: str, country: str, operator: str | None = None) -> Order:
        """Buy a number for ``service`` in ``country``; its price is taken from the balance.

        As ``Client.orders.create``: a purchase whose answer is lost is reconciled, never
        repeated. Ctrl-C lets a purchase on the wire end, then cancels (refunds) what it
        bought before ``KeyboardInterrupt`` leaves.
        """
        orders = self._orders
        return self._runner.call(
            lambda: orders.create(service, country, operator),
            interrupt="finish",
            undo=lambda order: give_back(orders, order, "cancel"),
        )

    # -- reading ------------------------------------------------------------------------

    def get(self, order: OrderRef) -> Order:
        """The order's current state, with ``sms_code`` once the code arrived."""
        return self._runner.call(lambda: self._orders.get(order))

    def list(
        self, page: int = 1, limit: int = 20, status: OrderStatus | str | None = None
    ) -> Page[Order]:
        """One page of this account's orders, newest first."""
        return self._runner.call(lambda: self._orders.list(page, limit, status))

    def iterate(self, status: OrderStatus | str | None = None) -> Iterator[Order]:
        """Every order (of ``status``, if given), newest first, fetched 100 per request."""
        return iterate(self._runner, self._orders.iterate(status))

    # -- ending -------------------------------------------------------------------------

    def cancel(self, order: OrderRef) -> Refund:
        """Cancel a PENDING order; its price is refunded.

        Raises ``ConflictError`` when the order is no longer PENDING, with the order
        re-read on ``.order`` (check its ``sms_code``: the code may have arrived).
        """
        return self._runner.call(lambda: self._orders.cancel(order))

    def ban(self, order: OrderRef) -> Refund:
        """Report a PENDING order's number as not receiving; its price is refunded.

        Raises ``ConflictError`` like ``cancel()``.
        """
        return self._runner.call(lambda: self._orders.ban(order))

    def cancel_stale(
        self, older_than: float | timedelta = timedelta(minutes=5)
    ) -> builtins.list[tuple[Order, Refund]]:
        """Cancel this account's PENDING orders older than ``older_than``; return refunds.

        See ``Client.orders.cancel_stale`` for what is left alone.
        """
        return self._runner.call(lambda: self._orders.cancel_stale(older_than))

    # -- waiting ------------------------------------------------------------------------

    def wait_for_code(
        self,
        order: OrderRef,
        *,
        timeout: float | None = None,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> str:
        """Wait for the order's SMS code and return it.

        As ``Client.orders.wait_for_code``: after ``timeout`` the order is banned,
        cancelled or kept (``on_timeout``) and ``CodeTimeoutError`` is raised. Unlike
        cancelling an async wait, Ctrl-C here also gives the order up as ``on_timeout``
        says, and the refund is awaited before ``KeyboardInterrupt`` leaves (``"keep"``
        keeps it).
        """
        orders = self._orders

        async def wait() -> str:
            current = order if isinstance(order, Order) else None
            try:
                if current is None:
                    current = await orders.get(order)
                return await orders.wait_for_code(
                    current, timeout=timeout, on_timeout=on_timeout, poll_interval=poll_interval
                )
            except asyncio.CancelledError:
                if on_timeout != "keep":
                    await give_back(orders, current or order, on_timeout)
                raise

        return self._runner.call(wait)

    def as_completed(
        self,
        orders: Iterable[OrderRef],
        *,
        timeout: float | None = None,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> Iterator[WaitResult]:
        """Wait for many orders at once; yield a ``WaitResult`` for each as it finishes.

        As ``Client.orders.as_completed``; leaving the loop early leaves the rest as they
        are. Ctrl-C while waiting for the next result gives every order not yet
        returned up as ``on_timeout`` says and waits for the refunds.
        """
        items = builtins.list(orders)
        waits = self._orders.as_completed(
            items, timeout=timeout, on_timeout=on_timeout, poll_interval=poll_interval
        )
        return _completed(self._runner, self._orders, waits, items, on_timeout)

    def activation(
        self,
        service: str,
        country: str,
        operator: str | None = None,
        *,
        max_price: Decimal | str | int | float | None = None,
    ) -> SyncActivation:
        """Buy a number for the length of a ``with`` block; refunded unless used.

        As ``Client.orders.activation``; Ctrl-C in the block cancels the order and
        waits for the refund before ``KeyboardInterrupt`` leaves.
        """
        activation = self._orders.activation(service, country, operator, max_price=max_price)
        return SyncActivation(self._runner, activation)

    # -- attempts with fresh numbers ------------------------------------------------------

    def activations(
        self,
        service: str,
        countries: str | Seq[str],
        *,
        operators: str | Seq[str] | None = None,
        attempts: int = 3,
        max_price: Decimal | str | int | float | None = None,
        budget: Decimal | str | int | float | None = None,
    ) -> SyncActivations:
        """Fresh numbers until one gets its code: ``for act in ...: with act:``.

        As ``Client.orders.activations``: a try without a code is refunded and the next
        begins; ``AttemptsExhaustedError``, ``NoNumberAvailableError`` or
        ``BudgetExceededError`` when none is left.
        """
        loop = self._orders.activations(
            service,
            countries,
            operators=operators,
            attempts=attempts,
            max_price=max_price,
            budget=budget,
        )
        return SyncActivations(self._runner, loop)

    # -- what worked ----------------------------------------------------------------------

    def stats(
        self,
        since: datetime | timedelta | None = None,
        service: str | None = None,
        country: str | None = None,
        on_progress: ProgressHook | None = None,
    ) -> builtins.list[OrderStats]:
        """What each (service, country, operator) gave this account: one ``OrderStats`` each.

        As ``Client.orders.stats``; ``on_progress`` is called in the client's thread.
        """
        return self._runner.call(lambda: self._orders.stats(since, service, country, on_progress))


class SyncActivation:
    """``with gsim.orders.activation(...) as act``: a number that refunds itself.

    ``act.order`` / ``act.phone_number`` are the number bought; ``act.wait_for_code()``
    returns its code. Leaving the block without a code cancels the order (banned after
    a code timeout; ``on_timeout="keep"`` keeps it), Ctrl-C included, and waits for the
    refund; ``act.refunded`` then says how much came back.
    """

    def __init__(self, runner: Runner, activation: Activation) -> None:
        self._runner = runner
        self._activation = activation

    @property
    def order(self) -> Order:
        """The order bought on entering the block (its latest known state)."""
        if self._activation._order is None:
            raise RuntimeError("use 'with gsim.orders.activation(...) as act' first")
        return self._activation.order

    @property
    def phone_number(self) -> str:
        """The number to enter in the service's sign-up form."""
        return self.order.phone_number

    @property
    def code(self) -> str | None:
        """The code, once ``wait_for_code`` returned it."""
        return self._activation.code

    @property
    def refunded(self) -> Decimal | None:
        """What the cleanup on exit gave back, if it ran."""
        return self._activation.refunded

    def wait_for_code(
        self,
        timeout: float | None = None,
        *,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> str:
        """Wait for the code (see ``SyncOrders.wait_for_code``) and return it."""
        activation = self._activation
        return self._runner.call(
            lambda: activation.wait_for_code(
                timeout, on_timeout=on_timeout, poll_interval=poll_interval
            )
        )

    def __enter__(self) -> SyncActivation:
        activation = self._activation
        # Ctrl-C while the number is bought: let the purchase end, then refund it.
        self._runner.call(
            activation.__aenter__,
            interrupt="finish",
            undo=lambda _: activation.__aexit__(KeyboardInterrupt, KeyboardInterrupt(), None),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # bool | None, as the async one: only a try of activations() swallows.
        activation = self._activation
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted and self._runner.insisted:
            # Ctrl-C twice already: the refund starts, nobody waits for it.
            self._runner.soon(lambda: activation.__aexit__(exc_type, exc, tb))
            return None
        # Already leaving on a Ctrl-C: another one stops waiting for the refund.
        return self._runner.call(
            lambda: activation.__aexit__(exc_type, exc, tb),
            interrupt="abandon" if interrupted else "finish",
        )

    def __repr__(self) -> str:
        order = self._activation._order
        return f"<gsim_async.SyncActivation order={order.id if order else None!r}>"


class SyncActivations:
    """``for act in gsim.orders.activations(...)``: one ``SyncActivation`` per try.

    Besides iterating, it tells how the loop went: ``orders``, ``tries``, ``spent`` and
    ``skipped``, as ``Activations`` does.
    """

    def __init__(self, runner: Runner, activations: Activations) -> None:
        self._runner = runner
        self._activations = activations

    @property
    def orders(self) -> tuple[Order, ...]:
        """Every order the loop bought, oldest first, in its latest known state."""
        return self._activations.orders

    @property
    def tries(self) -> int:
        """How many numbers were handed out (tries begun)."""
        return self._activations.tries

    @property
    def spent(self) -> Decimal:
        """The price of every number the loop bought, refunds aside."""
        return self._activations.spent

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """The candidates left out so far, and why."""
        return self._activations.skipped

    def __iter__(self) -> SyncActivations:
        return self

    def __next__(self) -> SyncActivation:
        try:
            activation = self._runner.call(self._activations.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
        return SyncActivation(self._runner, activation)


# -- helpers ------------------------------------------------------------------------------


async def give_back(orders: Orders, order: Order | str, action: str) -> Settled | None:
    """Ban or cancel an order the caller gave up, shielded; what came back.

    In a background task of the client, so that ``close()`` waits for it even when
    the caller stops waiting.
    """
    background = orders._shared.background
    calls = orders._calls

    async def settle_it() -> Settled | None:
        current = order
        oid = current.id if isinstance(current, Order) else current
        existing = orders._shared.waits.refund_of(oid)
        if existing is not None:  # the client's stop is giving it up already
            return await existing
        if not isinstance(current, Order):
            try:
                current = await calls.fetch(order_id(current), cleanup=True)
            except GsimError as exc:
                log.warning("could not %s order %s: %s", action, order, exc)
                return None
        return await settle(calls, current, action)

    return await background.shielded_wait(background.spawn(settle_it()))


def iterate(runner: Runner, items: AsyncIterator[T]) -> Iterator[T]:
    """The items of an async iterator, each fetched through ``runner``."""
    try:
        while True:
            try:
                item = runner.call(items.__anext__)
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            runner.soon(close)


def _completed(
    runner: Runner,
    orders: Orders,
    waits: AsyncIterator[WaitResult],
    items: builtins.list[OrderRef],
    on_timeout: OnTimeout,
) -> Iterator[WaitResult]:
    left = builtins.list(items)  # not returned yet: what a Ctrl-C gives up

    async def give_up_rest() -> None:
        close = getattr(waits, "aclose", None)
        if close is not None:
            await close()
        await asyncio.gather(*(give_back(orders, item, on_timeout) for item in left))

    async def step() -> WaitResult:
        try:
            return await waits.__anext__()
        except asyncio.CancelledError:
            if on_timeout != "keep":
                background = orders._shared.background
                await background.shielded_wait(background.spawn(give_up_rest()))
            raise

    try:
        while True:
            try:
                result = runner.call(step)
            except StopAsyncIteration:
                return
            _discard(left, result.order.id)
            yield result
    finally:
        close = getattr(waits, "aclose", None)
        if close is not None:
            runner.soon(close)  # left early: stop waiting, leave the rest as they are


def _discard(items: builtins.list[OrderRef], oid: str) -> None:
    for i, item in enumerate(items):
        if (item.id if isinstance(item, Order) else item) == oid:
            del items[i]
            return


__all__ = ["SyncActivation", "SyncActivations", "SyncOrders", "give_back", "iterate"]
