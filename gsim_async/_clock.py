"""What the client knows of the server's clock.

Two sources, trusted differently (docs/architecture.md, "Clocks"):

* the ``Date`` header of every response: always there, but a proxy may rewrite it,
  so it is only a first guess, good to within ``CLOCK_TOLERANCE``;
* the timestamps of the client's *own* purchases: an order bought by a request sent at
  ``s`` and answered at ``r`` (our clock) was stamped between the two, so its
  ``createdAt`` bounds the offset between the server's timestamps and our clock to
  ``[createdAt - r, createdAt - s]``. Every such observation narrows the bounds.

Reconciliation and the default end of a wait use the bounds, never the Date header
alone once a purchase has calibrated them.

A third, one-sided source: any server stamp seen (the newest order of the account, read
before the first purchase) proves the server's clock had reached it when the answer
came, a lower bound on the offset (``floor``). ``pinned()`` is what a journal row keeps
of all this: what our own purchases and the stamps we saw prove, never the Date header.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ._constants import CLOCK_SLACK, CLOCK_TOLERANCE


class ServerClock:
    """Bounds on (server timestamp - our wall clock), in seconds."""

    __slots__ = ("_date_offset", "_floor", "_hi", "_last_date", "_lo", "_monotonic", "_wall")

    def __init__(
        self,
        wall: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # Looked up at each call (not bound once): a program, or a test, that replaces
        # time.time is followed.
        self._wall = wall or (lambda: time.time())
        self._monotonic = monotonic
        self._date_offset: float | None = None
        self._last_date: str | None = None
        self._lo = -math.inf
        self._hi = math.inf
        #: The newest server stamp seen, less the monotonic clock then: a step of the
        #: wall clock after it was seen does not move it.
        self._floor = -math.inf

    def observe_date(self, header: str | None) -> None:
        """Take a response's ``Date`` header as a first guess of the server's clock."""
        if header is None or header == self._last_date:
            return
        self._last_date = header
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        # The header truncates to the second: the server's time is half a second on.
        self._date_offset = server + 0.5 - self._wall()

    def calibrate(self, sent: float, received: float, stamp: datetime) -> None:
        """Our purchase sent at ``sent`` and answered at ``received`` was stamped ``stamp``."""
        at = stamp.timestamp()
        # Stamps are truncated to the millisecond: the true instant may be 1 ms later.
        lo, hi = at - received, at + 0.001 - sent
        if lo > self._hi or hi < self._lo:
            # Disjoint from what we knew: the server's clock was stepped. Start again.
            self._lo, self._hi = lo, hi
        else:
            self._lo, self._hi = max(self._lo, lo), min(self._hi, hi)

    def floor(self, stamp: datetime) -> None:
        """The server had stamped ``stamp`` by now (an answer just read)."""
        self._floor = max(self._floor, stamp.timestamp() - self._monotonic())

    def pinned(self) -> tuple[float, float]:
        """Bounds on the offset that no ``Date`` header went into, now: (lowest, highest).

        Pinned by our own purchases; before the first, only a lower bound from the
        stamps seen (-inf without one: the server's clock has run on since by what the
        monotonic clock shows, whatever the wall clock did) and no upper bound (inf).
        """
        if self.calibrated:
            return self._lo - CLOCK_SLACK, self._hi + CLOCK_SLACK
        lo = self._floor + self._monotonic() - self._wall()
        return lo - CLOCK_SLACK, math.inf

    @property
    def known(self) -> bool:
        """Whether the server's clock has been seen at all (a Date header, a purchase)."""
        return self.calibrated or self._date_offset is not None

    @property
    def calibrated(self) -> bool:
        """Whether one of our own purchases has pinned the server's timestamps down."""
        return self._hi < math.inf

    def bounds(self) -> tuple[float, float]:
        """The offset of the server's timestamps from our clock: (lowest, highest)."""
        if self.calibrated:
            return self._lo - CLOCK_SLACK, self._hi + CLOCK_SLACK
        if self._date_offset is None:
            return -2 * CLOCK_TOLERANCE, 2 * CLOCK_TOLERANCE
        return self._date_offset - CLOCK_TOLERANCE, self._date_offset + CLOCK_TOLERANCE

    @property
    def offset(self) -> float:
        """The best single guess of the offset."""
        if self.calibrated:
            return (self._lo + self._hi) / 2
        return self._date_offset or 0.0

    def now(self) -> datetime:
        """Now, on the server's clock (best guess)."""
        return datetime.fromtimestamp(self._wall() + self.offset, timezone.utc)

    def surely_past(self) -> datetime:
        """A time the server's clock has surely reached: pinned, else its Date header."""
        if self.calibrated:
            return datetime.fromtimestamp(self._wall() + self._lo, timezone.utc)
        # A Date header is truncated to the second: the server is at least there.
        offset = self._date_offset - 0.5 if self._date_offset is not None else 0.0
        return datetime.fromtimestamp(self._wall() + offset, timezone.utc)

    def seconds_until(self, stamp: datetime) -> float:
        """Seconds from now until the server's clock shows ``stamp`` (best guess)."""
        return stamp.timestamp() - self.offset - self._wall()

    def earliest(self, local: float) -> datetime:
        """The earliest server timestamp a thing that happened at our ``local`` can bear."""
        return datetime.fromtimestamp(local + self.bounds()[0], timezone.utc)
