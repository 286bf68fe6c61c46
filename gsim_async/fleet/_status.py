"""What ``RedisFleet.status()`` returns: a fleet as its Redis shows it, at one moment.

Frozen models only; ``_read`` fills them. Times are Redis' own clock (the one every
heartbeat, lease and pause of the fleet is stamped with), as timezone-aware UTC
``datetime`` s; durations are seconds.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs


class MemberState(str, enum.Enum):
    """How the fleet judges a member (its own rule: ``RedisFleet(dead_after=...)``).

    Compares equal to its value (``"alive"``).
    """

    #: It beats: the fleet counts on it.
    ALIVE = "alive"
    #: No heartbeat for more than three heartbeats, but not yet ``dead_after``: the fleet
    #: still counts it alive (stalled, or dead and not yet judged); nothing is taken.
    SILENT = "silent"
    #: Silent for ``dead_after`` or more, its process seen gone (on the reading machine),
    #: or taken over: the fleet's leader takes what it owed and refunds its waits.
    DEAD = "dead"

    def __str__(self) -> str:
        return str(self.value)


@attrs.frozen
class Obligations:
    """What one member owes, from its rows in the fleet's journal (``owed:<member>``).

    ``purchases``: purchases sent (or about to be) whose order is not yet known;
    the rest are orders and rentals held, by what their refund waits for:
    ``waits`` (a wait with a timeout), ``activations`` (an ``activation()`` block),
    ``orders`` (bought and held by the program), ``refunds`` (a refund under way),
    ``rentals``. ``next_due``: the earliest refund deadline a row names (the API
    server's clock, as the member guessed it), or None.
    """

    purchases: int = 0
    orders: int = 0
    waits: int = 0
    activations: int = 0
    refunds: int = 0
    rentals: int = 0
    next_due: datetime | None = None

    @property
    def held(self) -> int:
        """Orders and rentals held now (every row but the purchases on the wire)."""
        return self.orders + self.waits + self.activations + self.refunds + self.rentals

    @property
    def total(self) -> int:
        """Every row: purchases on the wire and items held."""
        return self.purchases + self.held


@attrs.frozen
class TakeOver:
    """The fleet's leader took over what a member owed (it was silent, or gone)."""

    #: The member that took over (the leader then).
    by: str
    at: datetime | None
    #: Rows taken (purchases and orders), as far as Redis still remembers (a day).
    rows: int


@attrs.frozen
class MemberStatus:
    """One member of the fleet: where it runs, how recently it beat, what it holds and owes.

    ``host`` and ``pid`` are what the member wrote of itself when it joined (None for
    one that wrote nothing: a member of an older release). ``joined_at`` is when it
    (last) joined, ``age`` how long it has been a member since, up to its last
    heartbeat; ``last_heartbeat`` when it last beat (None: Redis no longer has a
    heartbeat of it: it left, or was taken over). ``held``: orders and rentals it holds
    now, each owed a code or a refund (``obligations`` says how, and what purchases it
    has on the wire). ``waiting``: orders it waits on through the fleet's leader (None
    when the fleet had too many registrations to count each member's). ``throttled``:
    429s it met among the fleet's recent ones (``FleetStatus.throttles``).
    """

    id: str
    state: MemberState
    host: str | None = None
    pid: int | None = None
    joined_at: datetime | None = None
    #: Seconds from joining to its last heartbeat (None without either).
    age: float | None = None
    last_heartbeat: datetime | None = None
    #: Seconds since its last heartbeat (None without one).
    silent_for: float | None = None
    #: Its fencing epoch (None once it has none: taken over, or left).
    epoch: int | None = None
    leader: bool = False
    #: Its process is gone: seen from this machine, which shares its pid namespace.
    process_gone: bool = False
    held: int = 0
    waiting: int | None = 0
    obligations: Obligations = Obligations()
    taken_over: TakeOver | None = None
    throttled: int = 0

    @property
    def alive(self) -> bool:
        """Whether the fleet counts this member alive (``ALIVE`` or ``SILENT``)."""
        return self.state is not MemberState.DEAD


@attrs.frozen
class LeaderStatus:
    """The member that polls for every member: its lease, named by member and epoch."""

    member: str
    epoch: int | None
    #: Seconds left of its lease (it renews it three times a lease while alive).
    lease_left: float | None
    #: Whether the lease's epoch is still the member's own (False: void, from a member
    #: the fleet took over; another member claims the lease within one).
    valid: bool = True


@attrs.frozen
class GateStatus:
    """The fleet's rate gate: what it knows of the limit, and a 429's pause.

    ``phase``: ``"slow"`` (slow start, probing upward from a small rate), ``"unpaced"``
    (no limit known, none met), ``"learnt"`` (learnt from a 429), ``"told"``
    (``max_requests_per_second``), ``"advertised"`` (rate-limit headers). ``rate``:
    requests per second the whole fleet sends at most (None: unpaced). ``paused_for``:
    seconds left of a 429's pause (0: none), which ends at ``paused_until``.
    ``accepted_rate``: answers the API accepted per second, fleet-wide, over the last
    ten seconds (the members' counts, written four times a second).
    """

    phase: str | None
    rate: float | None
    paused_for: float = 0.0
    paused_until: datetime | None = None
    accepted_rate: float = 0.0

    @property
    def paused(self) -> bool:
        """Whether every member is waiting out a 429 now."""
        return self.paused_for > 0


@attrs.frozen
class Throttle:
    """One 429 a member met (newest first in ``FleetStatus.throttles``)."""

    at: datetime
    member: str
    #: The pause the server asked for (``Retry-After``), seconds.
    retry_after: float
    #: Whether it began a pause (False: it came while the fleet was already paused,
    #: an answer to a request sent before the pause).
    began_pause: bool


@attrs.frozen
class FleetStatus:
    """A fleet as its Redis shows it: ``await RedisFleet(url).status()``.

    ``members``: alive first, then silent, then dead (each by the time it joined).
    ``leader`` is None while no member holds the lease; ``gate`` None before any member
    joined. ``throttles``: the fleet's last 429s (at most 200), newest first.
    ``waiting``: orders waited on through the leader. ``ownership_records``: orders and
    rentals the fleet records as a member's (every one members bought or adopted, kept
    for matching lost purchase answers: it grows with the fleet's life).
    ``foreign_buyer``: another buyer (not a member) bought on the key recently, so a
    purchase whose answer is lost may not be matched. ``dead_after`` and ``heartbeat``
    are what the members were judged by (the reading ``RedisFleet`` 's).
    """

    #: Every key of this fleet starts with it (a hash of the API key, never the key).
    prefix: str
    #: Which Redis (never its password).
    where: str
    read_at: datetime
    members: tuple[MemberStatus, ...] = ()
    leader: LeaderStatus | None = None
    gate: GateStatus | None = None
    throttles: tuple[Throttle, ...] = ()
    waiting: int = 0
    ownership_records: int = 0
    foreign_buyer: bool = False
    dead_after: float = 35.0
    heartbeat: float = 1.0

    @property
    def empty(self) -> bool:
        """Whether Redis holds no fleet on this key: no member ever joined (or all is gone)."""
        return not self.members and self.gate is None and not self.ownership_records

    @property
    def alive(self) -> tuple[MemberStatus, ...]:
        """The members the fleet counts alive."""
        return tuple(m for m in self.members if m.alive)

    def throttled_within(self, seconds: float) -> int:
        """429s met in the last ``seconds`` (of those remembered: at most 200)."""
        since = self.read_at - timedelta(seconds=seconds)
        return sum(1 for t in self.throttles if t.at >= since)

    def member(self, member_id: str) -> MemberStatus | None:
        """The member with this id, if listed."""
        return next((m for m in self.members if m.id == member_id), None)


__all__ = [
    "FleetStatus",
    "GateStatus",
    "LeaderStatus",
    "MemberState",
    "MemberStatus",
    "Obligations",
    "TakeOver",
    "Throttle",
]
