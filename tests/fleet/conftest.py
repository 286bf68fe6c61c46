"""The fleet's tests use the ``redis_server`` fixture of ``tests/redis_server.py``."""

from __future__ import annotations

from redis_server import RedisServer, redis_server

__all__ = ["RedisServer", "redis_server"]
