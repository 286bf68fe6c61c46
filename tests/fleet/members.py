"""Fleet members in processes of their own (``fleet_worker.py``), for the fleet's tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Protocol

from processes import Worker

from gsim_async.sandbox import Sandbox

WORKER = Path(__file__).with_name("fleet_worker.py")


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


async def start(
    sandbox: Sandbox,
    redis: str | HasUrl,
    namespace: str,
    scenario: str,
    env: dict[str, str] | None = None,
    **config: Any,
) -> Worker:
    """A member running ``scenario`` on ``redis`` (a URL, or a server with one), once ready."""
    settings = {
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "redis_url": redis if isinstance(redis, str) else redis.url,
        "namespace": namespace,
        "scenario": scenario,
        **config,
    }
    environment = {"PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    worker = await Worker.start(WORKER, settings, environment)
    await worker.next("ready")
    return worker
