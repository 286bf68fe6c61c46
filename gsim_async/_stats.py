"""``client.orders.stats()``: what worked, from the account's own order history.

The history is read 100 orders a request, newest first; with ``since`` the reading
stops at the first page made entirely of older orders (the order of the list is a
hint: an order listed twice, as new ones push the rest down, counts once).

Money follows the API's rules: every order's price was charged when it was bought,
and an order that ended without a code (cancelled, banned, expired, refunded) was
refunded in full. The API has no "code received at" field, so the time to a code is
only known for the codes this client saw arrive (``CodeSightings``).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

import attrs

from ._clock import ServerClock
from ._enums import TERMINAL_WITHOUT_CODE
from ._models import Order, OrderStats, Page, StatsProgress
from ._watcher import OrderHook

#: Called after each page of history with how far the reading got.
ProgressHook = Callable[[StatsProgress], object]

_CENT = Decimal("0.01")
#: A cost per code that is not a whole number of cents is rounded to 1/100 of a cent.
_COST_STEP = Decimal("0.0001")


class CodeSightings:
    """When this client first saw each order's code, on the server's clock.

    Fed by the watcher's updates (every wait of the client goes through it); keeps the
    latest ``limit`` sightings. ``on_code(order, seconds)`` hears of each code once, with
    the seconds since the order was made (``None`` when that is not known).
    """

    def __init__(
        self,
        clock: ServerClock,
        on_code: Callable[[Order, float | None], None] | None = None,
        limit: int = 100_000,
    ) -> None:
        self._clock = clock
        self._on_code = on_code
        self._limit = limit
        self._at: dict[str, datetime] = {}

    def observe(self, order: Order) -> None:
        """An update of a waited-on order: note the moment its code first showed."""
        if order.sms_code is None or order.id in self._at:
            return
        self._at[order.id] = self._clock.now()
        if len(self._at) > self._limit:
            del self._at[next(iter(self._at))]
        if self._on_code is not None:
            self._on_code(order, self.seconds_to_code(order))

    def hook(self, then: OrderHook | None) -> OrderHook:
        """A watcher hook that notes sightings, then calls ``then`` (the user's hook)."""

        def on_update(order: Order) -> object:
            self.observe(order)
            return then(order) if then is not None else None

        return on_update

    def seconds_to_code(self, order: Order) -> float | None:
        """Seconds from the order's ``created_at`` to the sighting of its code, if seen."""
        seen = self._at.get(order.id)
        if seen is None or order.created_at is None or order.sms_code is None:
            return None
        # The server's clock is known to within a request's round trip: never below 0.
        return max((seen - order.created_at).total_seconds(), 0.0)


@attrs.define
class _Tally:
    orders: int = 0
    codes: int = 0
    ended: int = 0
    spent: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    times: list[float] = attrs.Factory(list)

    def add(self, order: Order, seconds: float | None) -> None:
        self.orders += 1
        self.spent += order.price
        if order.status in TERMINAL_WITHOUT_CODE:
            self.refunded += order.price
        if order.sms_code is not None:
            self.codes += 1
            self.ended += 1
            if seconds is not None:
                self.times.append(seconds)
        elif order.status in TERMINAL_WITHOUT_CODE:
            self.ended += 1

    def result(self, key: tuple[str, str | None, str | None]) -> OrderStats:
        net = self.spent - self.refunded
        cost = None
        if self.codes:
            cost = net / self.codes
            cost = (
                cost.quantize(_CENT) if cost == cost.quantize(_CENT) else cost.quantize(_COST_STEP)
            )
        return OrderStats(
            service=key[0],
            country=key[1],
            operator=key[2],
            orders=self.orders,
            codes=self.codes,
            success_rate=self.codes / self.ended if self.ended else None,
            median_time_to_code=statistics.median(self.times) if self.times else None,
            spent=self.spent,
            refunded=self.refunded,
            cost_per_code=cost,
            pending=self.orders - self.ended,
            observed=len(self.times),
        )


async def order_stats(
    fetch: Callable[[int], Awaitable[Page[Order]]],
    sightings: CodeSightings,
    *,
    since: datetime | None,
    service: str | None,
    country: str | None,
    on_progress: ProgressHook | None,
) -> list[OrderStats]:
    """One ``OrderStats`` per (service, country, operator), from the pages ``fetch`` reads."""
    tallies: dict[tuple[str, str | None, str | None], _Tally] = {}
    seen: set[str] = set()
    number = read = 0
    while True:
        number += 1
        page = await fetch(number)
        older = 0
        for order in page.items:
            if order.id in seen:
                continue  # pushed down a page by an order made meanwhile
            seen.add(order.id)
            read += 1
            if since is not None and order.created_at is not None and order.created_at < since:
                older += 1
                continue
            if (service is not None and order.service != service) or (
                country is not None and order.country != country
            ):
                continue
            key = (order.service, order.country, order.operator)
            tally = tallies.get(key)
            if tally is None:
                tally = tallies[key] = _Tally()
            tally.add(order, sightings.seconds_to_code(order))
        if on_progress is not None:
            on_progress(StatsProgress(number, read, page.total_pages, page.total))
        if since is not None and page.items and older == len(page.items):
            break  # newest first: the rest of the history is older still
        if not page.items or len(page.items) < page.limit or number >= page.total_pages:
            break
    return [
        tallies[key].result(key)
        for key in sorted(tallies, key=lambda k: (k[0], k[1] or "", k[2] or ""))
    ]


__all__ = ["CodeSightings", "ProgressHook", "order_stats"]
