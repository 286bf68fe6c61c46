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
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import redis.asyncio as aioredis

from ._connect import FAILURES, Opened
from ._process import gone, identity
from ._settings import Settings

T = TypeVar("T")

log = logging.getLogger("gsim_async")

#: Seconds between reconnect attempts while Redis is unreachable.
_RECONNECT = 1.0
#: Seconds a single Redis call may take before the fleet is taken as down.
_CALL_TIMEOUT = 2.0
#: Connections a member keeps to Redis at most (calls beyond wait for one).
_CONNECTIONS = 32

# Fencing (Kleppmann, "How to do distributed locking"): a member's heartbeat is a lease,
# and a lease may be outlived by a pause. Each membership carries an epoch from INCR;
# ``epochs`` maps every member to its current one, and the scripts that change what a
# member owns check it there, inside Redis. A member taken over while it was silent
# loses its epoch: everything it still tries to write is refused, and it learns so.

# KEYS: members, epochs, epoch counter. ARGV: member, its epoch, dead_after (ms).
# {1, now, counter, live members} while the epoch holds; {0, now, 0, 0} when Redis does
# not know the member under it (taken over, or Redis lost its data).
_BEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return {0, now, 0, 0} end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - 3 * dead)
local counter = tonumber(redis.call('GET', KEYS[3]) or '0')
return {1, now, counter, redis.call('ZCOUNT', KEYS[1], now - dead, '+inf')}
"""

# Joining (again). KEYS: epoch counter, epochs, members, info, taken:<member>,
# revoked:<member>. ARGV: member, its epoch ('' if it has none), the highest epoch it
# has seen, what it is (JSON), dead_after (ms). The counter is first raised above every
# epoch the member has seen: after Redis lost its data (a restart, a failover to a
# replica that lagged) epochs never go backwards. Returns {status, epoch, revocation,
# taken rows, live members}; the status is 'same' (Redis kept the membership), 'new',
# 'lost' (Redis forgot it) or 'revoked' (the fleet took over what the member owed while
# it was silent; the rows it took come back).
_JOIN = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[3])
end
local current = redis.call('HGET', KEYS[2], ARGV[1])
local revoked = redis.call('GET', KEYS[6])
local status = 'new'
local epoch
if ARGV[2] ~= '' and current == ARGV[2] then
  status = 'same'
  epoch = tonumber(current)
else
  if revoked then status = 'revoked' elseif ARGV[2] ~= '' then status = 'lost' end
  epoch = redis.call('INCR', KEYS[1])
  redis.call('HSET', KEYS[2], ARGV[1], epoch)
end
local taken = {}
if revoked then
  taken = redis.call('HGETALL', KEYS[5])
  redis.call('DEL', KEYS[5], KEYS[6])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
local live = redis.call('ZCOUNT', KEYS[3], now - tonumber(ARGV[5]), '+inf')
return {status, epoch, revoked or '', taken, live}
"""

# Stopping (fenced). KEYS: epochs, members, leaving. ARGV: member, epoch, how recent a
# beat must be to stay (ms), then the members known dead. The member is marked leaving;
# returns how many other members are alive and staying: when none, nobody will take over
# what it owes, and it gives its waits up itself. Atomic, so of members stopping
# together the last to ask knows it is the last (each left to itself, all would leave it
# to the others).
_STOPPING = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[3], ARGV[1], now)
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
local others = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - tonumber(ARGV[3]), '+inf')) do
  if m ~= ARGV[1] and not dead[m] and redis.call('HEXISTS', KEYS[3], m) == 0 then
    others = others + 1
  end
end
return others
"""

#: Heartbeats within which a member must have beaten to count as staying when another
#: stops: only a member beating now will take over what the stopping one leaves (one
#: silent for longer may be dead, or stalled: then the stopping member refunds itself,
#: the side that loses no money).
STAYING_BEATS = 3

# Leaving: the heartbeat, the epoch and what the member said of itself go at once, so
# nobody waits out the death threshold for a member that closed.
_LEAVE = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

_LIVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


@attrs.frozen
class Revocation:
    """The fleet took over what this member owed while it was silent."""

    #: The member that took over (the leader then).
    by: str
    #: Seconds this process went without a heartbeat before it learnt of it.
    unresponsive: float
    #: The rows taken: row reference → the row as this member had written it (JSON).
    rows: dict[str, str]


Listener = Callable[[dict[str, Any]], None]


class Member:
    """One client in a fleet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.id = uuid.uuid4().hex[:16]
        self.active = False
        #: This membership's fencing token (None until joined).
        self.epoch: int | None = None
        #: The highest epoch this member has seen: the counter never goes below it.
        self.highest_epoch = 0
        #: Members alive at the last heartbeat, this one included.
        self.peers = 1
        #: Set once the member stops (``stopping()``): it never joins again.
        self.leaving = False
        self._redis: aioredis.Redis | None = None
        self._opened: Opened | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Listener] = []
        self._on_rejoin: list[Callable[[], Awaitable[None]]] = []
        self._on_revoked: list[Callable[[Revocation], None]] = []
        self._on_down: list[Callable[[], None]] = []
        self._warned = False
        self._closed = False
        self._infos: tuple[float, dict[str, str]] = (-1e18, {})
        self._dead: set[str] = set()
        self._last_beat = time.monotonic()
        self._joining = asyncio.Lock()
        self._rejoin_task: asyncio.Task[None] | None = None

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

    @property
    def epochs(self) -> str:
        """The hash of every member's current epoch (what fenced scripts check)."""
        return self.key("epochs")

    @property
    def token(self) -> str:
        """This membership's epoch as scripts compare it ('' before joining)."""
        return "" if self.epoch is None else str(self.epoch)

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with every event published on the fleet's channel."""
        self._listeners.append(listener)

    def on_rejoin(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` whenever the member (re)joins the fleet."""
        self._on_rejoin.append(callback)

    def on_revoked(self, callback: Callable[[Revocation], None]) -> None:
        """Call ``callback`` when this member learns the fleet took it over."""
        self._on_revoked.append(callback)

    def on_down(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when Redis becomes unreachable."""
        self._on_down.append(callback)

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
        async with self._joining:
            return await self._join_now()

    async def _join_now(self) -> bool:
        silent = time.monotonic() - self._last_beat
        try:
            redis = self._client()
            await asyncio.wait_for(redis.ping(), _CALL_TIMEOUT)
            keys = (
                self.key("epoch"),
                self.epochs,
                self.key("members"),
                self.key("info"),
                self.key("taken", self.id),
                self.key("revoked", self.id),
            )
            info = json.dumps(identity(), separators=(",", ":"))
            dead_after = int(self.settings.dead_after * 1000)
            status, epoch, revocation, taken, live = await asyncio.wait_for(
                redis.eval(
                    _JOIN, len(keys), *keys,
                    self.id, self.token, self.highest_epoch, info, dead_after,
                ),
                _CALL_TIMEOUT,
            )  # fmt: skip
        except FAILURES:
            return False
        self.peers = max(1, int(live))
        self.epoch = int(epoch)
        self.highest_epoch = max(self.highest_epoch, self.epoch)
        self._last_beat = time.monotonic()
        was_down = self._warned
        self.active = True
        if was_down:
            log.info("fleet: Redis is reachable again; rejoined the fleet")
            self._warned = False
        if status == "lost":
            log.warning(
                "fleet: Redis no longer knew this member (it restarted empty or failed over); "
                "writing what this member holds and owes again"
            )
        if status == "revoked":
            by = str(revocation).partition(":")[0]
            rows = {str(k): str(v) for k, v in zip(taken[0::2], taken[1::2], strict=False)}
            event = Revocation(by=by, unresponsive=silent, rows=rows)
            log.warning(
                "fleet: this process was unresponsive for %.0f s; member %s took it for dead "
                "and took over %d purchase(s) and order(s) it owed (it refunds them)",
                silent,
                by,
                len(rows),
            )
            for revoked in self._on_revoked:
                try:
                    revoked(event)
                except Exception:
                    log.exception("fleet: handling a takeover of this member failed")
        for callback in self._on_rejoin:
            try:
                await callback()
            except FAILURES as exc:
                self._down(exc)
                return False
            except Exception:
                log.exception("fleet: rejoining failed in part; trying again")
                self._down(None)
                return False
        return True

    @property
    def staying_window(self) -> int:
        """How recent (ms) a member's beat must be for it to count as staying."""
        return int(max(STAYING_BEATS * self.settings.heartbeat, 2.0) * 1000)

    async def stopping(self) -> int | None:
        """Mark this member leaving; how many others stay alive (``None``: unknown).

        From then on the member never joins again: a refusal (the last member took
        over what it left) is the end of its membership, not a reason to rejoin.
        """
        await self.alive()  # which members are provably dead, fresh
        self.leaving = True
        keys = (self.key("members"), self.key("leaving"))
        others = await self.fenced(_STOPPING, keys, self.staying_window, *self.proven_dead)
        return None if others is None else int(others)

    def refused(self) -> None:
        """A fenced script refused this member's epoch: join again, learning why."""
        if self._closed or (self._rejoin_task is not None and not self._rejoin_task.done()):
            return
        if self.leaving:
            self.active = False  # taken over as it left: its membership is over
            return
        self._rejoin_task = self.spawn(self._rejoin(), "rejoin")

    async def _rejoin(self) -> None:
        if not await self._join():
            self._down(None)

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
                keys = (self.key("members"), self.epochs, self.key("info"), self.key("leaving"))
                with contextlib.suppress(*FAILURES):
                    await asyncio.wait_for(
                        self._redis.eval(_LEAVE, len(keys), *keys, self.id, self.token),
                        _CALL_TIMEOUT,
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

    async def fenced(self, script: str, keys: Sequence[str], *args: Any) -> Any:
        """Run ``script`` with ``KEYS[1]`` the epochs and ``ARGV[1..2]`` this membership.

        The script must return -1 when the epoch no longer holds: the member then joins
        again (and learns whether it was taken over). Returns None when refused or when
        Redis did not answer.
        """
        epochs_and_keys = (self.epochs, *keys)
        result = await self.call(
            lambda r: r.eval(script, len(epochs_and_keys), *epochs_and_keys, self.id, self.token,
                             *args),
            None,
        )  # fmt: skip
        if result == -1:
            self.refused()
            return None
        return result

    async def publish(self, event: dict[str, Any]) -> None:
        """Tell every member (this one included) of ``event``."""
        text = json.dumps(event, separators=(",", ":"))
        await self.call(lambda r: r.publish(self.channel, text), 0)

    async def alive(self) -> set[str]:
        """The members the fleet counts as alive, this one always.

        Those that beat within ``dead_after`` (read fresh: a member that joined a moment
        ago is alive, and its registrations are not dropped), less those provably dead:
        a member on this machine whose process is gone (see ``_process``; what members
        say of themselves is re-read once a heartbeat).
        """
        within = await self.members_within(self.settings.dead_after)
        loop = asyncio.get_running_loop()
        at, infos = self._infos
        if loop.time() - at >= self.settings.heartbeat or not within <= set(infos) | {self.id}:

            async def read(r: aioredis.Redis) -> dict[str, str]:
                return {str(k): str(v) for k, v in (await r.hgetall(self.key("info"))).items()}

            infos = await self.call(read, infos)
            self._infos = (loop.time(), infos)
        dead = set()
        for member in within - {self.id}:
            with contextlib.suppress(ValueError, TypeError):
                if gone(json.loads(infos.get(member) or "null")):
                    dead.add(member)
        self._dead = dead
        return within - dead

    @property
    def proven_dead(self) -> set[str]:
        """Members that still beat recently but whose process is gone (as of ``alive``)."""
        return self._dead

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
        was_active = self.active
        self.active = False
        if not self._warned:
            self._warned = True
            log.warning(
                "fleet: Redis is unreachable (%s); this process paces and watches on its own "
                "until it is back",
                exc or "no answer",
            )
        if was_active:
            for callback in self._on_down:
                try:
                    callback()
                except Exception:
                    log.exception("fleet: a component failed to go on alone")

    # -- background -----------------------------------------------------------------------

    async def _beat(self, redis: aioredis.Redis) -> bool:
        """One heartbeat; False when Redis does not know this member under its epoch."""
        keys = (self.key("members"), self.epochs, self.key("epoch"))
        dead_after = int(self.settings.dead_after * 1000)
        known, _now, counter, live = await redis.eval(
            _BEAT, len(keys), *keys, self.id, self.token, dead_after
        )
        if not int(known):
            return False
        self._last_beat = time.monotonic()
        self.highest_epoch = max(self.highest_epoch, int(counter))
        self.peers = max(1, int(live))
        return True

    async def _heartbeats(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.heartbeat if self.active else _RECONNECT)
            if self.leaving and not self.active:
                continue  # taken over as it left: nothing to join again
            try:
                if self.active:
                    known = await self.call(self._beat, None)
                    if known is False:
                        # One rejoin, whoever saw the refusal first (a journal's flush
                        # may have): its callbacks write everything back.
                        self.refused()
                        rejoin = self._rejoin_task
                        if rejoin is not None and not rejoin.done():
                            await rejoin
                else:
                    await self._join()
            except Exception:
                # A bug in a rejoin callback must not stop the heartbeats for good (the
                # member would act while the fleet takes it for dead).
                log.exception("fleet: a heartbeat failed; trying again")

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
