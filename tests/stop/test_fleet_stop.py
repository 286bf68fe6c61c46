"""A fleet member that stops (SIGTERM, ``stop()``, closing) leaves its waits to the fleet.

A fleet keeps what its members owe in Redis (design.md, money rule 7): a member
that stops does not refund its waits' orders itself, it only stops waiting; the
fleet decides as after a crash (a live member refunds each when its wait would have
ended). The fleet's own leave-and-hand-over is the fleet's business; here, only
that the stop leaves the rows to it and that nothing is left charged in the end.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import anyio
import pytest
from redis_server import RedisServer

import gsim_async
from gsim_async import ClientClosedError
from gsim_async.fleet import RedisFleet
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


def member(sb: Sandbox, redis: RedisServer, namespace: str) -> gsim_async.Client:
    return gsim_async.Client(
        sb.api_key,
        base_url=sb.base_url,
        poll_interval=0.05,
        backoff_base=0,
        max_retry_after=2,
        reconcile_window=1,
        fleet=RedisFleet(redis.url, namespace=namespace, heartbeat=0.3, lease=1.0),
    )


async def test_a_stopped_member_leaves_its_waits_to_the_fleet(redis_server: RedisServer) -> None:
    namespace = uuid.uuid4().hex[:8]
    async with Sandbox(seed=5, auto_deliver=False) as sb:
        survivor = member(sb, redis_server, namespace)
        await survivor.balance()
        leaving = member(sb, redis_server, namespace)
        order = await leaving.orders.create("telegram", "russia")
        errors: list[ClientClosedError] = []

        async def wait() -> None:
            with pytest.raises(ClientClosedError) as info:
                await leaving.orders.wait_for_code(order, timeout=2)
            errors.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            with anyio.fail_after(10):
                while leaving.orders.waiting < 1:  # noqa: ASYNC110 - the client's count
                    await anyio.sleep(0.01)
            await leaving.aclose()
        assert "the fleet keeps it" in str(errors[0])
        assert sb.order(order.id).status == "PENDING"  # not refunded by the stop
        # The fleet decides, as after a crash: refunded as the wait's on_timeout said.
        with anyio.fail_after(30):
            while sb.order(order.id).status == "PENDING":  # noqa: ASYNC110 - the ledger
                await anyio.sleep(0.1)
        await survivor.aclose()
        assert sb.order(order.id).status == "BANNED"
        assert sb.ledger().balance == Decimal("100")


async def test_the_last_member_of_a_fleet_refunds_its_waits_itself(
    redis_server: RedisServer,
) -> None:
    # Nobody is left to take its rows over: a stop gives its waits up as a client alone
    # does, and nothing waits in Redis for a member that may never come.
    namespace = uuid.uuid4().hex[:8]
    async with Sandbox(seed=6, auto_deliver=False) as sb:
        alone = member(sb, redis_server, namespace)
        orders = [await alone.orders.create("telegram", "russia") for _ in range(3)]

        async def wait(order: gsim_async.Order) -> None:
            with pytest.raises(ClientClosedError):
                await alone.orders.wait_for_code(order, timeout=60)

        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(wait, order)
            with anyio.fail_after(10):
                while alone.orders.waiting < len(orders):  # noqa: ASYNC110 - its count
                    await anyio.sleep(0.01)
            await alone.aclose()
        assert [sb.order(o.id).status for o in orders] == ["BANNED"] * len(orders)
        assert sb.ledger().balance == Decimal("100")


async def test_a_whole_fleet_stopping_together_refunds_every_wait(
    redis_server: RedisServer,
) -> None:
    # A fleet scaled to zero (docker compose down, a deployment deleted): every member
    # stops at once. Each, seeing the others alive, left its waits to them, and nobody
    # refunded anything. Redis says atomically who is last: it refunds its own waits and
    # takes over what the others left to the fleet.
    namespace = uuid.uuid4().hex[:8]
    async with Sandbox(seed=7, auto_deliver=False) as sb:
        members = [member(sb, redis_server, namespace) for _ in range(3)]
        orders: dict[gsim_async.Client, list[gsim_async.Order]] = {}
        for client in members:
            orders[client] = [await client.orders.create("telegram", "russia") for _ in range(2)]

        async def wait(client: gsim_async.Client, order: gsim_async.Order) -> None:
            with pytest.raises(ClientClosedError):
                await client.orders.wait_for_code(order, timeout=60)

        async with anyio.create_task_group() as tg:
            for client, bought in orders.items():
                for order in bought:
                    tg.start_soon(wait, client, order)
            with anyio.fail_after(10):
                while sum(m.orders.waiting for m in members) < 6:  # noqa: ASYNC110 - counts
                    await anyio.sleep(0.01)
            async with anyio.create_task_group() as closing:
                for client in members:
                    closing.start_soon(client.aclose)
        ids = [o.id for bought in orders.values() for o in bought]
        assert [sb.order(i).status for i in ids] == ["BANNED"] * len(ids)
        assert sb.ledger().balance == Decimal("100")


async def test_a_member_refuses_purchases_from_the_moment_it_is_stopped(
    redis_server: RedisServer,
) -> None:
    # Before: while the fleet was asked who keeps the waits (a Redis round trip, up to
    # seconds when Redis is slow), stop() let new purchases through and charged them.
    namespace = uuid.uuid4().hex[:8]
    async with Sandbox(seed=5, auto_deliver=False) as sb:
        gsim = member(sb, redis_server, namespace)
        await gsim.balance()  # joined
        gsim.stop()
        with pytest.raises(ClientClosedError, match="stopping"):
            await gsim.orders.create("telegram", "russia")
        await gsim.aclose()
        assert sb.orders() == []
        assert sb.balance() == Decimal("100")
