"""``client.rentals``: search, rent, configure and use long-term virtual numbers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, TypeVar

import anyio

from .. import _constants as C
from .. import _validation as v
from .._converter import Decoder, Listing, decoder, format_datetime, listing
from .._enums import Direction, NumberType, RentalStatus
from .._exceptions import (
    APIResponseValidationError,
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
from .._obligations import Purchase
from .._pagination import iterate_pages, make_page
from .._reconcile import Baseline, Reconciler
from .._retry import Operation
from .._transport import Transport
from .._types import NOT_GIVEN, NotGiven
from ._buying import buy
from ._recovery import Recovery
from ._shared import Shared

T = TypeVar("T")
RentalRef = Rental | str
MessageMatch = str | re.Pattern[str] | Callable[[Message], bool]

_RENTAL: Decoder[Rental] = decoder(Rental)
_RENTALS: Decoder[Listing[Rental]] = listing("rentals", Rental)
_MESSAGES: Decoder[Listing[Message]] = listing("messages", Message)
_CALLS: Decoder[Listing[Call]] = listing("calls", Call)
_UPDATE: Decoder[RentalUpdate] = decoder(RentalUpdate)
_SENT: Decoder[SentMessage] = decoder(SentMessage)
_PLACED: Decoder[PlacedCall] = decoder(PlacedCall)
_SEARCH: Decoder[Listing[AvailableNumber]] = listing("numbers", AvailableNumber)
_SUCCESS = decoder(dict[str, Any])


def rental_id(rental: RentalRef) -> str:
    """The id of a Rental or of an id string."""
    raw = rental.id if isinstance(rental, Rental) else rental
    # "search" would name GET /rentals/search, not a rental.
    return v.identifier("rental", raw, reserved=("search",))


def _flag(value: bool) -> str:
    return "true" if value else "false"


class RentalBook:
    """What the rentals namespaces of one client (all its views) share."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        root = shared.root
        self.reconciler: Reconciler[Rental] = Reconciler(
            noun="rental",
            ownership=shared.ownership,
            clock=root.clock,
            background=shared.background,
            recent=lambda since: recent_rentals(root, since),
            baseline=lambda: rental_baseline(root),
            key_of=lambda r: ("rental", r.phone_number),
            describe=lambda r: f"{r.id} ({r.phone_number}, {r.status}, {r.monthly_price})",
            window=shared.reconcile_window,
            on_baseline=lambda b: shared.obligations.baseline(
                "rental", b.ids, format_datetime(b.newest) if b.newest else None
            ),
        )
        #: An earlier run's rentals found in the journal (set by the client).
        self.recovery: Recovery | None = None

    async def get(self, rid: str) -> Rental:
        """One rental, read through the client's own transport."""
        return await self.shared.root.request("GET", f"/rentals/{rid}", _RENTAL)


async def recent_rentals(transport: Transport, since: datetime) -> list[Rental]:
    """Every rental of the account created since ``since`` (or of unknown age)."""
    found: list[Rental] = []
    number = 1
    while True:
        params = {"page": str(number), "limit": str(C.MAX_PAGE_SIZE)}
        data = await transport.request("GET", "/rentals", _RENTALS, params=params)
        page = make_page(data, number, C.MAX_PAGE_SIZE)
        found.extend(r for r in page.items if r.created_at is None or r.created_at >= since)
        if not page.items or number >= page.total_pages:
            return found
        number += 1


async def rental_baseline(transport: Transport) -> Baseline:
    """Every rental the account had before this client's first rental purchase."""
    rentals = await recent_rentals(transport, datetime.min.replace(tzinfo=timezone.utc))
    stamps = [r.created_at for r in rentals if r.created_at is not None]
    return Baseline(frozenset(r.id for r in rentals), max(stamps, default=None))


class Rentals:
    """Long-term virtual numbers: ``await client.rentals.search("US")``."""

    def __init__(self, transport: Transport, book: RentalBook, poll_interval: float) -> None:
        self._transport = transport
        self._shared = book.shared
        self._book = book
        self._reconciler = book.reconciler
        self._poll_interval = poll_interval

    async def recovered(self) -> list[Rental]:
        """Rentals an earlier run bought while it died with the purchase on the wire.

        With a journal (``Client(journal=...)``): the purchases that run had sent but not
        seen answered are reconciled when the journal is opened, and the rentals they
        made are returned here, each once (waits for that reconciliation). Without a
        journal, or when there was none, an empty list.
        """
        recovery = self._book.recovery
        return [] if recovery is None else await recovery.rentals()

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
        data = await self._transport.request("GET", "/rentals/search", _SEARCH, params=params)
        return list(data.items)

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
        number = v.e164("phone_number", phone_number)
        body = {
            "phoneNumber": number,
            "numberType": v.number_type(number_type).value,
            "country": v.iso_country(country),
            "monthlyPrice": v.price("monthly_price", monthly_price),
        }
        self._shared.waits.refuse("the rental")

        async def send(sent_log: list[float], before: Callable[[], Awaitable[None]]) -> Rental:
            return await self._transport.request(
                "POST",
                "/rentals",
                _RENTAL,
                json=body,
                op=Operation.PURCHASE,
                sent_log=sent_log,
                before_send=before,
            )

        rental = await buy(
            reconciler=self._reconciler,
            key=("rental", number),
            what=number,
            matches=lambda r: r.phone_number == number,
            send=send,
            reread=self._get,
            retries=self._transport.settings.max_retries,
            path=C.API_PREFIX + "/rentals",
            journal=lambda: self._shared.obligations.purchase("rental", "rental", body),
            record=_record_rental,
        )
        self._shared.ownership.stamp(rental.id, rental.created_at)
        return rental

    async def _get(self, rid: str) -> Rental:
        return await self._transport.request("GET", f"/rentals/{rid}", _RENTAL)

    async def get(self, rental: RentalRef) -> Rental:
        """The rental with its recent ``messages`` and ``calls``."""
        return await self._get(rental_id(rental))

    async def list(
        self, page: int = 1, limit: int = 20, status: RentalStatus | str | None = None
    ) -> Page[Rental]:
        """One page of this account's rentals."""
        wanted = None if status is None else v.status("status", status, RentalStatus)
        return await self._page("/rentals", _RENTALS, page, limit, wanted)

    def iterate(self, status: RentalStatus | str | None = None) -> AsyncIterator[Rental]:
        """Every rental (of ``status``, if given), fetched 100 per request."""
        return self._iterate(None if status is None else v.status("status", status, RentalStatus))

    def _iterate(self, status: RentalStatus | None) -> AsyncIterator[Rental]:
        async def fetch(number: int) -> Page[Rental]:
            return await self._page("/rentals", _RENTALS, number, C.MAX_PAGE_SIZE, status)

        return iterate_pages(fetch)

    async def _page(
        self,
        path: str,
        decode: Callable[[Any], Listing[T]],
        page: int,
        limit: int,
        status: RentalStatus | None = None,
    ) -> Page[T]:
        number, size = v.page(page), v.limit(limit)
        params = {"page": str(number), "limit": str(size)}
        if status is not None:
            params["status"] = status.value
        data = await self._transport.request("GET", path, decode, params=params)
        return make_page(data, number, size)

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
        return await self._transport.request("PATCH", f"/rentals/{rid}", _UPDATE, json=body)

    async def release(self, rental: RentalRef) -> None:
        """Give the number back at once; it cannot be recovered."""
        rid = rental_id(rental)
        try:
            await self._transport.request("DELETE", f"/rentals/{rid}", _SUCCESS)
        except NotFoundError as exc:
            # A retry of ours after a lost answer finds it gone: that is success.
            if not exc.after_lost_answer:
                raise

    async def messages(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Message]:
        """One page of the rental's SMS, newest first."""
        return await self._page(f"/rentals/{rental_id(rental)}/sms", _MESSAGES, page, limit)

    async def send_sms(self, rental: RentalRef, to: str, body: str) -> SentMessage:
        """Send an SMS from the rental's number (a per-SMS fee is charged).

        Never repeated after a lost answer: raises ``OutcomeUnknownError`` saying the
        message may have gone out.
        """
        payload = {"to": v.e164("to", to), "body": v.sms_body(body)}
        return await self._once(
            f"/rentals/{rental_id(rental)}/sms",
            _SENT,
            payload,
            f"sending the SMS to {to}",
            "it may have gone out (and been charged): check rentals.messages() before "
            "sending it again",
            "the SMS was sent (and charged)",
        )

    async def calls(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Call]:
        """One page of the rental's calls, newest first."""
        return await self._page(f"/rentals/{rental_id(rental)}/calls", _CALLS, page, limit)

    async def call(self, rental: RentalRef, to: str) -> PlacedCall:
        """Place a call from the rental's number; never repeated after a lost answer."""
        return await self._once(
            f"/rentals/{rental_id(rental)}/calls",
            _PLACED,
            {"to": v.e164("to", to)},
            f"placing the call to {to}",
            "it may have been placed: check rentals.calls() before calling again",
            "the call was placed",
        )

    async def _once(
        self,
        path: str,
        decode: Callable[[Any], T],
        payload: dict[str, str],
        doing: str,
        maybe: str,
        done: str,
    ) -> T:
        """POST something that acts each time it is sent: never repeated when in doubt."""
        try:
            return await self._transport.request(
                "POST", path, decode, json=payload, op=Operation.ONCE
            )
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(
                f"{doing}: {exc.reason}; {maybe}", method=exc.method, path=exc.path
            ) from exc
        except APIResponseValidationError as exc:
            exc.message = f"{doing}: {exc.message.replace('the request was carried out', done)}"
            exc.args = (str(exc),)
            raise

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
        it. By default only messages that arrive after this call count: on the first
        look, told by the server's clock (pinned by this client's own purchases, else
        its ``Date`` header, good to a second); pass ``since`` for an exact cut, e.g.
        behind a proxy that rewrites ``Date``. Raises ``MessageTimeoutError`` after
        ``timeout`` seconds (default: wait indefinitely).
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
            else self._poll_interval
        )
        explicit = since is not None
        if since is None:
            # What arrived after this call, on the server's clock as well as we know it:
            # pinned by our own purchases when it can be, else the Date header, give
            # or take a little (pass since= for an exact cut). Only the first look
            # needs it: later looks take any message they had not seen.
            since = self._transport.clock.now()
        seen: set[str] = set()
        first = True
        with anyio.move_on_after(timeout) as scope:
            while True:
                page = await self.messages(rid, limit=50)
                for message in reversed(page.items):  # oldest first: the first match wins
                    if message.id in seen or message.direction != Direction.INBOUND:
                        continue
                    seen.add(message.id)
                    created = message.created_at
                    if (first or explicit) and (created is None or created < since):
                        continue
                    if accept(message):
                        return message
                first = False
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


def _record_rental(purchase: Purchase, rental: Rental) -> None:
    purchase.bought_rental(rental.id, rental.phone_number)
