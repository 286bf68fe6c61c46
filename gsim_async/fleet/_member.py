"""One client's membership of a fleet: the Redis connection, heartbeats, events, health.

Every Redis call goes through ``Member.call``: a failure marks the fleet down
(logged once, at WARNING), and every component falls back to what the client does
alone until a reconnect succeeds (logged at INFO), when the member rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from ._connect import FAILURES, Opened
from ._settings import Settings

T = TypeVar("T")

log = logging.getLogger("gsim_async")

#: Seconds between reconnect attempts while Redis is unreachable.
_RECONNECT = 1.0
#: Seconds a single Redis call may take before the fleet is taken as down.
_CALL_TIMEOUT = 2.0
#: Connections a member keeps to Redis at most (calls beyond wait for one).
_CONNECTIONS = 32

_HEARTBEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[2]) * 10)
return now
"""

_LIVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""

Listener = Callable[[dict[str, Any]], None]


class Member:
    """One client in a fleet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.id = uuid.uuid4().hex[:16]
        self.active = False
        self._redis: aioredis.Redis | None = None
        self._opened: Opened | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Listener] = []
        self._on_rejoin: list[Callable[[], Awaitable[None]]] = []
        self._warned = False
        self._closed = False
        self._live: tuple[float, set[str]] = (-1.0, set())

    @property
    def closed(self) -> bool:
        """Whether the member left the fleet (its loops stop)."""
        return self._closed

    def key(self, *parts: str) -> str:
        """A Redis key under this fleet's prefix."""
        return ":".join((self.prefix, *parts))

    @property
    def channel(self) -> str:
        """The fleet's event channel."""
        return self.key("events")

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with every event published on the fleet's channel."""
        self._listeners.append(listener)

    def on_rejoin(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` whenever the member (re)joins the fleet."""
        self._on_rejoin.append(callback)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join; ``FleetError`` (what, where) if the fleet cannot use Redis."""
        # Checked here, when the client opens: never in the middle of a purchase.
        self._opened = await self.settings.redis.open(
            self.key("probe"), timeout=_CALL_TIMEOUT, connections=_CONNECTIONS
        )
        self._redis = self._opened.client
        if not await self._join():
            self._down(None)
        self.spawn(self._heartbeats(), "heartbeat")
        self.spawn(self._events(), "events")

    async def _join(self) -> bool:
        try:
            redis = self._client()
            await asyncio.wait_for(redis.ping(), _CALL_TIMEOUT)
            await self._beat(redis)
        except FAILURES:
            return False
        was_down = self._warned
        self.active = True
        if was_down:
            log.info("fleet: Redis is reachable again; rejoined the fleet")
            self._warned = False
        for callback in self._on_rejoin:
            try:
                await callback()
            except FAILURES as exc:
                self._down(exc)
                return False
        return True

    async def aclose(self) -> None:
        """Leave the fleet: stop the tasks, withdraw the heartbeat, close the connection."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: on Python 3.11 asyncio.wait_for can swallow a cancellation that
            # lands as its call completes; the loops also stop on ``closed``.
            await asyncio.wait(tasks, timeout=2 * _CALL_TIMEOUT)
        if self._redis is not None:
            if self.active:
                with contextlib.suppress(*FAILURES):
                    await asyncio.wait_for(
                        self._redis.zrem(self.key("members"), self.id), _CALL_TIMEOUT
                    )
            if self._opened is not None:  # what the fleet made; a client passed in stays open
                await self._opened.aclose()
        self.active = False

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` for the life of the membership."""

        async def run() -> Any:
            return await coro

        task = asyncio.get_running_loop().create_task(run(), name=f"gsim_async fleet {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- calls ----------------------------------------------------------------------------

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("the fleet member was not started")
        return self._redis

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]], default: T) -> T:
        """``fn(redis)``, or ``default`` (and the fleet marked down) when Redis fails."""
        if not self.active:
            return default
        try:
            return await asyncio.wait_for(fn(self._client()), _CALL_TIMEOUT)
        except FAILURES as exc:
            self._down(exc)
            return default

    async def publish(self, event: dict[str, Any]) -> None:
        """Tell every member (this one included) of ``event``."""
        text = json.dumps(event, separators=(",", ":"))
        await self.call(lambda r: r.publish(self.channel, text), 0)

    async def live_members(self) -> set[str]:
        """The members whose heartbeat is recent (cached for a heartbeat)."""
        loop = asyncio.get_running_loop()
        at, members = self._live
        if loop.time() - at < self.settings.heartbeat:
            return members
        members = await self.members_within(self.settings.heartbeat * 3, members)
        self._live = (loop.time(), members)
        return members

    async def members_within(self, seconds: float, default: set[str] | None = None) -> set[str]:
        """The members that beat within the last ``seconds`` (this one always)."""
        window = int(seconds * 1000)

        async def fetch(r: aioredis.Redis) -> set[str]:
            return set(await r.eval(_LIVE, 1, self.key("members"), window))

        members = await self.call(fetch, default or set())
        return members | {self.id}

    def _down(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self.active = False
        if not self._warned:
            self._warned = True
            log.warning(
                "fleet: Redis is unreachable (%s); this process paces and watches on its own "
                "until it is back",
                exc or "no answer",
            )

    # -- background -----------------------------------------------------------------------

    async def _beat(self, redis: aioredis.Redis) -> None:
        beat = self.settings.heartbeat * 1000
        await redis.eval(_HEARTBEAT, 1, self.key("members"), self.id, beat)

    async def _heartbeats(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.heartbeat if self.active else _RECONNECT)
            if self.active:
                await self.call(self._beat, None)
            else:
                await self._join()

    async def _events(self) -> None:
        while not self._closed:
            if not self.active:
                await asyncio.sleep(_RECONNECT)
                continue
            pubsub = self._client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while self.active and not self._closed:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    for listener in self._listeners:
                        try:
                            listener(event)
                        except Exception:
                            log.exception("fleet event listener failed")
            except FAILURES as exc:
                self._down(exc)
            finally:
                with contextlib.suppress(Exception):
                    # Older redis-py releases leave aclose() untyped; newer ones type it.
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
