"""The one cattrs converter: wire JSON (camelCase, numbers, ``...Z`` strings) ⇄ models."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._enums import OpenEnum
from ._models import AvailableNumber, Call, Capabilities, Message, Order, Rental

T = TypeVar("T")

__all__ = ["converter", "dumps", "loads", "structure"]

# Wire names that are not the plain camelCase of the attribute.
_RENAMES: dict[type, dict[str, str]] = {
    Capabilities: {"sms": "SMS", "mms": "MMS"},
}


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _wire_names(cl: type) -> dict[str, str]:
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


def parse_datetime(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` suffix accepted on 3.10 too) into aware UTC."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        # The API documents UTC; a naive timestamp is taken as UTC, not local time.
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as the API does: UTC, milliseconds, ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_READS_Z = sys.version_info >= (3, 11)


def _to_datetime(value: Any, _: type) -> datetime:
    if type(value) is str and value[-1:] == "Z":
        # The API's own form, on the hot path: "2024-03-15T10:00:00.000Z" (Python 3.11
        # reads the Z itself; 3.10 needs it spelled as an offset).
        try:
            return datetime.fromisoformat(value if _READS_Z else value[:-1] + "+00:00")
        except ValueError:
            pass  # let the general parser say what is wrong
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {value!r}")
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
    conv.register_unstructure_hook(Decimal, lambda d: d)
    conv.register_structure_hook(datetime, _to_datetime)
    conv.register_unstructure_hook(datetime, format_datetime)
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
    conv.register_unstructure_hook_func(is_open_enum, lambda v: v.value)

    def structure_factory(cl: type) -> Any:
        names = _wire_names(cl)
        overrides: dict[str, Any] = {a: override(rename=w) for a, w in names.items() if a != w}
        return make_dict_structure_fn(cl, conv, _cattrs_forbid_extra_keys=False, **overrides)

    def unstructure_factory(cl: type) -> Any:
        names = _wire_names(cl)
        overrides: dict[str, Any] = {a: override(rename=w) for a, w in names.items() if a != w}
        return make_dict_unstructure_fn(cl, conv, **overrides)

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    return conv


converter = _make_converter()


def structure(data: Any, cl: type[T]) -> T:
    """Wire JSON (already decoded) to a model."""
    return converter.structure(data, cl)


# One decoder for every body: json.loads(..., parse_float=...) builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal)


def loads(data: bytes | str) -> Any:
    """Decode JSON with money kept exact: every JSON fraction becomes a ``Decimal``."""
    if isinstance(data, (bytes, bytearray)):
        # As json.loads does: UTF-8/16/32 told by the first bytes.
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return _DECODER.decode(data)


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
    """Encode JSON, money as exact numbers."""
    return json.dumps(data, default=_json_default, separators=(",", ":"))


# Envelopes of the list endpoints; turned into Page by _pagination.


@attrs.frozen(kw_only=True)
class Envelope(Generic[T]):
    """What every list response may say besides its items (rentals and SMS omit some)."""

    total: int | None = None
    page: int | None = None
    limit: int | None = None
    total_pages: int | None = None

    @property
    def items(self) -> Sequence[T]:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class OrderList(Envelope[Order]):
    orders: list[Order]

    @property
    def items(self) -> Sequence[Order]:
        return self.orders


@attrs.frozen(kw_only=True)
class RentalList(Envelope[Rental]):
    rentals: list[Rental]

    @property
    def items(self) -> Sequence[Rental]:
        return self.rentals


@attrs.frozen(kw_only=True)
class MessageList(Envelope[Message]):
    messages: list[Message]

    @property
    def items(self) -> Sequence[Message]:
        return self.messages


@attrs.frozen(kw_only=True)
class CallList(Envelope[Call]):
    calls: list[Call]

    @property
    def items(self) -> Sequence[Call]:
        return self.calls


@attrs.frozen
class SearchResult:
    numbers: list[AvailableNumber]


@attrs.frozen
class Success:
    success: bool = True
