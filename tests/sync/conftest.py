"""Fixtures of the blocking client's tests: a sandbox served from its own thread.

The tests themselves are plain (not async) functions, as the code of a user of
``SyncClient`` is; the sandbox's state is read in the sandbox's own loop, through
anyio's blocking portal, so no test touches it from another thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sync_helpers import ThreadedSandbox, serve

import gsim_async


@pytest.fixture
def sandbox(no_key_in_logs: list[str]) -> Iterator[ThreadedSandbox]:
    """A sandbox in its own thread whose codes arrive only when a test delivers them."""
    yield from serve(no_key_in_logs, seed=7, auto_deliver=False)


@pytest.fixture
def gsim(sandbox: ThreadedSandbox) -> Iterator[gsim_async.SyncClient]:
    """A SyncClient of the sandbox, closed after the test."""
    with sandbox.client() as client:
        yield client
