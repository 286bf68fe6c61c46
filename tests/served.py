"""A sandbox served from a thread of its own, for tests whose client is in another
thread or another process (``SyncClient``, programs stopped with real signals).

The sandbox's state is read in the sandbox's own loop, through anyio's blocking
portal, so no test touches it from another thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

import gsim_async
from gsim_async.sandbox import Sandbox
from gsim_async.sandbox._records import Ledger, OrderRecord

T = TypeVar("T")

#: The environment of a subprocess: the package imported from where it is here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gsim_async.__file__)))
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
}


def until(condition: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    """Wait for ``condition`` (a safety net against a hang, not a measurement)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


class ThreadedSandbox:
    """A sandbox running in another thread's event loop, and the way to reach it."""

    def __init__(self, portal: BlockingPortal, sandbox: Sandbox) -> None:
        self._portal = portal
        self.sandbox = sandbox
        self.base_url = sandbox.base_url
        self.api_key = sandbox.api_key

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` run in the sandbox's loop."""
        return self._portal.call(func, *args)

    def deliver_code(self, order_id: str, code: str | None = None) -> str:
        return self.call(self.sandbox.deliver_code, order_id, code)

    def order(self, order_id: str) -> OrderRecord:
        return self.call(self.sandbox.order, order_id)

    def ledger(self) -> Ledger:
        return self.call(self.sandbox.ledger)

    def client(self, **options: Any) -> gsim_async.SyncClient:
        """A SyncClient of this sandbox that polls fast and never sleeps between retries."""
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "backoff_base": 0,
            "poll_interval": 0.05,
            "max_retry_after": 1,
            "reconcile_window": 1,
        }
        settings.update(options)
        return gsim_async.SyncClient(self.api_key, **settings)


def serve(log_lines: list[str], **options: Any) -> Iterator[ThreadedSandbox]:
    """A sandbox in a thread of its own; no log line of the test may show its key."""
    with start_blocking_portal("asyncio") as portal:
        sandbox = Sandbox(**options)
        portal.call(sandbox.start)
        try:
            yield ThreadedSandbox(portal, sandbox)
        finally:
            portal.call(sandbox.close)
    assert not [line for line in log_lines if sandbox.api_key in line]
