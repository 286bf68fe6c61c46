"""The ``/_sandbox/`` control API: drive a sandbox from another process.

No auth, never counted in the API stats, never subject to faults. Bodies and
answers are JSON with snake_case keys (records mirror the Python API); fault
names may also be camelCase. Errors are ``{"error", "code"}`` like the API:
404 for an unknown id or key, 409 when the state forbids the action, 400 for
a bad body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._errors import ApiError, StateError
from ._json import dumps, loads

if TYPE_CHECKING:
    from ._sandbox import Sandbox

PREFIX = "/_sandbox"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reply(data: object, status: int = 200) -> web.Response:
    return web.Response(body=dumps(data).encode(), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _reply({"error": message, "code": code}, status)


async def call(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a control handler, mapping Python errors to JSON error answers."""
    exc = request.match_info.http_exception
    if exc is not None:
        code = "METHOD_NOT_ALLOWED" if exc.status == 405 else "NOT_FOUND"
        return _error(exc.status, code, f"no control endpoint {request.method} {request.path}")
    try:
        return await handler(request)
    except ApiError as err:
        return _error(err.status, err.code, err.message)
    except KeyError as err:
        return _error(404, "NOT_FOUND", str(err.args[0]) if err.args else "not found")
    except StateError as err:
        return _error(409, "CONFLICT", str(err))
    except (ValueError, TypeError) as err:
        return _error(400, "VALIDATION_ERROR", str(err))


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = loads(raw)
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    return data


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def _plain(value: object) -> object:
    # Fault settings are floats; JSON numbers with a fraction arrive as Decimal.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def add_routes(app: web.Application, sb: Sandbox) -> None:
    """Register the control routes on ``app`` for ``sb``."""

    def key_of(request: web.Request) -> str | None:
        return request.query.get("key") or None

    async def info(request: web.Request) -> web.Response:
        return _reply(
            {
                "base_url": sb.base_url,
                "api_url": sb.api_url,
                "api_key": sb.api_key,
                "keys": sb.keys(),
                "seed": sb.seed,
                "now": sb.clock.now(),
                "faults": sb.faults.to_dict(),
            }
        )

    async def orders(request: web.Request) -> web.Response:
        return _reply({"orders": [o.to_dict() for o in sb.orders(key_of(request))]})

    async def place_order(request: web.Request) -> web.Response:
        body = await _body(request)
        service, country = body.get("service"), body.get("country")
        if not isinstance(service, str) or not isinstance(country, str):
            raise TypeError("service and country are required strings")
        operator, key = _optional_str(body, "operator"), _optional_str(body, "key")
        return _reply(sb.place_order(service, country, operator, key=key).to_dict())

    async def order(request: web.Request) -> web.Response:
        return _reply(sb.order(request.match_info["id"]).to_dict())

    async def deliver(request: web.Request) -> web.Response:
        body = await _body(request)
        code = body.get("code")
        if code is not None and not isinstance(code, str):
            raise TypeError("code must be a string")
        order_id = request.match_info["id"]
        sb.deliver_code(order_id, code)
        return _reply(sb.order(order_id).to_dict())

    async def order_status(request: web.Request) -> web.Response:
        body = await _body(request)
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise TypeError("status is required (a string)")
        refund = body.get("refund", False)
        if not isinstance(refund, bool):
            raise TypeError("refund must be true or false")
        return _reply(
            sb.set_order_status(request.match_info["id"], status, refund=refund).to_dict()
        )

    async def order_latency(request: web.Request) -> web.Response:
        body = await _body(request)
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, Decimal)):
            raise TypeError("seconds is required (a number)")
        order_id = request.match_info["id"]
        sb.set_order_latency(order_id, float(seconds))
        return _reply({"id": order_id, "seconds": float(seconds)})

    async def rentals(request: web.Request) -> web.Response:
        return _reply({"rentals": [r.to_dict() for r in sb.rentals(key_of(request))]})

    async def place_rental(request: web.Request) -> web.Response:
        body = await _body(request)
        phone = body.get("phone_number")
        if not isinstance(phone, str):
            raise TypeError("phone_number is required (a string)")
        rental = sb.place_rental(
            phone,
            key=_optional_str(body, "key"),
            number_type=_optional_str(body, "number_type"),
            country=_optional_str(body, "country"),
        )
        return _reply(rental.to_dict())

    async def inbound_sms(request: web.Request) -> web.Response:
        body = await _body(request)
        sender = body.get("from")
        text = body.get("body")
        if not isinstance(sender, str) or not isinstance(text, str):
            raise TypeError('"from" and "body" are required strings')
        return _reply(sb.add_inbound_sms(request.match_info["id"], sender, text))

    async def inbound_call(request: web.Request) -> web.Response:
        body = await _body(request)
        sender = body.get("from")
        status = body.get("status", "COMPLETED")
        duration = body.get("duration", 30)
        if not isinstance(sender, str) or not isinstance(status, str):
            raise TypeError('"from" is required; "status" must be a string')
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            raise TypeError("duration must be a non-negative integer")
        return _reply(
            sb.add_inbound_call(request.match_info["id"], sender, status=status, duration=duration)
        )

    async def rental_status(request: web.Request) -> web.Response:
        body = await _body(request)
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise TypeError("status is required (a string)")
        return _reply(sb.set_rental_status(request.match_info["id"], status).to_dict())

    async def get_balance(request: web.Request) -> web.Response:
        key = key_of(request) or sb.api_key
        return _reply({"key": key, "balance": sb.balance(key)})

    async def set_balance(request: web.Request) -> web.Response:
        body = await _body(request)
        if "balance" not in body:
            raise ValueError("balance is required")
        key = body.get("key") or sb.api_key
        sb.set_balance(body["balance"], key)
        return _reply({"key": key, "balance": sb.balance(key)})

    async def add_key(request: web.Request) -> web.Response:
        body = await _body(request)
        key = sb.add_key(body.get("key"), body.get("balance", Decimal("100")))
        return _reply({"key": key, "balance": sb.balance(key)})

    async def revoke_key(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        sb.revoke_key(key)
        return _reply({"key": key, "revoked": True})

    async def get_faults(request: web.Request) -> web.Response:
        return _reply(sb.faults.to_dict())

    async def set_faults(request: web.Request) -> web.Response:
        body = await _body(request)
        return _reply(sb.set_faults(**{k: _plain(v) for k, v in body.items()}).to_dict())

    async def reset_faults(request: web.Request) -> web.Response:
        return _reply(sb.clear_faults().to_dict())

    async def stats(request: web.Request) -> web.Response:
        return _reply(sb.stats.to_dict())

    async def reset_stats(request: web.Request) -> web.Response:
        sb.reset_stats()
        return _reply(sb.stats.to_dict())

    async def ledger(request: web.Request) -> web.Response:
        return _reply(sb.ledger(key_of(request)).to_dict())

    async def advance(request: web.Request) -> web.Response:
        body = await _body(request)
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, Decimal)):
            raise TypeError("seconds is required (a number)")
        sb.advance(float(seconds))
        return _reply({"now": sb.clock.now(), "offset": sb.clock.offset})

    async def delivery(request: web.Request) -> web.Response:
        body = await _body(request)
        if "rate" not in body:
            raise ValueError("rate is required (a number from 0 to 1, or null to remove)")
        rate = body["rate"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, Decimal))):
            raise TypeError("rate must be a number from 0 to 1, or null")
        rule = {name: _optional_str(body, name) for name in ("service", "country", "operator")}
        sb.set_delivery_rate(None if rate is None else float(rate), **rule)
        return _reply({"rate": rate, **rule})

    async def stock(request: web.Request) -> web.Response:
        body = await _body(request)
        service, country, count = body.get("service"), body.get("country"), body.get("count")
        operator = body.get("operator")
        if not isinstance(service, str) or not isinstance(country, str):
            raise TypeError("service and country are required strings")
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError("count is required (an integer)")
        if operator is not None and not isinstance(operator, str):
            raise TypeError("operator must be a string")
        sb.set_stock(service, country, count, operator)
        return _reply({"service": service, "country": country, "count": count})

    p = PREFIX
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/", info),
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
        ("GET", "/balance", get_balance),
        ("POST", "/balance", set_balance),
        ("POST", "/keys", add_key),
        ("POST", "/keys/{key}/revoke", revoke_key),
        ("GET", "/faults", get_faults),
        ("POST", "/faults", set_faults),
        ("POST", "/faults/reset", reset_faults),
        ("GET", "/stats", stats),
        ("POST", "/stats/reset", reset_stats),
        ("GET", "/ledger", ledger),
        ("POST", "/advance", advance),
        ("POST", "/stock", stock),
        ("POST", "/delivery", delivery),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, p + path, handler)
