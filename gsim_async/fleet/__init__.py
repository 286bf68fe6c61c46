"""Fleets: every process on one API key acting as one client, through Redis.

::

    from gsim_async import Client
    from gsim_async.fleet import RedisFleet

    async with Client(fleet=RedisFleet("redis://127.0.0.1:6379/0")) as gsim:
        ...  # the same API; every process with the same key and fleet cooperates

What is shared (docs/guides/fleets.md): one rate gate per API key (the limit, a 429's pause,
what was learnt of the limit), exact ownership of purchases and orders (so a lost
purchase is matched exactly and ``cancel_stale()`` never touches a live member's
order), and one watcher: a leader polls for every order any member waits on and hands
each result to its waiter. When Redis is unreachable, members fall back to their own
pacing and watching, and rejoin when it is back; a Redis the fleet cannot use when the
client opens raises ``gsim_async.FleetError`` instead. Redis may be one server, a primary
managed by Sentinels, a Cluster, or a ready ``redis.asyncio`` client (``RedisFleet``).
Needs ``pip install 'gsim-async[redis]'``.

``await RedisFleet(url).status()`` (``gsim fleet status``) reads what the fleet looks
like now, without joining it: a ``FleetStatus``.
"""

from __future__ import annotations

from ._fleet import RedisFleet
from ._status import (
    FleetStatus,
    GateStatus,
    LeaderStatus,
    MemberState,
    MemberStatus,
    Obligations,
    TakeOver,
    Throttle,
)

__all__ = [
    "FleetStatus",
    "GateStatus",
    "LeaderStatus",
    "MemberState",
    "MemberStatus",
    "Obligations",
    "RedisFleet",
    "TakeOver",
    "Throttle",
]

for _public in (
    RedisFleet,
    FleetStatus,
    GateStatus,
    LeaderStatus,
    MemberState,
    MemberStatus,
    Obligations,
    TakeOver,
    Throttle,
):
    _public.__module__ = __name__
del _public
