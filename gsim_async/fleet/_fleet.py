"""``RedisFleet``: the configuration users pass to ``Client(fleet=...)``."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidArgumentError
from .._journal import normal_base_url
from ._settings import Settings

if TYPE_CHECKING:
    import redis.asyncio
    import redis.asyncio.cluster

    from ._binding import Binding
    from ._connect import Target
    from ._read import Reader
    from ._status import FleetStatus

#: Seconds between a member's heartbeats.
HEARTBEAT = 1.0
#: Seconds a watcher leader's lease lasts; it renews it three times as often.
LEASE = 3.0
#: Seconds of silence after which a member is taken for dead and its orders refunded by
#: the fleet: longer than the stalls a live process meets (a blocked loop, a frozen
#: container, a paused VM: design.md promises 30 s lose nothing), short enough that a
#: dead member's orders are refunded within 45 s of its death.
DEAD_AFTER = 35.0


class RedisFleet:
    """Every process with the same API key and this fleet cooperates through Redis.

    ``url`` is where Redis is:

    * ``redis://[[user]:password@]host:6379/0``, ``rediss://...`` for TLS (a CA and a
      client certificate as redis-py takes them: ``?ssl_ca_certs=ca.pem&ssl_certfile=
      client.pem&ssl_keyfile=client.key``), ``unix:///path/redis.sock?db=0``; the URL of
      a Redis Cluster node opens the Cluster;
    * ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``:
      the primary the Sentinels name, followed through a failover
      (``?sentinel_password=...`` when the Sentinels want one of their own);
    * or a ready ``redis.asyncio`` client made with ``decode_responses=True``
      (``Redis``, a Sentinel's ``master_for(...)``, ``RedisCluster``), for anything
      else; the fleet never closes it.

    A malformed URL raises ``InvalidArgumentError`` here; a Redis the fleet cannot use
    (unreachable, credentials refused, no primary, no Lua) raises ``FleetError`` when
    the client opens. Everything the fleet keeps in Redis lives under a prefix made
    from a hash of the API key (never the key itself) and the server's base URL, and
    ``namespace``, so several accounts, servers, or fleets of one account can share a
    Redis. ``heartbeat`` and ``lease`` (seconds) tune how fast a silent watcher leader
    is replaced.

    ``dead_after`` (seconds, default 35) is the one judgement of a member's death:
    a member silent that long has what it owed taken over by the fleet's leader, which
    refunds its waits at once. The trade is real: shorter refunds a dead member's orders
    sooner, and refunds a member that was only stalled (a blocked event loop, a frozen
    container) behind its back, losing its codes. A member on the same machine whose
    process is gone is taken over at once, whatever ``dead_after`` says; a member that
    comes back after being taken over learns it within a heartbeat, and its waits on
    the orders the fleet took end with ``NoCodeError`` saying so.
    """

    def __init__(
        self,
        url: str | redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
        *,
        namespace: str | None = None,
        heartbeat: float = HEARTBEAT,
        lease: float = LEASE,
        dead_after: float = DEAD_AFTER,
    ) -> None:
        if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
            raise InvalidArgumentError("namespace must be a non-empty string")
        if not heartbeat > 0 or not lease > heartbeat:
            raise InvalidArgumentError("heartbeat must be positive and lease longer than it")
        if not dead_after >= 3 * heartbeat:
            raise InvalidArgumentError(
                f"dead_after must be at least three heartbeats ({3 * heartbeat:g} s), "
                f"got {dead_after!r}"
            )
        try:
            import redis.asyncio  # noqa: F401 - checked here, used by the members
        except ImportError:
            raise InvalidArgumentError(
                "RedisFleet needs redis-py: pip install 'gsim-async[redis]'"
            ) from None
        from ._connect import parse

        self._redis: Target = parse(url)
        #: The URL given (``None`` for a ready client).
        self.url = url if isinstance(url, str) else None
        self.namespace = namespace
        self.heartbeat = heartbeat
        self.lease = lease
        self.dead_after = dead_after

    def prefix(self, api_key: str, base_url: str) -> str:
        """The Redis key prefix for ``api_key`` on the server at ``base_url``.

        A hash of both, never the key: two servers never share what is kept (a test
        server may hand out the ids a real one, or its own last run, did).
        """
        # One server, one spelling (the journal's normal form): members that spell it
        # differently (case, default port, trailing slash) share one fleet.
        server = normal_base_url(base_url)
        digest = hashlib.sha256(f"gsim-async:{api_key}\n{server}".encode()).hexdigest()[:20]
        # A hash tag: every key of one fleet lives in one slot of a Redis Cluster, so each
        # script's keys are on one node (and the same scripts run on a single Redis).
        return f"gsim:{{{digest}}}" + (f":{self.namespace}" if self.namespace else "")

    def bind(self, api_key: str, base_url: str, **parts: Any) -> Binding:
        """Join a client of the server at ``base_url`` to this fleet (see ``Binding``)."""
        # Here, not at the top: the members need redis-py, and this module must import
        # without it (the check above says what to install).
        from ._binding import Binding

        prefix = self.prefix(api_key, base_url)
        settings = Settings(self._redis, prefix, self.heartbeat, self.lease, self.dead_after)
        return Binding(settings, **parts)

    async def status(
        self, api_key: str | None = None, *, base_url: str | None = None
    ) -> FleetStatus:
        """The fleet on ``api_key`` as its Redis shows it now, read without joining it.

        Members (host, pid, heartbeats, judged by this fleet's ``heartbeat`` and
        ``dead_after``), the leader, the rate gate, what each member holds and owes, and
        the last 429s: a ``FleetStatus``. Nothing is written (a replica may serve it).
        ``api_key`` and ``base_url`` default as ``Client``'s do (``GSIM_API_KEY``,
        ``GSIM_BASE_URL``); only a hash of the key is used. An empty ``FleetStatus``
        when no member has joined. Raises ``FleetError`` when Redis cannot be read.
        """
        async with self._reader(api_key, base_url) as reader:
            return await reader.read()

    def _reader(self, api_key: str | None, base_url: str | None) -> Reader:
        """What ``status`` reads with, open for several reads (``gsim fleet status --watch``)."""
        from ._read import Reader, credentials

        key, url = credentials(api_key, base_url)
        prefix = self.prefix(key, url)
        return Reader(self._redis, prefix, heartbeat=self.heartbeat, dead_after=self.dead_after)

    def __repr__(self) -> str:
        # Only where it points: the URL may carry a password.
        return f"<RedisFleet {self._redis.where} namespace={self.namespace!r}>"
