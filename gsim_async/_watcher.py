"""One poller per Client for every order someone is waiting on.

Waiters register an order and wait on an event; the watcher runs rounds at a fixed
cadence and picks the cheapest way to learn about all of them:

* few waiters: ``GET /orders/{id}`` each;
* many: page through ``GET /orders?status=PENDING`` (orders seen there are still
  waiting), then through ``GET /orders?status=RECEIVED`` for the ones that left
  (each page carries up to 100 codes), then fetch on its own whatever no page
  accounted for.

Correctness never rests on list order: the newest-first order is only a hint to stop
paging early, and an order no page accounted for is simply fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import attrs

from ._constants import MAX_PAGE_SIZE
from ._enums import TERMINAL_WITHOUT_CODE, OrderStatus
from ._exceptions import ForbiddenError, GsimError, NotFoundError, UnauthorizedError
from ._models import Order

if TYPE_CHECKING:
    from ._resources._orders import Orders

log = logging.getLogger("gsim_async")

#: Concurrent single-order GETs in one round.
_FETCH_CONCURRENCY = 16
#: Fatal for every waiter: retrying the next round cannot help.
_FATAL = (UnauthorizedError, ForbiddenError)

OrderHook = Callable[[Order], object]


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

    def settle(self, order: Order | None = None, error: BaseException | None = None) -> None:
        if order is not None:
            self.order = order
        self.error = error
        self.done.set()


class Watcher:
    """Polls for every order of one client that has a waiter."""

    def __init__(self, orders: Orders, interval: float, on_update: OrderHook | None) -> None:
        self._orders = orders
        self._interval = interval
        self._on_update = on_update
        self._watches: dict[str, Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending_total: int | None = None
        self._wake = asyncio.Event()
        #: Poll rounds run so far (for tests and benchmarks).
        self.rounds = 0

    @property
    def orders(self) -> Orders:
        """The namespace of the client that owns this watcher."""
        return self._orders

    @property
    def watching(self) -> int:
        """How many orders currently have a waiter."""
        return len(self._watches)

    def is_watching(self, order_id: str) -> bool:
        """Whether someone is waiting on ``order_id``."""
        return order_id in self._watches

    def watch(self, order: Order, interval: float | None = None) -> Watch:
        """Register interest in ``order`` (shared with other waiters on the same id)."""
        watch = self._watches.get(order.id)
        if watch is None:
            watch = Watch(order=order, interval=interval or self._interval)
            self._watches[order.id] = watch
        elif interval is not None:
            watch.interval = min(watch.interval, interval)
        watch.waiters += 1
        if interval is not None and interval < self._interval:
            self._wake.set()
        self._ensure_running()
        return watch

    def unwatch(self, watch: Watch) -> None:
        """One waiter is gone; the order is dropped when it was the last."""
        watch.waiters -= 1
        if watch.waiters <= 0 and self._watches.get(watch.order.id) is watch:
            del self._watches[watch.order.id]

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="gsim_async watcher"
            )

    async def aclose(self) -> None:
        """Stop polling; waiters still registered fail with a clear error."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait does not re-raise the task's CancelledError as ours.
            await asyncio.wait([task])
        for watch in list(self._watches.values()):
            watch.settle(error=RuntimeError("the gsim Client was closed while waiting"))
        self._watches.clear()

    async def _run(self) -> None:
        try:
            while self._watches:
                started = time.monotonic()
                await self._round(list(self._watches.values()))
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
            for watch in list(self._watches.values()):
                watch.settle(error=exc)
            self._watches.clear()

    async def _round(self, watches: list[Watch]) -> None:
        self.rounds += 1
        sent_before = self._orders._transport.requests_sent
        open_watches = [w for w in watches if not w.done.is_set()]
        try:
            if self._use_lists(len(open_watches)):
                await self._round_by_lists(open_watches)
            else:
                await self._fetch_each(open_watches)
        except _FATAL as exc:
            for watch in open_watches:
                watch.settle(error=exc)
                self._watches.pop(watch.order.id, None)
        for watch in open_watches:
            if watch.done.is_set() and self._watches.get(watch.order.id) is watch:
                # Settled: later waiters on this id start a fresh registration.
                del self._watches[watch.order.id]
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "poll round %d: %d requests, %d orders checked, %d still waiting",
                self.rounds,
                self._orders._transport.requests_sent - sent_before,
                len(open_watches),
                len(self._watches),
            )

    def _use_lists(self, waiting: int) -> bool:
        pending = max(self._pending_total or 0, waiting)
        list_cost = math.ceil(pending / MAX_PAGE_SIZE) + 1
        return waiting > list_cost + 1

    # -- per order -------------------------------------------------------------------

    async def _fetch_each(self, watches: Iterable[Watch]) -> None:
        limiter = anyio.Semaphore(_FETCH_CONCURRENCY)
        fatal: list[GsimError] = []

        async def one(watch: Watch) -> None:
            async with limiter:
                if fatal:
                    return
                try:
                    order = await self._orders._fetch(watch.order.id)
                except NotFoundError as exc:
                    watch.settle(error=exc)
                    return
                except _FATAL as exc:
                    # Kept, not raised: a task group would wrap it in an ExceptionGroup.
                    fatal.append(exc)
                    return
                except GsimError as exc:
                    # Transient after the transport's retries: try again next round.
                    log.info("could not check order %s this round: %s", watch.order.id, exc)
                    return
                self._update(watch, order)

        async with anyio.create_task_group() as tg:
            for watch in watches:
                tg.start_soon(one, watch)
        if fatal:
            raise fatal[0]

    # -- by lists --------------------------------------------------------------------

    async def _round_by_lists(self, watches: list[Watch]) -> None:
        by_id = {w.order.id: w for w in watches}
        try:
            unseen = await self._scan(OrderStatus.PENDING, by_id, pending=True)
        except _FATAL:
            raise
        except GsimError as exc:
            log.info("listing PENDING orders failed this round (%s); fetching one by one", exc)
            unseen = by_id
        if unseen and len(unseen) > 2:
            try:
                unseen = await self._scan(OrderStatus.RECEIVED, unseen, pending=False)
            except _FATAL:
                raise
            except GsimError as exc:
                log.info("listing RECEIVED orders failed this round (%s)", exc)
        if unseen:
            await self._fetch_each(unseen.values())

    async def _scan(
        self, status: OrderStatus, targets: dict[str, Watch], *, pending: bool
    ) -> dict[str, Watch]:
        """Page through orders of ``status``; returns the targets no page showed.

        A RECEIVED scan reads at most as many pages as there are targets: past that,
        fetching each one costs less (a long history must not be read every round).
        """
        unseen = dict(targets)
        budget = None if pending else len(targets)
        page = 1
        while unseen and (budget is None or page <= budget):
            result = await self._orders.list(page=page, limit=MAX_PAGE_SIZE, status=status)
            if pending and page == 1:
                self._pending_total = result.total
            for order in result.items:
                watch = unseen.pop(order.id, None)
                if watch is not None:
                    self._update(watch, order)
            if not result.items or page >= result.total_pages:
                break
            oldest = result.items[-1].created_at
            if oldest is not None and _all_newer(unseen.values(), oldest):
                # Newest first: every order still unseen is newer than this page's last,
                # so later pages cannot hold it (a wrong hint only costs a fetch).
                break
            page += 1
        return unseen

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


def _all_newer(watches: Iterable[Watch], than: datetime) -> bool:
    for watch in watches:
        created = watch.order.created_at
        if created is None or created <= than:
            return False
    return True
