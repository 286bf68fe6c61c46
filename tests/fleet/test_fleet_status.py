"""A fleet's view of itself: ``RedisFleet.status()`` over a real Redis and real members.

Members are in-process clients and real processes (``fleet_worker.py``) on one key;
the status is read by a ``RedisFleet`` that joins nothing, and checked against what
the members and the sandbox know.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import fast_client
from processes import Worker
from redis_server import ClusterGroup, RedisServer

import gsim_async
from gsim_async.fleet import FleetStatus, MemberState, RedisFleet
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("fleet_worker.py")
#: Fast enough for tests; the reader judges members with the same settings.
TIMINGS: dict[str, Any] = {"heartbeat": 0.3, "lease": 1.0}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=31, auto_deliver=False) as sb:
        yield sb


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def fleet(redis: RedisServer, namespace: str, **options: Any) -> RedisFleet:
    return RedisFleet(redis.url, namespace=namespace, **{**TIMINGS, **options})


def member_client(sandbox: Sandbox, redis: RedisServer, namespace: str) -> gsim_async.Client:
    return fast_client(sandbox, fleet=fleet(redis, namespace), max_retries=1)


async def start_worker(
    sandbox: Sandbox,
    redis: RedisServer,
    namespace: str,
    scenario: str,
    env: dict[str, str] | None = None,
    **config: Any,
) -> Worker:
    settings = {
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "redis_url": redis.url,
        "namespace": namespace,
        "scenario": scenario,
        **TIMINGS,
        **config,
    }
    environment = {"PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    worker = await Worker.start(WORKER, settings, environment)
    await worker.next("ready")
    return worker


async def status_when(
    reader: RedisFleet, sandbox: Sandbox, check: Callable[[FleetStatus], bool], what: str
) -> FleetStatus:
    """The first status that passes ``check`` (members write in the background)."""
    found = None
    with anyio.move_on_after(15):
        while True:
            found = await reader.status(sandbox.api_key, base_url=sandbox.base_url)
            if check(found):
                return found
            await anyio.sleep(0.1)
    pytest.fail(f"not within 15 s: {what}; last status: {found}")


async def test_a_redis_without_a_fleet_shows_an_empty_one(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    other = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await other.set("somebody-else", "1")  # a shared Redis: other keys are not a fleet
    finally:
        await other.aclose()
    found = await fleet(redis_server, namespace).status(sandbox.api_key, base_url=sandbox.base_url)
    assert found.empty
    assert (found.members, found.leader, found.gate, found.throttles) == ((), None, None, ())
    assert found.prefix == fleet(redis_server, namespace).prefix(sandbox.api_key, sandbox.base_url)
    assert sandbox.api_key not in repr(found)


async def test_no_api_key_is_an_error_before_redis_is_asked(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GSIM_API_KEY", raising=False)
    with pytest.raises(gsim_async.InvalidArgumentError, match="no API key"):
        await RedisFleet(redis_server.url).status()


async def test_an_unreachable_redis_is_a_fleet_error(sandbox: Sandbox) -> None:
    with pytest.raises(gsim_async.FleetError, match="cannot reach the fleet's Redis"):
        await RedisFleet("redis://127.0.0.1:1/0").status(sandbox.api_key, base_url=sandbox.base_url)


async def test_members_show_where_they_run_and_what_they_hold_and_owe(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    worker = await start_worker(
        sandbox, redis_server, namespace, "wait", count=2, timeout=60, on_timeout="cancel"
    )
    bought = await worker.next("bought")
    held_open = asyncio.Event()
    async with (
        member_client(sandbox, redis_server, namespace) as a,
        member_client(sandbox, redis_server, namespace) as b,
    ):

        async def activation() -> None:
            async with a.orders.activation("telegram", "russia"):
                await held_open.wait()

        task = asyncio.ensure_future(activation())
        order = await b.orders.create("telegram", "russia")

        def settled(found: FleetStatus) -> bool:
            owed = [m.obligations for m in found.members]
            return (
                len(found.alive) == 3
                and found.leader is not None
                and found.ownership_records == 4
                and found.waiting == 2
                and sum(o.waits for o in owed) == 2
                and sum(o.activations for o in owed) == 1
                and sum(o.orders for o in owed) == 1
            )

        found = await status_when(fleet(redis_server, namespace), sandbox, settled, "all written")
        held_open.set()
        await task
        await b.orders.cancel(order)

    by_pid = {m.pid: m for m in found.members if m.pid != os.getpid()}
    process = by_pid[worker.process.pid]
    assert process.host == socket.gethostname()
    assert process.state is MemberState.ALIVE and process.alive
    assert process.last_heartbeat is not None and process.silent_for is not None
    assert process.silent_for < 1.0
    assert process.joined_at is not None and process.age is not None
    assert (process.held, process.waiting, process.obligations.waits) == (2, 2, 2)
    assert process.obligations.next_due is not None  # the waits' timeout, for the refund
    mine = [m for m in found.members if m.pid == os.getpid()]
    assert len(mine) == 2
    activator = next(m for m in mine if m.obligations.activations)
    buyer = next(m for m in mine if m.obligations.orders)
    assert (activator.held, activator.waiting, activator.obligations.total) == (1, 0, 1)
    assert (buyer.held, buyer.waiting, buyer.obligations.total) == (1, 0, 1)
    # One leader, named by the lease, which is its member's own.
    leaders = [m for m in found.members if m.leader]
    assert found.leader is not None and [m.id for m in leaders] == [found.leader.member]
    assert found.leader.valid and found.leader.epoch == leaders[0].epoch
    assert found.leader.lease_left is not None and 0 < found.leader.lease_left <= 1.0
    assert found.gate is not None and found.gate.phase == "slow" and not found.gate.paused
    assert found.throttles == ()
    assert sandbox.api_key not in repr(found)
    await worker.finish()
    assert len(bought["ids"]) == 2


async def test_the_gate_and_the_429s_after_a_rate_limit(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    sandbox.set_faults(rate_limit=2, retry_after=20)
    client = fast_client(
        sandbox, fleet=fleet(redis_server, namespace), max_retries=0, max_retry_after=30
    )
    async with client as gsim:
        with pytest.raises(gsim_async.RateLimitedError):  # noqa: PT012 - the 429 ends the loop
            for _ in range(10):
                await gsim.balance()
        throttled = sandbox.stats.by_status[429]

        found = await status_when(
            fleet(redis_server, namespace),
            sandbox,
            lambda s: (
                len(s.throttles) == throttled and s.gate is not None and s.gate.phase == "learnt"
            ),
            "the 429 recorded and the limit learnt",
        )
    assert throttled == 1
    gate = found.gate
    assert gate is not None and gate.paused and 15 < gate.paused_for <= 20
    assert gate.paused_until is not None and gate.paused_until > found.read_at
    assert gate.rate is not None and 0 < gate.rate <= 2
    (member,) = found.members
    (last,) = found.throttles
    assert (last.member, last.retry_after, last.began_pause) == (member.id, 20.0, True)
    assert member.throttled == 1
    assert found.throttled_within(60) == 1
    assert abs((found.read_at - last.at).total_seconds()) < 15


async def test_429s_met_during_a_pause_are_counted_but_begin_none(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    # Several requests in flight when the limit is met: each 429 is the fleet's, one pause.
    sandbox.set_faults(rate_limit=1, retry_after=5)
    async with (
        member_client(sandbox, redis_server, namespace) as a,
        member_client(sandbox, redis_server, namespace) as b,
    ):

        async def call(gsim: gsim_async.Client) -> None:
            with contextlib.suppress(gsim_async.RateLimitedError):
                await gsim.balance()

        await asyncio.gather(*(call(c) for c in (a, b) for _ in range(4)))
        throttled = sandbox.stats.by_status[429]
        found = await status_when(
            fleet(redis_server, namespace),
            sandbox,
            lambda s: len(s.throttles) == throttled,
            "every 429 recorded",
        )
    assert throttled >= 2
    assert sum(m.throttled for m in found.members) == throttled
    assert 1 <= sum(t.began_pause for t in found.throttles) < throttled
    assert [t.at for t in found.throttles] == sorted((t.at for t in found.throttles), reverse=True)


async def test_a_stalled_member_is_silent_and_a_killed_one_dead(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    reader = fleet(redis_server, namespace)
    worker = await start_worker(
        sandbox, redis_server, namespace, "wait", count=1, timeout=60, on_timeout="cancel"
    )
    (order_id,) = (await worker.next("bought"))["ids"]
    pid = worker.process.pid
    async with member_client(sandbox, redis_server, namespace):
        await status_when(reader, sandbox, lambda s: len(s.alive) == 2, "both members alive")
        os.kill(pid, signal.SIGSTOP)
        try:
            found = await status_when(
                reader,
                sandbox,
                lambda s: any(m.pid == pid and m.state is MemberState.SILENT for m in s.members),
                "the stopped member silent",
            )
            stopped = next(m for m in found.members if m.pid == pid)
            assert stopped.alive and not stopped.process_gone  # the fleet still counts on it
            assert stopped.silent_for is not None and stopped.silent_for > 3 * TIMINGS["heartbeat"]
        finally:
            os.kill(pid, signal.SIGKILL)
        await worker.exited()

        # Gone from this machine: dead at once, and the leader (the client here) takes over.
        found = await status_when(
            reader,
            sandbox,
            lambda s: any(m.pid == pid and m.taken_over is not None for m in s.members),
            "the killed member taken over",
        )
    dead = next(m for m in found.members if m.pid == pid)
    assert dead.state is MemberState.DEAD and not dead.alive
    assert dead.taken_over is not None and dead.taken_over.rows == 1
    assert dead.taken_over.by == next(m.id for m in found.members if m.pid == os.getpid())
    assert dead.last_heartbeat is None and dead.epoch is None
    assert dead.obligations.total == 0  # the leader's now: it refunds them
    assert found.members[-1] is dead  # the living first
    with anyio.fail_after(10):
        while not sandbox.order(order_id).refunded:  # noqa: ASYNC110 - the sandbox's ledger
            await anyio.sleep(0.1)


async def test_a_member_silent_past_dead_after_is_dead_where_its_process_cannot_be_seen(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As from another machine: only the heartbeat tells (the fleet's own rule).
    monkeypatch.setenv("_GSIM_FLEET_NO_PROCESS_CHECK", "1")
    worker = await start_worker(
        sandbox,
        redis_server,
        namespace,
        "wait",
        count=1,
        timeout=60,
        on_timeout="cancel",
        dead_after=3.0,
    )
    await worker.next("bought")
    reader = fleet(redis_server, namespace, dead_after=3.0)
    found = await status_when(
        reader, sandbox, lambda s: s.members[0].obligations.waits == 1, "its wait written"
    )
    await worker.killed()
    found = await reader.status(sandbox.api_key, base_url=sandbox.base_url)
    (member,) = found.members
    assert member.state is MemberState.ALIVE and not member.process_gone
    found = await status_when(
        reader, sandbox, lambda s: s.members[0].state is MemberState.SILENT, "silent"
    )
    found = await status_when(
        reader, sandbox, lambda s: s.members[0].state is MemberState.DEAD, "dead"
    )
    (member,) = found.members
    assert member.silent_for is not None and member.silent_for >= 3.0
    # Nobody is left to take over: its rows wait, and say so.
    assert member.taken_over is None and member.obligations.waits == 1
    assert found.leader is None


async def test_reading_writes_nothing(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    worker = await start_worker(sandbox, redis_server, namespace, "wait", count=1, timeout=60)
    await worker.killed()  # a fleet's state left in Redis, and nobody writing to it
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = sorted(await redis.keys("*"))
        before = [await redis.dump(k) for k in keys]
        await redis.config_resetstat()
        reader = fleet(redis_server, namespace)
        for _ in range(3):
            await reader.status(sandbox.api_key, base_url=sandbox.base_url)
        used = await redis.info("commandstats")
        assert sorted(await redis.keys("*")) == keys
        assert [await redis.dump(k) for k in keys] == before
    finally:
        await redis.aclose()
    commands = {name.removeprefix("cmdstat_") for name in used}
    reads = {"ping", "eval", "zrange", "hgetall", "smembers", "get", "pttl", "hmget", "lrange",
             "hlen", "exists", "hvals", "hkeys", "time", "hello", "client|setinfo",
             "config|resetstat", "info"}  # fmt: skip
    assert commands <= reads, commands - reads


async def test_a_read_only_replica_serves_the_status(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    async with member_client(sandbox, redis_server, namespace) as gsim:
        await gsim.orders.create("telegram", "russia")
        with RedisServer("--replicaof", "127.0.0.1", str(redis_server.port)) as replica:
            reader = RedisFleet(replica.url, namespace=namespace, **TIMINGS)
            found = await status_when(
                reader, sandbox, lambda s: bool(s.members) and s.members[0].held == 1, "replicated"
            )
    assert found.members[0].held == 1


async def test_a_cluster_serves_the_status(
    sandbox: Sandbox, redis_cluster: ClusterGroup, namespace: str
) -> None:
    url = redis_cluster.url
    async with fast_client(sandbox, fleet=RedisFleet(url, namespace=namespace, **TIMINGS)) as gsim:
        await gsim.orders.create("telegram", "russia")
        reader = RedisFleet(url, namespace=namespace, **TIMINGS)
        found = await status_when(
            reader,
            sandbox,
            lambda s: s.leader is not None and s.members[0].obligations.orders == 1,
            "the member's order",
        )
    assert found.members[0].leader


async def test_a_member_that_left_is_not_listed(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    reader = fleet(redis_server, namespace)
    async with member_client(sandbox, redis_server, namespace) as staying:
        async with member_client(sandbox, redis_server, namespace) as leaving:
            order = await leaving.orders.create("telegram", "russia")
            await leaving.orders.cancel(order)  # its row ends: it owes nothing
            await status_when(reader, sandbox, lambda s: len(s.alive) == 2, "both members")
        # Gone at once: no heartbeat, no epoch, no rows (its name may linger in the index
        # of members with rows until the leader's next sweep).
        found = await reader.status(sandbox.api_key, base_url=sandbox.base_url)
        assert len(found.members) == 1 and found.members[0].alive
        await staying.balance()
