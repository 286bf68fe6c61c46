"""Work that outlives the request that started it.

A purchase that takes a while, or a request a proxy timed out, goes on
server-side after the client has stopped listening, as on a real server. Each
runs in a task of its own held here, so a cancelled handler cannot stop it and
closing the sandbox can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._errors import ApiError

T = TypeVar("T")
log = logging.getLogger("gsim_async.sandbox")


class Background:
    """The tasks still running on behalf of requests."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``work``; the task is kept until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        # Retrieved here, so an answer nobody waits for any more is not reported as lost.
        exc = task.exception()
        if exc is not None and not isinstance(exc, ApiError):
            log.error("sandbox background work failed", exc_info=exc)

    async def aclose(self) -> None:
        """Cancel whatever is still running and wait for it to stop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
