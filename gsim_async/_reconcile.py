"""Reconciliation: find what a purchase whose answer was lost bought, or prove it bought nothing.

One path for orders and rentals (docs/architecture.md, "Money and codes are never
lost", rule 2). For each purchase key (service and country, or a rental's number):

* purchases of the key on the wire are counted; a listing of the account runs only
  when none is (new ones wait meanwhile), so every order the client bought is either
  held or one of the lost ones, and one listing serves every lost purchase queued;
* before the client's first purchase, one listing records what the account already
  had (the *baseline*); a candidate is an item of the key the baseline did not show,
  held by nobody here, stamped after the baseline's newest item (both stamps from the
  server's own clock, so no clock of ours is trusted) and, once our own purchases
  have pinned the server's clock, no earlier than the lost request was sent;
* candidates are adopted only while no other buyer was seen on the key and there are
  no more of them than lost purchases; otherwise ``OutcomeUnknownError`` names
  them and nothing is bought again;
* with no candidate, the account is listed again until the server can no longer be
  working on the request (the reconcile window), and once more after it: only then is
  the purchase taken as never made, and bought again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Generic, Protocol, TypeVar

import anyio
import attrs

from . import _constants as C
from ._background import Background
from ._clock import ServerClock
from ._exceptions import GsimError, OutcomeUnknownError
from ._ownership import Key, Ownership

log = logging.getLogger("gsim_async")


@attrs.frozen
class Baseline:
    """What the account held before this client first bought: ids, and the newest stamp."""

    ids: frozenset[str]
    newest: datetime | None


class SharedBook(Protocol):
    """Ownership across a fleet: what every member holds and is buying, per key."""

    @property
    def active(self) -> bool:
        """Whether the fleet is reachable (else the client reconciles on its own)."""

    async def begin(self, key: Key) -> None:
        """Wait while a member lists the account for ``key``; count a purchase on the wire."""

    async def end(self, key: Key, item_id: str | None) -> None:
        """That purchase is off the wire (holding ``item_id`` fleet-wide, first)."""

    async def lost(self, key: Key, delta: int) -> None:
        """A purchase of ``key`` lost its answer (+1), or was resolved (-1)."""

    async def quiet(self, key: Key, timeout: float) -> None:
        """Hold new purchases of ``key`` back fleet-wide and wait until none is on the wire."""

    async def release(self, key: Key) -> None:
        """Let purchases of ``key`` go again."""

    async def counts(self, key: Key) -> tuple[int, int]:
        """Purchases of ``key`` on the wire and lost, over every live member."""

    async def held(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` a member holds."""

    async def claim(self, item_id: str) -> bool:
        """Hold ``item_id`` for this member unless a member holds it already."""

    @property
    def judging_from(self) -> float:
        """When (monotonic) what ``held`` lacks proves something again (0: now).

        After Redis lost its data, members write their holdings back within a few
        heartbeats: until then an order missing from ``held`` may be a member's.
        """


class Item(Protocol):
    """What reconciliation reads of an order or a rental."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


T = TypeVar("T", bound=Item)

#: Seconds between listings while a lost purchase's item has not shown up: 1, 2, 4, ...
_FIRST_RELIST = 1.0
_MAX_RELIST = 15.0


@attrs.define(eq=False)
class Lost(Generic[T]):
    """One purchase whose answer was lost, waiting to be resolved."""

    key: Key
    what: str  # for messages: "telegram/russia", "+15105551234"
    matches: Callable[[T], bool]
    sent: float  # wall clock, when the lost attempt left
    deadline: float  # monotonic: the server cannot be working on it any more
    happened: bool  # the server answered 2xx: it was bought, whatever we find
    # An earlier run's purchase (recovered from a journal): what the account held before
    # that run bought, instead of this client's own baseline; when its order can have
    # been made, on the server's clock (from that run's times and bounds: -inf/inf where
    # it knew nothing); and whether that run saw another buyer on the key (then nothing
    # is matched by guessing).
    baseline: Baseline | None = None
    span: tuple[float, float] | None = None
    doubtful: bool = False
    done: anyio.Event = attrs.field(factory=anyio.Event)
    next_check: float = 0.0
    relist: float = _FIRST_RELIST
    # Candidates seen so far, when they cannot be told apart: all are named at the end.
    seen: dict[str, T] = attrs.Factory(dict)
    result: T | None = None
    error: BaseException | None = None

    def finish(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@attrs.define(eq=False)
class _KeyState(Generic[T]):
    in_flight: int = 0
    draining: bool = False  # a listing is due: new purchases wait
    pending: list[Lost[T]] = attrs.Factory(list)
    leader: bool = False
    changed: anyio.Event = attrs.Factory(anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class Reconciler(Generic[T]):
    """Purchases in flight and lost purchases of one kind (orders, or rentals)."""

    def __init__(
        self,
        *,
        noun: str,
        ownership: Ownership,
        clock: ServerClock,
        background: Background,
        recent: Callable[[datetime], Awaitable[list[T]]],
        baseline: Callable[[], Awaitable[Baseline]],
        key_of: Callable[[T], Key | None],
        describe: Callable[[T], str],
        window: float,
        on_baseline: Callable[[Baseline], None] | None = None,
    ) -> None:
        self._noun = noun
        self._ownership = ownership
        self._clock = clock
        self._background = background
        self._recent = recent
        self._baseline_source = baseline
        self._baseline: Baseline | None = None
        self._baseline_lock = anyio.Lock()
        self._key_of = key_of
        self._describe = describe
        self._on_baseline = on_baseline
        self.window = window
        self._keys: dict[Key, _KeyState[T]] = {}
        self._set_aside: set[str] = set()
        self._leaders: set[asyncio.Task[None]] = set()
        self._shared: SharedBook | None = None

    def attach(self, shared: SharedBook) -> None:
        """Reconcile with a fleet: exact ownership across its members."""
        self._shared = shared

    def _fleet(self) -> SharedBook | None:
        shared = self._shared
        return shared if shared is not None and shared.active else None

    # -- purchases on the wire ----------------------------------------------------------

    async def begin(self, key: Key) -> float:
        """Register a purchase about to be sent (waits while a listing is due).

        Returns its start time, to pass to ``bought`` or ``abandon``. The
        client's first purchase of this kind first records the account's baseline.
        """
        if self._baseline is None:
            await self._take_baseline(key[0])
        while True:
            state = self._keys.setdefault(key, _KeyState())
            if not state.draining:
                break
            await state.changed.wait()
        state.in_flight += 1
        started = time.time()
        self._ownership.opened(key, started)
        fleet = self._fleet()
        if fleet is not None:
            try:
                await fleet.begin(key)
            except BaseException:
                await self.abandon(key, started)
                raise
        return started

    async def _take_baseline(self, kind: str) -> None:
        async with self._baseline_lock:
            if self._baseline is None:
                baseline = await self._baseline_source()
                if baseline.newest is not None:
                    # The server had stamped it by now: the server's clock from below,
                    # before our first purchase pins it (what that purchase's row keeps).
                    self._clock.floor(baseline.newest)
                self._ownership.set_mark(kind, baseline.newest)
                self._baseline = baseline
                if self._on_baseline is not None:
                    self._on_baseline(baseline)

    async def bought(self, key: Key, started: float, item_id: str, sent: float) -> None:
        """The purchase begun at ``started`` bought ``item_id`` (request sent at ``sent``)."""
        self._ownership.hold(item_id, sent)
        fleet = self._fleet()
        if fleet is not None:
            # Held fleet-wide before it leaves the wire: no member's listing sees it free.
            await fleet.end(key, item_id)
        self._ownership.closed(key, started)
        self._off_the_wire(key)

    async def abandon(self, key: Key, started: float) -> None:
        """The purchase bought nothing (a definite error), or is left to the caller."""
        fleet = self._fleet()
        if fleet is not None:
            await fleet.end(key, None)
        self._ownership.closed(key, started)
        self._off_the_wire(key)

    def _off_the_wire(self, key: Key) -> None:
        state = self._keys[key]
        state.in_flight -= 1
        state.notify()
        self._forget(key, state)

    def _forget(self, key: Key, state: _KeyState[T]) -> None:
        idle = not state.in_flight and not state.pending and not state.leader
        if idle and self._keys.get(key) is state:
            del self._keys[key]

    # -- lost purchases -----------------------------------------------------------------

    async def resolve(
        self,
        key: Key,
        started: float,
        lost: Lost[T],
    ) -> T | None:
        """What the lost purchase bought, or ``None`` when it provably bought nothing.

        Call instead of ``bought``/``abandon`` for a purchase begun at
        ``started``. Raises ``OutcomeUnknownError`` when it cannot tell.
        """
        state = self._keys[key]
        fleet = self._fleet()
        if fleet is not None:
            await fleet.lost(key, 1)
            await fleet.end(key, None)
        state.in_flight -= 1  # off the wire, but still open until resolved
        self._queue(key, state, lost)
        try:
            await lost.done.wait()
        finally:
            self._ownership.closed(key, started)
            if fleet is not None:
                await fleet.lost(key, -1)
        if lost.error is not None:
            raise lost.error
        return lost.result

    async def recover(self, key: Key, losts: Sequence[Lost[T]]) -> None:
        """Resolve an earlier run's purchases of ``key`` that were on the wire when it died.

        The same path as a lost answer (each was sent at ``lost.sent``): the account is
        listed only once no purchase of the key is on the wire here, and an item is
        adopted only when it can be proved to be that purchase's. All of them are
        queued at once, so that one listing sees every one of them (a batch seeing more
        new items than lost purchases would take the others for another buyer's).
        Each ``Lost`` ends with its ``result`` (None: nothing was bought) or ``error``
        (``OutcomeUnknownError``).
        """
        if not losts:
            return
        if self._baseline is None:
            await self._take_baseline(key[0])
        fleet = self._fleet()
        if fleet is not None:
            await fleet.lost(key, len(losts))
        state = self._keys.setdefault(key, _KeyState())
        for lost in losts:
            self._ownership.opened(key, lost.sent)
            self._queue(key, state, lost)
        try:
            for lost in losts:
                await lost.done.wait()
        finally:
            for lost in losts:
                self._ownership.closed(key, lost.sent)
            if fleet is not None:
                await fleet.lost(key, -len(losts))

    def _queue(self, key: Key, state: _KeyState[T], lost: Lost[T]) -> None:
        state.pending.append(lost)
        state.draining = True
        state.notify()
        if not state.leader:
            state.leader = True
            # Its own task: the lost purchases queued behind it must not depend on
            # whether the caller that started it gets cancelled.
            task = self._background.spawn(self._lead(key, state))
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)

    async def _lead(self, key: Key, state: _KeyState[T]) -> None:
        try:
            while state.pending:
                now = time.monotonic()
                due = min(p.next_check for p in state.pending)
                if due > now:
                    # Purchases of the key flow until the next listing is due.
                    if state.draining:
                        state.draining = False
                        state.notify()
                    with anyio.move_on_after(due - now):
                        await state.changed.wait()
                    continue
                if not state.draining:
                    state.draining = True
                    state.notify()
                while state.in_flight:
                    await state.changed.wait()
                await self._quiet_fleet(key)
                await self._check(key, state)
        except BaseException:
            for lost in state.pending:  # the client is closing: say what we know
                lost.finish(error=self._unknown(lost, "the client was closed before it could", ()))
            state.pending.clear()
            raise
        finally:
            state.leader = False
            state.draining = False
            state.notify()
            self._forget(key, state)

    async def _quiet_fleet(self, key: Key) -> None:
        # Every member's purchases of the key off the wire, so every order any member
        # bought is held or lost when the account is listed.
        fleet = self._fleet()
        if fleet is None:
            return
        await fleet.quiet(key, self.window)

    async def _release_fleet(self, key: Key) -> None:
        fleet = self._fleet()
        if fleet is not None:
            await fleet.release(key)

    async def _check(self, key: Key, state: _KeyState[T]) -> None:
        batch = list(state.pending)
        started = time.monotonic()
        since = min(self._since(p) for p in batch)
        try:
            items = await self._recent(since)
        except GsimError as exc:
            log.info("could not list the account to reconcile %s: %s", key, exc)
            for lost in batch:
                # An earlier run's purchase has nobody to tell: it is looked for until found.
                if started >= lost.deadline and lost.span is None:
                    lost.finish(
                        error=self._unknown(lost, f"the account could not be checked ({exc})", ())
                    )
                else:
                    self._later(lost, started)
            state.pending = [p for p in state.pending if not p.done.is_set()]
            return
        finally:
            state.draining = False
            state.notify()
            await self._release_fleet(key)
        await self._settle(key, batch, items, started)
        state.pending = [p for p in state.pending if not p.done.is_set()]

    async def _settle(self, key: Key, batch: list[Lost[T]], items: list[T], started: float) -> None:
        ownership = self._ownership
        fleet = self._fleet()
        for item in items:
            ownership.stamp(item.id, item.created_at)  # our own purchases pin the clock
        unheld = [i for i in items if not ownership.holds(i.id) and i.id not in self._set_aside]
        lost_here = len(batch)
        if fleet is not None and fleet.judging_from > time.monotonic():
            # Redis lost what members hold a moment ago and they are writing it back: an
            # order missing from it may be another member's (adopted, it would be owned
            # twice; counted, it would look like another buyer's). Listed again after.
            for lost in batch:
                lost.next_check = max(lost.next_check, fleet.judging_from)
            return
        if fleet is not None:
            held = await fleet.held([i.id for i in unheld])
            unheld = [i for i in unheld if i.id not in held]
            lost_here = max(lost_here, (await fleet.counts(key))[1])
        for item in unheld:
            item_key = self._key_of(item)
            if item_key is not None and self._new(item, self._baseline):
                ownership.consider(item.id, item_key, item.created_at)
        wanted = {
            id(lost): [
                i
                for i in unheld
                if lost.matches(i)
                and self._new(i, lost.baseline or self._baseline)
                and self._after(i, lost)
                and self._before(i, lost)
            ]
            for lost in batch
        }
        everything = {i.id: i for found in wanted.values() for i in found}
        if len(everything) > lost_here:
            # More new items of the key than we lost: someone else bought some.
            ownership.foreign(next(iter(everything)))
        guessing = ownership.foreign_buyer
        # An earlier run's purchase: an item of the key bought by nobody here during that
        # run's life, outside every span a purchase of ours could have made it in, shows
        # the account was shared then; its purchases are not matched by guessing either.
        doubtful = {
            id(lost)
            for lost in batch
            if lost.span is not None
            and (
                lost.doubtful
                or any(
                    lost.matches(i)
                    and self._new(i, lost.baseline or self._baseline)
                    and i.id not in everything
                    for i in unheld
                )
            )
        }
        log.debug(
            "reconciling %d lost purchase(s) of %s: %d listed, %d free, %d candidates%s",
            len(batch),
            batch[0].what,
            len(items),
            len(unheld),
            len(everything),
            " (another buyer seen)" if guessing else "",
        )
        taken: set[str] = set()
        for lost in sorted(batch, key=lambda p: p.sent):
            found = [i for i in wanted[id(lost)] if i.id not in taken]
            if guessing or id(lost) in doubtful:
                # Its own order may still be on its way: look until the server cannot be
                # working on it any more, then name everything that could be it.
                lost.seen.update((i.id, i) for i in found)
                if started < lost.deadline:
                    self._later(lost, started)
                elif lost.seen:
                    candidates = list(lost.seen.values())
                    self._set_aside.update(lost.seen)
                    why = "another client is buying on this API key"
                    lost.finish(error=self._unknown(lost, why, candidates))
                else:
                    self._conclude(lost)
            elif found and (adopted := await self._claim(found, taken)) is not None:
                ownership.hold(adopted.id, lost.sent)
                log.info("adopted %s %s after a lost purchase answer", self._noun, adopted.id)
                lost.finish(result=adopted)
            elif started >= lost.deadline:
                self._conclude(lost)
            else:
                self._later(lost, started)

    async def _claim(self, found: list[T], taken: set[str]) -> T | None:
        """The oldest candidate no member holds, now held by us; None if all are taken."""
        fleet = self._fleet()
        for item in sorted(found, key=_created):
            taken.add(item.id)
            # Across a fleet, two members may reach for one order: one wins.
            if fleet is None or await fleet.claim(item.id):
                return item
        return None

    def _since(self, lost: Lost[T]) -> datetime:
        if lost.span is not None:
            # An earlier run's: its life (up to an hour) is read too, for other buyers.
            start = lost.span[0] - C.FOREIGN_BUYER_MEMORY
        else:
            start = lost.sent + self._clock.bounds()[0]
        baseline = lost.baseline or self._baseline
        newest = baseline.newest if baseline is not None else None
        if not math.isfinite(start):
            # Nothing bounds it but what the account held before (or nothing: read all).
            return newest or datetime.fromtimestamp(0, timezone.utc)
        since = datetime.fromtimestamp(start, timezone.utc)
        return max(since, newest) if newest is not None else since

    def _before(self, item: T, lost: Lost[T]) -> bool:
        # An earlier run's purchase made its item before the server stopped working on it.
        created = item.created_at
        if lost.span is None or created is None:
            return True
        return created.timestamp() <= lost.span[1]

    def _new(self, item: T, baseline: Baseline | None) -> bool:
        # Not on the account before the purchase's client first bought (server stamps).
        if baseline is None:
            return True
        if item.id in baseline.ids:
            return False
        created = item.created_at
        return created is None or baseline.newest is None or created >= baseline.newest

    def _after(self, item: T, lost: Lost[T]) -> bool:
        created = item.created_at
        if created is None:
            return True
        if lost.span is not None:
            return created.timestamp() >= lost.span[0]
        if not self._clock.calibrated:
            return True  # the baseline alone bounds it
        return created.timestamp() >= lost.sent + self._clock.bounds()[0]

    def _later(self, lost: Lost[T], now: float) -> None:
        # Listed again soon, then less often; and once at least after the deadline.
        lost.next_check = min(now + lost.relist, max(lost.deadline, now))
        lost.relist = min(lost.relist * 2, _MAX_RELIST)

    def _conclude(self, lost: Lost[T]) -> None:
        if not lost.happened:
            log.info("lost purchase of %s bought nothing; it may be retried", lost.what)
            lost.finish(result=None)
            return
        lost.finish(
            error=self._unknown(
                lost,
                f"no new {self._noun} of {lost.what} appeared on the account within "
                f"{self.window:g} s",
                (),
            )
        )

    def _unknown(self, lost: Lost[T], why: str, found: list[T] | tuple[()]) -> OutcomeUnknownError:
        if lost.happened:
            head = (
                f"buying {lost.what}: the server answered with a body we could not read, so "
                f"the purchase was made and charged, but its {self._noun} cannot be told"
            )
        else:
            head = (
                f"buying {lost.what}: the answer was lost and the purchase may have been "
                f"made, but its {self._noun} cannot be told"
            )
        if found:
            listed = "; ".join(self._describe(i) for i in found)
            tail = f"; it may be one of: {listed}. Nothing was bought again"
        else:
            tail = f"; look for a new {self._noun} on the account before buying again"
        return OutcomeUnknownError(
            f"{head} ({why}){tail}",
            candidates=list(found),  # type: ignore[arg-type]
            charged=True if lost.happened else None,
        )

    async def aclose(self) -> None:
        """The client is closing: every lost purchase still waiting is told so."""
        tasks = list(self._leaders)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _created(item: Item) -> float:
    return item.created_at.timestamp() if item.created_at is not None else float("inf")
