"""Reading the rate-limit headers a server may send with its answers.

Two families are understood:

* the IETF draft (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: 20;w=1``
  and ``RateLimit: limit=20, remaining=13, reset=1`` (its later structured form
  ``"default";q=20;w=1`` / ``"default";r=13;t=1`` too), and the older split headers
  ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset``;
* the common ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``, where ``Reset`` is
  seconds from now, or a Unix time when it is that large.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping

import attrs

_PARAM = re.compile(r"([A-Za-z]+)\s*=\s*\"?([0-9.]+)\"?")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# A Reset this large is a Unix time, not a number of seconds.
_EPOCH = 1e9


@attrs.frozen
class RateAdvert:
    """What one answer said of the limit: a quota per window, what is left, and when."""

    #: Requests allowed per ``window`` seconds, when the server said.
    quota: float | None = None
    window: float | None = None
    #: Requests left after this one, and seconds until the quota is whole again.
    remaining: int | None = None
    reset: float | None = None

    @property
    def rate(self) -> float | None:
        """The sustained rate the policy allows (requests/s), when it says."""
        if self.quota is None or not self.window:
            return None
        return self.quota / self.window


def parse(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> RateAdvert | None:
    """The rate limit the headers advertise, or ``None`` when they say nothing of it."""
    policy = headers.get("RateLimit-Policy")
    combined = headers.get("RateLimit")
    quota = window = reset = None
    remaining: int | None = None
    if policy is not None:
        quota, window = _policy(policy)
    if combined is not None:
        params = _params(combined)
        limit = params.get("limit", params.get("q"))
        quota = quota if quota is not None else limit
        remaining = _int(params.get("remaining", params.get("r")))
        reset = params.get("reset", params.get("t"))
    for prefix in ("RateLimit-", "X-RateLimit-"):
        if remaining is None:
            remaining = _int(_number(headers.get(prefix + "Remaining")))
        if reset is None:
            reset = _number(headers.get(prefix + "Reset"))
        if quota is None:
            quota = _number(headers.get(prefix + "Limit"))
    if quota is None and remaining is None:
        return None
    if reset is not None and reset > _EPOCH:
        reset = max(0.0, reset - now())
    return RateAdvert(quota=quota, window=window, remaining=remaining, reset=reset)


def _policy(value: str) -> tuple[float | None, float | None]:
    # "20;w=1", "20;w=1, 1000;w=3600" (several policies: the first is the tightest we
    # know of; we keep the one with the lowest rate) or '"default";q=20;w=1'.
    best: tuple[float | None, float | None] = (None, None)
    for item in value.split(","):
        parts = [p.strip() for p in item.split(";")]
        params = _params(";".join(parts[1:]))
        quota = params.get("q", _number(parts[0]))
        window = params.get("w")
        if quota is None or not window:
            continue
        if best[0] is None or quota / window < best[0] / (best[1] or 1):
            best = (quota, window)
    return best


def _params(value: str) -> dict[str, float]:
    return {k.lower(): float(v) for k, v in _PARAM.findall(value)}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    match = _NUMBER.search(value)
    return float(match.group()) if match else None


def _int(value: float | None) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    return int(value)
