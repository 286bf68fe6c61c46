"""Waiting for codes: wait_for_code, as_completed, activation, and the stale-order sweep."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from . import _validation as v
from ._constants import DEFAULT_CLEANUP_TIMEOUT
from ._enums import TERMINAL_WITHOUT_CODE, OrderStatus
from ._exceptions import (
    CodeTimeoutError,
    ConflictError,
    GsimError,
    InvalidArgumentError,
    NoCodeError,
    PriceTooHighError,
)
from ._models import Order, Refund
from ._watcher import is_settled

if TYPE_CHECKING:
    from ._resources._orders import OrderRef, Orders

log = logging.getLogger("gsim_async")

OnTimeout = Literal["ban", "cancel", "keep"]
_ON_TIMEOUT = ("ban", "cancel", "keep")

# Which client bought an order, so the top-level wait_for_code(order) finds its watcher.
_owners: weakref.WeakValueDictionary[str, Orders] = weakref.WeakValueDictionary()


def remember(order: Order, orders: Orders) -> None:
    """Note that ``order`` came from the client owning ``orders``."""
    # A read is cheaper than a write (which makes a weak reference): orders are
    # mostly read again and again by the same client.
    if _owners.get(order.id) is not orders:
        _owners[order.id] = orders


async def wait_for_code(
    order: Order,
    *,
    timeout: float | None = None,
    on_timeout: OnTimeout = "ban",
    poll_interval: float | None = None,
) -> str:
    """Wait for the SMS code of an order bought through a :class:`Client`; return it.

    ``timeout`` (seconds) defaults to the order's ``expires_at``. When it passes,
    the order is banned (``on_timeout="ban"``), cancelled (``"cancel"``) or left as it
    is (``"keep"``) and ``CodeTimeoutError`` is raised; the ban/cancel runs even if
    this task is cancelled meanwhile. A code that is present is returned whatever the
    status says. Raises ``NoCodeError`` if the order ends (expired, cancelled, banned)
    without one. Cancelling the waiting task only stops waiting: the order is kept.
    """
    if not isinstance(order, Order):
        raise InvalidArgumentError(
            "wait_for_code(order) takes an Order returned by a Client; for an order id use "
            "client.orders.wait_for_code(order_id)"
        )
    orders = _owners.get(order.id)
    if orders is None:
        raise InvalidArgumentError(
            f"order {order.id} was not bought or read through a Client of this process; "
            "use client.orders.wait_for_code(order) with the client it belongs to"
        )
    return await orders.wait_for_code(
        order, timeout=timeout, on_timeout=on_timeout, poll_interval=poll_interval
    )


def check_wait_args(timeout: float | None, on_timeout: str, poll_interval: float | None) -> None:
    """Validate the common arguments of the waiting helpers."""
    v.choice("on_timeout", on_timeout, _ON_TIMEOUT)
    if timeout is not None:
        v.positive_seconds("timeout", timeout, allow_zero=True)
    if poll_interval is not None:
        v.positive_seconds("poll_interval", poll_interval)


async def wait(
    orders: Orders,
    order: Order,
    *,
    timeout: float | None,
    on_timeout: OnTimeout,
    poll_interval: float | None,
) -> Order:
    """The order once it has a code; raises NoCodeError/CodeTimeoutError otherwise."""
    if order.sms_code is not None:
        return order
    if order.status in TERMINAL_WITHOUT_CODE:
        raise _no_code(order)
    seconds = _time_left(order, orders._transport.server_now()) if timeout is None else timeout
    watch = orders._watcher.watch(order, poll_interval or orders._client.poll_interval)
    try:
        with anyio.move_on_after(seconds):
            await watch.done.wait()
    finally:
        orders._watcher.unwatch(watch)
    if watch.done.is_set():
        if watch.error is not None:
            raise watch.error
        final = watch.order
        if final.sms_code is not None:
            return final
        raise _no_code(final)
    return await give_up(orders, watch.order, on_timeout, seconds)


def _time_left(order: Order, now: datetime) -> float:
    if order.expires_at is None:
        # No expiry given: the API documents about 20 minutes from purchase.
        return 20 * 60.0
    # expires_at is on the server's clock, so is `now`.
    left = (order.expires_at - now).total_seconds()
    return max(left, 0.0)


def _no_code(order: Order) -> NoCodeError:
    return NoCodeError(
        f"order {order.id} ({order.phone_number}) ended {order.status} without a code",
        order=order,
    )


async def give_up(orders: Orders, order: Order, action: OnTimeout, waited: float) -> Order:
    """After a timeout: ban/cancel (shielded) and raise, or return a code that raced in."""
    what = f"no code for order {order.id} ({order.phone_number}) after {waited:.0f} s"
    if action == "keep":
        raise CodeTimeoutError(f"{what}; the order was kept", order=order)
    return await orders._client._background.shielded(_refund_or_code(orders, order, action, what))


async def _refund_or_code(orders: Orders, order: Order, action: OnTimeout, what: str) -> Order:
    done = await settle(orders, order, action)
    if done.order.sms_code is not None:
        log.info("code for order %s arrived just before the %s", order.id, action)
        return done.order
    raise CodeTimeoutError(f"{what}; {done.note}", order=done.order, refunded=done.refunded)


@attrs.frozen
class Settled:
    """How a cleanup ended: the order's last known state, and what we got back."""

    order: Order
    refunded: Decimal | None
    note: str


#: Cleanup retries until its own deadline, waiting out 429s (design.md, rule 4).
_CLEANUP_RETRIES = 1000


async def settle(orders: Orders, order: Order, action: Literal["ban", "cancel"] | str) -> Settled:
    """Ban or cancel ``order`` for a refund, within the cleanup deadline.

    If the order is no longer PENDING, a code may have come: a RECEIVED order without
    its code yet (or a status we do not know) is watched until the code or a final
    status shows, so a paid code is never given up.
    """
    target = OrderStatus.BANNED if action == "ban" else OrderStatus.CANCELLED
    current = order
    with anyio.move_on_after(DEFAULT_CLEANUP_TIMEOUT):
        while True:
            try:
                refund = await orders._finish(current, action, target, _CLEANUP_RETRIES)
            except ConflictError as exc:
                current = exc.order or current
            except GsimError as exc:
                note = f"the {action} failed ({exc}); the order will expire and be refunded"
                return Settled(current, None, note)
            else:
                done = "banned" if action == "ban" else "cancelled"
                return Settled(
                    attrs.evolve(current, status=target),
                    refund.refunded,
                    f"{done}, {refund.refunded} refunded",
                )
            while True:
                if current.sms_code is not None:
                    return Settled(current, None, "a code arrived")
                if current.status in TERMINAL_WITHOUT_CODE:
                    return Settled(current, None, f"the order is already {current.status}")
                if current.status == OrderStatus.PENDING:
                    break  # back to PENDING (or a stale read): ban/cancel again
                await anyio.sleep(orders._client.poll_interval)
                try:
                    current = current.merged(await orders._fetch(current.id, _CLEANUP_RETRIES))
                except GsimError:
                    continue
    return Settled(
        current, None, f"the {action} did not finish within {DEFAULT_CLEANUP_TIMEOUT:.0f} s"
    )


@attrs.frozen
class WaitResult:
    """One order's outcome from ``as_completed``: ``code`` or ``error`` is set."""

    order: Order
    code: str | None = None
    error: GsimError | None = None


async def as_completed(
    orders: Orders,
    items: Iterable[OrderRef],
    *,
    timeout: float | None,
    on_timeout: OnTimeout,
    poll_interval: float | None,
) -> AsyncIterator[WaitResult]:
    """Yield a WaitResult per order as each one finishes; see ``Orders.as_completed``."""
    results: asyncio.Queue[WaitResult] = asyncio.Queue()

    async def one(ref: OrderRef) -> None:
        order = ref if isinstance(ref, Order) else None
        try:
            if order is None:
                order = await orders.get(ref)
            final = await wait(
                orders,
                order,
                timeout=timeout,
                on_timeout=on_timeout,
                poll_interval=poll_interval,
            )
        except NoCodeError as exc:
            results.put_nowait(WaitResult(order=exc.order, error=exc))
        except Exception as exc:  # every order gets its result, whatever went wrong
            error = exc if isinstance(exc, GsimError) else GsimError(f"{type(exc).__name__}: {exc}")
            if error is not exc:
                error.__cause__ = exc
            stub = order or Order(
                id=str(ref),
                service="",
                phone_number="",
                status=OrderStatus("UNKNOWN"),
                price=Decimal(0),
            )
            results.put_nowait(WaitResult(order=stub, error=error))
        else:
            results.put_nowait(WaitResult(order=final, code=final.sms_code))

    tasks = [asyncio.ensure_future(one(ref)) for ref in items]
    try:
        for _ in range(len(tasks)):
            yield await results.get()
    finally:
        # The consumer stopped early: stop waiting (orders are kept, as with a cancelled
        # wait_for_code); a ban already under way finishes, being shielded.
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class Activation:
    """``async with client.orders.activation(...) as act``: a number that refunds itself.

    ``act.order`` / ``act.phone_number`` are the number bought; ``await
    act.wait_for_code()`` returns its code. Leaving the block without a code gets the
    money back: the order is banned after a code timeout and cancelled on any other
    exit (an exception, a cancelled task), shielded so it also happens under
    cancellation. ``act.refunded`` then says how much came back.
    """

    def __init__(
        self,
        orders: Orders,
        service: str,
        country: str,
        operator: str | None,
        max_price: Decimal | None,
    ) -> None:
        self._orders = orders
        self._service = service
        self._country = country
        self._operator = operator
        self._max_price = max_price
        self._order: Order | None = None
        #: The code, once ``wait_for_code`` returned it.
        self.code: str | None = None
        #: What the cleanup on exit gave back, if it ran.
        self.refunded: Decimal | None = None

    @property
    def order(self) -> Order:
        """The order bought on entering the block (its latest known state)."""
        if self._order is None:
            raise RuntimeError("use 'async with client.orders.activation(...) as act' first")
        return self._order

    @property
    def phone_number(self) -> str:
        """The number to enter in the service's sign-up form."""
        return self.order.phone_number

    async def __aenter__(self) -> Activation:
        if self._max_price is not None:
            await self._check_price()
        background = self._orders._client._background
        buying = background.spawn(self._orders.create(self._service, self._country, self._operator))
        try:
            order = await asyncio.shield(buying)
        except asyncio.CancelledError:
            # Cancelled while the purchase was on the wire: if it goes through, the
            # number is cancelled at once, so leaving the block still refunds.
            background.spawn(self._refund_if_bought(buying))
            raise
        self._order = order
        if self._max_price is not None and order.price > self._max_price:
            await self._cleanup()
            raise PriceTooHighError(
                f"order {order.id} came back at {order.price}, above max_price "
                f"{self._max_price}; it was cancelled (refunded: {self.refunded})",
                price=order.price,
                max_price=self._max_price,
            )
        return self

    async def _refund_if_bought(self, buying: asyncio.Task[Order]) -> None:
        try:
            self._order = await buying
        except BaseException:  # nothing bought, nothing to refund
            return
        await self._cancel()

    async def _check_price(self) -> None:
        assert self._max_price is not None
        operators = await self._orders._client.operators(self._service, self._country)
        wanted = self._operator or "any"
        offers = [o for o in operators if o.id == wanted] or [o for o in operators if o.count > 0]
        if not offers:
            return  # nothing to compare with; the price is checked after buying
        price = min(o.price for o in offers)
        if price > self._max_price:
            raise PriceTooHighError(
                f"{self._service}/{self._country} costs {price}, above max_price "
                f"{self._max_price}; nothing was bought",
                price=price,
                max_price=self._max_price,
            )

    async def wait_for_code(
        self,
        timeout: float | None = None,
        *,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> str:
        """Wait for the code (see :func:`gsim_async.wait_for_code`) and return it."""
        check_wait_args(timeout, on_timeout, poll_interval)
        try:
            final = await wait(
                self._orders,
                self.order,
                timeout=timeout,
                on_timeout=on_timeout,
                poll_interval=poll_interval,
            )
        except NoCodeError as exc:
            self._order = exc.order
            if isinstance(exc, CodeTimeoutError) and exc.refunded is not None:
                self.refunded = exc.refunded
            raise
        self._order = final
        self.code = final.sms_code
        assert self.code is not None
        return self.code

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._order is None or self.code is not None or is_settled(self._order):
            return
        await self._cleanup()

    async def _cleanup(self) -> None:
        await self._orders._client._background.shielded(self._cancel())

    async def _cancel(self) -> None:
        done = await settle(self._orders, self.order, "cancel")
        self._order = done.order
        self.refunded = done.refunded
        if done.order.sms_code is not None:
            # Paid for and delivered while we left: keep it readable on act.code.
            self.code = done.order.sms_code
            log.info("order %s got its code while being cancelled", done.order.id)
        elif done.refunded is None and done.order.status not in TERMINAL_WITHOUT_CODE:
            log.warning(
                "order %s was not cancelled on leaving activation(): %s", done.order.id, done.note
            )


async def cancel_stale(orders: Orders, older_than: float | timedelta) -> list[tuple[Order, Refund]]:
    """Cancel this account's PENDING orders older than ``older_than``; see Orders."""
    age = older_than if isinstance(older_than, timedelta) else timedelta(seconds=older_than)
    if age < timedelta(0):
        raise InvalidArgumentError("older_than must not be negative")
    cutoff = datetime.now(timezone.utc) - age
    stale = [
        order
        async for order in orders.iterate(status=OrderStatus.PENDING)
        if order.created_at is not None
        and order.created_at <= cutoff
        and not orders._watcher.is_watching(order.id)
    ]
    done: list[tuple[Order, Refund]] = []
    limiter = anyio.Semaphore(8)

    async def one(order: Order) -> None:
        async with limiter:
            try:
                refund = await orders.cancel(order)
            except ConflictError:
                return  # it left PENDING meanwhile (maybe a code came): nothing to refund
            except GsimError as exc:
                # One failure must not stop the sweep; the order still expires and refunds.
                log.warning("could not cancel stale order %s: %s", order.id, exc)
                return
            done.append((attrs.evolve(order, status=OrderStatus.CANCELLED), refund))

    async with anyio.create_task_group() as tg:
        for order in stale:
            tg.start_soon(one, order)
    return done
