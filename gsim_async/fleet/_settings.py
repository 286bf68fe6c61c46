"""What every part of a fleet member needs to know of its fleet (built by ``RedisFleet``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._connect import Target


def _where(target: Target) -> str:
    # Only where it points: a URL may carry a password, a client its configuration.
    return repr(target.where)


@attrs.frozen
class Settings:
    """One fleet as a member sees it: how to reach Redis, the key prefix, and the timings."""

    #: Where Redis is and how to reach it (``_connect``: URL forms, ready clients).
    redis: Target = attrs.field(repr=_where)
    #: Every Redis key of the fleet starts with it (a hash of the key, never the key).
    prefix: str
    #: Seconds between heartbeats.
    heartbeat: float
    #: Seconds a watcher leader's lease lasts.
    lease: float
    #: Seconds of silence after which a member is taken for dead (every judgement of
    #: liveness uses it; a member on this machine whose process is gone, at once).
    dead_after: float
