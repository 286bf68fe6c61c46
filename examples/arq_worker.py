"""Verifications as arq jobs: every job of a worker uses the one client its start-up made.

Run a worker (``pip install gsim-async arq``; Redis for the queue)::

    GSIM_API_KEY=... REDIS_URL=redis://127.0.0.1:6379/0 arq arq_worker.WorkerSettings

and queue jobs from anywhere::

    pool = await arq.create_pool(RedisSettings.from_dsn(REDIS_URL))
    job = await pool.enqueue_job("verify", "telegram", "russia")
    print(await job.result())   # {"number": "+7...", "code": "123456"} or "code": None

``on_startup`` makes one ``gsim_async.Client`` per worker process and keeps it in
``ctx``, where every job finds it; ``on_shutdown`` closes it. With ``GSIM_FLEET_URL``
set (the same Redis may serve), however many workers run on the key make one fleet:
one rate gate, one process polling for every code, exact ownership of purchases.

Stopped (SIGTERM, Ctrl-C), arq stops taking jobs, gives running ones
``job_completion_wait`` seconds to finish, then cancels the rest: a cancelled job
leaves its ``activation()`` block, which refunds the number, and arq runs the job
again later (``max_tries``), with a new number.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

import gsim_async

#: Seconds a number waits for its code before it is banned and refunded.
CODE_TIMEOUT = float(os.environ.get("CODE_TIMEOUT", "240"))


async def startup(ctx: dict[str, Any]) -> None:
    """One client per worker process (in a fleet with ``GSIM_FLEET_URL`` set)."""
    gsim = gsim_async.Client(poll_interval=float(os.environ.get("POLL_INTERVAL", "2")))
    ctx["gsim"] = await gsim.__aenter__()  # an earlier run's journal, if any, is taken over


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the client: refunds under way land first."""
    await ctx["gsim"].aclose()


async def verify(ctx: dict[str, Any], service: str, country: str) -> dict[str, Any]:
    """Buy a number and wait for its code; refunded when none comes."""
    gsim: gsim_async.Client = ctx["gsim"]
    async with gsim.orders.activation(service, country) as act:
        try:
            code = await act.wait_for_code(timeout=CODE_TIMEOUT)
        except gsim_async.NoCodeError as exc:
            return {"number": act.phone_number, "code": None, "error": str(exc)}
        return {"number": act.phone_number, "code": code}


class WorkerSettings:
    """``arq arq_worker.WorkerSettings``."""

    functions = (verify,)
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    # A job outlives its wait for a code, so arq's own timeout never cuts a wait short.
    job_timeout = CODE_TIMEOUT + 60
    # On SIGTERM, jobs whose code comes within this many seconds still finish.
    job_completion_wait = int(os.environ.get("JOB_COMPLETION_WAIT", "5"))
    # `arq --check arq_worker.WorkerSettings` (a liveness probe) fails once the worker
    # has not checked in for this long.
    health_check_interval = 30
