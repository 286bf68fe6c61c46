"""The engine under ``SyncClient``: one event loop in one thread, and what Ctrl-C means
for a call blocked on it.

anyio's blocking portal runs the loop (started, the ``Client`` built in it, stopped);
every call of a ``SyncClient`` runs as a task of that loop while the calling thread
waits, so any number of threads share one ``Client`` (one session, one rate gate, one
watcher), and a thread that runs an event loop of its own (a notebook) can call too.

Ctrl-C (``KeyboardInterrupt``) only ever lands in the main thread, in the Python code
waiting here. What happens then is the call's choice (``Interrupt``); whatever it
is, a *second* Ctrl-C stops waiting at once. Work left behind goes on in the loop, and
``close()`` (or the interpreter's exit) waits for it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import logging
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from .. import _stop
from .._exceptions import ClientClosedError

if TYPE_CHECKING:
    from .._client import Client

T = TypeVar("T")

log = logging.getLogger("gsim_async")

#: What a call does with a Ctrl-C:
#:
#: * ``cancel``: cancel its task, as ``task.cancel()`` would, and wait for the task to
#:   end (the async code's cleanup, e.g. a refund, runs shielded meanwhile);
#: * ``finish``: let the task end (a purchase on the wire), then ``undo`` its result;
#: * ``abandon``: stop waiting at once; the task goes on (already cleaning up).
Interrupt = Literal["cancel", "finish", "abandon"]

#: Seconds between a blocked caller's looks at the loop thread: a thread that died
#: is noticed, and Ctrl-C lands where lock waits cannot be interrupted (Windows).
_TICK = 0.25

#: What a call in a forked child says (the client was made before the fork).
_FORKED = (
    "this gsim SyncClient was made in another process (before a fork): its event loop "
    "thread stayed there. Make one client per process after the fork (Celery: in a "
    "worker_process_init handler; gunicorn: in post_fork)"
)

_numbers = itertools.count(1)
#: Runners not closed yet (weakly), closed at the interpreter's exit.
_open: weakref.WeakSet[Runner] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hooked = False


class Runner:
    """One ``Client`` living in its own event loop thread, and the calls made into it."""

    def __init__(self, make: Callable[[], Client]) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()

        # Neither closure may refer to the runner: an unclosed one must be collectable.
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend="asyncio")
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                raise

        # Not start_blocking_portal(): its context manager must be left by a thread that
        # can wait for the loop to end, which neither a finalizer nor the interpreter's
        # exit can. A daemon thread never holds up the exit; atexit closes what is open.
        self._thread = threading.Thread(target=run, name=f"gsim-sync-{next(_numbers)}", daemon=True)
        self._thread.start()
        self._portal = ready.result()
        self._loop: asyncio.AbstractEventLoop = self._portal.call(asyncio.get_running_loop)
        self._ident = self._thread.ident
        # A fork copies this object but not its loop thread: the copy must not use it.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stopped = False
        self._insisted = False
        self._sigterm = False
        self.closed = False
        try:
            # Built in its loop: whatever it binds to a loop binds to this one.
            self.client: Client = self._portal.call(make)
        except BaseException:
            self.closed = True
            self._stop(wait=True)
            raise
        _hook_exit()
        _open.add(self)
        # SIGTERM stops it (refunds before exit), unless the program handles SIGTERM.
        self._sigterm = _stop.hold_sync_handler()

    # -- calls ----------------------------------------------------------------------------

    def call(
        self,
        start: Callable[[], Awaitable[T]],
        *,
        interrupt: Interrupt = "cancel",
        undo: Callable[[T], Awaitable[object]] | None = None,
    ) -> T:
        """Run ``start()`` in the loop and return its result, blocking this thread."""
        if os.getpid() != self._pid:
            raise ClientClosedError(_FORKED)
        if threading.get_ident() == self._ident:
            raise RuntimeError(
                "a SyncClient cannot be called from its own event loop thread (from a hook "
                "such as on_order_update or on_retry): the call would wait for itself"
            )
        if self._stopped:
            raise ClientClosedError("this gsim SyncClient is closed; create a new one")
        state = _Call()
        coro = _run(start, state)
        try:
            # One hand-over to the loop and one back; the portal's start_task_soon takes
            # two each way (it waits for the task to be spawned): 3x the CPU per call.
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:
            coro.close()
            raise ClientClosedError("this gsim SyncClient is closed; create a new one") from None
        try:
            self._wait(future)
        except KeyboardInterrupt:
            self._interrupted(future, state, interrupt, undo)
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ClientClosedError("the gsim SyncClient was closed during the call") from None

    def soon(self, start: Callable[[], Awaitable[object]]) -> None:
        """Start ``start()`` in the loop without waiting (from any thread, a finalizer too)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is left
            self._loop.call_soon_threadsafe(_spawn, start)

    def _wait(self, future: concurrent.futures.Future[T]) -> None:
        while True:
            try:
                future.exception(_TICK)  # returns the call's own error, never raises it
            except concurrent.futures.TimeoutError:
                if not self._thread.is_alive():
                    raise ClientClosedError(
                        "the gsim SyncClient's event loop thread has ended"
                    ) from None
            except concurrent.futures.CancelledError:
                return
            else:
                return

    def _wait_ended(self, state: _Call) -> None:
        while not state.ended.wait(_TICK):
            if not self._thread.is_alive():
                return

    def _interrupted(
        self,
        future: concurrent.futures.Future[T],
        state: _Call,
        interrupt: Interrupt,
        undo: Callable[[T], Awaitable[object]] | None,
    ) -> None:
        """After a first Ctrl-C: what the call asked for; a second one returns at once."""
        if interrupt == "abandon":
            self._insist()
            return
        if interrupt == "cancel":
            self._cancel(state)
        try:
            self._wait_ended(state)
        except KeyboardInterrupt:
            if interrupt == "finish":
                self._cancel(state)  # its own cancellation refunds it, in the background
            self._insist()
            raise
        if interrupt != "finish" or undo is None or future.cancelled():
            return
        try:
            result = future.result()
        except BaseException:
            return  # it failed: nothing to undo
        try:
            self.call(lambda: undo(result), interrupt="abandon")
        except Exception as exc:  # the interruption is what the caller must see
            log.warning("could not undo an interrupted call: %s", exc)

    def _cancel(self, state: _Call) -> None:
        """``task.cancel()`` for the call's task, from its loop: the async code's own
        cleanup runs, and the task is known to have ended once ``state.ended`` is set
        (a task cancelled before its first step would never run a ``finally``)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(state.cancel)

    @property
    def insisted(self) -> bool:
        """Whether Ctrl-C was pressed twice: leaving on it waits for nothing."""
        return self._insisted

    def _insist(self) -> None:
        """A second Ctrl-C: from now on, leaving on it waits for nothing."""
        self._insisted = True
        log.warning(
            "interrupted again: not waiting for refunds under way (orders not refunded "
            "expire and are refunded by the API)"
        )

    # -- closing --------------------------------------------------------------------------

    def close(self, *, interrupted: bool = False, timeout: float | None = None) -> None:
        """Close the client (refunds first, as ``aclose()``), then stop the loop.

        A Ctrl-C while refunds are awaited keeps waiting, a second one stops; with
        ``interrupted`` (already leaving on a Ctrl-C) the first one stops. Once a
        second Ctrl-C was pressed, nothing is waited for any more.
        """
        if os.getpid() != self._pid:
            return  # a forked copy: the client and its refunds are the parent's
        with self._lock:
            if self.closed:
                return
            self.closed = True
            _open.discard(self)
            try:
                if self._insisted:
                    # The loop goes on (a daemon thread) while the program unwinds.
                    return
                # A SIGTERM meanwhile lets this close (and its refunds) finish first.
                with _stop.closing():
                    self._close(interrupted, timeout)
            finally:
                if self._sigterm:
                    self._sigterm = False
                    _stop.release_sync_handler()

    def _close(self, interrupted: bool, timeout: float | None) -> None:
        try:
            self.call(
                lambda: self.client.aclose(timeout=timeout),
                interrupt="abandon" if interrupted else "finish",
            )
        except KeyboardInterrupt:
            if self.client.closed:
                self._stop(wait=True)
            # Otherwise the loop is left running: the refunds go on while the
            # program unwinds, and end with it (the thread is a daemon).
            raise
        except ClientClosedError:
            pass  # the loop is gone already
        self._stop(wait=True)

    def _stop(self, *, wait: bool) -> None:
        self._stopped = True
        portal = self._portal
        try:
            # Calls still blocked in other threads end with ClientClosedError.
            stopping = portal.start_task_soon(portal.stop, True)
        except RuntimeError:
            return
        if wait:
            with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):
                stopping.result()
            self._thread.join()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "closed", True) or sys.is_finalizing():
            return
        if os.getpid() != self._pid:
            return  # a forked copy: the client is the parent's
        if self._sigterm:
            self._sigterm = False
            _stop.release_sync_handler()
        # Possibly in the loop's own thread (a garbage collection there): never block.
        client, portal = self.client, self._portal
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(_close_later, client, portal)
        _warn(
            "gsim SyncClient was not closed; use 'with SyncClient(...)' or 'client.close()'",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )


class _Call:
    """One call's task, as its loop sees it."""

    __slots__ = ("cancelled", "ended", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[object] | None = None
        self.cancelled = False
        self.ended = threading.Event()

    def cancel(self) -> None:
        """In the loop: cancel the task, or have it cancel itself as it starts."""
        if self.task is None:
            self.cancelled = True
        else:
            self.task.cancel()


async def _run(start: Callable[[], Awaitable[T]], state: _Call) -> T:
    try:
        if state.cancelled:
            raise asyncio.CancelledError
        state.task = asyncio.current_task()
        return await start()
    finally:
        state.ended.set()


#: Tasks started by ``Runner.soon()``, kept until they end.
_soon: set[asyncio.Task[object]] = set()


def _spawn(start: Callable[[], Awaitable[object]]) -> None:
    async def run() -> object:
        return await start()

    task = asyncio.get_running_loop().create_task(run())
    _soon.add(task)
    task.add_done_callback(_soon.discard)


def _close_later(client: Client, portal: BlockingPortal) -> None:
    async def close() -> None:
        try:
            await client.aclose()
        finally:
            await portal.stop(cancel_remaining=True)

    _spawn(close)


def _hook_exit() -> None:
    global _exit_hooked
    with _exit_hook:
        if not _exit_hooked:
            atexit.register(_close_all)
            _exit_hooked = True


def _close_all() -> None:
    """At exit: close every SyncClient left open, so its refunds are not lost."""
    for runner in list(_open):
        try:
            runner.close()
        except Exception as exc:
            log.warning("closing a SyncClient at exit failed: %s", exc)


__all__ = ["Interrupt", "Runner"]
