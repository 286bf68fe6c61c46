"""Fault injection: what can go wrong between a client and gsim, switchable at run time.

``Faults`` is the mutable switchboard a test flips; ``FaultInjector``
makes the seeded random decisions and applies the rate limit's settings to
its token buckets. The middleware (``_pipeline``) applies them to
``/api/v1`` requests: first the reverse proxy's (drop before, HTML 502,
gateway timeout), then the application's (rate limit, latency); the purchase
path (``_api``) applies the provider error, the processing time, the drop
after charging and the unreadable answer; last, any answer of the application may be
dropped on its way back (``drop_after_rate``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import attrs
from aiohttp import web

from ._ratelimit import TokenBuckets, advertised
from ._timestamps import TIMESTAMP_STYLES


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value}")


def _positive_or_none(_: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and not (isinstance(value, float) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number or None, got {value}")


def _burst_valid(_: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    # A bucket smaller than one token would refuse every request forever.
    if value is not None and not (isinstance(value, float) and 1.0 <= value < math.inf):
        raise ValueError(f"{attribute.name} must be a number >= 1 or None, got {value}")


def _boolean(_: object, attribute: attrs.Attribute[bool], value: object) -> None:
    # ValueError like every other fault setting, so set_faults raises one kind of error.
    if value is not True and value is not False:
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")


def _finite(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number of seconds, got {value}")


def _retry_after_valid(_: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a non-negative integer or None, got {value}")


def _to_optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _to_retry_after(value: float | None) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]  # anything else is left to the validator


_Seconds = float | tuple[float, float] | list[float]


def _seconds_range(value: _Seconds, name: str) -> tuple[float, float]:
    """A fixed delay or a (low, high) range, in seconds."""
    if isinstance(value, (int, float)):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if not 0.0 <= low <= high:
        raise ValueError(f"{name} must be 0 <= low <= high, got {value!r}")
    return (low, high)


def _to_ids(value: object) -> object:
    # A list from the control API's JSON; a lone string is left to the validator (it
    # would otherwise become a tuple of letters).
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _ids_valid(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{attribute.name} must be a list of ids, got {value!r}")


def _to_latency(value: _Seconds) -> tuple[float, float]:
    return _seconds_range(value, "latency")


def _to_purchase_delay(value: _Seconds) -> tuple[float, float]:
    return _seconds_range(value, "purchase_delay")


@attrs.define(slots=True)
class Faults:
    """The faults the sandbox injects into ``/api/v1`` requests; all off by default.

    Rates are probabilities per request (0 to 1), drawn from the sandbox's
    seeded RNG. Assigning an attribute takes effect on the next request.

    The rate limit is a token bucket per API key: it holds ``rate_limit_burst``
    tokens (default ``max(1, rate_limit)``), starts full, refills at
    ``rate_limit`` tokens a second, and every request takes one; a request
    finding less than one token is answered 429 ``RATE_LIMITED``, with
    ``Retry-After`` (``retry_after``, else the whole seconds until a token is
    back) unless ``retry_after_header`` is False. With ``rate_limit_headers``
    every answer also advertises the key's bucket as it stands after the
    request: ``"x"`` sends ``X-RateLimit-Limit`` (the burst, a whole number),
    ``X-RateLimit-Remaining`` (whole tokens left) and ``X-RateLimit-Reset``
    (whole seconds, rounded up, until the bucket is full again); ``"ietf"``
    sends the same as draft-ietf-httpapi-ratelimit-headers-07 does:
    ``RateLimit-Policy: <burst>;w=<burst / rate_limit seconds>`` and
    ``RateLimit: limit=<burst>, remaining=<n>, reset=<s>``.

    A dropped connection leaves the client without an answer. Before the request
    was processed nothing happened (``drop_before_rate``, any request;
    ``drop_purchase_before_rate``, purchases); after it, it happened and only the
    answer is lost (``drop_after_purchase_rate``, purchases: charged;
    ``drop_after_rate``, any request: a purchase charged, a cancel refunded, a read
    read). Each counts with status 0 in the stats.
    """

    # Requests per second per API key (token bucket); None: no limit.
    rate_limit: float | None = attrs.field(
        default=None, converter=_to_optional_float, validator=_positive_or_none
    )
    # Seconds sent in Retry-After with every 429 instead of the bucket's own wait.
    retry_after: int | None = attrs.field(
        default=None, converter=_to_retry_after, validator=_retry_after_valid
    )
    # POST /orders and POST /rentals answer 503 PROVIDER_ERROR; nothing is charged.
    provider_error_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)
    # Added delay before handling each request: (low, high) seconds, uniform.
    latency: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_to_latency)
    # The connection is closed before the request is processed: nothing happens.
    drop_before_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)
    # A purchase is charged and created, then the connection is closed unanswered.
    drop_after_purchase_rate: float = attrs.field(
        default=0.0, converter=float, validator=_probability
    )
    # A 502 with an HTML body, as a proxy in front of the API would send.
    html_502_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)
    # New fields go below, so a positional Faults(...) keeps its meaning.
    # The application's processing time of POST /orders and POST /rentals: (low, high) s.
    # Validated at once (a 4xx answers at once); the purchase takes effect at the end of
    # the delay (createdAt is that moment), even if the client has gone meanwhile.
    purchase_delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=_to_purchase_delay
    )
    # POST /orders, /rentals, /rentals/{id}/sms and /rentals/{id}/calls happen (charged,
    # created, sent) but answer a 200 application/json body cut in half, unparseable.
    unreadable_2xx_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)
    # A reverse proxy answers 504 (nginx HTML) when the application has not answered
    # within this many seconds; the application goes on with the request regardless.
    proxy_timeout: float | None = attrs.field(
        default=None, converter=_to_optional_float, validator=_positive_or_none
    )
    # Seconds added to the Date header only, as by a proxy that rewrites it: the API's
    # timestamps stay on the sandbox clock (clock_skew moves both together).
    date_offset: float = attrs.field(default=0.0, converter=float, validator=_finite)
    # How the API writes createdAt/expiresAt/renewsAt: "ms" (2024-03-15T10:00:00.000Z),
    # "s" (no fraction), "us" (6 digits), "offset" (+00:00, not Z), or "varied": every
    # rendering draws a valid RFC 3339 form (0-9 digits, Z/z/+00:00/another offset, T/t).
    timestamp_style: str = attrs.field(
        default="ms", validator=attrs.validators.in_(TIMESTAMP_STYLES)
    )
    # Tokens the bucket holds (the burst); None: max(1, rate_limit).
    rate_limit_burst: float | None = attrs.field(
        default=None, converter=_to_optional_float, validator=_burst_valid
    )
    # False: a 429 carries no Retry-After header at all.
    retry_after_header: bool = attrs.field(default=True, validator=_boolean)
    # None, "x" or "ietf": which headers advertise the bucket (only with a rate_limit).
    rate_limit_headers: str | None = attrs.field(
        default=None, validator=attrs.validators.in_((None, "x", "ietf"))
    )
    # POST /orders and POST /rentals: the connection is cut before the application
    # processed the purchase (nothing is charged), other requests are untouched.
    drop_purchase_before_rate: float = attrs.field(
        default=0.0, converter=float, validator=_probability
    )
    # GET /orders list pages leave smsCode out of every item, RECEIVED ones included, as
    # a server may (not every response carries every field); GET /orders/{id} has it.
    list_omits_code: bool = attrs.field(default=False, validator=_boolean)
    # POST /orders and POST /rentals take effect (charged, created) at once, then wait
    # this many seconds before answering: a client that dies meanwhile never learns of it.
    purchase_answer_delay: float = attrs.field(
        default=0.0, converter=float, validator=[_finite, attrs.validators.ge(0.0)]
    )
    # POST /orders/{id}/cancel and /ban answer 503 PROVIDER_ERROR: nothing is refunded.
    refund_error_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)
    # GET /countries leaves these country ids out, as a real catalogue may omit a country
    # out of stock for a moment; they are still sold (and quoted by GET /operators).
    countries_hidden: tuple[str, ...] = attrs.field(
        default=(), converter=_to_ids, validator=_ids_valid
    )
    # Any /api/v1 request is handled to the end (a purchase charged, a cancel refunded,
    # a 429 counted against the bucket), then the connection is closed unanswered: the
    # answer is lost on its way back. drop_after_purchase_rate is the same, purchases only.
    drop_after_rate: float = attrs.field(default=0.0, converter=float, validator=_probability)

    def to_dict(self) -> dict[str, object]:
        """The settings with snake_case keys (ranges as two-item lists)."""
        data = attrs.asdict(self)
        data["latency"] = list(self.latency)
        data["purchase_delay"] = list(self.purchase_delay)
        return data


FAULT_NAMES = tuple(a.name for a in attrs.fields(Faults))
_CAMEL = {"".join(p.capitalize() if i else p for i, p in enumerate(n.split("_"))): n
          for n in FAULT_NAMES}  # fmt: skip


def fault_changes(data: Mapping[str, object]) -> dict[str, object]:
    """Normalise camelCase or snake_case fault names; ValueError for an unknown one."""
    changes: dict[str, object] = {}
    for key, value in data.items():
        name = key if key in FAULT_NAMES else _CAMEL.get(key)
        if name is None:
            raise ValueError(f"unknown fault {key!r}; known: {', '.join(FAULT_NAMES)}")
        changes[name] = value
    return changes


class FaultInjector:
    """Seeded fault decisions and the per-key token buckets of the rate limit."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(f"{seed}:faults")
        self._buckets = TokenBuckets()
        self.order_latency: dict[str, float] = {}  # order id -> seconds per GET of it

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``; draws nothing when the fault is off."""
        return rate > 0.0 and self._rng.random() < rate

    def latency(self) -> float:
        """Seconds to wait before handling this request."""
        return self._draw(self.faults.latency)

    def set_order_latency(self, order_id: str, seconds: float) -> None:
        """Delay every ``GET /orders/{order_id}`` by ``seconds`` (0 removes the delay)."""
        if isinstance(seconds, bool) or not (0.0 <= seconds < math.inf):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if seconds:
            self.order_latency[order_id] = float(seconds)
        else:
            self.order_latency.pop(order_id, None)

    def purchase_delay(self) -> float:
        """Seconds this purchase takes before it takes effect."""
        return self._draw(self.faults.purchase_delay)

    def _draw(self, span: tuple[float, float]) -> float:
        low, high = span
        if high <= 0.0:
            return 0.0
        return low if low == high else self._rng.uniform(low, high)

    def _burst(self, rate: float) -> float:
        burst = self.faults.rate_limit_burst
        return max(1.0, rate) if burst is None else burst

    def throttle(self, key: str) -> int | None:
        """None if ``key`` may make a request now, else the Retry-After seconds to send."""
        rate = self.faults.rate_limit
        if rate is None:
            return None
        wait = self._buckets.take(key, rate, self._burst(rate))
        if wait is None:
            return None
        if self.faults.retry_after is not None:
            return self.faults.retry_after
        return max(1, math.ceil(wait))

    def rate_limit_headers(self, key: str) -> dict[str, str]:
        """The headers advertising ``key``'s bucket, per ``rate_limit_headers``; maybe none."""
        rate = self.faults.rate_limit
        style = self.faults.rate_limit_headers
        if rate is None or style is None:
            return {}
        burst = self._burst(rate)
        return advertised(style, rate, burst, self._buckets.state(key, rate, burst))

    def reset_buckets(self) -> None:
        """Every key starts again with a full bucket."""
        self._buckets.clear()


def _proxy_page(status: int, title: str) -> web.Response:
    # nginx's own error page, byte for byte in shape.
    text = (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def html_502() -> web.Response:
    """The page a reverse proxy sends when the upstream failed."""
    return _proxy_page(502, "Bad Gateway")


def html_504() -> web.Response:
    """The page a reverse proxy sends when the upstream did not answer in time."""
    return _proxy_page(504, "Gateway Time-out")


class DroppedResponse(web.Response):
    """Stands for "no answer": the middleware closes the connection instead of sending it."""


def drop() -> DroppedResponse:
    """No answer: the client's connection is closed (unless a proxy answered already)."""
    return DroppedResponse(status=599)
