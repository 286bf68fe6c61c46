"""A real redis-server for the tests that need one, on a free port in a temporary directory.

The same server the benchmarks start (``benchmarks/_redis.py``): no persistence, so one
stopped and started again on the same port comes back empty. Without the
``redis-server`` binary the tests skip, saying how to get it; with
``GSIM_REQUIRE_REDIS=1`` (CI) they fail instead, so they never silently skip there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from benchmarks._redis import RedisProcess

#: What the tests call it.
RedisServer = RedisProcess


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test (its own port and directory)."""
    if shutil.which("redis-server") is None:
        message = (
            "redis-server is not installed: the fleet's tests need a real Redis "
            "(apt-get install redis-server, or the official redis container image)"
        )
        if os.environ.get("GSIM_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)
    with RedisServer() as server:
        yield server
