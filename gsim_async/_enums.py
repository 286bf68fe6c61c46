"""Enums that compare equal to their wire strings and accept values added later."""

from __future__ import annotations

import enum
from typing import Any


class OpenEnum(str, enum.Enum):
    """A ``str`` enum that keeps an unknown value readable instead of failing.

    ``OrderStatus("ON_HOLD")`` returns a pseudo-member whose ``value`` and ``name`` are
    ``"ON_HOLD"`` and whose ``is_known`` is false, so a status the server adds later
    parses without error.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        # Cached so that identity comparisons hold for repeated unknown values too.
        cls._value2member_map_[value] = member
        return member

    @property
    def is_known(self) -> bool:
        """Whether this value is one the SDK was built with."""
        return self._name_ in type(self).__members__

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}>"


class OrderStatus(OpenEnum):
    """Status of a one-time activation order."""

    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    CANCELLED = "CANCELLED"
    BANNED = "BANNED"
    EXPIRED = "EXPIRED"
    REFUNDED = "REFUNDED"


#: Statuses after which no code will ever arrive.
TERMINAL_WITHOUT_CODE = frozenset(
    {OrderStatus.CANCELLED, OrderStatus.BANNED, OrderStatus.EXPIRED, OrderStatus.REFUNDED}
)


class RentalStatus(OpenEnum):
    """Status of a long-term rental."""

    ACTIVE = "ACTIVE"
    PENDING_RENEWAL = "PENDING_RENEWAL"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class NumberType(OpenEnum):
    """Kind of a rentable number."""

    LOCAL = "LOCAL"
    MOBILE = "MOBILE"
    TOLL_FREE = "TOLL_FREE"


class Direction(OpenEnum):
    """Direction of a message or call."""

    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"
