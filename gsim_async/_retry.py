"""What may be retried, and how long to wait: the money rules, in code.

``decide`` is the whole retry policy as one pure function of the operation and
what one attempt got (docs/architecture.md, "Money and codes are never lost", rule 1):
only a request that cannot charge twice is retried blindly.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import attrs


class Operation(enum.Enum):
    """How a request may be repeated."""

    #: Reads, and writes whose repetition changes nothing (PATCH, DELETE, cancel, ban):
    #: retried after any transient failure.
    SAFE = "safe"
    #: A purchase: retried only when provably rejected; an unknown outcome is reconciled.
    PURCHASE = "purchase"
    #: Charges per call and cannot be reconciled (send_sms, call): retried only when
    #: provably rejected; an unknown outcome is raised.
    ONCE = "once"


class Action(enum.Enum):
    """What the transport does after an attempt that did not succeed."""

    RETRY = "retry"  #: send it again, after a backoff
    PAUSE = "pause"  #: send it again once the gate a 429 closed opens
    RAISE = "raise"  #: the answer is final: raise it
    LOST = "lost"  #: it may have been carried out: reconcile a purchase, report the rest


def decide(
    op: Operation,
    status: int | None,
    code: str | None = None,
    *,
    unsent: bool = False,
    transient: bool = True,
) -> Action:
    """The retry policy: what to do after an attempt answered ``status`` (None: no answer).

    ``unsent`` says the request provably never reached the server; ``transient`` that
    trying again may help. Whether retries are left is the caller's to check.
    """
    if status is None:
        if unsent or op is Operation.SAFE:
            return Action.RETRY if transient else Action.RAISE
        return Action.LOST
    if status == 429:
        return Action.PAUSE  # provably rejected, whoever sent it
    if status == 503 and code == "PROVIDER_ERROR":
        return Action.RETRY  # provably rejected: nothing was charged
    if status >= 500 or status == 408:
        # A proxy's 5xx may hide a request that went through.
        return Action.RETRY if op is Operation.SAFE else Action.LOST
    return Action.RAISE


@attrs.frozen
class RetryEvent:
    """Passed to the client's ``on_retry`` hook before each retry sleeps."""

    method: str
    path: str
    attempt: int  #: 1 for the first retry
    delay: float  #: seconds it will wait (for a 429: until the rate gate opens)
    reason: str  #: e.g. "429 RATE_LIMITED", "503 PROVIDER_ERROR", "connection refused"


RetryHook = Callable[[RetryEvent], object]


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter for retry number ``attempt`` (1-based)."""
    if base <= 0:
        return 0.0
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
