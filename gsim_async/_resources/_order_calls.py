"""The order endpoints, as the waiting helpers and the watcher use them.

``OrderCalls`` implements the two small protocols the lower layers ask for —
``gsim_async._watcher.OrderSource`` (fetch one, list a page, sightings) and
``gsim_async._waiting.OrderOps`` (fetch, ban/cancel, clocks, background) — over
one transport, and keeps the client's bookkeeping on every order that passes through.
"""

from __future__ import annotations

from datetime import datetime

from .. import _constants as C
from .._background import Background
from .._converter import Decoder, Listing, decoder, listing, order_to_wire
from .._enums import OrderStatus
from .._exceptions import ConflictError, NotFoundError
from .._guard_config import Failure
from .._models import Order, Refund
from .._obligations import expiry_wall
from .._ownership import Key
from .._pacing import Priority
from .._reconcile import Baseline
from .._telemetry import Hooks
from .._transport import Transport
from .._validation import path_id
from .._waiting import Waits
from .._watcher import OrderHook, Watcher, WatcherLike, is_settled
from ._shared import OWNERS, Shared

_ORDER: Decoder[Order] = decoder(Order)
_REFUND: Decoder[Refund] = decoder(Refund)
_ORDERS: Decoder[Listing[Order]] = listing("orders", Order)


def order_key(service: str, country: str | None) -> Key:
    """What purchases of orders are grouped by."""
    return ("order", service) if country is None else ("order", service, country)


class OrderCalls:
    """Order endpoints over one transport, with the client's bookkeeping."""

    def __init__(
        self, transport: Transport, shared: Shared, watcher: WatcherLike | None = None
    ) -> None:
        self._transport = transport
        self._shared = shared
        self._ownership = shared.ownership
        self._watcher = watcher

    def make_watcher(self, on_update: OrderHook | None) -> Watcher:
        """The client's watcher, polling through these calls."""
        self._watcher = Watcher(self, self._shared.poll_interval, on_update)
        return self._watcher

    # -- OrderOps -------------------------------------------------------------------------

    @property
    def watcher(self) -> WatcherLike:
        """The client's watcher."""
        assert self._watcher is not None
        return self._watcher

    @property
    def background(self) -> Background:
        """The client's background tasks."""
        return self._shared.background

    @property
    def telemetry(self) -> Hooks | None:
        """The client's traces and metrics (``None``: off)."""
        return self._transport.shared.telemetry

    @property
    def waits(self) -> Waits:
        """The client's waits in progress, and its stop."""
        return self._shared.waits

    @property
    def poll_interval(self) -> float:
        """Seconds between polls."""
        return self._shared.poll_interval

    async def fetch(self, order_id: str, *, cleanup: bool = False) -> Order:
        """One order, as the watcher (``POLL``) or a cleanup (``REFUND``) reads it."""
        order = await self._transport.request(
            "GET",
            f"/orders/{path_id('order', order_id)}",
            _ORDER,
            priority=Priority.REFUND if cleanup else Priority.POLL,
            max_retries=C.CLEANUP_RETRIES if cleanup else None,
        )
        self.seen(order)
        return order

    async def get(self, order_id: str) -> Order:
        """One order, as the caller asked for it."""
        order = await self._transport.request("GET", f"/orders/{order_id}", _ORDER)
        self.seen(order)
        return order

    async def finish(
        self,
        order: Order | str,
        action: str,
        *,
        cleanup: bool = False,
        max_retries: int | None = None,
    ) -> Refund:
        """Ban or cancel an order; ConflictError (with the order re-read) if not PENDING."""
        oid = order.id if isinstance(order, Order) else order
        target = OrderStatus.BANNED if action == "ban" else OrderStatus.CANCELLED
        try:
            refund = await self._transport.request(
                "POST",
                f"/orders/{oid}/{action}",
                _REFUND,
                priority=Priority.REFUND if cleanup else Priority.CALL,
                max_retries=C.CLEANUP_RETRIES if cleanup else max_retries,
            )
        except (ConflictError, NotFoundError) as exc:
            if isinstance(exc, NotFoundError) and not exc.after_lost_answer:
                raise
            known = order if isinstance(order, Order) else None
            current = await self._reread(oid, known, cleanup=cleanup)
            if current is not None and current.status == target and exc.after_lost_answer:
                # An earlier attempt of ours went through and only its answer was lost.
                refund = Refund(success=True, refunded=current.price)
                self._refunded(current, action, refund)
                return refund
            if isinstance(exc, ConflictError):
                exc.order = current
            raise
        self._refunded(order, action, refund)
        return refund

    def _refunded(self, order: Order | str, action: str, refund: Refund) -> None:
        hooks = self._transport.shared.telemetry
        if hooks is not None and refund.success:
            hooks.refunded(order, action, refund.refunded)

    async def _reread(self, oid: str, known: Order | None, *, cleanup: bool) -> Order | None:
        try:
            fresh = await (self.fetch(oid, cleanup=True) if cleanup else self.get(oid))
        except Exception:  # the original error is the one to report
            return None
        return known.merged(fresh) if known is not None else fresh

    def seconds_left(self, order: Order) -> float:
        """Seconds until ``order`` expires on the server's clock (our best guess)."""
        if order.expires_at is None:
            return C.ORDER_LIFETIME
        return max(self._transport.clock.seconds_until(order.expires_at), 0.0)

    def paused_for(self) -> float:
        """Seconds until the gate a 429 closed opens again."""
        return self._transport.pacing.paused_for

    def settled(self, order: Order) -> None:
        """``order`` will get no (other) code: the registry may forget it."""
        OWNERS.forget(order.id)
        self._shared.guard.ended(order)
        obligations = self._shared.obligations
        if obligations.active:
            obligations.ended(order.id, _outcome(order))

    def waiting(self, order: Order, seconds: float, action: str) -> None:
        """A wait began that refunds by ``action`` after ``seconds`` (for the journal)."""
        obligations = self._shared.obligations
        if obligations.active:
            obligations.waiting(
                order,
                seconds,
                action,
                lambda: order_to_wire(order),
                lambda: expiry_wall(self.seconds_left(order)),
            )

    def not_waiting(self, order_id: str) -> None:
        """A wait stopped without an outcome: the order is its holder's again."""
        self._shared.obligations.not_waiting(order_id)

    def kept(self, order_id: str) -> None:
        """The program keeps the order after a timeout."""
        self._shared.obligations.kept(order_id)

    def refund_started(self, order_id: str, action: str) -> None:
        """A refund began: counted until it ends, and due at once for the journal."""
        self._shared.refunding.add(order_id)
        self._shared.obligations.refunding(order_id, action)

    def refund_over(self, order_id: str) -> None:
        """That refund ended, whichever way."""
        self._shared.refunding.discard(order_id)

    def verified(self, order: Order, *, block: bool = False) -> None:
        """The order's code came (for the spend guard's breaker).

        An order an open ``activation()`` block holds is judged when the block ends
        (``block=True``): the step after the code may still fail.
        """
        guard = self._shared.guard
        if guard.breaker is not None and (block or not self._shared.activations.holds(order.id)):
            guard.verified(order)

    def failed(self, order: Order, failure: Failure, detail: str = "") -> None:
        """The order's verification failed (for the spend guard's breaker)."""
        self._shared.guard.failed(order, failure, detail)

    # -- OrderSource ----------------------------------------------------------------------

    async def scan(self, status: OrderStatus, page: int, limit: int) -> Listing[Order]:
        """One page of the account's orders of ``status``, polled by the watcher."""
        params = {"page": str(page), "limit": str(limit), "status": status.value}
        return await self._transport.request(
            "GET", "/orders", _ORDERS, params=params, priority=Priority.POLL
        )

    def seen(self, order: Order) -> None:
        """An order the API showed: pin the server's clock, spot other buyers."""
        self._shared.guard.seen(order)
        ownership = self._ownership
        if not ownership.seen(order.id, order.created_at) and order.status == OrderStatus.PENDING:
            ownership.consider(order.id, order_key(order.service, order.country), order.created_at)

    def created_floor(self, order: Order) -> float:
        """The earliest the server can have stamped ``order``."""
        sent = self._ownership.sent_at(order.id)
        if sent is None:
            return float("-inf")
        return self.floor_for(sent)

    def sent_at(self, order: Order) -> float | None:
        """When our purchase of ``order`` left, if we bought it."""
        return self._ownership.sent_at(order.id)

    def floor_for(self, sent: float) -> float:
        """The earliest the server can have stamped a purchase sent at ``sent``."""
        return self._transport.clock.earliest(sent).timestamp()

    @property
    def requests_sent(self) -> int:
        """Requests the client has sent so far."""
        return self._transport.shared.requests_sent

    # -- pages ----------------------------------------------------------------------------

    async def page(self, page: int, limit: int, status: OrderStatus | None) -> Listing[Order]:
        """One page of the account's orders, as the caller asked for it."""
        params = {"page": str(page), "limit": str(limit)}
        if status is not None:
            params["status"] = status.value
        result = await self._transport.request("GET", "/orders", _ORDERS, params=params)
        for order in result.items:
            self.seen(order)
        return result

    async def recent(self, since: datetime) -> list[Order]:
        """Every order of the account created since ``since`` (any status, newest first)."""
        found: dict[str, Order] = {}
        number = 1
        while True:
            result = await self.page(number, C.MAX_PAGE_SIZE, None)
            older = 0
            for order in result.items:
                if order.created_at is not None and order.created_at < since:
                    older += 1
                    continue
                found.setdefault(order.id, order)
            last = result.total_pages is not None and number >= result.total_pages
            # Newest first is only a hint: a page wholly older than `since` ends it.
            if not result.items or last or older == len(result.items):
                return list(found.values())
            number += 1

    async def baseline(self) -> Baseline:
        """The account's newest order before this client's first purchase."""
        newest = (await self.page(1, 1, None)).items
        if not newest:
            return Baseline(frozenset(), None)
        return Baseline(frozenset({newest[0].id}), newest[0].created_at)

    def remember(self, order: Order) -> Order:
        """Note which client ``order`` belongs to, while it may still get a code."""
        ref = self._shared.owner_ref
        if is_settled(order):
            self.settled(order)  # no code will come: nothing to wait for through it
        elif ref is not None and not OWNERS.knows(order.id, ref):
            OWNERS.remember(order.id, ref, self.seconds_left(order))
        return order

    def describe(self, order: Order) -> str:
        """One line naming an order, for errors."""
        made = f" made {order.created_at:%H:%M:%S}" if order.created_at else ""
        return f"{order.id} ({order.phone_number}, {order.status}, {order.price}{made})"


def _outcome(order: Order) -> str:
    """How an order ended, for the journal."""
    return "code" if order.sms_code is not None else str(order.status.value)
