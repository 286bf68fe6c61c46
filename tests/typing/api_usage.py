"""The public API used the way a user would; type-checked by mypy --strict in CI.

Never executed: a change that breaks users' type checking fails the typecheck session.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

import gsim_async
from gsim_async import (
    Activation,
    Balance,
    Client,
    CodeTimeoutError,
    Message,
    NoCodeError,
    Order,
    OrderStatus,
    Page,
    Refund,
    Rental,
    WaitResult,
    wait_for_code,
)
from gsim_async.sandbox import Sandbox


async def catalogue(gsim: Client) -> Decimal:
    balance: Balance = await gsim.balance()
    prices = [s.min_price for s in await gsim.services()]
    countries = await gsim.countries(service="telegram")
    iso: str | None = countries[0].iso
    operators = await gsim.operators("telegram", "russia")
    del iso
    return balance.balance + sum(prices, Decimal(0)) + operators[0].price


async def orders(gsim: Client) -> str | None:
    order: Order = await gsim.orders.create("telegram", "russia", operator="any")
    again: Order = await gsim.orders.get(order.id)
    page: Page[Order] = await gsim.orders.list(page=1, limit=20, status=OrderStatus.PENDING)
    total: int = page.total + page.total_pages
    async for item in gsim.orders.iterate(status="RECEIVED"):
        code: str | None = item.sms_code
        del code
    refund: Refund = await gsim.orders.cancel(order)
    banned: Refund = await gsim.orders.ban(again.id)
    del total, refund, banned
    if again.status == OrderStatus.RECEIVED and again.expires_at is not None:
        when: datetime = again.expires_at
        del when
    return again.sms_code


async def waiting(gsim: Client, order: Order) -> list[str]:
    codes = [await wait_for_code(order, timeout=60, on_timeout="cancel", poll_interval=1.0)]
    codes.append(await gsim.orders.wait_for_code(order.id, timeout=None, on_timeout="keep"))
    async for result in gsim.orders.as_completed([order, "cm123"], timeout=30):
        r: WaitResult = result
        if r.code is not None:
            codes.append(r.code)
        elif isinstance(r.error, CodeTimeoutError):
            refunded: Decimal | None = r.error.refunded
            del refunded
    async with gsim.orders.activation("telegram", "russia", max_price="0.5") as act:
        a: Activation = act
        number: str = a.phone_number
        codes.append(await act.wait_for_code(timeout=120.0))
        del number
    try:
        await wait_for_code(order)
    except NoCodeError as exc:
        last: Order = exc.order
        del last
    swept: list[tuple[Order, Refund]] = await gsim.orders.cancel_stale(timedelta(minutes=5))
    del swept
    return codes


async def rentals(gsim: Client) -> Message:
    offers = await gsim.rentals.search(
        "US", type="Local", sms_enabled=True, voice_enabled=None, area_code="510", page_size=5
    )
    price = offers[0].monthly_price or Decimal("1.15")
    rental: Rental = await gsim.rentals.create(offers[0].phone_number, "LOCAL", "US", price)
    await gsim.rentals.update(rental, auto_renew=True, forwarding_number=None)
    await gsim.rentals.update(rental.id, friendly_name="line", voicemail_enabled=False)
    msgs: Page[Message] = await gsim.rentals.messages(rental, page=1, limit=50)
    sent = await gsim.rentals.send_sms(rental, "+14155551234", "hi")
    placed = await gsim.rentals.call(rental, "+14155551234")
    calls = await gsim.rentals.calls(rental)
    del msgs, sent, placed, calls
    await gsim.rentals.release(rental)
    found = await gsim.rentals.wait_for_sms(rental, match=re.compile(r"\d{6}"), timeout=5)
    gsim_async.extract_code(found.body)
    return await gsim.rentals.wait_for_sms(rental.id, match=lambda m: "code" in m.body)


async def setup() -> None:
    async with (
        Sandbox(seed=1) as sb,
        Client(
            sb.api_key, base_url=sb.base_url, timeout=10, max_retries=0, poll_interval=0.5
        ) as gsim,
    ):
        sb.deliver_code("cm1", "123456")
        await catalogue(gsim)
    try:
        await Client(on_retry=lambda e: print(e.attempt, e.delay, e.reason)).balance()
    except gsim_async.RateLimitedError as exc:
        after: float | None = exc.retry_after
        del after
    except gsim_async.APIError as exc:
        print(exc.status, exc.code, exc.message, exc.method, exc.path)


async def crash_safety(path: str) -> list[str]:
    journal = gsim_async.Journal(path, grace=5.0)
    async with Client(journal=journal) as gsim:
        where: str | None = gsim.journal
        orders: list[Order] = await gsim.orders.recovered()
        rentals: list[Rental] = await gsim.rentals.recovered()
        codes = [o.sms_code for o in orders if o.sms_code is not None]
        del where, rentals
        await gsim.aclose(timeout=5)
    foreign: int | None = journal.foreign_rows
    rows: gsim_async.JournalRows = journal.open_rows("2s_" + "k" * 40, "https://gsim.io")
    counts: tuple[int, int, tuple[str, ...]] = (rows.own, rows.foreign, rows.servers)
    del foreign, counts
    try:
        Client(journal=path)
    except gsim_async.JournalInUseError as exc:
        error: gsim_async.JournalError = exc
        del error
    Client(journal=False)
    return codes


async def fleets(url: str) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from gsim_async.fleet import RedisFleet

    for fleet in (
        RedisFleet(url, namespace="bots"),
        RedisFleet("redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster/0"),
        RedisFleet(Redis(decode_responses=True)),
        RedisFleet(RedisCluster(decode_responses=True)),
    ):
        try:
            async with Client(fleet=fleet) as gsim:
                await gsim.balance()
        except gsim_async.FleetError as exc:
            where: str = exc.where
            del where
    Client(fleet=False)


async def fleet_status(url: str) -> list[str]:

    from gsim_async.fleet import FleetStatus, MemberState, MemberStatus, RedisFleet

    status: FleetStatus = await RedisFleet(url).status()
    status = await RedisFleet(url, dead_after=60).status("key", base_url="https://gsim.io")
    lines = [status.where, status.prefix]
    for member in status.members:
        one: MemberStatus = member
        alive: bool = one.alive and one.state is not MemberState.DEAD
        host: str | None = one.host
        pid: int | None = one.pid
        beat: datetime | None = one.last_heartbeat
        held: int = one.held + one.obligations.held
        owed: int = one.obligations.total + one.obligations.waits + (one.waiting or 0)
        lines.append(f"{host} {pid} {beat} {held} {owed} {alive}")
    if status.leader is not None:
        lines.append(status.leader.member)
    if status.gate is not None and status.gate.paused:
        rate: float | None = status.gate.rate
        lines.append(f"{status.gate.phase} {rate} {status.gate.paused_for}")
    recent: int = status.throttled_within(60) + status.ownership_records + status.waiting
    lines += [t.member for t in status.throttles[:recent] if t.began_pause]
    return lines


async def telemetry(tracer_provider: object, meter_provider: object) -> None:
    Client(telemetry=False)
    Client(telemetry=True)
    only_metrics = gsim_async.Telemetry(meter_provider=meter_provider, traces=False)
    async with Client(telemetry=only_metrics) as gsim:
        await gsim.balance()
    Client(telemetry=gsim_async.Telemetry(tracer_provider, meter_provider))


async def spend_guard() -> Decimal | None:
    limit = gsim_async.SpendLimit(Decimal("20"), per=timedelta(hours=24))
    breaker = gsim_async.Breaker(5, cooldown=timedelta(minutes=15))
    async with Client(spend_limit=limit, breaker=breaker) as gsim:
        try:
            async with gsim.orders.activation("telegram", "russia", max_price="0.50") as act:
                await act.wait_for_code(timeout=120)
        except gsim_async.SpendLimitError as exc:
            spent: Decimal = exc.spent + exc.reserved + exc.needed
            window: timedelta = exc.per
            del spent, window
        except gsim_async.BreakerOpenError as exc:
            why: str | None = exc.last_error
            failures: int = exc.failures + exc.no_code + exc.after_code
            del why, failures
        except gsim_async.GuardError as exc:
            wait: float | None = exc.retry_after
            del wait
        status: gsim_async.GuardStatus = await gsim.guard.status()
        lines = [b.describe() for b in status.breakers if b.open]
        closed: int = await gsim.guard.reset("telegram", "RU")
        del lines, closed
        spend: gsim_async.SpendStatus | None = status.spend
        set_limit: gsim_async.SpendLimit | None = gsim.guard.spend_limit
        del set_limit
    Client(spend_limit=gsim_async.SpendLimit.parse("5/1h"), breaker=False)
    return spend.available if spend is not None else None
