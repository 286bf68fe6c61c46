"""Read-only snapshots a test inspects: orders, the ledger, request counters.

They are copies taken at the time of the call; the live state keeps moving.
"""

from __future__ import annotations

from decimal import Decimal

import attrs


@attrs.frozen(slots=True)
class OrderRecord:
    """One order as the sandbox knows it (times are Unix seconds on the sandbox clock)."""

    id: str
    api_key: str
    service: str
    country: str
    operator: str
    phone_number: str
    status: str
    sms_code: str | None
    price: Decimal
    created_at: float
    expires_at: float
    # When the code became readable through the API; None while there is none.
    code_delivered_at: float | None
    charged: Decimal
    refunded: Decimal
    # The client address the purchase came from (None: bought through the Python API).
    buyer: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict (snake_case keys), as served by the control API."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen(slots=True)
class RentalRecord:
    """One rental as the sandbox knows it."""

    id: str
    api_key: str
    phone_number: str
    country: str
    number_type: str
    status: str
    monthly_price: Decimal
    auto_renew: bool
    forwarding_number: str | None
    voicemail_enabled: bool
    friendly_name: str | None
    created_at: float
    renews_at: float
    messages: int
    calls: int
    # The client address the purchase came from (None: rented through the Python API).
    buyer: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict (snake_case keys), as served by the control API."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen(slots=True)
class LedgerEntry:
    """One movement of money: ``kind`` is order, order_refund, rental, sms or adjustment."""

    kind: str
    ref: str  # order id, rental id, message id; the key for adjustments
    amount: Decimal  # positive; the kind says which way it went
    at: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict, as served by the control API."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen(slots=True)
class Ledger:
    """Every charge and refund of one API key, to prove that no money was lost.

    ``initial`` is the opening balance plus any ``set_balance`` adjustments, so
    ``initial - charged + refunded == balance`` holds at all times
    ([`balanced`][gsim_async.sandbox.Ledger.balanced]).
    """

    api_key: str
    initial: Decimal
    opening: Decimal
    adjustments: Decimal
    charged: Decimal
    refunded: Decimal
    balance: Decimal
    orders_by_status: dict[str, int]
    charges_by_order: dict[str, Decimal]
    refunds_by_order: dict[str, Decimal]
    charges_by_rental: dict[str, Decimal]
    orders: list[OrderRecord]
    entries: list[LedgerEntry]

    @property
    def balanced(self) -> bool:
        """Whether ``initial - charged + refunded == balance``."""
        return self.initial - self.charged + self.refunded == self.balance

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (snake_case keys), as served by the control API."""
        return {
            "api_key": self.api_key,
            "initial": self.initial,
            "opening": self.opening,
            "adjustments": self.adjustments,
            "charged": self.charged,
            "refunded": self.refunded,
            "balance": self.balance,
            "balanced": self.balanced,
            "orders_by_status": dict(self.orders_by_status),
            "charges_by_order": dict(self.charges_by_order),
            "refunds_by_order": dict(self.refunds_by_order),
            "charges_by_rental": dict(self.charges_by_rental),
            "orders": [o.to_dict() for o in self.orders],
            "entries": [e.to_dict() for e in self.entries],
        }


@attrs.frozen(slots=True)
class Stats:
    """Counts of API requests served (control requests are not counted).

    Routes are keyed like ``"GET /api/v1/orders/{id}"``; a request that matched
    no route counts as ``"<METHOD> (unmatched)"``. A connection dropped by a
    fault counts with status 0.
    """

    total: int
    by_route: dict[str, int]
    by_status: dict[int, int]
    by_route_status: dict[tuple[str, int], int]

    @property
    def dropped(self) -> int:
        """Requests whose connection was closed without an answer."""
        return self.by_status.get(0, 0)

    def count(self, route: str, status: int | None = None) -> int:
        """Requests to ``route`` (optionally only those answered with ``status``)."""
        if status is None:
            return self.by_route.get(route, 0)
        return self.by_route_status.get((route, status), 0)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; ``by_route_status`` nests status counts under each route."""
        nested: dict[str, dict[str, int]] = {}
        for (route, status), n in self.by_route_status.items():
            nested.setdefault(route, {})[str(status)] = n
        return {
            "total": self.total,
            "by_route": dict(self.by_route),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "by_route_status": nested,
            "dropped": self.dropped,
        }
