"""The one cattrs converter: wire JSON (camelCase, numbers, RFC 3339 strings) → models.

Used at the transport's edge only: the rest of the SDK sees models, never dicts.
Requests are small dicts the namespaces build; ``dumps`` writes them with money
exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Generic, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._enums import OpenEnum, OrderStatus
from ._models import Capabilities, Order

T = TypeVar("T")

__all__ = ["Listing", "decoder", "dumps", "listing", "loads", "parse_datetime"]

Decoder = Callable[[Any], T]

# Wire names that are not the plain camelCase of the attribute.
_RENAMES: dict[type, dict[str, str]] = {
    Capabilities: {"sms": "SMS", "mms": "MMS"},
}


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_names(cl: type) -> dict[str, str]:
    """Attribute name → JSON field name of an attrs model."""
    special = _RENAMES.get(cl, {})
    return {a.name: special.get(a.name, _camel(a.name)) for a in attrs.fields(cl)}


def _to_decimal(value: Any, _: type) -> Decimal:
    if type(value) is Decimal:
        return value
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    try:
        # repr() of a float is its shortest round-tripping text: 0.1 -> Decimal("0.1").
        result = Decimal(repr(value) if isinstance(value, float) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


# RFC 3339 (section 5.6), plus the space separator ISO 8601 and many servers allow.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def parse_datetime(value: str) -> datetime:
    """Any RFC 3339 timestamp, on every supported Python, as an aware UTC datetime.

    Python 3.10's ``fromisoformat`` takes only 0, 3 or 6 fraction digits and no ``Z``;
    the API documents ``...000Z`` but "a client must accept any RFC 3339 form". A
    timestamp without an offset is taken as UTC (the API documents UTC), and a leap
    second (``:60``) as the last microsecond of its minute.
    """
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    sec = int(second)
    if sec == 60:
        sec, micro = 59, 999_999
    tz = timezone.utc
    if sign is not None and not zulu:
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        if delta:
            tz = timezone(-delta if sign == "-" else delta)
    parsed = datetime(
        int(year), int(month), int(day), int(hour), int(minute), sec, micro, tzinfo=tz
    )
    return parsed if tz is timezone.utc else parsed.astimezone(timezone.utc)


def format_datetime(value: datetime) -> str:
    """An aware datetime as the API shows one: UTC, milliseconds, ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _to_datetime(value: Any, _: type) -> datetime:
    if type(value) is str and len(value) == 24 and value[-1] == "Z" and value[19] == ".":
        # The API's own form on the hot path ("2024-03-15T10:00:00.000Z"): three
        # fraction digits and an offset are what every Python's fromisoformat reads.
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            pass  # let the general parser say what is wrong
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 string, got {value!r}")
    return parse_datetime(value)


def _to_str(value: Any, _: type) -> str:
    # Ids, codes and phone numbers are strings, but a server may send a code as a number.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {value!r}")


def _to_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise TypeError(f"expected an integer, got {value!r}")


def _to_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


def _optional(hook: Any) -> Any:
    def structure_optional(value: Any, cl: Any) -> Any:
        return None if value is None else hook(value, cl)

    return structure_optional


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(Decimal, _to_decimal)
    conv.register_structure_hook(datetime, _to_datetime)
    # Predicates, not classes: a class hook would also catch str/int subclasses (our enums).
    conv.register_structure_hook_func(lambda t: t is str, _to_str)
    conv.register_structure_hook_func(lambda t: t is int, _to_int)
    conv.register_structure_hook_func(lambda t: t is bool, _to_bool)
    # Direct hooks for the optional fields: cattrs' generic Optional dispatch costs a
    # lookup per field per model, which shows on the per-request hot path.
    for inner, hook in (
        (str, _to_str),
        (int, _to_int),
        (bool, _to_bool),
        (Decimal, _to_decimal),
        (datetime, _to_datetime),
    ):
        conv.register_structure_hook(inner | None, _optional(hook))

    def is_open_enum(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, OpenEnum)

    # cattrs' own enum hook raises on unknown values; ours keeps them readable.
    conv.register_structure_hook_func(is_open_enum, lambda v, t: t(_to_str(v, str)))

    def structure_factory(cl: type) -> Any:
        overrides: dict[str, Any] = {
            a: override(rename=w) for a, w in wire_names(cl).items() if a != w
        }
        return make_dict_structure_fn(cl, conv, _cattrs_forbid_extra_keys=False, **overrides)

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    # The model every poll and every orders.get builds: by hand, field by field, with
    # the same hooks (tests/test_converter.py checks it against the generated one).
    conv.register_structure_hook(Order, _structure_order)
    return conv


_ORDER_STATUS = OrderStatus._value2member_map_


def _opt_str(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    return _to_str(value, str)


def _opt_datetime(value: Any) -> datetime | None:
    return None if value is None else _to_datetime(value, datetime)


def _structure_order(data: Any, _: type) -> Order:
    if type(data) is not dict:
        raise TypeError(f"expected an order object, got {data!r:.80}")
    status = data["status"]
    known = _ORDER_STATUS.get(status) if type(status) is str else None
    get = data.get
    return Order(
        id=_to_str(data["id"], str),
        service=_to_str(data["service"], str),
        phone_number=_to_str(data["phoneNumber"], str),
        status=known if known is not None else OrderStatus(_to_str(status, str)),  # type: ignore[arg-type]
        price=_to_decimal(data["price"], Decimal),
        country=_opt_str(get("country")),
        operator=_opt_str(get("operator")),
        sms_code=_opt_str(get("smsCode")),
        created_at=_opt_datetime(get("createdAt")),
        expires_at=_opt_datetime(get("expiresAt")),
    )


def order_to_wire(order: Order) -> dict[str, Any]:
    """An order as the API shows one (journals and fleets pass orders on this way)."""
    return {
        "id": order.id,
        "service": order.service,
        "country": order.country,
        "operator": order.operator,
        "phoneNumber": order.phone_number,
        "smsCode": order.sms_code,
        "status": order.status.value,
        "price": str(order.price),
        "createdAt": order.created_at and format_datetime(order.created_at),
        "expiresAt": order.expires_at and format_datetime(order.expires_at),
    }


def generated_structure(cl: type) -> Any:
    """cattrs' own generated hook for ``cl`` (to check a hand-written one against)."""
    overrides: dict[str, Any] = {a: override(rename=w) for a, w in wire_names(cl).items() if a != w}
    return make_dict_structure_fn(cl, converter, _cattrs_forbid_extra_keys=False, **overrides)


converter = _make_converter()


@cache
def decoder(cl: Any) -> Decoder[Any]:
    """A function turning decoded wire JSON into ``cl`` (a model, or ``list[Model]``)."""
    hook = converter.get_structure_hook(cl)

    def decode(data: Any) -> Any:
        return hook(data, cl)

    return decode


@attrs.frozen
class Listing(Generic[T]):
    """A list endpoint's answer: its items, and whatever it said of the whole list."""

    items: Sequence[T]
    total: int | None = None
    page: int | None = None
    limit: int | None = None
    total_pages: int | None = None


@attrs.frozen
class _Meta:
    total: int | None = None
    page: int | None = None
    limit: int | None = None
    total_pages: int | None = None


@cache
def listing(key: str, item: Any) -> Decoder[Listing[Any]]:
    """The decoder of a list answer whose items are under ``key`` (``"orders"``, ...)."""
    items_hook = decoder(list[item])
    meta_hook = decoder(_Meta)

    def decode(data: Any) -> Listing[Any]:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise TypeError(f"expected an object with a {key!r} list")
        meta = meta_hook(data)
        return Listing(
            tuple(items_hook(data[key])), meta.total, meta.page, meta.limit, meta.total_pages
        )

    return decode


def loads(data: bytes | str) -> Any:
    """Decode JSON with money kept exact: every JSON fraction becomes a ``Decimal``."""
    if isinstance(data, (bytes, bytearray)):
        try:
            # JSON is UTF-8 (RFC 8259); only a body that is not gets the slow path.
            text = data.decode()
        except UnicodeDecodeError:
            # As json.loads does: UTF-8/16/32 told by the first bytes.
            text = data.decode(json.detect_encoding(data), "surrogatepass")
        if text[:1] == "\ufeff":
            text = text[1:]
        return _DECODER.decode(text)
    return _DECODER.decode(data)


# One decoder for every body: json.loads(..., parse_float=...) builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal)


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        # json can only emit a number through float; money has few enough digits that
        # the float's shortest repr is the same decimal text (checked, not assumed).
        as_float = float(o)
        if Decimal(repr(as_float)) != o:
            raise ValueError(f"{o} cannot be sent as an exact JSON number")
        return as_float
    if isinstance(o, datetime):
        return format_datetime(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(data: Any) -> str:
    """Encode a request body as JSON, money as exact numbers."""
    return json.dumps(data, default=_json_default, separators=(",", ":"))
