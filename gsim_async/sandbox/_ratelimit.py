"""The rate limit's mechanics: a token bucket per API key, and the headers advertising it."""

from __future__ import annotations

import math
import time


class TokenBuckets:
    """One bucket per key: ``capacity`` tokens, refilled at ``rate`` a second, starting full."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]

    def _refilled(self, key: str, rate: float, capacity: float) -> list[float]:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [capacity, now]
        bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        return bucket

    def take(self, key: str, rate: float, capacity: float) -> float | None:
        """Take a token: None if there was one, else the seconds until there is."""
        bucket = self._refilled(key, rate, capacity)
        tokens = bucket[0]
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        return (1.0 - tokens) / rate

    def state(self, key: str, rate: float, capacity: float) -> tuple[int, int]:
        """Whole tokens left, and whole seconds (rounded up) until the bucket is full."""
        tokens = self._refilled(key, rate, capacity)[0]
        missing = capacity - tokens
        # Float refills stop a hair short of full; that hair is not a second to wait.
        return math.floor(tokens), math.ceil(missing / rate) if missing > 1e-9 else 0

    def clear(self) -> None:
        """Every key starts again with a full bucket."""
        self._buckets.clear()


def advertised(style: str, rate: float, capacity: float, state: tuple[int, int]) -> dict[str, str]:
    """A bucket's ``TokenBuckets.state`` in headers of ``style``.

    "x": ``X-RateLimit-Limit/-Remaining/-Reset``; "ietf": the
    ``RateLimit-Policy`` and ``RateLimit`` of draft-ietf-httpapi-ratelimit-headers-07.
    """
    limit = int(capacity)
    remaining, reset = state
    if style == "x":
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }
    window = capacity / rate
    shown = str(int(window)) if window.is_integer() else format(round(window, 3), "g")
    return {
        "RateLimit-Policy": f"{limit};w={shown}",
        "RateLimit": f"limit={limit}, remaining={remaining}, reset={reset}",
    }
