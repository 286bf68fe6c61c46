"""The fleet's journal: every member's obligations in Redis, taken over when it dies.

Each member keeps its rows (the same rows as a file journal: purchases on the wire,
orders owed) in one hash, ``owed:<member>``, and names itself in the ``journaled``
set. A purchase's intent is written before the purchase leaves; the other changes are
queued and written in pipelines by one task. When Redis comes back (restarted, maybe
empty), the member writes every row it still has again.

The watcher's leader looks after the dead: a member whose heartbeat has lapsed for
ten heartbeats (10 s by default) has its hash moved into the
leader's own, atomically (a Lua script, so two leaders in a hand-over never take the
same rows), and the leader's recovery reconciles its purchases that were on the wire
and refunds its orders: at once for a wait or an activation, whose waiter died with
the member, before expiry for an order a program held.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from .. import _constants as C
from .._converter import dumps
from .._journal import Entry, bounds_of
from ._member import Member

log = logging.getLogger("gsim_async")

#: Move a dead member's rows into the taker's hash; returns them (field, value, ...).
_TAKE_OVER = """
local rows = redis.call('HGETALL', KEYS[1])
-- One field at a time: unpack() of thousands of rows would overflow Lua's stack.
for i = 1, #rows, 2 do
  redis.call('HSET', KEYS[2], rows[i], rows[i + 1])
end
if #rows > 0 then
  redis.call('SADD', KEYS[3], ARGV[2])
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
return rows
"""


class FleetJournal:
    """One member's rows in Redis (an ``_obligations.Sink``), and the leader's custody."""

    def __init__(
        self,
        member: Member,
        *,
        leading: Callable[[], bool],
        take_over: Callable[[Sequence[Entry]], None],
    ) -> None:
        self._member = member
        self._leading = leading
        self._take_over = take_over
        self._index = member.key("journaled")
        self._key = self._owed_key(member.id)
        #: ref → its row as written (JSON): what a restarted Redis is given again.
        self._rows: dict[str, str] = {}
        self._dirty: dict[str, str | None] = {}
        self._wake = asyncio.Event()
        member.on_rejoin(self._rewrite)

    def _owed_key(self, member_id: str) -> str:
        return self._member.key("owed", member_id)

    def start(self) -> None:
        """Write queued rows, and look after dead members while this one leads."""
        self._member.spawn(self._flush(), "journal")
        self._member.spawn(self._custody(), "custody")

    # -- the sink ---------------------------------------------------------------------------

    async def intent(
        self,
        ref: str,
        *,
        kind: str,
        purpose: str,
        request: dict[str, Any],
        sent: float,
        clock: tuple[float, float] | None = None,
    ) -> None:
        """Write a purchase's intent before it leaves (skipped while Redis is away)."""
        row = dumps(
            {
                "kind": kind,
                "state": "wire",
                "purpose": purpose,
                "request": request,
                "sent": sent,
                "clock": clock,
            }
        )
        self._rows[ref] = row
        self._dirty.pop(ref, None)

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.hset(self._key, ref, row)
            pipe.sadd(self._index, self._member.id)
            return await pipe.execute()

        await self._member.call(write, None)

    def leaving(self, ref: str, sent: float) -> None:
        """The purchase's request leaves now (written with the next pipeline)."""
        self._update(ref, sent=sent, stamped=True)

    def owe(
        self,
        ref: str,
        *,
        kind: str,
        purpose: str,
        item_id: str,
        item: dict[str, Any],
        deadline: float | None,
        action: str | None,
        sent: float | None = None,
        received: float | None = None,
    ) -> None:
        """``item_id`` is held: owed by ``deadline``, refunded by ``action``."""
        row = {
            "kind": kind,
            "state": "owed",
            "purpose": purpose,
            "item_id": item_id,
            "item": item,
            "deadline": deadline,
            "action": action,
            "sent": sent,
        }
        self._set(ref, dumps(row))

    def due(self, ref: str, *, purpose: str, deadline: float | None, action: str | None) -> None:
        """How an owed order's refund falls due changed."""
        self._update(ref, purpose=purpose, deadline=deadline, action=action)

    def done(self, ref: str, outcome: str) -> None:
        """``ref`` ended: its row goes."""
        if self._rows.pop(ref, None) is None and ref not in self._dirty:
            return
        self._dirty[ref] = None
        self._wake.set()

    def baseline(self, kind: str, ids: Iterable[str], newest: str | None) -> None:
        """Not needed in a fleet: ownership across its members is exact."""

    def foreign(self) -> None:
        """Kept by the fleet already (its ``foreign`` key), for every member."""

    async def flushed(self) -> None:
        """Returns once every queued change is written (while Redis is reachable)."""
        await self.flush()

    def _update(self, ref: str, **changes: Any) -> None:
        text = self._rows.get(ref)
        if text is not None:
            self._set(ref, dumps({**json.loads(text), **changes}))

    def _set(self, ref: str, row: str) -> None:
        self._rows[ref] = row
        self._dirty[ref] = row
        self._wake.set()

    # -- writing ----------------------------------------------------------------------------

    async def _flush(self) -> None:
        while not self._member.closed:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every queued change now (one pipeline)."""
        batch, self._dirty = self._dirty, {}
        if not batch:
            return
        if not self._member.active:
            # While Redis is away the changes wait (its rejoin writes them, and knows
            # which rows ended meanwhile).
            self._dirty = {**batch, **self._dirty}
            return
        gone = [ref for ref, row in batch.items() if row is None]
        rows = {ref: row for ref, row in batch.items() if row is not None}

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            if rows:
                pipe.hset(self._key, mapping=dict[Any, Any](rows))
                pipe.sadd(self._index, self._member.id)
            if gone:
                pipe.hdel(self._key, *gone)
            return await pipe.execute()

        if await self._member.call(write, None) is None:
            self._dirty = {**batch, **self._dirty}

    async def _rewrite(self) -> None:
        """Redis is back (maybe empty): write every row this member still has.

        Rows in this member's hash that it does not know are taken over too: a dead
        member's rows moved here by a takeover whose answer was lost on the way.
        """
        gone = {ref for ref, row in self._dirty.items() if row is None}
        self._dirty.clear()

        async def read(r: aioredis.Redis) -> dict[str, str]:
            return {str(k): str(v) for k, v in (await r.hgetall(self._key)).items()}

        there = await self._member.call(read, None)
        if there is None:
            return  # down again: the next rejoin tries again
        unknown = {ref: text for ref, text in there.items() if ref not in self._rows}
        stale = [ref for ref in unknown if ref in gone]
        adopted = {ref: text for ref, text in unknown.items() if ref not in gone}
        self._rows.update(adopted)
        rows = dict(self._rows)

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=True)
            if stale:
                pipe.hdel(self._key, *stale)
            if rows:
                pipe.hset(self._key, mapping=dict[Any, Any](rows))
                pipe.sadd(self._index, self._member.id)
            return await pipe.execute()

        await self._member.call(write, None)
        entries = [e for ref, text in adopted.items() if (e := _entry(ref, text)) is not None]
        if entries:
            log.warning("fleet: taking over %d row(s) found under this member", len(entries))
            self._take_over(entries)

    # -- custody of the dead -----------------------------------------------------------------

    async def _custody(self) -> None:
        settings = self._member.settings
        dead_after = C.FLEET_DEAD_AFTER_BEATS * settings.heartbeat
        while not self._member.closed:
            await asyncio.sleep(settings.heartbeat)
            if self._member.active and self._leading():
                try:
                    await self.sweep(dead_after)
                except Exception:  # a bug here must not stop the custody of the next dead
                    log.exception("fleet: taking over a dead member's obligations failed")

    async def sweep(self, dead_after: float) -> int:
        """Take over the rows of every member silent for ``dead_after`` s; how many rows."""

        async def read(r: aioredis.Redis) -> set[str]:
            return {str(m) for m in await r.smembers(self._index)}

        nobody: set[str] = set()
        journaled = await self._member.call(read, nobody)
        if not journaled:
            return 0
        alive = await self._member.members_within(dead_after)
        if not self._member.active:
            return 0  # "nobody is alive" would then only mean "no answer"
        taken = 0
        for dead in sorted(journaled - alive):
            rows = await self._member.call(functools.partial(self._move, dead=dead), None)
            if not rows:
                continue
            texts = {str(ref): str(text) for ref, text in zip(rows[0::2], rows[1::2], strict=True)}
            # Now this member's rows: written again if Redis loses them.
            self._rows.update(texts)
            entries = [e for ref, text in texts.items() if (e := _entry(ref, text)) is not None]
            log.warning(
                "fleet: member %s is gone; taking over %d purchase(s) and order(s) it owed",
                dead,
                len(entries),
            )
            taken += len(entries)
            self._take_over(entries)
        return taken

    async def _move(self, r: aioredis.Redis, dead: str) -> Any:
        keys = (self._owed_key(dead), self._key, self._index)
        return await r.eval(_TAKE_OVER, 3, *keys, dead, self._member.id)


def _entry(ref: str, text: str) -> Entry | None:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    return Entry(
        ref=ref,
        run=0,
        kind=str(row.get("kind", "order")),
        state=str(row.get("state", "owed")),
        purpose=str(row.get("purpose", "order")),
        request=row.get("request"),
        sent=row.get("sent"),
        item_id=row.get("item_id"),
        item=row.get("item"),
        deadline=row.get("deadline"),
        action=row.get("action"),
        clock=bounds_of(row.get("clock")),
        stamped=bool(row.get("stamped")),
    )


__all__ = ["FleetJournal"]
