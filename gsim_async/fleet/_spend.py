"""The spend guard across a fleet: one spend total and one set of breakers, in Redis.

The rules are ``gsim_async._ledger``'s, applied by Lua scripts on Redis' clock so that
every member's purchase is admitted atomically against the same counts:

* ``spend`` (hash): ``total`` and ``reserved`` (millionths of a USD), the ``limit``
  the last member configured (for a reader without its own) and the ``window``: the
  longest a member asserted within it (entries leave by it, never earlier than a
  member with a longer window would count them);
  ``spend:at`` (sorted set) stamps each entry, ``spend:amt`` (hash) holds its amount
  as ``<micro>:<1 for a ticket, 0 for an item>``. Entries older than the window
  leave both, and the total, in the next script that runs.
* ``breaker:<service>|<country>`` (hash): a breaker's counts; ``breakers`` (set)
  names them.

Rebuilt after a Redis wipe: each member keeps what it contributed within the window
(its tickets and items) and the last state of each breaker it saw, and writes them
again when it rejoins (an entry or breaker already there is left as it is). While
Redis is unreachable a member admits purchases against its share of the room left
when it lost touch (that room over the members then alive), so members cut off
together cannot pass the limit either; what it did meanwhile is written when it
rejoins.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import redis.asyncio as aioredis

from .._guard import Admission
from .._guard_config import Breaker, Failure, SpendLimit
from .._ledger import (
    BREAKER_MEMORY_MS,
    TRIAL_LEASE_MS,
    BreakerKey,
    BreakerState,
    BreakerStatus,
    GuardStatus,
    Ledger,
    SpendStatus,
    Verdict,
    from_micro,
    to_micro,
)
from ._member import Member

log = logging.getLogger("gsim_async")

#: Entries written back per script call after a wipe.
_RESTORE_BATCH = 500
#: Writes queued while Redis is away, at most (the oldest go first).
_QUEUE = 10_000
#: Extra life of the spend keys beyond the window (ms), so a quiet fleet's counts expire.
_KEEP_MS = 3600 * 1000

# Trims entries older than the window (the longer of the caller's and the stored one)
# out of the sorted set, the amounts and the totals. KEYS: spend, spend:at, spend:amt.
_TRIM = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
-- HINCRBY, but never by 0 (Lua writes -0 as "-0", which Redis refuses).
local function incr(field, n)
  if n ~= 0 then return redis.call('HINCRBY', KEYS[1], field, n) end
  return tonumber(redis.call('HGET', KEYS[1], field)) or 0
end
-- Take an entry out of the amounts, the stamps and the totals.
local function drop(ref, v)
  local micro, ticket = string.match(v, '^(%d+):(%d)$')
  incr('total', -tonumber(micro))
  if ticket == '1' then incr('reserved', -tonumber(micro)) end
  redis.call('HDEL', KEYS[3], ref)
  redis.call('ZREM', KEYS[2], ref)
end
local function trim(now, window)
  local stored = tonumber(redis.call('HGET', KEYS[1], 'window')) or 0
  local w = math.max(window, stored)
  if w <= 0 then return w end
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - w))
  for _, ref in ipairs(old) do
    local v = redis.call('HGET', KEYS[3], ref)
    if v then drop(ref, v) else redis.call('ZREM', KEYS[2], ref) end
  end
  return w
end
local function keep(w)
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], w + tonumber(ARGV[#ARGV])) end
end
"""

# KEYS: spend, spend:at, spend:amt, breaker, members.
# ARGV: ticket, micro (-1: all the room left), floor, limit (-1: none), window ms,
# breaker on (1/0), dry (1/0), trial lease ms, live ms, keep ms.
# Returns {0, now, members, amount, total, reserved, trial} when admitted,
# {1, now, members, amount, total, reserved, retry ms (-1: none)} past the limit,
# {2, now, members, opened, until, trial until, run, no code, after code, last}.
_ADMIT = (
    _TRIM
    + """
local now = now_ms()
local window = tonumber(ARGV[5])
local w = trim(now, window)
local members = redis.call('ZCOUNT', KEYS[5], now - tonumber(ARGV[9]), '+inf')
local dry = ARGV[7] == '1'
local trial = 0
if ARGV[6] == '1' then
  local b = redis.call('HMGET', KEYS[4], 'opened', 'until', 'trial_until', 'run',
                       'no_code', 'after_code', 'last')
  local opened = tonumber(b[1]) or 0
  if opened > 0 then
    local untl = tonumber(b[2]) or 0
    local tu = tonumber(b[3]) or 0
    if now < untl or tu > now then
      return {2, now, members, opened, untl, tu, tonumber(b[4]) or 0, tonumber(b[5]) or 0,
              tonumber(b[6]) or 0, b[7] or ''}
    end
    if not dry then
      redis.call('HSET', KEYS[4], 'trial_until', now + tonumber(ARGV[8]), 'trial_ticket', ARGV[1])
      trial = 1
    end
  end
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total')) or 0
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
local limit = tonumber(ARGV[4])
local amount = 0
if limit >= 0 then
  local room = limit - total
  local micro = tonumber(ARGV[2])
  if micro < 0 then amount = math.max(room, tonumber(ARGV[3])) else amount = micro end
  if amount > room or room <= 0 then
    if trial == 1 then redis.call('HSET', KEYS[4], 'trial_until', 0, 'trial_ticket', '') end
    local retry = -1
    if amount <= limit then
      local excess = total + amount - limit
      local rows = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
      for i = 1, #rows, 2 do
        local v = redis.call('HGET', KEYS[3], rows[i])
        if v then excess = excess - tonumber(string.match(v, '^(%d+)')) end
        if excess <= 0 and (amount > 0 or excess < 0) then
          retry = math.max(tonumber(rows[i + 1]) + w - now, 0)
          break
        end
      end
    end
    return {1, now, members, amount, total, reserved, retry}
  end
end
if not dry and limit >= 0 then
  if redis.call('HSETNX', KEYS[3], ARGV[1], amount .. ':1') == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[1])
    total = incr('total', amount)
    reserved = incr('reserved', amount)
  end
  -- The fleet counts over the longest window a member asserted within that window:
  -- a shorter one takes over only once no member has asserted the longer one for as
  -- long (the counts never forget early what a member still counts).
  local at = tonumber(redis.call('HGET', KEYS[1], 'window_at')) or 0
  if window >= w or now - at > w then
    redis.call('HSET', KEYS[1], 'window', window, 'window_at', now)
  end
  redis.call('HSET', KEYS[1], 'limit', limit)
  keep(math.max(w, window))
end
return {0, now, members, amount, total, reserved, trial}
"""
)

# KEYS: spend, spend:at, spend:amt. ARGV: ticket, item, micro, limit (-1), window, keep.
# Returns {now, stamp of the item, total, over (1/0)}.
_COMMIT = (
    _TRIM
    + """
local now = now_ms()
local w = trim(now, tonumber(ARGV[5]))
local at = now
local v = redis.call('HGET', KEYS[3], ARGV[1])
if v then
  at = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1])) or now
  drop(ARGV[1], v)
end
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3] .. ':0') == 1 then
  redis.call('ZADD', KEYS[2], at, ARGV[2])
  incr('total', tonumber(ARGV[3]))
else
  at = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2])) or at
end
keep(w)
local total = tonumber(redis.call('HGET', KEYS[1], 'total')) or 0
local limit = tonumber(ARGV[4])
local over = 0
if limit >= 0 and total > limit then over = 1 end
return {now, at, total, over}
"""
)

# KEYS: spend, spend:at, spend:amt, breaker. ARGV: ref, kind ('1' ticket, '0' item).
# A ticket that bought nothing, or an item refunded, stops counting; a ticket that held
# the breaker's trial gives it back.
_DROP = (
    _TRIM
    + """
local v = redis.call('HGET', KEYS[3], ARGV[1])
if v and string.sub(v, -1) == ARGV[2] then drop(ARGV[1], v) end
if ARGV[2] == '1' and redis.call('HGET', KEYS[4], 'trial_ticket') == ARGV[1] then
  redis.call('HSET', KEYS[4], 'trial_until', 0, 'trial_ticket', '')
end
return 1
"""
)

# KEYS: breaker, breakers. ARGV: name, failure ('' for a success), detail, failures,
# cooldown ms, memory ms. Returns the state after it (see _state_of), {} when closed.
_OUTCOME = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return {now}
end
local run = redis.call('HINCRBY', KEYS[1], 'run', 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'last', ARGV[3]) end
redis.call('HSET', KEYS[1], 'touched', now)
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened')) or 0
local untl = 0
if opened > 0 or run >= tonumber(ARGV[4]) then
  if opened == 0 then redis.call('HSET', KEYS[1], 'opened', now) end
  untl = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'until', untl, 'trial_until', 0, 'trial_ticket', '')
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(untl - now, 0) + tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]) * 8)
return {now}
"""

# KEYS: breaker, breakers. ARGV: name, run, no_code, after_code, opened, until, last,
# touched, memory ms. A breaker this member knew, written back unless one is there.
_MERGE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'run', ARGV[2], 'no_code', ARGV[3], 'after_code', ARGV[4],
           'opened', ARGV[5], 'until', ARGV[6], 'last', ARGV[7], 'touched', ARGV[8],
           'trial_until', 0, 'trial_ticket', '')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[6]) - now, 0) + tonumber(ARGV[9]))
return 1
"""

# KEYS: spend, spend:at, spend:amt. ARGV: window ms, then (ref, stamp, micro, ticket)...,
# keep ms last. Entries this member contributed, written back unless there already.
_RESTORE = (
    _TRIM
    + """
local now = now_ms()
local w = trim(now, tonumber(ARGV[1]))
local added = 0
for i = 2, #ARGV - 1, 4 do
  local at = tonumber(ARGV[i + 1])
  local value = ARGV[i + 2] .. ':' .. ARGV[i + 3]
  if at >= now - w and redis.call('HSETNX', KEYS[3], ARGV[i], value) == 1 then
    redis.call('ZADD', KEYS[2], at, ARGV[i])
    incr('total', tonumber(ARGV[i + 2]))
    if ARGV[i + 3] == '1' then incr('reserved', tonumber(ARGV[i + 2])) end
    added = added + 1
  end
end
keep(w)
return added
"""
)

# KEYS: spend, spend:at, spend:amt, members. ARGV: window (0: the stored one), live ms,
# keep ms. Returns {now, total, reserved, stored limit, stored window, live members}.
_STATUS = (
    _TRIM
    + """
local now = now_ms()
local window = tonumber(ARGV[1])
if window <= 0 then window = tonumber(redis.call('HGET', KEYS[1], 'window')) or 0 end
if window > 0 then trim(now, window) end
local s = redis.call('HMGET', KEYS[1], 'total', 'reserved', 'limit', 'window')
local members = redis.call('ZCOUNT', KEYS[4], now - tonumber(ARGV[2]), '+inf')
return {now, tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or -1,
        tonumber(s[4]) or 0, members}
"""
)

_FIELDS = ("run", "no_code", "after_code", "opened", "until", "last", "touched", "trial_until")

Write = Callable[[aioredis.Redis], Awaitable[Any]]


def _name(key: BreakerKey) -> str:
    return f"{key[0]}|{key[1]}"


class FleetSpend:
    """A member's share of the fleet's spend guard (a ``gsim_async._guard.Store``)."""

    def __init__(self, member: Member, limit: SpendLimit | None, breaker: Breaker | None) -> None:
        self._member = member
        self._limit = limit
        self._breaker = breaker
        self._limit_micro = to_micro(limit.usd) if limit is not None else None
        self._window = int(limit.per.total_seconds() * 1000) if limit is not None else 0
        self._spend = (member.key("spend"), member.key("spend", "at"), member.key("spend", "amt"))
        self._index = member.key("breakers")
        #: What this member contributed: ref → (stamp on Redis' clock, micro, ticket).
        self._mine: dict[str, tuple[float, int, bool]] = {}
        #: The last state of each breaker this member saw (written back after a wipe).
        self._known: dict[BreakerKey, BreakerState] = {}
        #: Changes not written yet, in order (kept while Redis is away).
        self._queue: collections.deque[tuple[str, Write]] = collections.deque(maxlen=_QUEUE)
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        #: Redis' clock minus ours (ms), from the last script's answer.
        self._offset = 0.0
        self._total = 0
        self._members = 1
        self._heard = False
        #: Counts while Redis is unreachable: this member's share of the room left.
        self._fallback: Ledger | None = None
        self._share: int | None = None
        member.on_rejoin(self._rejoined)
        member.listen(self._event)

    @property
    def shared(self) -> bool:
        """The counts are the fleet's."""
        return True

    async def start(self) -> None:
        """Read the fleet's counts once (what a member cut off later shares), and write
        queued changes in the background."""
        if self._limit is not None and self._member.active:
            await self.status()
        self._member.spawn(self._writer(), "spend guard")

    # -- time -----------------------------------------------------------------------------

    def _now(self) -> float:
        """Redis' clock as this member last knew it (ms)."""
        return time.time() * 1000 + self._offset

    def _saw(self, redis_now: float) -> None:
        self._offset = float(redis_now) - time.time() * 1000

    def _wall(self, at: float) -> datetime:
        return datetime.fromtimestamp(at / 1000, timezone.utc)

    def _breaker_key(self, key: BreakerKey | None) -> str:
        # Every script names a breaker key, under the prefix, even when none applies.
        return self._member.key("breaker", _name(key) if key is not None else "-")

    # -- admitting ------------------------------------------------------------------------

    async def admit(self, admission: Admission) -> Verdict:
        """Admit a purchase against the fleet's counts (its share of them, cut off)."""
        # Once cut off, the share counts until the rejoin has written back what this
        # member did meanwhile (a restarted Redis is empty until then).
        if self._member.active and self._fallback is None:
            if self._queue:
                # This member's outcomes and refunds first: its own last failure must
                # count against its next purchase, as it would in one process.
                await self.flush()
            verdict = await self._member.call(lambda r: self._admit(r, admission), None)
            if verdict is not None:
                return verdict
        ledger = self._cut_off()
        now = self._now()
        verdict = ledger.admit(
            now,
            admission.ticket,
            micro=admission.micro,
            floor=admission.floor,
            limit=self._share,
            window_ms=self._window,
            key=admission.key,
            breaker=self._breaker,
            dry=admission.dry,
        )
        if verdict.ok and not admission.dry and self._limit_micro is not None:
            self._mine[admission.ticket] = (now, verdict.micro, True)
        if not verdict.ok and verdict.reason == "spend":
            note = (
                f"the fleet's Redis is unreachable: this member counts against its share "
                f"({from_micro(self._share or 0)} USD) of the room left when it lost touch"
                if self._heard
                else "the fleet's Redis is unreachable and this member never read the "
                "fleet's spend: it admits no purchase until Redis is back"
            )
            verdict = attrs.evolve(verdict, note=note)
        return verdict

    def _live_ms(self) -> int:
        # Members are counted alive as the fleet judges them (dead_after): a member only
        # stalled still spends its share when it resumes, so the shares of the room left
        # while Redis is away never add up to more than the room.
        return int(self._member.settings.dead_after * 1000)

    async def _admit(self, r: aioredis.Redis, admission: Admission) -> Verdict:
        limit = self._limit_micro if self._limit_micro is not None else -1
        micro = -1 if admission.micro is None else admission.micro
        live = self._live_ms()
        keys = (*self._spend, self._breaker_key(admission.key), self._member.key("members"))
        on = "1" if admission.key is not None and self._breaker is not None else "0"
        answer = await r.eval(
            _ADMIT,
            len(keys),
            *keys,
            admission.ticket,
            micro,
            admission.floor,
            limit,
            self._window,
            on,
            "1" if admission.dry else "0",
            TRIAL_LEASE_MS,
            live,
            _KEEP_MS,
        )
        kind, now, members = int(answer[0]), float(answer[1]), int(answer[2])
        self._saw(now)
        self._members = max(members, 1)
        self._heard = True
        if kind == 2:
            assert admission.key is not None
            state = BreakerState(
                opened_at=float(answer[3]),
                until=float(answer[4]),
                trial_until=float(answer[5]),
                run=int(answer[6]),
                no_code=int(answer[7]),
                after_code=int(answer[8]),
                last=str(answer[9] or ""),
            )
            self._known[admission.key] = state
            status = state.status(admission.key, now, self._wall)
            return Verdict(False, "breaker", retry_after=status.retry_after, breaker=status)
        amount, total, reserved = int(answer[3]), int(answer[4]), int(answer[5])
        self._total = total
        if kind == 1:
            retry = float(answer[6])
            return Verdict(
                False,
                "spend",
                micro=amount,
                total=total,
                reserved=reserved,
                retry_after=retry / 1000 if retry >= 0 else None,
            )
        if not admission.dry and self._limit_micro is not None:
            self._mine[admission.ticket] = (now, amount, True)
            self._prune(now)
        return Verdict(
            True,
            micro=amount,
            total=total,
            reserved=reserved,
            trial=bool(int(answer[6])),
        )

    def _cut_off(self) -> Ledger:
        """The counts while Redis is away: this member's share of the room left."""
        if self._fallback is None:
            self._fallback = Ledger(wall=self._wall)
            for key, state in self._known.items():
                self._fallback.breakers[key] = BreakerState(**vars(state))
            if self._limit_micro is not None and not self._heard:
                # Never heard what the fleet spent: nothing is admitted until Redis is back
                # (every member granting itself the whole limit would pass it).
                self._share = 0
                log.warning(
                    "fleet: Redis is unreachable and this member never read the fleet's "
                    "spend: the spend guard admits no purchase until it is back"
                )
            elif self._limit_micro is not None:
                room = max(self._limit_micro - self._total, 0)
                self._share = room // self._members
                log.warning(
                    "fleet: Redis is unreachable; the spend guard counts this member's "
                    "purchases against its share of the room left (%s of %s USD, %d "
                    "member(s)) until it is back",
                    from_micro(self._share),
                    from_micro(room),
                    self._members,
                )
        return self._fallback

    def _prune(self, now: float) -> None:
        if self._window and len(self._mine) % 64 == 0:
            cutoff = now - self._window
            for ref in [r for r, (at, _, _) in self._mine.items() if at < cutoff]:
                del self._mine[ref]

    # -- after a purchase -----------------------------------------------------------------

    async def commit(self, ticket: str, item: str, micro: int) -> bool:
        """The purchase bought ``item`` at ``micro``; whether that passes the limit."""
        limit = self._limit_micro if self._limit_micro is not None else -1
        held = self._mine.pop(ticket, None)
        at = held[0] if held is not None else self._now()
        self._mine[item] = (at, micro, False)

        async def write(r: aioredis.Redis) -> Any:
            args = (ticket, item, micro, limit, self._window, _KEEP_MS)
            return await r.eval(_COMMIT, 3, *self._spend, *args)

        if self._member.active and self._fallback is None:
            answer = await self._member.call(write, None)
            if answer is not None:
                self._saw(float(answer[0]))
                self._mine[item] = (float(answer[1]), micro, False)
                self._total = int(answer[2])
                return bool(int(answer[3]))
        # Cut off: counted in this member's share now, written to Redis when it is back.
        self._enqueue("commit", write)
        ledger = self._cut_off()
        return ledger.commit(self._now(), ticket, item, micro, self._share)

    def release(self, ticket: str, key: BreakerKey | None) -> None:
        """The purchase bought nothing."""
        self._mine.pop(ticket, None)
        if self._fallback is not None:
            self._fallback.release(ticket, key)
        self._drop(ticket, "1", key)

    def refund(self, item: str) -> None:
        """``item`` was refunded in full."""
        self._mine.pop(item, None)
        if self._fallback is not None:
            self._fallback.refund(item)
        self._drop(item, "0", None)

    def _drop(self, ref: str, kind: str, key: BreakerKey | None) -> None:
        keys = (*self._spend, self._breaker_key(key))

        async def write(r: aioredis.Redis) -> Any:
            return await r.eval(_DROP, 4, *keys, ref, kind)

        self._enqueue("drop", write)

    def holds(self, item: str) -> bool:
        """Whether this member counts ``item``."""
        return item in self._mine

    def outcome(self, key: BreakerKey, failure: Failure | None, detail: str) -> None:
        """A verification's outcome, for the fleet's breaker of ``key``."""
        breaker = self._breaker
        if breaker is None:
            return
        # This member's copy follows the same rules, for a wipe and for being cut off.
        copy = Ledger(wall=self._wall)
        if key in self._known:
            copy.breakers[key] = self._known[key]
        copy.outcome(self._now(), key, failure, detail, breaker)
        if key in copy.breakers:
            self._known[key] = copy.breakers[key]
        else:
            self._known.pop(key, None)
        if self._fallback is not None:
            self._fallback.outcome(self._now(), key, failure, detail, breaker)
        keys = (self._breaker_key(key), self._index)
        args = (
            _name(key),
            failure or "",
            detail,
            breaker.failures,
            int(breaker.cooldown.total_seconds() * 1000),
            BREAKER_MEMORY_MS,
        )

        async def write(r: aioredis.Redis) -> Any:
            return await r.eval(_OUTCOME, 2, *keys, *args)

        self._enqueue("outcome", write)

    # -- writing --------------------------------------------------------------------------

    def _reachable(self) -> bool:
        # A method, not an inline test: mypy would keep its narrowing across the awaits.
        return self._member.active

    def _enqueue(self, what: str, write: Write) -> None:
        self._queue.append((what, write))
        self._wake.set()

    async def _writer(self) -> None:
        while not self._member.closed:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write the queued changes, in order (they wait while Redis is away)."""
        # One writer at a time: a change written twice would count twice.
        async with self._flushing:
            while self._queue and self._member.active:
                _what, write = self._queue[0]
                result = await self._member.call(write, None)
                if result is None and not self._reachable():
                    return  # down: the rejoin writes it
                self._queue.popleft()

    async def _rejoined(self) -> None:
        """Redis is back, maybe empty: write back what this member contributed and knew."""
        now = self._now()
        if self._window:
            cutoff = now - self._window
            self._mine = {ref: e for ref, e in self._mine.items() if e[0] >= cutoff}
        rows = list(self._mine.items())
        for start in range(0, len(rows), _RESTORE_BATCH):
            batch = rows[start : start + _RESTORE_BATCH]
            args: list[Any] = [self._window]
            for ref, (at, micro, ticket) in batch:
                args += [ref, int(at), micro, "1" if ticket else "0"]
            args.append(_KEEP_MS)

            async def restore(r: aioredis.Redis, args: list[Any] = args) -> Any:
                return await r.eval(_RESTORE, 3, *self._spend, *args)

            if await self._member.call(restore, None) is None:
                return  # down again: the next rejoin tries again
        for key, state in list(self._known.items()):
            if not state.opened_at and now - state.touched > BREAKER_MEMORY_MS:
                continue
            merge_args = (
                _name(key),
                state.run,
                state.no_code,
                state.after_code,
                int(state.opened_at),
                int(state.until),
                state.last,
                int(state.touched),
                BREAKER_MEMORY_MS,
            )
            keys = (self._breaker_key(key), self._index)

            async def merge(r: aioredis.Redis, keys: Any = keys, args: Any = merge_args) -> Any:
                return await r.eval(_MERGE, 2, *keys, *args)

            if await self._member.call(merge, None) is None:
                return
        await self.flush()
        self._fallback = None
        self._share = None

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("t") != "guard-reset":
            return
        service, country = event.get("service"), event.get("country")
        for key in list(self._known):
            if (service is None or key[0] == service) and (country is None or key[1] == country):
                del self._known[key]
        if self._fallback is not None:
            self._fallback.reset(service, country)

    # -- reading and resetting ------------------------------------------------------------

    async def status(self) -> GuardStatus:
        """The fleet's counts as Redis has them (this member's share while cut off)."""

        async def read(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            live = self._live_ms()
            keys = (*self._spend, self._member.key("members"))
            pipe.eval(_STATUS, 4, *keys, self._window, live, _KEEP_MS)
            pipe.smembers(self._index)
            spend, names = await pipe.execute()
            names = sorted(str(n) for n in names)
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._member.key("breaker", name))
            return spend, names, await pipe.execute()

        answer = await self._member.call(read, None) if self._member.active else None
        if answer is None:
            ledger = self._cut_off()
            now = self._now()
            spend = None
            if self._limit is not None:
                ledger.trim(now, self._window)
                spend = ledger.spend_status(self._limit, shared=False)
            return GuardStatus(spend, ledger.breaker_statuses(now), shared=False)
        (now, total, reserved, limit, window, members), names, hashes = answer
        self._saw(float(now))
        self._total, self._members, self._heard = int(total), max(int(members), 1), True
        spend_status = None
        if self._limit is not None or int(limit) >= 0:
            usd = self._limit.usd if self._limit is not None else from_micro(int(limit))
            per = self._limit.per if self._limit is not None else timedelta(milliseconds=window)
            room = to_micro(usd) - int(total)
            spend_status = SpendStatus(
                limit=usd,
                per=per,
                spent=from_micro(int(total) - int(reserved)),
                reserved=from_micro(int(reserved)),
                available=from_micro(max(room, 0)),
                shared=True,
            )
        breakers: list[BreakerStatus] = []
        for name, fields in zip(names, hashes, strict=True):
            if not fields:
                continue
            service, _, country = name.partition("|")
            state = BreakerState(
                run=int(fields.get("run", 0)),
                no_code=int(fields.get("no_code", 0)),
                after_code=int(fields.get("after_code", 0)),
                opened_at=float(fields.get("opened", 0)),
                until=float(fields.get("until", 0)),
                trial_until=float(fields.get("trial_until", 0)),
                last=str(fields.get("last", "")),
                touched=float(fields.get("touched", 0)),
            )
            breakers.append(state.status((service, country), float(now), self._wall))
        breakers.sort(key=lambda b: (not b.open, b.service, b.country or ""))
        return GuardStatus(spend_status, tuple(breakers), shared=True)

    async def reset(self, service: str | None, country: str | None) -> int:
        """Close the fleet's breakers of ``service`` (in ``country``), or every one."""

        async def names(r: aioredis.Redis) -> list[str]:
            return sorted(str(n) for n in await r.smembers(self._index))

        nobody: list[str] = []
        found = await self._member.call(names, nobody)
        chosen = [
            n
            for n in found
            if (service is None or n.partition("|")[0] == service)
            and (country is None or n.partition("|")[2] == country)
        ]
        if chosen:

            async def drop(r: aioredis.Redis) -> Any:
                pipe = r.pipeline(transaction=True)
                pipe.delete(*(self._member.key("breaker", n) for n in chosen))
                pipe.srem(self._index, *chosen)
                return await pipe.execute()

            await self._member.call(drop, None)
        self._event({"t": "guard-reset", "service": service, "country": country})
        await self._member.publish({"t": "guard-reset", "service": service, "country": country})
        return len(chosen)


__all__ = ["FleetSpend"]
