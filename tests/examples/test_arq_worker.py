"""examples/arq_worker.py run as its users run it: ``arq arq_worker.WorkerSettings``.

A real arq worker process takes jobs from a real redis-server, which also serves as
the worker's gsim fleet (``GSIM_FLEET_URL``). One worker serves the module's tests; the
last one stops it with SIGTERM while jobs wait for codes.

arq pins redis-py below 6, the test environment has redis-py 8: the worker, and what a
caller does with arq (queue jobs, read their results and statuses), run on the python of
an environment of arq's own (arq_env.py), as in an arq user's deployment. This process
never imports arq.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest
import redis
from arq_env import ArqEnv, ArqQueue
from redis_server import RedisServer
from services import Service, ThreadedSandbox, assert_nothing_left_charged, threaded_sandbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops a process with SIGTERM")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with threaded_sandbox(seed=25) as sb:
        yield sb


@pytest.fixture(scope="module")
def worker(
    sandbox: ThreadedSandbox, shared_redis: RedisServer, arq_env: ArqEnv
) -> Iterator[Service]:
    probe = redis.Redis.from_url(shared_redis.url)
    service = Service(
        # arq handles SIGTERM and SIGINT itself (loop signal handlers), whatever the
        # dispositions it inherits (nohup, a background job).
        [str(arq_env.python), "-m", "arq", "arq_worker.WorkerSettings"],
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
        pythonpath=arq_env.pythonpath,
    )
    yield service
    service.close()
    probe.close()


@pytest.fixture
def queue(worker: Service, shared_redis: RedisServer, arq_env: ArqEnv) -> ArqQueue:
    worker.running()
    return ArqQueue(arq_env, shared_redis.url)


def pending(sandbox: ThreadedSandbox, count: int) -> list[str]:
    """The ids of the orders waiting for codes, once there are ``count``."""
    return [o.id for o in sandbox.wait_for_pending(count)]


def test_jobs_get_their_codes(queue: ArqQueue, sandbox: ThreadedSandbox) -> None:
    jobs = queue.enqueue("verify", "telegram", "russia", count=2)
    ids = pending(sandbox, 2)
    codes = {sandbox.deliver_code(i) for i in ids}
    results = queue.results(jobs, timeout=15).values()
    assert {r["code"] for r in results} == codes
    assert {r["number"] for r in results} == {sandbox.order(i).phone_number for i in ids}


def test_sigterm_lets_jobs_finish_for_a_while_then_refunds_the_rest(
    queue: ArqQueue, worker: Service, sandbox: ThreadedSandbox
) -> None:
    jobs = queue.enqueue("verify", "telegram", "russia", count=3)
    ids = pending(sandbox, 3)

    worker.signal(signal.SIGTERM)
    # Within job_completion_wait (2 s) one code comes: that job still finishes.
    code = sandbox.deliver_code(ids[0])
    status, seconds = worker.exited()

    assert status == 0, worker.log()
    assert seconds < 10
    ledger = sandbox.ledger()
    assert {o.id: o.status for o in ledger.orders if o.id in ids} == {
        ids[0]: "RECEIVED",
        ids[1]: "CANCELLED",
        ids[2]: "CANCELLED",
    }
    assert_nothing_left_charged(ledger)
    # JobStatus values, read by arq in the arq environment.
    statuses = queue.statuses(jobs)
    (finished,) = [job for job, status in statuses.items() if status == "complete"]
    assert queue.results([finished], timeout=5)[finished]["code"] == code
    # arq puts a cancelled job back in the queue: it runs again, with a new number.
    assert sorted(statuses.values()) == ["complete", "queued", "queued"]
