"""One watcher per account: a leader polls for every order any member waits on.

Members register what they wait on in Redis (``watch``: ``<order id>|<member>`` →
the order's number and stamps, and the poll interval). One member holds the ``leader``
lease and runs an ordinary watcher over every registered order; each result is stored
(``result:<id>``, for ten minutes) and published, and the member waiting on it takes
it, whichever process it is in, once it is sure the result is of its own order: an id
is not enough (a test server restarted with its seed hands out the same ids again), so
the number and the server's stamps must agree too. A leader that dies stops renewing
its lease and another member takes over within a lease; results are stored, so none is
lost in the hand-over. While Redis is unreachable, each member watches its own orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from .._converter import Decoder, decoder, format_datetime, order_to_wire
from .._enums import OrderStatus
from .._exceptions import NoCodeError
from .._models import Order
from .._watcher import OrderHook, OrderSource, Watch, Watcher, is_settled
from ._member import Member, Revocation

log = logging.getLogger("gsim_async")

_ORDER: Decoder[Order] = decoder(Order)
#: Seconds a result stays in Redis for a waiter that missed its event.
_RESULT_TTL = 600
#: Results a leader remembers publishing, at most (the oldest are forgotten first).
_PUBLISHED_MAX = 50_000
#: One stamp of one order, written twice, differs by less than this (a server may show
#: it truncated to the second); stamps further apart belong to two orders.
_SAME_STAMP = timedelta(seconds=1)
_NOT_DIGITS = re.compile(r"\D")

_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A result: stored for a waiter that missed its event, and published. One script, not a
# pipeline: a Cluster client refuses PUBLISH in a pipeline (no key to route it by); in a
# script it runs on the fleet's node and reaches every node's subscribers.
_RESULT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('PUBLISH', ARGV[3], ARGV[4])
"""

# Fenced (``Member.fenced``): take or renew the leader's lease. KEYS: epochs, leader.
# ARGV: member, epoch, lease (ms). The lease names the member and its epoch: a leader
# taken over while stalled can neither renew it nor act as leader in a fenced script.
_CLAIM = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local mine = ARGV[1] .. ':' .. ARGV[2]
local holder = redis.call('GET', KEYS[2])
if not holder then
  redis.call('SET', KEYS[2], mine, 'PX', ARGV[3])
  return 1
end
if holder == mine or string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  -- Renewed; or held under this member's own earlier epoch, which is void now.
  redis.call('SET', KEYS[2], mine, 'PX', ARGV[3])
  return 1
end
return 0
"""

#: Orders of this member the fleet took over, remembered (at most this many) so that a
#: wait begun on one later ends at once.
_TAKEN_MAX = 10_000


def _order_from(data: Any) -> Order:
    if isinstance(data, dict) and isinstance(data.get("price"), str):
        data = {**data, "price": Decimal(data["price"])}
    return _ORDER(data)


def _same_order(mine: Order, seen: Order) -> bool:
    """Whether ``seen`` (a result read by id) can be the order ``mine`` is.

    What either side does not know (an empty number, a missing stamp) is no evidence;
    anything known that differs is: the number, the service, a stamp by a second or more.
    """
    if seen.id != mine.id:
        return False
    if mine.service and seen.service and mine.service != seen.service:
        return False
    number, other = (_NOT_DIGITS.sub("", o.phone_number) for o in (mine, seen))
    if number and other and number != other:
        return False
    for a, b in ((mine.created_at, seen.created_at), (mine.expires_at, seen.expires_at)):
        if a is not None and b is not None and abs(a - b) >= _SAME_STAMP:
            return False
    return True


class FleetWatcher:
    """A member's watcher: it waits through the fleet's leader, or alone without Redis."""

    def __init__(
        self,
        member: Member,
        source: OrderSource,
        interval: float,
        on_update: OrderHook | None,
    ) -> None:
        self._member = member
        self._interval = interval
        self._on_update = on_update
        self._source = source
        #: Polls this member's own orders while Redis is unreachable.
        self.alone = Watcher(source, interval, on_update)
        self._watches: dict[str, Watch] = {}
        self._handoffs: set[asyncio.Task[None]] = set()
        self._watch_key = member.key("watch")
        self._leader_key = member.key("leader")
        self._poller: Watcher | None = None
        self._polled: dict[str, tuple[Watch, asyncio.Task[None]]] = {}
        #: Orders this leader published a result for → when (monotonic): a registration
        #: that outlives its result is not polled again (its waiter reads the result).
        self._published: OrderedDict[str, float] = OrderedDict()
        self._leading = False
        self._closed = False
        self._elect: asyncio.Event | None = None
        self._entries: dict[str, str] = {}
        #: Orders the fleet took over from this member → why a wait on one ends.
        self._taken: OrderedDict[str, str] = OrderedDict()
        member.listen(self._event)
        member.on_rejoin(self._register_all)

    def start(self) -> None:
        """Take part in the leader election."""
        self._member.spawn(self._lead(), "leader")

    @property
    def leading(self) -> bool:
        """Whether this member is the fleet's leader now."""
        return self._leading

    # -- what the waiting helpers use -------------------------------------------------------

    @property
    def rounds(self) -> int:
        """Poll rounds this member has run (as leader or alone)."""
        poller = self._poller.rounds if self._poller is not None else 0
        return poller + self.alone.rounds

    @property
    def watching(self) -> int:
        """How many orders this member waits on."""
        return len(self._watches) + self.alone.watching

    def is_watching(self, order_id: str) -> bool:
        """Whether this member waits on ``order_id``."""
        return order_id in self._watches or self.alone.is_watching(order_id)

    def watch(self, order: Order, interval: float | None = None) -> Watch:
        """Wait on ``order`` through the fleet (alone while Redis is unreachable)."""
        why = self._taken.get(order.id)
        if why is not None:
            # The fleet took it over while this process was unresponsive: it refunds it.
            ended = Watch(order=order, interval=interval or self._interval)
            ended.settle(error=NoCodeError(why, order=order))
            return ended
        if not self._member.active:
            return self.alone.watch(order, interval)
        watch = self._watches.get(order.id)
        if watch is None:
            watch = Watch(order=order, interval=interval or self._interval)
            self._watches[order.id] = watch
            self._member.spawn(self._register(watch), "register")
        elif interval is not None:
            watch.interval = min(watch.interval, interval)
        watch.waiters += 1
        return watch

    def unwatch(self, watch: Watch) -> None:
        """One waiter is gone; the registration goes with the last."""
        if watch.order.id in self._taken and watch.error is not None:
            return  # never registered
        if self._watches.get(watch.order.id) is not watch:
            self.alone.unwatch(watch)
            return
        watch.waiters -= 1
        if watch.waiters <= 0:
            del self._watches[watch.order.id]
            self._unregister(watch.order.id)

    def _unregister(self, order_id: str) -> None:
        # At once, not when the last waiter leaves: the leader would poll it again.
        field = f"{order_id}|{self._member.id}"
        self._member.spawn(
            self._member.call(lambda r: r.hdel(self._watch_key, field), 0), "unregister"
        )

    async def aclose(self) -> None:
        """Stop waiting and leading; waiters still registered fail."""
        self._closed = True
        if self._leading:
            # Hand over at once rather than after the lease: others are waiting on codes.
            mine = f"{self._member.id}:{self._member.token}"
            await self._member.call(lambda r: r.eval(_RESIGN, 1, self._leader_key, mine), 0)
            await self._member.publish({"t": "leader", "gone": self._member.id})
        await self._stop_leading()
        for task in list(self._handoffs):
            task.cancel()
        await self.alone.aclose()
        from .._exceptions import ClientClosedError

        error = ClientClosedError("the gsim Client was closed while waiting for a code")
        for watch in list(self._watches.values()):
            watch.settle(error=error)
        self._watches.clear()

    async def watched_by_live_members(self) -> set[str]:
        """Every order some live member waits on."""

        async def read(r: aioredis.Redis) -> list[Any]:
            return list(await r.hkeys(self._watch_key))

        nothing: list[Any] = []
        entries = await self._member.call(read, nothing)
        live = await self._member.alive()
        found = set()
        for field in entries:
            order_id, _, member = str(field).rpartition("|")
            if member in live:
                found.add(order_id)
        return found

    # -- registrations and results ----------------------------------------------------------

    async def _register(self, watch: Watch) -> None:
        if self._watches.get(watch.order.id) is not watch:
            return  # settled (and unregistered) while this waited its turn
        order = watch.order
        entry = json.dumps(
            {
                "service": order.service,
                "phone": order.phone_number,
                "created": order.created_at and format_datetime(order.created_at),
                "floor": _finite(self._source.created_floor(order)),
                "sent": self._source.sent_at(order),
                "expires": order.expires_at and format_datetime(order.expires_at),
                "interval": watch.interval,
            }
        )
        field = f"{order.id}|{self._member.id}"
        result_key = self._member.key("result", order.id)

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.hset(self._watch_key, field, entry)
            pipe.get(result_key)
            return await pipe.execute()

        written = await self._member.call(write, None)
        if written is None:
            self._hand_to_alone(watch)  # Redis went away: watch it here
        elif written[1]:
            self._settle(json.loads(written[1]))
        elif watch.done.is_set():
            self._unregister(order.id)  # its result came while this was written

    async def _register_all(self) -> None:
        for watch in list(self._watches.values()):
            await self._register(watch)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "result":
            self._settle(event.get("order"))
        elif kind == "leader" and self._elect is not None:
            self._elect.set()  # the leader left: try to take over now

    def _settle(self, data: Any) -> None:
        try:
            order = _order_from(data)
        except Exception:
            return
        watch = self._watches.get(order.id)
        if watch is None or watch.done.is_set():
            return
        if not _same_order(watch.order, order):
            # Another order under the same id (one from before a test server's restart):
            # not this wait's answer, which the leader's own poll will give.
            return
        merged = watch.order.merged(order)
        if self._on_update is not None and merged != watch.order:
            with contextlib.suppress(Exception):
                self._on_update(merged)
        if is_settled(merged):
            watch.settle(merged)
            self._watches.pop(order.id, None)
            self._unregister(order.id)

    def _hand_to_alone(self, watch: Watch) -> None:
        """Redis is gone: poll this member's order here, and settle the waiters from it."""

        async def follow() -> None:
            mine = self.alone.watch(watch.order, watch.interval)
            try:
                await mine.done.wait()
            finally:
                self.alone.unwatch(mine)
            if not watch.done.is_set():
                watch.settle(mine.order, mine.error)
                self._watches.pop(watch.order.id, None)

        task = asyncio.get_running_loop().create_task(follow())
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    def revoked(self, revocation: Revocation, order_ids: Iterable[str]) -> None:
        """The fleet took this member over: its waits on the orders taken end at once."""
        seconds = self._member.settings.dead_after
        for order_id in order_ids:
            why = (
                f"order {order_id} was taken over by the fleet (member {revocation.by}), "
                f"which refunds it: this process was unresponsive for "
                f"{revocation.unresponsive:.0f} s, longer than dead_after ({seconds:g} s)"
            )
            self._taken[order_id] = why
            while len(self._taken) > _TAKEN_MAX:
                self._taken.popitem(last=False)
            waiting = self._watches.pop(order_id, None)
            if waiting is not None and not waiting.done.is_set():
                waiting.settle(error=NoCodeError(why, order=waiting.order))
            self.alone.fail(order_id, functools.partial(_taken_error, why))

    # -- leading ----------------------------------------------------------------------------

    async def _lead(self) -> None:
        settings = self._member.settings
        lease = int(settings.lease * 1000)
        self._elect = asyncio.Event()
        while not self._closed:
            if not self._member.active:
                await self._stop_leading()
                for watch in list(self._watches.values()):
                    if not watch.done.is_set():
                        self._hand_to_alone(watch)
                self._watches.clear()
                await asyncio.sleep(settings.heartbeat)
                continue

            leading = await self._member.fenced(_CLAIM, (self._leader_key,), lease) == 1
            if leading and not self._leading:
                log.info("fleet: this process now polls for every member (leader)")
                self._leading = True
                self._poller = Watcher(self._source, self._interval, None)
            elif not leading and self._leading:
                await self._stop_leading()
            if self._leading:
                await self._sync_polls()
            self._elect.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._elect.wait(), min(settings.lease / 3, self._interval))

    async def _stop_leading(self) -> None:
        self._leading = False
        self._published.clear()
        poller, self._poller = self._poller, None
        for _, task in self._polled.values():
            task.cancel()
        self._polled.clear()
        if poller is not None:
            await poller.aclose()

    async def _sync_polls(self) -> None:
        # The ids are read every round, an entry's details only when it is new.
        async def keys(r: aioredis.Redis) -> list[Any]:
            return list(await r.hkeys(self._watch_key))

        fields = await self._member.call(keys, None)
        if fields is None or self._poller is None:
            return
        new = [str(f) for f in fields if str(f) not in self._entries]
        if new:

            async def details(r: aioredis.Redis) -> list[Any]:
                return list(await r.hmget(self._watch_key, new))

            nothing: list[Any] = []
            values = await self._member.call(details, nothing)
            for field, raw in zip(new, values, strict=False):
                if raw is not None:
                    self._entries[field] = str(raw)
        for field in set(self._entries) - {str(f) for f in fields}:
            del self._entries[field]
        entries = self._entries
        # A member whose process is merely stalled may beat late: only one silent for
        # ``dead_after`` (or whose process is gone) is taken as dead, and its waits
        # dropped (its waiter died with it); until then its orders are polled.
        alive = await self._member.alive()
        # Dropped only once the member has no epoch (taken over, or left): one that beat
        # again in between keeps its epoch, is never taken over, and would never register
        # again; its waits would be polled by nobody.
        members: set[str] = set()
        if any(f.rpartition("|")[2] not in alive for f in entries):

            async def with_epochs(r: aioredis.Redis) -> set[str]:
                return {str(m) for m in await r.hkeys(self._member.epochs)}

            members = await self._member.call(with_epochs, {f.rpartition("|")[2] for f in entries})
        wanted: dict[str, dict[str, Any]] = {}
        gone: list[str] = []
        for field, raw in entries.items():
            order_id, _, member = str(field).rpartition("|")
            if member not in alive and member not in members:
                gone.append(str(field))
                continue
            if member not in alive:
                continue  # silent, not yet taken over: its orders wait for the takeover
            with contextlib.suppress(ValueError, TypeError):
                wanted[order_id] = json.loads(raw)
        if gone:
            await self._member.call(lambda r: r.hdel(self._watch_key, *gone), 0)
            for field in gone:
                self._entries.pop(field, None)
        if not self._has_poller():
            return  # leadership ended while Redis answered
        for order_id in list(self._polled):
            if order_id not in wanted:
                _, task = self._polled.pop(order_id)
                task.cancel()
        now = time.monotonic()
        while self._published and (
            len(self._published) > _PUBLISHED_MAX
            or next(iter(self._published.values())) < now - _RESULT_TTL
        ):
            self._published.popitem(last=False)
        stale = [
            order_id
            for order_id, at in self._published.items()
            if order_id in wanted and now - at > 2 * self._interval
        ]
        if stale:
            await self._publish_again({order_id: wanted[order_id] for order_id in stale})
            if not self._has_poller():
                return  # leadership ended meanwhile (the member is closing, or lost it)
        for order_id, info in wanted.items():
            if order_id not in self._polled and order_id not in self._published:
                self._poll(order_id, info)

    async def _publish_again(self, registered: dict[str, dict[str, Any]]) -> None:
        """Results published a while ago whose waiters are still registered.

        A waiter may have missed the event (it was resubscribing) or registered after
        it: publish the stored result again, with no API request. Where the stored
        result is gone (evicted, Redis restarted) or is of another order than the one
        registered under its id, the order is polled again.
        """
        order_ids = list(registered)
        keys = [self._member.key("result", order_id) for order_id in order_ids]

        async def read(r: aioredis.Redis) -> list[Any]:
            return list(await r.mget(keys))

        stored = await self._member.call(read, None)
        if stored is None:
            return
        now = time.monotonic()
        for order_id, text in zip(order_ids, stored, strict=False):
            data = json.loads(text) if text is not None else None
            if data is None or not _is_result_of(data, order_id, registered[order_id]):
                self._published.pop(order_id, None)
                continue
            self._published[order_id] = now
            event = {"t": "result", "order": data}
            await self._member.publish(event)

    def _has_poller(self) -> bool:
        # A method, not an inline test: mypy would keep its narrowing across the awaits.
        return self._poller is not None

    def _poll(self, order_id: str, info: dict[str, Any]) -> None:
        assert self._poller is not None
        created = _stamp(info.get("created"))
        floor = info.get("floor")
        sent = info.get("sent")
        if created is None and isinstance(sent, (int, float)):
            # Pinned by the leader's own purchases, where the member's clock may not be.
            floor = self._source.floor_for(sent)
        if created is None and isinstance(floor, (int, float)) and floor > 0:
            # The earliest its server stamp can be: enough for the list pages' hint.
            created = datetime.fromtimestamp(floor, timezone.utc)
        stub = Order(
            id=order_id,
            service="",
            phone_number="",
            status=OrderStatus.PENDING,
            price=Decimal(0),
            created_at=created,
            expires_at=_stamp(info.get("expires")),
        )
        watch = self._poller.watch(stub, float(info.get("interval") or self._interval))

        async def publish() -> None:
            try:
                await watch.done.wait()
            finally:
                if self._poller is not None:
                    self._poller.unwatch(watch)
            if watch.error is not None:
                return  # e.g. 404: the waiter times out and finds out itself
            text = json.dumps({"t": "result", "order": order_to_wire(watch.order)})
            result_key = self._member.key("result", order_id)

            async def write(r: aioredis.Redis) -> Any:
                stored = json.dumps(order_to_wire(watch.order))
                channel = self._member.channel
                return await r.eval(_RESULT, 1, result_key, stored, _RESULT_TTL, channel, text)

            if await self._member.call(write, None) is not None:
                self._published[order_id] = time.monotonic()
                self._published.move_to_end(order_id)
            self._polled.pop(order_id, None)

        task = asyncio.get_running_loop().create_task(publish())
        self._polled[order_id] = (watch, task)


def _taken_error(why: str, order: Order) -> NoCodeError:
    return NoCodeError(why, order=order)


def _is_result_of(data: Any, order_id: str, info: dict[str, Any]) -> bool:
    """Whether a stored result can answer the registration ``info`` of ``order_id``."""
    try:
        stored = _order_from(data)
    except Exception:
        return False
    registered = Order(
        id=order_id,
        service=str(info.get("service") or ""),
        phone_number=str(info.get("phone") or ""),
        status=OrderStatus.PENDING,
        price=Decimal(0),
        created_at=_stamp(info.get("created")),
        expires_at=_stamp(info.get("expires")),
    )
    return _same_order(registered, stored)


def _finite(value: float) -> float | None:
    return value if value not in (float("inf"), float("-inf")) else None


def _stamp(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    from .._converter import parse_datetime

    try:
        return parse_datetime(text)
    except ValueError:
        return None
