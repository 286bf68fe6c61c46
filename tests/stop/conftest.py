"""Fixtures of the stop-signal tests: a sandbox served from its own thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_server import RedisServer, redis_server
from served import ThreadedSandbox, serve

__all__ = ["RedisServer", "redis_server", "sandbox"]


@pytest.fixture
def sandbox(no_key_in_logs: list[str]) -> Iterator[ThreadedSandbox]:
    """A sandbox in its own thread whose codes arrive only when a test delivers them."""
    yield from serve(no_key_in_logs, seed=11, auto_deliver=False)
