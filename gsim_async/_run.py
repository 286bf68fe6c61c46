"""``gsim_async.run(main())``: ``asyncio.run`` whose stop signals refund before exit.

``docker stop``, Kubernetes and systemd stop a program with SIGTERM and kill it a
grace period later (10 s, 30 s, 90 s). A plain ``asyncio.run`` program dies at once:
its waits' orders stay charged. Under ``run()``, SIGTERM (and Ctrl-C) stops every
live client (design.md, money rule 9: each wait given up as its ``on_timeout`` says,
or left to the journal or fleet that keeps it), then cancels ``main``, so its
``async with`` blocks close their clients, refunds first, within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

from . import _stop
from . import _validation as v

T = TypeVar("T")

log = logging.getLogger("gsim_async")


def run(
    main: Coroutine[Any, Any, T],
    *,
    debug: bool | None = None,
    grace: float = _stop.DEFAULT_GRACE,
) -> T:
    """Run ``main`` as ``asyncio.run(main)`` does; a stop signal refunds before exit.

    On SIGTERM (``docker stop``, Kubernetes, systemd) or Ctrl-C (SIGINT), every open
    [`Client`][gsim_async.Client] of the process is stopped (``Client.stop()``): each
    wait in progress is given up as its ``on_timeout`` says (banned by default) and
    refunded, and new purchases are refused; then ``main`` is cancelled, so its
    ``async with`` blocks unwind (an ``activation()`` block cancels its order) and
    close their clients, which wait for the refunds. A client with a journal or a
    fleet leaves its waits' orders to it instead, to decide as after a crash (a
    restarted program may take them back with ``orders.recovered()``).

    ``grace`` is the time the signal's sender gives the program before it kills it
    (Docker's default, 10 s; set ``terminationGracePeriodSeconds`` or
    ``TimeoutStopSec`` when yours differs): refunds may take three quarters of it, the
    server's pauses (a 429's ``Retry-After``) included; what has not landed by then is
    reported on stderr (WARNING, with the order ids) and left, to the journal or fleet
    if there is one, and the program exits in time. A second signal stops waiting for
    refunds at once. Clients ``main`` left open are closed (refunds first) before
    ``run()`` returns.

    A handler the program installed is never overridden: SIGTERM is handled only
    where its disposition is the default, SIGINT only where Python's default
    ``KeyboardInterrupt`` handler is in place, and only in the main thread (elsewhere
    ``run()`` is ``asyncio.run()``). Stopped by SIGTERM, ``run()`` raises
    ``SystemExit(143)`` (128 + SIGTERM, the status of a process ended by it; systemd
    needs ``SuccessExitStatus=143`` to call that clean); by Ctrl-C,
    ``KeyboardInterrupt``, as ``asyncio.run()`` does. Otherwise it returns what
    ``main`` returned.
    """
    if not asyncio.iscoroutine(main):
        raise TypeError(f"gsim_async.run() takes a coroutine (main()), got {main!r:.80}")
    try:
        grace = v.positive_seconds("grace", grace)
    except ValueError:
        main.close()
        raise
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        main.close()
        raise RuntimeError("gsim_async.run() cannot be called from a running event loop")

    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        task = loop.create_task(main)
        stopper = _Stopper(loop, task, grace)
        stopper.install()
        try:
            try:
                result = loop.run_until_complete(task)
            except asyncio.CancelledError:
                if stopper.signum is None or not task.cancelled():
                    raise
            finally:
                # Clients main left open: closed here, refunds first, not torn down
                # with the loop's remaining tasks.
                loop.run_until_complete(_close_open(loop))
            if stopper.signum is None or not task.cancelled():
                return result
            if stopper.signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + stopper.signum)
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                stopper.remove()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class _Stopper:
    """The stop signals' handlers of one ``run()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], grace: float):
        self._loop = loop
        self._task = task
        self._grace = grace
        #: The signal that stopped the program, once one came.
        self.signum: int | None = None
        self._installed: list[tuple[int, _stop.Handler]] = []
        # One bound method, so that it is recognised when it is still in place.
        self._handler = self._on_signal

    def install(self) -> None:
        if not _stop.in_main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            if not _stop.is_default(sig):
                continue  # the program's own handler (or SIG_IGN) stays
            previous = signal.getsignal(sig)
            try:
                signal.signal(sig, self._handler)
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter
                continue
            self._installed.append((sig, previous))

    def remove(self) -> None:
        for sig, previous in self._installed:
            # Put back only what we replaced, and only if ours is still in place.
            with contextlib.suppress(ValueError, TypeError):
                if signal.getsignal(sig) == self._handler:
                    signal.signal(sig, previous)
        self._installed.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # In the main thread, between two bytecodes of whatever runs: hand it to the loop.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
            self._loop.call_soon_threadsafe(self._fire, signum)

    def _fire(self, signum: int) -> None:
        if self.signum is not None:
            log.warning("stopping again: not waiting for refunds any more")
            _stop.stop_all(0.0, loop=self._loop)
            return
        self.signum = signum
        _stop.show_warnings()
        name = signal.Signals(signum).name
        log.info("%s: stopping (refunds within %.1f s)", name, _stop.refund_budget(self._grace))
        if not self._task.done():
            self._task.cancel(f"gsim_async.run(): {name}")
        _stop.stop_all(_stop.refund_budget(self._grace), loop=self._loop)


async def _close_open(loop: asyncio.AbstractEventLoop) -> None:
    clients = _stop.open_in(loop)
    if not clients:
        return
    results = await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.warning("closing a client left open failed: %s", result)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does with the tasks left when ``main`` ends."""
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during gsim_async.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


__all__ = ["run"]
