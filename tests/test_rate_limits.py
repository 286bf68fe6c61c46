"""Pacing under a rate limit (design.md, money rule 5): the client learns the limit once.

Each test stages one case against the sandbox's token bucket over real HTTP, with
time scaled down (Retry-After of a second, limits of tens of requests a second), and
reads the outcome from the sandbox: how many requests it answered 429, the orders'
statuses and the ledger. No test measures how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import anyio
import pytest

import gsim_async
from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio


def throttled(sandbox: Sandbox) -> int:
    """Requests the sandbox answered 429."""
    return sandbox.stats.by_status.get(429, 0)


def client(sandbox: Sandbox, **options: object) -> gsim_async.Client:
    """A client of ``sandbox`` that never sleeps between ordinary retries."""
    settings: dict[str, object] = {"base_url": sandbox.base_url, "backoff_base": 0}
    settings.update(options)
    return gsim_async.Client(sandbox.api_key, **settings)  # type: ignore[arg-type]


class Pauses:
    """``on_retry`` hook keeping when each 429 was waited out (monotonic seconds)."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def __call__(self, event: gsim_async.RetryEvent) -> None:
        if event.reason.startswith("429"):
            self.at.append(time.monotonic())


async def burst(count: int, call: Callable[[], Awaitable[object]]) -> None:
    """Start ``count`` calls together and wait for all of them."""

    async def one() -> None:
        await call()

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)


# -- learning the limit once -----------------------------------------------------------


class LeftWithoutCodeError(Exception):
    """The caller gave up on a number (say, the service refused it): the order is refunded."""


async def test_activations_under_an_unknown_limit_meet_one_pause() -> None:
    limit, pause, n = 25, 1, 100
    faults = Faults(rate_limit=limit, retry_after=pause, retry_after_header=True)
    pauses = Pauses()
    codes: dict[str, str] = {}
    refunds: dict[str, Decimal | None] = {}
    async with Sandbox(seed=31, balance=1000, code_delay=(0.2, 0.8), faults=faults) as sb:
        async with client(
            sb, poll_interval=0.5, max_retry_after=2 * pause, on_retry=pauses
        ) as gsim:
            started = 0

            async def activate() -> None:
                nonlocal started
                started += 1
                leave = started % 5 == 0  # every fifth caller leaves the block at once
                act = gsim.orders.activation("telegram", "russia")
                try:
                    async with act:
                        if leave:
                            raise LeftWithoutCodeError
                        codes[act.order.id] = await act.wait_for_code(timeout=10)
                except LeftWithoutCodeError:
                    refunds[act.order.id] = act.refunded

            await burst(n, activate)
        stats, ledger = sb.stats, sb.ledger()
        records = {r.id: r for r in sb.orders()}

    # The limit was met (or the test would show nothing), and met once: every 429
    # the client got belongs to the one pause, none came after it.
    assert pauses.at, "the client never met the limit"
    assert max(pauses.at) - min(pauses.at) < pause
    assert throttled(sb) <= max(3, 0.02 * stats.total)
    # Every activation ended right: its code, or its money back.
    assert len(records) == n == len(codes) + len(refunds)
    for order_id, code in codes.items():
        assert (records[order_id].status, records[order_id].sms_code) == ("RECEIVED", code)
    # A block left at once is cancelled, unless its code came first (a slow machine may
    # send the cancel late): then it is kept, nothing refunded (money rule 3).
    kept = [o for o in refunds if records[o].status == "RECEIVED"]
    for order_id, refunded in refunds.items():
        if order_id in kept:
            assert not refunded and order_id not in ledger.refunds_by_order
            continue
        assert records[order_id].status == "CANCELLED"
        assert refunded == records[order_id].price == ledger.refunds_by_order[order_id]
    assert ledger.balanced
    assert ledger.charged - ledger.refunded == sum(records[o].price for o in [*codes, *kept])


async def test_slow_start_does_not_fire_a_burst_it_never_tried() -> None:
    # The bucket holds one second of the limit; 300 purchases are ready at once.
    limit, n = 100, 300
    async with Sandbox(
        seed=32, balance=1000, auto_deliver=False, faults=Faults(rate_limit=limit, retry_after=1)
    ) as sb:
        async with client(sb, max_retry_after=1) as gsim:
            await gsim.orders.create("telegram", "russia")  # the account's baseline is known
            sb.reset_stats()
            await burst(n, lambda: gsim.orders.create("telegram", "russia"))
        slow_start = throttled(sb)
        assert len(sb.orders()) == n + 1
        assert slow_start <= 0.02 * n

        # The same burst without slow start, for contrast: it does meet the limit.
        sb.set_faults(rate_limit=limit)  # a full bucket again
        sb.reset_stats()
        async with client(sb, max_retry_after=1, slow_start=False) as gsim:
            await gsim.orders.create("telegram", "russia")
            await burst(n, lambda: gsim.orders.create("telegram", "russia"))
        assert throttled(sb) > 10 * max(slow_start, 1)
        assert len(sb.orders()) == 2 * (n + 1)


# -- a limit the client is told or shown is never hit -----------------------------------


async def test_a_told_limit_is_never_hit() -> None:
    limit, n = 40, 60
    async with Sandbox(
        seed=33, balance=1000, code_delay=(0.1, 0.5), faults=Faults(rate_limit=limit, retry_after=1)
    ) as sb:
        async with client(
            sb, max_requests_per_second=limit, poll_interval=0.2, max_retry_after=1
        ) as gsim:
            codes: list[str] = []

            async def activate() -> None:
                async with gsim.orders.activation("telegram", "russia") as act:
                    codes.append(await act.wait_for_code(timeout=10))

            await burst(n, activate)
        assert throttled(sb) == 0
        assert sorted(codes) == sorted(r.sms_code for r in sb.orders() if r.sms_code)
        assert len(codes) == n


@pytest.mark.parametrize("style", ["x", "ietf"])
async def test_an_advertised_limit_is_never_hit_by_a_first_burst(style: str) -> None:
    limit, n = 20, 80
    faults = Faults(rate_limit=limit, retry_after=1, rate_limit_headers=style)
    async with Sandbox(seed=34, balance=1000, auto_deliver=False, faults=faults) as sb:
        async with client(sb, max_retry_after=1) as gsim:
            await burst(n, lambda: gsim.orders.create("telegram", "russia"))
        assert throttled(sb) == 0
        assert len(sb.orders()) == n


@pytest.mark.parametrize("style", ["x", "ietf"])
async def test_an_advertised_limit_is_never_hit_once_its_quota_is_spent(style: str) -> None:
    # The client has seen the headers; then a backlog bigger than the quota arrives,
    # and must wait for the quota to come back without stampeding when it does.
    limit, n = 10, 40
    faults = Faults(rate_limit=limit, retry_after=1, rate_limit_headers=style)
    async with Sandbox(seed=35, auto_deliver=False, faults=faults) as sb:
        async with client(sb, max_retry_after=1) as gsim:
            await gsim.balance()
            await burst(n, gsim.balance)
        assert throttled(sb) == 0
        assert sb.stats.total == n + 1


# -- after the first pause ----------------------------------------------------------------


async def test_steady_load_after_the_first_pause_is_rarely_refused() -> None:
    limit, workers, n = 50, 20, 200
    pauses = Pauses()
    async with Sandbox(
        seed=36, auto_deliver=False, faults=Faults(rate_limit=limit, retry_after=1)
    ) as sb:
        async with client(sb, max_retry_after=1, on_retry=pauses) as gsim:
            # Load that needs more than the limit, until the client has met it once.
            while not pauses.at:
                await burst(workers, gsim.balance)
            await gsim.balance()  # the pause is over
            sb.reset_stats()
            left = n

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await gsim.balance()

            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker)
        stats = sb.stats
    assert stats.total - throttled(sb) == n
    assert throttled(sb) <= 0.01 * n


# -- priorities ------------------------------------------------------------------------


async def test_a_backlog_of_refunds_does_not_keep_codes_from_being_read(sandbox: Sandbox) -> None:
    # The client is told 10 requests a second: no 429 anywhere, pacing alone queues.
    # 30 waits time out together, so 30 bans (3 s of requests) wait for their turn
    # while 5 other orders get their codes; those codes must still be read by the
    # watcher, not found by bans after those waits time out too.
    async with client(sandbox, max_requests_per_second=2000) as buyer:
        giving_up = [await buyer.orders.create("telegram", "russia") for _ in range(30)]
        served = [await buyer.orders.create("telegram", "russia") for _ in range(5)]
    codes: dict[str, str] = {}
    async with client(sandbox, max_requests_per_second=10, poll_interval=0.1) as gsim:

        async def give_up(order: gsim_async.Order) -> None:
            with pytest.raises(gsim_async.CodeTimeoutError):
                await gsim.orders.wait_for_code(order, timeout=0.3)

        async def wait(order: gsim_async.Order) -> None:
            codes[order.id] = await gsim.orders.wait_for_code(order, timeout=2)

        async with anyio.create_task_group() as tg:
            for order in giving_up:
                tg.start_soon(give_up, order)
            for order in served:
                tg.start_soon(wait, order)
            await anyio.sleep(0.4)  # the bans are queued
            for order in served:
                sandbox.deliver_code(order.id, order.id[-6:])
    assert codes == {o.id: o.id[-6:] for o in served}
    assert throttled(sandbox) == 0
    # No wait on a code that had come timed out: no ban met a RECEIVED order.
    assert sandbox.stats.count("POST /api/v1/orders/{id}/ban", 409) == 0
    assert {sandbox.order(o.id).status for o in giving_up} == {"BANNED"}


# -- refunds survive a storm ------------------------------------------------------------


async def test_refunds_survive_a_429_storm_without_retry_after(sandbox: Sandbox) -> None:
    n = 20
    async with client(sandbox, poll_interval=0.05, max_retry_after=2) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(n)]
        # A storm: few requests a second, and 429s that do not say how long to wait
        # (the documented 60 s, capped at max_retry_after).
        sandbox.set_faults(rate_limit=5, retry_after_header=False)
        errors: dict[str, tuple[gsim_async.CodeTimeoutError, bool]] = {}

        async def wait(order: gsim_async.Order) -> None:
            try:
                await gsim.orders.wait_for_code(order, timeout=0.5)
            except gsim_async.CodeTimeoutError as exc:
                errors[order.id] = (exc, exc.refund_pending)

        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(wait, order)
        assert throttled(sandbox) > 0  # there was a storm
        refunds: dict[str, Decimal | None] = {}
        for order_id, (error, pending) in errors.items():
            # Either the refund came with the error, or it was still under way then.
            assert (error.refunded is not None) != pending
            refunds[order_id] = await error.wait_refund() if pending else error.refunded
    ledger = sandbox.ledger()
    for order in orders:
        assert sandbox.order(order.id).status == "BANNED"
        assert refunds[order.id] == order.price
        assert ledger.refunds_by_order[order.id] == order.price
    assert ledger.balance == Decimal("100")
