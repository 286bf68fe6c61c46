"""The ``/_sandbox/`` control API: drive a sandbox from another process.

No auth, never counted in the API stats, never subject to faults. Bodies and
answers are JSON with snake_case keys (records mirror the Python API); fault
names may also be camelCase. Errors are ``{"error", "code"}`` like the API:
404 for an unknown id or key, 409 when the state forbids the action, 400 for
a bad body.

Each route is a small function ``(sandbox, request) -> data`` calling the
Python API of ``Sandbox``; ``ROUTES`` lists them. They see the sandbox through
``Controlled``, the part of that API they call, so this module does not import the
one that builds the sandbox (imports point one way).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web

from ._accounts import Money
from ._clock import Clock
from ._errors import ApiError, StateError
from ._faults import Faults
from ._http import error_response, reply
from ._json import loads
from ._records import Ledger, OrderRecord, RentalRecord, Stats

PREFIX = "/_sandbox"


class Controlled(Protocol):
    """What the control API calls on a sandbox: ``Sandbox``'s Python API, documented there."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def stats(self) -> Stats: ...
    def keys(self) -> list[str]: ...
    def advance(self, seconds: float) -> None: ...
    def set_stock(
        self, service: str, country: str, count: int, operator: str | None = None
    ) -> None: ...
    def set_delivery_rate(
        self,
        rate: float | None,
        service: str | None = None,
        country: str | None = None,
        operator: str | None = None,
    ) -> None: ...
    def balance(self, key: str | None = None) -> Decimal: ...
    def set_balance(self, amount: Money, key: str | None = None) -> None: ...
    def add_key(self, key: str | None = None, balance: Money = ...) -> str: ...
    def revoke_key(self, key: str) -> None: ...
    def ledger(self, key: str | None = None) -> Ledger: ...
    def orders(self, key: str | None = None) -> list[OrderRecord]: ...
    def place_order(
        self, service: str, country: str, operator: str | None = None, *, key: str | None = None
    ) -> OrderRecord: ...
    def order(self, order_id: str) -> OrderRecord: ...
    def deliver_code(self, order_id: str, code: str | None = None) -> str: ...
    def set_order_status(
        self, order_id: str, status: str, *, refund: bool = False
    ) -> OrderRecord: ...
    def set_order_latency(self, order_id: str, seconds: float) -> None: ...
    def rentals(self, key: str | None = None) -> list[RentalRecord]: ...
    def place_rental(
        self,
        phone_number: str,
        *,
        key: str | None = None,
        number_type: str | None = None,
        country: str | None = None,
    ) -> RentalRecord: ...
    def add_inbound_sms(self, rental_id: str, sender: str, body: str) -> dict[str, object]: ...
    def add_inbound_call(
        self, rental_id: str, sender: str, *, status: str = ..., duration: int = ...
    ) -> dict[str, object]: ...
    def set_rental_status(self, rental_id: str, status: str) -> RentalRecord: ...
    def set_faults(self, **changes: Any) -> Faults: ...
    def clear_faults(self) -> Faults: ...
    def reset_stats(self) -> None: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Control = Callable[[Controlled, web.Request], Awaitable[object]]


async def call(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a control handler, mapping Python errors to JSON error answers."""
    exc = request.match_info.http_exception
    if exc is not None:
        code = "METHOD_NOT_ALLOWED" if exc.status == 405 else "NOT_FOUND"
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(
            exc.status, code, f"no control endpoint {request.method} {request.path}", allow
        )
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message)
    except KeyError as err:
        return error_response(404, "NOT_FOUND", str(err.args[0]) if err.args else "not found")
    except StateError as err:
        return error_response(409, "CONFLICT", str(err))
    except (ValueError, TypeError) as err:
        return error_response(400, "VALIDATION_ERROR", str(err))


# -- reading requests --


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = loads(raw)
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    return data


def _key(request: web.Request) -> str | None:
    return request.query.get("key") or None


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} is required (a string)")
    return value


def _seconds(body: dict[str, Any], name: str = "seconds") -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise TypeError(f"{name} is required (a number)")
    return float(value)


def _plain(value: object) -> object:
    # Fault settings are floats; JSON numbers with a fraction arrive as Decimal.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- the sandbox --


async def info(sb: Controlled, request: web.Request) -> object:
    return {
        "base_url": sb.base_url,
        "api_url": sb.api_url,
        "api_key": sb.api_key,
        "keys": sb.keys(),
        "seed": sb.seed,
        "now": sb.clock.now(),
        "faults": sb.faults.to_dict(),
    }


async def advance(sb: Controlled, request: web.Request) -> object:
    sb.advance(_seconds(await _body(request)))
    return {"now": sb.clock.now(), "offset": sb.clock.offset}


async def stock(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    service, country = _required_text(body, "service"), _required_text(body, "country")
    count = body.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError("count is required (an integer)")
    sb.set_stock(service, country, count, _text(body, "operator"))
    return {"service": service, "country": country, "count": count}


async def delivery(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    if "rate" not in body:
        raise ValueError("rate is required (a number from 0 to 1, or null to remove)")
    rate = body["rate"]
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, Decimal))):
        raise TypeError("rate must be a number from 0 to 1, or null")
    rule = {name: _text(body, name) for name in ("service", "country", "operator")}
    sb.set_delivery_rate(None if rate is None else float(rate), **rule)
    return {"rate": rate, **rule}


# -- accounts --


async def get_balance(sb: Controlled, request: web.Request) -> object:
    key = _key(request) or sb.api_key
    return {"key": key, "balance": sb.balance(key)}


async def set_balance(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    if "balance" not in body:
        raise ValueError("balance is required")
    key = body.get("key") or sb.api_key
    sb.set_balance(body["balance"], key)
    return {"key": key, "balance": sb.balance(key)}


async def add_key(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    key = sb.add_key(body.get("key"), body.get("balance", Decimal("100")))
    return {"key": key, "balance": sb.balance(key)}


async def revoke_key(sb: Controlled, request: web.Request) -> object:
    key = request.match_info["key"]
    sb.revoke_key(key)
    return {"key": key, "revoked": True}


async def ledger(sb: Controlled, request: web.Request) -> object:
    return sb.ledger(_key(request)).to_dict()


# -- orders --


async def orders(sb: Controlled, request: web.Request) -> object:
    return {"orders": [o.to_dict() for o in sb.orders(_key(request))]}


async def place_order(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    service, country = _required_text(body, "service"), _required_text(body, "country")
    operator, key = _text(body, "operator"), _text(body, "key")
    return sb.place_order(service, country, operator, key=key).to_dict()


async def order(sb: Controlled, request: web.Request) -> object:
    return sb.order(request.match_info["id"]).to_dict()


async def deliver(sb: Controlled, request: web.Request) -> object:
    code = _text(await _body(request), "code")
    order_id = request.match_info["id"]
    sb.deliver_code(order_id, code)
    return sb.order(order_id).to_dict()


async def order_status(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    status = _required_text(body, "status")
    refund = body.get("refund", False)
    if not isinstance(refund, bool):
        raise TypeError("refund must be true or false")
    return sb.set_order_status(request.match_info["id"], status, refund=refund).to_dict()


async def order_latency(sb: Controlled, request: web.Request) -> object:
    seconds = _seconds(await _body(request))
    order_id = request.match_info["id"]
    sb.set_order_latency(order_id, seconds)
    return {"id": order_id, "seconds": seconds}


# -- rentals --


async def rentals(sb: Controlled, request: web.Request) -> object:
    return {"rentals": [r.to_dict() for r in sb.rentals(_key(request))]}


async def place_rental(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    rental = sb.place_rental(
        _required_text(body, "phone_number"),
        key=_text(body, "key"),
        number_type=_text(body, "number_type"),
        country=_text(body, "country"),
    )
    return rental.to_dict()


async def inbound_sms(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    sender, text = body.get("from"), body.get("body")
    if not isinstance(sender, str) or not isinstance(text, str):
        raise TypeError('"from" and "body" are required strings')
    return sb.add_inbound_sms(request.match_info["id"], sender, text)


async def inbound_call(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    sender = body.get("from")
    status = body.get("status", "COMPLETED")
    duration = body.get("duration", 30)
    if not isinstance(sender, str) or not isinstance(status, str):
        raise TypeError('"from" is required; "status" must be a string')
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
        raise TypeError("duration must be a non-negative integer")
    return sb.add_inbound_call(request.match_info["id"], sender, status=status, duration=duration)


async def rental_status(sb: Controlled, request: web.Request) -> object:
    status = _required_text(await _body(request), "status")
    return sb.set_rental_status(request.match_info["id"], status).to_dict()


# -- faults and counters --


async def get_faults(sb: Controlled, request: web.Request) -> object:
    return sb.faults.to_dict()


async def set_faults(sb: Controlled, request: web.Request) -> object:
    body = await _body(request)
    return sb.set_faults(**{k: _plain(v) for k, v in body.items()}).to_dict()


async def reset_faults(sb: Controlled, request: web.Request) -> object:
    return sb.clear_faults().to_dict()


async def stats(sb: Controlled, request: web.Request) -> object:
    return sb.stats.to_dict()


async def reset_stats(sb: Controlled, request: web.Request) -> object:
    sb.reset_stats()
    return sb.stats.to_dict()


ROUTES: tuple[tuple[str, str, Control], ...] = (
    ("GET", "/", info),
    ("POST", "/advance", advance),
    ("POST", "/stock", stock),
    ("POST", "/delivery", delivery),
    ("GET", "/balance", get_balance),
    ("POST", "/balance", set_balance),
    ("POST", "/keys", add_key),
    ("POST", "/keys/{key}/revoke", revoke_key),
    ("GET", "/ledger", ledger),
    ("GET", "/orders", orders),
    ("POST", "/orders", place_order),
    ("GET", "/orders/{id}", order),
    ("POST", "/orders/{id}/deliver", deliver),
    ("POST", "/orders/{id}/status", order_status),
    ("POST", "/orders/{id}/latency", order_latency),
    ("GET", "/rentals", rentals),
    ("POST", "/rentals", place_rental),
    ("POST", "/rentals/{id}/sms", inbound_sms),
    ("POST", "/rentals/{id}/calls", inbound_call),
    ("POST", "/rentals/{id}/status", rental_status),
    ("GET", "/faults", get_faults),
    ("POST", "/faults", set_faults),
    ("POST", "/faults/reset", reset_faults),
    ("GET", "/stats", stats),
    ("POST", "/stats/reset", reset_stats),
)


async def _answer(control: Control, sb: Controlled, request: web.Request) -> web.Response:
    return reply(await control(sb, request))


def add_routes(app: web.Application, sb: Controlled) -> None:
    """Register ``ROUTES`` on ``app`` for ``sb``."""
    for method, path, control in ROUTES:
        handler = functools.partial(_answer, control, sb)
        # As on the API: a resource that answers GET answers HEAD.
        for verb in ("GET", "HEAD") if method == "GET" else (method,):
            app.router.add_route(verb, PREFIX + path, handler)
