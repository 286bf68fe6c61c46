"""Stopping: the live clients of this process, and the stop signals that stop them.

A *stop* gives every wait of a client up as its ``on_timeout`` says and refunds, or,
when a journal or a fleet keeps what the client owes, ends the waits and leaves their
orders to it (design.md, money rule 9; ``Client.stop()``). This module keeps every
live ``Client`` (weakly) so that a stop signal can reach all of them, whichever event
loop or thread each lives in, and holds the one SIGTERM handler ``SyncClient``
installs on its own.

Whatever handles a signal never overrides one the program installed: it is set only
where the disposition is still the default (``SIG_DFL``; Python's own
``default_int_handler`` for SIGINT), only from the main thread, and put back only if
it is still the one in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("gsim_async")

#: The grace period a stop signal usually comes with (Docker's default; Kubernetes
#: gives 30 s, systemd 90 s): what a program is assumed to have when none is said.
DEFAULT_GRACE = 10.0
#: The share of the grace refunds may take; the rest is for closing and exiting.
REFUND_SHARE = 0.75

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Stoppable(Protocol):
    """What a stop needs of a client."""

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the client lives in (``None``: never used)."""

    def _stop_now(self, timeout: float | None) -> None:
        """Stop, from the client's own loop."""

    async def aclose(self, *, timeout: float | None = None) -> None:
        """Close the client (refunds first)."""


#: Every live client of this process (weakly: one collected is gone).
_live: weakref.WeakSet[Stoppable] = weakref.WeakSet()


def register(client: Stoppable) -> None:
    """Count ``client`` among the live clients a stop signal stops."""
    _live.add(client)


def refund_budget(grace: float) -> float:
    """The seconds refunds may take after a stop signal with ``grace`` seconds to exit."""
    return grace * REFUND_SHARE


def stop_soon(client: Stoppable, timeout: float | None) -> None:
    """Stop ``client`` from any thread, a signal handler included: in its loop, soon."""
    loop = client._loop
    if loop is None:
        client._stop_now(timeout)  # never used: no wait to give up, no task to start
        return
    with contextlib.suppress(RuntimeError):  # its loop is closed: nothing is left
        loop.call_soon_threadsafe(client._stop_now, timeout)


def stop_all(timeout: float | None, *, loop: asyncio.AbstractEventLoop | None = None) -> int:
    """Stop every live client (from ``loop``'s own callback: its clients at once).

    Returns how many clients were stopped.
    """
    count = 0
    for client in list(_live):
        if client.closed:
            continue
        if loop is not None and client._loop is loop:
            client._stop_now(timeout)
        else:
            stop_soon(client, timeout)
        count += 1
    return count


def open_in(loop: asyncio.AbstractEventLoop) -> list[Stoppable]:
    """The clients of ``loop`` not closed yet."""
    return [c for c in list(_live) if c._loop is loop and not c.closed]


def is_default(signum: int) -> bool:
    """Whether ``signum`` still has the disposition nobody chose (ours may replace it)."""
    current = signal.getsignal(signum)
    if signum == signal.SIGINT:
        return current is signal.default_int_handler
    return current == signal.SIG_DFL


def in_main_thread() -> bool:
    """Whether this is the main thread (the only one that may set signal handlers)."""
    return threading.current_thread() is threading.main_thread()


def show_warnings() -> None:
    """Let the SDK's warnings (a stop's report of what is left) reach stderr.

    The library is silent by default; a program stopping with money still owed must
    say so. When the application configured no logging at all, a stderr handler for
    WARNING and above is added to the ``gsim_async`` logger.
    """
    if any(not isinstance(h, logging.NullHandler) for h in log.handlers):
        return
    if logging.getLogger().handlers:
        return  # the application configured logging: it decides
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("gsim_async: %(message)s"))
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.WARNING:
        log.setLevel(logging.WARNING)


# -- SyncClient's SIGTERM handler ---------------------------------------------------------

_sync_lock = threading.RLock()  # a collected client may release it, mid-hold
_sync_handler: Callable[[int, FrameType | None], None] | None = None
_sync_users = 0
_sync_stopping = False
#: Set while the main thread closes a SyncClient: a SIGTERM then waits for the close.
_closing = threading.local()


def hold_sync_handler() -> bool:
    """A ``SyncClient`` opens: SIGTERM stops it, unless the program chose otherwise.

    Installed only from the main thread and only where SIGTERM has its default
    disposition (or this handler already); returns whether this client counts on it
    (``release_sync_handler()`` when it closes).
    """
    global _sync_handler, _sync_users
    if sys.platform == "win32" or not in_main_thread():
        return False
    with _sync_lock:
        current = signal.getsignal(signal.SIGTERM)
        if _sync_handler is not None and current is _sync_handler:
            _sync_users += 1
            return True
        if current != signal.SIG_DFL:
            return False  # the program's own (or SIG_IGN): never overridden
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main interpreter's main thread after all
            return False
        _sync_handler = _on_sigterm
        _sync_users = 1
        return True


def release_sync_handler() -> None:
    """A ``SyncClient`` that held the handler closed; the last one puts SIG_DFL back."""
    global _sync_handler, _sync_users
    with _sync_lock:
        _sync_users = max(_sync_users - 1, 0)
        if _sync_users or _sync_handler is None:
            return
        with contextlib.suppress(ValueError):  # not the main thread: left in place
            if signal.getsignal(signal.SIGTERM) is _sync_handler:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _sync_handler = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM with SyncClients open: stop them all, then leave as ``SystemExit``.

    ``SystemExit(143)`` unwinds the main thread: ``with`` blocks close their clients
    (refunds first, within the grace) and the interpreter's exit closes the rest. A
    second SIGTERM stops waiting for refunds.
    """
    global _sync_stopping
    if _sync_stopping:
        stop_all(0.0)
        return
    if not any(not c.closed for c in list(_live)):
        # Nothing of ours is open any more: the default, as if never installed.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _sync_stopping = True
    show_warnings()
    stop_all(refund_budget(DEFAULT_GRACE))
    if getattr(_closing, "depth", 0):
        _closing.exit = 128 + signum  # raised once the close under way is done
        return
    raise SystemExit(128 + signum)


def _forked() -> None:
    """In a forked child: none of the parent's stop-signal state is the child's.

    A fork (multiprocessing's fork start method, a prefork server) copies the live
    clients, whose loop threads stayed in the parent, and the SIGTERM handler the
    parent's SyncClients installed. Left as copied, a SIGTERM to the child would
    "stop" the parent's clients through a loop no thread runs here and leave with
    ``SystemExit(143)`` instead of ending the child as a plain process, and a
    SyncClient made in the child would count on top of the parent's users, so its
    close would never put the default back. The child starts afresh: no live
    client, no SyncClient user, SIGTERM at its default where it was ours (only
    then: a handler the program installed is its own and stays).
    """
    global _sync_lock, _sync_handler, _sync_users, _sync_stopping
    _live.clear()
    _sync_lock = threading.RLock()  # a thread of the parent may have held it
    _sync_users = 0
    _sync_stopping = False
    _sync_handler = None
    with contextlib.suppress(ValueError):  # not the main interpreter: nothing to undo
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


@contextlib.contextmanager
def closing() -> Iterator[None]:
    """Around a close in this thread: a SIGTERM meanwhile lets it finish first."""
    _closing.depth = getattr(_closing, "depth", 0) + 1
    try:
        yield
    finally:
        _closing.depth -= 1
        status = getattr(_closing, "exit", None)
        if status is not None and not _closing.depth:
            _closing.exit = None
            raise SystemExit(status)


__all__ = [
    "DEFAULT_GRACE",
    "Stoppable",
    "closing",
    "hold_sync_handler",
    "in_main_thread",
    "is_default",
    "open_in",
    "refund_budget",
    "register",
    "release_sync_handler",
    "show_warnings",
    "stop_all",
    "stop_soon",
]
