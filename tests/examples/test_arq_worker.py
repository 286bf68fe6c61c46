"""examples/arq_worker.py run as its users run it: ``arq arq_worker.WorkerSettings``.

A real arq worker process takes jobs from a real redis-server, which also serves as
the worker's gsim fleet (``GSIM_FLEET_URL``). One worker serves the module's tests; the
last one stops it with SIGTERM while jobs wait for codes.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import redis
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus
from redis_server import RedisServer
from services import Service, ThreadedSandbox, assert_nothing_left_charged, python, threaded_sandbox

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="stops a process with SIGTERM"),
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with threaded_sandbox(seed=25) as sb:
        yield sb


@pytest.fixture(scope="module")
def worker(sandbox: ThreadedSandbox, shared_redis: RedisServer) -> Iterator[Service]:
    probe = redis.Redis.from_url(shared_redis.url)
    service = Service(
        python("-m", "arq", "arq_worker.WorkerSettings"),
        env={
            **sandbox.env(),
            "REDIS_URL": shared_redis.url,
            "GSIM_FLEET_URL": shared_redis.url,
            "POLL_INTERVAL": "0.1",
            "CODE_TIMEOUT": "60",
            "JOB_COMPLETION_WAIT": "2",
        },
        # What `arq --check` reads: the worker writes it once it runs (on_startup done).
        ready=lambda: probe.exists("arq:queue:health-check"),
        name="arq-worker",
    )
    yield service
    service.close()
    probe.close()


@pytest.fixture
async def queue(worker: Service, shared_redis: RedisServer) -> AsyncIterator[ArqRedis]:
    await anyio.to_thread.run_sync(worker.running)
    pool = await create_pool(RedisSettings.from_dsn(shared_redis.url))
    yield pool
    await pool.aclose()


async def pending(sandbox: ThreadedSandbox, count: int) -> list[str]:
    """The ids of the orders waiting for codes, once there are ``count``."""
    found = await anyio.to_thread.run_sync(sandbox.wait_for_pending, count)
    return [o.id for o in found]


async def test_jobs_get_their_codes(queue: ArqRedis, sandbox: ThreadedSandbox) -> None:
    jobs = [await queue.enqueue_job("verify", "telegram", "russia") for _ in range(2)]
    ids = await pending(sandbox, 2)
    codes = {sandbox.deliver_code(i) for i in ids}
    results = [await job.result(timeout=15) for job in jobs if job is not None]
    assert {r["code"] for r in results} == codes
    assert {r["number"] for r in results} == {sandbox.order(i).phone_number for i in ids}


async def test_sigterm_lets_jobs_finish_for_a_while_then_refunds_the_rest(
    queue: ArqRedis, worker: Service, sandbox: ThreadedSandbox
) -> None:
    queued = [await queue.enqueue_job("verify", "telegram", "russia") for _ in range(3)]
    jobs = [job for job in queued if isinstance(job, Job)]
    ids = await pending(sandbox, 3)

    worker.signal(signal.SIGTERM)
    # Within job_completion_wait (2 s) one code comes: that job still finishes.
    code = sandbox.deliver_code(ids[0])
    status, seconds = await anyio.to_thread.run_sync(worker.exited)

    assert status == 0, worker.log()
    assert seconds < 10
    ledger = sandbox.ledger()
    assert {o.id: o.status for o in ledger.orders if o.id in ids} == {
        ids[0]: "RECEIVED",
        ids[1]: "CANCELLED",
        ids[2]: "CANCELLED",
    }
    assert_nothing_left_charged(ledger)
    statuses = {job: await job.status() for job in jobs}
    (finished,) = [job for job, status in statuses.items() if status == JobStatus.complete]
    assert (await finished.result(timeout=5))["code"] == code
    # arq puts a cancelled job back in the queue: it runs again, with a new number.
    assert sorted(statuses.values()) == [JobStatus.complete, JobStatus.queued, JobStatus.queued]
