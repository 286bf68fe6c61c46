"""The spend guard of a fleet: one limit and one set of breakers for every member.

Members in this process and in processes of their own, on a real redis-server that the
tests stop and start again empty; money read from the sandbox's ledger.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import fast_client
from processes import Worker
from redis_server import RedisServer

import gsim_async
from gsim_async import Breaker, BreakerOpenError, SpendLimit, SpendLimitError
from gsim_async.fleet import RedisFleet
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("spend_worker.py")
PRICE = Decimal("0.18")


class SignUpError(Exception):
    """The step after the code failed."""


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=13, auto_deliver=False) as sb:
        yield sb


@pytest.fixture
def namespace() -> str:
    return f"spend-{uuid.uuid4().hex[:8]}"


def fleet_of(redis: RedisServer, namespace: str) -> RedisFleet:
    return RedisFleet(redis.url, namespace=namespace, heartbeat=0.3, lease=1.0)


def member(sandbox: Sandbox, redis: RedisServer, namespace: str, **options: object) -> Any:
    return fast_client(sandbox, fleet=fleet_of(redis, namespace), **options)


async def buy(gsim: gsim_async.Client, n: int) -> tuple[int, int]:
    """``n`` purchases at once: how many bought, how many refused by the limit."""
    results = await asyncio.gather(
        *(gsim.orders.create("telegram", "russia") for _ in range(n)), return_exceptions=True
    )
    others = [r for r in results if not isinstance(r, (gsim_async.Order, SpendLimitError))]
    assert not others, others
    bought = sum(isinstance(r, gsim_async.Order) for r in results)
    return bought, len(results) - bought


async def spend_total(redis: RedisServer, sandbox: Sandbox, namespace: str) -> int:
    prefix = fleet_of(redis, namespace).prefix(sandbox.api_key, sandbox.base_url)
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        return int(await client.hget(f"{prefix}:spend", "total") or 0)
    finally:
        await client.aclose()


async def _total_is(redis: RedisServer, sandbox: Sandbox, namespace: str, micro: int) -> bool:
    return await spend_total(redis, sandbox, namespace) == micro


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Wait for what another member (or a rejoin) writes into Redis."""
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 - the state lives in Redis
            await anyio.sleep(0.05)


async def has_breakers(gsim: gsim_async.Client) -> bool:
    return bool((await gsim.guard.status()).breakers)


async def sign_up(gsim: gsim_async.Client, sandbox: Sandbox) -> None:
    async with gsim.orders.activation("telegram", "russia") as act:
        sandbox.deliver_code(act.order.id)
        await act.wait_for_code(timeout=5)
        raise SignUpError


async def fail_after_code(gsim: gsim_async.Client, sandbox: Sandbox) -> None:
    with pytest.raises(SignUpError):
        await sign_up(gsim, sandbox)


async def test_two_members_share_one_limit(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    sandbox.set_faults(purchase_delay=0.3)  # every purchase is in flight at once
    limit = SpendLimit(PRICE * 5)
    async with (
        member(sandbox, redis_server, namespace, spend_limit=limit) as one,
        member(sandbox, redis_server, namespace, spend_limit=limit) as two,
    ):
        await one.balance(), await two.balance()  # both joined
        results = await asyncio.gather(buy(one, 10), buy(two, 10))
        status = await one.guard.status()
    assert sum(bought for bought, _ in results) == 5
    assert len(sandbox.ledger().charges_by_order) == 5
    assert status.shared and status.spend is not None and status.spend.spent == PRICE * 5


async def test_two_processes_share_one_limit(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    sandbox.set_faults(purchase_delay=0.3)
    at = time.time() + 3
    workers = []
    for _ in range(2):
        config = {
            "base_url": sandbox.base_url,
            "api_key": sandbox.api_key,
            "redis_url": redis_server.url,
            "namespace": namespace,
            "spend_limit": f"{PRICE * 7}/1h",
            "count": 12,
            "at": at,
        }
        worker = await Worker.start(WORKER, config, {"PYTHONPATH": os.pathsep.join(sys.path)})
        workers.append(worker)
    for worker in workers:
        await worker.next("ready")
    for worker in workers:
        await worker.finish()
    bought = [e["id"] for w in workers for e in w.all("bought")]
    refused = [e for w in workers for e in w.all("refused")]
    assert not [e for w in workers for e in w.all("error")]
    assert len(bought) == 7 and len(refused) == 17
    assert {e["error"] for e in refused} == {"SpendLimitError"}
    assert set(sandbox.ledger().charges_by_order) == set(bought)


async def test_the_counts_are_rebuilt_after_redis_restarts_empty(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    limit = SpendLimit(PRICE * 5)
    async with member(sandbox, redis_server, namespace, spend_limit=limit) as first:
        assert await buy(first, 3) == (3, 0)
        redis_server.stop()
        redis_server.start()  # empty
        assert await spend_total(redis_server, sandbox, namespace) == 0
        # The member rejoins and writes back what it spent.
        await until(lambda: _total_is(redis_server, sandbox, namespace, 3 * 180_000), timeout=15)
        async with member(sandbox, redis_server, namespace, spend_limit=limit) as second:
            assert await buy(second, 4) == (2, 2)
    assert len(sandbox.ledger().charges_by_order) == 5


async def test_a_breaker_opened_by_one_member_holds_every_member(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    async with (
        member(sandbox, redis_server, namespace, breaker=Breaker(2)) as one,
        member(sandbox, redis_server, namespace, breaker=Breaker(2)) as two,
        member(sandbox, redis_server, namespace) as reader,  # no guard of its own
    ):
        await fail_after_code(one, sandbox)
        await fail_after_code(one, sandbox)
        with pytest.raises(BreakerOpenError):  # at once: its own failures count first
            await one.orders.create("telegram", "russia")
        await until(lambda: has_breakers(reader), timeout=5)
        before = sandbox.stats.total
        with pytest.raises(BreakerOpenError) as held:
            await two.orders.create("telegram", "russia")
        assert sandbox.stats.total == before
        status = await reader.guard.status()
        assert [(b.service, b.country, b.open, b.after_code) for b in status.breakers] == [
            ("telegram", "russia", True, 2)
        ]
        assert await reader.guard.reset() == 1
        await one.orders.create("telegram", "russia")
        await two.orders.create("telegram", "russia")
    assert held.value.failures == 2 and held.value.last_error == "SignUpError"


async def test_an_open_breaker_is_rebuilt_after_redis_restarts_empty(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    async with member(sandbox, redis_server, namespace, breaker=Breaker(1)) as one:
        await fail_after_code(one, sandbox)
        async with member(sandbox, redis_server, namespace, breaker=Breaker(1)) as two:
            await until(lambda: has_breakers(two), timeout=5)
            redis_server.stop()
            redis_server.start()
            await until(lambda: has_breakers(two), timeout=15)  # the one that knew it
            with pytest.raises(BreakerOpenError):
                await two.orders.create("telegram", "russia")


async def test_a_member_cut_off_from_redis_spends_only_its_share(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    limit = SpendLimit(PRICE * 6)
    async with (
        member(sandbox, redis_server, namespace, spend_limit=limit) as one,
        member(sandbox, redis_server, namespace, spend_limit=limit) as two,
    ):
        assert await buy(one, 1) == (1, 0)
        assert await buy(two, 1) == (1, 0)
        redis_server.stop()
        # 4 purchases of room left, 2 members: each may make 2 until Redis is back.
        assert await buy(one, 3) == (2, 1)
        with pytest.raises(SpendLimitError, match="Redis is unreachable"):
            await one.orders.create("telegram", "russia")
        assert await buy(two, 3) == (2, 1)
        redis_server.start()
        await until(lambda: _total_is(redis_server, sandbox, namespace, 6 * 180_000), timeout=15)
        assert await buy(one, 1) == (0, 1)
    assert len(sandbox.ledger().charges_by_order) == 6


async def test_a_member_with_a_shorter_window_forgets_nothing_early(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Members rolled out one by one with a new window: the counts keep the longest one.
    long, short = SpendLimit(PRICE * 4, per=3600), SpendLimit(PRICE * 4, per=2)
    async with (
        member(sandbox, redis_server, namespace, spend_limit=long) as first,
        member(sandbox, redis_server, namespace, spend_limit=short) as second,
    ):
        assert await buy(first, 2) == (2, 0)
        await anyio.sleep(2.5)  # past the short window, well within the long one
        assert await buy(second, 1) == (1, 0)
        assert await buy(second, 1) == (1, 0)
        assert await buy(second, 1) == (0, 1)
        assert await buy(first, 1) == (0, 1)
    assert len(sandbox.ledger().charges_by_order) == 4
