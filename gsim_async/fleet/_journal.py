"""The fleet's journal: every member's obligations in Redis, taken over when it dies.

Each member keeps its rows (the same rows as a file journal: purchases on the wire,
orders owed) in one hash, ``owed:<member>``, and names itself in the ``journaled``
set. A purchase's intent is written before the purchase leaves; the other changes are
queued and written in pipelines by one task. When Redis comes back (restarted, maybe
empty), the member writes every row it still has again.

Every write is fenced by the member's epoch (``Member.fenced``): a member the fleet
took over cannot write rows again until it has joined again and learnt what was taken.

The watcher's leader looks after the dead: a member silent for ``dead_after`` (35 s by
default), or on this machine with its process gone, has its hash moved into the
leader's own, atomically (a Lua script that checks the leader's lease and epoch, so
two leaders in a hand-over never take the same rows, and the member's silence, so one
that beat meanwhile is left alone), and the leader's recovery reconciles its purchases
that were on the wire and refunds its orders: at once for a wait or an activation,
whose waiter died with the member, before expiry for an order a program held.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from .._converter import dumps
from .._journal import Entry, bounds_of
from ._member import Member, Revocation

log = logging.getLogger("gsim_async")

#: How long a member that was taken over can still learn what was taken (seconds).
_TAKEN_KEPT = 86_400

# Fenced (``Member.fenced``): write this member's rows. KEYS: epochs, owed:<member>,
# journaled. ARGV: member, epoch, how many rows to set, then (ref, row) pairs, then the
# refs to delete.
_WRITE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if n > 0 then redis.call('SADD', KEYS[3], ARGV[1]) end
while i <= #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
  i = i + 1
end
return 1
"""

# Fenced: move a dead member's rows into the taker's hash; returns them (field, value,
# ...), or an empty list when the taker does not lead or the member beat after all.
# KEYS: epochs, owed:<dead>, owed:<taker>, journaled, leader, members, taken:<dead>,
# revoked:<dead>, leaving. ARGV: taker, its epoch, the dead member, dead_after (ms), '1'
# when its process is known to be gone, how long the dead member may learn of it (s),
# '1' when the taker is the last member of a fleet stopping (it takes members leaving),
# then for the last: how recent a beat must be to stay (ms), and the members known dead.
# The rows go one field at a time: unpack() of thousands would overflow Lua's stack.
# The dead member loses its epoch (whatever it writes later is refused), and what was
# taken is kept for it: if it was only stalled, it learns what was done in its name.
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead_after = tonumber(ARGV[4])
local leaving = redis.call('HEXISTS', KEYS[9], ARGV[3]) == 1
if ARGV[7] == '1' then
  -- The last member of a fleet stopping together: no leader stays to do it. It must be
  -- leaving itself, with no other member staying (as Member.stopping counts them: a
  -- beat within ARGV[8] ms, not leaving, not among the dead it names, ARGV[9...]).
  if redis.call('HEXISTS', KEYS[9], ARGV[1]) == 0 then return {} end
  local dead = {}
  for i = 9, #ARGV do dead[ARGV[i]] = true end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], now - tonumber(ARGV[8]), '+inf')) do
    if m ~= ARGV[1] and not dead[m] and redis.call('HEXISTS', KEYS[9], m) == 0 then
      return {}
    end
  end
elseif redis.call('GET', KEYS[5]) ~= ARGV[1] .. ':' .. ARGV[2] then
  return {}
end
local beat = tonumber(redis.call('ZSCORE', KEYS[6], ARGV[3]) or '0')
local gone = ARGV[5] == '1' or (ARGV[7] == '1' and leaving)
if not gone and beat > now - dead_after then return {} end
local rows = redis.call('HGETALL', KEYS[2])
for i = 1, #rows, 2 do
  redis.call('HSET', KEYS[3], rows[i], rows[i + 1])
  redis.call('HSET', KEYS[7], rows[i], rows[i + 1])
end
if #rows > 0 then
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('EXPIRE', KEYS[7], ARGV[6])
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[9], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('SET', KEYS[8], ARGV[1] .. ':' .. now, 'EX', ARGV[6])
return rows
"""


# What members said of themselves (epoch, where they run, leaving) outlives them only
# until the leader's next sweep: a member no longer in ``members`` (it left, or was
# forgotten three dead_afters after its last beat) with nothing owed is dropped, unless
# it was taken over in the last day (``gsim fleet status`` shows it until then).
# KEYS: members, journaled, epochs, info, leaving. ARGV: the prefix of revoked:<member>
# (the fleet's hash tag is in it: one slot).
_PRUNE = """
local gone = 0
for _, key in ipairs({KEYS[3], KEYS[4], KEYS[5]}) do
  for _, m in ipairs(redis.call('HKEYS', key)) do
    if not redis.call('ZSCORE', KEYS[1], m) and redis.call('SISMEMBER', KEYS[2], m) == 0
        and redis.call('EXISTS', ARGV[1] .. m) == 0 then
      redis.call('HDEL', key, m)
      gone = gone + 1
    end
  end
end
return gone
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
        if await self._write({ref: row}, []) is None:
            # Not written (Redis away, or this member's epoch refused): its rejoin
            # writes every row it has.
            self._dirty.setdefault(ref, row)

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
        if await self._write(rows, gone) is None:
            self._dirty = {**batch, **self._dirty}

    async def _write(self, rows: dict[str, str], gone: Sequence[str]) -> Any:
        """Set ``rows`` and delete ``gone`` in this member's hash, fenced by its epoch."""
        args: list[Any] = [len(rows)]
        for ref, row in rows.items():
            args += (ref, row)
        args += gone
        return await self._member.fenced(_WRITE, (self._key, self._index), *args)

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

        await self._write(rows, stale)
        entries = [e for ref, text in adopted.items() if (e := _entry(ref, text)) is not None]
        if entries:
            log.warning("fleet: taking over %d row(s) found under this member", len(entries))
            self._take_over(entries)

    # -- custody of the dead -----------------------------------------------------------------

    def revoked(self, revocation: Revocation) -> list[str]:
        """The fleet took this member over: the rows it took are no longer this member's.

        Returns the ids of the orders taken (a purchase taken on the wire is the
        leader's to reconcile). A row Redis had as a purchase on the wire that this
        member has since learnt the order of stays this member's, written again: the
        member holds that order fleet-wide, so the leader's reconciliation, which passes
        over held orders, would not find it, and nobody would refund it.
        """
        ids = []
        for ref, taken in revocation.rows.items():
            mine = self._rows.get(ref)
            if _item_id(taken) is None and mine is not None and _item_id(mine) is not None:
                self._set(ref, mine)
                continue
            self._rows.pop(ref, None)
            self._dirty.pop(ref, None)
            item_id = _item_id(taken)
            if item_id is not None:
                ids.append(item_id)
        return ids

    async def _custody(self) -> None:
        while not self._member.closed:
            await asyncio.sleep(self._member.settings.heartbeat)
            if self._member.active and self._leading():
                try:
                    await self.sweep()
                    await self._prune()
                except Exception:  # a bug here must not stop the custody of the next dead
                    log.exception("fleet: taking over a dead member's obligations failed")

    async def _prune(self) -> None:
        keys = [self._member.key(k) for k in ("members", "journaled", "epochs", "info", "leaving")]
        revoked = self._member.key("revoked", "")
        await self._member.call(lambda r: r.eval(_PRUNE, len(keys), *keys, revoked), 0)

    async def sweep(self, *, last: bool = False) -> int:
        """Take over the rows of every member the fleet counts as dead; how many rows.

        ``last``: this member is the last of a fleet stopping together (see
        ``Binding.stopping``): it takes the rows members leaving left to the fleet too.
        """

        async def read(r: aioredis.Redis) -> set[str]:
            return {str(m) for m in await r.smembers(self._index)}

        nobody: set[str] = set()
        journaled = await self._member.call(read, nobody)
        if not journaled:
            return 0
        alive = await self._member.alive()
        if not self._member.active:
            return 0  # "nobody is alive" would then only mean "no answer"
        proven = self._member.proven_dead
        taken = 0
        # The last member of a fleet stopping asks about every other member: the script
        # takes only those leaving or dead.
        candidates = journaled - {self._member.id} if last else journaled - alive
        for dead in sorted(candidates):
            rows = await self._take(dead, proven=dead in proven, last=last)
            if not rows:
                continue
            texts = {str(ref): str(text) for ref, text in zip(rows[0::2], rows[1::2], strict=True)}
            # Now this member's rows: written again if Redis loses them.
            self._rows.update(texts)
            entries = [e for ref, text in texts.items() if (e := _entry(ref, text)) is not None]
            log.warning(
                "fleet: member %s is gone (%s); taking over %d purchase(s) and order(s) it owed",
                dead,
                "its process ended" if dead in proven else "silent too long",
                len(entries),
            )
            taken += len(entries)
            self._take_over(entries)
        return taken

    async def _take(self, dead: str, *, proven: bool, last: bool) -> Any:
        keys = (
            self._owed_key(dead),
            self._key,
            self._index,
            self._member.key("leader"),
            self._member.key("members"),
            self._member.key("taken", dead),
            self._member.key("revoked", dead),
            self._member.key("leaving"),
        )
        dead_after = int(self._member.settings.dead_after * 1000)
        flags = ("1" if proven else "0", _TAKEN_KEPT, "1" if last else "0")
        staying = (self._member.staying_window, *self._member.proven_dead) if last else ()
        return await self._member.fenced(_TAKE_OVER, keys, dead, dead_after, *flags, *staying)


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


def _item_id(text: str) -> str | None:
    """The order or rental id a row (JSON) names, if any."""
    try:
        row = json.loads(text)
    except ValueError:
        return None
    item_id = row.get("item_id") if isinstance(row, dict) else None
    return item_id if isinstance(item_id, str) else None
