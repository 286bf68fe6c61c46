"""Verifications as arq jobs, every worker process one member of a gsim fleet.

Run a worker (arq and Redis needed: ``pip install arq 'gsim-async[redis]'``)::

    GSIM_API_KEY=... GSIM_FLEET_URL=redis://127.0.0.1:6379/0 arq arq_worker.WorkerSettings

and queue jobs from anywhere::

    pool = await arq.create_pool(RedisSettings())
    await pool.enqueue_job("verify", "telegram", "russia")

Every worker makes one ``gsim_async.Client`` at start-up and its jobs share it. With the
fleet, however many workers run: one rate gate for the key, one process polling for
every code, and no lost purchase matched to another worker's order. The same Redis can
serve arq and the fleet.
"""

from __future__ import annotations

import os
from typing import Any

import gsim_async
from gsim_async.fleet import RedisFleet

FLEET_URL = os.environ.get("GSIM_FLEET_URL", "redis://127.0.0.1:6379/0")


async def startup(ctx: dict[str, Any]) -> None:
    """One client per worker process, joined to the fleet."""
    ctx["gsim"] = gsim_async.Client(fleet=RedisFleet(FLEET_URL, namespace="arq"))


async def shutdown(ctx: dict[str, Any]) -> None:
    """Refund what is still open, leave the fleet."""
    await ctx["gsim"].aclose()


async def verify(ctx: dict[str, Any], service: str, country: str) -> dict[str, Any]:
    """Buy a number, wait for its code; refunded when none comes."""
    gsim: gsim_async.Client = ctx["gsim"]
    async with gsim.orders.activation(service, country) as act:
        try:
            code = await act.wait_for_code(timeout=ctx.get("code_timeout", 300))
        except gsim_async.NoCodeError as exc:
            return {"number": act.phone_number, "code": None, "error": str(exc)}
        return {"number": act.phone_number, "code": code}


try:  # arq is the worker's dependency, not the library's
    from arq.connections import RedisSettings
except ImportError:  # pragma: no cover - the functions above work without it
    pass
else:

    class WorkerSettings:
        """``arq arq_worker.WorkerSettings``."""

        functions = (verify,)
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = RedisSettings.from_dsn(FLEET_URL)
