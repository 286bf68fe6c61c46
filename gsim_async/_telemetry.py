"""Tracing and metrics, opt-in: what the rest of the SDK calls, without OpenTelemetry.

With ``gsim-async[otel]`` installed (``opentelemetry-api``), every client reports to the
tracer and meter providers the application configured, as instrumented libraries do:
nothing to write, and a no-op when the application configured none. Without the API
installed, or with ``Client(telemetry=False)`` (or ``GSIM_TELEMETRY=off``), nothing of
OpenTelemetry is imported and a client's hooks are ``None``: each place that reports
checks that once, and pays nothing else.

This module never imports OpenTelemetry; ``gsim_async._otel`` does, and the client
imports it only when telemetry is on. What the transport and the namespaces call
is the ``Hooks`` protocol; ``traced`` puts a span around a public call.

Nothing reported ever carries the API key, a phone number, an SMS code or a message:
only ids, services, countries, amounts, statuses and error types.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import attrs

from ._exceptions import InvalidArgumentError

if TYPE_CHECKING:
    import aiohttp

    from ._http import Answer
    from ._models import Order, Rental
    from ._pacing import Pacing, Priority, Ticket

P = ParamSpec("P")
T = TypeVar("T")

#: What a span or a data point may carry (OpenTelemetry's attribute values).
Attributes = dict[str, str | int | float | bool]
#: The attributes of a call, from its arguments (``args[0]`` is the namespace).
Describe = Callable[[tuple[Any, ...], Mapping[str, Any]], Attributes]
#: The attributes of a call's result.
Result = Callable[[Any], Attributes]
#: Events waiting for the next attempt's span (a request with no call span around it).
Pending = list[tuple[str, Attributes]]
Send = Callable[
    ["aiohttp.ClientSession", str, str, "Mapping[str, str] | None", "bytes | None"],
    Awaitable["Answer"],
]

_OFF = ("0", "off", "false", "no", "none", "disabled")


@attrs.frozen
class Telemetry:
    """Where a client reports its traces and metrics: ``Client(telemetry=Telemetry(...))``.

    By default (``telemetry=True``) a client reports to OpenTelemetry's global
    providers, those the application set (``trace.set_tracer_provider``,
    ``metrics.set_meter_provider``, or ``opentelemetry-instrument``). Give
    ``tracer_provider`` / ``meter_provider`` to report to others; ``traces=False`` or
    ``metrics=False`` turns one of the two off. Needs ``pip install 'gsim-async[otel]'``;
    without it, a client reports nothing.
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    traces: bool = attrs.field(default=True, kw_only=True)
    metrics: bool = attrs.field(default=True, kw_only=True)


class Hooks(Protocol):
    """What the SDK reports, as ``gsim_async._otel.Hooks`` implements it."""

    @property
    def tracing(self) -> bool:
        """Whether calls get spans."""

    async def call(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        describe: Describe | None,
        result: Result | None,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a span named ``name``."""

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
        """One attempt (``send``) in a client span, timed for ``http.client.request.duration``."""

    async def turn(self, pacing: Pacing, priority: Priority) -> Ticket:
        """Wait for a turn at the rate gate, noting a pause that held the call."""

    def paused(
        self, seconds: float, fresh: bool, priority: Priority, pending: Pending | None
    ) -> Pending | None:
        """A 429 paused the client for ``seconds`` (``fresh``: the gate was open)."""

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
        """A request is sent again (``attempt``: 1 for the first retry) after ``delay`` s."""

    def bought_order(self, order: Order) -> None:
        """A purchase bought ``order`` (its price was charged)."""

    def bought_rental(self, rental: Rental) -> None:
        """A purchase rented ``rental`` (its monthly price was charged)."""

    def refunded(self, order: Order | str, action: str, amount: Decimal) -> None:
        """A cancel or ban gave ``amount`` back."""

    def code(self, order: Order, seconds: float | None) -> None:
        """A waited-on order's code was seen, ``seconds`` after the order was made."""

    def observe(
        self,
        *,
        waiting: Callable[[], int],
        rows: Callable[[], int] | None,
        leading: Callable[[], bool] | None,
        pacing: Pacing,
    ) -> None:
        """Report the client's gauges (waits, journal rows, fleet leadership, gate)."""

    def close(self) -> None:
        """The client closed: its gauges are no longer reported."""


def resolve(option: bool | Telemetry | None) -> Telemetry | None:
    """What a client's ``telemetry`` argument asks for (``None``: nothing reported).

    ``option=None`` reads ``$GSIM_TELEMETRY`` (``off`` turns it off).
    """
    if option is None:
        option = os.environ.get("GSIM_TELEMETRY", "").strip().lower() not in _OFF
    if option is False:
        return None
    if option is True:
        return Telemetry()
    if not isinstance(option, Telemetry):
        raise InvalidArgumentError(
            f"telemetry must be True, False or a gsim_async.Telemetry, got {option!r}"
        )
    return option if option.traces or option.metrics else None


def _transport_hooks(owner: Any) -> Hooks | None:
    hooks: Hooks | None = owner._transport.shared.telemetry
    return hooks


def _ops_hooks(owner: Any) -> Hooks | None:
    hooks: Hooks | None = owner.telemetry
    return hooks


def traced(
    name: str,
    describe: Describe | None = None,
    result: Result | None = None,
    *,
    via: Callable[[Any], Hooks | None] = _transport_hooks,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Put a span named ``name`` around each call of an ``async def`` method.

    ``via(args[0])`` finds the client's hooks (default: a namespace's transport); with
    none, the call runs as it is. ``describe`` and ``result`` give the span's
    attributes from the arguments and the return value.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            hooks = via(args[0])
            if hooks is None or not hooks.tracing:
                return await fn(*args, **kwargs)
            return await hooks.call(name, fn, args, kwargs, describe, result)

        return call

    return decorate


def via_ops(owner: Any) -> Hooks | None:
    """``traced(via=...)`` for the waiting helpers, whose first argument is an ``OrderOps``."""
    return _ops_hooks(owner)


# -- what each call's span says (never a key, a phone number, a code or a message) --------


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _id(value: Any) -> str | None:
    """The id of a model or of an id string."""
    if value is None:
        return None
    found = getattr(value, "id", value)
    return found if isinstance(found, str) else None


def _clean(values: Mapping[str, Any]) -> Attributes:
    out: Attributes = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, Decimal):
            out[key] = float(value)
        elif isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            # An enum member becomes its wire string.
            out[key] = str(value)
    return out


def purchase(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``orders._create(service, country, operator, purpose)``."""
    return _clean(
        {
            "gsim.service": _arg(args, kwargs, 1, "service"),
            "gsim.country": _arg(args, kwargs, 2, "country"),
            "gsim.operator": _arg(args, kwargs, 3, "operator") or "any",
            "gsim.purpose": _arg(args, kwargs, 4, "purpose"),
        }
    )


def order_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """A call whose first argument is an order or its id."""
    order = _arg(args, kwargs, 1, "order")
    values: dict[str, Any] = {"gsim.order.id": _id(order)}
    if hasattr(order, "service"):
        values["gsim.service"] = order.service
        values["gsim.country"] = order.country
    return _clean(values)


def wait_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``wait(ops, order, timeout=..., on_timeout=...)``."""
    values = order_arg(args, kwargs)
    values.update(
        _clean(
            {
                "gsim.wait.timeout": kwargs.get("timeout"),
                "gsim.wait.on_timeout": kwargs.get("on_timeout"),
            }
        )
    )
    return values


def settle_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``settle(ops, order, action)``."""
    values = order_arg(args, kwargs)
    action = _arg(args, kwargs, 2, "action")
    if isinstance(action, str):
        values["gsim.refund.action"] = action
    return values


def page_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``list(page, limit, status)``."""
    return _clean(
        {
            "gsim.page": _arg(args, kwargs, 1, "page"),
            "gsim.page.limit": _arg(args, kwargs, 2, "limit"),
            "gsim.status": _arg(args, kwargs, 3, "status"),
        }
    )


def catalogue_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``countries(service)`` / ``operators(service, country)``."""
    return _clean(
        {
            "gsim.service": _arg(args, kwargs, 1, "service"),
            "gsim.country": _arg(args, kwargs, 2, "country"),
        }
    )


def stats_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``orders.stats(since, service, country)``."""
    return _clean(
        {
            "gsim.service": _arg(args, kwargs, 2, "service"),
            "gsim.country": _arg(args, kwargs, 3, "country"),
        }
    )


def rental_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """A call whose first argument is a rental or its id (never its number)."""
    return _clean({"gsim.rental.id": _id(_arg(args, kwargs, 1, "rental"))})


def search_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``rentals.search(country, type=...)`` (the digits searched for are left out)."""
    return _clean(
        {"gsim.country": _arg(args, kwargs, 1, "country"), "gsim.number_type": kwargs.get("type")}
    )


def rental_purchase(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Attributes:
    """``rentals.create(phone_number, number_type, country, monthly_price)``: no number."""
    return _clean(
        {
            "gsim.number_type": _arg(args, kwargs, 2, "number_type"),
            "gsim.country": _arg(args, kwargs, 3, "country"),
        }
    )


def order_result(order: Any) -> Attributes:
    """An ``Order``: its id, status and price."""
    return _clean(
        {
            "gsim.order.id": getattr(order, "id", None),
            "gsim.order.status": getattr(order, "status", None),
            "gsim.order.price": getattr(order, "price", None),
            "gsim.country": getattr(order, "country", None),
        }
    )


def refund_result(refund: Any) -> Attributes:
    """A ``Refund``: what came back."""
    return _clean({"gsim.refund.amount": getattr(refund, "refunded", None)})


def settled_result(settled: Any) -> Attributes:
    """A cleanup's ``Settled``: what came back, and the order's last known status."""
    order = getattr(settled, "order", None)
    return _clean(
        {
            "gsim.refund.amount": getattr(settled, "refunded", None),
            "gsim.order.status": getattr(order, "status", None),
        }
    )


def waited_result(order: Any) -> Attributes:
    """``wait()``'s order with its code (never the code itself)."""
    status = getattr(order, "status", None)
    return _clean({"gsim.wait.outcome": "code", "gsim.order.status": status})


def count_result(items: Any) -> Attributes:
    """A list: how many items."""
    return {"gsim.items": len(items)} if hasattr(items, "__len__") else {}


def page_result(page: Any) -> Attributes:
    """A ``Page``: how many items, and the total."""
    return _clean(
        {"gsim.items": len(getattr(page, "items", ())), "gsim.total": getattr(page, "total", None)}
    )


def rental_result(rental: Any) -> Attributes:
    """A ``Rental``: its id, status and monthly price (never its number)."""
    return _clean(
        {
            "gsim.rental.id": getattr(rental, "id", None),
            "gsim.rental.status": getattr(rental, "status", None),
            "gsim.rental.monthly_price": getattr(rental, "monthly_price", None),
        }
    )


def message_result(message: Any) -> Attributes:
    """A ``Message`` found by a wait (its id; never its body or sender)."""
    return _clean({"gsim.message.id": getattr(message, "id", None)})


__all__ = ["Attributes", "Hooks", "Pending", "Send", "Telemetry", "resolve", "traced", "via_ops"]
