"""The spend guard's counters in one process: spend over a rolling window, and breakers.

The rules, which ``fleet/_spend.py`` applies in Redis with the same names:

* Spend is a set of *entries*, each stamped when its purchase was admitted: a
  *ticket* (a purchase in flight, holding what it reserved) or an *item* (an order or
  rental bought, holding its price). An entry counts until the window has passed since
  its stamp. A ticket becomes its item when the purchase answers (keeping its stamp),
  goes when it provably bought nothing, and stays when the outcome is unknown. An
  order that ended without a code was refunded in full: its item goes.
* A purchase is admitted when the total of the entries plus what it reserves stays
  within the limit. One that does not know its price reserves all the room left.
* A breaker counts failed verifications in a row per (service, country); at
  ``failures`` it opens until ``cooldown`` has passed; then one *trial* purchase is
  let through at a time; a success closes it, a failure opens it for another
  cooldown. A breaker without news for a day is forgotten.

Amounts are integers of millionths of a USD; times are milliseconds on one clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal

import attrs

from ._guard_config import MICRO, Breaker, Failure, SpendLimit

BreakerKey = tuple[str, str]

_CENT = Decimal("0.01")

#: A breaker that heard nothing for this long (ms) is forgotten (unless it is open).
BREAKER_MEMORY_MS = 24 * 3600 * 1000
#: How long a trial purchase of a half-open breaker holds the trial (ms): an order's
#: life and then some, in case nobody ever waits on it.
TRIAL_LEASE_MS = 25 * 60 * 1000


def to_micro(amount: Decimal) -> int:
    """USD as millionths, rounded up (a reservation never holds too little)."""
    return int((amount / MICRO).to_integral_value(ROUND_CEILING))


def from_micro(micro: int) -> Decimal:
    """Millionths of a USD as USD, in cents when it is a whole number of them."""
    value = Decimal(micro) * MICRO
    cents = value.quantize(_CENT)
    return cents if cents == value else value.normalize()


@attrs.frozen
class SpendStatus:
    """The spend limit as it stands: ``spent`` (net of refunds) and ``reserved`` in the window.

    ``available`` is what a purchase may still reserve; ``shared`` says whether the
    counts are a fleet's (every member's purchases) or this client's alone.
    """

    limit: Decimal
    per: timedelta
    spent: Decimal
    reserved: Decimal
    available: Decimal
    shared: bool = False


@attrs.frozen
class BreakerStatus:
    """One (service, country) with failed verifications in a row, or an open breaker.

    ``failures`` in a row, of which ``no_code`` ended without a code and
    ``after_code`` left an ``activation()`` block by an exception after the code
    came (``last_error`` names the last one's type). ``open`` breakers hold purchases:
    ``retry_after`` seconds until a trial purchase may go (0: now), ``opened_at`` when
    it opened; ``trial`` is whether a trial purchase is under way.
    """

    service: str
    country: str | None
    failures: int
    no_code: int
    after_code: int
    open: bool
    opened_at: datetime | None = None
    retry_after: float | None = None
    last_error: str | None = None
    trial: bool = False

    def describe(self) -> str:
        """One line saying why the breaker is open (or how close it is)."""
        where = f"{self.service}/{self.country}" if self.country else self.service
        kinds = []
        if self.after_code:
            last = f" ({self.last_error})" if self.last_error else ""
            kinds.append(f"{self.after_code} left by an exception after the code came{last}")
        if self.no_code:
            kinds.append(f"{self.no_code} ended without a code")
        what = f"{self.failures} failed verification{'s' if self.failures != 1 else ''} in a row"
        why = f"{what}: {', '.join(kinds)}" if kinds else what
        if not self.open:
            return f"{where}: {why}"
        if self.trial:
            when = "a trial purchase is under way"
        elif self.retry_after:
            when = f"a trial purchase may go in {_human(self.retry_after)}"
        else:
            when = "the next purchase is a trial"
        return f"{where}: open, {why}; {when}"


@attrs.frozen
class GuardStatus:
    """What ``client.guard.status()`` shows: the spend limit and the breakers.

    ``spend`` is ``None`` without a spend limit; ``breakers`` lists every (service,
    country) with failures in a row, open ones first. ``shared`` is whether the
    counts are a fleet's.
    """

    spend: SpendStatus | None
    breakers: tuple[BreakerStatus, ...]
    shared: bool = False

    @property
    def blocked(self) -> bool:
        """Whether something holds purchases back now: the limit reached, or a breaker open."""
        full = self.spend is not None and self.spend.available <= 0
        return full or any(b.open and not b.trial and b.retry_after for b in self.breakers)


@attrs.frozen
class Verdict:
    """A ledger's answer to a purchase: admitted (with what it reserved), or why not."""

    ok: bool
    reason: str | None = None  # "spend" | "breaker"
    micro: int = 0
    total: int = 0
    reserved: int = 0
    retry_after: float | None = None
    breaker: BreakerStatus | None = None
    trial: bool = False
    #: Why the counts are not the usual ones (a fleet member cut off from Redis).
    note: str = ""


@attrs.define
class BreakerState:
    """One breaker's counts (times in ms on the ledger's clock)."""

    run: int = 0
    no_code: int = 0
    after_code: int = 0
    opened_at: float = 0.0  # 0: closed
    until: float = 0.0
    trial_until: float = 0.0
    trial_ticket: str = ""
    last: str = ""
    touched: float = 0.0

    def status(
        self, key: BreakerKey, now: float, wall: Callable[[float], datetime]
    ) -> BreakerStatus:
        """As the public model shows it."""
        is_open = self.opened_at > 0
        trial = is_open and self.trial_until > now
        wait = None
        if is_open:
            wait = max(self.until, self.trial_until if trial else 0.0) - now
            wait = max(wait, 0.0) / 1000
        return BreakerStatus(
            service=key[0],
            country=key[1] or None,
            failures=self.run,
            no_code=self.no_code,
            after_code=self.after_code,
            open=is_open,
            opened_at=wall(self.opened_at) if is_open else None,
            retry_after=wait,
            last_error=self.last or None,
            trial=trial,
        )


@attrs.define
class _Entry:
    at: float
    micro: int
    ticket: bool


class Ledger:
    """Spend entries and breakers in memory; every method is one atomic step."""

    def __init__(self, wall: Callable[[float], datetime] | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        self._stamps: list[tuple[float, str]] = []  # a heap: the oldest first
        self.total = 0
        self.reserved = 0
        self.breakers: dict[BreakerKey, BreakerState] = {}
        self._wall = wall or _epoch_ms

    # -- spend ------------------------------------------------------------------------------

    def trim(self, now: float, window_ms: float) -> None:
        """Forget the entries older than the window."""
        cutoff = now - window_ms
        while self._stamps and self._stamps[0][0] < cutoff:
            at, ref = heapq.heappop(self._stamps)
            entry = self._entries.get(ref)
            if entry is not None and entry.at == at:
                self._drop(ref)

    def _add(self, ref: str, at: float, micro: int, ticket: bool) -> None:
        if ref in self._entries:
            return
        self._entries[ref] = _Entry(at, micro, ticket)
        heapq.heappush(self._stamps, (at, ref))
        self.total += micro
        if ticket:
            self.reserved += micro

    def _drop(self, ref: str) -> _Entry | None:
        entry = self._entries.pop(ref, None)
        if entry is not None:
            self.total -= entry.micro
            if entry.ticket:
                self.reserved -= entry.micro
        return entry

    def has(self, ref: str) -> bool:
        """Whether ``ref`` counts now."""
        return ref in self._entries

    def admit(
        self,
        now: float,
        ticket: str,
        *,
        micro: int | None,
        floor: int,
        limit: int | None,
        window_ms: float,
        key: BreakerKey | None,
        breaker: Breaker | None,
        dry: bool = False,
    ) -> Verdict:
        """Admit a purchase that reserves ``micro`` (``None``: all the room left, at least
        ``floor``), unless its breaker is open or it would pass the limit.

        ``dry``: only say whether one would be admitted (no room at all refuses it),
        taking nothing."""
        self.trim(now, window_ms)
        if key is not None and breaker is not None:
            refused, trial = self._breaker_admits(now, key, ticket, not dry)
            if refused is not None:
                return refused
        else:
            trial = False
        amount = 0
        if limit is not None:
            room = limit - self.total
            amount = max(room, floor) if micro is None else micro
            if amount > room or room <= 0:
                if trial:
                    self._drop_trial(key, ticket)
                return Verdict(
                    False,
                    "spend",
                    micro=amount,
                    total=self.total,
                    reserved=self.reserved,
                    retry_after=self._rolls(now, window_ms, limit, amount),
                )
        if not dry and limit is not None:
            self._add(ticket, now, amount, True)
        return Verdict(True, micro=amount, total=self.total, reserved=self.reserved, trial=trial)

    def _rolls(self, now: float, window_ms: float, limit: int, amount: int) -> float | None:
        """Seconds until enough entries leave the window for ``amount`` to fit."""
        excess = self.total + amount - limit
        if amount > limit:
            return None
        for at, ref in sorted(self._stamps):
            entry = self._entries.get(ref)
            if entry is None or entry.at != at:
                continue
            excess -= entry.micro
            if excess < 0 or (excess == 0 and amount > 0):
                return max(at + window_ms - now, 0.0) / 1000
        return None

    def commit(self, now: float, ticket: str, item: str, micro: int, limit: int | None) -> bool:
        """The ticket's purchase bought ``item`` at ``micro``; whether that passes the limit."""
        entry = self._drop(ticket)
        self._add(item, entry.at if entry is not None else now, micro, False)
        return limit is not None and self.total > limit

    def release(self, ticket: str, key: BreakerKey | None = None) -> None:
        """The ticket's purchase provably bought nothing: what it reserved is free again."""
        self._drop(ticket)
        if key is not None:
            self._drop_trial(key, ticket)

    def refund(self, item: str) -> bool:
        """``item`` was refunded in full: it no longer counts. Whether it was counted."""
        entry = self._entries.get(item)
        if entry is None or entry.ticket:
            return False
        self._drop(item)
        return True

    def spend_status(self, limit: SpendLimit, shared: bool) -> SpendStatus:
        """The spend limit as it stands (call ``trim`` first)."""
        room = to_micro(limit.usd) - self.total
        return SpendStatus(
            limit=limit.usd,
            per=limit.per,
            spent=from_micro(self.total - self.reserved),
            reserved=from_micro(self.reserved),
            available=from_micro(max(room, 0)),
            shared=shared,
        )

    # -- breakers ---------------------------------------------------------------------------

    def _breaker_admits(
        self, now: float, key: BreakerKey, ticket: str, take_trial: bool
    ) -> tuple[Verdict | None, bool]:
        state = self.breakers.get(key)
        if state is None or not state.opened_at:
            return None, False
        if now < state.until or state.trial_until > now:
            status = state.status(key, now, self._wall)
            return Verdict(False, "breaker", retry_after=status.retry_after, breaker=status), False
        if take_trial:
            state.trial_until = now + TRIAL_LEASE_MS
            state.trial_ticket = ticket
        return None, take_trial

    def _drop_trial(self, key: BreakerKey | None, ticket: str) -> None:
        state = self.breakers.get(key) if key is not None else None
        if state is not None and state.trial_ticket == ticket:
            state.trial_until = 0.0
            state.trial_ticket = ""

    def outcome(
        self,
        now: float,
        key: BreakerKey,
        failure: Failure | None,
        detail: str,
        breaker: Breaker,
    ) -> BreakerStatus | None:
        """A verification succeeded (``failure=None``) or failed; the breaker after it."""
        if failure is None:
            self.breakers.pop(key, None)
            return None
        state = self.breakers.setdefault(key, BreakerState())
        state.run += 1
        if failure == "after_code":
            state.after_code += 1
            state.last = detail or state.last
        else:
            state.no_code += 1
        state.touched = now
        cooldown = breaker.cooldown.total_seconds() * 1000
        if state.opened_at or state.run >= breaker.failures:
            # Opened now, or still failing while open (a trial, or an order bought
            # before it opened): another whole cooldown.
            state.opened_at = state.opened_at or now
            state.until = now + cooldown
            state.trial_until = 0.0
            state.trial_ticket = ""
        return state.status(key, now, self._wall)

    def reset(self, service: str | None, country: str | None) -> int:
        """Close the breakers of ``service`` (and ``country``), or every one; how many."""
        keys = [
            k
            for k in self.breakers
            if (service is None or k[0] == service) and (country is None or k[1] == country)
        ]
        for k in keys:
            del self.breakers[k]
        return len(keys)

    def breaker_statuses(self, now: float) -> tuple[BreakerStatus, ...]:
        """Every breaker with failures, open ones first (idle ones forgotten)."""
        for key, state in list(self.breakers.items()):
            if not state.opened_at and now - state.touched > BREAKER_MEMORY_MS:
                del self.breakers[key]
        found = [s.status(k, now, self._wall) for k, s in self.breakers.items()]
        return tuple(sorted(found, key=lambda b: (not b.open, b.service, b.country or "")))


def _epoch_ms(at: float) -> datetime:
    return datetime.fromtimestamp(at / 1000, timezone.utc)


def _human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


__all__ = [
    "BREAKER_MEMORY_MS",
    "TRIAL_LEASE_MS",
    "BreakerKey",
    "BreakerState",
    "BreakerStatus",
    "GuardStatus",
    "Ledger",
    "SpendStatus",
    "Verdict",
    "from_micro",
    "to_micro",
]
