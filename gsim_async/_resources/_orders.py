"""``client.orders``: buy, read, list, cancel and ban one-time activation numbers."""

from __future__ import annotations

import asyncio
import builtins
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from decimal import Decimal

import anyio
import attrs

from .. import _constants as C
from .. import _registry
from .. import _validation as v
from .._attempts import Activations, Quotes
from .._converter import Decoder, decoder, format_datetime, order_to_wire
from .._countries import CountryCatalogue
from .._enums import OrderStatus
from .._exceptions import ClientClosedError, ConflictError, GsimError, InvalidArgumentError
from .._models import Country, Operator, Order, OrderStats, Page, Refund
from .._obligations import Purchase, expiry_wall
from .._pagination import make_page, walk_pages
from .._reconcile import Reconciler
from .._retry import Operation
from .._stats import CodeSightings, ProgressHook, order_stats
from .._transport import Transport
from .._waiting import (
    Activation,
    AsCompleted,
    OnTimeout,
    Settled,
    WaitResult,
    check_wait_args,
    settle,
    wait,
)
from .._watcher import OrderHook, WatcherLike
from ._buying import buy
from ._order_calls import OrderCalls, order_key
from ._recovery import Recovery
from ._shared import OWNERS, Shared

log = logging.getLogger("gsim_async")

OrderRef = Order | str
Quote = Callable[[str, str], Awaitable[list[Operator]]]

_ORDER: Decoder[Order] = decoder(Order)
_OPERATORS: Decoder[list[Operator]] = decoder(list[Operator])
_COUNTRIES: Decoder[list[Country]] = decoder(list[Country])


def order_id(order: OrderRef) -> str:
    """The id of an Order or of an id string, checked for use in a URL."""
    return v.identifier("order", order.id if isinstance(order, Order) else order)


class OrderBook:
    """What the orders namespaces of one client (all its views) share."""

    def __init__(self, shared: Shared, on_update: OrderHook | None) -> None:
        self.shared = shared
        self.root = root = OrderCalls(shared.root, shared)
        #: Across a fleet: which of some order ids a live member holds or waits on.
        self.fleet_claims: Callable[[builtins.list[str]], Awaitable[set[str]]] | None = None
        #: When this client saw each code arrive, for orders.stats()'s time to a code.
        self.sightings = CodeSightings(shared.root.clock)
        #: The hook every watcher of this client calls (the caller's, and the sightings).
        self.on_update = self.sightings.hook(on_update)
        self.watcher: WatcherLike = root.make_watcher(self.on_update)
        #: Recent GET /operators answers, shared by every orders.activations() loop.
        self.quotes = Quotes()
        self.reconciler: Reconciler[Order] = Reconciler(
            noun="order",
            ownership=shared.ownership,
            clock=shared.root.clock,
            background=shared.background,
            recent=root.recent,
            baseline=root.baseline,
            key_of=lambda o: order_key(o.service, o.country),
            describe=root.describe,
            window=shared.reconcile_window,
            on_baseline=lambda b: shared.obligations.baseline(
                "order", b.ids, format_datetime(b.newest) if b.newest else None
            ),
        )
        #: An earlier run's orders found in the journal (set by the client).
        self.recovery: Recovery | None = None
        _registry.register_claims(self)

    def claims(self, order_id: str) -> bool:
        """Whether this client waits on ``order_id`` or an open activation uses it."""
        return self.watcher.is_watching(order_id) or self.shared.activations.holds(order_id)


class Orders:
    """One-time activation numbers: ``await client.orders.create("telegram", "russia")``."""

    def __init__(
        self,
        transport: Transport,
        book: OrderBook,
        poll_interval: float,
        countries: CountryCatalogue | None = None,
    ) -> None:
        self._transport = transport
        self._book = book
        self._shared = book.shared
        self._calls = OrderCalls(transport, book.shared, book.watcher)
        self._poll_interval = poll_interval
        root = book.shared.root
        self._countries = countries or CountryCatalogue(
            lambda: root.request("GET", "/countries", _COUNTRIES)
        )
        if self._shared.owner_ref is None:
            # The root namespace answers the top-level wait_for_code(order) for every view.
            self._shared.owner_ref = weakref.ref(self)

    @property
    def waiting(self) -> int:
        """How many orders this client is waiting on for a code right now."""
        return self._book.watcher.watching

    # -- buying -------------------------------------------------------------------------

    async def create(self, service: str, country: str, operator: str | None = None) -> Order:
        """Buy a number for ``service`` in ``country``; its price is taken from the balance.

        A purchase whose answer is lost is reconciled, never blindly repeated: the
        order it created is found and returned, so the account is charged once. When
        that cannot be proved (another client buys on the same key), nothing is bought
        again and ``OutcomeUnknownError`` lists the candidates. If the calling task is
        cancelled while the purchase is on the wire, an order it bought is cancelled
        (refunded). ``country`` is an id, an ISO code or a name (``"russia"``, ``"RU"``,
        ``"Russia"``). Raises ``InsufficientBalanceError``, ``InvalidArgumentError``
        (naming close matches) for a country name or code the catalogue does not know,
        and ``NotFoundError`` / ``ValidationError`` for an unknown service or country id.
        """
        return await self._create(service, country, operator, "order")

    async def _create(
        self, service: str, country: str, operator: str | None, purpose: str
    ) -> Order:
        service = v.text("service", service)
        v.text("country", country)
        if operator is not None:
            operator = v.text("operator", operator)
        waits = self._shared.waits
        waits.refuse("the purchase")
        country = await self._countries.resolve(country)
        waits.refuse("the purchase")
        background = self._shared.background
        task = background.spawn(self._buy(service, country, operator, purpose))
        try:
            order = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The purchase goes on; if it bought an order, nobody will use it: refund it.
            task.add_done_callback(self._refund_orphan)
            raise
        if waits.stopped and waits.keeper is None:
            # Bought as the client stopped: the program is going, nobody will wait on it.
            result = await self._give_back(order)
            raise ClientClosedError(
                f"the gsim Client stopped while buying: order {order.id} was cancelled "
                f"({result.note})",
                order=result.order,
                refunded=result.refunded,
            )
        return order

    async def _buy(self, service: str, country: str, operator: str | None, purpose: str) -> Order:
        body = {"service": service, "country": country}
        if operator is not None:
            body["operator"] = operator
        wanted = None if operator in (None, "any") else operator

        def matches(order: Order) -> bool:
            return (
                order.service == service
                and order.country in (None, country)
                and (wanted is None or order.operator in (None, wanted))
            )

        async def send(sent_log: list[float], before: Callable[[], Awaitable[None]]) -> Order:
            return await self._transport.request(
                "POST",
                "/orders",
                _ORDER,
                json=body,
                op=Operation.PURCHASE,
                sent_log=sent_log,
                before_send=before,
            )

        order = await buy(
            reconciler=self._book.reconciler,
            key=order_key(service, country),
            what=f"{service}/{country}",
            matches=matches,
            send=send,
            reread=self._calls.get,
            retries=self._transport.settings.max_retries,
            path=C.API_PREFIX + "/orders",
            journal=lambda: self._shared.obligations.purchase("order", purpose, body),
            record=self._record,
        )
        return self._calls.remember(self._filled(order, country, operator))

    @staticmethod
    def _filled(order: Order, country: str, operator: str | None) -> Order:
        # The purchase answer may omit what we asked for; fill it in from the request.
        return attrs.evolve(
            order, country=order.country or country, operator=order.operator or operator
        )

    def _record(self, purchase: Purchase, order: Order) -> None:
        if self._shared.obligations.active:
            expires = expiry_wall(self._calls.seconds_left(order))
            purchase.bought_order(order, order_to_wire(order), expires)

    def _refund_orphan(self, task: asyncio.Task[Order]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        order = task.result()
        log.info("order %s was bought for a cancelled caller; cancelling it", order.id)

        # Like every refund: tried until it lands while the client is open.
        self._shared.background.spawn(settle(self._calls, order, "cancel"))

    async def recovered(self) -> builtins.list[Order]:
        """An earlier run's orders still owed, handed back to this program (each once).

        With a journal (``Client(journal=...)``), what a run left owed when it died (or
        closed with a refund still under way) is taken over when the journal is opened
        again: purchases it had on the wire are reconciled, and each order still held
        without a code is refunded when its refund falls due (an ``activation()``'s
        after a short grace, a wait's at the end of its timeout, a ``create()``'s before
        it expires). Calling this first takes those orders back instead: they are
        returned (with ``sms_code`` if the code came meanwhile) and not refunded; wait
        on them with the usual helpers. Waits for the reconciliation (up to
        ``reconcile_window`` when the run died just after sending a purchase). Without
        a journal, an empty list.
        """
        recovery = self._book.recovery
        return [] if recovery is None else await recovery.orders()

    # -- reading ------------------------------------------------------------------------

    async def get(self, order: OrderRef) -> Order:
        """The order's current state, with ``sms_code`` once the code arrived."""
        fresh = await self._calls.get(order_id(order))
        return self._calls.remember(order.merged(fresh) if isinstance(order, Order) else fresh)

    async def list(
        self, page: int = 1, limit: int = 20, status: OrderStatus | str | None = None
    ) -> Page[Order]:
        """One page of this account's orders, newest first."""
        number, size = v.page(page), v.limit(limit)
        wanted = None if status is None else v.status("status", status, OrderStatus)
        return make_page(await self._calls.page(number, size, wanted), number, size)

    def iterate(self, status: OrderStatus | str | None = None) -> AsyncIterator[Order]:
        """Every order (of ``status``, if given), newest first, fetched 100 per request."""
        wanted = None if status is None else v.status("status", status, OrderStatus)

        async def fetch(number: int) -> Page[Order]:
            result = await self._calls.page(number, C.MAX_PAGE_SIZE, wanted)
            return make_page(result, number, C.MAX_PAGE_SIZE)

        return _items(walk_pages(fetch))

    # -- ending -------------------------------------------------------------------------

    async def cancel(self, order: OrderRef) -> Refund:
        """Cancel a PENDING order; its price is refunded.

        Raises ``ConflictError`` when the order is no longer PENDING, with the order
        re-read on ``.order`` (check its ``sms_code``: the code may have arrived).
        """
        return await self._end(order, "cancel")

    async def ban(self, order: OrderRef) -> Refund:
        """Report a PENDING order's number as not receiving; its price is refunded.

        Raises ``ConflictError`` like [`cancel`][gsim_async._resources._orders.Orders.cancel].
        """
        return await self._end(order, "ban")

    async def _end(self, order: OrderRef, action: str) -> Refund:
        oid = order_id(order)
        refund = await self._calls.finish(order if isinstance(order, Order) else oid, action)
        OWNERS.forget(oid)
        self._shared.obligations.ended(oid, "banned" if action == "ban" else "cancelled")
        return refund

    async def cancel_stale(
        self, older_than: float | timedelta = timedelta(minutes=5)
    ) -> builtins.list[tuple[Order, Refund]]:
        """Cancel this account's PENDING orders older than ``older_than``; return refunds.

        For recovery after a crash: orders a dead process was waiting on are refunded
        instead of expiring. Orders that a live client of *this process* holds or waits
        on are left alone. Without a fleet, this process cannot see what other processes
        on the same API key are doing: their PENDING orders older than ``older_than``
        are cancelled too, so choose an age longer than any wait of theirs (or use a
        fleet, whose members' orders are never touched).
        """
        age = older_than if isinstance(older_than, timedelta) else None
        if age is None:
            age = timedelta(seconds=v.positive_seconds("older_than", older_than, allow_zero=True))
        if age < timedelta(0):
            raise InvalidArgumentError("older_than must not be negative")
        pending = [order async for order in self.iterate(status=OrderStatus.PENDING)]
        # Measured on the server's clock, erring on the young side (never too early);
        # older_than=0 means every PENDING order.
        cutoff = self._transport.clock.surely_past() - age
        stale = [
            order
            for order in pending
            if (not age or (order.created_at is not None and order.created_at <= cutoff))
            and not _registry.claimed(order.id)
        ]
        if self._book.fleet_claims is not None and stale:
            # A fleet knows what every live member holds or waits on: leave those.
            claimed = await self._book.fleet_claims([o.id for o in stale])
            stale = [o for o in stale if o.id not in claimed]
        done: builtins.list[tuple[Order, Refund]] = []
        limiter = anyio.Semaphore(C.SWEEP_CONCURRENCY)

        async def one(order: Order) -> None:
            async with limiter:
                try:
                    refund = await self.cancel(order)
                except ConflictError:
                    return  # it left PENDING meanwhile (maybe a code came): nothing to refund
                except GsimError as exc:
                    # One failure must not stop the sweep; the order still expires.
                    log.warning("could not cancel stale order %s: %s", order.id, exc)
                    return
                done.append((attrs.evolve(order, status=OrderStatus.CANCELLED), refund))

        async with anyio.create_task_group() as tg:
            for order in stale:
                tg.start_soon(one, order)
        return done

    # -- waiting ------------------------------------------------------------------------

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
        order_id(current)
        final = await wait(
            self._calls,
            current,
            timeout=timeout,
            on_timeout=on_timeout,
            poll_interval=poll_interval or self._poll_interval,
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
        The ban (or cancel) after a timeout happens when its result is taken; leaving
        the loop early stops waiting on the rest and leaves them as they are.
        """
        check_wait_args(timeout, on_timeout, poll_interval)
        items = builtins.list(orders)
        for item in items:
            order_id(item)
        return AsCompleted(
            self._calls,
            items,
            self.get,
            timeout=timeout,
            on_timeout=on_timeout,
            poll_interval=poll_interval or self._poll_interval,
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
        nothing bought) and an order that came back dearer is cancelled at once (if its
        code won that race, the error carries the code). ``country`` may be an id, an
        ISO code or a name, as for [`create`][gsim_async._resources._orders.Orders.create].
        """
        service = v.text("service", service)
        country = v.text("country", country)
        operator = v.text("operator", operator) if operator is not None else None
        price = v.price("max_price", max_price) if max_price is not None else None

        async def quote() -> builtins.list[Operator]:
            return await self._operators(service, await self._countries.resolve(country))

        return Activation(
            self._calls,
            lambda: self._create(service, country, operator, "activation"),
            quote,
            what=f"{service}/{country}",
            operator=operator,
            max_price=price,
            register=self._shared.activations.add,
        )

    async def _operators(self, service: str, country: str) -> builtins.list[Operator]:
        params = {"service": service, "country": country}
        return await self._transport.request("GET", "/operators", _OPERATORS, params=params)

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
    ) -> Activations:
        """Fresh numbers until one gets its code: ``async for act in ...: async with act:``.

        Each try is an [`Activation`][gsim_async.Activation] (entering the block buys
        its number). A try whose wait ends without a code (``CodeTimeoutError``,
        ``NoCodeError``) is banned or cancelled for its refund and the loop yields a new
        number; a try that leaves its block with a code ends the loop; any other
        exception is refunded and leaves the loop. ``countries`` (ids, ISO codes or
        names) and ``operators`` (``None``: any) are tried in the order given, each try
        moving on to the next; one that is sold out, not sold, or dearer than
        ``max_price`` is skipped without buying (``GET /operators`` is read first).
        ``budget`` caps the total price of the numbers the loop buys, refunds aside: a
        purchase that would pass it is not made.

        Raises ``InvalidArgumentError`` for a bad argument (before any request) or a
        country code or name the catalogue does not know, and the server's
        ``ValidationError`` for an id it refuses (both before anything is bought),
        ``AttemptsExhaustedError`` (a ``NoCodeError``; ``.orders``) after ``attempts``
        tries without a code, ``NoNumberAvailableError`` when no candidate is left to
        buy from and ``BudgetExceededError`` when the next number would pass ``budget``
        (both with ``.orders`` and ``.skipped``).
        """
        service = v.text("service", service)
        names = _texts("countries", countries)
        wanted: tuple[str | None, ...] = (None,)
        if operators is not None:
            wanted = tuple(
                dict.fromkeys(None if o == "any" else o for o in _texts("operators", operators))
            )
        tries = v.integer("attempts", attempts, 1)
        price = v.price("max_price", max_price) if max_price is not None else None
        cap = v.price("budget", budget) if budget is not None else None

        def activation(buy: Callable[[], Awaitable[Order]], what: str) -> Activation:
            return Activation(
                self._calls,
                buy,
                None,
                what=what,
                operator=None,
                max_price=None,
                register=self._shared.activations.add,
                swallow_no_code=True,
            )

        return Activations(
            service=service,
            countries=names,
            operators=wanted,
            attempts=tries,
            max_price=price,
            budget=cap,
            resolve=lambda name: self._countries.lookup(name, read=True),
            quote=lambda service, country: self._book.quotes.get(service, country, self._operators),
            buy=self._buy_for_activation,
            refund=self._give_back,
            activation=activation,
        )

    async def _buy_for_activation(self, service: str, country: str, operator: str | None) -> Order:
        return await self._create(service, country, operator, "activation")

    async def _give_back(self, order: Order) -> Settled:
        """Cancel an order nobody will use, shielded from the caller's cancellation."""
        background = self._shared.background
        return await background.shielded_wait(
            background.spawn(settle(self._calls, order, "cancel"))
        )

    # -- what worked ----------------------------------------------------------------------

    async def stats(
        self,
        since: datetime | timedelta | None = None,
        service: str | None = None,
        country: str | None = None,
        on_progress: ProgressHook | None = None,
    ) -> builtins.list[OrderStats]:
        """What each (service, country, operator) gave this account: one ``OrderStats`` each.

        Read from the order history, 100 orders a request, newest first; ``since`` (an
        aware ``datetime``, or a ``timedelta`` back from now) stops the reading at older
        orders. ``service`` and ``country`` (id, ISO code or name) keep only theirs.
        ``on_progress`` is called with a ``StatsProgress`` (pages and orders read so
        far) after each page. Money is exact: ``spent - refunded`` is what the account
        paid for these orders. The API does not say when a code arrived, so
        ``median_time_to_code`` covers only codes this client saw arrive while waiting.
        """
        cutoff: datetime | None = None
        if isinstance(since, timedelta):
            cutoff = self._transport.clock.now() - since
        elif isinstance(since, datetime):
            if since.tzinfo is None or since.utcoffset() is None:
                raise InvalidArgumentError(
                    "since must be an aware datetime (e.g. datetime.now(timezone.utc)) or a "
                    "timedelta"
                )
            cutoff = since
        elif since is not None:
            raise InvalidArgumentError(f"since must be a datetime or a timedelta, got {since!r}")
        wanted_service = v.text("service", service) if service is not None else None
        if country is not None:
            v.text("country", country)
        if on_progress is not None and not callable(on_progress):
            raise InvalidArgumentError(f"on_progress must be callable, got {on_progress!r}")
        wanted_country = await self._countries.resolve(country) if country is not None else None

        async def fetch(number: int) -> Page[Order]:
            return await self.list(page=number, limit=C.MAX_PAGE_SIZE)

        return await order_stats(
            fetch,
            self._book.sightings,
            since=cutoff,
            service=wanted_service,
            country=wanted_country,
            on_progress=on_progress,
        )


def _texts(name: str, value: object) -> tuple[str, ...]:
    """One non-empty string, or a non-empty sequence of them (order kept, duplicates out)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Seq) or not items:
        raise InvalidArgumentError(
            f"{name} must be a string or a non-empty list of strings, got {value!r:.80}"
        )
    return tuple(dict.fromkeys(v.text(name, item) for item in items))


async def _items(pages: AsyncIterator[Page[Order]]) -> AsyncIterator[Order]:
    async for page in pages:
        for item in page.items:
            yield item


async def wait_for_code(
    order: Order,
    *,
    timeout: float | None = None,
    on_timeout: OnTimeout = "ban",
    poll_interval: float | None = None,
) -> str:
    """Wait for the SMS code of an order bought through a [`Client`][gsim_async.Client]; return it.

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
    if order.sms_code is not None:
        return order.sms_code
    owner = OWNERS.owner(order.id)
    if owner is None:
        raise InvalidArgumentError(
            f"order {order.id} was not bought or read through a live Client of this "
            "process (or it already settled); use client.orders.wait_for_code(order) with "
            "the client it belongs to"
        )
    code: str = await owner.wait_for_code(
        order, timeout=timeout, on_timeout=on_timeout, poll_interval=poll_interval
    )
    return code
