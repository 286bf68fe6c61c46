"""Recovery: what an earlier run left owed, taken over when its journal is opened again.

When a client opens a journal holding an earlier run's open rows (the run was killed,
or closed with refunds still under way), in the background:

* a purchase that was on the wire is reconciled from its journaled send time, on the
  same path as a lost answer (``Reconciler.recover``), never bought again. What the
  orders it can have made are is judged on the server's clock, by the bounds that run
  kept (never this run's own clock: the machine's may have been stepped since);
* every order still held without a code is refunded once its refund falls due (see
  ``_obligations``): an activation's a grace after the first run that found its block
  dead (that run writes the time, later runs keep it: a crash loop does not start it
  again), a wait's at the end of its timeout, a bare ``create()``'s shortly before it
  expires; never later than that (``RECOVERY_EXPIRY_MARGIN`` before expiry). Due times
  are on the server's clock, turned into this machine's with this run's guess;
* unless the program takes it back first: ``orders.recovered()`` hands those orders
  back (with their code, if one came meanwhile), ``rentals.recovered()`` the rentals
  found for purchases on the wire.

A fleet's leader runs the same for a member that died (``take_over``), with every
refund due at once: the member's waiters died with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import attrs

from .. import _constants as C
from .._converter import Decoder, decoder, order_to_wire, parse_datetime
from .._exceptions import GsimError, NotFoundError
from .._journal import Entry, Snapshot
from .._models import Order, Rental
from .._reconcile import Baseline, Lost, Reconciler
from .._waiting import settle
from .._watcher import is_settled
from ._order_calls import OrderCalls, order_key
from ._shared import Shared

log = logging.getLogger("gsim_async")

_ORDER: Decoder[Order] = decoder(Order)


#: Seconds a refund timer sleeps at most before it looks at the clocks again: a guess of
#: the server's clock that changes by more than ``_MOVED`` seconds (a first answer, a
#: purchase, this machine's clock stepped) moves the refund too. Smaller changes are the
#: Date header's jitter (it has whole seconds): they move nothing.
_RECHECK = 5.0
_MOVED = 2.0


@attrs.define(eq=False)
class _Due:
    order: Order
    action: str
    #: When the refund falls due, on the server's clock (None: fixed once the server's
    #: clock is known, a grace from then: an activation found before any answer came).
    due: float | None
    #: The same on this machine's clock, as last turned (see ``_MOVED``).
    local: float = 0.0
    timer: asyncio.Task[None] | None = None


class Recovery:
    """An earlier run's obligations: reconciled, refunded when due, or handed back."""

    def __init__(
        self,
        *,
        shared: Shared,
        calls: OrderCalls,
        orders: Reconciler[Order],
        rentals: Reconciler[Rental],
        get_rental: Callable[[str], Awaitable[Rental]],
        grace: float = C.RECOVERY_GRACE,
    ) -> None:
        self._shared = shared
        self._calls = calls
        self._orders = orders
        self._rentals = rentals
        self._get_rental = get_rental
        self.grace = grace
        self._task: asyncio.Task[None] | None = None
        self._due: dict[str, _Due] = {}
        self._handed: list[Order] = []
        self._found_rentals: list[Rental] = []
        self._timers: set[asyncio.Task[None]] = set()
        #: Set once the first look is over (what recovered() waits for).
        self._looked = asyncio.Event()
        self._takeovers: set[asyncio.Task[None]] = set()
        #: The journal's earlier rows, taken over by the first look.
        self._snapshot: Snapshot | None = None
        # Thousands of rows must not become thousands of requests at once.
        self._limiter = asyncio.Semaphore(C.SWEEP_CONCURRENCY)
        #: Wall clock: when the first look can be over (its purchases on the wire
        #: reconciled); a dead block's grace counts from then.
        self._look_ends = 0.0

    # -- what the namespaces call -----------------------------------------------------------

    def load(self, snapshot: Snapshot, *, where: str) -> None:
        """Queue a journal's earlier rows (``where`` names it in the log)."""
        if snapshot.foreign:
            servers = ", ".join(snapshot.foreign_servers)
            log.warning(
                "%s holds %d open rows of another API key or server%s; they are left alone "
                "(open it with that key and base URL to recover them; Journal.open_rows() "
                "counts them)",
                where,
                snapshot.foreign,
                f" (written for {servers})" if servers else "",
            )
        if snapshot.entries:
            self._snapshot = snapshot

    def start(self) -> None:
        """Begin recovering in the background (once; needs the running loop)."""
        if self._task is None and self._snapshot is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gsim recovery")

    async def orders(self) -> list[Order]:
        """The earlier run's orders, handed back to the program (each once)."""
        await self._wait_ready()
        handed, self._handed = self._handed, []
        for order_id, due in list(self._due.items()):
            if due.timer is not None and due.timer.done():
                continue  # its refund already began
            if due.timer is not None:
                due.timer.cancel()
            del self._due[order_id]
            self._shared.obligations.kept(order_id)
            handed.append(due.order)
        if handed:
            log.info(
                "journal: %d order(s) of an earlier run handed back to the program: %s",
                len(handed),
                ", ".join(o.id for o in handed),
            )
        return handed

    async def rentals(self) -> list[Rental]:
        """Rentals found for purchases an earlier run had on the wire (each once)."""
        await self._wait_ready()
        found, self._found_rentals = self._found_rentals, []
        return found

    async def aclose(self, timeout: float) -> None:
        """Stop: refunds already due are started; the rest stays in the journal.

        A first look still under way gets up to ``timeout`` seconds to finish (a short
        program run after a crash still refunds what is overdue).
        """
        looks = [t for t in (self._task, *self._takeovers) if t is not None and not t.done()]
        if looks:
            await asyncio.wait(looks, timeout=timeout)
        for _ in range(3):  # timers due now start their refunds (background work)
            await asyncio.sleep(0)
        tasks = [
            t
            for t in (self._task, *self._takeovers, *self._timers)
            if t is not None and not t.done()
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _wait_ready(self) -> None:
        self.start()
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- the work ---------------------------------------------------------------------------

    async def _run(self) -> None:
        snapshot = self._snapshot
        assert snapshot is not None
        await self._recover(snapshot.entries, snapshot, False)
        self._looked.set()

    async def _recover(
        self, entries: Sequence[Entry], snapshot: Snapshot | None, at_once: bool
    ) -> None:
        wire = [e for e in entries if e.state == "wire"]
        owed = [e for e in entries if e.state == "owed" and e.kind == "order"]
        if snapshot is not None:
            self._seed(snapshot)
        log.info(
            "journal: an earlier run left %d order(s) owed and %d purchase(s) on the wire; "
            "owed orders are refunded when due unless taken back with orders.recovered()",
            len(owed),
            len(wire),
        )
        losts = [(entry, *self._lost(entry, snapshot)) for entry in wire]
        if not at_once:
            now = time.time()
            left = max((lost.deadline - time.monotonic() for *_, lost in losts), default=0.0)
            self._look_ends = max(self._look_ends, now + max(left, 0.0))
        jobs = [self._reconcile(losts, at_once)]
        jobs += [self._check(e, at_once) for e in owed]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("journal: recovering a row failed: %r", result)

    def _seed(self, snapshot: Snapshot) -> None:
        # Every order the journal knows as its own is held: a lost purchase is never
        # matched to one of them, and none of them is taken for another buyer's.
        ownership = self._shared.ownership
        for item_id, sent, received in snapshot.held:
            if not ownership.holds(item_id):
                # Never calibrated by: its times are that run's wall clock, which may
                # have been stepped since (this run's clock pins itself).
                ownership.hold(item_id, sent or 0.0, received, calibrate=False)

    async def _check(self, entry: Entry, at_once: bool) -> None:
        order = _order(entry.item)
        if order is None:
            self._shared.obligations.forget(entry.ref, "unreadable row")
            return
        try:
            async with self._limiter:
                order = order.merged(await self._calls.fetch(order.id, cleanup=True))
        except NotFoundError:
            self._shared.obligations.forget(entry.ref, "not found on the account")
            return
        except GsimError as exc:
            log.info(
                "journal: could not read order %s now (%s); using what is known", order.id, exc
            )
        self._take(entry, order, at_once)

    def _lost(
        self, entry: Entry, snapshot: Snapshot | None
    ) -> tuple[Reconciler[Any], tuple[str, ...], Lost[Any]]:
        """The purchase a ``wire`` row stands for, as reconciliation sees a lost one."""
        request = entry.request or {}
        now = time.time()
        sent = entry.sent if entry.sent is not None else now
        if entry.kind == "rental":
            number = str(request.get("phoneNumber", ""))
            key: tuple[str, ...] = ("rental", number)
            what = number

            def matches_rental(item: Any) -> bool:
                return bool(item.phone_number == number)

            matches: Callable[[Any], bool] = matches_rental
            reconciler: Reconciler[Any] = self._rentals
        else:
            service = str(request.get("service", ""))
            country = str(request.get("country", ""))
            operator = request.get("operator")
            wanted = None if operator in (None, "any") else operator
            key = order_key(service, country)
            what = f"{service}/{country}"

            def matches_order(item: Any) -> bool:
                return bool(
                    item.service == service
                    and item.country in (None, country)
                    and (wanted is None or item.operator in (None, wanted))
                )

            matches = matches_order
            reconciler = self._orders
        window = reconciler.window
        mine = self._shared.root.clock
        theirs = entry.clock
        if theirs is None:
            # A row of an older version, which kept no bounds when unpinned: judged as it
            # was then (this run's pinned bounds, else the baseline alone from below).
            ours = mine.bounds()
            theirs = ours if mine.calibrated else (-math.inf, ours[1])
        # Stamped: it left then. Else it left after its intent, if at all, and before its
        # run died (its last write; a fleet member: about now, on this run's clock).
        latest = math.inf
        if snapshot is not None or entry.stamped:
            last = sent if entry.stamped else _alive_at(snapshot, entry)
            latest = last + window + theirs[1]
        # That run is dead: it sent nothing after now (a dead fleet member's, as the
        # fleet always judged it, by this run's best guess of the server's clock).
        here = mine.pinned() if snapshot is not None else mine.bounds()
        latest = min(latest, now + window + here[1])
        # The span on the server's clock in which its order can have been made: that
        # run's times by that run's bounds, so a clock stepped since changes nothing.
        span = (sent + theirs[0], latest)
        seen = snapshot.foreign_seen.get(entry.run) if snapshot is not None else None
        lost: Lost[Any] = Lost(
            key=key,
            what=what,
            matches=matches,
            sent=sent,
            deadline=time.monotonic() + _window_left(sent, now, window, theirs, mine.pinned()),
            happened=False,
            baseline=_baseline(snapshot, entry),
            span=span,
            doubtful=seen is not None and seen > sent - C.FOREIGN_BUYER_MEMORY,
        )
        return reconciler, key, lost

    async def _reconcile(
        self,
        losts: Sequence[tuple[Entry, Reconciler[Any], tuple[str, ...], Lost[Any]]],
        at_once: bool,
    ) -> None:
        """Every purchase on the wire, one reconciliation per key (all of a key at once)."""
        # Keys name their kind ("order", ...; "rental", ...): one reconciler each.
        groups: dict[tuple[str, ...], tuple[Reconciler[Any], list[tuple[Entry, Lost[Any]]]]] = {}
        for entry, reconciler, key, lost in losts:
            groups.setdefault(key, (reconciler, []))[1].append((entry, lost))

        async def resolve(entry: Entry, lost: Lost[Any]) -> None:
            await lost.done.wait()
            await self._resolved(entry, lost, at_once)

        async def one_key(
            key: tuple[str, ...], reconciler: Reconciler[Any], rows: list[tuple[Entry, Lost[Any]]]
        ) -> None:
            # Each purchase is answered for as soon as it is resolved: an order adopted
            # early must not wait, owed by nobody, for the key's last purchase (minutes
            # under steady buying), or die unowed with the member that adopted it.
            async with anyio.create_task_group() as resolving:
                for entry, lost in rows:
                    resolving.start_soon(resolve, entry, lost)
                failures = 0
                while pending := [lost for _, lost in rows if not lost.done.is_set()]:
                    try:
                        await reconciler.recover(key, pending)
                    except GsimError as exc:  # the baseline could not be listed: again, later
                        failures += 1
                        log.info("journal: could not reconcile yet (%s); trying again", exc)
                        await anyio.sleep(min(2.0**failures, C.REFUND_BACKOFF_CAP))

        await asyncio.gather(*(one_key(key, *group) for key, group in groups.items()))

    async def _resolved(self, entry: Entry, lost: Lost[Any], at_once: bool) -> None:
        what, sent, request = lost.what, lost.sent, entry.request or {}
        if lost.error is not None:
            log.warning("journal: an earlier run's purchase cannot be told: %s", lost.error)
            self._shared.obligations.forget(entry.ref, "outcome unknown (logged)")
            return
        found = lost.result
        if found is None:
            log.info("journal: an earlier run's purchase of %s bought nothing", what)
            self._shared.obligations.forget(entry.ref, "nothing bought")
            return
        if entry.kind == "rental":
            log.info("journal: an earlier run's purchase of %s rented %s", what, found.id)
            self._shared.obligations.rented(entry.ref, found.id, found.phone_number, sent)
            with contextlib.suppress(GsimError):
                found = await self._get_rental(found.id)
            self._found_rentals.append(found)
            return
        log.info("journal: an earlier run's purchase of %s bought order %s", what, found.id)
        asked = request.get("operator")
        order = attrs.evolve(
            found,
            country=found.country or str(request.get("country", "")) or None,
            operator=found.operator or (asked if isinstance(asked, str) else None),
        )
        self._take(entry, order, at_once, sent=sent, unseen=True)

    def _take(
        self,
        entry: Entry,
        order: Order,
        at_once: bool,
        sent: float | None = None,
        unseen: bool = False,
    ) -> None:
        """This run answers for ``order`` now: hand it back, or refund it when due."""
        obligations = self._shared.obligations
        clock = self._shared.root.clock
        if is_settled(order):
            outcome = "code" if order.sms_code is not None else str(order.status.value)
            obligations.forget(entry.ref, outcome)
            if order.sms_code is not None:
                log.info("journal: order %s of an earlier run got its code", order.id)
                if not at_once:  # a dead fleet member's: nobody will take it back
                    self._handed.append(order)
            return
        now = time.time()
        expires = now + self._calls.seconds_left(order)
        purpose: str = entry.purpose
        action: str = entry.action or "cancel"
        # Every due time below is on the server's clock (obligations.on_server/on_wall).
        # `keep` is what the row says from now on: written once, kept by later runs.
        # None is ever later than a bare create()'s: a while before the order expires.
        latest = _latest(order, obligations.on_server(expires))
        keep: float | None = entry.due
        after_look = False
        due: float | None
        if purpose == "activation":
            # The block died with its run; a fleet member's cannot be taken back at all.
            action = "cancel"
            if at_once:
                due = obligations.on_server(now)
            elif entry.due is not None:
                due = entry.due  # fixed by the first run that found it dead: kept
            elif clock.known:
                # This run is the first to find it dead: the grace counts from the end of
                # the first look, for which recovered() waits (the program gets the whole
                # grace to take its orders back), and is written now, so that a program
                # that keeps dying does not start it again.
                due = keep = obligations.on_server(max(now, self._look_ends) + self.grace)
                after_look = True
            else:
                due = None  # fixed by the timer once an answer shows the server's clock
                after_look = True
        elif purpose == "refund" or (at_once and (purpose == "wait" or unseen)):
            # Under way when it died; or its waiter died with the member, or the member
            # died before it learnt what it bought: nobody else can use it.
            due = obligations.on_server(now)
        elif purpose == "wait":
            if entry.due is not None:
                due = entry.due
            elif entry.deadline is not None:  # an older file: that run's wall clock
                due = keep = obligations.on_server(entry.deadline)
            else:
                due = obligations.on_server(now)
        else:
            due = latest
        if due is not None:
            due = min(due, latest)
        obligations.adopt(
            entry.ref,
            order,
            order_to_wire(order),
            expires,
            purpose=purpose,
            deadline=keep if purpose in ("activation", "wait") else due,
            action=action,
            sent=sent,
        )
        self._calls.remember(order)
        known = self._due.get(order.id)
        if known is not None:
            if not at_once or (known.due is not None and known.local <= now):
                return
            # This run's journal showed it the order first (its own earlier run's, to be
            # refunded when that run's wait would have ended, or a grace after the look);
            # the fleet now hands it over as a dead member's: nobody takes it back, as
            # whichever member leads would have refunded it. At once, then.
            if known.timer is not None:
                known.timer.cancel()
            del self._due[order.id]
        record = _Due(order, action, due)
        if due is not None:
            record.local = obligations.on_wall(due)
        self._due[order.id] = record
        wait = max(record.local - now, 0.0) if due is not None else self.grace
        log.info(
            "journal: order %s of an earlier run is %s in %.0f s unless taken back",
            order.id,
            "banned" if action == "ban" else "cancelled",
            wait,
        )
        timer = asyncio.get_running_loop().create_task(
            self._refund_later(record, entry.ref, latest, after_look)
        )
        record.timer = timer
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _refund_later(self, record: _Due, ref: str, latest: float, after_look: bool) -> None:
        obligations = self._shared.obligations
        clock = self._shared.root.clock
        if after_look:
            await self._looked.wait()
            if record.due is not None:
                # This run fixed the due time for the longest its look could take; it
                # took less: the grace counts from its end (written: later runs keep it).
                sooner = obligations.on_server(time.time() + self.grace)
                if sooner < record.due:
                    record.due = sooner
                    record.local = obligations.on_wall(sooner)
                    obligations.due_fixed(record.order.id, ref, sooner)
        if record.due is None:
            # Found before any answer showed the server's clock: fix the grace once one has.
            while True:  # polled: a Date header is seen below the transport's hooks
                if clock.known:
                    break
                await anyio.sleep(0.5)
            record.due = min(obligations.on_server(time.time() + self.grace), latest)
            record.local = obligations.on_wall(record.due)
            obligations.due_fixed(record.order.id, ref, record.due)
        # The due time is on the server's clock: looked at again now and then, so that a
        # better guess of that clock (or this machine's stepped) moves the refund too.
        while True:
            local = obligations.on_wall(record.due)
            if abs(local - record.local) > _MOVED:
                record.local = local
            left = record.local - time.time()
            if left <= 0:
                break
            await anyio.sleep(min(left, _RECHECK))
        self._due.pop(record.order.id, None)
        task = self._shared.background.spawn(settle(self._calls, record.order, record.action))
        result = await asyncio.shield(task)
        log.info("journal: order %s of an earlier run: %s", record.order.id, result.note)

    def take_over(self, entries: Sequence[Entry]) -> None:
        """A dead fleet member's rows, now this client's: every refund is due at once.

        Each dead member's rows are recovered in a task of their own: one member's
        purchases on the wire may take a reconcile window to settle, and the next dead
        member's refunds, due at once, must not wait behind them (queued, a fleet losing
        a member a minute refunded minutes late, or never if the leader went first).
        """
        task = asyncio.get_running_loop().create_task(
            self._recover(entries, None, True), name="gsim recovery (a dead member's)"
        )
        self._takeovers.add(task)
        task.add_done_callback(self._takeovers.discard)


def _alive_at(snapshot: Snapshot | None, entry: Entry) -> float:
    """The latest an earlier run can have sent ``entry``'s purchase (wall clock)."""
    if snapshot is None:
        return time.time()
    # The run wrote that it was alive at least every second until it died.
    return max(snapshot.alive.get(entry.run, time.time()), entry.sent or 0.0) + 2.0


def _latest(order: Order, expires: float) -> float:
    """The latest an order's refund may fall due, on the server's clock."""
    stamp = order.expires_at.timestamp() if order.expires_at is not None else expires
    return stamp - C.RECOVERY_EXPIRY_MARGIN


def _window_left(
    sent: float,
    now: float,
    window: float,
    theirs: tuple[float, float],
    mine: tuple[float, float],
) -> float:
    """Seconds the server may still be working on an earlier run's purchase.

    By the server's clock when both runs pinned theirs (that run's latest send time, this
    run's earliest now); else by the wall clocks, which a step between the runs can
    fool: never more than a window from now (a clock that was ahead), but a clock that
    was behind makes the purchase look older than it is.
    """
    if math.isfinite(theirs[1]) and math.isfinite(mine[0]):
        elapsed = (now + mine[0]) - (sent + theirs[1])
    else:
        elapsed = now - sent
    return min(max(window - elapsed, 0.0), window)


def _order(item: dict[str, Any] | None) -> Order | None:
    if item is None:
        return None
    try:
        return _ORDER(item)
    except Exception:
        return None


def _baseline(snapshot: Snapshot | None, entry: Entry) -> Baseline | None:
    if snapshot is None:
        # A fleet member's purchase: ownership across the fleet is exact, and what the
        # account held before is told apart by the stamps alone.
        return Baseline(frozenset(), None)
    kinds = snapshot.baselines.get(entry.run, {})
    known = kinds.get(entry.kind)
    if known is None:
        return Baseline(frozenset(), None)
    ids, newest = known
    stamp: datetime | None = None
    if newest:
        with contextlib.suppress(ValueError):
            stamp = parse_datetime(newest)
    return Baseline(frozenset(ids), stamp)


__all__ = ["Recovery"]
