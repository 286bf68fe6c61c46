"""What every part of a fleet member needs to know of its fleet (built by ``RedisFleet``)."""

from __future__ import annotations

import attrs


def _where(url: str) -> str:
    # The URL may carry a password: show only where it points.
    return repr(url.split("@")[-1])


@attrs.frozen
class Settings:
    """One fleet as a member sees it: Redis' URL, the key prefix, and the timings."""

    url: str = attrs.field(repr=_where)
    #: Every Redis key of the fleet starts with it (a hash of the key, never the key).
    prefix: str
    #: Seconds between heartbeats.
    heartbeat: float
    #: Seconds a watcher leader's lease lasts.
    lease: float
    #: Seconds of silence after which a member is taken for dead (every judgement of
    #: liveness uses it; a member on this machine whose process is gone, at once).
    dead_after: float
