"""Work that must finish even when the task that started it is cancelled.

anyio's shielded cancel scopes do not stop a native ``task.cancel()`` (what
``asyncio.wait_for``, ``asyncio.timeout`` and most asyncio code use), so money-moving
cleanup runs in a task of its own, which the caller awaits through
``asyncio.shield``. The client keeps every such task and waits for them on close.

A stop (``Client.stop()``, a stop signal) may set a *deadline*: every wait for this
work then ends by it, even one that began earlier with a longer limit, so that the
program exits within its grace period. When the server has paused the client past
that deadline, nothing can be sent before it: the waits end at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

log = logging.getLogger("gsim_async")


class Background:
    """The client's set of tasks that outlive their caller's cancellation."""

    def __init__(self, paused_for: Callable[[], float] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._paused_for = paused_for
        #: When every wait for this work ends at the latest (``time.monotonic()``).
        self.deadline: float | None = None
        # Resolved (and replaced) whenever the deadline moves: waits look again.
        self._moved: asyncio.Future[None] | None = None

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

    def hurry(self, seconds: float) -> None:
        """Waits for this work end within ``seconds`` from now at the latest (a stop)."""
        deadline = time.monotonic() + max(seconds, 0.0)
        if self.deadline is not None and self.deadline <= deadline:
            return
        self.deadline = deadline
        moved, self._moved = self._moved, None
        if moved is not None and not moved.done():
            moved.set_result(None)

    def left(self, end: float) -> float:
        """Seconds a wait meant to last until ``end`` may still take (deadline aside)."""
        now = time.monotonic()
        if self.deadline is not None:
            if self._paused_for is not None and self._paused_for() >= self.deadline - now:
                return 0.0  # paused past the deadline: nothing can be sent before it
            end = min(end, self.deadline)
        return end - now

    async def _wait(self, futures: list[asyncio.Future[Any]], timeout: float) -> None:
        """Wait until every one of ``futures`` is done, ``timeout`` s pass or the deadline."""
        pending = [f for f in futures if not f.done()]
        if not pending:
            return
        end = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        # One future to race against the deadline moving: many tasks are awaited at once.
        target: asyncio.Future[Any] = (
            pending[0] if len(pending) == 1 else loop.create_task(asyncio.wait(pending))
        )
        try:
            while not target.done():
                left = self.left(end)
                if left <= 0:
                    return
                if self._moved is None:
                    self._moved = loop.create_future()
                await asyncio.wait(
                    [target, self._moved], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            if target is not pending[0] and not target.done():
                target.cancel()  # the wait only: the tasks it watched go on

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
            await self._wait([task], timeout)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                try:
                    await self._wait([task], timeout)
                except asyncio.CancelledError:
                    log.debug("cleanup left to finish in the background")
            raise
        return task.done()

    async def wait_all(self, tasks: list[asyncio.Future[Any]], timeout: float) -> None:
        """Wait up to ``timeout`` s (and the deadline) for every one of ``tasks``."""
        await self._wait(tasks, timeout)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for background work, e.g. before closing the session.

        Also lets the loop run a few turns first, so that tasks just woken (by a
        watcher closing) can start the cleanup they owe.
        """
        end = time.monotonic() + timeout
        while True:
            for _ in range(5):
                await asyncio.sleep(0)
            if not self._tasks or self.left(end) <= 0:
                return
            await self._wait(list(self._tasks), end - time.monotonic())

    def cancel_all(self) -> None:
        """Cancel every task still running (the client is closing past its deadline)."""
        for task in list(self._tasks):
            task.cancel()
