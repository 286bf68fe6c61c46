"""``client.orders``: buy, read, list, cancel and ban one-time activation numbers."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from .. import _validation as v
from .._constants import MAX_PAGE_SIZE
from .._converter import OrderList
from .._enums import OrderStatus
from .._exceptions import APIConnectionError, ConflictError, NotFoundError, OutcomeUnknownError
from .._models import Order, Page, Refund
from .._pagination import fetch_page, walk_pages
from .._retry import Operation
from .._waiting import (
    Activation,
    OnTimeout,
    WaitResult,
    as_completed,
    cancel_stale,
    check_wait_args,
    remember,
    wait,
)
from .._watcher import OrderHook, Watcher

if TYPE_CHECKING:
    from .._client import Client

OrderRef = Order | str


def order_id(order: OrderRef) -> str:
    """The id of an Order or of an id string."""
    if isinstance(order, Order):
        return order.id
    return v.identifier("order", order)


class Orders:
    """One-time activation numbers: ``await client.orders.create("telegram", "russia")``."""

    def __init__(
        self,
        client: Client,
        on_update: OrderHook | None = None,
        *,
        watcher: Watcher | None = None,
    ) -> None:
        self._client = client
        self._transport = client._transport
        self._book = client._purchases
        self._watcher = watcher or Watcher(self, client.poll_interval, on_update)

    async def create(self, service: str, country: str, operator: str | None = None) -> Order:
        """Buy a number for ``service`` in ``country``; its price is taken from the balance.

        A purchase whose answer is lost is reconciled, never blindly repeated: the
        order it created is found and returned, so the account is charged once.
        Raises ``InsufficientBalanceError``, ``NotFoundError``/``ValidationError`` for an
        unknown service or country, ``OutcomeUnknownError`` if a lost purchase could not
        be checked.
        """
        service = v.text("service", service)
        country = v.text("country", country)
        body = {"service": service, "country": country}
        if operator is not None:
            body["operator"] = v.text("operator", operator)
        key = (service, country)
        retries = self._transport.settings.max_retries
        for _ in range(retries + 1):
            handle = await self._book.begin(key)
            since = self._transport.server_now()
            try:
                order = await self._transport.request(
                    "POST", "/orders", Order, json=body, op=Operation.PURCHASE
                )
            except OutcomeUnknownError as exc:
                lost = exc
            else:
                self._book.hold(order.id)
                return self._remember(_with_defaults(order, country, operator))
            finally:
                # Whatever happened (an error, a cancellation), it is no longer in flight.
                self._book.end(key, handle)
            try:
                adopted = await self._book.reconcile(key, since, operator, self._recent)
            except Exception as exc:
                raise OutcomeUnknownError(
                    f"a purchase of {service}/{country} got no answer and the account could "
                    f"not be checked for it ({exc}); it may have been charged — look for a "
                    "new PENDING order before buying again",
                    method="POST",
                    path="/api/v1/orders",
                ) from lost
            if adopted is not None:
                return self._remember(_with_defaults(adopted, country, operator))
            # Nothing was created: the purchase provably did not happen; buy again.
        raise APIConnectionError(
            f"a purchase of {service}/{country} failed {retries + 1} times without reaching "
            "the server; nothing was charged",
            method="POST",
            path="/api/v1/orders",
        )

    async def _recent(self, since: datetime) -> list[Order]:
        return [order async for order in self._iterate(None, stop_before=since)]

    async def get(self, order: OrderRef) -> Order:
        """The order's current state, with ``sms_code`` once the code arrived."""
        oid = order_id(order)
        fresh = await self._transport.request("GET", f"/orders/{oid}", Order)
        return self._remember(order.merged(fresh) if isinstance(order, Order) else fresh)

    async def _fetch(self, oid: str, max_retries: int | None = None) -> Order:
        return await self._transport.request(
            "GET", f"/orders/{oid}", Order, max_retries=max_retries
        )

    def _remember(self, order: Order) -> Order:
        # The watcher's namespace belongs to the root client, which outlives any
        # with_options() view the order was bought through.
        remember(order, self._watcher.orders)
        return order

    async def list(
        self, page: int = 1, limit: int = 20, status: OrderStatus | str | None = None
    ) -> Page[Order]:
        """One page of this account's orders, newest first."""
        params = {} if status is None else {"status": v.status("status", status, OrderStatus).value}
        return await fetch_page(
            self._transport, "/orders", OrderList, page=page, limit=limit, params=params
        )

    def iterate(self, status: OrderStatus | str | None = None) -> AsyncIterator[Order]:
        """Every order (of ``status``, if given), newest first, fetched 100 per request."""
        if status is not None:
            status = v.status("status", status, OrderStatus)
        return self._iterate(status)

    async def _iterate(
        self, status: OrderStatus | str | None, stop_before: datetime | None = None
    ) -> AsyncIterator[Order]:
        async def fetch(number: int) -> Page[Order]:
            return await self.list(page=number, limit=MAX_PAGE_SIZE, status=status)

        async for page in walk_pages(fetch):
            older = 0
            for order in page.items:
                created = order.created_at
                if stop_before is not None and created is not None and created < stop_before:
                    older += 1
                    continue
                yield order
            if stop_before is not None and page.items and older == len(page.items):
                # Newest first, so later pages are older still; this is only a hint to
                # stop early: one page wholly older than the purchase ends the search.
                return

    async def cancel(self, order: OrderRef) -> Refund:
        """Cancel a PENDING order; its price is refunded.

        Raises ``ConflictError`` when the order is no longer PENDING, with the order
        re-read on ``.order`` (check its ``sms_code``: the code may have arrived).
        """
        return await self._finish(order, "cancel", OrderStatus.CANCELLED)

    async def ban(self, order: OrderRef) -> Refund:
        """Report a PENDING order's number as not receiving; its price is refunded.

        Raises ``ConflictError`` like :meth:`cancel`.
        """
        return await self._finish(order, "ban", OrderStatus.BANNED)

    async def _finish(
        self,
        order: OrderRef,
        action: str,
        target: OrderStatus,
        max_retries: int | None = None,
    ) -> Refund:
        oid = order_id(order)
        try:
            return await self._transport.request(
                "POST", f"/orders/{oid}/{action}", Refund, max_retries=max_retries
            )
        except (ConflictError, NotFoundError) as exc:
            if isinstance(exc, NotFoundError) and not exc.after_lost_answer:
                raise
            current = await self._reread(order)
            if current is not None and current.status == target and exc.after_lost_answer:
                # An earlier attempt of ours went through and only its answer was lost.
                return Refund(success=True, refunded=current.price)
            if isinstance(exc, ConflictError):
                exc.order = current
            raise

    # -- waiting ---------------------------------------------------------------------

    async def wait_for_code(
        self,
        order: OrderRef,
        *,
        timeout: float | None = None,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> str:
        """Wait for the order's SMS code and return it.

        ``timeout`` (seconds) defaults to the order's ``expires_at``; when it passes the
        order is banned (``on_timeout="ban"``), cancelled (``"cancel"``) or kept
        (``"keep"``) and ``CodeTimeoutError`` is raised, carrying the refund. A code
        that arrived meanwhile is returned instead. Raises ``NoCodeError`` if the order
        ends without a code. Cancelling the waiting task leaves the order as it is.
        """
        check_wait_args(timeout, on_timeout, poll_interval)
        current = order if isinstance(order, Order) else await self.get(order)
        final = await wait(
            self,
            current,
            timeout=timeout,
            on_timeout=on_timeout,
            poll_interval=poll_interval,
        )
        assert final.sms_code is not None
        return final.sms_code

    def as_completed(
        self,
        orders: Iterable[OrderRef],
        *,
        timeout: float | None = None,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> AsyncIterator[WaitResult]:
        """Wait for many orders at once; yield a ``WaitResult`` for each as it finishes.

        Each result has ``order`` and either ``code`` or ``error`` (``NoCodeError``,
        ``CodeTimeoutError`` after the ban, ...): one failure never stops the others.
        Leaving the loop early stops waiting on the rest (they are kept as they are).
        """
        check_wait_args(timeout, on_timeout, poll_interval)
        return as_completed(
            self,
            list(orders),
            timeout=timeout,
            on_timeout=on_timeout,
            poll_interval=poll_interval,
        )

    def activation(
        self,
        service: str,
        country: str,
        operator: str | None = None,
        *,
        max_price: Decimal | str | int | float | None = None,
    ) -> Activation:
        """Buy a number for the length of an ``async with`` block; refunded unless used.

        With ``max_price`` the price is checked before buying (``PriceTooHighError``,
        nothing bought) and an order that came back dearer is cancelled at once.
        """
        return Activation(
            self,
            v.text("service", service),
            v.text("country", country),
            v.text("operator", operator) if operator is not None else None,
            v.price("max_price", max_price) if max_price is not None else None,
        )

    async def cancel_stale(
        self, older_than: float | timedelta = timedelta(minutes=5)
    ) -> builtins.list[tuple[Order, Refund]]:
        """Cancel this account's PENDING orders older than ``older_than``; return refunds.

        For recovery after a crash: orders a dead process was waiting on are refunded
        instead of expiring. Orders this client is waiting on are left alone.
        """
        return await cancel_stale(self, older_than)

    async def _reread(self, order: OrderRef) -> Order | None:
        try:
            return await self.get(order)
        except Exception:  # the original error is the one to report
            return None


def _with_defaults(order: Order, country: str, operator: str | None) -> Order:
    # The purchase answer may omit what we asked for; fill it in from the request.
    return attrs.evolve(
        order, country=order.country or country, operator=order.operator or operator
    )
