"""``Client``: configuration, the session's lifetime, and the account/catalogue calls."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import ssl
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import aiohttp

from . import _constants as C
from . import _stop
from . import _validation as v
from ._converter import Decoder, decoder
from ._countries import CountryCatalogue
from ._exceptions import InvalidArgumentError
from ._guard import Guard, SpendGuard
from ._guard_config import Breaker, SpendLimit, breaker_from, spend_limit_from
from ._http import Session, check_base_url
from ._journal import FileJournal, Journal, accounts, normal_base_url
from ._models import Balance, Country, Operator, Service
from ._pacing import Pacing
from ._resources._orders import OrderBook, Orders
from ._resources._recovery import Recovery
from ._resources._rentals import RentalBook, Rentals
from ._resources._shared import OWNERS
from ._resources._shared import Shared as Bookkeeping
from ._retry import RetryHook
from ._telemetry import Hooks, Telemetry, resolve, traced
from ._telemetry import catalogue_args as _catalogue_args
from ._telemetry import count_result as _count
from ._transport import Settings, Shared, Transport
from ._types import NOT_GIVEN, NotGiven
from ._watcher import OrderHook

if TYPE_CHECKING:
    from .fleet import RedisFleet
    from .fleet._binding import Binding

log = logging.getLogger("gsim_async")

_BALANCE: Decoder[Balance] = decoder(Balance)
_SERVICES: Decoder[list[Service]] = decoder(list[Service])
_COUNTRIES: Decoder[list[Country]] = decoder(list[Country])
_OPERATORS: Decoder[list[Operator]] = decoder(list[Operator])


class Client:
    """An asyncio client for the gsim API.

    ``api_key`` defaults to ``$GSIM_API_KEY`` and ``base_url`` to ``$GSIM_BASE_URL``,
    else ``https://gsim.io``. Use it as ``async with Client() as gsim:`` (or call
    ``await gsim.aclose()``); it opens one aiohttp session, in the running event loop,
    on first use.

    ``timeout`` is each attempt's deadline and ``connect_timeout`` that of opening a
    connection, in seconds; ``max_retries=0`` turns every retry off; ``poll_interval``
    is how often waiting helpers look for codes. Pass ``session`` to use your own
    aiohttp session (it is then never closed by us).

    Rate limits: ``max_requests_per_second`` paces the client under a limit you know;
    without it the client starts slowly and learns the server's limit from its first
    429 (``slow_start=False`` sends at full speed until then). ``max_retry_after``
    caps the pause a 429 imposes.

    ``reconcile_window`` is how long (seconds) a server may still be working on a
    purchase whose answer was lost: the account is checked until then before the SDK
    concludes nothing was bought (default: 60 s or twice ``timeout``).

    ``fleet`` (``gsim_async.fleet.RedisFleet``; default from ``$GSIM_FLEET_URL``,
    ``False`` for none whatever it says) makes
    every process on the same key cooperate through Redis: one rate gate, exact
    ownership of purchases, one watcher for all (``pip install 'gsim-async[redis]'``).
    A Redis the fleet cannot use raises ``FleetError`` when the client opens.

    ``journal`` (a file path or a ``Journal``; default from ``$GSIM_JOURNAL``, ``False``
    for none whatever it says) keeps what the client owes
    in SQLite, so that it outlives the process: a purchase's intent before it leaves,
    every order held until its code or its refund. Opened again after a crash, it
    reconciles what was on the wire and refunds what is due, unless the program takes
    the orders back with ``orders.recovered()``. One live client per journal file
    (``JournalInUseError``).

    ``telemetry``: with ``pip install 'gsim-async[otel]'``, the client reports traces
    and metrics to the OpenTelemetry providers the application configured (nothing to
    write; a no-op when it configured none). ``False`` turns that off, as does
    ``$GSIM_TELEMETRY=off`` when it is left out; a ``Telemetry`` names other providers.
    ``spend_limit`` (a ``SpendLimit``; default from ``$GSIM_SPEND_LIMIT``, e.g.
    ``20/24h``) caps net spend (bought minus refunded) over a rolling window, and
    ``breaker`` (a ``Breaker``; default from ``$GSIM_BREAKER``) holds purchases of a
    service in a country whose verifications keep failing: a purchase they refuse
    raises ``SpendLimitError`` or ``BreakerOpenError`` before any request. ``False``
    turns either off whatever the environment says; with a fleet both are fleet-wide.
    ``client.guard`` shows their state (docs/guides/spend-guard.md).

    ``on_retry`` is called with a ``RetryEvent`` before each retry, ``on_order_update``
    with an ``Order`` whenever a waited-on order changes status or gets its code.
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
        slow_start: bool = True,
        backoff_base: float = C.DEFAULT_BACKOFF_BASE,
        backoff_cap: float = C.DEFAULT_BACKOFF_CAP,
        max_retry_after: float = C.DEFAULT_MAX_RETRY_AFTER,
        max_response_size: int = C.DEFAULT_MAX_RESPONSE_SIZE,
        reconcile_window: float | None = None,
        fleet: RedisFleet | Literal[False] | None = None,
        journal: str | os.PathLike[str] | Journal | Literal[False] | None = None,
        telemetry: bool | Telemetry | None = None,
        spend_limit: SpendLimit | Literal[False] | None = None,
        breaker: Breaker | Literal[False] | None = None,
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
        window = (
            max(C.DEFAULT_RECONCILE_WINDOW, 2 * settings.timeout)
            if reconcile_window is None
            else v.positive_seconds("reconcile_window", reconcile_window, allow_zero=True)
        )
        self.poll_interval = v.positive_seconds("poll_interval", poll_interval)
        session_ = Session(
            session=session,
            connection_limit=v.integer("connection_limit", connection_limit, 1),
            dns_cache_ttl=dns_cache_ttl,
            ssl_context=ssl_context,
        )
        pacing = Pacing(max_requests_per_second, slow_start=v.boolean("slow_start", slow_start))
        # Checked before anything is made: a bad limit fails here, not at a purchase.
        guard = Guard(spend_limit_from(spend_limit), breaker_from(breaker))
        hooks = _hooks(resolve(telemetry), settings.base_url)
        self._transport = Transport(settings, Shared(session_, pacing, on_retry, hooks))
        self._books = Bookkeeping(self._transport, self.poll_interval, window)
        self._books.guard = guard
        self._orders_book = OrderBook(self._books, on_order_update)
        self._rentals_book = RentalBook(self._books)
        self._recovery = Recovery(
            shared=self._books,
            calls=self._orders_book.root,
            orders=self._orders_book.reconciler,
            rentals=self._rentals_book.reconciler,
            get_rental=self._rentals_book.get,
        )
        self._orders_book.recovery = self._rentals_book.recovery = self._recovery
        if fleet is None and os.environ.get("GSIM_FLEET_URL"):
            from .fleet import RedisFleet

            fleet = RedisFleet(os.environ["GSIM_FLEET_URL"])
        self._fleet: Binding | None = None
        self._fleet_stop: asyncio.Task[None] | None = None
        if fleet is not None and fleet is not False:
            self._fleet = fleet.bind(
                settings.api_key,
                settings.base_url,
                pacing=pacing,
                ownership=self._books.ownership,
                reconcilers=[self._orders_book.reconciler, self._rentals_book.reconciler],
                source=self._orders_book.root,
                poll_interval=self.poll_interval,
                on_update=self._orders_book.on_update,
                told=max_requests_per_second,
                slow_start=slow_start,
                take_over=self._recovery.take_over,
                released=self._released,
                guard=guard,
            )
            self._books.obligations.sinks.append(self._fleet.journal)
            self._orders_book.watcher = self._fleet.watcher
            self._orders_book.fleet_claims = self._fleet.claimed
            self._transport.shared.starter = self._fleet.start
        self._journal: FileJournal | None = None
        if journal is None and os.environ.get("GSIM_JOURNAL"):
            journal = os.environ["GSIM_JOURNAL"]
        if journal is not None and journal is not False:
            config = journal if isinstance(journal, Journal) else Journal(journal)
            self._journal = FileJournal(
                config.path,
                accounts(settings.api_key, settings.base_url),
                server=normal_base_url(settings.base_url),
            )
            config.foreign_rows = self._journal.snapshot.foreign
            self._books.obligations.sinks.append(self._journal)
            self._recovery.grace = config.grace
            self._recovery.load(self._journal.snapshot, where=f"the journal {config.path}")
        starter = self._transport.shared.starter

        async def start() -> None:
            if starter is not None:
                await starter()
            self._recovery.start()

        self._transport.shared.starter = start
        if hooks is not None:
            self._observe(hooks)
        root = self._transport
        # One copy per client (its views included): countries by ISO code or name.
        self._countries = CountryCatalogue(lambda: root.request("GET", "/countries", _COUNTRIES))
        self._bind(self._transport, self.poll_interval)
        # A stop signal reaches every live client (gsim_async.run(), SyncClient).
        _stop.register(self)

    def _released(self, order_ids: Sequence[str]) -> None:
        # The fleet took these over while this process was unresponsive: the leader
        # refunds them, and this client (its file journal too) owes them no more.
        for order_id in order_ids:
            self._books.obligations.ended(order_id, "taken over by the fleet")

    def _observe(self, hooks: Hooks) -> None:
        """Report this client's gauges: waits, journal rows, fleet leadership, the gate."""
        book, obligations, fleet = self._orders_book, self._books.obligations, self._fleet
        hooks.observe(
            waiting=lambda: book.watcher.watching,
            rows=(lambda: obligations.open_rows) if obligations.active else None,
            leading=(lambda: fleet.watcher.leading) if fleet is not None else None,
            pacing=self._transport.pacing,
        )

    def _bind(self, transport: Transport, poll_interval: float) -> None:
        self._transport = transport
        self.poll_interval = poll_interval
        self.orders = Orders(transport, self._orders_book, poll_interval, self._countries)
        self.rentals = Rentals(transport, self._rentals_book, poll_interval)
        self.guard = SpendGuard(self._books.guard, self._countries.resolve)

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
        this client's session, pacing, watcher and bookkeeping; closing either closes
        both.
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
        interval = (
            self.poll_interval
            if isinstance(poll_interval, NotGiven)
            else v.positive_seconds("poll_interval", poll_interval)
        )
        view = copy.copy(self)
        view._bind(self._transport.derive(**changes), interval)
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
        return self._transport.shared.requests_sent

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""
        return self._transport.shared.session.closed

    def __repr__(self) -> str:
        return f"<gsim_async.Client base_url={self.base_url!r}>"

    @property
    def journal(self) -> str | None:
        """The journal file's path (``None``: no journal)."""
        return None if self._journal is None else str(self._journal.path)

    async def __aenter__(self) -> Client:
        # Recovery from the journal starts now, not only at the first request; a fleet
        # whose Redis cannot be used fails here (FleetError), and nothing is left open.
        try:
            await self._transport.shared.ready()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop: give every wait up now, refuse new purchases; ``aclose()`` finishes.

        What a stop signal does under ``gsim_async.run()`` (design.md, money rule 9),
        for programs and frameworks that handle the signal themselves. Every wait in
        progress (``wait_for_code``, ``as_completed``, an activation's wait) is given
        up as its ``on_timeout`` says: banned (the default) or cancelled, in the
        background, and the waiter gets ``ClientClosedError`` saying so (``.order``,
        ``.refunded``), or the code if it raced the stop; ``"keep"`` keeps the order.
        With a journal or a fleet, which keep what the client owes, the waits only end:
        their orders are left to it, to decide as after a crash (a later run may take
        them back with ``orders.recovered()``; else they are refunded when due). A wait
        or purchase begun after the stop ends at once the same way (``ClientClosedError``).

        ``timeout`` caps, from now, every wait for refunds, the server's pauses
        included, ``aclose()``'s too: what has not landed by then is reported (WARNING,
        with the order ids) and left. Returns at once; callable from any thread and
        from signal handlers (it then takes effect in the client's loop, soon).
        Stopping twice only ever shortens the ``timeout``.
        """
        if timeout is not None:
            timeout = v.positive_seconds("timeout", timeout, allow_zero=True)
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            _stop.stop_soon(self, timeout)
        else:
            self._stop_now(timeout)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._transport.shared.session.loop

    def _stop_now(self, timeout: float | None, *, asked: bool = True) -> None:
        """The stop, in the client's own loop (or before it ever ran).

        ``asked``: the program (or a stop signal) asked for it, not a close: closing
        then names the orders the stop left as they were.
        """
        books = self._books
        if timeout is not None:
            books.background.hurry(timeout)
        books.waits.asked = books.waits.asked or asked
        fleet = self._fleet
        if fleet is not None and self._journal is None and fleet.member.active:
            # Whether the fleet keeps the waits is Redis' to say, atomically: members
            # stopping together must not each leave them to the others (see
            # ``Binding.stopping``). One round trip; the waits end when it answers, and
            # purchases are refused from now.
            books.waits.refusing = True
            if self._fleet_stop is None:
                self._fleet_stop = asyncio.get_running_loop().create_task(self._stop_in_fleet())
            return
        books.waits.stop(self._orders_book.root, self._keeper())

    async def _stop_in_fleet(self) -> None:
        assert self._fleet is not None
        carried = False
        try:
            carried = await self._fleet.stopping()
        finally:
            self._books.waits.stop(self._orders_book.root, "the fleet" if carried else None)
        if not carried:
            log.info("stopping: no other member of the fleet stays; this one refunds itself")

    def _keeper(self) -> str | None:
        """What keeps this client's obligations beyond the process, if anything."""
        keepers = []
        if self._journal is not None:
            keepers.append(f"the journal {self._journal.path}")
        if self._fleet is not None and self._fleet.carries and not self._fleet.last:
            keepers.append("the fleet")
        return " and ".join(keepers) or None

    async def aclose(self, *, timeout: float | None = None) -> None:
        """Stop, refund, stop polling, and close the HTTP session.

        Closing stops the client first (see ``stop()``): every wait still running is
        given up as its ``on_timeout`` says (banned by default) and refunded, or, with
        a journal or a fleet, left to it as after a crash; an open ``activation()``
        block's order is cancelled. Refunds under way (these, a ban after a timeout,
        leaving an ``activation()`` block) are waited for: up to ``timeout`` seconds
        (default 30) beyond any pause the server imposed, and never past a
        ``stop(timeout=...)`` given earlier. Refunds that have not landed by then are
        left to the journal (logged at WARNING with their ids: the next run with the
        same journal makes them) or, without one, logged at WARNING as left charged.
        A session you passed in stays open.
        """
        limit = (
            C.CLEANUP_TIMEOUT
            if timeout is None
            else v.positive_seconds("timeout", timeout, allow_zero=True)
        )
        shared = self._transport.shared
        if shared.session.closed:
            return
        self._stop_now(None, asked=False)
        if self._fleet_stop is not None:
            await self._fleet_stop
        if self._fleet is not None:
            # The last of a fleet stopping together refunds what the others left to it.
            await self._fleet.take_over_leavers()
        pacing = shared.pacing
        end = time.monotonic() + limit + pacing.paused_for
        background = self._books.background
        if background.deadline is not None:
            end = min(end, background.deadline)
        # What an earlier run left that is not due yet stays in the journal.
        await self._recovery.aclose(max(end - time.monotonic(), 0.0))
        # Blocks still open lose their number: refund it now, not after the session died.
        await self._books.activations.close(background, end - time.monotonic())
        await self._orders_book.watcher.aclose()
        await self._orders_book.reconciler.aclose()
        await self._rentals_book.reconciler.aclose()
        # Waiters woken by the watcher's close may start refunds: let them run, and let
        # every refund finish, before the session goes away.
        # One deadline for all of it, extended by any pause the server imposes meanwhile.
        await self._books.background.drain(max(end - time.monotonic(), 0.0) + pacing.paused_for)
        left = sorted(self._books.refunding)
        if left:
            self._report_unrefunded(left)
        if self._books.waits.asked and self._books.waits.keeper is None:
            self._report_held(set(left))
        self._books.background.cancel_all()
        if self._fleet is not None:
            await self._fleet.aclose()
        pacing.close()
        self._books.waits.closed = True
        await shared.session.aclose()
        if self._journal is not None:
            await self._journal.aclose()
        if shared.telemetry is not None:
            shared.telemetry.close()

    def _report_unrefunded(self, ids: list[str]) -> None:
        shown = ", ".join(ids[:50]) + (f" and {len(ids) - 50} more" if len(ids) > 50 else "")
        if self._journal is not None or self._fleet is not None:
            where = f"the journal {self._journal.path}" if self._journal else "the fleet"
            log.warning(
                "closing with %d refund(s) not landed yet: %s; %s keeps them, and the next "
                "run with it refunds them",
                len(ids),
                shown,
                where,
            )
        else:
            log.warning(
                "closing with %d refund(s) not landed yet: %s; these orders are left "
                "charged until they expire (a journal, Client(journal=...), would refund "
                "them on the next run)",
                len(ids),
                shown,
            )

    def _report_held(self, left: set[str]) -> None:
        """After a stop: the orders it left as they were (no wait on them), by id."""
        ref = self._books.owner_ref
        held = sorted(set(OWNERS.held_by(ref)) - left) if ref is not None else []
        if not held:
            return
        shown = ", ".join(held[:50]) + (f" and {len(held) - 50} more" if len(held) > 50 else "")
        log.warning(
            "stopped with %d order(s) of this client left as they were, with no code and no "
            "wait on them (bought and not waited on yet, or kept): %s; they stay charged "
            "until they expire unless something cancels them",
            len(held),
            shown,
        )

    # -- account and catalogue -------------------------------------------------------

    @traced("gsim.balance")
    async def balance(self) -> Balance:
        """The account's balance."""
        return await self._transport.request("GET", "/balance", _BALANCE)

    @traced("gsim.services", result=_count)
    async def services(self) -> list[Service]:
        """Every service numbers can be bought for, with the cheapest price and stock."""
        return await self._transport.request("GET", "/services", _SERVICES)

    @traced("gsim.countries", _catalogue_args, _count)
    async def countries(self, service: str | None = None) -> list[Country]:
        """Countries with numbers (for ``service``, if given).

        The whole list (no ``service``) also refreshes the client's copy of the
        catalogue, through which countries may be named by ISO code or name.
        """
        params = {"service": v.text("service", service)} if service is not None else None
        found = await self._transport.request("GET", "/countries", _COUNTRIES, params=params)
        if params is None:
            self._countries.load(found)
        return found

    @traced("gsim.operators", _catalogue_args, _count)
    async def operators(self, service: str, country: str) -> list[Operator]:
        """Operators of ``country`` selling numbers for ``service``, with prices and stock.

        ``country`` is an id, an ISO code or a name (``"russia"``, ``"RU"``, ``"Russia"``);
        an unknown code or name raises ``InvalidArgumentError`` naming close matches, an
        id the server does not know its ``ValidationError`` / ``NotFoundError``.
        """
        service = v.text("service", service)
        v.text("country", country)
        country = await self._countries.resolve(country)
        params = {"service": service, "country": country}
        found = await self._transport.request("GET", "/operators", _OPERATORS, params=params)
        self._books.guard.saw_quote(service, country, found)  # prices for reservations
        return found


#: Set once ``opentelemetry`` proved not importable: not looked for again.
_otel_missing = False


def _hooks(config: Telemetry | None, base_url: str) -> Hooks | None:
    """A new client's telemetry: ``None`` when off, or when OpenTelemetry is not installed."""
    global _otel_missing
    if config is None or _otel_missing:
        return None
    try:
        from . import _otel
    except ImportError:
        # The extra is not installed (or the application blocked it): nothing reported.
        _otel_missing = True
        return None
    return _otel.Hooks(config, base_url)


__all__ = ["Client"]
