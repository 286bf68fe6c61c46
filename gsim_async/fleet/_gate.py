"""One rate gate per API key, fleet-wide: a token bucket and a pause in Redis.

The bucket and the pause are Lua scripts over one hash, so every member's turn is
taken atomically on Redis' own clock. What the fleet knows of the limit (its rate and
phase: slow start, learnt, told, advertised) lives in the same hash: a member that
meets the first 429 learns the limit from what the whole fleet had accepted and tells
every member, so a new worker never pays its own pause to learn it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis

from .. import _constants as C
from .._pacing import Pacing, Phase, Priority
from ._member import Member

log = logging.getLogger("gsim_async")

#: Seconds between flushes of a member's accepted-answer counts.
_FLUSH = 0.25
#: Seconds between re-reads of the gate (events may be missed while reconnecting).
_SYNC = 2.0
#: Seconds to wait for a turn when the gate could not be brought back.
_SYNC_WAIT = 0.1

# KEYS[1]: the gate hash. ARGV: phase, rate ('' unpaced), tokens to start with, the
# pause this member knows is still under way (ms). A member brings what it knows: a
# limit learnt, told or advertised replaces a gate that knows none (a new one, or one
# Redis lost and a newcomer recreated), so a wiped Redis costs no pause to learn again.
# 'born' is when a member restored what it knew: the estimate at a 429 uses no history
# before it, and none at all for a while (it would be a second or two long).
_JOIN = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local phase = redis.call('HGET', KEYS[1], 'phase')
local knows = ARGV[1] == 'told' or ARGV[1] == 'learnt' or ARGV[1] == 'advertised'
if not phase or (knows and (phase == 'slow' or phase == 'unpaced')) then
  redis.call('HSET', KEYS[1], 'phase', ARGV[1], 'rate', ARGV[2], 'tokens', ARGV[3])
  if knows then redis.call('HSET', KEYS[1], 'born', now) end
  local pause = tonumber(ARGV[4])
  if pause > 0 then
    local untl = math.max(tonumber(redis.call('HGET', KEYS[1], 'until') or '0'), now + pause)
    redis.call('HSET', KEYS[1], 'until', untl, 'seg', untl)
  end
end
return redis.call('HMGET', KEYS[1], 'phase', 'rate', 'until')
"""

# A turn: 0 when granted, else milliseconds to wait; -1 when the gate is gone (Redis
# lost it): the member brings back what it knows before it takes a turn, or every
# member would send unpaced until its next heartbeat noticed. ARGV[1]: '1' for a
# purchase (or another call), which leaves a token of the bucket to refunds and polls.
# Rates and tokens are strings (Lua numbers come back to Redis as integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local g = redis.call('HMGET', KEYS[1], 'until', 'rate', 'tokens', 'ts', 'phase')
if not g[5] then return -1 end
local untl = tonumber(g[1]) or 0
if now < untl then return untl - now end
local rate = tonumber(g[2])
if not rate or rate <= 0 then return 0 end
local cap = math.max(1, rate * 0.2)
local tokens = tonumber(g[3]) or cap
local ts = tonumber(g[4]) or now
if tokens < cap then tokens = math.min(cap, tokens + (now - ts) * rate / 1000) end
-- A purchase leaves a token for refunds and polls, whichever member sends them.
local need = 1
if ARGV[1] == '1' then need = 1 + math.min(1, cap - 1) end
local wait = 0
if tokens >= need then tokens = tokens - 1 else wait = math.ceil((need - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
return wait
"""

#: 429s the fleet remembers (``throttles``, newest first) for ``gsim fleet status``.
_THROTTLES_KEPT = 200

# A 429: pause everyone. Returns {new event (1/0), pause ms, start of the segment the
# estimate may use (ms, wall clock of Redis), the gate's age (ms)}. KEYS[2] keeps the
# last 429s, '<ms>:<pause asked, ms>:<new>:<member>' (ARGV: pause ms, member, how many).
_THROTTLE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local g = redis.call('HMGET', KEYS[1], 'until', 'seg', 'born')
local untl = tonumber(g[1]) or 0
local born = tonumber(g[3]) or 0
local seg = math.max(tonumber(g[2]) or 0, born)
local new = 0
if now >= untl then new = 1 end
local u = math.max(untl, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'until', u, 'seg', u, 'tokens', '0', 'ts', u)
redis.call('LPUSH', KEYS[2], now .. ':' .. ARGV[1] .. ':' .. new .. ':' .. ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {new, u - now, seg, now - born}
"""

# Slow start: the fleet's rate grows with the answers that waited for it.
_GROW = """
if redis.call('HGET', KEYS[1], 'phase') ~= 'slow' then return '' end
local rate = (tonumber(redis.call('HGET', KEYS[1], 'rate')) or 0) + tonumber(ARGV[1])
if rate > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'phase', 'unpaced', 'rate', '')
  return 'unpaced'
end
redis.call('HSET', KEYS[1], 'rate', tostring(rate))
return tostring(rate)
"""

_PHASES = {
    "slow": Phase.SLOW_START,
    "unpaced": Phase.UNPACED,
    "learnt": Phase.LEARNT,
    "told": Phase.TOLD,
    "advertised": Phase.ADVERTISED,
}
_NAMES = {v: k for k, v in _PHASES.items()}


class FleetGate:
    """A member's view of the fleet's gate (implements ``_pacing.SharedGate``)."""

    def __init__(self, member: Member, pacing: Pacing, told: float | None, slow: bool) -> None:
        self._member = member
        self._pacing = pacing
        self._told = told
        self._slow = slow
        self._key = member.key("gate")
        self._phase = Phase.TOLD if told else (Phase.SLOW_START if slow else Phase.UNPACED)
        self._rate: float | None = told if told else (C.INITIAL_RATE if slow else None)
        self._pause_until = 0.0  # monotonic
        self._bins: dict[int, int] = {}
        self._grown = 0
        self._learning = False
        member.listen(self._event)
        member.on_rejoin(self.sync)
        member.on_down(self._alone)

    @property
    def active(self) -> bool:
        """Whether the fleet is reachable."""
        return self._member.active

    def open(self) -> bool:
        """Unpaced and not paused: a request needs no turn from Redis."""
        return self._rate is None and time.monotonic() >= self._pause_until

    async def permit(self, priority: Priority) -> float:
        """A fleet-wide turn: 0 when granted, else seconds to wait.

        A call leaves a token to refunds and polls (see ``_ACQUIRE``): they go first
        across the fleet, as they do within a member.
        """
        call = "1" if priority is Priority.CALL else "0"
        wait_ms = await self._member.call(lambda r: r.eval(_ACQUIRE, 1, self._key, call), 0)
        if wait_ms == -1:
            await self.sync()
            wait_ms = await self._member.call(lambda r: r.eval(_ACQUIRE, 1, self._key, call), 0)
            if wait_ms == -1:
                return _SYNC_WAIT  # still gone: ask again shortly, never unpaced
        return max(0.0, float(wait_ms) / 1000)

    def throttled(self, sent_at: float, retry_after: float) -> None:
        """A 429: pause every member (and learn the limit, if this is a new event)."""
        self._member.spawn(self._throttle(retry_after), "throttle")

    def accepted(self, waited: bool) -> None:
        """Count an accepted answer for the fleet's estimate (and slow start's growth)."""
        slot = int(time.time() * 10)
        self._bins[slot] = self._bins.get(slot, 0) + 1
        if waited and self._phase is Phase.SLOW_START:
            self._grown += 1

    # -- background -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the fleet's gate and keep this member's view of it current."""
        await self.sync()
        self._member.spawn(self._flushes(), "gate flush")

    async def sync(self) -> None:
        """Read the fleet's gate (joining it with what this member knows if it is new)."""
        if self._phase in (Phase.LEARNT, Phase.TOLD, Phase.ADVERTISED):
            phase = _NAMES[self._phase]  # what the fleet knew before Redis lost it
        else:
            phase = "told" if self._told else ("slow" if self._slow else "unpaced")
        rate = "" if self._rate is None else repr(self._rate)
        tokens = repr(C.INITIAL_RATE) if phase == "slow" else "1"
        pause = max(0, int((self._pause_until - time.monotonic()) * 1000))

        async def join(r: aioredis.Redis) -> Any:
            return await r.eval(_JOIN, 1, self._key, phase, rate, tokens, pause)

        state = await self._member.call(join, None)
        if state is None:
            return
        name, rate_text, _until = state
        self._adopt(name, rate_text, None)

    def _alone(self) -> None:
        """Redis is gone: pace on this member's share of the fleet's rate until it is back.

        Every member paces alone meanwhile; each at the whole fleet's rate together would
        be several times the limit, and the 429 would cost the pause it was learnt to save.
        """
        if self._rate is not None and self._member.peers > 1:
            share = max(C.MIN_RATE, self._rate / self._member.peers)
            self._pacing.adopt(share, self._phase, 0.0)

    async def _flushes(self) -> None:
        last_sync = time.monotonic()
        while not self._member.closed:
            await asyncio.sleep(_FLUSH)
            await self._flush()
            if time.monotonic() - last_sync > _SYNC:
                last_sync = time.monotonic()
                await self.sync()

    async def _flush(self) -> None:
        bins, self._bins = self._bins, {}
        grown, self._grown = self._grown, 0
        if not bins and not grown:
            return
        acc = self._member.key("acc")

        async def write(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            for slot, count in bins.items():
                pipe.hincrby(acc, str(slot), count)
            if grown:
                pipe.eval(_GROW, 1, self._key, grown * C.SLOW_START_STEP, C.UNPACED_ABOVE)
            return await pipe.execute()

        result = await self._member.call(write, None)
        if grown and result:
            rate_text = result[-1]
            if rate_text == "unpaced":
                self._adopt("unpaced", "", None)
            elif rate_text:
                self._adopt("slow", rate_text, None)

    async def _throttle(self, retry_after: float) -> None:
        async def pause(r: aioredis.Redis) -> Any:
            return await r.eval(
                _THROTTLE, 2, self._key, self._member.key("throttles"),
                int(retry_after * 1000), self._member.id, _THROTTLES_KEPT,
            )  # fmt: skip

        result = await self._member.call(pause, None)
        if result is None:
            return
        new, pause_ms, seg_ms = int(result[0]), int(result[1]), int(result[2])
        age = int(result[3]) / 1000 if len(result) > 3 else math.inf
        await self._member.publish({"t": "pause", "ms": pause_ms})
        if new and not self._learning:
            self._learning = True
            try:
                await self._learn(pause_ms / 1000, seg_ms / 1000, age)
            finally:
                self._learning = False

    async def _learn(self, pause: float, segment: float, age: float) -> None:
        await self._flush()
        acc = self._member.key("acc")

        async def read(r: aioredis.Redis) -> Any:
            return await r.hgetall(acc)

        nothing: dict[str, str] = {}
        bins = await self._member.call(read, nothing)
        now = time.time()
        first = int(max(segment, now - C.RATE_HISTORY) * 10)
        estimate = 0.0
        accepted = 0
        for slot in sorted((int(s) for s in bins), reverse=True):
            if slot < first:
                break
            accepted += int(bins[str(slot)])
            estimate = max(estimate, accepted / (max(now - slot / 10, 0.1) + C.ASSUMED_BURST))
        current = self._rate if self._rate is not None else estimate
        if self._rate is not None and age < C.FLEET_MIN_HISTORY:
            # A gate that (re)started a moment ago (Redis lost it) has a second or two
            # of history: an estimate from it would be a fraction of the real limit
            # (the soak learnt 2.6 req/s of 20 that way). The rate it ran at is better.
            estimate = 0.0
        base = min(estimate, current) if estimate > 0 else (current or C.INITIAL_RATE)
        new = max(C.MIN_RATE, C.SETTLE_FRACTION * base)
        if self._told is not None:
            new = min(new, self._told)
        log.info(
            "fleet rate limited: every member pauses %.1f s, then %.2f req/s together "
            "(limit estimated at %.2f)",
            pause,
            new,
            estimate,
        )

        async def write(r: aioredis.Redis) -> Any:
            old = [k for k in bins if int(k) < int((now - C.RATE_HISTORY) * 10)]
            pipe = r.pipeline(transaction=False)
            pipe.hset(self._key, mapping={"phase": "learnt", "rate": repr(new)})
            if old:
                pipe.hdel(acc, *old)
            return await pipe.execute()

        await self._member.call(write, None)
        await self._member.publish({"t": "rate", "phase": "learnt", "rate": repr(new)})

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "pause":
            self._adopt(_NAMES[self._phase], "" if self._rate is None else repr(self._rate),
                        float(event.get("ms", 0)) / 1000)  # fmt: skip
        elif kind == "rate":
            self._adopt(str(event.get("phase")), str(event.get("rate", "")), None)

    def _adopt(self, phase_name: str | None, rate_text: str | None, pause: float | None) -> None:
        phase = _PHASES.get(phase_name or "", self._phase)
        rate = float(rate_text) if rate_text else None
        if rate is not None and not math.isfinite(rate):
            rate = None
        self._phase, self._rate = phase, rate
        if pause:
            self._pause_until = max(self._pause_until, time.monotonic() + pause)
        # The member's own pacer mirrors the fleet, to pace alone if Redis goes away.
        self._pacing.adopt(rate, phase, pause or 0.0)
