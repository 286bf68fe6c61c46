"""``client.orders.activations()``: fresh numbers, across countries, until one gets its code.

::

    async for act in gsim.orders.activations("telegram", ["russia", "kazakhstan"], attempts=3):
        async with act:                      # buys the next number
            await sign_up(act.phone_number)
            code = await act.wait_for_code(timeout=120)

The shape is stamina's ``retry_context``: the loop yields one ``Activation`` per
try and looks at how the previous one ended before yielding the next.

* A try whose wait ended without a code (``NoCodeError``, ``CodeTimeoutError``) is
  refunded by the activation (banned or cancelled) and the error is swallowed; so is
  a block left without a code and without an error. The next try gets a new number.
* A try that left its block with a code ends the loop.
* Any other exception leaves the loop, after the activation refunded its number.

With a spend guard (``Client(breaker=...)``), a candidate whose (service, country)
breaker is open is left out without buying, like one sold out; when that leaves none,
the loop raises the ``BreakerOpenError``. A ``SpendLimitError`` ends the loop.

Candidates are every (country, operator) pair, countries in the order given and each
with the operators in the order given (``None``: any operator). Each try takes the
next candidate after the one the previous try bought from, wrapping around, so a
number that gets no code is followed by one from the next country. Before buying,
the candidate's ``GET /operators`` is read: one that is sold out, not sold or dearer
than ``max_price`` — or than what is left of ``budget`` — is dropped for the rest of
the loop without buying; so is one whose purchase the server refuses for lack of
numbers (503 ``PROVIDER_ERROR``, 404).

Errors of the loop::

    NoCodeError
    └── AttemptsExhaustedError   every try ended without a code (.orders, .skipped)
    NoNumberAvailableError       no candidate left to buy from (.orders, .skipped)
    BudgetExceededError          the next number would pass ``budget`` (.orders, .spent)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Literal

import attrs

from ._exceptions import BreakerOpenError, GsimError, NoCodeError, NotFoundError, ProviderError
from ._models import Operator, Order
from ._waiting import Activation, Settled

log = logging.getLogger("gsim_async")

#: Why a candidate was left out: no numbers now, not offered at all, dearer than
#: ``max_price``, dearer than what is left of ``budget``, its spend guard breaker open.
SkipReason = Literal["sold_out", "not_sold", "too_dear", "over_budget", "breaker_open"]

_REASONS: dict[str, str] = {
    "sold_out": "sold out",
    "not_sold": "not sold",
    "too_dear": "above max_price",
    "over_budget": "over budget",
    "breaker_open": "held by the spend guard's breaker",
}


#: Seconds a ``GET /operators`` answer serves every loop of a client: loops started
#: together (a bot verifying many accounts) share one request per country.
QUOTE_TTL = 5.0

Quote = Callable[[str, str], Awaitable[list[Operator]]]


class Quotes:
    """Recent ``GET /operators`` answers of one client, shared by all its loops.

    A stale answer costs little: a number sold out meanwhile is refused by the server
    (and its candidate left out), one dearer than allowed is refunded at once.
    """

    def __init__(self, ttl: float = QUOTE_TTL) -> None:
        self._ttl = ttl
        self._answers: dict[tuple[str, str], tuple[float, list[Operator]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, service: str, country: str, fetch: Quote) -> list[Operator]:
        """The operators of ``service`` in ``country``: a recent answer, or ``fetch``'s."""
        key = (service, country)
        # One request at a time per key: those waiting take its answer.
        async with self._locks.setdefault(key, asyncio.Lock()):
            known = self._answers.get(key)
            if known is not None and time.monotonic() - known[0] < self._ttl:
                return known[1]
            answer = await fetch(service, country)
            self._answers[key] = (time.monotonic(), answer)
            return answer


@attrs.frozen
class Skipped:
    """A (country, operator) that ``orders.activations()`` left out without buying, and why.

    ``operator`` is ``None`` for any operator; ``price`` is the price the catalogue (or
    a purchase that came back dearer, then refunded) showed, when there was one.
    """

    country: str
    operator: str | None
    reason: SkipReason
    price: Decimal | None = None
    detail: str = ""

    def describe(self) -> str:
        """``russia/mts sold out`` — one line for messages."""
        where = self.country + (f"/{self.operator}" if self.operator else "")
        price = f" at {self.price}" if self.price is not None else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{where} {_REASONS[self.reason]}{price}{detail}"


class AttemptsExhaustedError(NoCodeError):
    """Every try of ``orders.activations()`` ended without a code.

    ``orders`` lists every order the loop bought, oldest first (each was banned,
    cancelled or expired: refunded), ``order`` is the last one, ``refunded`` what the
    cleanups reported giving back, and ``skipped`` the candidates left out.
    """

    orders: tuple[Order, ...]
    skipped: tuple[Skipped, ...]

    def __init__(
        self,
        message: str,
        *,
        orders: Sequence[Order],
        skipped: Sequence[Skipped] = (),
        refunded: Decimal | None = None,
    ) -> None:
        super().__init__(message, order=orders[-1], refunded=refunded, orders=orders)
        self.skipped = tuple(skipped)


class NoNumberAvailableError(GsimError):
    """``orders.activations()`` has no candidate left to buy from; nothing more was bought.

    Every (country, operator) still in play was sold out, not sold, or dearer than
    ``max_price`` (``skipped`` says which, and why). ``orders`` lists what earlier
    tries bought (each refunded), possibly none; ``order`` is the last of them or
    ``None``.
    """

    orders: tuple[Order, ...]
    skipped: tuple[Skipped, ...]

    def __init__(
        self, message: str, *, orders: Sequence[Order] = (), skipped: Sequence[Skipped] = ()
    ) -> None:
        super().__init__(message)
        self.orders = tuple(orders)
        self.skipped = tuple(skipped)

    @property
    def order(self) -> Order | None:
        """The last order the loop bought, if any."""
        return self.orders[-1] if self.orders else None


class BudgetExceededError(NoNumberAvailableError):
    """The next number of ``orders.activations()`` would take its purchases past ``budget``.

    Nothing more was bought. ``spent`` is the price of every number the loop bought
    (refunds aside), ``budget`` the cap; ``orders`` and ``skipped`` as for
    [`NoNumberAvailableError`][gsim_async.NoNumberAvailableError].
    """

    budget: Decimal
    spent: Decimal

    def __init__(
        self,
        message: str,
        *,
        budget: Decimal,
        spent: Decimal,
        orders: Sequence[Order] = (),
        skipped: Sequence[Skipped] = (),
    ) -> None:
        super().__init__(message, orders=orders, skipped=skipped)
        self.budget = budget
        self.spent = spent


@attrs.define(eq=False)
class _Candidate:
    index: int
    country: str
    operator: str | None
    skipped: Skipped | None = None


class Activations:
    """``async for act in client.orders.activations(...)``: one ``Activation`` per try.

    Each try is an [`Activation`][gsim_async.Activation]. Besides iterating, it tells how
    the loop went: ``orders`` (every order bought, in the order bought, latest known
    state), ``tries``, ``spent`` (the price of every number bought, refunds aside) and
    ``skipped``.
    """

    def __init__(
        self,
        *,
        service: str,
        countries: Sequence[str],
        operators: Sequence[str | None],
        attempts: int,
        max_price: Decimal | None,
        budget: Decimal | None,
        resolve: Callable[[str], Awaitable[tuple[str, bool]]],
        quote: Quote,
        buy: Callable[[str, str, str | None], Awaitable[Order]],
        refund: Callable[[Order], Awaitable[Settled]],
        activation: Callable[[Callable[[], Awaitable[Order]], str], Activation],
        admit: Callable[[str, str | None], Awaitable[None]] | None = None,
    ) -> None:
        self._service = service
        self._admit = admit
        self._held: BreakerOpenError | None = None
        self._names = tuple(countries)
        self._operators = tuple(operators)
        self._attempts = attempts
        self._max_price = max_price
        self._budget = budget
        self._resolve = resolve
        self._quote = quote
        self._buy = buy
        self._refund = refund
        self._activation = activation
        self._candidates: list[_Candidate] | None = None
        self._next = 0
        self._bought: list[Activation | Order] = []
        self._current: Activation | None = None
        self._entered: Activation | None = None  # the last one whose purchase began
        self._spent = Decimal(0)
        self._failure: GsimError | None = None
        self._done = False

    # -- what happened so far --

    @property
    def orders(self) -> tuple[Order, ...]:
        """Every order the loop bought, oldest first, in its latest known state."""
        return tuple(b.order if isinstance(b, Activation) else b for b in self._bought)

    @property
    def tries(self) -> int:
        """How many numbers were handed out (tries begun)."""
        return sum(1 for b in self._bought if isinstance(b, Activation))

    @property
    def spent(self) -> Decimal:
        """The price of every number the loop bought, refunds aside."""
        return self._spent

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        """The candidates left out so far, and why."""
        return tuple(c.skipped for c in self._candidates or () if c.skipped is not None)

    # -- iteration --

    def __aiter__(self) -> Activations:
        return self

    async def __anext__(self) -> Activation:
        if self._done:
            raise StopAsyncIteration
        if self._failure is not None:
            raise self._failure
        previous = self._current
        if previous is None:
            if self._admit is not None:
                await self._admit(self._service, None)  # no room at all: before any request
            await self._prepare()
        elif not any(b is previous for b in self._bought):
            if previous is not self._entered:
                raise RuntimeError(
                    "enter each activation the loop yields (`async with act:`) before "
                    "asking for the next one"
                )
            # Its purchase failed and the caller went on: nothing was bought, no try used.
        else:
            order = previous.order
            if previous.code is not None or order.sms_code is not None:
                self._done = True
                raise StopAsyncIteration
            log.info(
                "try %d of %d: order %s (%s) ended %s without a code",
                self.tries,
                self._attempts,
                order.id,
                order.phone_number,
                order.status,
            )
            if self.tries >= self._attempts:
                self._done = True
                raise self._exhausted()
        act: Activation

        async def buy() -> Order:
            self._entered = act
            order = await self._buy_next()
            self._bought.append(act)
            return order

        act = self._activation(buy, f"{self._service} in {', '.join(self._names)}")
        self._current = act
        return act

    async def _prepare(self) -> None:
        # Every country is resolved before anything is bought: a typo fails here. An id
        # the catalogue does not list is the server's to judge: its quote (needed anyway,
        # and kept for the first try) asks it now, and a refusal ends the loop here.
        ids: list[str] = []
        for name in self._names:
            country, listed = await self._resolve(name)
            if not listed:
                with contextlib.suppress(NotFoundError):  # not sold there: left out later
                    await self._quote(self._service, country)
            if country not in ids:
                ids.append(country)
        self._candidates = [
            _Candidate(i, country, operator)
            for i, (country, operator) in enumerate((c, o) for c in ids for o in self._operators)
        ]

    # -- buying one number --

    async def _buy_next(self) -> Order:
        """The next candidate's number; raises when none is left (and sticks to it)."""
        if self._failure is not None:
            raise self._failure
        quotes: dict[str, list[Operator]] = {}
        while True:
            candidate = self._pick()
            if candidate is None:
                self._failure = self._none_left()
                raise self._failure
            if self._admit is not None:
                # Before the quote's request: an open breaker leaves the candidate out.
                try:
                    await self._admit(self._service, candidate.country)
                except BreakerOpenError as exc:
                    self._breaker_open(candidate, exc)
                    continue
            offers = quotes.get(candidate.country)
            if offers is None:
                try:
                    offers = quotes[candidate.country] = await self._quote(
                        self._service, candidate.country
                    )
                except NotFoundError as exc:
                    for other in self._candidates or ():
                        if other.country == candidate.country:
                            self._skip(other, "not_sold", None, exc.message)
                    continue
            reason, price = _judge(candidate.operator, offers)
            if reason is None:
                reason = self._over_limit(price)
            if reason is not None:
                self._skip(candidate, reason, price)
                continue
            try:
                order = await self._buy(self._service, candidate.country, candidate.operator)
            except BreakerOpenError as exc:  # it opened since the check
                self._breaker_open(candidate, exc)
                continue
            except (ProviderError, NotFoundError) as exc:
                # The server had no number after all (the sandbox: 503 "no numbers").
                self._skip(
                    candidate,
                    "sold_out" if isinstance(exc, ProviderError) else "not_sold",
                    price,
                    exc.message,
                )
                continue
            limit = self._limit()
            self._spent += order.price
            self._next = (candidate.index + 1) % len(self._candidates or (candidate,))
            if limit is None or order.price <= limit:
                return order
            # Dearer than the catalogue said, and than allowed: give it back at once.
            settled = await self._refund(order)
            if settled.order.sms_code is not None:
                log.info("order %s came back dearer, but its code won the race", order.id)
                return settled.order
            self._bought.append(settled.order)
            reason = (
                "too_dear"
                if self._max_price is not None and order.price > self._max_price
                else "over_budget"
            )
            self._skip(candidate, reason, order.price, f"came back at {order.price}; refunded")

    def _pick(self) -> _Candidate | None:
        candidates = self._candidates or []
        for k in range(len(candidates)):
            candidate = candidates[(self._next + k) % len(candidates)]
            if candidate.skipped is None:
                return candidate
        return None

    def _limit(self) -> Decimal | None:
        """The most the next number may cost: max_price, and what is left of budget."""
        limits = [x for x in (self._max_price,) if x is not None]
        if self._budget is not None:
            limits.append(self._budget - self._spent)
        return min(limits) if limits else None

    def _over_limit(self, price: Decimal | None) -> SkipReason | None:
        if price is None:
            return None
        if self._max_price is not None and price > self._max_price:
            return "too_dear"
        if self._budget is not None and self._spent + price > self._budget:
            return "over_budget"
        return None

    def _breaker_open(self, candidate: _Candidate, exc: BreakerOpenError) -> None:
        self._held = exc
        for other in self._candidates or ():
            if other.country == candidate.country:
                self._skip(other, "breaker_open", None, f"{exc.failures} failures in a row")

    def _skip(
        self, candidate: _Candidate, reason: SkipReason, price: Decimal | None, detail: str = ""
    ) -> None:
        if candidate.skipped is not None:
            return
        candidate.skipped = Skipped(candidate.country, candidate.operator, reason, price, detail)
        log.info("%s: skipped %s", self._service, candidate.skipped.describe())

    # -- how the loop ends without a code --

    def _exhausted(self) -> AttemptsExhaustedError:
        orders = self.orders
        refunds = [b.refunded for b in self._bought if isinstance(b, Activation)]
        refunded = sum((r for r in refunds if r is not None), Decimal(0))
        tried = ", ".join(f"{o.country or '?'} {o.phone_number} {o.status}" for o in orders)
        return AttemptsExhaustedError(
            f"no code for {self._service} after {self.tries} tr{'y' if self.tries == 1 else 'ies'} "
            f"({tried}); {refunded} refunded",
            orders=orders,
            skipped=self.skipped,
            refunded=refunded,
        )

    def _none_left(self) -> GsimError:
        skipped = self.skipped
        if self._held is not None and all(s.reason == "breaker_open" for s in skipped):
            return self._held  # the guard alone holds every candidate back
        why = "; ".join(s.describe() for s in skipped)
        before = (
            f"; {self.tries} number{'s' if self.tries != 1 else ''} tried before, none got a code"
            if self.tries
            else "; nothing was bought"
        )
        over = [s for s in skipped if s.reason == "over_budget"]
        if over and self._budget is not None:
            cheapest = min(s.price for s in over if s.price is not None)
            return BudgetExceededError(
                f"{self._service}: the next number ({cheapest}) would take this loop's "
                f"purchases from {self._spent} past its budget {self._budget} ({why}){before}",
                budget=self._budget,
                spent=self._spent,
                orders=self.orders,
                skipped=skipped,
            )
        return NoNumberAvailableError(
            f"no number to buy for {self._service}: {why}{before}",
            orders=self.orders,
            skipped=skipped,
        )


def _judge(
    operator: str | None, offers: list[Operator]
) -> tuple[SkipReason | None, Decimal | None]:
    """Whether ``operator`` (None: any) has numbers in ``offers``, and their price."""
    if operator is None:
        listed_any = next((o for o in offers if o.id == "any"), None)
        if listed_any is not None:
            return (None if listed_any.count > 0 else "sold_out"), listed_any.price
        if not offers:
            return "not_sold", None
        in_stock = [o.price for o in offers if o.count > 0]
        if not in_stock:
            return "sold_out", min(o.price for o in offers)
        return None, min(in_stock)
    offer = next((o for o in offers if o.id == operator), None)
    if offer is None:
        return "not_sold", None
    return (None if offer.count > 0 else "sold_out"), offer.price


__all__ = [
    "Activations",
    "AttemptsExhaustedError",
    "BudgetExceededError",
    "NoNumberAvailableError",
    "SkipReason",
    "Skipped",
]
