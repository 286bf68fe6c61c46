"""examples/celery_worker.py run as its users run it: ``celery -A celery_worker worker``.

A real Celery worker (prefork pool, two processes) takes tasks from a real redis-server
(broker and result backend). Its processes keep journals in a directory of the test.
One worker serves the module's tests until a test stops it; the next test that needs
one starts another.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from services import (
    Service,
    ThreadedSandbox,
    assert_nothing_left_charged,
    python,
    threaded_sandbox,
    until,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops processes with signals")

celery = pytest.importorskip("celery")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with threaded_sandbox(seed=27) as sb:
        yield sb


def celery_worker(sandbox: ThreadedSandbox, redis_url: str, *, journals: bool) -> Service:
    """``celery -A celery_worker worker``, two prefork processes (with journals, or none)."""
    service = Service(
        python("-m", "celery", "-A", "celery_worker", "worker", "--pool=prefork",
               "--concurrency=2", "--loglevel=INFO", "--hostname=verifier@test",
               "--without-gossip", "--without-mingle", "--without-heartbeat"),
        env={
            **sandbox.env(),
            "CELERY_BROKER_URL": redis_url,
            "POLL_INTERVAL": "0.1",
            "CODE_TIMEOUT": "60",
        },
        ready="verifier@test ready.",
        name="celery-worker",
    )  # fmt: skip
    if journals:
        service.env["GSIM_JOURNAL_DIR"] = str(service.directory)
    return service


@pytest.fixture(scope="module")
def worker(sandbox: ThreadedSandbox, shared_redis: RedisServer) -> Iterator[Service]:
    """A worker whose processes keep journals: one for the module's tests, until stopped."""
    service = celery_worker(sandbox, shared_redis.url, journals=True)
    yield service
    service.close()


@pytest.fixture(scope="module")
def tasks(shared_redis: RedisServer) -> Iterator[object]:
    """The example's module, as the code that queues its tasks imports it."""
    import celery_worker

    celery_worker.app.conf.update(broker_url=shared_redis.url, result_backend=shared_redis.url)
    yield celery_worker
    # Results left for the garbage collector unsubscribe from Redis as they go: while it runs.
    gc.collect()
    celery_worker.app.close()


def test_tasks_get_their_codes(tasks: object, worker: Service, sandbox: ThreadedSandbox) -> None:
    worker.running()
    import celery_worker as t

    bought = t.verify.delay("telegram", "russia")
    (order,) = sandbox.wait_for_pending(1)
    elsewhere = sandbox.call(lambda: sandbox.sandbox.place_order("whatsapp", "india"))
    waited = t.wait_for_code.delay(elsewhere.id)
    codes = [sandbox.deliver_code(order.id), sandbox.deliver_code(elsewhere.id)]
    assert bought.get(timeout=15) == {"number": order.phone_number, "code": codes[0]}
    assert waited.get(timeout=15) == {"order": elsewhere.id, "code": codes[1]}


def pool_processes(worker: Service) -> list[int]:
    """The worker's prefork pool processes (its children)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_pool_process_is_replaced_and_its_replacement_refunds_the_number(
    tasks: object, worker: Service, sandbox: ThreadedSandbox
) -> None:
    worker.running()
    import celery_worker as t

    result = t.verify.delay("telegram", "russia")
    (order,) = sandbox.wait_for_pending(1)
    dead = pool_processes(worker)
    assert len(dead) == 2
    for pid in dead:  # the OOM killer, a segfault: no cleanup runs
        os.kill(pid, signal.SIGKILL)

    # The pool starts a process in each slot; the one in the dead one's slot opens its
    # journal, and refunds the number its task was waiting on.
    until(lambda: sandbox.order(order.id).status != "PENDING", "the refund")
    assert sandbox.order(order.id).status == "CANCELLED"
    assert sandbox.ledger().refunds_by_order[order.id] == order.price
    # Both slots are filled again, by new processes.
    until(lambda: len(set(pool_processes(worker)) - set(dead)) == 2, "the pool refilled")
    with pytest.raises(celery.exceptions.WorkerLostError):
        result.get(timeout=15)


def test_warm_shutdown_lets_running_tasks_end(
    tasks: object, worker: Service, sandbox: ThreadedSandbox
) -> None:
    worker.running()
    import celery_worker as t

    results = [t.verify.delay("telegram", "russia", timeout=3) for _ in range(2)]
    orders = sandbox.wait_for_pending(2)

    worker.signal(signal.SIGTERM)
    code = sandbox.deliver_code(orders[0].id)  # one code comes; the other wait times out
    status, seconds = worker.exited()

    assert status == 0, worker.log()
    assert seconds < 10
    outcomes = {r.get(timeout=5)["number"]: r.get()["code"] for r in results}
    assert outcomes == {orders[0].phone_number: code, orders[1].phone_number: None}
    ledger = sandbox.ledger()
    assert ledger.orders_by_status.get("PENDING") is None
    assert sandbox.order(orders[1].id).status == "BANNED"
    assert_nothing_left_charged(ledger)


def test_cold_shutdown_gives_up_waits_still_running(
    tasks: object, sandbox: ThreadedSandbox, shared_redis: RedisServer
) -> None:
    # No journal: with one, a stop leaves the waits' orders to it, to be decided by the
    # next process in the same slot as after a crash (see the journal test above).
    worker = celery_worker(sandbox, shared_redis.url, journals=False)
    try:
        worker.running()
        import celery_worker as t

        t.verify.delay("telegram", "russia", timeout=60)
        (bought,) = sandbox.wait_for_pending(1)
        elsewhere = sandbox.call(lambda: sandbox.sandbox.place_order("whatsapp", "india"))
        route = "GET /api/v1/orders/{id}"
        polled = sandbox.call(lambda: sandbox.sandbox.stats.count(route))
        t.wait_for_code.delay(elsewhere.id, timeout=60)
        until(
            lambda: sandbox.call(lambda: sandbox.sandbox.stats.count(route)) > polled + 2, "a wait"
        )

        # Cold shutdown: running tasks are ended at once; each process closes its client.
        status, seconds = worker.stop(signal.SIGQUIT)

        assert status == 0, worker.log()
        assert seconds < 10
        # The activation's block cancels its number; the plain wait bans it (on_timeout).
        assert sandbox.order(bought.id).status == "CANCELLED"
        assert sandbox.order(elsewhere.id).status == "BANNED"
        assert_nothing_left_charged(sandbox.ledger())
    finally:
        worker.close()
