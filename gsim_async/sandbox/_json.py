"""Wire encoding: JSON whose numbers carry Decimal money exactly.

``json.dumps`` can only write a Decimal through ``float``, which turns some
amounts into ``0.18000000000000001``-style noise; the small encoder below
writes ``str(Decimal)`` verbatim instead and splices pre-rendered fragments
(``RawJSON``) so hot responses are assembled from cached text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


class RawJSON:
    """Already-encoded JSON text, written as is by ``dumps``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def decimal_text(value: Decimal) -> str:
    """A finite Decimal as a JSON number, without exponent (``Decimal("1.50")`` -> ``1.50``)."""
    if not value.is_finite():
        raise ValueError(f"cannot encode {value} as JSON")
    return format(value, "f")


def dumps(obj: object) -> str:
    """Encode dicts, lists, str, bool, None, int, float, Decimal and RawJSON."""
    parts: list[str] = []
    _encode(obj, parts.append)
    return "".join(parts)


def _encode(obj: Any, out: Callable[[str], object]) -> None:
    kind = type(obj)
    if kind is str:
        out(_encode_str(obj))
    elif kind is dict:
        out("{")
        first = True
        for key, value in obj.items():
            if first:
                first = False
            else:
                out(",")
            out(_encode_str(key))
            out(":")
            _encode(value, out)
        out("}")
    elif kind is list or kind is tuple:
        out("[")
        first = True
        for value in obj:
            if first:
                first = False
            else:
                out(",")
            _encode(value, out)
        out("]")
    elif obj is None:
        out("null")
    elif obj is True:
        out("true")
    elif obj is False:
        out("false")
    elif kind is Decimal:
        out(decimal_text(obj))
    elif kind is int:
        out(int.__repr__(obj))
    elif kind is float:
        if not math.isfinite(obj):
            raise ValueError(f"cannot encode {obj} as JSON")
        out(float.__repr__(obj))
    elif kind is RawJSON:
        out(obj.text)
    else:
        raise TypeError(f"cannot encode {kind.__name__} as JSON")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Decode JSON with non-integral numbers as Decimal; NaN and Infinity are rejected."""
    return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)
