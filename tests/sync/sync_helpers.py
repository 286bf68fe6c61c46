"""Helpers of the blocking client's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from served import ENV, ROOT, ThreadedSandbox, serve, until

import gsim_async

__all__ = ["ENV", "ROOT", "ThreadedSandbox", "meanwhile", "serve", "until", "when_waiting"]


@contextmanager
def meanwhile(action: Callable[[], object]) -> Iterator[None]:
    """Run ``action`` in another thread while the block runs; its error is re-raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    thread.join(10)
    if errors:
        raise errors[0]


def when_waiting(gsim: gsim_async.SyncClient, count: int, then: Callable[[], object]) -> None:
    """Once ``count`` orders have a waiter, ``then()``: the waits are surely registered."""
    until(lambda: gsim.orders.waiting >= count, f"{count} waiting")
    then()
