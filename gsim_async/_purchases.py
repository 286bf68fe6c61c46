"""Purchase reconciliation: adopt what an ambiguous purchase bought instead of buying twice.

A purchase whose answer was lost (connection cut after sending, timeout, a proxy's
5xx) may have charged the account. We list this account's recent orders of the same
service and country, skip those this client already holds, and adopt the one we
find; only when there is none do we buy again. Purchases of the same service and
country still on the wire would make their orders look unclaimed, so a
reconciliation waits for them to finish and holds new ones back meanwhile; one
listing then serves every reconciliation queued for that service and country.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import anyio
import attrs

from ._background import Background
from ._models import Order

log = logging.getLogger("gsim_async")

#: How far before our own send time an order's server timestamp may be and still be
#: taken as ours: covers clock skew between this machine and the server.
CLOCK_SKEW = timedelta(seconds=30)
#: Held ids are forgotten after this long (a listing only looks at recent orders).
HOLD_FOR = 3600.0
_LATEST = datetime.max.replace(tzinfo=timezone.utc)

Key = tuple[str, str]
Lister = Callable[[datetime], Awaitable[list[Order]]]


@attrs.define(eq=False)
class _Pending:
    since: datetime
    operator: str | None
    done: anyio.Event = attrs.field(factory=anyio.Event)
    result: Order | None = None
    error: BaseException | None = None


@attrs.define(eq=False)
class _KeyState:
    in_flight: int = 0
    pending: list[_Pending] = attrs.field(factory=list)
    leader: bool = False
    changed: anyio.Event = attrs.field(factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    @property
    def reconciling(self) -> bool:
        return self.leader or bool(self.pending)


class PurchaseBook:
    """Orders this client holds, and purchases in flight per (service, country)."""

    def __init__(self, background: Background) -> None:
        self._background = background
        self._held: dict[str, float] = {}
        self._keys: dict[Key, _KeyState] = {}

    def hold(self, order_id: str) -> None:
        """Remember that this client owns ``order_id``."""
        now = time.monotonic()
        self._held[order_id] = now
        if len(self._held) > 1024 and len(self._held) % 1024 == 0:
            cutoff = now - HOLD_FOR
            self._held = {k: t for k, t in self._held.items() if t >= cutoff}

    def holds(self, order_id: str) -> bool:
        """Whether this client bought or adopted ``order_id``."""
        return order_id in self._held

    async def begin(self, key: Key) -> _KeyState:
        """Register a purchase about to be sent (waits while a reconciliation runs).

        Returns the handle to pass to :meth:`end`, whatever the purchase's outcome.
        """
        while True:
            state = self._keys.setdefault(key, _KeyState())
            if not state.reconciling:
                state.in_flight += 1
                return state
            await state.changed.wait()
            # The reconciliation may have finished and dropped this state: look again.

    def end(self, key: Key, state: _KeyState) -> None:
        """The purchase registered by ``begin`` has its answer (or lost it)."""
        state.in_flight -= 1
        state.notify()
        self._forget(key, state)

    def _forget(self, key: Key, state: _KeyState) -> None:
        if not state.in_flight and not state.reconciling and self._keys.get(key) is state:
            del self._keys[key]

    async def reconcile(
        self, key: Key, since: datetime, operator: str | None, lister: Lister
    ) -> Order | None:
        """Find the order an ambiguous purchase created, or ``None`` if it created none.

        ``since`` is when the purchase was sent (server clock, as far as we know it);
        ``lister`` returns this account's orders created after a given time. Raises
        what the listing raised.
        """
        state = self._keys.setdefault(key, _KeyState())
        pending = _Pending(since=since, operator=None if operator == "any" else operator)
        state.pending.append(pending)
        state.notify()
        if not state.leader:
            state.leader = True
            # Its own task: the reconciliations queued behind it must not depend on
            # whether the caller that started it gets cancelled.
            self._background.spawn(self._lead(key, state, lister))
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def _lead(self, key: Key, state: _KeyState, lister: Lister) -> None:
        try:
            await self._serve(key, state, lister)
        finally:
            for p in state.pending:  # only if we were cancelled (the client is closing)
                p.error = RuntimeError("the gsim Client was closed during reconciliation")
                p.done.set()
            state.pending.clear()
            state.leader = False
            state.notify()
            self._forget(key, state)

    async def _serve(self, key: Key, state: _KeyState, lister: Lister) -> None:
        while state.pending:
            while state.in_flight:
                await state.changed.wait()
            batch, state.pending = state.pending, []
            oldest = min(p.since for p in batch) - CLOCK_SKEW
            try:
                orders = await lister(oldest)
            except BaseException as exc:  # every waiter must learn of it
                for p in batch:
                    p.error = exc
                    p.done.set()
                continue
            self._assign(key, batch, orders)

    def _assign(self, key: Key, batch: list[_Pending], orders: list[Order]) -> None:
        service, country = key
        candidates = sorted(
            (
                o
                for o in orders
                if o.service == service
                and (o.country is None or o.country == country)
                and not self.holds(o.id)
            ),
            key=lambda o: o.created_at or _LATEST,
        )
        for p in sorted(batch, key=lambda p: p.since):
            floor = p.since - CLOCK_SKEW
            for order in candidates:
                if order.created_at is not None and order.created_at < floor:
                    continue
                if p.operator is not None and order.operator not in (None, p.operator):
                    continue
                candidates.remove(order)
                self.hold(order.id)
                p.result = order
                log.info("adopted order %s after an ambiguous purchase", order.id)
                break
            p.done.set()
