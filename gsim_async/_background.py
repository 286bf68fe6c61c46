"""Work that must finish even when the task that started it is cancelled.

anyio's shielded cancel scopes do not stop a native ``task.cancel()`` (what
``asyncio.wait_for``, ``asyncio.timeout`` and most asyncio code use), so money-moving
cleanup runs in a task of its own, which the caller awaits through
``asyncio.shield``. The client keeps every such task and waits for them on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

log = logging.getLogger("gsim_async")


class Background:
    """The client's set of tasks that outlive their caller's cancellation."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``coro`` in its own task, kept alive until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Callers normally consume the result; this only catches the orphaned case.
            task.exception()

    async def shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion even if the caller is cancelled (see shielded_wait)."""
        return await self.shielded_wait(self.spawn(coro))

    async def shielded_wait(self, task: asyncio.Future[T]) -> T:
        """The result of ``task``, which a cancelled caller still waits for.

        A cancelled caller keeps waiting (as in a shielded scope) and then re-raises its
        cancellation; cancelled a second time, it stops waiting and the work finishes in
        the background.
        """
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                try:
                    await asyncio.wait([task])
                except asyncio.CancelledError:
                    log.debug("cleanup left to finish in the background")
            raise

    async def wait_for(self, task: asyncio.Future[Any], timeout: float) -> bool:
        """Wait up to ``timeout`` s for ``task`` (shielded, as above); whether it is done."""
        try:
            await asyncio.wait([task], timeout=timeout)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                try:
                    await asyncio.wait([task], timeout=timeout)
                except asyncio.CancelledError:
                    log.debug("cleanup left to finish in the background")
            raise
        return task.done()

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for background work, e.g. before closing the session.

        Also lets the loop run a few turns first, so that tasks just woken (by a
        watcher closing) can start the cleanup they owe.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for _ in range(5):
                await asyncio.sleep(0)
            left = deadline - asyncio.get_running_loop().time()
            if not self._tasks or left <= 0:
                return
            await asyncio.wait(list(self._tasks), timeout=left)

    def cancel_all(self) -> None:
        """Cancel every task still running (the client is closing past its deadline)."""
        for task in list(self._tasks):
            task.cancel()
