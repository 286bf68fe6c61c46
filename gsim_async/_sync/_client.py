"""``SyncClient``: the blocking twin of ``Client``, for code that is not async."""

from __future__ import annotations

import copy
import os
import ssl
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from .. import _constants as C
from .._client import Client
from .._exceptions import InvalidArgumentError
from .._journal import Journal
from .._models import Balance, Country, Operator, Service
from .._retry import RetryHook
from .._types import NOT_GIVEN, NotGiven
from .._watcher import OrderHook
from ._orders import SyncOrders
from ._portal import Runner
from ._rentals import SyncRentals

if TYPE_CHECKING:
    from ..fleet import RedisFleet


class SyncClient:
    """A blocking client for the gsim API, for scripts, web views, workers and notebooks.

    The same arguments, names, models and errors as `Client`; every call blocks
    until its answer. ``with SyncClient() as gsim:`` (or ``gsim.close()``) closes it;
    it works without ``with`` too, and one left open is closed at the interpreter's
    exit (refunds first), never holding the exit up.

    One ``Client`` runs in an event loop of its own, in one daemon thread per
    ``SyncClient``: threads may share a client (its waits share one watcher), and a
    thread that runs an event loop (a notebook) may call it. Hooks (``on_retry``,
    ``on_order_update``, ``match`` callables) run in that thread: keep them quick, and
    do not call the client from them.

    ``session`` must stay ``None``: an aiohttp session belongs to one event loop, and
    this client's loop is its own (``connection_limit``, ``proxy`` and ``ssl_context``
    configure the one it makes).

    Ctrl-C (``KeyboardInterrupt``) during a call cancels it as ``task.cancel()`` would
    an async call, and waits for the cleanup it starts; inside an ``activation()``
    block, or during a wait with ``on_timeout``, that refunds the order before the
    ``KeyboardInterrupt`` leaves. A second Ctrl-C stops waiting at once.

    SIGTERM (``docker stop``, Kubernetes, systemd) stops every open client (see
    ``stop()``: each wait given up as its ``on_timeout`` says and refunded, or left to
    the journal or fleet that keeps it) and raises ``SystemExit(143)`` in the main
    thread, so ``with`` blocks close their clients, refunds first, within a 10 s
    grace; what cannot be refunded in time is reported on stderr. The handler is
    installed by a client made in the main thread, only where SIGTERM still has its
    default disposition: a program's own handler is never overridden (it may call
    ``stop()`` itself). The last client to close puts the default back.
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
        session: None = None,
        connection_limit: int = C.DEFAULT_CONNECTION_LIMIT,
        proxy: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        dns_cache_ttl: int | None = C.DEFAULT_DNS_CACHE_TTL,
        max_requests_per_second: float | None = None,
        slow_start: bool = True,
        backoff_base: float = C.DEFAULT_BACKOFF_BASE,
        backoff_cap: float = C.DEFAULT_BACKOFF_CAP,
        max_retry_after: float = C.DEFAULT_MAX_RETRY_AFTER,
        max_response_size: int = C.DEFAULT_MAX_RESPONSE_SIZE,
        reconcile_window: float | None = None,
        fleet: RedisFleet | None = None,
        journal: str | os.PathLike[str] | Journal | Literal[False] | None = None,
        on_retry: RetryHook | None = None,
        on_order_update: OrderHook | None = None,
    ) -> None:
        if session is not None:
            raise InvalidArgumentError(
                "SyncClient does not take a session: an aiohttp session belongs to one event "
                "loop and SyncClient runs its own; use connection_limit, proxy or ssl_context"
            )

        def make() -> Client:
            return Client(
                api_key,
                base_url=base_url,
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_retries=max_retries,
                poll_interval=poll_interval,
                connection_limit=connection_limit,
                proxy=proxy,
                ssl_context=ssl_context,
                dns_cache_ttl=dns_cache_ttl,
                max_requests_per_second=max_requests_per_second,
                slow_start=slow_start,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                max_retry_after=max_retry_after,
                max_response_size=max_response_size,
                reconcile_window=reconcile_window,
                fleet=fleet,
                journal=journal,
                on_retry=on_retry,
                on_order_update=on_order_update,
            )

        runner = Runner(make)
        self._bind(runner, runner.client)

    def _bind(self, runner: Runner, client: Client) -> None:
        self._runner = runner
        self._client = client
        self.poll_interval = client.poll_interval
        self.orders = SyncOrders(runner, client.orders)
        self.rentals = SyncRentals(runner, client.rentals)

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
    ) -> SyncClient:
        """A view of this client with other per-call settings, for one call or a few.

        It shares this client's thread, session, pacing and watcher; closing either
        closes both.
        """
        client = self._client.with_options(
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            poll_interval=poll_interval,
        )
        view = copy.copy(self)
        view._bind(self._runner, client)
        return view

    @property
    def base_url(self) -> str:
        """The API's base URL (without ``/api/v1``)."""
        return self._client.base_url

    @property
    def max_retries(self) -> int:
        """Retries after a failed attempt (0: none)."""
        return self._client.max_retries

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has put on the wire, retries included."""
        return self._client.requests_sent

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""
        return self._runner.closed

    @property
    def journal(self) -> str | None:
        """The journal file's path (``None``: no journal)."""
        return self._client.journal

    def __repr__(self) -> str:
        return f"<gsim_async.SyncClient base_url={self.base_url!r}>"

    def __enter__(self) -> SyncClient:
        # As ``async with Client()``: an earlier run's journal is taken over now, not
        # at the first call.
        self._runner.call(self._client.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._runner.close(interrupted=isinstance(exc, KeyboardInterrupt))

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop: give every wait up now, refuse new purchases; ``close()`` finishes.

        As ``Client.stop()``: every wait in progress, in any thread, is given up as its
        ``on_timeout`` says (banned by default) and refunded in the background, and the
        blocked call raises ``ClientClosedError`` saying so; with a journal or a fleet
        the waits only end, their orders left to it. ``timeout`` caps every wait for
        refunds from now on, ``close()``'s included. Returns at once; callable from any
        thread and from a signal handler.
        """
        self._client.stop(timeout=timeout)

    def close(self, *, timeout: float | None = None) -> None:
        """Stop, refund, stop polling, close the session and the thread.

        Closing stops the client first, as ``Client.aclose()`` does: a wait still
        running in another thread is given up as its ``on_timeout`` says (banned by
        default) and refunded, or left to the journal or fleet; an open activation is
        cancelled. Refunds under way are waited for (up to ``timeout`` seconds, default
        30, beyond any pause the server imposed, never past a ``stop(timeout=...)``;
        what has not landed by then is reported and left to the journal); a Ctrl-C
        meanwhile keeps waiting, a second one stops. Closing twice does nothing.
        """
        self._runner.close(timeout=timeout)

    # -- account and catalogue -------------------------------------------------------

    def balance(self) -> Balance:
        """The account's balance."""
        return self._runner.call(self._client.balance)

    def services(self) -> list[Service]:
        """Every service numbers can be bought for, with the cheapest price and stock."""
        return self._runner.call(self._client.services)

    def countries(self, service: str | None = None) -> list[Country]:
        """Countries with numbers (for ``service``, if given); see ``Client.countries``."""
        return self._runner.call(lambda: self._client.countries(service))

    def operators(self, service: str, country: str) -> list[Operator]:
        """Operators of ``country`` selling numbers for ``service``, with prices and stock.

        ``country`` is an id, an ISO code or a name, as for ``Client.operators``.
        """
        return self._runner.call(lambda: self._client.operators(service, country))


__all__ = ["SyncClient"]
