"""Every error the SDK raises.

```text
GsimError
├── InvalidArgumentError (ValueError)   bad input, refused before any request
├── ClientClosedError (RuntimeError)    the client is closed or stopping, or
│                                       used from another event loop than its
│                                       own (.order: a wait it ended)
├── APIError                            the server answered with an error
│   ├── UnauthorizedError               401 UNAUTHORIZED
│   ├── ForbiddenError                  403 FORBIDDEN
│   ├── NotFoundError                   404 NOT_FOUND
│   ├── InsufficientBalanceError        402 INSUFFICIENT_BALANCE
│   ├── RateLimitedError                429 RATE_LIMITED (.retry_after)
│   ├── ValidationError                 400 VALIDATION_ERROR
│   ├── ProviderError                   503 PROVIDER_ERROR
│   ├── ConflictError                   409 CONFLICT (.order: re-read, if known)
│   └── APIResponseValidationError      a 2xx body unlike the documented one
├── APIConnectionError                  no usable answer (refused, reset, cut)
│   ├── APITimeoutError                 the request's deadline passed
│   └── OutcomeUnknownError             a charging request may have gone
│                                       through (.candidates: what it bought)
├── PriceTooHighError                   activation(max_price=...) refused it
├── GuardError                          the spend guard refused a purchase
│   ├── SpendLimitError                 ... it would pass the spend limit
│   └── BreakerOpenError                ... verifications keep failing there
├── JournalError                        the journal cannot be opened or written
│   └── JournalInUseError               another live client has it open
├── FleetError                          the fleet's Redis cannot be used (when
│                                       the client opens: .where says where)
├── MessageTimeoutError (TimeoutError)  rentals.wait_for_sms timed out
├── NoNumberAvailableError              activations() has nothing left to buy
│   └── BudgetExceededError             ... within its budget
└── NoCodeError                         a wait ended without a code (.order)
    ├── CodeTimeoutError (TimeoutError) ... because its timeout passed
    └── AttemptsExhaustedError          every try of activations() ended so
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

if TYPE_CHECKING:
    from ._models import Order, Rental

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APITimeoutError",
    "BreakerOpenError",
    "ClientClosedError",
    "CodeTimeoutError",
    "ConflictError",
    "FleetError",
    "ForbiddenError",
    "GsimError",
    "GuardError",
    "InsufficientBalanceError",
    "InvalidArgumentError",
    "JournalError",
    "JournalInUseError",
    "MessageTimeoutError",
    "NoCodeError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PriceTooHighError",
    "ProviderError",
    "RateLimitedError",
    "SpendLimitError",
    "UnauthorizedError",
    "ValidationError",
]


class GsimError(Exception):
    """Base class of every error raised by gsim-async."""


class InvalidArgumentError(GsimError, ValueError):
    """An argument is invalid; raised before any request is sent (so nothing is charged)."""


class _RefundUnderWay:
    """A wait's error whose ban or cancel may still be under way when it is raised."""

    _refund: asyncio.Future[Any] | None = None
    # An ``Order`` in one subclass, ``Order | None`` in the other.
    order: Any
    refunded: Decimal | None

    @property
    def refund_task(self) -> asyncio.Future[Any] | None:
        """The ban or cancel of ``order`` when it was still under way, if any."""
        return self._refund

    @property
    def refund_pending(self) -> bool:
        """Whether the ban or cancel is still under way."""
        return self._refund is not None and not self._refund.done()

    async def wait_refund(self) -> Decimal | None:
        """Wait for the ban or cancel to finish; the amount refunded, or ``None``."""
        if self._refund is not None:
            try:
                settled = await asyncio.shield(self._refund)
            except asyncio.CancelledError:
                if not self._refund.cancelled():
                    raise  # the caller's own cancellation
                return self.refunded  # the client closed before it landed
            self.refunded = getattr(settled, "refunded", None)
            self.order = getattr(settled, "order", self.order)
        return self.refunded


class ClientClosedError(_RefundUnderWay, GsimError, RuntimeError):
    """The client cannot send: it was closed or is stopping, or belongs to another loop.

    When it ends a wait (the client was closed or stopped under it: ``aclose()``,
    ``stop()``, a stop signal), ``order`` is the order's last known state and
    ``refunded`` what its ban or cancel gave back (``None``: nothing, or not yet; then
    ``await exc.wait_refund()`` waits for a refund still under way). The message says
    what became of the order: banned or cancelled as the wait's ``on_timeout`` said,
    kept, or left to the client's journal or fleet.
    """

    _refund: asyncio.Future[Any] | None = None

    def __init__(
        self,
        message: str = "",
        *,
        order: Order | None = None,
        refunded: Decimal | None = None,
        pending: asyncio.Future[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.order = order
        self.refunded = refunded
        self._refund = pending


class Headers(Mapping[str, str]):
    """A response's headers, read-only and picklable; names are case-insensitive.

    ``headers["x-request-id"]`` finds ``X-Request-ID`` (HTTP names have no case, and
    aiohttp rewrites some). A name sent more than once gives its first value.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: CIMultiDict[str] = CIMultiDict(pairs)

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        # Each name once, as first sent: a Mapping has no repeated keys.
        names: dict[str, str] = {}
        for name in self._items:
            names.setdefault(name.lower(), name)
        return list(names.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __reduce__(self) -> tuple[type[Headers], tuple[list[tuple[str, str]]]]:
        return (Headers, (list(self._items.items()),))

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class APIError(GsimError):
    """The API answered with an error status.

    ``status`` is the HTTP status, ``code`` the API's error code (``None`` when the
    body was not the API's JSON, e.g. an HTML page from a proxy), ``message`` the
    server's human message (or a short excerpt of a non-JSON body), and ``method`` /
    ``path`` name the request. ``headers`` are the response's headers (names
    case-insensitive) and ``request_id`` its ``X-Request-Id``, to quote when asking the
    provider's support.
    """

    status: int
    code: str | None
    message: str
    method: str
    path: str
    #: The response's headers (empty when the error was not built from a response).
    headers: Mapping[str, str] = Headers()
    #: The server's id for the request (``X-Request-Id``), when it sent one.
    request_id: str | None = None
    #: How many times the request was sent before this answer (retries included).
    attempts: int = 1
    #: Whether an earlier attempt of this request lost its answer (so it may have been
    #: carried out: a 409 or 404 now can be that attempt's own doing).
    after_lost_answer: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        method: str = "",
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.method = method
        self.path = path
        if headers:
            self.headers = Headers(headers)
            self.request_id = self.headers.get("X-Request-Id")
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        code = f" {self.code}" if self.code else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status}{code}: {self.message}{where}{rid}"

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep pickling working with kw-only init
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[APIError], state: dict[str, object]) -> APIError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, str(err))
    return err


class UnauthorizedError(APIError):
    """401: the API key is missing or invalid."""


class ForbiddenError(APIError):
    """403: the API key has been revoked."""


class NotFoundError(APIError):
    """404: no such resource (or it belongs to another account)."""


class InsufficientBalanceError(APIError):
    """402: the balance is too low for this purchase."""


class RateLimitedError(APIError):
    """429: too many requests; ``retry_after`` is the wait the server asked for, in seconds."""

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ValidationError(APIError):
    """400: the server rejected the request's parameters."""


class ProviderError(APIError):
    """503: the upstream SMS provider is temporarily unavailable (nothing was charged)."""


class ConflictError(APIError):
    """409: the order (or rental) is no longer in a state that allows this.

    ``order`` is the order as re-read after the conflict, when the SDK could read it:
    check ``order.sms_code`` — a code may have arrived.
    """

    order: Order | None

    def __init__(self, message: str, *, order: Order | None = None, **kw: object) -> None:
        self.order = order
        super().__init__(message, **kw)  # type: ignore[arg-type]


class APIResponseValidationError(APIError):
    """A successful response whose body does not have the documented shape.

    For a request that acts (``send_sms``, ``call``), the action took place: the
    server said so with its 2xx, only its answer could not be read.
    """


ERROR_CODES: dict[str, type[APIError]] = {
    "UNAUTHORIZED": UnauthorizedError,
    "FORBIDDEN": ForbiddenError,
    "NOT_FOUND": NotFoundError,
    "INSUFFICIENT_BALANCE": InsufficientBalanceError,
    "RATE_LIMITED": RateLimitedError,
    "VALIDATION_ERROR": ValidationError,
    "PROVIDER_ERROR": ProviderError,
    "CONFLICT": ConflictError,
}


class APIConnectionError(GsimError):
    """No usable answer: the connection failed, was reset or cut before a response."""

    method: str
    path: str

    #: What went wrong, without the request's method and path.
    reason: str

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        self.reason = message
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method else ""
        super().__init__(f"{message}{where}")


class APITimeoutError(APIConnectionError):
    """The request did not complete before its deadline."""


class OutcomeUnknownError(APIConnectionError):
    """A request that charges money may or may not have gone through.

    Raised for ``send_sms`` and ``call`` (never repeated, so a message is not sent
    twice), and for a purchase whose answer was lost when the SDK cannot prove which
    order or rental it bought: ``candidates`` then lists the orders (or rentals) that
    appeared on the account since it was sent and may be it — decide, e.g. cancel
    the ones you do not want. ``charged`` is True when the server answered 2xx (the
    purchase happened), None when that is unknown. Nothing was bought again.
    """

    candidates: Sequence[Order | Rental]
    charged: bool | None

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        candidates: Sequence[Order | Rental] = (),
        charged: bool | None = None,
    ) -> None:
        self.candidates = tuple(candidates)
        self.charged = charged
        super().__init__(message, method=method, path=path)


class PriceTooHighError(GsimError):
    """The number costs more than ``max_price``; nothing was spent (or it was refunded).

    When an order came back dearer than ``max_price`` and its code arrived before it
    could be cancelled, nothing was refunded: ``order`` is that order and ``code`` its
    code, which is yours to use.
    """

    price: Decimal
    max_price: Decimal
    order: Order | None
    code: str | None

    def __init__(
        self,
        message: str,
        *,
        price: Decimal,
        max_price: Decimal,
        order: Order | None = None,
        code: str | None = None,
    ) -> None:
        self.price = price
        self.max_price = max_price
        self.order = order
        self.code = code
        super().__init__(message)


class GuardError(GsimError):
    """The client's spend guard refused a purchase; nothing was sent, nothing was spent.

    ``retry_after`` is how many seconds until the guard would let it through as things
    stand (``None``: not before something else changes, e.g. a refund or a reset).
    See [`SpendLimit`][gsim_async.SpendLimit] and [`Breaker`][gsim_async.Breaker].
    """

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class SpendLimitError(GuardError):
    """The purchase would take net spend over the window past the spend limit.

    ``limit`` and ``per`` are the limit; ``spent`` is what the client (the fleet, with
    one) spent in the window minus what was refunded, ``reserved`` what purchases in
    flight hold, ``needed`` what this purchase would have reserved. ``order`` is set
    when an order came back dearer than reserved and past the limit: it was cancelled
    (refunded) unless its code won that race, in which case ``code`` is set (it was
    charged; the code is yours to use).
    """

    limit: Decimal
    per: timedelta
    spent: Decimal
    reserved: Decimal
    needed: Decimal
    order: Order | None
    code: str | None

    def __init__(
        self,
        message: str,
        *,
        limit: Decimal,
        per: timedelta,
        spent: Decimal,
        reserved: Decimal,
        needed: Decimal,
        retry_after: float | None = None,
        order: Order | None = None,
        code: str | None = None,
    ) -> None:
        self.limit = limit
        self.per = per
        self.spent = spent
        self.reserved = reserved
        self.needed = needed
        self.order = order
        self.code = code
        super().__init__(message, retry_after=retry_after)


class BreakerOpenError(GuardError):
    """Verifications of ``service`` in ``country`` kept failing: purchases there are held.

    ``failures`` in a row ended without a code (``no_code``) or left an
    ``activation()`` block by an exception after the code came (``after_code``);
    ``last_error`` names the last such exception's type. The breaker lets a trial
    purchase through ``retry_after`` seconds from now (its cooldown), closes on a
    verification that succeeds, and ``client.guard.reset()`` closes it at once.
    """

    service: str
    country: str | None
    failures: int
    no_code: int
    after_code: int
    last_error: str | None

    def __init__(
        self,
        message: str,
        *,
        service: str,
        country: str | None,
        failures: int,
        no_code: int = 0,
        after_code: int = 0,
        last_error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.service = service
        self.country = country
        self.failures = failures
        self.no_code = no_code
        self.after_code = after_code
        self.last_error = last_error
        super().__init__(message, retry_after=retry_after)


class MessageTimeoutError(GsimError, TimeoutError):
    """No matching SMS arrived on the rental before the timeout."""


class NoCodeError(GsimError):
    """A wait for a code ended without one; ``order`` is the order's last known state.

    ``orders`` is every order the wait involved: just ``order`` for one wait, every
    number tried for ``orders.activations()`` (oldest first).
    """

    order: Order
    orders: tuple[Order, ...]
    refunded: Decimal | None

    def __init__(
        self,
        message: str,
        *,
        order: Order,
        refunded: Decimal | None = None,
        orders: Sequence[Order] = (),
    ) -> None:
        self.order = order
        self.orders = tuple(orders) or (order,)
        self.refunded = refunded
        super().__init__(message)


class CodeTimeoutError(_RefundUnderWay, NoCodeError, TimeoutError):
    """No code before the wait's timeout. ``refunded`` is what the ban/cancel gave back.

    When the server paused the client (a 429) as the wait ended, the error is raised
    without waiting out the whole pause and ``refunded`` may still be ``None`` while
    the ban finishes in the background: ``await exc.wait_refund()`` returns the amount
    refunded once it is done (``None`` if the order could not be refunded), and the
    client's ``aclose()`` waits for it too.
    """

    _refund: asyncio.Future[Any] | None = None

    def __init__(
        self,
        message: str,
        *,
        order: Order,
        refunded: Decimal | None = None,
        pending: asyncio.Future[Any] | None = None,
    ) -> None:
        super().__init__(message, order=order, refunded=refunded)
        self._refund = pending


class JournalError(GsimError):
    """The journal (``Client(journal=...)``) cannot be opened or written.

    Raised when the client is made, or instead of a purchase: nothing is bought that
    the journal could not record first.
    """


class FleetError(GsimError):
    """The fleet's Redis (``Client(fleet=RedisFleet(...))``) cannot be used.

    Raised when the client opens (``async with Client(...)``), before any request:
    Redis unreachable, credentials refused, a Sentinel that names no primary for the
    service, a server that runs no Lua scripts or takes no writes. ``where`` says which
    Redis (never its password). Once open, a member that loses Redis does not raise: it
    paces and watches on its own until Redis is back.
    """

    def __init__(self, message: str, *, where: str) -> None:
        super().__init__(message)
        self.where = where


class JournalInUseError(JournalError):
    """Another live client, in this process or another, has the journal file open.

    Two clients on one journal would each take the other's orders for their own: give
    each its own file.
    """
