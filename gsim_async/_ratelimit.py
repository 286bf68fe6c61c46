"""The client's pacing: a gate that a 429 closes, and an adaptive send rate.

The adaptive part follows the AWS SDKs' "adaptive" retry mode: nothing is paced
until the first 429; then the send rate drops to 70 % of what was measured and
grows back along a cubic curve (CUBIC congestion control), so a steady workload
settles just under the server's limit instead of bouncing off it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import anyio

_BETA = 0.7  # multiplicative decrease on a 429
_SCALE = 0.4  # CUBIC's C
_MIN_RATE = 0.5  # requests/s floor while throttled
_SMOOTH = 0.8
_BUCKET = 0.5  # seconds per measurement bucket
_WINDOW = 1.0  # 429s closer together than this are one congestion event


class RateGate:
    """Pauses every request of a client while the server asked us to wait."""

    __slots__ = ("_clock", "_open_at", "_rng")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open_at = 0.0
        self._rng = random.Random()

    def close_for(self, seconds: float) -> None:
        """Keep the gate shut for ``seconds`` from now (never shortens an earlier pause)."""
        self._open_at = max(self._open_at, self._clock() + seconds)

    @property
    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return max(0.0, self._open_at - self._clock())

    async def wait(self) -> None:
        """Sleep until the gate is open; waiters spread out so they do not stampede."""
        while True:
            left = self._open_at - self._clock()
            if left <= 0:
                return
            # Up to 10 % (at most 1 s) of spread on reopening.
            await anyio.sleep(left + self._rng.uniform(0, min(1.0, left * 0.1)))


class AdaptiveRate:
    """Paces requests: a fixed ceiling (if configured) and CUBIC backoff after 429s."""

    def __init__(
        self, max_rate: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._max_rate = max_rate
        self._enabled = False
        self._fill_rate = max_rate or 0.0
        self._last_max = 0.0
        self._last_throttle = -1e9
        self._k = 0.0
        self._measured = 0.0
        self._tokens = 1.0
        self._refilled = clock()
        self._bucket_start = clock()
        self._bucket_count = 0
        # FIFO: waiters queue here, and the one at the head sleeps at the *current* rate,
        # so a rate that recovers takes effect at once (no slots reserved at a low rate).
        self._lock: asyncio.Lock | None = None

    @property
    def rate(self) -> float | None:
        """The current send rate in requests/s, or ``None`` when unpaced."""
        if self._enabled:
            return self._fill_rate
        return self._max_rate

    async def acquire(self) -> None:
        """Wait for this request's turn (returns at once when not paced)."""
        if self.rate is None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                # Re-read each time: the rate may have changed while we slept.
                rate = self._fill_rate if self._enabled else (self._max_rate or 1.0)
                now = self._clock()
                # A bucket of one second's worth of requests allows short bursts.
                capacity = max(1.0, rate)
                self._tokens = min(capacity, self._tokens + (now - self._refilled) * rate)
                self._refilled = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await anyio.sleep(min((1.0 - self._tokens) / rate, 0.25))

    def record(self, *, throttled: bool) -> None:
        """Feed the outcome of a response (``throttled``: it was a 429)."""
        now = self._clock()
        self._measure(now)
        if throttled:
            if self._enabled and now - self._last_throttle < _WINDOW:
                # Many requests in flight answer 429 together: one congestion event,
                # one decrease (as TCP reduces once per round trip).
                return
            base = self._measured if not self._enabled else min(self._measured, self._fill_rate)
            base = max(base, _MIN_RATE)
            self._last_max = base
            self._k = (base * (1 - _BETA) / _SCALE) ** (1 / 3)
            self._last_throttle = now
            new_rate = base * _BETA
            self._enabled = True
        elif self._enabled:
            t = now - self._last_throttle
            new_rate = _SCALE * (t - self._k) ** 3 + self._last_max
            new_rate = min(new_rate, 2 * max(self._measured, _MIN_RATE))
        else:
            return
        if self._max_rate is not None:
            new_rate = min(new_rate, self._max_rate)
        self._fill_rate = max(new_rate, _MIN_RATE)

    def _measure(self, now: float) -> None:
        self._bucket_count += 1
        elapsed = now - self._bucket_start
        if elapsed >= _BUCKET:
            current = self._bucket_count / elapsed
            self._measured = current * _SMOOTH + self._measured * (1 - _SMOOTH)
            self._bucket_count = 0
            self._bucket_start = now
        elif self._measured == 0.0 and elapsed > 0.05:
            # Before the first full bucket, a partial one beats knowing nothing.
            self._measured = self._bucket_count / elapsed
