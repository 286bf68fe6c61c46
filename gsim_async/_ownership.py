"""Which orders and rentals are this client's, and whether someone else buys on its key.

A client *holds* what it bought (or adopted after a lost answer). Purchases on the
wire and purchases whose answer was lost are *open*: an order of the same kind that
appears on the account may be theirs. Anything else that appears on the account
after this client started, bought by nobody here, is evidence of another buyer on
the same API key; from then on a lost purchase is never resolved by guessing
(docs/architecture.md, "Sharing an API key").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

import attrs

from . import _constants as C
from ._clock import ServerClock

log = logging.getLogger("gsim_async")

#: What purchases are grouped by: ("order", service, country) or ("rental", number).
Key = tuple[str, ...]


class SharedSightings(Protocol):
    """A fleet's say in who else buys on the key."""

    @property
    def active(self) -> bool:
        """Whether the fleet is reachable."""

    def sighted(self, item_id: str, key: Key, created_at: datetime | None) -> None:
        """An item this member does not hold: a fleet member's, or another buyer's."""

    @property
    def foreign(self) -> bool:
        """Whether the fleet saw another buyer recently."""

    def mark_foreign(self, item_id: str) -> None:
        """Tell the fleet another buyer bought ``item_id``."""


@attrs.define(slots=True)
class _Held:
    sent: float  # wall clock: when the purchase left
    received: float  # wall clock: when its answer came (or when it was adopted)
    at: float  # monotonic, for forgetting
    stamped: bool = False  # already used to calibrate the clock


class Ownership:
    """What one client (all its views) holds, what it is buying, and foreign evidence."""

    def __init__(self, clock: ServerClock, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._held: dict[str, _Held] = {}
        self._open: dict[Key, list[float]] = {}  # send times of open purchases, per key
        #: Wall-clock time this client started buying (or was made).
        self.started = time.time()
        self._foreign_at = -1e18
        #: The same, seen while this fleet member was cut off from Redis: it counts
        #: only until the fleet is back (see ``foreign``).
        self._alone_foreign_at = -1e18
        self._foreign: list[str] = []
        # Per kind ("order", "rental"): the newest stamp on the account before this
        # client first bought one (None: it had none); anything newer came after us.
        self._marks: dict[str, datetime | None] = {}
        self._shared: SharedSightings | None = None
        #: Told of every other buyer seen (the journal keeps it for a later run).
        self.on_foreign: Callable[[str], None] | None = None

    def attach(self, shared: SharedSightings) -> None:
        """Judge other buyers with a fleet: its members' items are not foreign."""
        self._shared = shared

    # -- holding ------------------------------------------------------------------------

    def hold(
        self, item_id: str, sent: float, received: float | None = None, *, calibrate: bool = True
    ) -> None:
        """Remember that ``item_id`` is ours (bought at ``sent``, answered at ``received``).

        ``calibrate=False``: its times cannot pin the server's clock (an earlier run's
        order whose answer times are not known).
        """
        now = self._monotonic()
        held = _Held(sent, received if received is not None else time.time(), now)
        held.stamped = not calibrate
        self._held[item_id] = held
        if len(self._held) > 4096 and len(self._held) % 1024 == 0:
            cutoff = now - C.HOLD_FOR
            self._held = {k: h for k, h in self._held.items() if h.at >= cutoff}

    def holds(self, item_id: str) -> bool:
        """Whether this client bought or adopted ``item_id``."""
        return item_id in self._held

    def sent_at(self, item_id: str) -> float | None:
        """When the purchase of a held item left (wall clock), if it is held."""
        held = self._held.get(item_id)
        return held.sent if held is not None else None

    def held_ids(self) -> Iterable[str]:
        """Every id this client holds."""
        return self._held.keys()

    def seen(self, item_id: str, created_at: datetime | None) -> bool:
        """An item the API showed: pin the clock if it is ours; whether it is ours."""
        held = self._held.get(item_id)
        if held is None:
            return False
        if not held.stamped and created_at is not None:
            held.stamped = True
            self._clock.calibrate(held.sent, held.received, created_at)
        return True

    def stamp(self, item_id: str, created_at: datetime | None) -> None:
        """Learn the server's clock from the timestamp of an item we hold, once per item."""
        held = self._held.get(item_id)
        if held is None or held.stamped or created_at is None:
            return
        held.stamped = True
        self._clock.calibrate(held.sent, held.received, created_at)

    # -- open purchases -------------------------------------------------------------------

    def opened(self, key: Key, sent: float) -> None:
        """A purchase of ``key`` sent at ``sent`` may create an item we do not hold yet."""
        self._open.setdefault(key, []).append(sent)

    def closed(self, key: Key, sent: float) -> None:
        """That purchase is settled: held, or proved to have bought nothing."""
        times = self._open.get(key)
        if times is None:
            return
        times.remove(sent)
        if not times:
            del self._open[key]

    def open_count(self, key: Key) -> int:
        """Purchases of ``key`` not settled yet."""
        return len(self._open.get(key, ()))

    def could_be_ours(self, key: Key, created_at: datetime | None) -> bool:
        """Whether an open purchase of ``key`` may have created an item stamped so.

        A key cut short (an order whose country the server left out) matches every
        open key it begins.
        """
        if not self._open:
            return False
        times = self._open.get(key)
        if times is None:
            times = [t for k, ts in self._open.items() if k[: len(key)] == key for t in ts]
        if not times:
            return False
        if created_at is None:
            return True
        return any(created_at >= self._clock.earliest(sent) for sent in times)

    # -- another buyer ------------------------------------------------------------------

    def set_mark(self, kind: str, newest: datetime | None) -> None:
        """The newest ``kind`` stamp on the account before this client first bought one."""
        self._marks.setdefault(kind, newest)

    def after_start(self, kind: str, created_at: datetime) -> bool:
        """Whether an item stamped ``created_at`` was surely made after this client began."""
        if kind in self._marks:
            mark = self._marks[kind]
            if mark is None or created_at > mark:
                return True
        if self._clock.calibrated:
            return created_at.timestamp() - self._clock.bounds()[1] > self.started
        return False

    def consider(self, item_id: str, key: Key, created_at: datetime | None) -> None:
        """An item seen on the account: note it if only another buyer can have bought it."""
        if item_id in self._held or created_at is None:
            return
        if not self.after_start(key[0], created_at) or self.could_be_ours(key, created_at):
            return
        shared = self._shared
        if shared is not None and shared.active:
            shared.sighted(item_id, key, created_at)  # maybe another member's
            return
        self.foreign(item_id)

    def foreign(self, item_id: str) -> None:
        """Record that another client on this key bought ``item_id``."""
        shared = self._shared
        alone = shared is not None and not shared.active
        if alone:
            # A fleet member cut off from Redis cannot tell another member's purchase
            # from another buyer's: it guesses nothing while alone, and forgets this
            # once the fleet is back (whose records are exact, and whose sightings find
            # a real other buyer again). Kept for an hour, it made every lost answer
            # after a Redis restart an OutcomeUnknownError, its order left charged.
            if not self.foreign_buyer:
                log.warning(
                    "fleet unreachable: order %s is not this process's, maybe another "
                    "member's; purchases whose answer is lost are not matched by guessing "
                    "until the fleet is back",
                    item_id,
                )
            self._alone_foreign_at = self._monotonic()
        else:
            if not self.foreign_buyer:
                log.warning(
                    "another client is buying on this API key (it bought %s); purchases "
                    "whose answer is lost will not be matched by guessing (use a fleet for "
                    "exact ownership)",
                    item_id,
                )
            self._foreign_at = self._monotonic()
            if self.on_foreign is not None:
                self.on_foreign(item_id)
        if item_id not in self._foreign:
            self._foreign = [*self._foreign[-9:], item_id]
        if shared is not None and shared.active:
            shared.mark_foreign(item_id)

    @property
    def foreign_buyer(self) -> bool:
        """Whether another buyer on this key was seen recently."""
        shared = self._shared
        now = self._monotonic()
        if shared is not None:
            if shared.active:
                if shared.foreign:
                    return True
            elif now - self._alone_foreign_at < C.FOREIGN_BUYER_MEMORY:
                return True
        return now - self._foreign_at < C.FOREIGN_BUYER_MEMORY

    @property
    def foreign_evidence(self) -> list[str]:
        """The last items another buyer was seen to buy."""
        return list(self._foreign)
