"""The examples are scripts, not a package: make them importable by their file names."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Beside tests/, whether gsim_async is imported from this checkout or an installed wheel.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from arq_env import arq_env  # noqa: E402  (arq's tests run in an environment of its own)
from redis_server import RedisServer, redis_server  # noqa: E402  (the fixture, for the arq example)

__all__ = ["arq_env", "redis_server", "shared_redis"]


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """A redis-server for a whole module (a queue's broker, a fleet's Redis)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: the task queues' recipes need a real Redis"
        if os.environ.get("GSIM_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)
    with RedisServer() as server:
        yield server
