"""The fleet's tests use the Redis fixtures of ``tests/redis_server.py``."""

from __future__ import annotations

from redis_server import (
    RedisServer,
    TLSRedis,
    redis_cluster,
    redis_server,
    sentinel_group,
    tls_redis,
)

__all__ = [
    "RedisServer",
    "TLSRedis",
    "redis_cluster",
    "redis_server",
    "sentinel_group",
    "tls_redis",
]
