"""One poller per client for every order someone is waiting on.

Waiters register an order and wait on an event; the watcher runs rounds at a fixed
cadence and picks the cheapest way to learn about all of them (docs/architecture.md,
"Polling at scale"):

* few waiting: ``GET /orders/{id}`` each;
* many: page through ``GET /orders?status=RECEIVED`` newest first, down to the oldest
  order still waited on: every page carries up to 100 codes, and an order not there is
  still pending; a one-item ``status=PENDING`` page checks that count, and a full
  ``PENDING`` scan (every few rounds, or when the count says some order left without a
  code) accounts for every order, fetching on its own whatever no page showed.

Single-order fetches run beside the rounds, never inside one: a slow answer for one
order does not hold up another's code. List order is only a hint to stop paging; an
order a hint hid is found by the next full scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import attrs

from . import _constants as C
from ._converter import Listing
from ._enums import TERMINAL_WITHOUT_CODE, OrderStatus
from ._exceptions import (
    ClientClosedError,
    ForbiddenError,
    GsimError,
    NotFoundError,
    UnauthorizedError,
)
from ._models import Order

log = logging.getLogger("gsim_async")

#: Fatal for every waiter: retrying the next round cannot help.
_FATAL = (UnauthorizedError, ForbiddenError, ClientClosedError)
#: A full PENDING scan at least this often (rounds).
_FULL_SCAN_EVERY = 10

OrderHook = Callable[[Order], object]


class OrderSource(Protocol):
    """What the watcher needs of the API: fetch one order, list a page, report sightings."""

    async def fetch(self, order_id: str) -> Order:
        """One order's current state."""

    async def scan(self, status: OrderStatus, page: int, limit: int) -> Listing[Order]:
        """One page of the account's orders of ``status``, newest first."""

    def seen(self, order: Order) -> None:
        """An order a list page showed (the client's own bookkeeping)."""

    def created_floor(self, order: Order) -> float:
        """The earliest the server can have stamped ``order`` (Unix time; -inf unknown)."""

    def sent_at(self, order: Order) -> float | None:
        """When our purchase of ``order`` left (Unix time), if we bought it."""

    def floor_for(self, sent: float) -> float:
        """The earliest the server can have stamped a purchase sent at ``sent``."""

    @property
    def requests_sent(self) -> int:
        """Requests the client has sent so far."""


class WatcherLike(Protocol):
    """What the waiting helpers need of a watcher (this one, or a fleet's)."""

    @property
    def watching(self) -> int:
        """How many orders currently have a waiter."""

    @property
    def rounds(self) -> int:
        """Poll rounds run so far."""

    def is_watching(self, order_id: str) -> bool:
        """Whether someone is waiting on ``order_id``."""

    def watch(self, order: Order, interval: float | None = None) -> Watch:
        """Register interest in ``order``."""

    def unwatch(self, watch: Watch) -> None:
        """One waiter is gone."""

    async def aclose(self) -> None:
        """Stop; waiters still registered fail."""


def is_settled(order: Order) -> bool:
    """Whether waiting on ``order`` is over: it has a code, or will never get one."""
    return order.sms_code is not None or order.status in TERMINAL_WITHOUT_CODE


@attrs.define(eq=False)
class Watch:
    """One registered order and everyone waiting on it."""

    order: Order
    interval: float
    waiters: int = 0
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: BaseException | None = None
    fetching: bool = False
    fetch_next: bool = False

    def settle(self, order: Order | None = None, error: BaseException | None = None) -> None:
        if order is not None:
            self.order = order
        self.error = error
        self.done.set()


class Watcher:
    """Polls for every order of one client that has a waiter."""

    def __init__(self, source: OrderSource, interval: float, on_update: OrderHook | None) -> None:
        self._source = source
        self._interval = interval
        self._on_update = on_update
        self._watches: dict[str, Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._fetch_slots = asyncio.Semaphore(C.FETCH_CONCURRENCY)
        self._wake = asyncio.Event()
        self._received_pages = 1
        self._since_full = _FULL_SCAN_EVERY
        self._closed = False
        #: Poll rounds run so far (for tests and benchmarks).
        self.rounds = 0

    @property
    def watching(self) -> int:
        """How many orders currently have a waiter."""
        return len(self._watches)

    def is_watching(self, order_id: str) -> bool:
        """Whether someone is waiting on ``order_id``."""
        return order_id in self._watches

    def watch(self, order: Order, interval: float | None = None) -> Watch:
        """Register interest in ``order`` (shared with other waiters on the same id)."""
        if self._closed:
            raise ClientClosedError("the gsim Client was closed; it cannot wait for codes")
        watch = self._watches.get(order.id)
        if watch is None:
            watch = Watch(order=order, interval=interval or self._interval)
            self._watches[order.id] = watch
        elif interval is not None:
            watch.interval = min(watch.interval, interval)
        watch.waiters += 1
        if interval is not None and interval < self._interval:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="gsim_async watcher"
            )
        return watch

    def unwatch(self, watch: Watch) -> None:
        """One waiter is gone; the order is dropped when it was the last."""
        watch.waiters -= 1
        if watch.waiters <= 0 and self._watches.get(watch.order.id) is watch:
            del self._watches[watch.order.id]

    def fail(self, order_id: str, error: Callable[[Order], BaseException]) -> None:
        """End every wait on ``order_id`` with ``error(order)`` (its last known state)."""
        watch = self._watches.pop(order_id, None)
        if watch is not None and not watch.done.is_set():
            watch.settle(error=error(watch.order))

    async def aclose(self) -> None:
        """Stop polling; waiters still registered fail with ``ClientClosedError``."""
        self._closed = True
        tasks = [t for t in (self._task, *self._fetches) if t is not None and not t.done()]
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait does not re-raise the tasks' CancelledError as ours.
            await asyncio.wait(tasks)
        error = ClientClosedError("the gsim Client was closed while waiting for a code")
        for watch in list(self._watches.values()):
            watch.settle(error=error)
        self._watches.clear()

    # -- rounds -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self._watches:
                started = time.monotonic()
                await self._round([w for w in self._watches.values() if not w.done.is_set()])
                if not self._watches:
                    break
                interval = min((w.interval for w in self._watches.values()), default=0.0)
                self._wake.clear()
                left = started + interval - time.monotonic()
                if left > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
        except Exception as exc:  # a bug must not leave waiters hanging forever
            log.exception("gsim watcher failed")
            self._fail_all(exc)

    async def _round(self, watches: list[Watch]) -> None:
        self.rounds += 1
        sent_before = self._source.requests_sent
        try:
            if len(watches) <= self._list_cost(len(watches)):
                for watch in watches:
                    self._fetch_soon(watch)
            else:
                await self._round_by_lists(watches)
        except _FATAL as exc:
            self._fail_all(exc)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "poll round %d: %d requests, %d orders checked, %d still waiting",
                self.rounds,
                self._source.requests_sent - sent_before,
                len(watches),
                len(self._watches),
            )

    def _list_cost(self, waiting: int) -> float:
        full = math.ceil(waiting / C.MAX_PAGE_SIZE) / _FULL_SCAN_EVERY
        return self._received_pages + 1 + full

    async def _round_by_lists(self, watches: list[Watch]) -> None:
        unseen = {w.order.id: w for w in watches if not w.fetch_next}
        try:
            self._since_full += 1
            full = self._since_full >= _FULL_SCAN_EVERY
            pending: int | None = None
            if not full and unseen:
                # Counted before the RECEIVED pages are read, not after: an order whose
                # code comes while they are read is still counted here (the next round
                # finds it), so only one that left before them and that no page showed
                # sets off a full scan. Counted after, every round of 10,000 waits paid
                # for one.
                pending = (await self._source.scan(OrderStatus.PENDING, 1, 1)).total
            self._received_pages = max(1, await self._scan(OrderStatus.RECEIVED, unseen))
            if not full and unseen and pending is not None:
                # Fewer pending than we still wait on: some left without a code (or a
                # hint hid them): account for every one now.
                full = pending < len(unseen)
            if full and unseen:
                await self._scan(OrderStatus.PENDING, unseen)
                self._since_full = 0
                if len(unseen) > 2:
                    # Codes that came while we paged moved from list to list: one more
                    # look at RECEIVED finds them cheaper than a GET each.
                    await self._scan(OrderStatus.RECEIVED, unseen)
                for watch in unseen.values():
                    watch.fetch_next = True  # neither pending nor received: look at it
        except _FATAL:
            raise
        except GsimError as exc:
            log.info("listing orders failed this round (%s); fetching one by one", exc)
            for watch in watches:
                watch.fetch_next = True
        for watch in watches:
            if watch.fetch_next and not watch.done.is_set():
                self._fetch_soon(watch)

    async def _scan(self, status: OrderStatus, targets: dict[str, Watch]) -> int:
        """Page through orders of ``status``, taking found targets out; returns pages read.

        Newest first is only a hint: paging stops once every target left is newer than
        the page's oldest order.
        """
        floors = [(self._floor(w), oid) for oid, w in targets.items()]
        heapq.heapify(floors)
        pages = 0
        while targets:
            pages += 1
            listing = await self._source.scan(status, pages, C.MAX_PAGE_SIZE)
            for order in listing.items:
                self._source.seen(order)
                watch = targets.pop(order.id, None)
                if watch is None:
                    continue
                if status is OrderStatus.PENDING:
                    if watch.order.created_at is None:
                        watch.order = watch.order.merged(order)  # its stamp, for the hints
                    continue
                self._update(watch, order)
                if not is_settled(watch.order):
                    watch.fetch_next = True  # e.g. RECEIVED whose code is not shown yet
            items = listing.items
            if not items or (listing.total_pages is not None and pages >= listing.total_pages):
                break
            while floors and floors[0][1] not in targets:
                heapq.heappop(floors)
            oldest = items[-1].created_at
            if floors and oldest is not None and floors[0][0] > oldest.timestamp():
                break
        return pages

    def _floor(self, watch: Watch) -> float:
        created = watch.order.created_at
        if created is not None:
            return created.timestamp()
        return self._source.created_floor(watch.order)

    # -- single orders --------------------------------------------------------------------

    def _fetch_soon(self, watch: Watch) -> None:
        """Fetch one order beside the rounds (once at a time per order)."""
        if watch.fetching:
            return
        watch.fetching = True
        watch.fetch_next = False
        task = asyncio.get_running_loop().create_task(self._fetch(watch))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, watch: Watch) -> None:
        try:
            async with self._fetch_slots:
                if watch.done.is_set():
                    return
                order = await self._source.fetch(watch.order.id)
        except NotFoundError as exc:
            watch.settle(error=exc)
        except _FATAL as exc:
            self._fail_all(exc)
        except GsimError as exc:
            # Transient after the transport's retries: try again next round.
            log.info("could not check order %s this round: %s", watch.order.id, exc)
        else:
            self._update(watch, order)
        finally:
            watch.fetching = False
        if watch.done.is_set() and self._watches.get(watch.order.id) is watch:
            del self._watches[watch.order.id]

    # -- outcomes -------------------------------------------------------------------------

    def _update(self, watch: Watch, order: Order) -> None:
        old = watch.order
        new = old.merged(order)
        changed = new.status != old.status or new.sms_code != old.sms_code
        watch.order = new
        if changed and self._on_update is not None:
            try:
                self._on_update(new)
            except Exception:
                log.exception("on_order_update hook raised; ignored")
        if is_settled(new):
            watch.settle(new)
            if self._watches.get(new.id) is watch:
                # Settled: later waiters on this id start a fresh registration.
                del self._watches[new.id]

    def _fail_all(self, exc: BaseException) -> None:
        for watch in list(self._watches.values()):
            watch.settle(error=exc)
        self._watches.clear()
