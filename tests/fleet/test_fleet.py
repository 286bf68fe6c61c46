"""Fleets: real worker processes on one API key, coordinated through a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import fast_client
from members import start
from redis_server import RedisServer

from gsim_async.fleet import RedisFleet
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=11, auto_deliver=False) as sb:
        yield sb


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def fleet_of(redis: RedisServer, namespace: str) -> RedisFleet:
    return RedisFleet(redis.url, namespace=namespace, heartbeat=0.3, lease=1.0)


async def leader(redis: RedisServer, prefix: str) -> str | None:
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        value: str | None = await client.get(f"{prefix}:leader")
        return value
    finally:
        await client.aclose()


async def test_codes_reach_the_process_that_waits(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    workers = [await start(sandbox, redis_server, namespace, "wait", count=8) for _ in range(3)]
    bought = [(await w.next("bought"))["ids"] for w in workers]
    for ids in bought:
        for order_id in ids:
            sandbox.deliver_code(order_id)
    done = [await w.finish() for w in workers]
    for worker, ids in zip(workers, bought, strict=True):
        codes = {e["id"]: e["code"] for e in worker.all("code")}
        assert set(codes) == set(ids)
        assert all(sandbox.order(i).sms_code == code for i, code in codes.items())
    # One process polled for all of them; the others only waited.
    assert sum(1 for d in done if d["rounds"] == 0) >= 1


async def test_a_killed_leader_is_replaced_and_no_code_is_lost(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    prefix = fleet_of(redis_server, namespace).prefix(sandbox.api_key, sandbox.base_url)
    first = await start(sandbox, redis_server, namespace, "wait", count=1, timeout=60)
    await first.next("bought")
    with anyio.fail_after(10):
        while await leader(redis_server, prefix) is None:  # noqa: ASYNC110 - state in Redis
            await anyio.sleep(0.05)
    survivor = await start(sandbox, redis_server, namespace, "wait", count=5, timeout=60)
    ids = (await survivor.next("bought"))["ids"]
    first.kill()  # SIGKILL: no goodbye, its lease simply stops being renewed
    await first.process.wait()
    for order_id in ids:
        sandbox.deliver_code(order_id)
    await survivor.finish()
    assert {e["id"] for e in survivor.all("code")} == set(ids)
    assert not survivor.all("error")


async def test_redis_restarted_mid_run_costs_no_code(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    worker = await start(sandbox, redis_server, namespace, "wait", count=6, timeout=60)
    ids = (await worker.next("bought"))["ids"]
    redis_server.stop()
    await anyio.sleep(1.0)  # the member notices and watches its orders itself
    for order_id in ids[:3]:
        sandbox.deliver_code(order_id)
    for _ in range(3):
        await worker.next("code")
    redis_server.start()
    await anyio.sleep(2.0)  # and rejoins
    for order_id in ids[3:]:
        sandbox.deliver_code(order_id)
    done = await worker.finish()
    assert {e["id"] for e in worker.all("code")} == set(ids)
    assert any("unreachable" in line for line in done["log"])
    assert any("reachable again" in line for line in done["log"])


async def test_after_redis_restarts_empty_each_member_holds_its_orders_again(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Without its orders in `held`, a lost purchase answer reconciled after the restart
    # counts other members' orders as another buyer's: for an hour no lost answer is
    # matched, and each one's order is left charged (found by benchmarks/soak.py).
    fleet = fleet_of(redis_server, namespace)
    held_key = fleet.prefix(sandbox.api_key, sandbox.base_url) + ":held"
    async with fast_client(sandbox, fleet=fleet) as client:
        before = [await client.orders.create("telegram", "russia") for _ in range(2)]
        redis_server.stop()
        alone = await client.orders.create("telegram", "russia")  # the fleet cannot record it
        redis_server.start()
        redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            with anyio.fail_after(10):
                while len(await redis.hgetall(held_key)) < 3:  # noqa: ASYNC110 - in Redis
                    await anyio.sleep(0.1)
            held = await redis.hgetall(held_key)
        finally:
            await redis.aclose()
    assert set(held) == {o.id for o in [*before, alone]}
    assert len(set(held.values())) == 1  # all this member's


async def test_lost_purchases_of_two_members_are_adopted_exactly(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    sandbox.set_faults(drop_after_purchase_rate=1.0)
    workers = [await start(sandbox, redis_server, namespace, "buy", count=3) for _ in range(2)]
    await asyncio.gather(*(w.finish() for w in workers))
    got = [i for w in workers for e in w.all("bought") for i in e["ids"]]
    assert not [e for w in workers for e in w.all("error")]
    assert len(got) == len(set(got)) == 6  # each its own order, none twice
    assert set(sandbox.ledger().charges_by_order) == set(got)  # nothing bought again


async def test_a_429_pauses_the_whole_fleet_once(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    sandbox.set_faults(rate_limit=20, retry_after=2)
    workers = [
        await start(sandbox, redis_server, namespace, "hammer", count=80, max_retries=5)
        for _ in range(3)
    ]
    done = await asyncio.gather(*(w.finish(timeout=90) for w in workers))
    assert not [e for w in workers for e in w.all("error")]
    pauses = sorted(t for d in done for t, reason in d["retries"] if reason.startswith("429"))
    assert pauses, "the limit was never met"
    # Every 429 any member met belongs to the one pause the first one opened.
    assert pauses[-1] - pauses[0] < 2.0
    assert sandbox.stats.by_status.get(429, 0) <= 0.05 * sandbox.stats.total


async def test_cancel_stale_leaves_a_live_members_orders(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    worker = await start(sandbox, redis_server, namespace, "wait", count=2, timeout=60)
    ids = (await worker.next("bought"))["ids"]
    await anyio.sleep(0.5)  # its waits are registered with the fleet
    async with fast_client(sandbox, fleet=fleet_of(redis_server, namespace)) as sweeper:
        swept = await sweeper.orders.cancel_stale(older_than=0)
    assert swept == []
    for order_id in ids:
        sandbox.deliver_code(order_id)
    await worker.finish()
    assert {e["id"] for e in worker.all("code")} == set(ids)


async def test_a_settled_wait_leaves_the_fleet_and_is_not_polled_again(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Seen: a member kept its registration after its code came, so the leader polled
    # the order again every round and published its result again and again (7 times
    # per order in a 1,000-order run: a quarter more requests, and CPU).
    prefix = fleet_of(redis_server, namespace).prefix(sandbox.api_key, sandbox.base_url)
    async with (
        fast_client(sandbox, fleet=fleet_of(redis_server, namespace)) as first,
        fast_client(sandbox, fleet=fleet_of(redis_server, namespace)) as second,
    ):
        orders = [await second.orders.create("telegram", "russia") for _ in range(3)]
        for order in orders:
            sandbox.deliver_code(order.id)
        codes = await asyncio.gather(*(second.orders.wait_for_code(o) for o in orders))
        assert codes == [sandbox.order(o.id).sms_code for o in orders]
        await anyio.sleep(0.5)  # the leader's next rounds
        served = sandbox.stats.total
        await anyio.sleep(1.0)  # twenty intervals
        assert sandbox.stats.total == served  # nobody polls for orders no one waits on
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await client.hlen(f"{prefix}:watch") == 0
        finally:
            await client.aclose()
        assert first.orders.waiting == second.orders.waiting == 0


async def test_a_stored_result_answers_only_the_order_it_was_read_for(
    redis_server: RedisServer, namespace: str
) -> None:
    # Seen: a sandbox with a fixed seed hands out the same order ids (and numbers) after
    # a restart; a second run's waits on the same Redis were answered at once with the
    # first run's codes, stored under those ids (10 of 10 wrong). Here a leader outlives
    # the restart too, so it has published results under those ids already.
    fleet = fleet_of(redis_server, namespace)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Sandbox(seed=23, auto_deliver=False))
        polling = await stack.enter_async_context(fast_client(first, fleet=fleet))
        await polling.balance()  # joins the fleet, and leads it: it is alone
        with anyio.fail_after(10):
            prefix = fleet.prefix(first.api_key, first.base_url)
            while await leader(redis_server, prefix) is None:  # noqa: ASYNC110 - in Redis
                await anyio.sleep(0.05)
        async with fast_client(first, fleet=fleet) as gsim:
            before = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
            for order in before:
                first.deliver_code(order.id, "111111")
            await asyncio.gather(*(gsim.orders.wait_for_code(o, timeout=30) for o in before))
        await first.close()
        # The same server restarted a minute later: same address, same seed, same ids.
        async with (
            Sandbox(seed=23, auto_deliver=False, port=first.port) as second,
            fast_client(second, fleet=fleet) as gsim,
        ):
            second.advance(60)
            after = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
            assert [o.id for o in after] == [o.id for o in before]
            assert [o.phone_number for o in after] == [o.phone_number for o in before]
            delivered = [second.deliver_code(o.id, f"22222{i}") for i, o in enumerate(after)]
            codes = await asyncio.gather(
                *(gsim.orders.wait_for_code(o, timeout=10, on_timeout="keep") for o in after)
            )
    assert codes == delivered


async def test_two_servers_on_one_key_and_redis_never_share_results(
    redis_server: RedisServer, namespace: str
) -> None:
    # Two seeded sandboxes side by side: the same key, the same ids, the same numbers
    # and stamps to the millisecond. Only the server tells their orders apart.
    fleet = fleet_of(redis_server, namespace)
    async with (
        Sandbox(seed=29, auto_deliver=False) as one,
        Sandbox(seed=29, auto_deliver=False) as other,
        fast_client(one, fleet=fleet) as first,
        fast_client(other, fleet=fleet) as second,
    ):
        assert one.api_key == other.api_key
        mine = [await first.orders.create("telegram", "russia") for _ in range(3)]
        theirs = [await second.orders.create("telegram", "russia") for _ in range(3)]
        assert [o.id for o in mine] == [o.id for o in theirs]
        sent_one = [one.deliver_code(o.id, f"11111{i}") for i, o in enumerate(mine)]
        sent_other = [other.deliver_code(o.id, f"22222{i}") for i, o in enumerate(theirs)]
        got_one, got_other = await asyncio.gather(
            asyncio.gather(*(first.orders.wait_for_code(o, timeout=30) for o in mine)),
            asyncio.gather(*(second.orders.wait_for_code(o, timeout=30) for o in theirs)),
        )
    assert got_one == sent_one
    assert got_other == sent_other


async def test_results_reach_their_waiters_whatever_form_the_stamps_take(
    redis_server: RedisServer, namespace: str
) -> None:
    # A result is matched to its wait by stamps too: the same moment written with fewer
    # digits (or another offset) in the detail than in the purchase answer still matches.
    async with (
        Sandbox(seed=31, auto_deliver=False, timestamp_style="varied") as sandbox,
        fast_client(sandbox, fleet=fleet_of(redis_server, namespace)) as gsim,
    ):
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(6)]
        delivered = [sandbox.deliver_code(o.id) for o in orders]
        codes = await asyncio.gather(
            *(gsim.orders.wait_for_code(o, timeout=10, on_timeout="keep") for o in orders)
        )
    assert codes == delivered


async def _until_refunded(sandbox: Sandbox, ids: list[str], within: float) -> float:
    """Seconds until every order of ``ids`` was refunded; fails past ``within``."""
    started = time.monotonic()
    while True:
        orders = [sandbox.order(i) for i in ids]
        if all(o.refunded == o.price and o.status in ("CANCELLED", "BANNED") for o in orders):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            left = [o.id for o in orders if not o.refunded]
            pytest.fail(f"{len(left)} of {len(ids)} still charged {within:.0f} s after: {left}")
        await anyio.sleep(0.1)


async def test_a_killed_members_waits_are_refunded_by_the_fleet(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # The member that dies is the leader too: a new one is elected, then takes over.
    victim = await start(
        sandbox, redis_server, namespace, "wait", count=20, timeout=600, on_timeout="ban"
    )
    ids = (await victim.next("bought"))["ids"]
    survivor = await start(sandbox, redis_server, namespace, "idle", stay=120)
    await anyio.sleep(1)  # well into the waits
    victim.kill()
    await victim.process.wait()
    assert {sandbox.order(i).status for i in ids} == {"PENDING"}
    await _until_refunded(sandbox, ids, 30)
    assert sandbox.balance() == Decimal("100")
    survivor.kill()
    await survivor.process.wait()


async def test_a_killed_members_purchase_on_the_wire_is_found_and_refunded(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    survivor = await start(sandbox, redis_server, namespace, "idle", stay=120)
    sandbox.set_faults(purchase_answer_delay=60)
    victim = await start(sandbox, redis_server, namespace, "buy", count=3)
    while len(sandbox.orders()) < 3:  # noqa: ASYNC110 - polls the sandbox's ledger
        await anyio.sleep(0.05)
    victim.kill()
    await victim.process.wait()
    sandbox.clear_faults()
    await _until_refunded(sandbox, [o.id for o in sandbox.orders()], 30)
    assert len(sandbox.orders()) == 3  # none bought again
    assert sandbox.balance() == Decimal("100")
    survivor.kill()
    await survivor.process.wait()


async def test_a_dead_member_with_thousands_of_rows_is_taken_over(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # A member that owed 4,100 rows and died: its hash moves to the leader in one go
    # (a script that unpacked every row at once failed past ~4,000, and Redis' error
    # took the whole fleet for down, every heartbeat).
    fleet = fleet_of(redis_server, namespace)
    prefix = fleet.prefix(sandbox.api_key, sandbox.base_url)
    rows = {f"dead-{n}": '{"kind": "order", "state": "gone"}' for n in range(4100)}
    seed = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await seed.hset(f"{prefix}:owed:deadbeef", mapping=rows)  # type: ignore[arg-type]
        await seed.sadd(f"{prefix}:journaled", "deadbeef")
        async with fast_client(sandbox, fleet=fleet) as gsim:
            await gsim.balance()  # joins; becomes the leader, alone
            for _ in range(100):
                if not await seed.exists(f"{prefix}:owed:deadbeef"):
                    break
                await anyio.sleep(0.1)
            assert not await seed.exists(f"{prefix}:owed:deadbeef")
            owed = [k async for k in seed.scan_iter(f"{prefix}:owed:*")]
            assert len(owed) == 1
            assert await seed.hlen(owed[0]) == 4100
            assert await seed.smembers(f"{prefix}:journaled") == {owed[0].rsplit(":", 1)[1]}
    finally:
        await seed.aclose()


async def test_a_dead_members_refunds_do_not_wait_for_an_earlier_ones_reconciliation(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # The first to die had a purchase on the wire that bought nothing: with a 60-s
    # reconcile window, the survivor takes a minute to conclude so. The second's waits
    # are refunded at once all the same.
    survivor = await start(sandbox, redis_server, namespace, "idle", stay=120, reconcile_window=60)
    sandbox.set_faults(drop_purchase_before_rate=1.0)
    buyer = await start(sandbox, redis_server, namespace, "buy", count=1, reconcile_window=60)
    await anyio.sleep(0.5)  # its purchase was cut before the server saw it: reconciling
    await buyer.killed()
    sandbox.clear_faults()
    waiter = await start(
        sandbox, redis_server, namespace, "wait", count=3, timeout=600, on_timeout="ban"
    )
    ids = (await waiter.next("bought"))["ids"]
    await anyio.sleep(0.5)
    await waiter.killed()
    await _until_refunded(sandbox, ids, 30)
    assert len(sandbox.orders()) == 3  # the cut purchase bought nothing, nor again
    survivor.kill()
    await survivor.process.wait()
