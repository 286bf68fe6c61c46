"""The sandbox's clock and its timer heap for deliveries and expiries.

Time is real by default; ``advance()`` moves the sandbox's clock forward so a
test can reach an order's expiry without waiting for it. Every due action sits
in one heap served by a single ``loop.call_at`` handle, so ten thousand
waiting orders cost no polling and no per-order timer handles.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("gsim_async.sandbox")


class Clock:
    """Unix time as the sandbox sees it: ``time.time()`` plus what ``advance()`` added."""

    __slots__ = ("_offset",)

    def __init__(self, offset: float = 0.0) -> None:
        # A start offset simulates a server whose clock is off from the client's.
        self._offset = offset

    def now(self) -> float:
        """The current sandbox time, seconds since the epoch."""
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        """Seconds between the sandbox clock and ``time.time()`` (skew plus advances)."""
        return self._offset

    def _shift(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds


class Scheduler:
    """Runs callbacks at sandbox times, in due order."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the sandbox clock reaches ``when``."""
        heapq.heappush(self._heap, (when, next(self._seq), callback))
        if self._armed_for is None or when < self._armed_for:
            self._arm()

    def advance(self, seconds: float) -> None:
        """Move the clock forward and run everything that became due."""
        self._clock._shift(seconds)
        self.run_due()

    def run_due(self) -> None:
        """Run every callback whose time has come, then re-arm for the next one."""
        heap = self._heap
        now = self._clock.now()
        while heap and heap[0][0] <= now:
            _, _, callback = heapq.heappop(heap)
            try:
                callback()
            except Exception:
                # One broken timer must not stop every later delivery and expiry.
                log.exception("sandbox timer callback failed")
        self._arm()

    def start(self) -> None:
        """Arm the timer on the running loop (callbacks queued before it are kept)."""
        self._closed = False
        self._arm()

    def close(self) -> None:
        """Stop the timer; pending callbacks stay queued but never run by themselves."""
        self._closed = True
        self._disarm()

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = None

    def _arm(self) -> None:
        self._disarm()
        if self._closed or not self._heap:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called outside the loop (e.g. a sync test helper): the next call
            # from inside the loop arms the timer.
            return
        when = self._heap[0][0]
        delay = max(0.0, when - self._clock.now())
        self._handle = loop.call_later(delay, self._fire)
        self._armed_for = when

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = None
        self.run_due()
