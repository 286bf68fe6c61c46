"""HTTP plumbing shared by the API and control handlers: JSON answers and request parsing.

The parsers raise 400 ``VALIDATION_ERROR`` naming the offending field, as
gsim does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from . import _errors
from ._catalogue import E164
from ._json import dumps, loads

ISO2 = re.compile(r"[A-Za-z]{2}")


def json_response(text: str, status: int = 200) -> web.Response:
    """A JSON answer from already-encoded text."""
    return web.Response(body=text.encode(), status=status, content_type="application/json")


def reply(data: object, status: int = 200) -> web.Response:
    """A JSON answer of ``data``."""
    return json_response(dumps(data), status)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``{"error": message, "code": code}`` with ``status``."""
    resp = reply({"error": message, "code": code}, status)
    if headers:
        resp.headers.update(headers)
    return resp


# -- query parameters --


def int_param(query: Mapping[str, str], name: str, default: int, high: int | None) -> int:
    """A positive integer query parameter, at most ``high``."""
    raw = query.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if value < 1 or (high is not None and value > high):
        if high is None:
            raise _errors.validation(f"{name} must be an integer >= 1")
        raise _errors.validation(f"{name} must be between 1 and {high}")
    return value


def choice_param(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    """An optional query parameter restricted to ``allowed``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise _errors.validation(f"{name} must be one of {', '.join(allowed)}")
    return raw


def bool_param(query: Mapping[str, str], name: str) -> bool | None:
    """An optional ``true``/``false`` query parameter."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise _errors.validation(f"{name} must be true or false")
    return lowered == "true"


def digits_param(query: Mapping[str, str], name: str, what: str) -> str | None:
    """An optional query parameter of ASCII digits; ``what`` says what they are for."""
    raw = query.get(name) or None
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise _errors.validation(f"{name} must be {what}")
    return raw


# -- JSON bodies --


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    raw = await request.read()
    if not raw.strip():
        raise _errors.validation("request body must be a JSON object")
    try:
        data = loads(raw)
    except ValueError as exc:
        raise _errors.validation(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _errors.validation("request body must be a JSON object")
    return data


def required_str(body: Mapping[str, Any], name: str) -> str:
    """A required non-empty string field."""
    value = body.get(name)
    if value is None:
        raise _errors.validation(f"{name} is required")
    if not isinstance(value, str) or not value.strip():
        raise _errors.validation(f"{name} must be a non-empty string")
    return value


def phone_field(body: Mapping[str, Any], name: str) -> str:
    """A required E.164 phone number field."""
    value = required_str(body, name)
    if not E164.fullmatch(value):
        raise _errors.validation(f"{name} must be an E.164 phone number like +14155551234")
    return value


def iso_field(body: Mapping[str, Any], name: str) -> str:
    """A required 2-letter ISO country code field, upper-cased."""
    value = required_str(body, name)
    if not ISO2.fullmatch(value):
        raise _errors.validation(f"{name} must be a 2-letter ISO code, e.g. US")
    return value.upper()


def bool_field(body: Mapping[str, Any], name: str) -> bool:
    """A JSON boolean field (0/1 and strings are rejected)."""
    value = body[name]
    if not isinstance(value, bool):
        raise _errors.validation(f"{name} must be true or false")
    return value


def money_field(body: Mapping[str, Any], name: str) -> Decimal:
    """A required positive JSON number field."""
    value = body.get(name)
    if value is None:
        raise _errors.validation(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value <= 0:
        raise _errors.validation(f"{name} must be a positive number")
    return Decimal(value)
