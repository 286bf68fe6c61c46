"""Rentals: long-term numbers, with the SMS and calls on them.

A number is offered by search (or made available by the control API), rented
by one account at a time, charged a month at the provider's markup, and free
again at once when the rental is released or expires. Outbound SMS cost a
fee; calls are free.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TypeVar

import attrs

from . import _catalogue, _errors
from ._accounts import Account, Accounts
from ._catalogue import AvailableNumber
from ._clock import Clock
from ._errors import StateError
from ._ids import Ids
from ._records import RentalRecord
from ._timestamps import Timestamps

RENTAL_STATUSES = ("ACTIVE", "PENDING_RENEWAL", "EXPIRED", "CANCELLED")
# A rental in one of these no longer holds its number.
_RELEASED = ("CANCELLED", "EXPIRED")
RENTAL_PERIOD = 30 * 24 * 3600.0
RECENT = 20  # messages and calls embedded in a rental's detail
# PATCH /rentals/{id} fields -> Rental attributes.
PATCHABLE = {
    "autoRenew": "auto_renew",
    "forwardingNumber": "forwarding_number",
    "voicemailEnabled": "voicemail_enabled",
    "friendlyName": "friendly_name",
}
T = TypeVar("T")


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
    # Who rented it: the address the purchase came from (None: the Python API).
    buyer: str | None = None

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
            buyer=self.buyer,
        )


def page_of(items: Sequence[T], page: int, limit: int) -> list[T]:
    """One page of ``items`` (oldest first in the list), newest first."""
    end = len(items) - (page - 1) * limit
    if end <= 0:
        return []
    return list(items[max(0, end - limit) : end][::-1])


class Rentals:
    """Every rental of a sandbox (API methods raise ApiError; control ones KeyError, StateError)."""

    def __init__(self, *, seed: int, ids: Ids, accounts: Accounts, clock: Clock) -> None:
        self._seed = seed
        self._ids = ids
        self._accounts = accounts
        self._clock = clock
        self.by_id: dict[str, Rental] = {}
        self._held: dict[Account, list[Rental]] = {}
        self._rented: dict[str, Rental] = {}  # phone -> rental holding it
        self._offered: dict[str, AvailableNumber] = {}

    def of(self, account: Account) -> list[Rental]:
        """The account's rentals, oldest first."""
        return self._held.get(account, [])

    # -- numbers --

    def search(
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
            f"{self._seed}:search:{iso}:{number_type}:{area_code}:{contains}:{sms}:{voice}"
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

    def offer(self, phone: str, number_type: str | None, iso: str | None) -> AvailableNumber:
        """``phone`` as search offered it; a number never offered is made available."""
        offered = self._offered.get(phone)
        if offered is None:
            offered = self._offered[phone] = _catalogue.describe_number(phone, number_type, iso)
        return offered

    # -- the API's rules --

    def quote(
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
        self._accounts.check_funds(account, _catalogue.marked_up(offered.base_price))
        return offered

    def place(self, account: Account, offered: AvailableNumber, buyer: str | None = None) -> Rental:
        """Charge the first month and hand the number over."""
        now = math.floor(self._clock.now() * 1000) / 1000
        rental = Rental(
            id=self._ids.new_id(),
            account=account,
            phone_number=offered.phone_number,
            country=offered.iso_country,
            number_type=offered.number_type,
            monthly_price=_catalogue.marked_up(offered.base_price),
            created_at=now,
            renews_at=now + RENTAL_PERIOD,
            buyer=buyer,
        )
        self._held.setdefault(account, []).append(rental)
        self.by_id[rental.id] = rental
        self._rented[rental.phone_number] = rental
        self._accounts.charge(account, rental.monthly_price, "rental", rental.id)
        return rental

    def get(self, account: Account, rental_id: str) -> Rental:
        """The account's rental, or 404."""
        rental = self.by_id.get(rental_id)
        if rental is None or rental.account is not account:
            raise _errors.not_found(f"rental {rental_id!r} not found")
        return rental

    def live(self, account: Account, rental_id: str) -> Rental:
        """The account's rental if it still holds its number, else 404/409."""
        rental = self.get(account, rental_id)
        if rental.status in _RELEASED:
            raise _errors.conflict(f"rental {rental_id} is {rental.status}")
        return rental

    def page(
        self, account: Account, status: str | None, page: int, limit: int
    ) -> tuple[list[Rental], int]:
        """One page of the account's rentals, newest first, and the total matching."""
        items = [r for r in self.of(account) if status is None or r.status == status]
        return page_of(items, page, limit), len(items)

    def update(self, account: Account, rental_id: str, fields: Mapping[str, object]) -> Rental:
        """Set the PATCH fields given (wire names, values already checked)."""
        rental = self.live(account, rental_id)
        for name, value in fields.items():
            setattr(rental, PATCHABLE[name], value)
        return rental

    def release(self, account: Account, rental_id: str) -> None:
        """Cancel a rental; the number is free again at once."""
        self._set_status(self.live(account, rental_id), "CANCELLED")

    def send_sms(self, account: Account, rental_id: str, to: str, body: str) -> Message:
        """Queue an outbound SMS and charge the per-SMS fee."""
        rental = self.live(account, rental_id)
        fee = _catalogue.SMS_FEE
        self._accounts.check_funds(account, fee)
        message = Message(
            self._ids.new_id(), "OUTBOUND", rental.phone_number, to, body, "queued",
            self._clock.now(),
        )  # fmt: skip
        rental.messages.append(message)
        self._accounts.charge(account, fee, "sms", message.id)
        return message

    def place_call(self, account: Account, rental_id: str, to: str) -> Call:
        """Start an outbound call (free)."""
        rental = self.live(account, rental_id)
        call = Call(
            self._ids.new_id(), "OUTBOUND", rental.phone_number, to, "RINGING", 0,
            self._clock.now(),
        )  # fmt: skip
        rental.calls.append(call)
        return call

    # -- control --

    def _set_status(self, rental: Rental, status: str) -> None:
        rental.status = status
        if status in _RELEASED:
            if self._rented.get(rental.phone_number) is rental:
                del self._rented[rental.phone_number]
        else:
            self._rented[rental.phone_number] = rental

    def force_status(self, rental_id: str, status: str) -> Rental:
        """Force any rental status; StateError if that takes a number another rental holds."""
        rental = self.by_id[rental_id]
        holder = self._rented.get(rental.phone_number)
        if status not in _RELEASED and holder is not None and holder is not rental:
            raise StateError(f"number {rental.phone_number} is rented by {holder.id}")
        self._set_status(rental, status)
        return rental

    def _receiving(self, rental_id: str) -> Rental:
        rental = self.by_id[rental_id]
        if rental.status in _RELEASED:
            raise StateError(f"rental {rental_id} is {rental.status}")
        return rental

    def add_inbound_sms(self, rental_id: str, sender: str, body: str) -> Message:
        """An SMS arriving on a rented number."""
        rental = self._receiving(rental_id)
        message = Message(
            self._ids.new_id(), "INBOUND", sender, rental.phone_number, body, "received",
            self._clock.now(),
        )  # fmt: skip
        rental.messages.append(message)
        return message

    def add_inbound_call(self, rental_id: str, sender: str, *, status: str, duration: int) -> Call:
        """A call arriving on a rented number."""
        rental = self._receiving(rental_id)
        call = Call(
            self._ids.new_id(), "INBOUND", sender, rental.phone_number, status, duration,
            self._clock.now(),
        )  # fmt: skip
        rental.calls.append(call)
        return call
