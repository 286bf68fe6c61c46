"""``client.rentals``: search, rent, configure and use long-term virtual numbers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .. import _validation as v
from .._constants import MAX_PAGE_SIZE
from .._converter import CallList, MessageList, RentalList, SearchResult, Success
from .._enums import Direction, NumberType, RentalStatus
from .._exceptions import (
    APIConnectionError,
    InvalidArgumentError,
    MessageTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
)
from .._models import (
    AvailableNumber,
    Call,
    Message,
    Page,
    PlacedCall,
    Rental,
    RentalUpdate,
    SentMessage,
)
from .._pagination import fetch_page, iterate_pages
from .._purchases import CLOCK_SKEW
from .._retry import Operation
from .._types import NOT_GIVEN, NotGiven

if TYPE_CHECKING:
    from .._client import Client

T = TypeVar("T")
RentalRef = Rental | str
MessageMatch = str | re.Pattern[str] | Callable[[Message], bool]


def rental_id(rental: RentalRef) -> str:
    """The id of a Rental or of an id string."""
    if isinstance(rental, Rental):
        return rental.id
    return v.identifier("rental", rental)


def _flag(value: bool) -> str:
    return "true" if value else "false"


class Rentals:
    """Long-term virtual numbers: ``await client.rentals.search("US")``."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._transport = client._transport

    async def search(
        self,
        country: str,
        *,
        type: NumberType | str | None = None,  # the API's own name
        sms_enabled: bool | None = None,
        voice_enabled: bool | None = None,
        area_code: str | int | None = None,
        contains: str | int | None = None,
        page_size: int | None = None,
    ) -> list[AvailableNumber]:
        """Numbers available to rent in ``country`` (2-letter ISO code such as ``"US"``).

        ``type`` is ``"Local"`` (default), ``"Mobile"`` or ``"TollFree"`` (or a
        ``NumberType``); ``page_size`` is 1 to 50.
        """
        params = {"country": v.iso_country(country)}
        if type is not None:
            params["type"] = v.search_type(type)
        if sms_enabled is not None:
            params["smsEnabled"] = _flag(v.boolean("sms_enabled", sms_enabled))
        if voice_enabled is not None:
            params["voiceEnabled"] = _flag(v.boolean("voice_enabled", voice_enabled))
        if area_code is not None:
            params["areaCode"] = v.digits("area_code", area_code)
        if contains is not None:
            params["contains"] = v.digits("contains", contains)
        if page_size is not None:
            params["pageSize"] = str(v.integer("page_size", page_size, 1, 50))
        data = await self._transport.request("GET", "/rentals/search", SearchResult, params=params)
        return data.numbers

    async def create(
        self,
        phone_number: str,
        number_type: NumberType | str,
        country: str,
        monthly_price: Decimal | str | int | float,
    ) -> Rental:
        """Rent ``phone_number`` (from ``search``); the monthly fee is taken from the balance.

        ``monthly_price`` is the base price ``search`` showed; the rental's own
        ``monthly_price`` includes the provider's markup. A purchase whose answer is
        lost is reconciled by phone number, never blindly repeated.
        """
        body = {
            "phoneNumber": v.e164("phone_number", phone_number),
            "numberType": v.number_type(number_type).value,
            "country": v.iso_country(country),
            "monthlyPrice": v.price("monthly_price", monthly_price),
        }
        retries = self._transport.settings.max_retries
        for _ in range(retries + 1):
            since = self._transport.server_now() - CLOCK_SKEW
            try:
                rental = await self._transport.request(
                    "POST", "/rentals", Rental, json=body, op=Operation.PURCHASE
                )
            except OutcomeUnknownError as lost:
                try:
                    found = await self._find(phone_number, since)
                except Exception as exc:
                    raise OutcomeUnknownError(
                        f"renting {phone_number} got no answer and the account could not be "
                        f"checked for it ({exc}); it may have been charged — look for it in "
                        "rentals.list() before trying again",
                        method="POST",
                        path="/api/v1/rentals",
                    ) from lost
                if found is not None:
                    self._client._purchases.hold(found.id)
                    return found
            else:
                self._client._purchases.hold(rental.id)
                return rental
        raise APIConnectionError(
            f"renting {phone_number} failed {retries + 1} times without reaching the server; "
            "nothing was charged",
            method="POST",
            path="/api/v1/rentals",
        )

    async def _find(self, phone_number: str, since: datetime) -> Rental | None:
        """The ACTIVE rental of ``phone_number`` created since ``since`` not yet ours."""
        async for rental in self._iterate(RentalStatus.ACTIVE):
            if (
                rental.phone_number == phone_number
                and not self._client._purchases.holds(rental.id)
                and (rental.created_at is None or rental.created_at >= since)
            ):
                return rental
        return None

    async def get(self, rental: RentalRef) -> Rental:
        """The rental with its recent ``messages`` and ``calls``."""
        return await self._transport.request("GET", f"/rentals/{rental_id(rental)}", Rental)

    async def list(
        self, page: int = 1, limit: int = 20, status: RentalStatus | str | None = None
    ) -> Page[Rental]:
        """One page of this account's rentals."""
        params = (
            {} if status is None else {"status": v.status("status", status, RentalStatus).value}
        )
        return await fetch_page(
            self._transport, "/rentals", RentalList, page=page, limit=limit, params=params
        )

    def iterate(self, status: RentalStatus | str | None = None) -> AsyncIterator[Rental]:
        """Every rental (of ``status``, if given), fetched 100 per request."""
        if status is not None:
            status = v.status("status", status, RentalStatus)
        return self._iterate(status)

    def _iterate(self, status: RentalStatus | str | None) -> AsyncIterator[Rental]:
        async def fetch(number: int) -> Page[Rental]:
            return await self.list(page=number, limit=MAX_PAGE_SIZE, status=status)

        return iterate_pages(fetch)

    async def update(
        self,
        rental: RentalRef,
        *,
        auto_renew: bool | NotGiven = NOT_GIVEN,
        forwarding_number: str | NotGiven | None = NOT_GIVEN,
        voicemail_enabled: bool | NotGiven = NOT_GIVEN,
        friendly_name: str | NotGiven = NOT_GIVEN,
    ) -> RentalUpdate:
        """Change a rental's settings; only the arguments given are sent.

        ``forwarding_number=None`` disables forwarding.
        """
        rid = rental_id(rental)
        body: dict[str, Any] = {}
        if not isinstance(auto_renew, NotGiven):
            body["autoRenew"] = v.boolean("auto_renew", auto_renew)
        if not isinstance(forwarding_number, NotGiven):
            body["forwardingNumber"] = (
                None
                if forwarding_number is None
                else v.e164("forwarding_number", forwarding_number)
            )
        if not isinstance(voicemail_enabled, NotGiven):
            body["voicemailEnabled"] = v.boolean("voicemail_enabled", voicemail_enabled)
        if not isinstance(friendly_name, NotGiven):
            body["friendlyName"] = v.friendly_name(friendly_name)
        if not body:
            raise InvalidArgumentError(
                "update needs at least one of auto_renew, forwarding_number, "
                "voicemail_enabled, friendly_name"
            )
        return await self._transport.request("PATCH", f"/rentals/{rid}", RentalUpdate, json=body)

    async def release(self, rental: RentalRef) -> None:
        """Give the number back at once; it cannot be recovered."""
        rid = rental_id(rental)
        try:
            await self._transport.request("DELETE", f"/rentals/{rid}", Success)
        except NotFoundError as exc:
            # A retry of ours after a lost answer finds it gone: that is success.
            if not exc.after_lost_answer:
                raise

    async def messages(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Message]:
        """One page of the rental's SMS, newest first."""
        path = f"/rentals/{rental_id(rental)}/sms"
        return await fetch_page(self._transport, path, MessageList, page=page, limit=limit)

    async def send_sms(self, rental: RentalRef, to: str, body: str) -> SentMessage:
        """Send an SMS from the rental's number (a per-SMS fee is charged).

        Never repeated after a lost answer: raises ``OutcomeUnknownError`` saying the
        message may have gone out.
        """
        payload = {"to": v.e164("to", to), "body": v.sms_body(body)}
        return await self._once(
            f"/rentals/{rental_id(rental)}/sms",
            SentMessage,
            payload,
            f"sending the SMS to {to} got no answer; it may have gone out (and been "
            "charged) — check rentals.messages() before sending it again",
        )

    async def calls(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Call]:
        """One page of the rental's calls, newest first."""
        path = f"/rentals/{rental_id(rental)}/calls"
        return await fetch_page(self._transport, path, CallList, page=page, limit=limit)

    async def call(self, rental: RentalRef, to: str) -> PlacedCall:
        """Place a call from the rental's number; never repeated after a lost answer."""
        return await self._once(
            f"/rentals/{rental_id(rental)}/calls",
            PlacedCall,
            {"to": v.e164("to", to)},
            f"placing the call to {to} got no answer; it may have been placed — check "
            "rentals.calls() before calling again",
        )

    async def _once(self, path: str, cls: type[T], payload: dict[str, str], lost: str) -> T:
        """POST something that acts each time it is sent: never repeated when in doubt."""
        try:
            return await self._transport.request("POST", path, cls, json=payload, op=Operation.ONCE)
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(lost, method=exc.method, path=exc.path) from exc

    async def wait_for_sms(
        self,
        rental: RentalRef,
        *,
        match: MessageMatch | None = None,
        since: datetime | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> Message:
        """Wait for the first INBOUND SMS on the rental that matches, and return it.

        ``match`` is a regex (string or compiled, searched in the body) or a callable
        taking the ``Message``; ``since`` (aware datetime) counts messages created after
        it, by default only messages that arrive after this call. Raises
        ``MessageTimeoutError`` after ``timeout`` seconds (default: wait indefinitely).
        """
        rid = rental_id(rental)
        accept = _matcher(match)
        if timeout is not None:
            v.positive_seconds("timeout", timeout, allow_zero=True)
        if since is not None and since.tzinfo is None:
            raise InvalidArgumentError("since must be a timezone-aware datetime")
        interval = (
            v.positive_seconds("poll_interval", poll_interval)
            if poll_interval is not None
            else self._client.poll_interval
        )
        seen: set[str] | None = None if since is None else set()
        with anyio.move_on_after(timeout) as scope:
            while True:
                page = await self.messages(rid, limit=50)
                fresh = [
                    m
                    for m in reversed(page.items)  # oldest first: the first match wins
                    if m.direction == Direction.INBOUND
                    and (seen is None or m.id not in seen)
                    and (since is None or (m.created_at is not None and m.created_at > since))
                ]
                if seen is None:
                    # The first look records what was already there (server and client
                    # clocks differ, so ids, not timestamps, tell old from new).
                    seen = {m.id for m in page.items}
                else:
                    for message in fresh:
                        seen.add(message.id)
                        if accept(message):
                            return message
                await anyio.sleep(interval)
        assert scope.cancelled_caught
        raise MessageTimeoutError(f"no matching SMS on rental {rid} within {timeout} s")


def _matcher(match: MessageMatch | None) -> Callable[[Message], bool]:
    if match is None:
        return lambda m: True
    if isinstance(match, str):
        try:
            match = re.compile(match)
        except re.error as exc:
            raise InvalidArgumentError(f"match is not a valid regular expression: {exc}") from None
    if isinstance(match, re.Pattern):
        pattern = match
        return lambda m: pattern.search(m.body) is not None
    if callable(match):
        return match
    raise InvalidArgumentError(
        f"match must be a regex string, a compiled pattern or a callable, got {match!r}"
    )
