"""A fleet under its engine's ordinary faults: Redis wiped, members stalled or gone.

Real member processes on one key and a real redis-server; what is asserted is the
sandbox's ledger and what Redis holds. ``benchmarks/fleet_faults.py`` measures the same
faults (rates, seconds).
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import fast_client
from members import start
from redis_server import RedisServer

import gsim_async
from gsim_async.fleet import RedisFleet
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=23, auto_deliver=False) as sb:
        yield sb


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def prefix_of(sandbox: Sandbox, redis: RedisServer, namespace: str) -> str:
    return RedisFleet(redis.url, namespace=namespace).prefix(sandbox.api_key, sandbox.base_url)


async def until(predicate: Any, within: float, what: str) -> None:
    """Wait until ``await predicate()`` is true; fail saying ``what`` after ``within`` s."""
    with anyio.move_on_after(within):
        while not await predicate():  # noqa: ASYNC110 - state in another process
            await anyio.sleep(0.1)
        return
    pytest.fail(f"not within {within:.0f} s: {what}")


def refunded(sandbox: Sandbox, ids: list[str]) -> bool:
    return all(sandbox.order(i).refunded for i in ids)


# -- Redis loses everything -------------------------------------------------------------


@pytest.mark.parametrize(("wipe", "knows"), [("restart", "learnt"), ("flushall", "told")])
async def test_a_wiped_redis_gets_back_the_limit_the_fleet_knew(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str, wipe: str, knows: str
) -> None:
    # Before: the members rejoined a gate they recreated in slow start, the limit learnt
    # with a pause forgotten (the next 429 estimated it from a second of history); after
    # a FLUSHALL nobody noticed the gate was gone, and every member sent unpaced.
    sandbox.set_faults(rate_limit=10, retry_after=1)
    prefix = prefix_of(sandbox, redis_server, namespace)
    told = {"max_requests_per_second": 8} if knows == "told" else {}
    workers = [
        await start(sandbox, redis_server, namespace, "hammer", seconds=20, concurrency=6, **told)
        for _ in range(2)
    ]
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:

        async def known() -> bool:
            return await redis.hget(f"{prefix}:gate", "phase") == knows

        await until(known, 30, f"the fleet's gate is {knows}")

        async def settled() -> bool:  # no 429 for 3 s: the rate it runs at holds
            before = sandbox.stats.by_status.get(429, 0)
            await anyio.sleep(3)
            return sandbox.stats.by_status.get(429, 0) == before

        await until(settled, 40, "the fleet settles under the limit")
        rate = await redis.hget(f"{prefix}:gate", "rate")
        epochs = {m: int(e) for m, e in (await redis.hgetall(f"{prefix}:epochs")).items()}
        throttled = sandbox.stats.by_status.get(429, 0)
        if wipe == "flushall":
            await redis.flushall()
        else:
            await redis.aclose()
            redis_server.stop()
            redis_server.start()
            redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)

        async def rejoined() -> bool:
            return await redis.hlen(f"{prefix}:epochs") == 2 and await redis.exists(
                f"{prefix}:gate"
            )

        await until(rejoined, 15, "both members rejoin")
        gate = await redis.hgetall(f"{prefix}:gate")
        assert (gate["phase"], float(gate["rate"])) == (knows, float(rate or "nan"))
        # Epochs never go backwards: every new one is above every one granted before.
        after = {m: int(e) for m, e in (await redis.hgetall(f"{prefix}:epochs")).items()}
        assert min(after.values()) > max(epochs.values())
        if knows == "told":
            await anyio.sleep(4)  # both members keep hammering at the limit restored
            assert sandbox.stats.by_status.get(429, 0) == throttled
    finally:
        await redis.aclose()
    for worker in workers:
        await worker.finish()


async def test_a_flushed_redis_is_written_again_and_no_code_is_lost(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # FLUSHDB drops no connection: only the heartbeat, which Redis no longer knows,
    # tells the members to write their orders, obligations and waits again.
    prefix = prefix_of(sandbox, redis_server, namespace)
    workers = [
        await start(sandbox, redis_server, namespace, "wait", count=4, timeout=60) for _ in range(2)
    ]
    ids = [i for w in workers for i in (await w.next("bought"))["ids"]]
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await anyio.sleep(1)
        await redis.flushdb()

        async def rewritten() -> bool:
            held = await redis.hgetall(f"{prefix}:held")
            watched = await redis.hkeys(f"{prefix}:watch")
            return set(held) == set(ids) and {f.rpartition("|")[0] for f in watched} == set(ids)

        await until(rewritten, 10, "the members hold and wait on their orders again")
        owed = [k async for k in redis.scan_iter(f"{prefix}:owed:*")]
        assert sum([await redis.hlen(k) for k in owed]) == len(ids)
    finally:
        await redis.aclose()
    for order_id in ids:
        sandbox.deliver_code(order_id)
    for worker in workers:
        await worker.finish()
    assert {e["id"] for w in workers for e in w.all("code")} == set(ids)


# -- a member stalled --------------------------------------------------------------------


async def test_a_member_stalled_shorter_than_dead_after_loses_nothing(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Before: a member silent for ten heartbeats was taken for dead, and every order it
    # waited on was banned while it was only stopped.
    fleet = {"heartbeat": 0.3, "dead_after": 6.0}
    leader = await start(sandbox, redis_server, namespace, "idle", stay=120, **fleet)
    victim = await start(
        sandbox, redis_server, namespace, "wait", count=6, timeout=60, on_timeout="ban", **fleet
    )
    ids = (await victim.next("bought"))["ids"]
    await anyio.sleep(1)  # registered with the leader
    victim.process.send_signal(signal.SIGSTOP)
    try:
        await anyio.sleep(1)
        for order_id in ids[:3]:
            sandbox.deliver_code(order_id)  # while it is stopped: the leader reads them
        await anyio.sleep(3)
        assert not any(sandbox.order(i).refunded for i in ids)
    finally:
        victim.process.send_signal(signal.SIGCONT)
    for order_id in ids[3:]:
        sandbox.deliver_code(order_id)
    await victim.finish()
    assert {e["id"]: e["code"] for e in victim.all("code")} == {
        i: sandbox.order(i).sms_code for i in ids
    }
    assert not any(sandbox.order(i).refunded for i in ids)
    leader.kill()
    await leader.process.wait()


async def test_a_member_stalled_past_dead_after_learns_at_once_what_the_fleet_did(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Before: the fleet banned its orders while it was stopped, and when it resumed its
    # waits hung until their own timeout, then blamed the timeout.
    fleet = {"heartbeat": 0.3, "dead_after": 2.0}
    leader = await start(sandbox, redis_server, namespace, "idle", stay=120, **fleet)
    victim = await start(
        sandbox, redis_server, namespace, "wait", count=5, timeout=120, on_timeout="ban", **fleet
    )
    ids = (await victim.next("bought"))["ids"]
    await anyio.sleep(1)
    victim.process.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: _true(refunded(sandbox, ids)), 20, "the fleet refunds the orders")
    finally:
        victim.process.send_signal(signal.SIGCONT)
    # Each wait ends with the reason, long before its own 120-s timeout.
    done = await victim.finish(timeout=20)
    errors = victim.all("error")
    assert {e["id"] for e in errors} == set(ids)
    assert all("NoCodeError" in e["error"] and "taken over by the fleet" in e["error"]
               for e in errors)  # fmt: skip
    assert any("took over" in line for line in done["log"])
    assert sandbox.balance() == Decimal("100")  # each refunded once, none charged twice
    leader.kill()
    await leader.process.wait()


async def _true(value: bool) -> bool:
    return value


# -- a member gone -----------------------------------------------------------------------


@pytest.mark.parametrize("seen", ["process gone", "heartbeat only"])
async def test_a_dead_members_waits_are_refunded(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str, seen: str
) -> None:
    # On this machine the leader sees the process is gone and takes over at once; from
    # another machine only the heartbeat tells, after dead_after.
    env = {"_GSIM_FLEET_NO_PROCESS_CHECK": "1"} if seen == "heartbeat only" else {}
    fleet = {"heartbeat": 0.3, "dead_after": 3.0 if env else 600.0}
    survivor = await start(sandbox, redis_server, namespace, "idle", env, stay=120, **fleet)
    victim = await start(
        sandbox, redis_server, namespace, "wait", env, count=8, timeout=600, on_timeout="ban",
        **fleet,
    )  # fmt: skip
    ids = (await victim.next("bought"))["ids"]
    await anyio.sleep(1)
    await victim.killed()
    await until(lambda: _true(refunded(sandbox, ids)), 30, "the dead member's orders refunded")
    assert sandbox.balance() == Decimal("100")
    survivor.kill()
    await survivor.process.wait()


async def test_a_dead_members_waits_are_refunded_when_it_restarts_on_its_journal(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    # The member is started again at once on its journal file and, alone, leads: it
    # takes its dead run over from the fleet a heartbeat after its journal showed it the
    # same waits. Before: the journal's schedule won (the waits' own deadline, 600 s, or
    # an activation's grace after a long look) and the fleet's "at once" was dropped.
    journal = str(tmp_path / "member.db")
    fleet = {"heartbeat": 0.3, "dead_after": 600.0, "journal": journal}
    victim = await start(
        sandbox, redis_server, namespace, "wait", count=4, timeout=600, on_timeout="ban",
        **fleet,
    )  # fmt: skip
    ids = (await victim.next("bought"))["ids"]
    await anyio.sleep(1)
    await victim.killed()
    again = await start(sandbox, redis_server, namespace, "idle", stay=120, **fleet)
    try:
        await until(lambda: _true(refunded(sandbox, ids)), 30, "the dead run's orders refunded")
        assert sandbox.balance() == Decimal("100")
        assert {sandbox.order(i).status for i in ids} == {"BANNED"}
    finally:
        again.kill()
        await again.process.wait()


async def test_a_member_that_closes_hands_its_orders_over_at_once(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # A member that leaves removes its heartbeat: nobody waits out dead_after for it.
    fleet = RedisFleet(redis_server.url, namespace=namespace, heartbeat=0.3, dead_after=600)
    prefix = fleet.prefix(sandbox.api_key, sandbox.base_url)
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with fast_client(sandbox, fleet=fleet) as first:
            await first.balance()  # joins first: the leader
            async with fast_client(sandbox, fleet=fleet) as second:
                orders = [await second.orders.create("telegram", "russia") for _ in range(3)]
                mine = second._fleet.member.id  # type: ignore[union-attr]
            leader_id = first._fleet.member.id  # type: ignore[union-attr]

            async def taken() -> bool:
                return not await redis.exists(f"{prefix}:owed:{mine}") and await redis.hlen(
                    f"{prefix}:owed:{leader_id}"
                ) == len(orders)

            await until(taken, 10, "the leader takes the closed member's rows")
    finally:
        await redis.aclose()


async def test_a_stale_member_cannot_write_or_lead(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Fencing: a member whose epoch Redis no longer holds (taken over while silent) has
    # every write refused until it has joined again, and then learns it was taken over.
    fleet = RedisFleet(redis_server.url, namespace=namespace, heartbeat=0.3, dead_after=600)
    prefix = fleet.prefix(sandbox.api_key, sandbox.base_url)
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with fast_client(sandbox, fleet=fleet) as gsim:
            order = await gsim.orders.create("telegram", "russia")
            member = gsim._fleet.member  # type: ignore[union-attr]
            old = member.epoch
            owed = f"{prefix}:owed:{member.id}"

            async def written() -> bool:
                return await redis.hlen(owed) == 1

            await until(written, 5, "the order's row is in Redis")
            ((ref, row),) = (await redis.hgetall(owed)).items()
            # What a leader's takeover does to a silent member, done by hand.
            await redis.hdel(f"{prefix}:epochs", member.id)
            await redis.set(f"{prefix}:revoked:{member.id}", "someone:0")
            await redis.hset(f"{prefix}:taken:{member.id}", ref, row)
            await redis.delete(owed)

            async def rejoined() -> bool:
                return member.epoch != old and member.active

            await until(rejoined, 10, "the member learns and joins again")
            assert member.epoch is not None and old is not None and member.epoch > old
            # What was taken is no longer its own: not written back, and a wait on it ends.
            await asyncio.sleep(1.0)
            assert not await redis.hexists(owed, ref)
            with pytest.raises(gsim_async.NoCodeError, match="taken over by the fleet"):
                await gsim.orders.wait_for_code(order, timeout=30)
            assert not await redis.exists(f"{prefix}:taken:{member.id}")
            leader = await redis.get(f"{prefix}:leader")
            assert leader is None or leader == f"{member.id}:{member.epoch}"
    finally:
        await redis.aclose()
