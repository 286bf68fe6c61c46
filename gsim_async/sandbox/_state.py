"""The sandbox's domain state: accounts, balances, orders, rentals and the ledger.

Everything runs on the event loop thread without awaits, so each method is
atomic with respect to concurrent requests. Methods used by the HTTP API raise
:class:`ApiError`; the test-control methods raise ``KeyError`` (unknown id)
and ``ValueError`` (not allowed in the current state).

Indexes keep the hot paths free of scans: orders by id (global), each
account's orders in creation order, and per status a sorted list of creation
sequence numbers, so a status-filtered page is a slice.
"""

from __future__ import annotations

import bisect
import math
import random
import string
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TypeVar

import attrs

from . import _catalogue, _errors
from ._catalogue import AvailableNumber, Catalogue, Offer
from ._clock import Clock, Scheduler
from ._errors import ApiError, StateError
from ._json import RawJSON, dumps
from ._records import Ledger, LedgerEntry, OrderRecord, RentalRecord
from ._timestamps import Timestamps

ZERO = Decimal(0)
ORDER_STATUSES = ("PENDING", "RECEIVED", "CANCELLED", "BANNED", "REFUNDED", "EXPIRED")
RENTAL_STATUSES = ("ACTIVE", "PENDING_RENEWAL", "EXPIRED", "CANCELLED")
# A rental in one of these no longer holds its number.
_RELEASED = ("CANCELLED", "EXPIRED")
RENTAL_PERIOD = 30 * 24 * 3600.0
RECENT = 20  # messages and calls embedded in a rental's detail
_ALNUM = string.ascii_lowercase + string.digits
_KEY_CHARS = string.ascii_letters + string.digits
T = TypeVar("T")


@attrs.define(slots=True, eq=False)
class Account:
    """One API key and what it owns."""

    key: str
    balance: Decimal
    opening: Decimal
    revoked: bool = False
    adjustments: Decimal = ZERO
    charged: Decimal = ZERO
    refunded: Decimal = ZERO
    orders: list[Order] = attrs.Factory(list)
    by_status: dict[str, list[int]] = attrs.Factory(dict)
    rentals: list[Rental] = attrs.Factory(list)
    entries: list[LedgerEntry] = attrs.Factory(list)


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

    def purchase_payload(self, ts: Timestamps) -> dict[str, object]:
        """The Order as answered to ``POST /orders`` (no createdAt, no smsCode)."""
        return {
            "id": self.id,
            "service": self.service,
            "country": self.country,
            "operator": self.operator,
            "phoneNumber": self.phone_number,
            "status": self.status,
            "price": self.price,
            "expiresAt": ts(self.expires_at),
        }

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
        )


@attrs.define(slots=True, eq=False)
class Message:
    """An SMS sent or received on a rental."""

    id: str
    direction: str
    sender: str
    to: str
    body: str
    status: str
    created_at: float

    def payload(self, ts: Timestamps) -> dict[str, object]:
        """The Message on the wire."""
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "status": self.status,
            "createdAt": ts(self.created_at),
        }


@attrs.define(slots=True, eq=False)
class Call:
    """A voice call placed or received on a rental."""

    id: str
    direction: str
    sender: str
    to: str
    status: str
    duration: int
    created_at: float

    def payload(self, ts: Timestamps) -> dict[str, object]:
        """The Call on the wire."""
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.sender,
            "to": self.to,
            "status": self.status,
            "duration": self.duration,
            "createdAt": ts(self.created_at),
        }


@attrs.define(slots=True, eq=False)
class Rental:
    """A long-term virtual number (mutable, live)."""

    id: str
    account: Account
    phone_number: str
    country: str
    number_type: str
    monthly_price: Decimal
    created_at: float
    renews_at: float
    status: str = "ACTIVE"
    auto_renew: bool = True
    forwarding_number: str | None = None
    voicemail_enabled: bool = False
    friendly_name: str | None = None
    messages: list[Message] = attrs.Factory(list)
    calls: list[Call] = attrs.Factory(list)

    def payload(self, ts: Timestamps, *, detail: bool = False) -> dict[str, object]:
        """The Rental on the wire; ``detail`` adds the most recent messages and calls."""
        body: dict[str, object] = {
            "id": self.id,
            "phoneNumber": self.phone_number,
            "country": self.country,
            "numberType": self.number_type,
            "status": self.status,
            "monthlyPrice": self.monthly_price,
            "autoRenew": self.auto_renew,
            "renewsAt": ts(self.renews_at),
            "createdAt": ts(self.created_at),
            "friendlyName": self.friendly_name,
            "forwardingNumber": self.forwarding_number,
            "voicemailEnabled": self.voicemail_enabled,
        }
        if detail:
            body["messages"] = [m.payload(ts) for m in self.messages[: -RECENT - 1 : -1]]
            body["calls"] = [c.payload(ts) for c in self.calls[: -RECENT - 1 : -1]]
        return body

    def record(self) -> RentalRecord:
        """A frozen snapshot."""
        return RentalRecord(
            id=self.id,
            api_key=self.account.key,
            phone_number=self.phone_number,
            country=self.country,
            number_type=self.number_type,
            status=self.status,
            monthly_price=self.monthly_price,
            auto_renew=self.auto_renew,
            forwarding_number=self.forwarding_number,
            voicemail_enabled=self.voicemail_enabled,
            friendly_name=self.friendly_name,
            created_at=self.created_at,
            renews_at=self.renews_at,
            messages=len(self.messages),
            calls=len(self.calls),
        )


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


def page_of(items: Sequence[T], page: int, limit: int) -> list[T]:
    """One page of ``items`` (oldest first in the list), newest first."""
    end = len(items) - (page - 1) * limit
    if end <= 0:
        return []
    return list(items[max(0, end - limit) : end][::-1])


class State:
    """Accounts, orders, rentals and money of one sandbox."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        scheduler: Scheduler,
        catalogue: Catalogue,
        code_delay: tuple[float, float],
        no_code_ratio: float,
        order_ttl: float,
        auto_deliver: bool,
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.scheduler = scheduler
        self.catalogue = catalogue
        self.code_delay = code_delay
        self.no_code_ratio = no_code_ratio
        self.order_ttl = order_ttl
        self.auto_deliver = auto_deliver
        # (service, country, operator), None for any -> chance of a code arriving by itself.
        self.delivery_rules: dict[tuple[str | None, str | None, str | None], float] = {}
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.rentals: dict[str, Rental] = {}
        self._order_phones: set[str] = set()
        self._rented: dict[str, Rental] = {}  # phone -> rental holding it
        self._offered: dict[str, AvailableNumber] = {}
        self._ids: set[str] = set()
        # One stream per concern: adding a fault does not shift the codes drawn.
        self._rng_keys = random.Random(f"{seed}:keys")
        self._rng_ids = random.Random(f"{seed}:ids")
        self._rng_orders = random.Random(f"{seed}:orders")
        self._rng_rentals = random.Random(f"{seed}:rentals")

    # -- ids and keys --

    def new_id(self) -> str:
        """An unused opaque id: ``cm`` + 23 lowercase alphanumerics."""
        while True:
            new = "cm" + "".join(self._rng_ids.choices(_ALNUM, k=23))
            if new not in self._ids:
                self._ids.add(new)
                return new

    def _sid(self, prefix: str) -> str:
        return prefix + "".join(self._rng_ids.choices("0123456789abcdef", k=32))

    # -- accounts --

    def add_account(self, key: str | None, balance: Decimal) -> Account:
        """Create an API key with an opening balance; ``None`` draws a ``2s_...`` key."""
        if key is None:
            while True:
                key = "2s_" + "".join(self._rng_keys.choices(_KEY_CHARS, k=40))
                if key not in self.accounts:
                    break
        if key in self.accounts:
            raise ValueError(f"API key {key!r} exists already")
        account = Account(key=key, balance=balance, opening=balance)
        self.accounts[key] = account
        return account

    def account(self, key: str) -> Account:
        """The account of ``key`` (KeyError if unknown)."""
        try:
            return self.accounts[key]
        except KeyError:
            raise KeyError(f"unknown API key {key!r}") from None

    def authenticate(self, header: str | None) -> Account:
        """The account named by an ``Authorization: Bearer`` header, or 401/403."""
        if not header:
            raise ApiError(401, "UNAUTHORIZED", "missing API key: send Authorization: Bearer <key>")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "UNAUTHORIZED", "malformed Authorization header: use Bearer <key>")
        account = self.accounts.get(key.strip())
        if account is None:
            raise ApiError(401, "UNAUTHORIZED", "invalid API key")
        if account.revoked:
            raise ApiError(403, "FORBIDDEN", "API key has been revoked")
        return account

    # -- money --

    def _charge(self, account: Account, amount: Decimal, kind: str, ref: str) -> None:
        account.balance -= amount
        account.charged += amount
        account.entries.append(LedgerEntry(kind, ref, amount, self.clock.now()))

    def _refund_order(self, order: Order) -> Decimal:
        # An order is refunded at most once, whatever path asks for it.
        if order.refunded:
            return ZERO
        account = order.account
        account.balance += order.price
        account.refunded += order.price
        order.refunded = order.price
        account.entries.append(LedgerEntry("order_refund", order.id, order.price, self.clock.now()))
        return order.price

    def set_balance(self, account: Account, amount: Decimal) -> None:
        """Set the balance; the difference is booked as an adjustment."""
        delta = amount - account.balance
        account.balance = amount
        account.adjustments += delta
        account.entries.append(LedgerEntry("adjustment", account.key, delta, self.clock.now()))

    def ledger(self, account: Account) -> Ledger:
        """A snapshot of the account's money movements."""
        by_status: dict[str, int] = {}
        charges: dict[str, Decimal] = {}
        refunds: dict[str, Decimal] = {}
        rental_charges: dict[str, Decimal] = {}
        for entry in account.entries:
            if entry.kind == "order":
                charges[entry.ref] = charges.get(entry.ref, ZERO) + entry.amount
            elif entry.kind == "order_refund":
                refunds[entry.ref] = refunds.get(entry.ref, ZERO) + entry.amount
            elif entry.kind == "rental":
                rental_charges[entry.ref] = rental_charges.get(entry.ref, ZERO) + entry.amount
        for status, seqs in account.by_status.items():
            if seqs:
                by_status[status] = len(seqs)
        return Ledger(
            api_key=account.key,
            initial=account.opening + account.adjustments,
            opening=account.opening,
            adjustments=account.adjustments,
            charged=account.charged,
            refunded=account.refunded,
            balance=account.balance,
            orders_by_status=by_status,
            charges_by_order=charges,
            refunds_by_order=refunds,
            charges_by_rental=rental_charges,
            orders=[o.record() for o in account.orders],
            entries=list(account.entries),
        )

    # -- orders --

    def quote_order(
        self, account: Account, service: str, country: str, operator: str | None
    ) -> Offer:
        """Check a purchase (known ids, stock, balance) without changing anything."""
        offer = self.catalogue.choose(service, country, operator)
        if account.balance < offer.price:
            raise _errors.insufficient_balance(offer.price, account.balance)
        return offer

    def place_order(self, account: Account, offer: Offer) -> Order:
        """Charge ``offer.price``, take a number and start the order's clock."""
        rng = self._rng_orders
        country = self.catalogue.countries[offer.country]
        phone = country.phone_number(rng)
        while phone in self._order_phones:
            phone = country.phone_number(rng)
        self._order_phones.add(phone)
        self.catalogue.take(offer)
        now = math.floor(self.clock.now() * 1000) / 1000
        order = Order(
            id=self.new_id(),
            account=account,
            seq=len(account.orders),
            service=offer.service,
            country=offer.country,
            operator=offer.operator,
            phone_number=phone,
            price=offer.price,
            created_at=now,
            expires_at=now + self.order_ttl,
        )
        account.orders.append(order)
        # Creation order is seq order, so appending keeps the index sorted.
        account.by_status.setdefault("PENDING", []).append(order.seq)
        self.orders[order.id] = order
        self._charge(account, offer.price, "order", order.id)
        self.scheduler.at(order.expires_at, lambda: self._expire(order))
        if self.auto_deliver:
            delay = rng.uniform(*self.code_delay)
            rate = self.delivery_rate(order.service, order.country, order.operator)
            gets_code = rng.random() >= (self.no_code_ratio if rate is None else 1.0 - rate)
            if gets_code and delay < self.order_ttl:
                self.scheduler.at(now + delay, lambda: self._auto_deliver(order))
        return order

    def set_delivery_rate(
        self, rate: float | None, service: str | None, country: str | None, operator: str | None
    ) -> None:
        """Set (None: remove) the chance that matching orders get a code by themselves."""
        if rate is None:
            self.delivery_rules.pop((service, country, operator), None)
        else:
            self.delivery_rules[service, country, operator] = rate

    def delivery_rate(self, service: str, country: str, operator: str) -> float | None:
        """The rule for such an order, the most specific first: operator, country, service."""
        rules = self.delivery_rules
        if not rules:
            return None
        for o in (operator, None):
            for c in (country, None):
                for s in (service, None):
                    rate = rules.get((s, c, o))
                    if rate is not None:
                        return rate
        return None

    def get_order(self, account: Account, order_id: str) -> Order:
        """The account's order, or 404 (another key's order is not found either)."""
        order = self.orders.get(order_id)
        if order is None or order.account is not account:
            raise _errors.not_found(f"order {order_id!r} not found")
        return order

    def list_orders(
        self, account: Account, status: str | None, page: int, limit: int
    ) -> tuple[list[Order], int]:
        """One page of the account's orders, newest first, and the total matching."""
        if status is None:
            return newest_first(account.orders, None, page, limit), len(account.orders)
        seqs = account.by_status.get(status, [])
        return newest_first(account.orders, seqs, page, limit), len(seqs)

    def _move(self, order: Order, status: str) -> None:
        seqs = order.account.by_status[order.status]
        del seqs[bisect.bisect_left(seqs, order.seq)]
        bisect.insort(order.account.by_status.setdefault(status, []), order.seq)
        order.status = status
        order.changed()

    def end_order(self, account: Account, order_id: str, status: str) -> Decimal:
        """Cancel or ban a PENDING order and refund it; 409 in any other state."""
        order = self.get_order(account, order_id)
        if order.status != "PENDING":
            verb = "cancelled" if status == "CANCELLED" else "banned"
            raise _errors.conflict(f"order {order_id} is {order.status} and cannot be {verb}")
        self._move(order, status)
        return self._refund_order(order)

    def _auto_deliver(self, order: Order) -> None:
        if order.status == "PENDING":
            self._deliver(order, None)

    def _deliver(self, order: Order, code: str | None) -> str:
        if code is None:
            code = f"{self._rng_orders.randrange(1_000_000):06d}"
        order.sms_code = code
        order.code_delivered_at = self.clock.now()
        if order.status != "RECEIVED":
            self._move(order, "RECEIVED")
        order.changed()
        return code

    def _expire(self, order: Order) -> None:
        if order.status == "PENDING":
            self._move(order, "EXPIRED")
            self._refund_order(order)

    def deliver_code(self, order_id: str, code: str | None) -> str:
        """Make a code arrive now (control API); ValueError unless the order awaits one."""
        order = self.orders[order_id]
        if order.status != "PENDING" and not (order.status == "RECEIVED" and not order.sms_code):
            raise StateError(f"order {order_id} is {order.status}, not PENDING")
        return self._deliver(order, code)

    def set_order_status(self, order_id: str, status: str, *, refund: bool) -> Order:
        """Force any status string; ``refund`` also refunds (at most once)."""
        order = self.orders[order_id]
        if status != order.status:
            self._move(order, status)
        if refund:
            self._refund_order(order)
        return order

    # -- rentals --

    def search_numbers(
        self,
        iso: str,
        number_type: str,
        *,
        page_size: int,
        area_code: str | None,
        contains: str | None,
        sms: bool | None,
        voice: bool | None,
    ) -> list[AvailableNumber]:
        """Available numbers, the same for the same query and seed (less those rented)."""
        rng = random.Random(
            f"{self.seed}:search:{iso}:{number_type}:{area_code}:{contains}:{sms}:{voice}"
        )
        found = _catalogue.search_numbers(
            rng,
            iso,
            number_type,
            count=page_size,
            area_code=area_code,
            contains=contains,
            sms=sms,
            voice=voice,
            taken=self._rented,
        )
        for number in found:
            self._offered[number.phone_number] = number
        return found

    def offer_number(self, phone: str, number_type: str | None, iso: str | None) -> AvailableNumber:
        """``phone`` as search offered it; a number never offered is made available."""
        offered = self._offered.get(phone)
        if offered is None:
            offered = self._offered[phone] = _catalogue.describe_number(phone, number_type, iso)
        return offered

    def quote_rental(
        self, account: Account, phone: str, number_type: str, iso: str, monthly_price: Decimal
    ) -> AvailableNumber:
        """Check a rental purchase against what search offered, without changing anything."""
        offered = self._offered.get(phone)
        if offered is None:
            raise _errors.validation(
                f"phoneNumber {phone} is not an available number; find one with /rentals/search"
            )
        if offered.number_type != number_type:
            raise _errors.validation(f"numberType must be {offered.number_type} for {phone}")
        if offered.iso_country != iso:
            raise _errors.validation(f"country must be {offered.iso_country} for {phone}")
        if monthly_price != offered.base_price:
            raise _errors.validation(
                f"monthlyPrice must be {offered.base_price} (the base price from search)"
            )
        if phone in self._rented:
            raise _errors.conflict(f"number {phone} is already rented")
        price = _catalogue.marked_up(offered.base_price)
        if account.balance < price:
            raise _errors.insufficient_balance(price, account.balance)
        return offered

    def place_rental(self, account: Account, offered: AvailableNumber) -> Rental:
        """Charge the first month and hand the number over."""
        now = math.floor(self.clock.now() * 1000) / 1000
        rental = Rental(
            id=self.new_id(),
            account=account,
            phone_number=offered.phone_number,
            country=offered.iso_country,
            number_type=offered.number_type,
            monthly_price=_catalogue.marked_up(offered.base_price),
            created_at=now,
            renews_at=now + RENTAL_PERIOD,
        )
        account.rentals.append(rental)
        self.rentals[rental.id] = rental
        self._rented[rental.phone_number] = rental
        self._charge(account, rental.monthly_price, "rental", rental.id)
        return rental

    def get_rental(self, account: Account, rental_id: str) -> Rental:
        """The account's rental, or 404."""
        rental = self.rentals.get(rental_id)
        if rental is None or rental.account is not account:
            raise _errors.not_found(f"rental {rental_id!r} not found")
        return rental

    def live_rental(self, account: Account, rental_id: str) -> Rental:
        """The account's rental if it still holds its number, else 404/409."""
        rental = self.get_rental(account, rental_id)
        if rental.status in _RELEASED:
            raise _errors.conflict(f"rental {rental_id} is {rental.status}")
        return rental

    def list_rentals(
        self, account: Account, status: str | None, page: int, limit: int
    ) -> tuple[list[Rental], int]:
        """One page of the account's rentals, newest first, and the total matching."""
        items = [r for r in account.rentals if status is None or r.status == status]
        return page_of(items, page, limit), len(items)

    def release_rental(self, account: Account, rental_id: str) -> None:
        """Cancel a rental; the number is free again at once."""
        rental = self.live_rental(account, rental_id)
        self._set_rental_status(rental, "CANCELLED")

    def _set_rental_status(self, rental: Rental, status: str) -> None:
        rental.status = status
        if status in _RELEASED:
            if self._rented.get(rental.phone_number) is rental:
                del self._rented[rental.phone_number]
        else:
            self._rented[rental.phone_number] = rental

    def set_rental_status(self, rental_id: str, status: str) -> Rental:
        """Force any rental status (control API)."""
        rental = self.rentals[rental_id]
        holder = self._rented.get(rental.phone_number)
        if status not in _RELEASED and holder is not None and holder is not rental:
            raise StateError(f"number {rental.phone_number} is rented by {holder.id}")
        self._set_rental_status(rental, status)
        return rental

    def send_sms(self, account: Account, rental_id: str, to: str, body: str) -> Message:
        """Queue an outbound SMS and charge the per-SMS fee."""
        rental = self.live_rental(account, rental_id)
        fee = _catalogue.SMS_FEE
        if account.balance < fee:
            raise _errors.insufficient_balance(fee, account.balance)
        message = Message(
            self.new_id(), "OUTBOUND", rental.phone_number, to, body, "queued", self.clock.now()
        )
        rental.messages.append(message)
        self._charge(account, fee, "sms", message.id)
        return message

    def place_call(self, account: Account, rental_id: str, to: str) -> Call:
        """Start an outbound call (free)."""
        rental = self.live_rental(account, rental_id)
        call = Call(
            self.new_id(), "OUTBOUND", rental.phone_number, to, "RINGING", 0, self.clock.now()
        )
        rental.calls.append(call)
        return call

    def new_sid(self, prefix: str) -> str:
        """A Twilio-style sid: ``SM``/``CA`` + 32 hex digits."""
        return self._sid(prefix)

    def add_inbound_sms(self, rental_id: str, sender: str, body: str) -> Message:
        """An SMS arriving on a rented number (control API)."""
        rental = self.rentals[rental_id]
        if rental.status in _RELEASED:
            raise StateError(f"rental {rental_id} is {rental.status}")
        message = Message(
            self.new_id(), "INBOUND", sender, rental.phone_number, body, "received",
            self.clock.now(),
        )  # fmt: skip
        rental.messages.append(message)
        return message

    def add_inbound_call(self, rental_id: str, sender: str, *, status: str, duration: int) -> Call:
        """A call arriving on a rented number (control API)."""
        rental = self.rentals[rental_id]
        if rental.status in _RELEASED:
            raise StateError(f"rental {rental_id} is {rental.status}")
        call = Call(
            self.new_id(), "INBOUND", sender, rental.phone_number, status, duration,
            self.clock.now(),
        )  # fmt: skip
        rental.calls.append(call)
        return call

    # -- snapshots --

    def order_records(self, accounts: Iterable[Account]) -> list[OrderRecord]:
        """Snapshots of the orders of ``accounts``, oldest first."""
        return [o.record() for a in accounts for o in a.orders]
