"""``Sandbox``: the gsim API on 127.0.0.1, with knobs for tests."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

from ._accounts import Account, Money
from ._app import build_app
from ._catalogue import E164, Catalogue
from ._clock import Clock, Scheduler
from ._errors import StateError, python_errors
from ._faults import FaultInjector, Faults, fault_changes
from ._records import Ledger, OrderRecord, RentalRecord, Stats
from ._state import State
from ._stats import Counters
from ._tasks import Background
from ._timestamps import Timestamps


def to_money(value: Money, name: str = "amount") -> Decimal:
    """A finite Decimal from Decimal, str, int or float (floats via their shortest repr)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not bool")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{name} must be a decimal amount, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return amount


class Sandbox:
    """A real HTTP server on loopback that behaves like the gsim API, with real state.

    ``async with Sandbox() as sb:`` starts it on an ephemeral port;
    ``sb.base_url`` and ``sb.api_key`` are what a client needs. The API lives
    under ``sb.base_url + "/api/v1"``, the control API under ``/_sandbox/``.

    Arguments:
        seed: every random choice (ids, numbers, codes, delays, faults) derives from it.
        api_key: the default key; None draws ``"2s_" + 40`` characters from the seed.
        balance: opening balance of the default key, in USD.
        code_delay: codes arrive automatically after a uniform delay in this range (s).
        no_code_ratio: the fraction of orders whose code never arrives by itself.
        order_ttl: seconds from purchase to EXPIRED (with an automatic refund).
        auto_deliver: False: codes only arrive through
            [`deliver_code`][gsim_async.sandbox.Sandbox.deliver_code].
        faults: the faults injected from the start (see [`Faults`][gsim_async.sandbox.Faults]).
        stock: numbers in stock per operator, per service and country.
        shutdown_timeout: seconds [`close`][gsim_async.sandbox.Sandbox.close] waits for
            requests still in progress.
        clock_skew: seconds the server's clock is ahead of (or, negative, behind) this
            machine's: timestamps and the ``Date`` header follow it.
        date_offset: seconds the ``Date`` header is off from the sandbox clock (the
            ``date_offset`` fault; None keeps the one of ``faults``).
        timestamp_style: how the API writes timestamps (the ``timestamp_style`` fault:
            "ms", "s", "us", "offset" or "varied"; None keeps the one of ``faults``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        api_key: str | None = None,
        balance: Money = Decimal("100"),
        code_delay: tuple[float, float] = (1.0, 5.0),
        no_code_ratio: float = 0.0,
        order_ttl: float = 1200.0,
        auto_deliver: bool = True,
        faults: Faults | None = None,
        stock: int = 100_000,
        shutdown_timeout: float = 1.0,
        clock_skew: float = 0.0,
        date_offset: float | None = None,
        timestamp_style: str | None = None,
    ) -> None:
        low, high = (float(v) for v in code_delay)
        if not 0.0 <= low <= high:
            raise ValueError(
                f"code_delay must be (low, high) with 0 <= low <= high, got {code_delay}"
            )
        if not 0.0 <= no_code_ratio <= 1.0:
            raise ValueError(f"no_code_ratio must be between 0 and 1, got {no_code_ratio}")
        if not (order_ttl > 0 and math.isfinite(order_ttl)):
            raise ValueError(f"order_ttl must be a positive number of seconds, got {order_ttl}")
        if stock < 0:
            raise ValueError(f"stock must be >= 0, got {stock}")
        self.host = host
        self.port = port
        self.seed = seed
        self._shutdown_timeout = shutdown_timeout
        self._clock = Clock(clock_skew)
        self._scheduler = Scheduler(self._clock)
        self._state = State(
            seed=seed,
            clock=self._clock,
            scheduler=self._scheduler,
            catalogue=Catalogue(stock),
            code_delay=(low, high),
            no_code_ratio=float(no_code_ratio),
            order_ttl=float(order_ttl),
            auto_deliver=auto_deliver,
        )
        self._faults = faults if faults is not None else Faults()
        if date_offset is not None:
            self._faults.date_offset = date_offset
        if timestamp_style is not None:
            self._faults.timestamp_style = timestamp_style
        self._timestamps = Timestamps(lambda: self._faults.timestamp_style, seed)
        self._injector = FaultInjector(self._faults, seed)
        self._counters = Counters()
        self._background = Background()
        self._default = self._state.accounts.add(api_key, to_money(balance, "balance"))
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.app: web.Application = build_app(
            self._state, self._injector, self._counters, self._background, self._timestamps, self
        )
        """The aiohttp application, to mount in another server if you prefer."""

    # -- lifecycle --

    async def start(self) -> Sandbox:
        """Bind and serve; returns self. Prefer ``async with``."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown}:{port}"
        self._scheduler.start()
        return self

    async def close(self) -> None:
        """Stop serving (requests in progress get ``shutdown_timeout`` to finish)."""
        self._scheduler.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._background.aclose()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the API is under ``/api/v1``)."""
        if self._base_url is None:
            raise RuntimeError("the sandbox is not running; use `async with Sandbox() as sb`")
        return self._base_url

    @property
    def api_url(self) -> str:
        """``base_url + "/api/v1"``."""
        return self.base_url + "/api/v1"

    @property
    def api_key(self) -> str:
        """The default API key."""
        return self._default.key

    # -- time --

    @property
    def clock(self) -> Clock:
        """The sandbox clock: ``clock.now()`` is ``time.time()`` plus what ``advance()`` added.

        See [`advance`][gsim_async.sandbox.Sandbox.advance].
        """
        return self._clock

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward, delivering codes and expiring orders now due."""
        self._scheduler.advance(seconds)

    # -- accounts and money --

    def _account(self, key: str | None) -> Account:
        return self._default if key is None else self._state.accounts.get(key)

    def _buyer(self, key: str | None) -> Account:
        account = self._account(key)
        if account.revoked:
            raise StateError(f"API key {account.key!r} has been revoked")
        return account

    def add_key(self, key: str | None = None, balance: Money = Decimal("100")) -> str:
        """Create another account and return its API key (drawn from the seed if None)."""
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise TypeError("key must be a non-empty string or None")
        return self._state.accounts.add(key, to_money(balance, "balance")).key

    def revoke_key(self, key: str) -> None:
        """Revoke a key: its requests get 403 FORBIDDEN from now on."""
        self._state.accounts.get(key).revoked = True

    def set_balance(self, amount: Money, key: str | None = None) -> None:
        """Set a key's balance (booked in the ledger as an adjustment)."""
        self._state.accounts.set_balance(self._account(key), to_money(amount))

    def balance(self, key: str | None = None) -> Decimal:
        """A key's current balance."""
        return self._account(key).balance

    def ledger(self, key: str | None = None) -> Ledger:
        """Every charge and refund of a key; ``ledger().balanced`` checks the identity."""
        return self._state.ledger(self._account(key))

    # -- orders --

    def deliver_code(self, order_id: str, code: str | None = None) -> str:
        """Make an order's code arrive now (random 6 digits if None) and return it.

        Raises KeyError for an unknown order and ValueError (``StateError``)
        unless the order is PENDING (or RECEIVED without a code).
        """
        if code is not None and not isinstance(code, str):
            raise TypeError("code must be a string")
        return self._state.orders.deliver_code(order_id, code)

    def set_order_status(self, order_id: str, status: str, *, refund: bool = False) -> OrderRecord:
        """Force any status string, even one the API does not document (``"ON_HOLD"``).

        ``refund=True`` also refunds the order, unless it was refunded already.
        """
        return self._state.orders.force_status(order_id, status, refund=refund).record()

    def order(self, order_id: str) -> OrderRecord:
        """A snapshot of one order (KeyError if unknown)."""
        return self._state.orders.by_id[order_id].record()

    def orders(self, key: str | None = None) -> list[OrderRecord]:
        """Snapshots of a key's orders, oldest first."""
        return self._state.orders.records(self._account(key))

    def place_order(
        self, service: str, country: str, operator: str | None = None, *, key: str | None = None
    ) -> OrderRecord:
        """Buy an order on a key's account as another client of that key would.

        The rules of ``POST /orders`` apply (stock, price, balance; charged and
        in the ledger, listed by the API), without the faults. Raises KeyError
        for an unknown key, ValueError for an unknown service, country or
        operator and StateError when the purchase is refused (no stock, balance
        too low, key revoked).
        """
        account = self._buyer(key)
        with python_errors():
            orders = self._state.orders
            return orders.place(account, orders.quote(account, service, country, operator)).record()

    def set_order_latency(self, order_id: str, seconds: float) -> None:
        """Make every ``GET /orders/{id}`` of one order take ``seconds`` (0 removes it).

        Other requests are not slowed. Raises KeyError for an unknown order.
        """
        if order_id not in self._state.orders.by_id:
            raise KeyError(f"order {order_id!r} not found")
        self._injector.set_order_latency(order_id, seconds)

    def set_delivery_rate(
        self,
        rate: float | None,
        service: str | None = None,
        country: str | None = None,
        operator: str | None = None,
    ) -> None:
        """Set the chance (0 to 1) that an order matching the rule gets its code by itself.

        The most specific rule matching an order wins (operator, then country,
        then service, then the rule with none of them); without one,
        ``no_code_ratio`` decides. The draw is seeded and made at purchase, so
        a rule applies to orders bought after it. ``rate=None`` removes the
        rule. Codes arrive by themselves only with ``auto_deliver``.
        Raises ValueError for a rate outside 0..1 or an unknown id.
        """
        operator = None if operator == "any" else operator
        with python_errors():
            self._state.orders.set_delivery_rate(rate, service, country, operator)

    def set_stock(
        self, service: str, country: str, count: int, operator: str | None = None
    ) -> None:
        """Set the numbers in stock for one operator (all of them if None)."""
        self._state.catalogue.set_stock(service, country, operator, count)

    # -- rentals --

    def add_inbound_sms(self, rental_id: str, sender: str, body: str) -> dict[str, object]:
        """An SMS arrives on a rented number; returns the message as on the wire."""
        message = self._state.rentals.add_inbound_sms(rental_id, sender, body)
        return message.payload(self._timestamps)

    def add_inbound_call(
        self, rental_id: str, sender: str, *, status: str = "COMPLETED", duration: int = 30
    ) -> dict[str, object]:
        """A call arrives on a rented number; returns the call as on the wire."""
        return self._state.rentals.add_inbound_call(
            rental_id, sender, status=status, duration=duration
        ).payload(self._timestamps)

    def place_rental(
        self,
        phone_number: str,
        *,
        key: str | None = None,
        number_type: str | None = None,
        country: str | None = None,
    ) -> RentalRecord:
        """Rent a number on a key's account as another client of that key would.

        A number no search offered is made available: its country and type come
        from its digits (a known area of a served country) or from
        ``number_type`` (``LOCAL``, ``MOBILE``, ``TOLL_FREE``) and ``country``
        (ISO code). The rules of ``POST /rentals`` apply, without the faults.
        Raises ValueError for a number that cannot be described or that does not
        match them, StateError when the rental is refused (already rented,
        balance too low, key revoked).
        """
        if not isinstance(phone_number, str) or not E164.fullmatch(phone_number):
            raise ValueError(f"phone_number must be E.164 like +14155551234, got {phone_number!r}")
        account = self._buyer(key)
        iso = None if country is None else country.upper()
        with python_errors():
            rentals = self._state.rentals
            offered = rentals.offer(phone_number, number_type, iso)
            offered = rentals.quote(
                account,
                phone_number,
                number_type or offered.number_type,
                iso or offered.iso_country,
                offered.base_price,
            )
            return rentals.place(account, offered).record()

    def set_rental_status(self, rental_id: str, status: str) -> RentalRecord:
        """Force a rental's status (EXPIRED and CANCELLED free the number)."""
        return self._state.rentals.force_status(rental_id, status).record()

    def rental(self, rental_id: str) -> RentalRecord:
        """A snapshot of one rental (KeyError if unknown)."""
        return self._state.rentals.by_id[rental_id].record()

    def rentals(self, key: str | None = None) -> list[RentalRecord]:
        """Snapshots of a key's rentals, oldest first."""
        return [r.record() for r in self._state.rentals.of(self._account(key))]

    # -- faults and counters --

    @property
    def faults(self) -> Faults:
        """The live fault settings; assigning an attribute takes effect at once."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._injector.faults = faults
        self._injector.reset_buckets()

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault settings (snake_case or camelCase names); returns them all.

        Raises ValueError for an unknown name or an invalid value, changing nothing.
        """
        names: dict[str, Any] = fault_changes(changes)
        checked = attrs.evolve(self._faults, **names)
        for name in names:
            setattr(self._faults, name, getattr(checked, name))
        if "rate_limit" in names or "rate_limit_burst" in names:
            self._injector.reset_buckets()
        return self._faults

    def clear_faults(self) -> Faults:
        """Turn every fault off (per-order latencies included)."""
        self._injector.order_latency.clear()
        return self.set_faults(**Faults().to_dict())

    @property
    def stats(self) -> Stats:
        """Counts of API requests served so far (a snapshot)."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self._counters.reset()

    def keys(self) -> list[str]:
        """Every API key, the default first."""
        return list(self._state.accounts.by_key)

    def __repr__(self) -> str:
        where = self._base_url or "not running"
        return f"<Sandbox {where} seed={self.seed}>"
