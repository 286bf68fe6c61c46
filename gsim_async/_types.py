"""Small shared types: the "argument not given" sentinel."""

from __future__ import annotations

import enum
from typing import Final, Literal


class NotGiven(enum.Enum):
    """Marks an argument left out, where ``None`` is a meaningful value of its own."""

    NOT_GIVEN = enum.auto()

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN
"""The value of an argument left out (``rentals.update(forwarding_number=None)`` differs)."""
