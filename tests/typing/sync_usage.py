"""The blocking client used the way a user would; type-checked by mypy --strict in CI.

Never executed. Checked with ``disallow_any_expr`` (pyproject.toml): every call has its
real signature and result, none passes ``Any`` through.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import gsim_async
from gsim_async import (
    AttemptsExhaustedError,
    Balance,
    Country,
    Message,
    NoCodeError,
    Operator,
    Order,
    OrderStats,
    Page,
    Refund,
    Rental,
    Service,
    Skipped,
    SyncActivation,
    SyncActivations,
    SyncClient,
    WaitResult,
)


def sign_up(number: str) -> None: ...


def catalogue(gsim: SyncClient) -> Decimal:
    balance: Balance = gsim.balance()
    services: list[Service] = gsim.services()
    countries: list[Country] = gsim.countries(service="telegram")
    operators: list[Operator] = gsim.operators("telegram", "RU")
    del services, countries
    return balance.balance + operators[0].price


def orders(gsim: SyncClient) -> list[str]:
    order: Order = gsim.orders.create("telegram", "russia", operator="any")
    again: Order = gsim.orders.get(order.id)
    page: Page[Order] = gsim.orders.list(page=1, limit=20, status="PENDING")
    for item in gsim.orders.iterate(status=gsim_async.OrderStatus.RECEIVED):
        code: str | None = item.sms_code
        del code
    refund: Refund = gsim.orders.cancel(order)
    banned: Refund = gsim.orders.ban(again.id)
    swept: list[tuple[Order, Refund]] = gsim.orders.cancel_stale(older_than=300)
    waiting: int = gsim.orders.waiting
    del page, refund, banned, swept, waiting
    codes = [gsim.orders.wait_for_code(order, timeout=120, on_timeout="cancel")]
    try:
        codes.append(gsim.orders.wait_for_code(order.id, poll_interval=1.0))
    except NoCodeError as exc:  # CodeTimeoutError's constructor takes an Any future
        last: Order = exc.order
        del last
    for result in gsim.orders.as_completed([order, "cm123"], timeout=300):
        r: WaitResult = result
        if r.code is not None:
            codes.append(r.code)
    with gsim.orders.activation("telegram", "russia", max_price="0.50") as act:
        a: SyncActivation = act
        sign_up(a.phone_number)
        codes.append(act.wait_for_code(timeout=180))
        mine: Order = act.order
        del mine
    got: str | None = act.code
    back: Decimal | None = act.refunded
    del got, back
    return codes


def attempts(gsim: SyncClient) -> str | None:
    loop: SyncActivations = gsim.orders.activations(
        "telegram", ["RU", "KZ"], attempts=3, max_price="0.30", budget="0.60"
    )
    code: str | None = None
    try:
        for act in loop:
            with act:
                sign_up(act.phone_number)
                code = act.wait_for_code(timeout=120)
    except AttemptsExhaustedError as exc:
        tried: tuple[Order, ...] = exc.orders
        del tried
    bought: tuple[Order, ...] = loop.orders
    skipped: tuple[Skipped, ...] = loop.skipped
    spent: Decimal = loop.spent
    tries: int = loop.tries
    stats: list[OrderStats] = gsim.orders.stats(since=timedelta(days=7), service="telegram")
    del bought, skipped, spent, tries, stats
    return code


def rentals(gsim: SyncClient) -> Message:
    offers = gsim.rentals.search("US", type="Local", sms_enabled=True, area_code="510")
    price = offers[0].monthly_price or Decimal("1.15")
    rental: Rental = gsim.rentals.create(offers[0].phone_number, "LOCAL", "US", price)
    gsim.rentals.update(rental, auto_renew=True, forwarding_number=None)
    every: list[Rental] = list(gsim.rentals.iterate(status="ACTIVE"))
    msgs: Page[Message] = gsim.rentals.messages(rental, page=1, limit=50)
    gsim.rentals.send_sms(rental, "+14155551234", "hi")
    gsim.rentals.call(rental.id, "+14155551234")
    del every, msgs
    found = gsim.rentals.wait_for_sms(rental, match=re.compile(r"\d{6}"), timeout=60)
    gsim.rentals.release(rental)
    return found


def setup() -> None:
    with SyncClient(timeout=10, max_retries=0, poll_interval=0.5) as gsim:
        catalogue(gsim)
        view: SyncClient = gsim.with_options(max_retries=10)
        closed: bool = view.closed
        sent: int = view.requests_sent
        del closed, sent
    SyncClient(telemetry=False).close()
    gsim = SyncClient(on_order_update=lambda o: print(o.status))
    try:
        gsim.balance()
    finally:
        gsim.close()


def spend_guard() -> int:
    limit = gsim_async.SpendLimit(20, per=3600)
    with SyncClient(spend_limit=limit, breaker=gsim_async.Breaker(3)) as gsim:
        status: gsim_async.GuardStatus = gsim.guard.status()
        breakers: tuple[gsim_async.BreakerStatus, ...] = status.breakers
        del breakers
        return gsim.guard.reset()
