"""HTTP plumbing shared by the API and control handlers: JSON answers and request parsing.

The parsers raise 400 ``VALIDATION_ERROR`` naming the offending field, as
gsim does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from . import _errors
from ._catalogue import E164
from ._json import dumps, loads

#: ISO 3166 writes its codes in upper case; "us" is not one.
ISO2 = re.compile(r"[A-Z]{2}")


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
#
# As strict as the published API: a value outside its documented range or enum is
# refused, an empty value included (it is none of the documented values), and so is a
# parameter given twice (which of the two a server would take is not documented).
# Unknown parameters are ignored: the published shapes are a floor, not a ceiling.


def one_param(query: MultiMapping[str], name: str) -> str | None:
    """The value of a single-valued query parameter, None when it is absent."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise _errors.validation(f"{name} must be given once, got {len(values)} values")
    return values[0] if values else None


def int_param(query: MultiMapping[str], name: str, default: int, high: int | None) -> int:
    """A positive integer query parameter, at most ``high``."""
    raw = one_param(query, name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if value < 1 or (high is not None and value > high):
        if high is None:
            raise _errors.validation(f"{name} must be an integer >= 1")
        raise _errors.validation(f"{name} must be between 1 and {high}")
    return value


def choice_param(query: MultiMapping[str], name: str, allowed: Iterable[str]) -> str | None:
    """An optional query parameter restricted to ``allowed``, spelt exactly."""
    raw = one_param(query, name)
    options = tuple(allowed)
    if raw is not None and raw not in options:
        raise _errors.validation(f"{name} must be one of {', '.join(options)}")
    return raw


def bool_param(query: MultiMapping[str], name: str) -> bool | None:
    """An optional ``true``/``false`` query parameter (lower case, as documented)."""
    raw = choice_param(query, name, ("true", "false"))
    return None if raw is None else raw == "true"


def digits_param(query: MultiMapping[str], name: str, what: str) -> str | None:
    """An optional query parameter of one or more ASCII digits; ``what`` names them."""
    raw = one_param(query, name)
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise _errors.validation(f"{name} must be {what}")
    return raw


def iso_param(query: MultiMapping[str], name: str) -> str:
    """A required 2-letter ISO country code query parameter (upper case, as ISO writes it)."""
    raw = one_param(query, name)
    if not raw:
        raise _errors.validation(f"{name} is required (2-letter ISO code, e.g. US)")
    if not ISO2.fullmatch(raw):
        raise _errors.validation(f"{name} must be a 2-letter ISO code in upper case, e.g. US")
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
    """A required 2-letter ISO country code field, in upper case."""
    value = required_str(body, name)
    if not ISO2.fullmatch(value):
        raise _errors.validation(f"{name} must be a 2-letter ISO code in upper case, e.g. US")
    return value


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
