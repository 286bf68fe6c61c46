"""Exact ownership across a fleet: what every member holds and is buying, in Redis.

* ``held``: order and rental ids → the member that bought (or adopted) them. A member
  writes it before its purchase leaves the wire, and adopts after a lost answer only
  by an atomic ``HSETNX``: two members never take the same order.
* ``wire:<key>`` / ``lost:<key>``: per member, purchases of a key on the wire and
  purchases whose answer was lost; counts of members that stopped beating are ignored.
* ``drain:<key>``: a member is about to list the account for that key; others hold
  their purchases of it back until it is done (with a lease, in case it dies).
* ``foreign``: another buyer (not a member) was seen on the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from .. import _constants as C
from .._ownership import Key, Ownership
from ._member import Member

#: Seconds between checks of a drained key, and of sightings of unknown orders.
_POLL = 0.05
_SIGHTINGS = 0.5
#: Seconds after (re)joining before sightings are judged: every live member has
#: reconnected (they retry every second) and written its holdings again by then.
_REJOIN_GRACE = 5.0
#: Ids settled as some member's (or already reported), not checked again; the oldest go
#: first. A leader reads every member's orders on every list page: without this it
#: would ask Redis about each of them again every round.
_KNOWN = 20_000


def _name(key: Key) -> str:
    return "|".join(key)


class FleetBook:
    """A member's share of the fleet's ownership records (``_reconcile.SharedBook``)."""

    def __init__(self, member: Member, ownership: Ownership) -> None:
        self._member = member
        self._ownership = ownership
        self._held = member.key("held")
        self._sightings: dict[str, Key] = {}
        self._known: OrderedDict[str, None] = OrderedDict()
        self._foreign_checked = 0.0
        self._foreign_seen = False
        self._judge_from = 0.0  # monotonic
        #: This member's purchases on the wire and lost, per key: written back when Redis
        #: loses them (else decrements after a wipe leave counts below zero for good).
        self._wire: dict[str, int] = {}
        self._lost: dict[str, int] = {}
        member.on_rejoin(self._rejoined)

    @property
    def active(self) -> bool:
        """Whether the fleet is reachable."""
        return self._member.active

    def start(self) -> None:
        """Check other members' sightings of unknown orders in the background."""
        self._member.spawn(self._check_sightings(), "sightings")

    async def _rejoined(self) -> None:
        """Redis is back, maybe empty: hold again in it every id this member holds.

        Until every member has done the same, an order missing from ``held`` proves
        nothing: sightings wait. (Without this, after Redis restarted empty the orders
        members bought before, or alone while it was down, looked like another buyer's,
        and for an hour no lost purchase answer was matched: each order left charged.)
        """
        # Every member notices a wipe within a heartbeat and writes back what it holds;
        # a member joining just after one cannot tell, so every join waits as long.
        grace = max(_REJOIN_GRACE, 5 * self._member.settings.heartbeat)
        self._judge_from = time.monotonic() + grace
        ids = list(self._ownership.held_ids())
        me = self._member.id

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            if ids:
                pipe.hset(self._held, mapping=dict.fromkeys(ids, me))
            for kind, counts in (("wire", self._wire), ("lost", self._lost)):
                for name, count in counts.items():
                    pipe.hset(self._member.key(kind, name), me, max(count, 0))
            return await pipe.execute()

        if ids or self._wire or self._lost:
            await self._member.call(write, None)

    @property
    def judging_from(self) -> float:
        """When (monotonic) an order missing from ``held`` proves something again."""
        return self._judge_from

    def _count(self, counts: dict[str, int], name: str, delta: int) -> None:
        count = counts.get(name, 0) + delta
        if count:
            counts[name] = count
        else:
            counts.pop(name, None)

    # -- purchases ------------------------------------------------------------------------

    async def begin(self, key: Key) -> None:
        """Wait while a member lists the account for ``key``; count this purchase on the wire."""
        drain = self._member.key("drain", _name(key))
        # Polled, not awaited on an event: the flag lives in Redis, set by another process.
        while await self._member.call(lambda r: r.exists(drain), 0):  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        wire = self._member.key("wire", _name(key))
        self._count(self._wire, _name(key), 1)
        await self._member.call(lambda r: r.hincrby(wire, self._member.id, 1), 0)

    async def end(self, key: Key, item_id: str | None) -> None:
        """Off the wire (holding ``item_id`` for this member first)."""
        wire = self._member.key("wire", _name(key))
        self._count(self._wire, _name(key), -1)

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=True)
            if item_id is not None:
                pipe.hset(self._held, item_id, self._member.id)
            pipe.hincrby(wire, self._member.id, -1)
            return await pipe.execute()

        await self._member.call(write, None)

    async def lost(self, key: Key, delta: int) -> None:
        """A purchase of ``key`` lost its answer (+1) or was resolved (-1)."""
        lost = self._member.key("lost", _name(key))
        self._count(self._lost, _name(key), delta)
        await self._member.call(lambda r: r.hincrby(lost, self._member.id, delta), 0)

    async def quiet(self, key: Key, timeout: float) -> None:
        """Hold purchases of ``key`` back fleet-wide until no member has one on the wire."""
        drain = self._member.key("drain", _name(key))
        lease = int(max(timeout, 1.0) * 1000)
        await self._member.call(lambda r: r.set(drain, self._member.id, px=lease), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.active:
            on_the_wire, _ = await self.counts(key)
            if on_the_wire <= 0:
                return
            await asyncio.sleep(_POLL)

    async def release(self, key: Key) -> None:
        """Let purchases of ``key`` go again."""
        drain = self._member.key("drain", _name(key))
        await self._member.call(lambda r: r.delete(drain), 0)

    async def counts(self, key: Key) -> tuple[int, int]:
        """Purchases of ``key`` on the wire and lost, over the live members."""
        # Read fresh, never from a cache: a member that joined a moment ago counts too,
        # or its purchase's order would look free to a listing. A member the fleet
        # counts as dead does not: its purchases are the leader's to reconcile.
        settings = self._member.settings
        live = await self._member.members_within(settings.dead_after)
        live -= self._member.proven_dead
        name = _name(key)
        wire, lost = self._member.key("wire", name), self._member.key("lost", name)

        async def read(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.hgetall(wire)
            pipe.hgetall(lost)
            return await pipe.execute()

        nothing: list[dict[str, str]] = [{}, {}]
        result = await self._member.call(read, nothing)
        return tuple(  # type: ignore[return-value]
            sum(max(int(n), 0) for m, n in counts.items() if m in live) for counts in result
        )

    # -- holding --------------------------------------------------------------------------

    async def held(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` a member holds."""
        if not ids:
            return set()
        owners = await self._owners(ids)
        return {i for i, owner in zip(ids, owners, strict=False) if owner is not None}

    async def _owners(self, ids: Sequence[str]) -> list[Any]:
        async def read(r: aioredis.Redis) -> list[Any]:
            return list(await r.hmget(self._held, list(ids)))

        nobody: list[Any] = []
        return await self._member.call(read, nobody)

    async def claim(self, item_id: str) -> bool:
        """Hold ``item_id`` for this member unless a member holds it already."""
        return bool(
            await self._member.call(lambda r: r.hsetnx(self._held, item_id, self._member.id), 0)
        )

    async def claimed(self, ids: Sequence[str], watched: set[str]) -> set[str]:
        """Which of ``ids`` a live member holds, or anyone waits on (``cancel_stale``)."""
        if not ids:
            return set()
        live = await self._member.alive()
        owners = await self._owners(ids)
        mine = {i for i, o in zip(ids, owners, strict=False) if o in live}
        return mine | (set(ids) & watched)

    # -- another buyer --------------------------------------------------------------------

    def sighted(self, item_id: str, key: Key, created_at: datetime | None) -> None:
        """An order this member does not hold: another member's, or another buyer's."""
        if item_id in self._known or item_id in self._sightings:
            return
        if len(self._sightings) < 10_000:
            self._sightings[item_id] = key

    def _reachable(self) -> bool:
        # A method, not an inline test: mypy would keep its narrowing across the awaits.
        return self._member.active

    def _know(self, item_id: str) -> None:
        self._known[item_id] = None
        if len(self._known) > _KNOWN:
            self._known.popitem(last=False)

    @property
    def foreign(self) -> bool:
        """Whether the fleet saw another buyer on the key recently (cached briefly)."""
        return self._foreign_seen

    def mark_foreign(self, item_id: str) -> None:
        """Tell the fleet another buyer bought ``item_id``."""
        self._foreign_seen = True
        key = self._member.key("foreign")
        self._member.spawn(
            self._member.call(lambda r: r.set(key, item_id, ex=int(C.FOREIGN_BUYER_MEMORY)), None),
            "foreign",
        )

    async def _check_sightings(self) -> None:
        foreign_key = self._member.key("foreign")
        while not self._member.closed:
            await asyncio.sleep(_SIGHTINGS)
            self._foreign_seen = bool(
                await self._member.call(lambda r: r.exists(foreign_key), self._foreign_seen)
            )
            if time.monotonic() < self._judge_from:
                continue  # just (re)joined: the others may not have written their holdings
            sightings, self._sightings = self._sightings, {}
            if not sightings or not self.active:
                continue
            held = await self.held(list(sightings))
            if not self._reachable():
                continue  # Redis went away mid-check: its "nobody" answers mean nothing
            for item_id, key in sightings.items():
                if item_id in held:
                    self._know(item_id)
                    continue
                on_the_wire, lost = await self.counts(key)
                if not self._reachable():
                    break  # its zeros mean "no answer", not "nobody is buying"
                if on_the_wire or lost:
                    continue  # a member's purchase may have made it: look again later
                self._know(item_id)
                with contextlib.suppress(Exception):
                    self._ownership.foreign(item_id)
