"""Orders: one-time activation numbers, their lifecycle and its money rules.

An order is charged when placed and refunded at most once (cancel, ban,
expiry, or a forced refund); a code arrives by itself after a seeded delay
unless the delivery rules say it never will. Indexes keep the hot paths free
of scans: orders by id, each account's orders in creation order, and per
status a sorted list of creation sequence numbers, so a status-filtered page
is a slice.
"""

from __future__ import annotations

import bisect
import math
import random
from decimal import Decimal

import attrs

from . import _errors
from ._accounts import ZERO, Account, Accounts
from ._catalogue import Catalogue, Offer
from ._clock import Clock, Scheduler
from ._errors import StateError
from ._ids import Ids
from ._json import RawJSON, dumps
from ._records import OrderRecord
from ._timestamps import Timestamps

ORDER_STATUSES = ("PENDING", "RECEIVED", "CANCELLED", "BANNED", "REFUNDED", "EXPIRED")

# (service, country, operator), None meaning any.
Rule = tuple[str | None, str | None, str | None]


@attrs.define(slots=True, eq=False)
class Order:
    """A one-time activation number (mutable, live)."""

    id: str
    account: Account
    seq: int
    service: str
    country: str
    operator: str
    phone_number: str
    price: Decimal
    created_at: float
    expires_at: float
    status: str = "PENDING"
    sms_code: str | None = None
    code_delivered_at: float | None = None
    refunded: Decimal = ZERO
    # Who bought it: the address the purchase came from (None: the Python API).
    buyer: str | None = None
    _wire: tuple[str, RawJSON] | None = None  # (timestamp style, text)

    def wire(self, ts: Timestamps) -> RawJSON:
        """The full Order as on ``GET /orders/{id}``, rendered once per change and style."""
        style = ts.style
        wire = self._wire
        if wire is None or wire[0] != style or style == "varied":
            text = RawJSON(
                dumps(
                    {
                        "id": self.id,
                        "service": self.service,
                        "country": self.country,
                        "operator": self.operator,
                        "phoneNumber": self.phone_number,
                        "smsCode": self.sms_code,
                        "status": self.status,
                        "price": self.price,
                        "createdAt": ts(self.created_at),
                        "expiresAt": ts(self.expires_at),
                    }
                )
            )
            wire = self._wire = (style, text)
        return wire[1]

    def listed_without_code(self, ts: Timestamps) -> dict[str, object]:
        """The Order as a list page shows it when it leaves the code out."""
        return {
            "id": self.id,
            "service": self.service,
            "country": self.country,
            "operator": self.operator,
            "phoneNumber": self.phone_number,
            "status": self.status,
            "price": self.price,
            "createdAt": ts(self.created_at),
            "expiresAt": ts(self.expires_at),
        }

    def purchase_payload(self, ts: Timestamps) -> dict[str, object]:
        """The Order as answered to ``POST /orders`` (no createdAt, no smsCode)."""
        payload = self.listed_without_code(ts)
        del payload["createdAt"]
        return payload

    def changed(self) -> None:
        """Drop the rendered JSON after a mutation."""
        self._wire = None

    def record(self) -> OrderRecord:
        """A frozen snapshot."""
        return OrderRecord(
            id=self.id,
            api_key=self.account.key,
            service=self.service,
            country=self.country,
            operator=self.operator,
            phone_number=self.phone_number,
            status=self.status,
            sms_code=self.sms_code,
            price=self.price,
            created_at=self.created_at,
            expires_at=self.expires_at,
            code_delivered_at=self.code_delivered_at,
            charged=self.price,
            refunded=self.refunded,
            buyer=self.buyer,
        )


@attrs.define(slots=True, eq=False)
class _Held:
    """One account's orders: in creation order, and their seqs per status."""

    orders: list[Order] = attrs.Factory(list)
    by_status: dict[str, list[int]] = attrs.Factory(dict)


def newest_first(items: list[Order], seqs: list[int] | None, page: int, limit: int) -> list[Order]:
    """One page of ``items`` (or of those whose seq is in sorted ``seqs``), newest first."""
    total = len(items) if seqs is None else len(seqs)
    end = total - (page - 1) * limit
    if end <= 0:
        return []
    start = max(0, end - limit)
    if seqs is None:
        return items[start:end][::-1]
    return [items[s] for s in seqs[start:end][::-1]]


class Orders:
    """Every order of a sandbox (API methods raise ApiError; control ones KeyError, StateError)."""

    def __init__(
        self,
        *,
        seed: int,
        ids: Ids,
        accounts: Accounts,
        catalogue: Catalogue,
        clock: Clock,
        scheduler: Scheduler,
        code_delay: tuple[float, float],
        no_code_ratio: float,
        order_ttl: float,
        auto_deliver: bool,
    ) -> None:
        self._ids = ids
        self._accounts = accounts
        self._catalogue = catalogue
        self._clock = clock
        self._scheduler = scheduler
        self.code_delay = code_delay
        self.no_code_ratio = no_code_ratio
        self.order_ttl = order_ttl
        self.auto_deliver = auto_deliver
        self.by_id: dict[str, Order] = {}
        self._held: dict[Account, _Held] = {}
        self._phones: set[str] = set()
        self._rules: dict[Rule, float] = {}  # -> chance of a code arriving by itself
        self._rng = random.Random(f"{seed}:orders")

    def _of(self, account: Account) -> _Held:
        held = self._held.get(account)
        if held is None:
            held = self._held[account] = _Held()
        return held

    # -- the API's rules --

    def quote(self, account: Account, service: str, country: str, operator: str | None) -> Offer:
        """Check a purchase (known ids, stock, balance) without changing anything."""
        offer = self._catalogue.choose(service, country, operator)
        self._accounts.check_funds(account, offer.price)
        return offer

    def place(self, account: Account, offer: Offer, buyer: str | None = None) -> Order:
        """Charge ``offer.price``, take a number and start the order's clock."""
        rng = self._rng
        country = self._catalogue.countries[offer.country]
        phone = country.phone_number(rng)
        while phone in self._phones:
            phone = country.phone_number(rng)
        self._phones.add(phone)
        self._catalogue.take(offer)
        now = math.floor(self._clock.now() * 1000) / 1000
        held = self._of(account)
        order = Order(
            id=self._ids.new_id(),
            account=account,
            seq=len(held.orders),
            service=offer.service,
            country=offer.country,
            operator=offer.operator,
            phone_number=phone,
            price=offer.price,
            created_at=now,
            expires_at=now + self.order_ttl,
            buyer=buyer,
        )
        held.orders.append(order)
        # Creation order is seq order, so appending keeps the index sorted.
        held.by_status.setdefault("PENDING", []).append(order.seq)
        self.by_id[order.id] = order
        self._accounts.charge(account, offer.price, "order", order.id)
        self._scheduler.at(order.expires_at, lambda: self._expire(order))
        if self.auto_deliver:
            delay = rng.uniform(*self.code_delay)
            rate = self.delivery_rate(order.service, order.country, order.operator)
            gets_code = rng.random() >= (self.no_code_ratio if rate is None else 1.0 - rate)
            if gets_code and delay < self.order_ttl:
                self._scheduler.at(now + delay, lambda: self._auto_deliver(order))
        return order

    def get(self, account: Account, order_id: str) -> Order:
        """The account's order, or 404 (another key's order is not found either)."""
        order = self.by_id.get(order_id)
        if order is None or order.account is not account:
            raise _errors.not_found(f"order {order_id!r} not found")
        return order

    def page(
        self, account: Account, status: str | None, page: int, limit: int
    ) -> tuple[list[Order], int]:
        """One page of the account's orders, newest first, and the total matching."""
        held = self._of(account)
        if status is None:
            return newest_first(held.orders, None, page, limit), len(held.orders)
        seqs = held.by_status.get(status, [])
        return newest_first(held.orders, seqs, page, limit), len(seqs)

    def end(self, account: Account, order_id: str, status: str) -> Decimal:
        """Cancel or ban a PENDING order and refund it; 409 in any other state."""
        order = self.get(account, order_id)
        if order.status != "PENDING":
            verb = "cancelled" if status == "CANCELLED" else "banned"
            raise _errors.conflict(f"order {order_id} is {order.status} and cannot be {verb}")
        self._move(order, status)
        return self._refund(order)

    # -- lifecycle --

    def _move(self, order: Order, status: str) -> None:
        by_status = self._of(order.account).by_status
        seqs = by_status[order.status]
        del seqs[bisect.bisect_left(seqs, order.seq)]
        bisect.insort(by_status.setdefault(status, []), order.seq)
        order.status = status
        order.changed()

    def _refund(self, order: Order) -> Decimal:
        # An order is refunded at most once, whatever path asks for it.
        if order.refunded:
            return ZERO
        order.refunded = order.price
        self._accounts.refund(order.account, order.price, "order_refund", order.id)
        return order.price

    def _auto_deliver(self, order: Order) -> None:
        if order.status == "PENDING":
            self._deliver(order, None)

    def _deliver(self, order: Order, code: str | None) -> str:
        if code is None:
            code = f"{self._rng.randrange(1_000_000):06d}"
        order.sms_code = code
        order.code_delivered_at = self._clock.now()
        if order.status != "RECEIVED":
            self._move(order, "RECEIVED")
        order.changed()
        return code

    def _expire(self, order: Order) -> None:
        if order.status == "PENDING":
            self._move(order, "EXPIRED")
            self._refund(order)

    # -- control --

    def deliver_code(self, order_id: str, code: str | None) -> str:
        """Make a code arrive now; StateError unless the order awaits one."""
        order = self.by_id[order_id]
        if order.status != "PENDING" and not (order.status == "RECEIVED" and not order.sms_code):
            raise StateError(f"order {order_id} is {order.status}, not PENDING")
        return self._deliver(order, code)

    def force_status(self, order_id: str, status: str, *, refund: bool) -> Order:
        """Force any status string; ``refund`` also refunds (at most once)."""
        order = self.by_id[order_id]
        if status != order.status:
            self._move(order, status)
        if refund:
            self._refund(order)
        return order

    def set_delivery_rate(
        self, rate: float | None, service: str | None, country: str | None, operator: str | None
    ) -> None:
        """Set (None: remove) the chance that matching orders get a code by themselves.

        Raises ValueError for a rate outside 0..1, ApiError (400) for an unknown id.
        """
        if rate is not None and (isinstance(rate, bool) or not 0.0 <= rate <= 1.0):
            raise ValueError(f"rate must be between 0 and 1 (or None), got {rate!r}")
        catalogue = self._catalogue
        if service is not None:
            catalogue.check_service(service)
        if country is not None:
            catalogue.check_country(country)
        if operator is not None:
            catalogue.check_operator(operator)
        if rate is None:
            self._rules.pop((service, country, operator), None)
        else:
            self._rules[service, country, operator] = float(rate)

    def delivery_rate(self, service: str, country: str, operator: str) -> float | None:
        """The rule for such an order, the most specific first: operator, country, service."""
        rules = self._rules
        if not rules:
            return None
        for o in (operator, None):
            for c in (country, None):
                for s in (service, None):
                    rate = rules.get((s, c, o))
                    if rate is not None:
                        return rate
        return None

    # -- snapshots --

    def records(self, account: Account) -> list[OrderRecord]:
        """Snapshots of the account's orders, oldest first."""
        return [o.record() for o in self._of(account).orders]

    def count_by_status(self, account: Account) -> dict[str, int]:
        """How many of the account's orders are in each status (those with any)."""
        return {s: len(seqs) for s, seqs in self._of(account).by_status.items() if seqs}
