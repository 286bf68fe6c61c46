"""What the API returns, as frozen, slotted attrs classes (snake_case, Decimal, aware UTC)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

import attrs
from attrs import field, frozen

from ._enums import Direction, NumberType, OrderStatus, RentalStatus

T = TypeVar("T")

__all__ = [
    "AvailableNumber",
    "Balance",
    "Call",
    "Capabilities",
    "Country",
    "Dispatched",
    "Message",
    "Operator",
    "Order",
    "OrderStats",
    "Page",
    "PlacedCall",
    "Refund",
    "Rental",
    "RentalUpdate",
    "SentMessage",
    "Service",
    "StatsProgress",
]


@frozen
class Balance:
    """The account's balance."""

    balance: Decimal
    currency: str = "USD"


@frozen
class Service:
    """A service numbers can be bought for (``telegram``)."""

    id: str
    name: str
    min_price: Decimal
    count: int = 0


@frozen
class Country:
    """A country numbers can be bought in."""

    id: str
    name: str
    iso: str | None = None
    min_price: Decimal | None = None
    count: int = 0


@frozen
class Operator:
    """A mobile operator of a country, with the price of one activation."""

    id: str
    name: str
    price: Decimal
    count: int = 0


@frozen
class Order:
    """A one-time activation number; ``sms_code`` is set once the code arrived.

    ``created_at`` is the server's own stamp. The purchase answer carries none, so the
    order ``orders.create()`` returns has ``created_at=None``; ``orders.get()`` and the
    list pages give it. It is not filled in from the answer's ``Date`` header, which a
    proxy may rewrite: the SDK matches orders by the server's stamps alone.
    """

    id: str
    service: str
    phone_number: str
    status: OrderStatus
    price: Decimal
    country: str | None = None
    operator: str | None = None
    sms_code: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None

    def merged(self, newer: Order) -> Order:
        """``newer``, with the fields it omits taken from this (older) copy."""
        return attrs.evolve(
            newer,
            country=newer.country if newer.country is not None else self.country,
            operator=newer.operator if newer.operator is not None else self.operator,
            sms_code=newer.sms_code if newer.sms_code is not None else self.sms_code,
            created_at=newer.created_at or self.created_at,
            expires_at=newer.expires_at or self.expires_at,
        )


@frozen
class OrderStats:
    """What one (service, country, operator) gave this account, from its order history.

    ``orders`` counts every order, ``codes`` those that received a code and ``pending``
    those still waiting for one; ``success_rate`` is ``codes`` over the orders that
    ended (``None`` while none did). ``spent`` is the price of every order and
    ``refunded`` that of the orders that ended without a code (cancelled, banned,
    expired, refunded), so ``spent - refunded`` is what the account paid;
    ``cost_per_code`` is that over ``codes`` (``None`` without codes).

    The API says when an order was made but not when its code came:
    ``median_time_to_code`` (seconds from ``createdAt``) covers only the codes this
    client saw arrive while waiting for them, each counted when its poll saw it (so
    at most one poll interval late); ``observed`` is how many that is, and the median
    is ``None`` when it is 0.
    """

    service: str
    country: str | None
    operator: str | None
    orders: int
    codes: int
    success_rate: float | None
    median_time_to_code: float | None
    spent: Decimal
    refunded: Decimal
    cost_per_code: Decimal | None
    pending: int = 0
    observed: int = 0


@frozen
class StatsProgress:
    """How far ``orders.stats()`` has read the order history.

    ``total_pages`` and ``total`` are the server's counts of the whole history; with
    ``since`` the reading stops earlier.
    """

    pages: int
    orders: int
    total_pages: int
    total: int


@frozen
class Refund:
    """The answer to a cancel or ban: what was given back to the balance."""

    success: bool
    refunded: Decimal


@frozen
class Capabilities:
    """What a rentable number can do."""

    voice: bool = False
    sms: bool = False
    mms: bool = False


@frozen
class AvailableNumber:
    """A number offered by ``rentals.search``; ``monthly_price`` is the base price, if given."""

    phone_number: str
    friendly_name: str | None = None
    locality: str | None = None
    region: str | None = None
    iso_country: str | None = None
    capabilities: Capabilities = field(factory=Capabilities)
    monthly_price: Decimal | None = None


@frozen
class Message:
    """An SMS received on or sent from a rental."""

    id: str
    direction: Direction
    from_: str
    to: str
    body: str
    status: str | None = None
    created_at: datetime | None = None


@frozen
class Call:
    """A call received on or placed from a rental."""

    id: str
    direction: Direction
    from_: str
    to: str
    status: str | None = None
    duration: int | None = None
    created_at: datetime | None = None


@frozen
class Rental:
    """A long-term virtual number; ``messages`` and ``calls`` are filled by ``rentals.get``."""

    id: str
    phone_number: str
    status: RentalStatus
    country: str | None = None
    number_type: NumberType | None = None
    monthly_price: Decimal | None = None
    auto_renew: bool | None = None
    renews_at: datetime | None = None
    forwarding_number: str | None = None
    voicemail_enabled: bool | None = None
    friendly_name: str | None = None
    created_at: datetime | None = None
    messages: tuple[Message, ...] = ()
    calls: tuple[Call, ...] = ()


@frozen
class RentalUpdate:
    """What ``rentals.update`` set; a field the server did not echo is ``None``."""

    id: str
    auto_renew: bool | None = None
    forwarding_number: str | None = None
    voicemail_enabled: bool | None = None
    friendly_name: str | None = None


@frozen
class Dispatched:
    """Something the server accepted to send from a rental: an SMS or a call."""

    id: str
    status: str
    twilio_sid: str | None = None


@frozen
class SentMessage(Dispatched):
    """An outbound SMS accepted for delivery (``status`` e.g. ``queued``)."""


@frozen
class PlacedCall(Dispatched):
    """An outbound call that was started (``status`` e.g. ``RINGING``)."""


@frozen
class Page(Generic[T]):
    """One page of a list; iterate it directly or read ``items``."""

    items: Sequence[T]
    total: int
    page: int
    limit: int
    total_pages: int

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_next(self) -> bool:
        """Whether a later page exists."""
        return self.page < self.total_pages


# Resolved now: the package re-homes these classes (``__module__ = "gsim_async"``), after
# which their string annotations could no longer be evaluated by cattrs.
for _name in __all__:
    attrs.resolve_types(globals()[_name])
del _name
