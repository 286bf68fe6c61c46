"""HA and managed Redis: Sentinel and its failover, Cluster, TLS, a ready client, and what
the fleet cannot use failing when the client opens (real servers, real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import redis
import redis.asyncio as aioredis
from helpers import fast_client
from members import start
from processes import Worker
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis_server import RedisServer, TLSRedis, need_redis

import gsim_async
from benchmarks._redis import ClusterGroup, SentinelGroup, free_port
from gsim_async import FleetError, InvalidArgumentError
from gsim_async.fleet import RedisFleet
from gsim_async.sandbox import Ledger, OrderRecord, Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    """A Sentinel-managed primary shared by the tests that never fail it over."""
    need_redis()
    with SentinelGroup() as group:
        yield group


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterGroup]:
    """A three-node Cluster shared by this module's tests (each its own namespace)."""
    need_redis()
    with ClusterGroup() as group:
        yield group


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=13, auto_deliver=False) as sb:
        yield sb


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def opening_fails(sandbox: Sandbox, fleet: RedisFleet) -> FleetError:
    """The error ``async with Client(fleet=fleet)`` raises; nothing was sent to the API."""
    with pytest.raises(FleetError) as raised:
        async with fast_client(sandbox, fleet=fleet):
            pytest.fail("the client opened")
    assert sandbox.stats.total == 0
    return raised.value


async def codes_through(sandbox: Sandbox, fleet: RedisFleet, count: int = 3) -> None:
    """Buy ``count`` numbers and get their codes through the fleet (its leader polls)."""
    async with fast_client(sandbox, fleet=fleet) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(count)]
        sent = [sandbox.deliver_code(o.id) for o in orders]
        got = await asyncio.gather(*(gsim.orders.wait_for_code(o, timeout=20) for o in orders))
        assert list(got) == sent
        assert gsim._fleet is not None and gsim._fleet.member.active  # private: joined


# -- what the fleet cannot use ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@127.0.0.1:6379/zero",  # a database must be a number
        "redis://:s3cret@127.0.0.1:6379/0?no_such_option=1",
        "redis://:s3cret@127.0.0.1:port/0",
        "http://:s3cret@127.0.0.1:6379/0",
        "redis+sentinel://:s3cret@127.0.0.1:26379",  # no service name
        "redis+sentinel://:s3cret@127.0.0.1:26379/gsim/zero",
        "redis+sentinel://:s3cret@127.0.0.1:x/gsim",
        "redis+sentinel://:s3cret@/gsim",
    ],
)
def test_a_malformed_url_fails_when_the_fleet_is_made(url: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        RedisFleet(url)
    assert "s3cret" not in str(raised.value)


def test_a_client_the_fleet_cannot_read_is_refused_when_the_fleet_is_made() -> None:
    with pytest.raises(InvalidArgumentError, match="decode_responses=True"):
        RedisFleet(aioredis.Redis())  # bytes, not text
    with pytest.raises(InvalidArgumentError, match=r"redis\.asyncio"):
        RedisFleet(redis.Redis(decode_responses=True))  # type: ignore[arg-type] # blocking


async def test_an_unreachable_redis_fails_when_the_client_opens(sandbox: Sandbox) -> None:
    port = free_port()
    error = await opening_fails(sandbox, RedisFleet(f"redis://127.0.0.1:{port}/0"))
    assert error.where == f"redis://127.0.0.1:{port}/0"
    assert str(error).startswith(f"cannot reach the fleet's Redis at redis://127.0.0.1:{port}/0")


async def test_credentials_are_checked_when_the_client_opens(
    sandbox: Sandbox, namespace: str
) -> None:
    need_redis()
    with RedisServer("--requirepass", "right-password") as server:
        wrong = RedisFleet(f"redis://:wrong-password@127.0.0.1:{server.port}/0")
        error = await opening_fails(sandbox, wrong)
        assert "refused its credentials" in str(error)
        assert "wrong-password" not in f"{error} {error.where} {wrong!r}"
        none = await opening_fails(sandbox, RedisFleet(server.url))
        assert "refused its credentials" in str(none)
        right = f"redis://:right-password@127.0.0.1:{server.port}/0"
        await codes_through(sandbox, RedisFleet(right, namespace=namespace))


async def test_a_server_without_lua_fails_when_the_client_opens(sandbox: Sandbox) -> None:
    need_redis()
    with RedisServer("--rename-command", "EVAL", "") as server:
        error = await opening_fails(sandbox, RedisFleet(server.url))
    assert "cannot run the fleet's Lua scripts" in str(error)
    assert "EVAL" in str(error)


async def test_a_sentinel_that_names_no_primary_fails_when_the_client_opens(
    sandbox: Sandbox, sentinels: SentinelGroup
) -> None:
    url = sentinels.url.replace(f"/{sentinels.service}/", "/no-such-service/")
    error = await opening_fails(sandbox, RedisFleet(url))
    assert str(error).startswith(f"no Sentinel at {url} names a primary for the service")
    assert "'no-such-service'" in str(error)


async def test_a_read_only_replica_fails_when_the_client_opens(
    sandbox: Sandbox, sentinels: SentinelGroup
) -> None:
    error = await opening_fails(sandbox, RedisFleet(sentinels.replica.url))
    assert "is a read-only replica" in str(error)


# -- Sentinel --------------------------------------------------------------------------


async def test_gsim_fleet_url_names_a_sentinel_managed_primary(
    sandbox: Sandbox, sentinels: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSIM_FLEET_URL", sentinels.url)
    async with fast_client(sandbox) as gsim:  # fleet=None: GSIM_FLEET_URL
        order = await gsim.orders.create("telegram", "russia")
        sent = sandbox.deliver_code(order.id)
        assert await gsim.orders.wait_for_code(order, timeout=20) == sent
        primary = redis.Redis(port=sentinels.primary.port, decode_responses=True)
        try:
            assert primary.keys("gsim:*:members")  # it joined, on the primary
        finally:
            primary.close()


async def test_a_sentinels_ready_client_is_used_and_left_open(
    sandbox: Sandbox, sentinels: SentinelGroup, namespace: str
) -> None:
    manager = Sentinel([("127.0.0.1", s.port) for s in sentinels.sentinels])
    client = manager.master_for(sentinels.service, decode_responses=True)
    try:
        await codes_through(sandbox, RedisFleet(client, namespace=namespace))
        assert await client.ping()  # still the user's, still open
    finally:
        await client.aclose()
        await manager.aclose()


@attrs.frozen
class FailoverRun:
    """What two members buying and waiting through a failover did, and the ledger."""

    workers: list[Worker]
    done: list[dict[str, Any]]
    ledger: Ledger
    records: dict[str, OrderRecord]
    killed_at: float
    failed_over: float

    def bought(self) -> list[str]:
        return [i for w in self.workers for e in w.all("bought") for i in e["ids"]]

    def codes(self) -> dict[str, str]:
        return {e["id"]: e["code"] for w in self.workers for e in w.all("code")}

    def pauses(self) -> list[float]:
        """When members met a 429, in seconds from the primary's death."""
        return sorted(
            t - self.killed_at
            for d in self.done
            for t, reason in d["retries"]
            if reason.startswith("429")
        )


async def through_failover(
    group: SentinelGroup, namespace: str, limit: float, *, kill_after: float = 1.5
) -> FailoverRun:
    """Two members, four loops each buying and waiting; the primary killed mid-run
    (``kill_after`` seconds after both had a code), the run going on 6 s after that."""
    async with Sandbox(seed=17, code_delay=(0.2, 1.0)) as sandbox:
        sandbox.set_faults(rate_limit=limit, retry_after=2)
        run = {
            "duration": kill_after + 7.5,
            "concurrency": 4,
            "poll_interval": 0.25,
            "timeout": 30,
        }
        workers = [await start(sandbox, group.url, namespace, "loop", **run) for _ in range(2)]
        for worker in workers:
            await worker.next("code")
        await anyio.sleep(kill_after)
        killed_at = time.time()
        group.kill_primary()  # SIGKILL: the Sentinels promote the replica
        await anyio.to_thread.run_sync(group.wait_failover)
        failed_over = time.time() - killed_at
        done = list(await asyncio.gather(*(w.finish(timeout=90) for w in workers)))
        ledger = sandbox.ledger()
        records = {r.id: r for r in sandbox.orders()}
    return FailoverRun(workers, done, ledger, records, killed_at, failed_over)


async def test_a_sentinel_failover_mid_run_loses_no_money_and_no_code(
    sentinel_group: SentinelGroup, namespace: str
) -> None:
    run = await through_failover(sentinel_group, namespace, limit=40)
    bought, codes = run.bought(), run.codes()
    assert not [e for w in run.workers for e in w.all("error")]
    # No double charge: every order charged is one a member bought, once.
    assert len(bought) == len(set(bought))
    assert set(run.ledger.charges_by_order) == set(bought)
    # No code lost: every order's code reached the member that bought it.
    assert codes == {i: run.records[i].sms_code for i in bought}
    # Nothing left charged: every order ended with its code.
    assert run.ledger.orders_by_status == {"RECEIVED": len(bought)}
    assert run.ledger.balanced
    # The members followed the failover: they rejoined, through the new primary.
    assert all(any("reachable again" in line for line in d["log"]) for d in run.done)
    after = [
        e for w in run.workers for e in w.all("code") if e["at"] > run.killed_at + run.failed_over
    ]
    assert len(after) > 8
    # At most one 429 pause, for the whole fleet.
    pauses = run.pauses()
    assert not pauses or pauses[-1] - pauses[0] < 2.0, pauses


async def test_a_sentinel_failover_costs_no_second_pause_once_the_limit_is_learnt(
    sentinel_group: SentinelGroup, namespace: str
) -> None:
    # Before: while Redis failed over, each member paced alone at the whole fleet's
    # learnt rate; two members sent twice the limit and met a second 429.
    # The fleet meets the limit at once, pauses (2 s) and learns it; then the failover.
    run = await through_failover(sentinel_group, namespace, limit=15, kill_after=4.0)
    assert run.ledger.orders_by_status == {"RECEIVED": len(run.bought())}  # as above
    pauses = run.pauses()
    assert pauses, "the fleet never met the limit: nothing learnt before the failover"
    assert pauses[-1] < 0, pauses  # none after the primary's death


# -- Cluster ---------------------------------------------------------------------------


async def test_on_a_cluster_codes_reach_the_process_that_waits(
    sandbox: Sandbox, cluster: ClusterGroup, namespace: str
) -> None:
    leader = await start(sandbox, cluster.url, namespace, "idle", stay=60)  # leads: first
    waiter = await start(sandbox, cluster.url, namespace, "wait", count=4)
    ids = (await waiter.next("bought"))["ids"]
    for order_id in ids:
        sandbox.deliver_code(order_id)
    done = await waiter.finish()
    leader.kill()
    await leader.exited()
    codes = {e["id"]: e["code"] for e in waiter.all("code")}
    assert codes == {i: sandbox.order(i).sms_code for i in ids}
    assert done["rounds"] == 0  # it never polled: the leader's results reached it
    # Every key of the fleet lives on one node, in one slot.
    prefix = RedisFleet(cluster.url, namespace=namespace).prefix(sandbox.api_key, sandbox.base_url)
    slots = set()
    holders = []
    for node in cluster.nodes:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            keys = client.keys(f"{prefix}:*")
            slots |= {client.cluster("keyslot", k) for k in keys}
            holders += [node.port] if keys else []
        finally:
            client.close()
    assert len(slots) == 1 and len(holders) == 1


async def test_on_a_cluster_lost_purchases_of_two_members_are_adopted_exactly(
    sandbox: Sandbox, cluster: ClusterGroup, namespace: str
) -> None:
    sandbox.set_faults(drop_after_purchase_rate=1.0)
    workers = [await start(sandbox, cluster.url, namespace, "buy", count=3) for _ in range(2)]
    await asyncio.gather(*(w.finish() for w in workers))
    got = [i for w in workers for e in w.all("bought") for i in e["ids"]]
    assert not [e for w in workers for e in w.all("error")]
    assert len(got) == len(set(got)) == 6  # each its own order, none twice
    assert set(sandbox.ledger().charges_by_order) == set(got)  # nothing bought again


async def test_on_a_cluster_a_429_pauses_the_whole_fleet_once(
    sandbox: Sandbox, cluster: ClusterGroup, namespace: str
) -> None:
    sandbox.set_faults(rate_limit=20, retry_after=2)
    workers = [
        await start(sandbox, cluster.url, namespace, "hammer", count=45, max_retries=5)
        for _ in range(2)
    ]
    done = await asyncio.gather(*(w.finish(timeout=90) for w in workers))
    assert not [e for w in workers for e in w.all("error")]
    pauses = sorted(t for d in done for t, reason in d["retries"] if reason.startswith("429"))
    assert pauses, "the limit was never met"
    assert pauses[-1] - pauses[0] < 2.0  # every 429 belongs to the one pause
    assert sandbox.stats.by_status.get(429, 0) <= 0.05 * sandbox.stats.total


async def test_a_ready_cluster_client_is_used_and_left_open(
    sandbox: Sandbox, cluster: ClusterGroup, namespace: str
) -> None:
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    try:
        await codes_through(sandbox, RedisFleet(client, namespace=namespace))
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_cluster_has_only_database_0(sandbox: Sandbox, cluster: ClusterGroup) -> None:
    error = await opening_fails(sandbox, RedisFleet(cluster.url.replace("/0", "/2")))
    assert "Redis Cluster, which has only database 0" in str(error)


# -- TLS and a ready client ------------------------------------------------------------


async def test_the_fleet_reaches_redis_over_tls_with_a_client_certificate(
    sandbox: Sandbox, tls_redis: TLSRedis, namespace: str
) -> None:
    await codes_through(sandbox, RedisFleet(tls_redis.url, namespace=namespace))


async def test_tls_without_the_client_certificate_fails_when_the_client_opens(
    sandbox: Sandbox, tls_redis: TLSRedis
) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={tls_redis.ca}"
    error = await opening_fails(sandbox, RedisFleet(url))
    assert str(error).startswith(
        f"cannot reach the fleet's Redis at rediss://127.0.0.1:{tls_redis.port}/0"
    )


async def test_the_fleet_reaches_redis_over_a_unix_socket(sandbox: Sandbox, namespace: str) -> None:
    need_redis()
    # A socket's path has room for about 100 bytes: not in pytest's (or nox's) deep
    # temporary directories.
    with tempfile.TemporaryDirectory(prefix="gsim-", dir="/tmp") as short:
        socket = Path(short) / "redis.sock"
        with RedisServer("--unixsocket", str(socket), "--unixsocketperm", "700"):
            await codes_through(sandbox, RedisFleet(f"unix://{socket}?db=1", namespace=namespace))


async def test_a_ready_client_is_used_and_left_open(
    sandbox: Sandbox, redis_server: RedisServer, namespace: str
) -> None:
    client = aioredis.Redis.from_url(
        redis_server.url, decode_responses=True, client_name="the-users-client"
    )
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        await codes_through(sandbox, RedisFleet(client, namespace=namespace))
        # The fleet closed none of the user's connections: they are still there.
        names = [c["name"] for c in admin.client_list()]
        assert names.count("the-users-client") >= 1
        assert await client.ping()
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        admin.close()


def test_a_fleet_is_shown_without_its_password() -> None:
    fleet = RedisFleet("redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/gsim/1")
    assert "s3cret" not in repr(fleet)
    assert "127.0.0.1:26379,127.0.0.1:26380/gsim/1" in repr(fleet)
    assert gsim_async.FleetError.__module__ == "gsim_async"
