"""``SyncClient.rentals``: the blocking twin of ``client.rentals``."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from .._enums import NumberType, RentalStatus
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
from .._resources._rentals import MessageMatch, RentalRef, Rentals
from .._types import NOT_GIVEN, NotGiven
from ._orders import iterate
from ._portal import Runner

log = logging.getLogger("gsim_async")


async def _kept(rental: Rental) -> None:
    log.info("rental %s was bought for an interrupted caller; it is kept", rental.id)


class SyncRentals:
    """Long-term virtual numbers: ``gsim.rentals.search("US")``.

    Every method is that of ``Client.rentals``, blocking. Ctrl-C lets a purchase, an
    SMS or a call already on the wire end before ``KeyboardInterrupt`` leaves, so that
    what happened is known: a rental bought meanwhile is kept.
    """

    def __init__(self, runner: Runner, rentals: Rentals) -> None:
        self._runner = runner
        self._rentals = rentals

    def recovered(self) -> builtins.list[Rental]:
        """Rentals an earlier run bought with the purchase on the wire when it died."""
        return self._runner.call(self._rentals.recovered)

    def search(
        self,
        country: str,
        *,
        type: NumberType | str | None = None,  # the API's own name
        sms_enabled: bool | None = None,
        voice_enabled: bool | None = None,
        area_code: str | int | None = None,
        contains: str | int | None = None,
        page_size: int | None = None,
    ) -> builtins.list[AvailableNumber]:
        """Numbers available to rent in ``country`` (2-letter ISO code such as ``"US"``)."""
        return self._runner.call(
            lambda: self._rentals.search(
                country,
                type=type,
                sms_enabled=sms_enabled,
                voice_enabled=voice_enabled,
                area_code=area_code,
                contains=contains,
                page_size=page_size,
            )
        )

    def create(
        self,
        phone_number: str,
        number_type: NumberType | str,
        country: str,
        monthly_price: Decimal | str | int | float,
    ) -> Rental:
        """Rent ``phone_number`` (from ``search``); the monthly fee is taken from the balance.

        As ``Client.rentals.create``: a purchase whose answer is lost is reconciled by
        phone number, never repeated.
        """
        return self._runner.call(
            lambda: self._rentals.create(phone_number, number_type, country, monthly_price),
            interrupt="finish",
            undo=_kept,
        )

    def get(self, rental: RentalRef) -> Rental:
        """The rental with its recent ``messages`` and ``calls``."""
        return self._runner.call(lambda: self._rentals.get(rental))

    def list(
        self, page: int = 1, limit: int = 20, status: RentalStatus | str | None = None
    ) -> Page[Rental]:
        """One page of this account's rentals."""
        return self._runner.call(lambda: self._rentals.list(page, limit, status))

    def iterate(self, status: RentalStatus | str | None = None) -> Iterator[Rental]:
        """Every rental (of ``status``, if given), fetched 100 per request."""
        return iterate(self._runner, self._rentals.iterate(status))

    def update(
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
        return self._runner.call(
            lambda: self._rentals.update(
                rental,
                auto_renew=auto_renew,
                forwarding_number=forwarding_number,
                voicemail_enabled=voicemail_enabled,
                friendly_name=friendly_name,
            )
        )

    def release(self, rental: RentalRef) -> None:
        """Give the number back at once; it cannot be recovered."""
        self._runner.call(lambda: self._rentals.release(rental), interrupt="finish")

    def messages(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Message]:
        """One page of the rental's SMS, newest first."""
        return self._runner.call(lambda: self._rentals.messages(rental, page, limit))

    def send_sms(self, rental: RentalRef, to: str, body: str) -> SentMessage:
        """Send an SMS from the rental's number (a per-SMS fee is charged).

        Never repeated after a lost answer: raises ``OutcomeUnknownError`` saying the
        message may have gone out.
        """
        return self._runner.call(
            lambda: self._rentals.send_sms(rental, to, body), interrupt="finish"
        )

    def calls(self, rental: RentalRef, page: int = 1, limit: int = 50) -> Page[Call]:
        """One page of the rental's calls, newest first."""
        return self._runner.call(lambda: self._rentals.calls(rental, page, limit))

    def call(self, rental: RentalRef, to: str) -> PlacedCall:
        """Place a call from the rental's number; never repeated after a lost answer."""
        return self._runner.call(lambda: self._rentals.call(rental, to), interrupt="finish")

    def wait_for_sms(
        self,
        rental: RentalRef,
        *,
        match: MessageMatch | None = None,
        since: datetime | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> Message:
        """Wait for the first INBOUND SMS on the rental that matches, and return it.

        As ``Client.rentals.wait_for_sms``; a ``match`` callable is called in the
        client's thread. Raises ``MessageTimeoutError`` after ``timeout`` seconds.
        """
        return self._runner.call(
            lambda: self._rentals.wait_for_sms(
                rental, match=match, since=since, timeout=timeout, poll_interval=poll_interval
            )
        )


__all__ = ["SyncRentals"]
