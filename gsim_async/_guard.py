"""The spend guard: what every purchase asks before it leaves, and ``client.guard``.

A purchase is *admitted* (``Guard.admit_order``/``admit_rental``) before any purchase
request: refused with ``BreakerOpenError`` while its (service, country) breaker is open,
or with ``SpendLimitError`` when what it reserves would take spend past the limit.
Admitted, it holds a ``Ticket`` until it answers: ``bought`` turns it into the
order's or rental's price, ``abandoned`` frees it when provably nothing was bought
(and keeps it when that is unknown: the SDK never guesses with the user's money).

What a purchase reserves (design.md, money rules):

1. its ``max_price``, when it has one (``activation(max_price=...)``, ``activations()``);
2. else the last price this client saw for that service, country and operator (its
   purchases and the ``GET /operators`` answers it read; ``None`` is the "any" row);
3. else the price ``GET /operators`` gives now (one request per service and country,
   shared by purchases started together), read only once the guard has checked that
   nothing already holds the purchase back;
4. else (the catalogue names no price for it, or a rental whose markup was never
   seen) all the room left under the limit: nothing else can pass it while that
   purchase is in flight.

An order that comes back dearer than it reserved and past the limit is cancelled at
once (``SpendLimitError``, refunded), unless its code won the race. A rental cannot be
refunded: it is kept, and the overshoot logged.

The counters live in a ``Store``: ``LocalStore`` in this process, or the fleet's
(``gsim_async.fleet._spend``) in Redis.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Protocol

import attrs

from ._enums import TERMINAL_WITHOUT_CODE
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    BreakerOpenError,
    GuardError,
    InvalidArgumentError,
    JournalError,
    OutcomeUnknownError,
    SpendLimitError,
)
from ._guard_config import Breaker, Failure, SpendLimit, describe
from ._ledger import (
    BreakerKey,
    GuardStatus,
    Ledger,
    Verdict,
    from_micro,
    to_micro,
)
from ._models import Operator, Order

log = logging.getLogger("gsim_async")

#: Orders whose (service, country) and outcome the guard remembers, at most.
_REMEMBER = 100_000


@attrs.frozen
class Admission:
    """What a store is asked to admit."""

    ticket: str
    micro: int | None  # None: all the room left
    floor: int
    key: BreakerKey | None
    #: Only say whether it would be admitted (no room at all refuses), taking nothing.
    dry: bool = False


class Store(Protocol):
    """Where the guard's counters live (this process, or a fleet's Redis)."""

    @property
    def shared(self) -> bool:
        """Whether the counts are a fleet's."""

    async def admit(self, admission: Admission) -> Verdict:
        """Admit a purchase (a ticket reserving its amount), or say why not."""

    async def commit(self, ticket: str, item: str, micro: int) -> bool:
        """The purchase bought ``item`` at ``micro``; whether that passes the limit."""

    def release(self, ticket: str, key: BreakerKey | None) -> None:
        """The purchase provably bought nothing (applied at once, written soon)."""

    def refund(self, item: str) -> None:
        """``item`` was refunded in full (applied at once, written soon)."""

    def holds(self, item: str) -> bool:
        """Whether this client counts ``item`` (an order it bought) right now."""

    def outcome(self, key: BreakerKey, failure: Failure | None, detail: str) -> None:
        """A verification succeeded or failed (applied at once, written soon)."""

    async def status(self) -> GuardStatus:
        """The counters as they stand."""

    async def reset(self, service: str | None, country: str | None) -> int:
        """Close breakers; how many."""


class LocalStore:
    """The counters of one client, in memory (no fleet)."""

    def __init__(self, limit: SpendLimit | None, breaker: Breaker | None) -> None:
        self._limit = limit
        self._breaker = breaker
        self._window = limit.per.total_seconds() * 1000 if limit else 0.0
        self._limit_micro = to_micro(limit.usd) if limit else None
        self.ledger = Ledger(wall=_monotonic_wall)

    @property
    def shared(self) -> bool:
        """In-process counters are this client's alone."""
        return False

    @staticmethod
    def now() -> float:
        """Milliseconds on the monotonic clock."""
        return time.monotonic() * 1000

    async def admit(self, admission: Admission) -> Verdict:
        """Admit a purchase, or say why not (one atomic step)."""
        return self.ledger.admit(
            self.now(),
            admission.ticket,
            micro=admission.micro,
            floor=admission.floor,
            limit=self._limit_micro,
            window_ms=self._window,
            key=admission.key,
            breaker=self._breaker,
            dry=admission.dry,
        )

    async def commit(self, ticket: str, item: str, micro: int) -> bool:
        """The purchase bought ``item``."""
        return self.ledger.commit(self.now(), ticket, item, micro, self._limit_micro)

    def release(self, ticket: str, key: BreakerKey | None) -> None:
        """Nothing was bought."""
        self.ledger.release(ticket, key)

    def refund(self, item: str) -> None:
        """``item`` was refunded."""
        self.ledger.refund(item)

    def holds(self, item: str) -> bool:
        """Whether ``item`` counts."""
        return self.ledger.has(item)

    def outcome(self, key: BreakerKey, failure: Failure | None, detail: str) -> None:
        """A verification's outcome."""
        if self._breaker is not None:
            self.ledger.outcome(self.now(), key, failure, detail, self._breaker)

    async def status(self) -> GuardStatus:
        """The counters as they stand."""
        now = self.now()
        spend = None
        if self._limit is not None:
            self.ledger.trim(now, self._window)
            spend = self.ledger.spend_status(self._limit, shared=False)
        return GuardStatus(spend, self.ledger.breaker_statuses(now), shared=False)

    async def reset(self, service: str | None, country: str | None) -> int:
        """Close breakers."""
        return self.ledger.reset(service, country)


def _monotonic_wall(at: float) -> datetime:
    return datetime.fromtimestamp(time.time() - (time.monotonic() - at / 1000), timezone.utc)


@attrs.frozen
class Ticket:
    """One admitted purchase, until it answers."""

    id: str
    micro: int
    key: BreakerKey | None
    trial: bool


Quote = Callable[[], Awaitable[Sequence[Operator]]]


class Guard:
    """The spend limit and the breaker of one client (all its views)."""

    def __init__(self, limit: SpendLimit | None, breaker: Breaker | None) -> None:
        self.limit = limit
        self.breaker = breaker
        self.store: Store = LocalStore(limit, breaker)
        self._tickets = (f"t:{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count(1))
        #: The last price seen per (service, country, operator or "any").
        self._prices: dict[tuple[str, str, str], Decimal] = {}
        #: Monthly price after markup over the base price, per (country, number type).
        self._markups: dict[tuple[str, str], Decimal] = {}
        #: The breaker key each order was bought under, and the orders already judged.
        self._keys: OrderedDict[str, BreakerKey] = OrderedDict()
        self._judged: OrderedDict[str, None] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether anything is configured."""
        return self.limit is not None or self.breaker is not None

    def attach(self, store: Store) -> None:
        """Count in ``store`` (a fleet's) instead of in this process."""
        self.store = store

    # -- before a purchase --------------------------------------------------------------

    async def check(self, service: str, country: str | None) -> None:
        """Raise what admitting a purchase of ``service`` in ``country`` would raise now,
        without reserving anything (before requests a purchase makes first); without a
        ``country``, only whether the spend limit leaves any room."""
        if not self.enabled or (country is None and self.limit is None):
            return
        key = (service, country) if self.breaker is not None and country is not None else None
        verdict = await self.store.admit(Admission(next(self._tickets), 0, 0, key, dry=True))
        if not verdict.ok:
            self._refuse(verdict, f"{service} in {country}" if country else service)

    async def admit_order(
        self,
        service: str,
        country: str,
        operator: str | None,
        *,
        max_price: Decimal | None,
        quote: Quote | None,
    ) -> Ticket | None:
        """Admit an order's purchase (``None``: no guard); raises ``GuardError``."""
        if not self.enabled:
            return None
        key = (service, country) if self.breaker is not None else None
        micro: int | None = 0
        if self.limit is not None:
            price = max_price or self._prices.get((service, country, operator or "any"))
            if price is None and quote is not None:
                await self.check(service, country)  # no request while something holds it
                price = self._quoted(service, country, operator, await quote())
            micro = to_micro(price) if price is not None else None
        admission = Admission(next(self._tickets), micro, 1, key)
        return await self._admit(admission, f"{service} in {country}")

    async def admit_rental(
        self, country: str, number_type: str, base_price: Decimal
    ) -> Ticket | None:
        """Admit a rental's purchase (the breaker does not apply); raises ``SpendLimitError``."""
        if self.limit is None:
            return None
        markup = self._markups.get((country, number_type))
        if markup is None and self._markups:
            markup = max(self._markups.values())
        micro = to_micro(base_price * markup) if markup is not None else None
        admission = Admission(next(self._tickets), micro, to_micro(base_price), None)
        return await self._admit(admission, f"a rental in {country}")

    async def _admit(self, admission: Admission, what: str) -> Ticket:
        verdict = await self.store.admit(admission)
        if not verdict.ok:
            self._refuse(verdict, what)
        if verdict.trial:
            log.info("spend guard: the breaker lets a trial purchase of %s through", what)
        return Ticket(admission.ticket, verdict.micro, admission.key, verdict.trial)

    def _quoted(
        self, service: str, country: str, operator: str | None, offers: Sequence[Operator]
    ) -> Decimal | None:
        # The quote's prices were kept as it was read (``saw_quote``): a cached quote
        # must not overwrite a price a purchase taught since.
        wanted = operator or "any"
        listed = next((o.price for o in offers if o.id == wanted), None)
        if listed is None and wanted == "any":
            # No "any" row: the server may pick any operator in stock.
            listed = max((o.price for o in offers if o.count > 0), default=None)
        return listed

    def saw_quote(self, service: str, country: str, offers: Sequence[Operator]) -> None:
        """Prices the catalogue showed (``GET /operators``), for later reservations."""
        if self.limit is not None:
            for offer in offers:
                self._prices[service, country, offer.id] = offer.price

    def _refuse(self, verdict: Verdict, what: str) -> None:
        if verdict.reason == "breaker" and verdict.breaker is not None:
            b = verdict.breaker
            raise BreakerOpenError(
                f"the spend guard holds purchases of {what}: {b.describe()}; nothing was "
                "bought (client.guard.reset() closes it)",
                service=b.service,
                country=b.country,
                failures=b.failures,
                no_code=b.no_code,
                after_code=b.after_code,
                last_error=b.last_error,
                retry_after=b.retry_after,
            )
        assert self.limit is not None
        spent = from_micro(verdict.total - verdict.reserved)
        reserved = from_micro(verdict.reserved)
        needed = from_micro(verdict.micro)
        where = "the fleet's" if self.store.shared else "this client's"
        held = f" ({reserved} USD of it reserved by purchases in flight)" if reserved else ""
        when = (
            f"; room comes back in {verdict.retry_after:.0f} s as the window rolls"
            if verdict.retry_after is not None
            else ""
        )
        note = f" ({verdict.note})" if verdict.note else ""
        raise SpendLimitError(
            f"the spend guard refused a purchase of {what}: "
            f"{from_micro(verdict.total)} USD counted{held} against {where} limit of "
            f"{self.limit.usd} USD per {describe(self.limit.per)}{note}, and it needs "
            f"{needed or 'what is left'}{when}; nothing was bought",
            limit=self.limit.usd,
            per=self.limit.per,
            spent=spent,
            reserved=reserved,
            needed=needed,
            retry_after=verdict.retry_after,
        )

    # -- after a purchase ---------------------------------------------------------------

    async def bought_order(
        self, ticket: Ticket | None, order: Order, service: str, country: str, operator: str | None
    ) -> bool:
        """The order the ticket's purchase bought; whether it took spend past the limit."""
        if self.breaker is not None:
            self._remember(order.id, (service, country))
        if self.limit is not None:
            self._prices[service, country, operator or "any"] = order.price
            if order.operator:
                self._prices[service, country, order.operator] = order.price
        if ticket is None or self.limit is None:
            return False
        return await self.store.commit(ticket.id, _order_ref(order.id), to_micro(order.price))

    async def bought_rental(
        self,
        ticket: Ticket | None,
        rental_id: str,
        monthly: Decimal | None,
        country: str,
        number_type: str,
        base_price: Decimal,
    ) -> None:
        """The rental the ticket's purchase bought (kept even past the limit: no refund).

        An answer without its monthly price counts what was reserved.
        """
        if ticket is None:
            return
        if monthly is not None:
            self._markups[country, number_type] = monthly / base_price
        micro = to_micro(monthly) if monthly is not None else ticket.micro
        if await self.store.commit(ticket.id, f"r:{rental_id}", micro):
            log.warning(
                "rental %s came back at %s a month, more than the spend guard reserved, "
                "and past the spend limit (a rental cannot be refunded)",
                rental_id,
                monthly,
            )

    def abandoned(self, ticket: Ticket | None, exc: BaseException) -> None:
        """The purchase raised: free its reservation if it provably bought nothing."""
        if ticket is None:
            return
        answered = isinstance(exc, APIError) and not isinstance(exc, APIResponseValidationError)
        nothing = (
            answered
            or isinstance(exc, (InvalidArgumentError, JournalError, GuardError))
            or (isinstance(exc, APIConnectionError) and not isinstance(exc, OutcomeUnknownError))
        )
        if nothing:
            self.store.release(ticket.id, ticket.key)
        else:
            # Maybe bought (unknown outcome, cancelled mid-flight): it keeps counting
            # until the window rolls; a trial keeps its lease.
            log.info("the spend guard keeps a purchase of unknown outcome counted (%s)", exc)

    async def overshoot(self, order: Order, refunded: Decimal | None) -> SpendLimitError:
        """The error for an order that came back past the limit and was cancelled."""
        assert self.limit is not None
        status = await self.store.status()
        spent = status.spend.spent if status.spend else Decimal(0)
        reserved = status.spend.reserved if status.spend else Decimal(0)
        return SpendLimitError(
            f"order {order.id} came back at {order.price}, more than the spend guard "
            f"reserved for it, and past the limit of {self.limit.usd} USD per "
            f"{describe(self.limit.per)}: it was cancelled ({refunded} refunded)",
            limit=self.limit.usd,
            per=self.limit.per,
            spent=spent,
            reserved=reserved,
            needed=order.price,
            order=order,
        )

    # -- what happened to orders --------------------------------------------------------

    def refunded(self, order_id: str) -> None:
        """The order was cancelled or banned (refunded in full) by the program."""
        if self.limit is not None:
            self.store.refund(_order_ref(order_id))

    def ended(self, order: Order) -> None:
        """An order settled: one that ended without a code was refunded in full."""
        if self.limit is None:
            return
        if order.sms_code is None and order.status in TERMINAL_WITHOUT_CODE:
            self.store.refund(_order_ref(order.id))

    def seen(self, order: Order) -> None:
        """An order read from the API: refunded ones of this client's stop counting."""
        if (
            order.sms_code is None
            and order.status in TERMINAL_WITHOUT_CODE
            and self.limit is not None
            and self.store.holds(_order_ref(order.id))
        ):
            self.store.refund(_order_ref(order.id))

    def verified(self, order: Order) -> None:
        """The order's verification succeeded (its code came and was used)."""
        self._outcome(order, None, "")

    def failed(self, order: Order, failure: Failure, detail: str = "") -> None:
        """The order's verification failed: no code, or the step after it raised."""
        self._outcome(order, failure, detail)

    def _outcome(self, order: Order, failure: Failure | None, detail: str) -> None:
        if self.breaker is None or order.id in self._judged:
            return
        key = self._keys.get(order.id) or (
            (order.service, order.country) if order.service and order.country else None
        )
        if key is None:
            return  # an order of unknown country: no breaker to tell
        self._judged[order.id] = None
        if len(self._judged) > _REMEMBER:
            self._judged.popitem(last=False)
        self.store.outcome(key, failure, detail)
        if failure is not None:
            log.info(
                "spend guard: %s/%s verification failed (%s%s)",
                key[0],
                key[1],
                "no code" if failure == "no_code" else "after the code",
                f": {detail}" if detail else "",
            )

    def _remember(self, order_id: str, key: BreakerKey) -> None:
        self._keys[order_id] = key
        if len(self._keys) > _REMEMBER:
            self._keys.popitem(last=False)


def _order_ref(order_id: str) -> str:
    return f"o:{order_id}"


class SpendGuard:
    """``client.guard``: the spend limit's and the breakers' state, and their reset.

    Off unless the client was given a ``spend_limit`` or a ``breaker``; with a fleet,
    the state is the fleet's (read from Redis, whatever this client configured).
    """

    def __init__(
        self, guard: Guard, resolve: Callable[[str], Awaitable[str]] | None = None
    ) -> None:
        self._guard = guard
        self._resolve = resolve

    @property
    def spend_limit(self) -> SpendLimit | None:
        """The spend limit this client enforces (``None``: none)."""
        return self._guard.limit

    @property
    def breaker(self) -> Breaker | None:
        """The breaker this client enforces (``None``: none)."""
        return self._guard.breaker

    async def status(self) -> GuardStatus:
        """Net spend in the window, what purchases in flight reserve, and the breakers."""
        return await self._guard.store.status()

    async def reset(self, service: str | None = None, country: str | None = None) -> int:
        """Close the breakers of ``service`` (in ``country``), or all of them; how many.

        ``country`` may be an id, an ISO code or a name. The spend limit is not
        reset: it frees up as its window rolls and as refunds come. With a fleet,
        every member's purchases may go again at once.
        """
        if service is not None and (not isinstance(service, str) or not service.strip()):
            raise InvalidArgumentError(f"service must be a non-empty string, got {service!r}")
        if country is not None and (not isinstance(country, str) or not country.strip()):
            raise InvalidArgumentError(f"country must be a non-empty string, got {country!r}")
        if country is not None and service is None:
            raise InvalidArgumentError("reset(country=...) needs the service too")
        if country is not None and self._resolve is not None:
            country = await self._resolve(country)
        return await self._guard.store.reset(
            service.strip() if service else None, country.strip() if country else None
        )


__all__ = ["Admission", "Guard", "LocalStore", "SpendGuard", "Store", "Ticket"]
