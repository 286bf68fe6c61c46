"""The spend guard's configuration: ``SpendLimit`` and ``Breaker``, from code or environment.

Both are off unless configured: ``Client(spend_limit=SpendLimit(20, per=timedelta(hours=24)),
breaker=Breaker(5))``, or ``GSIM_SPEND_LIMIT="20/24h"``, ``GSIM_BREAKER="5"`` and
``GSIM_BREAKER_COOLDOWN="15m"`` for a program that does not say (``False`` turns either off
whatever the environment says).
"""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

import attrs

from ._exceptions import InvalidArgumentError

#: The window of a ``SpendLimit`` that does not name one.
DEFAULT_SPEND_WINDOW = timedelta(hours=24)
#: Failed verifications in a row (per service and country) that open a ``Breaker``.
DEFAULT_BREAKER_FAILURES = 5
#: How long an open breaker holds purchases before it lets a trial one through.
DEFAULT_BREAKER_COOLDOWN = timedelta(minutes=15)

#: The longest window and cooldown accepted (what the counters keep stays bounded).
MAX_WINDOW = timedelta(days=31)
MAX_COOLDOWN = timedelta(days=7)
#: Money is counted in millionths of a dollar (prices are cents): no finer amounts.
MICRO = Decimal("0.000001")

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h|d)?", re.IGNORECASE)
_UNITS = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(name: str, text: str) -> timedelta:
    """``90``, ``90s``, ``500ms``, ``15m``, ``24h``, ``7d`` as a timedelta (also the CLI's)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgumentError(f"{name} {text!r} is not a duration (e.g. 90s, 15m, 24h, 7d)")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNITS[(unit or "").lower()])


def _seconds(name: str, value: object, high: timedelta) -> timedelta:
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        span = timedelta(seconds=value)
    else:
        raise InvalidArgumentError(
            f"{name} must be a timedelta or a number of seconds, got {value!r:.60}"
        )
    if span < timedelta(seconds=1) or span > high:
        raise InvalidArgumentError(
            f"{name} must be between 1 second and {high.days} days, got {span}"
        )
    return span


def _usd(value: object) -> Decimal:
    if isinstance(value, bool):
        amount = None
    else:
        try:
            if isinstance(value, float):
                amount = Decimal(repr(value)) if math.isfinite(value) else None
            elif isinstance(value, (Decimal, int, str)):
                amount = Decimal(value)
            else:
                amount = None
        except (InvalidOperation, ValueError):
            amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise InvalidArgumentError(
            f"the spend limit must be a positive amount of USD, got {value!r:.60}"
        )
    if amount != amount.quantize(MICRO):
        raise InvalidArgumentError(
            f"the spend limit {amount} has more than 6 decimal places (millionths of a USD)"
        )
    return amount


@attrs.frozen(init=False)
class SpendLimit:
    """A cap on what the client spends, net of refunds, over a rolling window.

    ``SpendLimit(20, per=timedelta(hours=24))``: a purchase is refused
    (``SpendLimitError``, before any request) when what was bought in the last
    ``per`` minus what was refunded, plus what purchases in flight reserve, plus this
    one, would pass ``usd``. ``per`` is a ``timedelta`` or seconds (default 24 hours).
    With a fleet the limit is the fleet's: every member counts against one total.
    Raises ``InvalidArgumentError`` for an amount or window that makes no sense.
    """

    usd: Decimal
    per: timedelta

    def __init__(
        self, usd: Decimal | str | int | float, per: timedelta | float = DEFAULT_SPEND_WINDOW
    ) -> None:
        self.__attrs_init__(_usd(usd), _seconds("per", per, MAX_WINDOW))

    @classmethod
    def parse(cls, text: str) -> SpendLimit:
        """``"20/24h"``, ``"5.50/1h"``, ``"20"`` (per 24 hours), as ``GSIM_SPEND_LIMIT`` says it."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgumentError(f"a spend limit is USD[/WINDOW] (e.g. 20/24h), got {text!r}")
        amount, _, window = text.strip().partition("/")
        per = parse_duration("the spend window", window) if window.strip() else DEFAULT_SPEND_WINDOW
        try:
            return cls(amount.strip().removeprefix("$"), per)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"spend limit {text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.usd} USD per {describe(self.per)}"


@attrs.frozen(init=False)
class Breaker:
    """Holds purchases of a service in a country whose verifications keep failing.

    After ``failures`` in a row (default 5) of orders that ended without a code, or
    of ``activation()`` blocks left by an exception after their code came (the step
    after the code failed), purchases of that service in that country raise
    ``BreakerOpenError`` before any request. After ``cooldown`` (default 15 minutes;
    a ``timedelta`` or seconds) one trial purchase goes through: its success closes
    the breaker, its failure opens it for another cooldown. A verification that
    succeeds meanwhile (an order bought earlier) closes it too, and so does
    ``client.guard.reset()``. With a fleet, the count is the fleet's.
    """

    failures: int
    cooldown: timedelta

    def __init__(
        self,
        failures: int = DEFAULT_BREAKER_FAILURES,
        cooldown: timedelta | float = DEFAULT_BREAKER_COOLDOWN,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= 1000:
            raise InvalidArgumentError(
                f"breaker failures must be an integer from 1 to 1000, got {failures!r:.60}"
            )
        self.__attrs_init__(failures, _seconds("cooldown", cooldown, MAX_COOLDOWN))

    @classmethod
    def parse(cls, failures: str, cooldown: str | None = None) -> Breaker:
        """From ``GSIM_BREAKER`` (``"5"``) and ``GSIM_BREAKER_COOLDOWN`` (``"15m"``)."""
        text = failures.strip() if isinstance(failures, str) else ""
        if not text.isdigit():
            raise InvalidArgumentError(
                f"a breaker is a number of failures in a row (e.g. 5), got {failures!r}"
            )
        if cooldown is None or not cooldown.strip():
            return cls(int(text))
        return cls(int(text), parse_duration("the breaker cooldown", cooldown))

    def __str__(self) -> str:
        return f"{self.failures} failed verifications in a row, cooldown {describe(self.cooldown)}"


def describe(span: timedelta) -> str:
    """``24h``, ``15m``, ``90s`` — a window or cooldown as people write it."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        # A day reads as 24h; a week as 7d.
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds > 86400):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def spend_limit_from(value: object) -> SpendLimit | None:
    """``Client(spend_limit=...)``: a ``SpendLimit``, ``None`` (read the environment), ``False``."""
    if value is False:
        return None
    if value is None:
        text = os.environ.get("GSIM_SPEND_LIMIT", "").strip()
        try:
            return SpendLimit.parse(text) if text else None
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"GSIM_SPEND_LIMIT: {exc}") from None
    if isinstance(value, SpendLimit):
        return value
    raise InvalidArgumentError(
        f"spend_limit must be a SpendLimit, e.g. SpendLimit(20, per=timedelta(hours=24)), or "
        f"False, got {value!r:.60}"
    )


def breaker_from(value: object) -> Breaker | None:
    """``Client(breaker=...)``: a ``Breaker``, ``None`` (read the environment), ``False``."""
    if value is False:
        return None
    if value is None:
        text = os.environ.get("GSIM_BREAKER", "").strip()
        if not text:
            return None
        try:
            return Breaker.parse(text, os.environ.get("GSIM_BREAKER_COOLDOWN"))
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"GSIM_BREAKER/GSIM_BREAKER_COOLDOWN: {exc}") from None
    if isinstance(value, Breaker):
        return value
    raise InvalidArgumentError(
        f"breaker must be a Breaker, e.g. Breaker(5, cooldown=timedelta(minutes=15)), or "
        f"False, got {value!r:.60}"
    )


#: How a failed verification failed: the order ended without a code, or the block
#: using it was left by an exception after the code came.
Failure = Literal["no_code", "after_code"]

__all__ = [
    "DEFAULT_BREAKER_COOLDOWN",
    "DEFAULT_BREAKER_FAILURES",
    "DEFAULT_SPEND_WINDOW",
    "Breaker",
    "Failure",
    "SpendLimit",
    "breaker_from",
    "describe",
    "parse_duration",
    "spend_limit_from",
]
