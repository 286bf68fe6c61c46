"""Argument checks that run before any request, so bad input never costs money."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from ._enums import NumberType, OpenEnum
from ._exceptions import InvalidArgumentError

E = TypeVar("E", bound=OpenEnum)

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ISO2 = re.compile(r"[A-Za-z]{2}")
_DIGITS = re.compile(r"[0-9]+")
# Ids are opaque, but they go into URL paths: only URL-unreserved characters, and not
# "." or ".." (which a server or proxy resolves as path steps).
ID_PATTERN = re.compile(r"(?!\.+\Z)[A-Za-z0-9._~-]+")
_SEARCH_TYPES = {
    "LOCAL": "Local",
    "MOBILE": "Mobile",
    "TOLL_FREE": "TollFree",
    "TOLLFREE": "TollFree",
}


def text(name: str, value: object) -> str:
    """A non-empty string (surrounding whitespace removed)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def identifier(name: str, value: object, reserved: Iterable[str] = ()) -> str:
    """An id to put in a URL path: letters, digits, ``._~-``; not a path step or a route."""
    result = value if type(value) is str else text(name, value)
    if not ID_PATTERN.fullmatch(result) or result in reserved:
        raise InvalidArgumentError(
            f"{name} id {result!r:.60} is not an id (ids are letters, digits and '._~-', "
            "such as 'cma1b2c3...')"
        )
    return result


def path_id(name: str, value: str) -> str:
    """An id already checked by ``identifier`` (a cheap re-check for internal calls)."""
    if ID_PATTERN.fullmatch(value) is None:
        raise InvalidArgumentError(f"{name} id {value!r:.60} is not an id")
    return value


def integer(name: str, value: object, low: int, high: int | None = None) -> int:
    """An int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidArgumentError(f"{name} must be {allowed}, got {value}")
    return value


def page(value: object) -> int:
    """A page number, 1 or more."""
    return integer("page", value, 1)


def limit(value: object, high: int = 100) -> int:
    """A page size, 1 to ``high``."""
    return integer("limit", value, 1, high)


def e164(name: str, value: object) -> str:
    """A phone number in E.164 form (``+`` and 7 to 15 digits)."""
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise InvalidArgumentError(
            f"{name} must be an E.164 phone number such as +14155551234, got {value!r}"
        )
    return value


def sms_body(value: object) -> str:
    """An SMS body of 1 to 1600 characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= 1600:
        size = len(value) if isinstance(value, str) else type(value).__name__
        raise InvalidArgumentError(f"body must be a string of 1 to 1600 characters, got {size}")
    return value


def friendly_name(value: object) -> str:
    """A display name of at most 64 characters."""
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidArgumentError(
            f"friendly_name must be a string of at most 64 characters, got {value!r:.80}"
        )
    return value


def iso_country(value: object) -> str:
    """A 2-letter ISO country code, returned upper case."""
    if not isinstance(value, str) or not _ISO2.fullmatch(value):
        raise InvalidArgumentError(
            f"country must be a 2-letter ISO code such as 'US', got {value!r}"
        )
    return value.upper()


def digits(name: str, value: object) -> str:
    """A string of digits (area code, number pattern)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise InvalidArgumentError(f"{name} must be digits only, got {value!r}")
    return value


def boolean(name: str, value: object) -> bool:
    """A real bool (not a truthy string)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def price(name: str, value: object) -> Decimal:
    """A positive amount of money, kept exact."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidOperation
            amount = Decimal(repr(value))
        elif isinstance(value, (Decimal, int, str)):
            amount = Decimal(value)
        else:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
    return amount


def number_type(value: object) -> NumberType:
    """``NumberType`` or one of ``LOCAL``, ``MOBILE``, ``TOLL_FREE``."""
    if isinstance(value, NumberType) and value.is_known:
        return value
    if isinstance(value, str) and value.upper() in NumberType.__members__:
        return NumberType[value.upper()]
    raise InvalidArgumentError(
        f"number_type must be one of LOCAL, MOBILE, TOLL_FREE, got {value!r}"
    )


def search_type(value: object) -> str:
    """The search spelling (``Local``, ``Mobile``, ``TollFree``) of a number type."""
    if isinstance(value, str):
        key = value.upper().replace("-", "_")
        if key in _SEARCH_TYPES:
            return _SEARCH_TYPES[key]
    raise InvalidArgumentError(
        f"type must be one of Local, Mobile, TollFree (or a NumberType), got {value!r}"
    )


def status(name: str, value: object, enum: type[E]) -> E:
    """A status filter: a known value, or a member made explicitly (``OrderStatus("NEW")``)."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str) and value in enum.__members__:
        return enum[value]
    allowed = ", ".join(enum.__members__)
    raise InvalidArgumentError(f"{name} must be one of {allowed}, got {value!r}")


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """One of a fixed set of strings."""
    options = tuple(allowed)
    if value not in options:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def positive_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgumentError(f"{name} must be {'0 or more' if allow_zero else 'positive'}")
    return float(value)
