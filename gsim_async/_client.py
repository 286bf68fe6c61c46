"""``Client``: configuration, the session's lifetime, and the account/catalogue calls."""

from __future__ import annotations

import os
import ssl
from types import TracebackType

import aiohttp

from . import _constants as C
from . import _validation as v
from ._background import Background
from ._exceptions import InvalidArgumentError
from ._models import Balance, Country, Operator, Service
from ._purchases import PurchaseBook
from ._resources._orders import Orders
from ._resources._rentals import Rentals
from ._retry import RetryHook
from ._transport import Pool, Settings, Transport, check_base_url
from ._types import NOT_GIVEN, NotGiven
from ._watcher import OrderHook


class Client:
    """An asyncio client for the gsim API.

    ``api_key`` defaults to ``$GSIM_API_KEY`` and ``base_url`` to ``$GSIM_BASE_URL``,
    else ``https://gsim.io``. Use it as ``async with Client() as gsim:`` (or call
    ``await gsim.aclose()``); it opens one aiohttp session, in the running event loop,
    on first use.

    ``timeout`` is each attempt's deadline and ``connect_timeout`` that of opening a
    connection, in seconds; ``max_retries=0`` turns every retry off; ``poll_interval``
    is how often waiting helpers look for codes. Pass ``session`` to use your own
    aiohttp session (it is then never closed by us). ``max_requests_per_second`` keeps
    the client under a quota you know; ``on_retry`` is called with a ``RetryEvent``
    before each retry, ``on_order_update`` with an ``Order`` whenever a waited-on
    order changes status or gets its code.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = C.DEFAULT_TIMEOUT,
        connect_timeout: float = C.DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        poll_interval: float = C.DEFAULT_POLL_INTERVAL,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = C.DEFAULT_CONNECTION_LIMIT,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        dns_cache_ttl: int | None = C.DEFAULT_DNS_CACHE_TTL,
        max_requests_per_second: float | None = None,
        backoff_base: float = C.DEFAULT_BACKOFF_BASE,
        backoff_cap: float = C.DEFAULT_BACKOFF_CAP,
        max_retry_after: float = C.DEFAULT_MAX_RETRY_AFTER,
        max_response_size: int = C.DEFAULT_MAX_RESPONSE_SIZE,
        on_retry: RetryHook | None = None,
        on_order_update: OrderHook | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("GSIM_API_KEY")
        if not key or not key.strip():
            raise InvalidArgumentError(
                "no API key: pass Client(api_key=...) or set the GSIM_API_KEY environment "
                "variable (keys are made on the gsim dashboard)"
            )
        if any(c.isspace() for c in key.strip()) or not key.isprintable():
            raise InvalidArgumentError("api_key contains whitespace or control characters")
        url = base_url if base_url is not None else os.environ.get("GSIM_BASE_URL")
        settings = Settings(
            api_key=key.strip(),
            base_url=check_base_url(url or C.DEFAULT_BASE_URL),
            timeout=v.positive_seconds("timeout", timeout),
            connect_timeout=v.positive_seconds("connect_timeout", connect_timeout),
            max_retries=v.integer("max_retries", max_retries, 0),
            backoff_base=v.positive_seconds("backoff_base", backoff_base, allow_zero=True),
            backoff_cap=v.positive_seconds("backoff_cap", backoff_cap, allow_zero=True),
            max_retry_after=v.positive_seconds("max_retry_after", max_retry_after, allow_zero=True),
            max_response_size=v.integer("max_response_size", max_response_size, 1024),
            proxy=proxy,
        )
        if max_requests_per_second is not None:
            v.positive_seconds("max_requests_per_second", max_requests_per_second)
        self.poll_interval = v.positive_seconds("poll_interval", poll_interval)
        pool = Pool(
            session=session,
            connection_limit=v.integer("connection_limit", connection_limit, 1),
            dns_cache_ttl=dns_cache_ttl,
            ssl_context=ssl_context,
            max_requests_per_second=max_requests_per_second,
            on_retry=on_retry,
        )
        self._transport = Transport(settings, pool)
        self._background = Background()
        self._purchases = PurchaseBook(self._background)
        self.orders = Orders(self, on_order_update)
        self.rentals = Rentals(self)

    def with_options(
        self,
        *,
        timeout: float | NotGiven = NOT_GIVEN,
        connect_timeout: float | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        backoff_base: float | NotGiven = NOT_GIVEN,
        backoff_cap: float | NotGiven = NOT_GIVEN,
        max_retry_after: float | NotGiven = NOT_GIVEN,
        poll_interval: float | NotGiven = NOT_GIVEN,
    ) -> Client:
        """A view of this client with other per-call settings, for one call or a few.

        ``await gsim.with_options(max_retries=10).orders.create(...)``. The view shares
        this client's session, rate gate, watcher and purchase book; closing either
        closes both.
        """
        changes: dict[str, float | int] = {}
        for name, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("backoff_base", backoff_base),
            ("backoff_cap", backoff_cap),
            ("max_retry_after", max_retry_after),
        ):
            if not isinstance(value, NotGiven):
                positive = name in ("timeout", "connect_timeout")
                changes[name] = v.positive_seconds(name, value, allow_zero=not positive)
        if not isinstance(max_retries, NotGiven):
            changes["max_retries"] = v.integer("max_retries", max_retries, 0)
        view = object.__new__(Client)
        view._transport = self._transport.derive(**changes)
        view._background = self._background
        view._purchases = self._purchases
        view.poll_interval = (
            self.poll_interval
            if isinstance(poll_interval, NotGiven)
            else v.positive_seconds("poll_interval", poll_interval)
        )
        view.orders = Orders(view, watcher=self.orders._watcher)
        view.rentals = Rentals(view)
        return view

    @property
    def base_url(self) -> str:
        """The API's base URL (without ``/api/v1``)."""
        return self._transport.settings.base_url

    @property
    def max_retries(self) -> int:
        """Retries after a failed attempt (0: none)."""
        return self._transport.settings.max_retries

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has put on the wire, retries included."""
        return self._transport.requests_sent

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""
        return self._transport.closed

    def __repr__(self) -> str:
        return f"<gsim_async.Client base_url={self.base_url!r}>"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling and close the HTTP session (a session you passed in stays open)."""
        if self._transport.closed:
            return
        await self.orders._watcher.aclose()
        # Waiters woken by the watcher's close may start refunds (leaving activation()):
        # let them run, and let every refund finish, before the session goes away.
        await self._background.drain(C.DEFAULT_CLEANUP_TIMEOUT)
        await self._transport.aclose()

    # -- account and catalogue -------------------------------------------------------

    async def balance(self) -> Balance:
        """The account's balance."""
        return await self._transport.request("GET", "/balance", Balance)

    async def services(self) -> list[Service]:
        """Every service numbers can be bought for, with the cheapest price and stock."""
        return await self._transport.request("GET", "/services", list[Service])

    async def countries(self, service: str | None = None) -> list[Country]:
        """Countries with numbers (for ``service``, if given)."""
        params = {"service": v.text("service", service)} if service is not None else None
        return await self._transport.request("GET", "/countries", list[Country], params=params)

    async def operators(self, service: str, country: str) -> list[Operator]:
        """Operators of ``country`` selling numbers for ``service``, with prices and stock."""
        params = {"service": v.text("service", service), "country": v.text("country", country)}
        return await self._transport.request("GET", "/operators", list[Operator], params=params)


__all__ = ["Client"]
