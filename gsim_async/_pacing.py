"""Pacing: how fast the client sends, and how it learns the server's rate limit.

The money rule behind it (docs/guides/rate-limits.md): every 429 costs a pause of a minute
for the whole client, so the client learns the limit once.

* **Slow start.** A client that has never met a limit starts at
  ``INITIAL_RATE`` requests/s and raises its rate with every accepted answer
  while the rate is what holds requests back: it never fires a burst it has not
  tried before.
* **Learn once.** At the first 429 the client pauses (Retry-After) and estimates the
  limit from what the server *accepted* before it: a token bucket that refuses at
  ``t`` accepted at most ``burst + rate * W`` in any window ``W`` before it, so the
  rate is at least ``accepted(W) / (W + burst/rate)`` for the largest such ratio,
  with a burst of ``ASSUMED_BURST`` seconds. It resumes just under that, with no
  burst, the refunds first.
* **Probe rarely.** A learnt rate that has been the bottleneck for a long while
  (many times the last pause) is raised by 5 %; a 429 brings a fresh estimate.
* **Told or shown, never hit.** ``max_requests_per_second`` is a ceiling paced
  evenly; a policy in the answers' rate-limit headers is the same, and an answer
  saying nothing is left holds requests until its reset, before any 429.

Requests wait in priority order: refunds, then the caller's own calls, then the
watcher's polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from . import _constants as C
from ._rate_headers import RateAdvert

log = logging.getLogger("gsim_async")


class Priority(enum.IntEnum):
    """Which waiting request goes first when the client is paced.

    Refunds go before anything else; the caller's calls and the watcher's polls share
    what is left, polls getting every ``_POLL_SHARE``-th turn while both wait, so
    a backlog of purchases never stops codes from being read.
    """

    REFUND = 0  #: cleanup that gives money back
    CALL = 1  #: what the caller asked for
    POLL = 2  #: the watcher's polling


#: While calls and polls both wait, one turn in this many goes to a poll.
_POLL_SHARE = 4


class Phase(enum.Enum):
    """What the client knows of the limit."""

    SLOW_START = "slow start"
    UNPACED = "unpaced"
    LEARNT = "learnt"
    TOLD = "told"
    ADVERTISED = "advertised"


class _Bins:
    """Accepted answers per tenth of a second, over the last ``RATE_HISTORY`` s."""

    __slots__ = ("_bins",)

    def __init__(self) -> None:
        self._bins: deque[list[int]] = deque()

    def add(self, now: float) -> None:
        slot = int(now * 10)
        bins = self._bins
        if bins and bins[-1][0] == slot:
            bins[-1][1] += 1
            return
        if bins and slot < bins[-1][0]:
            # Counted by send time, answers come back out of order: find its bin.
            for entry in reversed(bins):
                if entry[0] == slot:
                    entry[1] += 1
                    return
                if entry[0] < slot:
                    break
            bins.append([slot, 1])
            self._bins = deque(sorted(bins))
            return
        bins.append([slot, 1])
        oldest = slot - int(C.RATE_HISTORY * 10)
        while bins[0][0] < oldest:
            bins.popleft()

    def estimate(self, now: float, since: float, burst: float) -> float:
        """The highest ``accepted(W) / (W + burst)`` over windows ending now, after since."""
        best = 0.0
        accepted = 0
        first, last = int(since * 10), int(now * 10)
        for slot, count in reversed(self._bins):
            if slot > last:
                continue
            if slot < first:
                break
            accepted += count
            window = max(now - slot / 10, 0.1)
            best = max(best, accepted / (window + burst))
        return best

    def rate(self, now: float, window: float) -> float:
        """Accepted answers per second over the last ``window`` seconds."""
        first = int((now - window) * 10)
        total = sum(count for slot, count in self._bins if slot >= first)
        return total / window


class SharedGate(Protocol):
    """The rate gate of a fleet: one limit and one pause for every process on the key."""

    @property
    def active(self) -> bool:
        """Whether the fleet is reachable (else the client paces on its own)."""

    def open(self) -> bool:
        """Whether a request may go without asking the fleet (unpaced, no pause)."""

    async def permit(self, priority: Priority) -> float:
        """Take a fleet-wide turn: 0 when granted, else seconds to wait first.

        Refunds and polls go before purchases fleet-wide too, not only within a member:
        a leader refunding a dead member's orders must not queue behind every member's
        purchases.
        """

    def throttled(self, sent_at: float, retry_after: float) -> None:
        """A 429 answered a request sent at ``sent_at`` (monotonic): pause the fleet."""

    def accepted(self, waited: bool) -> None:
        """A request was answered (not 429); ``waited``: the rate held it back."""


class Ticket:
    """A granted turn: pass it back with the request's outcome."""

    __slots__ = ("sent_at", "seq", "waited")

    def __init__(self, seq: int, sent_at: float, waited: bool) -> None:
        self.seq = seq
        self.sent_at = sent_at
        #: Whether the request queued: the rate, not the caller, was the bottleneck.
        self.waited = waited


class Pacing:
    """The rate gate and the send rate of one client (shared by its views)."""

    def __init__(
        self,
        max_rate: float | None = None,
        *,
        slow_start: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._told = max_rate
        now = clock()
        if max_rate is not None:
            self.phase = Phase.TOLD
            self._rate: float | None = max_rate
        elif slow_start:
            self.phase = Phase.SLOW_START
            self._rate = C.INITIAL_RATE
        else:
            self.phase = Phase.UNPACED
            self._rate = None
        # Slow start may begin with a burst of its initial rate; anything paced after
        # that refills a small bucket, so a pause never ends in a stampede.
        self._tokens = C.INITIAL_RATE if self.phase is Phase.SLOW_START else 1.0
        self._refilled = now
        self._open_at = now  # the gate a 429 closes: shut until then
        self._pause_started = -math.inf
        self._segment = now  # estimates count answers since here (start, end of a pause)
        self._probe_at = math.inf
        self._probe_every = math.inf
        self._accepted = _Bins()
        self._queues: tuple[deque[asyncio.Future[Ticket]], ...] = (deque(), deque(), deque())
        self._calls_since_poll = 0
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # An advertised budget: requests left until `_budget_until`, as of request
        # number `_budget_base`; those sent after it may already have used some.
        self._sent = 0
        self._budget: int | None = None
        self._budget_base = 0
        self._budget_until = 0.0
        #: Requests granted and not yet answered.
        self.in_flight = 0
        self._shared: SharedGate | None = None
        self._pending_learn: tuple[float, float, float] | None = None
        # What the last advert said a whole quota is, and how long its window lasted.
        self._quota: float | None = None
        self._budget_period = 1.0

    def attach(self, shared: SharedGate) -> None:
        """Pace with a fleet: its gate and rate rule, this client's queue orders."""
        self._shared = shared

    def adopt(self, rate: float | None, phase: Phase, pause: float) -> None:
        """Take over what the fleet knows: its rate and phase, and a pause under way."""
        now = self._clock()
        if pause > 0:
            self._open_at = max(self._open_at, now + pause)
        if rate != self._rate or phase is not self.phase:
            self.phase, self._rate = phase, rate
            self._tokens = min(self._tokens, 1.0)
            if phase is Phase.LEARNT:
                self._probe_at = math.inf  # the fleet probes, not each member
        if self._wake is not None:
            self._wake.set()

    def _fleet(self) -> SharedGate | None:
        shared = self._shared
        return shared if shared is not None and shared.active else None

    # -- what callers read --------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The current send rate (requests/s), or ``None`` when unpaced."""
        return self._rate

    @property
    def paused_for(self) -> float:
        """Seconds until the gate a 429 closed opens again (0 when open)."""
        return max(0.0, self._open_at - self._clock())

    # -- taking turns -------------------------------------------------------------------

    def try_acquire(self, priority: Priority = Priority.CALL) -> Ticket | None:
        """A turn at once if one is free (the common case, without an await); else None."""
        refunds, calls, polls = self._queues
        if refunds or calls or polls:
            if priority is Priority.POLL and self.phase is Phase.SLOW_START:
                return self._poll_in_slow_start()
            return None
        if priority is Priority.POLL and self.phase is Phase.SLOW_START:
            return self._poll_in_slow_start()
        fleet = self._fleet()
        if fleet is not None and not fleet.open():
            return None
        now = self._clock()
        if now < self._open_at or self._budget_wait(now) > 0:
            return None
        if self._pending_learn is not None:
            self._learn_now(now)
        if self.phase is Phase.SLOW_START and not self.in_flight:
            # One request with nothing else on the wire is no burst: no turn needed.
            return self._grant(now, waited=False)
        if self._rate is not None:
            self._refill(now)
            if self._tokens < 1.0:
                return None
            self._tokens -= 1.0
        return self._grant(now, waited=False)

    def _poll_in_slow_start(self) -> Ticket | None:
        # Slow start is our own caution, not the server's limit: the watcher's few polls
        # (one round per interval, a page or two) need not queue behind a ramp of
        # purchases, or codes would wait for the ramp. A pause or a budget still holds.
        now = self._clock()
        if now < self._open_at or self._budget_wait(now) > 0:
            return None
        return self._grant(now, waited=False)

    async def acquire(self, priority: Priority) -> Ticket:
        """Wait for this request's turn (refunds first, polls last)."""
        ticket = self.try_acquire(priority)
        if ticket is not None:
            return ticket
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self._queues[priority].append(future)
        self._ensure_dispatcher()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.in_flight -= 1  # granted as we were cancelled: never sent
            raise

    def _grant(self, now: float, *, waited: bool) -> Ticket:
        self._sent += 1
        self.in_flight += 1
        if self._budget is not None:
            self._budget -= 1
        return Ticket(self._sent, now, waited)

    def _ensure_dispatcher(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="gsim_async pacing"
            )

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while self._waiting():
            now = self._clock()
            wait = max(self._open_at - now, self._budget_wait(now))
            if wait <= 0 and self._pending_learn is not None:
                self._learn_now(now)
            fleet = self._fleet()
            if fleet is not None:
                # The fleet's limit paces every member; the local queue only orders turns.
                if wait <= 0 and not fleet.open():
                    wait = await fleet.permit(self._peek())
            elif wait <= 0 and self._rate is not None:
                self._refill(now)
                if self._tokens < 1.0:
                    wait = (1.0 - self._tokens) / self._rate
            if wait > 0:
                self._wake.clear()
                # Woken early when the rate or the gate changes.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, 1.0))
                continue
            future = self._next()
            if future.done():  # its caller gave up
                continue
            if self._rate is not None and fleet is None:
                self._tokens -= 1.0
            future.set_result(self._grant(now, waited=True))

    def _waiting(self) -> bool:
        refunds, calls, polls = self._queues
        return bool(refunds or calls or polls)

    def _peek(self) -> Priority:
        """The priority of the request ``_next()`` would give the turn to."""
        refunds, calls, polls = self._queues
        if polls and (not (refunds or calls) or self._calls_since_poll >= _POLL_SHARE - 1):
            return Priority.POLL
        return Priority.REFUND if refunds else Priority.CALL

    def _next(self) -> asyncio.Future[Ticket]:
        refunds, calls, polls = self._queues
        if polls and (not (refunds or calls) or self._calls_since_poll >= _POLL_SHARE - 1):
            # Polls get every few turns even behind refunds: a backlog of bans must not
            # keep codes that already came from being read (they would meet 409s).
            self._calls_since_poll = 0
            return polls.popleft()
        self._calls_since_poll += 1
        return refunds.popleft() if refunds else calls.popleft()

    def _refill(self, now: float) -> None:
        rate = self._rate
        assert rate is not None
        capacity = max(1.0, rate * 0.2)
        if self._tokens < capacity:
            # (A slow-start burst above capacity is spent once, never refilled.)
            self._tokens = min(capacity, self._tokens + (now - self._refilled) * rate)
        self._refilled = now

    def _budget_wait(self, now: float) -> float:
        if self._budget is None:
            return 0.0
        if now >= self._budget_until:
            if self._quota is None:
                self._budget = None  # no quota known: the reset lifts the hold
                return 0.0
            # The quota is whole again; requests still out may yet be counted in it.
            self._budget = int(self._quota) - self.in_flight
            self._budget_until = now + self._budget_period
        if self._budget > 0:
            return 0.0
        return self._budget_until - now

    # -- what answers teach ---------------------------------------------------------------

    def done(self, ticket: Ticket, *, accepted: bool, advert: RateAdvert | None = None) -> None:
        """The request of ``ticket`` ended: ``accepted`` if answered with anything but 429."""
        self.in_flight -= 1
        now = self._clock()
        if advert is not None:
            self._advertised(advert, ticket, now)
        if not accepted:
            return
        # By when it was sent: an estimate at a 429 counts what the server let through
        # before it, including answers still on their way back then.
        self._accepted.add(ticket.sent_at)
        fleet = self._fleet()
        if fleet is not None:
            fleet.accepted(ticket.waited)
            return
        if self.phase is Phase.SLOW_START and ticket.waited:
            assert self._rate is not None
            self._rate += C.SLOW_START_STEP
            if self._rate > C.UNPACED_ABOVE:
                log.debug("no rate limit met up to %.0f req/s: pacing off", self._rate)
                self.phase, self._rate = Phase.UNPACED, None
        elif self.phase is Phase.LEARNT and ticket.waited and now >= self._probe_at:
            self._probe(now)

    def throttled(self, ticket: Ticket, retry_after: float) -> float:
        """The request of ``ticket`` was answered 429: close the gate; returns the pause."""
        now = self._clock()
        new_event = ticket.sent_at >= self._pause_started and now >= self._open_at
        self._open_at = max(self._open_at, now + retry_after)
        fleet = self._fleet()
        if fleet is not None:
            # The fleet pauses every member and learns once for all of them.
            fleet.throttled(ticket.sent_at, retry_after)
        elif new_event:
            # Requests sent before this moment that meet 429 are this same event. The
            # limit is estimated once the pause is over, when every answer of what was
            # sent before the 429 is in.
            self._pause_started = now
            self._pending_learn = (ticket.sent_at, self._segment, retry_after)
            self.phase = Phase.LEARNT
        self._segment = self._open_at
        if self._wake is not None:
            self._wake.set()
        remaining = self._open_at - now
        return retry_after if remaining <= retry_after + 1e-6 else remaining

    def _learn_now(self, now: float) -> None:
        assert self._pending_learn is not None
        refused_at, segment, pause = self._pending_learn
        self._pending_learn = None
        self._learn(now, refused_at, segment, pause)

    def _learn(self, now: float, refused_at: float, segment: float, pause: float) -> None:
        estimate = self._accepted.estimate(refused_at, segment, C.ASSUMED_BURST)
        base = estimate if estimate > 0 else (self._rate or C.INITIAL_RATE)
        if self._rate is not None:
            base = min(base, self._rate)
        new = max(C.MIN_RATE, C.SETTLE_FRACTION * base)
        if self._told is not None:
            new = min(new, self._told)
        log.info(
            "rate limited (%s): pausing %.1f s, then %.2f req/s (limit estimated at %.2f)",
            self.phase.value,
            pause,
            new,
            estimate,
        )
        self.phase = Phase.LEARNT
        self._rate = new
        self._tokens = 0.0
        self._refilled = now
        self._probe_every = max(C.PROBE_MIN, C.PROBE_AFTER_PAUSES * pause)
        self._probe_at = now + self._probe_every

    def _probe(self, now: float) -> None:
        assert self._rate is not None
        self._rate *= C.PROBE_STEP
        if self._told is not None:
            self._rate = min(self._rate, self._told)
        log.debug("probing a higher rate: %.2f req/s", self._rate)
        self._probe_at = now + self._probe_every

    def _advertised(self, advert: RateAdvert, ticket: Ticket, now: float) -> None:
        policy = advert.rate
        if self.phase in (Phase.SLOW_START, Phase.UNPACED, Phase.ADVERTISED) or (
            policy is not None and self.phase is Phase.LEARNT
        ):
            # A policy the server states beats our estimate of it.
            ceiling = policy
            if ceiling is not None and self._told is not None:
                ceiling = min(ceiling, self._told)
            # A server that counts for us paces us: its policy, else its budget alone.
            if self.phase is not Phase.ADVERTISED or self._rate != ceiling:
                self.phase, self._rate = Phase.ADVERTISED, ceiling
                self._tokens = min(self._tokens, 1.0)
                if self._wake is not None:
                    self._wake.set()
        if advert.remaining is not None and ticket.seq >= self._budget_base:
            # What is left, less what is still on the wire (sent before or after this
            # one, the server may count it yet); each grant then takes one.
            self._budget = advert.remaining - self.in_flight
            self._budget_base = ticket.seq
            self._budget_period = advert.reset if advert.reset else 1.0
            self._budget_until = now + self._budget_period
            self._quota = advert.quota

    def close(self) -> None:
        """Stop the dispatcher; requests still waiting for a turn are cancelled."""
        task, self._dispatcher = self._dispatcher, None
        if task is not None:
            task.cancel()
        for queue in self._queues:
            for future in queue:
                future.cancel()
            queue.clear()
