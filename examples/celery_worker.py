"""Verifications as Celery tasks: one SyncClient per worker process, made after the fork.

Run a worker (``pip install gsim-async 'celery[redis]'``; Redis as the broker)::

    GSIM_API_KEY=... CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
        celery -A celery_worker worker --pool=prefork --concurrency=4

and queue tasks from anywhere::

    from celery_worker import verify, wait_for_code
    verify.delay("telegram", "russia").get()        # {"number": "+7...", "code": "123456"}
    wait_for_code.delay(order.id).get()              # an order bought elsewhere (a web view)

The prefork pool forks its processes from the worker's: a client made before the fork
(at import) is unusable in them, its event loop thread left behind in the parent. So
each pool process makes its own ``SyncClient`` once, in ``worker_process_init``, and
every task it runs shares it; ``worker_process_shutdown`` closes it as the process
exits, giving up waits still running (refunded).

Stopping: SIGTERM is Celery's warm shutdown, which lets running tasks end (each wait
ends with its code or its timeout, ``CODE_TIMEOUT``, then refunds); SIGQUIT (cold
shutdown) ends them at once, each process refunding what it held on its way out.

With ``GSIM_JOURNAL_DIR`` set, each pool process keeps a journal named by its pool slot
(``gsim-<node>-<slot>.db``), not by its pid: when a process dies (the OOM killer, a
segfault), the one the pool starts in its place has the same slot, opens the same
file, and refunds what the dead one owed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from celery.utils.log import current_process_index

import gsim_async

#: Seconds a number waits for its code before it is banned and refunded.
CODE_TIMEOUT = float(os.environ.get("CODE_TIMEOUT", "240"))

broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_worker", broker=broker, backend=os.environ.get("CELERY_RESULT_URL", broker))
# A pool process takes one task at a time: tasks wait minutes for codes, and another
# process may be free meanwhile.
app.conf.worker_prefetch_multiplier = 1

#: This pool process's client (None in the worker's main process).
_gsim: gsim_async.SyncClient | None = None


@worker_process_init.connect
def open_client(sender: str | None = None, **_: Any) -> None:
    """After the fork: this process's own client, its thread and connections its own."""
    global _gsim
    journal = None
    if os.environ.get("GSIM_JOURNAL_DIR"):
        slot = current_process_index() or 0  # 1, 2, ... as Celery's %i: the pool slot
        path = Path(os.environ["GSIM_JOURNAL_DIR"]) / f"gsim-{sender or 'celery'}-{slot}.db"
        # A dead process's task is not coming back for its number: refund at once.
        journal = gsim_async.Journal(path, grace=0)
    client = gsim_async.SyncClient(
        poll_interval=float(os.environ.get("POLL_INTERVAL", "2")), journal=journal
    )
    _gsim = client.__enter__()  # a journal left by this slot's last process is taken over now


@worker_process_shutdown.connect
def close_client(**_: Any) -> None:
    """The process exits: waits still running are given up (refunded), then it closes."""
    if _gsim is not None:
        _gsim.close()


def gsim() -> gsim_async.SyncClient:
    """The client of the pool process running this task."""
    if _gsim is None:
        raise RuntimeError("no gsim client in this process: run the worker with --pool=prefork")
    return _gsim


@app.task
def verify(service: str, country: str, timeout: float | None = None) -> dict[str, Any]:
    """Buy a number and wait for its code; refunded when none comes."""
    with gsim().orders.activation(service, country) as act:
        try:
            code = act.wait_for_code(timeout=timeout or CODE_TIMEOUT)
        except gsim_async.NoCodeError as exc:
            return {"number": act.phone_number, "code": None, "error": str(exc)}
        return {"number": act.phone_number, "code": code}


@app.task
def wait_for_code(order_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Wait for the code of an order bought elsewhere; banned and refunded without one."""
    try:
        code = gsim().orders.wait_for_code(order_id, timeout=timeout or CODE_TIMEOUT)
    except gsim_async.NoCodeError as exc:
        return {"order": order_id, "code": None, "error": str(exc)}
    return {"order": order_id, "code": code}
