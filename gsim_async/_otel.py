"""OpenTelemetry's side of the SDK's telemetry (``gsim_async._telemetry`` explains it).

Imported only when telemetry is on and ``opentelemetry-api`` is installed. Spans follow
OpenTelemetry's HTTP client semantic conventions for each attempt (``{method}
{url.template}``, ``http.request.method``, ``server.address``, ``server.port``,
``url.full``, ``http.response.status_code``, ``error.type``,
``http.request.resend_count``), under an internal span per public call. Metrics:
``http.client.request.duration`` and the ``gsim.*`` instruments of ``Instruments``.

Instruments are made once per meter provider and shared by every client reporting to
it: a second registration of the same observable instrument keeps only the first one's
callbacks, so each client adds itself to the shared ``Instruments`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import _constants as C
from ._http import Answer
from ._models import Order, Rental
from ._pacing import Pacing, Priority, Ticket
from ._telemetry import Attributes, Describe, Pending, Result, Send, Telemetry
from ._version import __version__

T = TypeVar("T")

log = logging.getLogger("gsim_async")

SCOPE = "gsim_async"
#: The semantic conventions the HTTP spans and http.client.request.duration follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"

#: http.client.request.duration's buckets, as the semantic conventions advise (seconds).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Time from a purchase to its code: SMS arrive in seconds to minutes (orders live 20).
CODE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)

#: Query parameters whose values are never reported (digits of phone numbers).
_SECRET_PARAMS = frozenset({"contains", "areaCode"})
#: Resources whose second path segment is an id (``/orders/{id}/ban``).
_WITH_IDS = frozenset({"orders", "rentals"})
#: ...except these (``/rentals/search``).
_NOT_IDS = frozenset({"search"})
#: A context with no span: the watcher's polls start traces of their own.
_ROOT = otel_context.Context()
_PRIORITY = {Priority.REFUND: "refund", Priority.CALL: "call", Priority.POLL: "poll"}
#: Attribute sets of http.client.request.duration kept for reuse (routes x outcomes).
_POINTS = 256
#: Seconds between looks for the global tracer provider while there is none.
_LOOK_AGAIN = 1.0


def template(path: str) -> str:
    """``/api/v1`` + ``path`` with its ids as ``{id}`` (``url.template``, low cardinality)."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] in _WITH_IDS and parts[2] not in _NOT_IDS:
        parts[2] = "{id}"
        return C.API_PREFIX + "/".join(parts)
    return C.API_PREFIX + path


def error_type(exc: BaseException) -> str:
    """``error.type``: an HTTP status as a string, else the failure's exception type."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        return str(status)
    # A failure without an answer is named by what aiohttp raised.
    cause = exc.__cause__
    return _qualified(type(cause if cause is not None else exc))


def _qualified(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class _Probe:
    """One client's gauges, read when a metric reader collects."""

    __slots__ = ("__weakref__", "leading", "pacing", "rows", "waiting")

    def __init__(
        self,
        waiting: Callable[[], int],
        rows: Callable[[], int] | None,
        leading: Callable[[], bool] | None,
        pacing: Pacing,
    ) -> None:
        self.waiting = waiting
        self.rows = rows
        self.leading = leading
        self.pacing = pacing


class Instruments:
    """Every instrument of one meter, shared by the clients that report to it."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self.purchases = meter.create_counter(
            "gsim.purchases", unit="{purchase}", description="Numbers bought (orders, rentals)."
        )
        self.spend = meter.create_counter(
            "gsim.spend", unit="USD", description="Money charged for purchases."
        )
        self.refunds = meter.create_counter(
            "gsim.refunds", unit="USD", description="Money given back by cancels and bans."
        )
        self.codes = meter.create_counter(
            "gsim.codes", unit="{code}", description="SMS codes that arrived on waited-on orders."
        )
        self.time_to_code = meter.create_histogram(
            "gsim.code.duration",
            unit="s",
            description="Time from an order's purchase to its code, as the client saw it.",
            explicit_bucket_boundaries_advisory=CODE_BUCKETS,
        )
        self.retries = meter.create_counter(
            "gsim.retries", unit="{retry}", description="Requests sent again after a failure."
        )
        self.throttled = meter.create_counter(
            "gsim.rate_limit.responses",
            unit="{response}",
            description="Answers 429 (rate limited).",
        )
        self.pauses = meter.create_counter(
            "gsim.rate_limit.pauses",
            unit="{pause}",
            description="Pauses of the whole client a 429 began.",
        )
        self._probes: weakref.WeakSet[_Probe] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_up_down_counter(
            "gsim.waits",
            [self._waits],
            unit="{order}",
            description="Orders waited on for a code right now.",
        )
        meter.create_observable_up_down_counter(
            "gsim.journal.rows",
            [self._rows],
            unit="{row}",
            description="Obligations open in the journal (or the fleet): orders owed, "
            "purchases on the wire.",
        )
        meter.create_observable_gauge(
            "gsim.fleet.leader",
            [self._leader],
            description="1 while a client of this process leads its fleet's polling.",
        )
        meter.create_observable_gauge(
            "gsim.rate_limit.paused",
            [self._paused],
            unit="s",
            description="Seconds left of the pause a 429 imposed (0: not paused).",
        )
        meter.create_observable_gauge(
            "gsim.rate_gate.rate",
            [self._rate],
            unit="{request}/s",
            description="The rate the client paces its requests at (unpaced: not reported).",
        )

    def add(self, probe: _Probe) -> None:
        with self._lock:
            self._probes.add(probe)

    def discard(self, probe: _Probe) -> None:
        with self._lock:
            self._probes.discard(probe)

    def _live(self) -> list[_Probe]:
        # Readers collect from a thread of their own.
        with self._lock:
            return list(self._probes)

    def _waits(self, options: CallbackOptions) -> Iterable[Observation]:
        probes = self._live()
        if probes:
            yield Observation(sum(p.waiting() for p in probes))

    def _rows(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = [p.rows() for p in self._live() if p.rows is not None]
        if counts:
            yield Observation(sum(counts))

    def _leader(self, options: CallbackOptions) -> Iterable[Observation]:
        leads = [p.leading() for p in self._live() if p.leading is not None]
        if leads:
            yield Observation(sum(1 for lead in leads if lead))

    def _paused(self, options: CallbackOptions) -> Iterable[Observation]:
        probes = self._live()
        if probes:
            yield Observation(max(p.pacing.paused_for for p in probes))

    def _rate(self, options: CallbackOptions) -> Iterable[Observation]:
        by_phase: dict[str, float] = {}
        for probe in self._live():
            rate = probe.pacing.rate
            if rate is not None:
                phase = probe.pacing.phase.value
                by_phase[phase] = max(rate, by_phase.get(phase, 0.0))
        for phase, rate in by_phase.items():
            yield Observation(rate, {"gsim.rate_gate.phase": phase})


_lock = threading.Lock()
_global: Instruments | None = None
_by_provider: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_kept: dict[int, tuple[Any, Instruments]] = {}


def instruments(provider: Any) -> Instruments:
    """The instruments of ``provider`` (``None``: the global one), made on first use."""
    global _global
    with _lock:
        if provider is None:
            if _global is None:
                # A proxy until the application sets its provider; real from then on.
                _global = Instruments(metrics.get_meter(SCOPE, __version__, schema_url=SCHEMA_URL))
            return _global
        try:
            found = _by_provider.get(provider)
        except TypeError:  # a provider that takes no weak reference: kept for good
            found = _kept.get(id(provider), (None, None))[1]
        if found is None:
            meter = provider.get_meter(SCOPE, __version__, schema_url=SCHEMA_URL)
            found = Instruments(meter)
            try:
                _by_provider[provider] = found
            except TypeError:
                _kept[id(provider)] = (provider, found)
        return found


class Hooks:
    """One client's telemetry (``gsim_async._telemetry.Hooks``)."""

    def __init__(self, config: Telemetry, base_url: str) -> None:
        self._tracer = trace.get_tracer(
            SCOPE, __version__, tracer_provider=config.tracer_provider, schema_url=SCHEMA_URL
        )
        # Spans of the global provider wait for the application to set one; a provider
        # given here is what it is.
        self._global_tracer = config.traces and config.tracer_provider is None
        self._live = (
            config.traces
            and not self._global_tracer
            and not isinstance(self._tracer, trace.NoOpTracer)
        )
        self._metrics = instruments(config.meter_provider) if config.metrics else None
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        shown = f"[{host}]" if ":" in host else host
        # url.full never carries credentials a base URL may hold.
        self._origin = f"{parts.scheme}://{shown}" + (f":{parts.port}" if parts.port else "")
        self._origin += parts.path
        self._server: Attributes = {"server.address": host, "server.port": port}
        self._scheme = parts.scheme
        self._points: dict[tuple[str, str, int | None, str | None], Attributes] = {}
        self._look_again = -math.inf
        self._probe: _Probe | None = None

    @property
    def tracing(self) -> bool:
        """Whether spans are recorded: with the API's no-op, a call costs nothing more."""
        if self._live or not self._global_tracer:
            return self._live
        # Until the application sets its provider, looked for again every second at most
        # (the look reads the environment: a microsecond a call, kept off every request).
        now = time.monotonic()
        if now < self._look_again:
            return False
        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            self._look_again = now + _LOOK_AGAIN
            return False
        self._live = True  # a global provider, once set, stays
        return True

    # -- spans around calls ---------------------------------------------------------------

    async def call(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        describe: Describe | None,
        result: Result | None,
    ) -> T:
        span = self._tracer.start_span(
            name, attributes=_safely(describe, args, kwargs) if describe is not None else None
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            value = await fn(*args, **kwargs)
        except BaseException as exc:
            if span.is_recording():
                _failed(span, exc)
            raise
        else:
            if result is not None and span.is_recording():
                span.set_attributes(_safely(result, value))
            return value
        finally:
            otel_context.detach(token)
            span.end()

    # -- one HTTP attempt -----------------------------------------------------------------

    async def http(
        self,
        send: Send,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        priority: Priority,
        resend: int,
        pending: Pending | None,
    ) -> Answer:
        route = template(path)
        span: Span | None = None
        if self._live or self.tracing:
            attributes: Attributes = {
                "http.request.method": method,
                **self._server,
                "url.full": self._url(path, params),
                "url.template": route,
                "gsim.priority": _PRIORITY[priority],
            }
            if resend:
                attributes["http.request.resend_count"] = resend
            span = self._tracer.start_span(
                f"{method} {route}",
                # The watcher's polls serve every waiter: a trace of their own.
                context=_ROOT if priority is Priority.POLL else None,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            for name, event in pending or ():
                span.add_event(name, event)
        started = time.perf_counter()
        try:
            answer = await send(session, method, path, params, body)
        except BaseException as exc:
            kind = "cancelled" if isinstance(exc, asyncio.CancelledError) else error_type(exc)
            self._ended(span, method, route, None, kind, started)
            raise
        status = answer.status
        self._ended(span, method, route, status, str(status) if status >= 400 else None, started)
        if status == 429 and self._metrics is not None:
            self._metrics.throttled.add(1, {"http.request.method": method, "url.template": route})
        return answer

    def _ended(
        self,
        span: Span | None,
        method: str,
        route: str,
        status: int | None,
        error: str | None,
        started: float,
    ) -> None:
        elapsed = time.perf_counter() - started
        if span is not None:
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error is not None:
                span.set_attribute("error.type", error)
                # Cancelling a request is the caller's choice, not a failure.
                if error != "cancelled":
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        if self._metrics is not None:
            key = (method, route, status, error)
            point = self._points.get(key)
            if point is None:
                point = {
                    "http.request.method": method,
                    **self._server,
                    "url.scheme": self._scheme,
                    "url.template": route,
                }
                if status is not None:
                    point["http.response.status_code"] = status
                if error is not None:
                    point["error.type"] = error
                if len(self._points) < _POINTS:
                    self._points[key] = point
            self._metrics.duration.record(elapsed, point)

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        url = self._origin + C.API_PREFIX + path
        if params:
            shown = {k: ("REDACTED" if k in _SECRET_PARAMS else v) for k, v in params.items()}
            url += "?" + urlencode(shown)
        return url

    # -- the rate gate, retries and pauses ------------------------------------------------

    async def turn(self, pacing: Pacing, priority: Priority) -> Ticket:
        paused = pacing.paused_for
        if not paused or not self.tracing or priority is Priority.POLL:
            return await pacing.acquire(priority)
        started = time.monotonic()
        ticket = await pacing.acquire(priority)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "gsim.rate_limit.wait", {"gsim.wait.seconds": time.monotonic() - started}
            )
        return ticket

    def paused(
        self, seconds: float, fresh: bool, priority: Priority, pending: Pending | None
    ) -> Pending | None:
        if fresh and self._metrics is not None:
            self._metrics.pauses.add(1)
        return self._event(
            "gsim.rate_limit.pause",
            {"gsim.pause.seconds": seconds, "gsim.pause.new": fresh},
            priority,
            pending,
        )

    def retried(
        self,
        method: str,
        path: str,
        attempt: int,
        delay: float,
        error: BaseException,
        priority: Priority,
        pending: Pending | None,
    ) -> Pending | None:
        kind = error_type(error)
        if self._metrics is not None:
            self._metrics.retries.add(
                1,
                {"http.request.method": method, "url.template": template(path), "error.type": kind},
            )
        return self._event(
            "gsim.retry",
            {"http.request.resend_count": attempt, "gsim.retry.delay": delay, "error.type": kind},
            priority,
            pending,
        )

    def _event(
        self, name: str, attributes: Attributes, priority: Priority, pending: Pending | None
    ) -> Pending | None:
        """On the call's span; a poll has none: on its next attempt's span."""
        if not self.tracing:
            return pending
        span = trace.get_current_span() if priority is not Priority.POLL else None
        if span is not None and span.is_recording():
            span.add_event(name, attributes)
            return pending
        return [*(pending or ()), (name, attributes)]

    # -- money and codes ------------------------------------------------------------------

    def bought_order(self, order: Order) -> None:
        if self._metrics is None:
            return
        point = _where("order", order.service, order.country)
        self._metrics.purchases.add(1, point)
        self._metrics.spend.add(float(order.price), point)

    def bought_rental(self, rental: Rental) -> None:
        if self._metrics is None:
            return
        point: Attributes = {"gsim.kind": "rental"}
        if rental.country:
            point["gsim.country"] = rental.country
        self._metrics.purchases.add(1, point)
        if rental.monthly_price is not None:
            self._metrics.spend.add(float(rental.monthly_price), point)

    def refunded(self, order: Order | str, action: str, amount: Decimal) -> None:
        if self._metrics is None:
            return
        if isinstance(order, Order):
            point = _where("order", order.service, order.country)
        else:
            point = {"gsim.kind": "order"}
        point["gsim.refund.action"] = action
        self._metrics.refunds.add(float(amount), point)

    def code(self, order: Order, seconds: float | None) -> None:
        if self._metrics is None:
            return
        point = _where(None, order.service, order.country)
        self._metrics.codes.add(1, point)
        if seconds is not None:
            self._metrics.time_to_code.record(seconds, point)

    # -- gauges ---------------------------------------------------------------------------

    def observe(
        self,
        *,
        waiting: Callable[[], int],
        rows: Callable[[], int] | None,
        leading: Callable[[], bool] | None,
        pacing: Pacing,
    ) -> None:
        if self._metrics is None:
            return
        self._probe = _Probe(waiting, rows, leading, pacing)
        self._metrics.add(self._probe)

    def close(self) -> None:
        if self._metrics is not None and self._probe is not None:
            self._metrics.discard(self._probe)
        self._probe = None


def _safely(describe: Callable[..., Attributes], *args: Any) -> Attributes:
    """A span's attributes; a failure to describe a call never fails the call."""
    try:
        return describe(*args)
    except Exception:
        log.debug("gsim telemetry: could not describe a call", exc_info=True)
        return {}


def _where(kind: str | None, service: str, country: str | None) -> Attributes:
    point: Attributes = {"gsim.service": service}
    if kind is not None:
        point["gsim.kind"] = kind
    if country:
        point["gsim.country"] = country
    return point


def _failed(span: Span, exc: BaseException) -> None:
    """What a call that raised says: its error's type and code, never its message."""
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("gsim.cancelled", True)
        return
    kind = type(exc)
    span.set_attribute("error.type", _qualified(kind))
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        span.set_attribute("gsim.error.code", code)
    span.set_status(Status(StatusCode.ERROR, kind.__name__))
