"""How a fleet member reaches Redis: the URL forms, the client, and the checks at open.

One place knows (style.md, "Coordination over Redis"). The rest of the fleet is handed
a ``redis.asyncio`` client and never asks whether it talks to one server, to a primary
managed by Sentinels (its pool asks them for the primary on every new connection, so
it follows a failover), or to a Cluster (every key of one fleet shares one hash slot:
the prefix is a hash tag, ``RedisFleet.prefix``, so every script runs on one node).

* ``parse(url_or_client)`` runs when ``RedisFleet`` is made: a malformed URL fails there.
* ``Target.open()`` runs when the client opens: it builds the client and checks that the
  fleet can use it (reachable, credentials accepted, a primary named, Lua scripts run
  and may write), or raises ``FleetError`` saying what is wrong and where, before any
  request is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import attrs
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection, parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from .._exceptions import FleetError, InvalidArgumentError

#: What a Redis call raises when Redis is unreachable, failing over or refusing. A
#: Cluster's own errors (a slot no node serves yet) are not ``RedisError``s.
FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)

#: Port of a Sentinel named without one.
SENTINEL_PORT = 26379
#: Connections a Cluster client keeps per node at most. redis-py's Cluster client raises
#: beyond it rather than wait (no blocking pool), and the fleet would take that as Redis
#: down: so many that only a member misbehaving reaches it.
CLUSTER_CONNECTIONS = 1024

_URL_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_SCHEME = "redis+sentinel"
#: Options of a redis+sentinel:// URL meant for the Sentinels, not for the primary.
_SENTINEL_OPTIONS = {"sentinel_username": "username", "sentinel_password": "password"}

# Lua runs, reads Redis' clock and may write afterwards: what every script of the fleet
# does. A read-only replica refuses the write; a server older than Redis 5 refuses a
# write after TIME; a server without scripting refuses EVAL.
_PROBE = """
redis.call('TIME')
redis.call('DEL', KEYS[1])
return 1
"""

#: One Sentinel's failure in redis-py's MasterNotFoundError ("<client repr> - error").
_SENTINEL_ERRORS = re.compile(r" - (?:\w+:)?\w+: (.*?)(?=, <redis\.|$)")

#: Some form of the fleet's Redis, for messages: the URL without credentials or options.
Where = str


class Target(Protocol):
    """What ``RedisFleet`` was given: where its Redis is, and how to reach it."""

    @property
    def where(self) -> Where:
        """Which Redis, for messages (never a password)."""

    async def open(self, probe: str | None, *, timeout: float, connections: int) -> Opened:
        """A client the fleet can use; ``FleetError`` (what, where) when there is none.

        ``probe`` is a key of the fleet's (never written otherwise): the checks touch it,
        so on a Cluster they reach the node that serves the fleet's slot. ``None``: a
        reader that writes nothing (``RedisFleet.status``), checked by a PING alone.
        """


@attrs.frozen
class Opened:
    """A client ready for the fleet, and how to let go of it."""

    #: A ``RedisCluster`` too, typed as ``Redis``: it offers every call the fleet makes
    #: (scripts, pipelines of one slot, transactions of one slot, publish, pubsub).
    client: aioredis.Redis
    #: ``None`` for a client the user passed in: not ours to close.
    _close: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        """Close the connections this fleet made (none of a client passed in)."""
        if self._close is not None:
            with contextlib.suppress(*FAILURES):
                await self._close()


# -- parsing, when RedisFleet is made ----------------------------------------------------


def parse(value: object) -> Target:
    """The target ``value`` (a URL, or a ready ``redis.asyncio`` client) names.

    Raises ``InvalidArgumentError`` for a malformed URL or a client the fleet cannot use.
    """
    if isinstance(value, str):
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme == _SENTINEL_SCHEME:
            return _sentinel_target(value)
        if scheme in _URL_SCHEMES:
            return _url_target(value)
        raise InvalidArgumentError(
            "RedisFleet needs a redis://, rediss://, unix:// or "
            f"redis+sentinel://host:port[,host:port...]/service_name[/db] URL, got {_safe(value)!r}"
        )
    if isinstance(value, (aioredis.Redis, RedisCluster)):
        return _client_target(value)
    raise InvalidArgumentError(
        "RedisFleet takes a URL or a ready redis.asyncio client (Redis, a Sentinel's "
        f"master_for(...), RedisCluster), got {type(value).__name__}"
    )


def _safe(url: str) -> str:
    """``url`` without its credentials or options (either may carry a password)."""
    scheme, sep, rest = url.partition("://")
    rest = rest if sep else scheme
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, slash, path = rest.partition("/")
    shown = netloc.rpartition("@")[2] + slash + path
    return f"{scheme}://{shown}" if sep else shown


def _connection_options(url: str, *, what: str) -> dict[str, Any]:
    """redis-py's connection options for ``url``, checked by making (not opening) one."""
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise InvalidArgumentError(f"RedisFleet: {exc} ({what})") from None
    made = {k: v for k, v in options.items() if k != "connection_class"}
    connection_class: Callable[..., object] = options.get("connection_class", Connection)
    try:
        # Nothing is opened: an option redis-py does not take fails here, not at open.
        connection_class(**made, decode_responses=True)
    except (TypeError, ValueError, RedisError) as exc:
        raise InvalidArgumentError(
            f"RedisFleet: {what} has an option redis-py cannot use: {exc}"
        ) from None
    return options


def _url_target(url: str) -> UrlTarget:
    where = _safe(url)
    options = _connection_options(url, what=where)
    parts = urlsplit(url)
    if parts.scheme.lower() != "unix":
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise InvalidArgumentError(
                f"RedisFleet: the path of {where} must be a database number (/0), "
                "not a name (a Sentinel-managed primary is named in a redis+sentinel:// URL)"
            )
    return UrlTarget(url, where, int(options.get("db") or 0))


def _host_port(text: str, url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"RedisFleet: {exc} in {url}") from None
    if not host:
        raise InvalidArgumentError(f"RedisFleet: a Sentinel without a host in {url}")
    return host, port or SENTINEL_PORT


def _sentinel_target(url: str) -> SentinelTarget:
    where = _safe(url)
    rest = url.partition("://")[2]
    if "#" in rest:
        raise InvalidArgumentError(f"RedisFleet: a fragment (#...) in {where}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not hosts.strip(","):
        raise InvalidArgumentError(f"RedisFleet: {where} names no Sentinel (host:port)")
    sentinels = tuple(_host_port(h.strip(), where) for h in hosts.split(",") if h.strip())
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments or len(segments) > 2:
        raise InvalidArgumentError(
            f"RedisFleet: {where} must end in /service_name or /service_name/db "
            "(the name the Sentinels monitor the primary under)"
        )
    service = unquote(segments[0])
    if len(segments) == 2 and not segments[1].isdigit():
        raise InvalidArgumentError(
            f"RedisFleet: the database in {where} must be a number, got {segments[1]!r}"
        )
    db = int(segments[1]) if len(segments) == 2 else 0
    primary: dict[str, str] = {}
    sentinel: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _SENTINEL_OPTIONS:
            sentinel[_SENTINEL_OPTIONS[name]] = value
        elif name == "db":
            raise InvalidArgumentError(f"RedisFleet: {where} names its database in the path")
        else:
            primary[name] = value
    # The primary's options are what a redis:// URL takes: redis-py parses and checks them.
    options = _connection_options(
        f"redis://localhost/{db}?{urlencode(primary)}", what=f"{where} (its options)"
    )
    options = {k: v for k, v in options.items() if k not in ("host", "port")}
    if at:
        username, colon, password = userinfo.partition(":")
        if username:
            options["username"] = unquote(username)
        if colon:
            options["password"] = unquote(password)
    return SentinelTarget(sentinels, service, where, options, sentinel)


def _client_target(client: aioredis.Redis | RedisCluster) -> ClientTarget:
    if not client.get_encoder().decode_responses:
        raise InvalidArgumentError(
            "RedisFleet needs a client made with decode_responses=True "
            "(the fleet reads text from Redis)"
        )
    return ClientTarget(client, f"{_describe(client)} (a client passed in)")


def _describe(client: aioredis.Redis | RedisCluster) -> Where:
    if isinstance(client, RedisCluster):
        nodes = ",".join(client.nodes_manager.startup_nodes) or "?"
        return f"Redis Cluster {nodes}"
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return f"the primary of Sentinel service {pool.service_name!r}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


# -- opening, when the client opens -------------------------------------------------------


@attrs.frozen
class UrlTarget:
    """A redis://, rediss:// or unix:// URL; a Cluster node's URL opens the Cluster."""

    url: str = attrs.field(repr=False)
    where: Where
    db: int

    async def open(self, probe: str | None, *, timeout: float, connections: int) -> Opened:
        """Connect, and switch to a Cluster client if the server is a Cluster node."""
        sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        # A blocking pool: a burst of calls waits for a connection instead of failing
        # with "too many connections" (which would take the fleet as down).
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=connections,
            timeout=timeout,
            decode_responses=True,
            **sockets,
        )
        client = aioredis.Redis(connection_pool=pool)

        async def close() -> None:
            await client.aclose()
            await pool.disconnect()

        try:
            cluster = await _run(self.where, timeout, _is_cluster(client))
            if not cluster:
                await _run(self.where, timeout, _probe(client, probe))
                return Opened(client, close)
        except BaseException:
            await Opened(client, close).aclose()
            raise
        await Opened(client, close).aclose()
        if self.db:
            raise FleetError(
                f"the fleet's Redis at {self.where} is a Redis Cluster, which has only "
                f"database 0; the URL names database {self.db}",
                where=self.where,
            )
        _cluster_supported(self.where)
        made = RedisCluster.from_url(
            self.url, decode_responses=True, max_connections=CLUSTER_CONNECTIONS, **sockets
        )
        try:
            await _run(self.where, timeout, _probe(_as_client(made), probe))
        except BaseException:
            with contextlib.suppress(*FAILURES):
                await made.aclose()
            raise
        return Opened(_as_client(made), made.aclose)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (asks for the primary on each new connection), but blocking."""


@attrs.frozen
class SentinelTarget:
    """A primary managed by Sentinels: ``redis+sentinel://h:p[,h:p...]/service[/db]``."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    where: Where
    #: For the primary's connections (db, credentials, options of the URL).
    options: dict[str, Any] = attrs.field(repr=False)
    #: For the Sentinels' connections (their own credentials, if any).
    sentinel_options: dict[str, Any] = attrs.field(repr=False)

    async def open(self, probe: str | None, *, timeout: float, connections: int) -> Opened:
        """Ask the Sentinels for the primary, connect to it, and check it."""
        sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        sentinel = Sentinel(
            list(self.sentinels), sentinel_kwargs={**sockets, **self.sentinel_options}
        )
        client = sentinel.master_for(
            self.service,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=connections,
            timeout=timeout,
            decode_responses=True,
            **{**sockets, **self.options},
        )

        async def close() -> None:
            await client.aclose()
            # Sentinel.aclose() is redis-py 8's; its clients close the same way in all.
            for each in sentinel.sentinels:
                with contextlib.suppress(*FAILURES):
                    await each.aclose()

        try:
            await _run(self.where, timeout, _probe(client, probe), service=self.service)
        except BaseException:
            await Opened(client, close).aclose()
            raise
        return Opened(client, close)


@attrs.frozen
class ClientTarget:
    """A ready ``redis.asyncio`` client: used as it is, never closed by the fleet."""

    client: aioredis.Redis | RedisCluster = attrs.field(repr=False, eq=False)
    where: Where

    async def open(self, probe: str | None, *, timeout: float, connections: int) -> Opened:
        """Check the client (the user's configuration stands; nothing is made)."""
        if isinstance(self.client, RedisCluster):
            _cluster_supported(self.where)
            client = _as_client(self.client)
        else:
            client = self.client
            if await _run(self.where, timeout, _is_cluster(client)):
                raise FleetError(
                    f"the fleet's Redis at {self.where} is a node of a Redis Cluster: pass "
                    "a redis.asyncio.RedisCluster (or the node's URL) instead",
                    where=self.where,
                )
        service = None
        pool = getattr(client, "connection_pool", None)
        if isinstance(pool, SentinelConnectionPool):
            service = pool.service_name
        await _run(self.where, timeout, _probe(client, probe), service=service)
        return Opened(client, None)


def _as_client(cluster: RedisCluster) -> aioredis.Redis:
    # Not a subclass, but every call the fleet makes is there (checked at open, tested on a
    # real Cluster): one client type for the rest of the fleet.
    return cast(aioredis.Redis, cluster)


def _cluster_supported(where: Where) -> None:
    """redis-py's Cluster client has the pub/sub the fleet's events need (redis-py 8)."""
    if not hasattr(RedisCluster, "pubsub") or not hasattr(RedisCluster, "publish"):
        import redis

        raise FleetError(
            f"the fleet's Redis at {where} is a Redis Cluster, and redis-py "
            f"{redis.__version__} has no pub/sub on asyncio Cluster clients: the fleet "
            "needs redis-py 8 or later there (pip install -U 'redis>=8')",
            where=where,
        )


async def _is_cluster(client: aioredis.Redis) -> bool:
    await client.ping()
    try:
        info = await client.info("cluster")
    except ResponseError:
        return False  # INFO renamed or refused: a Cluster would have answered it
    return bool(info.get("cluster_enabled"))


async def _probe(client: aioredis.Redis, key: str | None) -> None:
    await client.ping()
    if key is None:
        return  # a reader: nothing it does needs scripts that write
    try:
        await client.eval(_PROBE, 1, key)
    except ResponseError as exc:
        raise _ScriptRefusedError(str(exc)) from exc


class _ScriptRefusedError(Exception):
    """The server answered the probe script with an error."""


async def _run(
    where: Where, timeout: float, check: Awaitable[Any], *, service: str | None = None
) -> Any:
    """``await check``, or the reason it failed as a ``FleetError`` (what, where).

    It may take a connection and a call, each up to ``timeout``, and a second more.
    """
    try:
        return await asyncio.wait_for(check, 2 * timeout + 1)
    except FleetError:
        raise
    except asyncio.TimeoutError as exc:
        raise FleetError(
            f"the fleet's Redis at {where} did not answer within {2 * timeout + 1:g} s",
            where=where,
        ) from exc
    except Exception as exc:
        raise _explain(exc, where, service) from exc


def _explain(exc: Exception, where: Where, service: str | None) -> FleetError:
    text = str(exc) or type(exc).__name__
    upper = text.upper()
    if isinstance(exc, MasterNotFoundError):
        # redis-py's message holds each Sentinel client's repr: only their errors matter.
        errors = [e.strip() for e in _SENTINEL_ERRORS.findall(text)]
        why = "; ".join(errors) if errors else "the Sentinels answered, naming none"
        message = (
            f"no Sentinel at {where} names a primary for the service {service!r} ({why}): "
            "check the service name, and that the Sentinels monitor it and are reachable"
        )
    elif "SELECT IS NOT ALLOWED IN CLUSTER MODE" in upper:
        message = (
            f"the fleet's Redis at {where} is a Redis Cluster, which has only database 0: "
            "name /0 in the URL"
        )
    elif isinstance(exc, AuthenticationError) or upper.startswith(("NOAUTH", "WRONGPASS")):
        message = (
            f"the fleet's Redis at {where} refused its credentials ({text}): check the "
            "user name and password"
        )
    elif isinstance(exc, _ScriptRefusedError):
        # redis-py strips the error's code (READONLY, NOPERM) and names it by class.
        refused = exc.__cause__
        if isinstance(refused, ReadOnlyError) or upper.startswith("READONLY"):
            message = (
                f"the fleet's Redis at {where} is a read-only replica ({text}): point the "
                "fleet at the primary, or at its Sentinels with redis+sentinel://"
            )
        elif isinstance(refused, NoPermissionError) or upper.startswith("NOPERM"):
            message = (
                f"the fleet's Redis at {where} does not let this user run the fleet's "
                f"scripts ({text}): it needs EVAL, PUBLISH, SUBSCRIBE and the data commands "
                "on the keys gsim:*"
            )
        else:
            message = (
                f"the fleet's Redis at {where} cannot run the fleet's Lua scripts ({text}): "
                "the fleet needs EVAL, with writes after TIME (Redis 5 or later)"
            )
    elif isinstance(exc, RedisClusterException):
        message = f"the Redis Cluster at {where} cannot serve the fleet ({text})"
    elif isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        message = f"cannot reach the fleet's Redis at {where}: {text}"
    else:
        message = f"the fleet's Redis at {where} failed: {type(exc).__name__}: {text}"
    return FleetError(message, where=where)


__all__ = ["FAILURES", "Opened", "Target", "parse"]
