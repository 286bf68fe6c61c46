"""Joining a client to a fleet: which of its parts the fleet shares, and how."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._guard import Guard
from .._journal import Entry
from .._ownership import Ownership
from .._pacing import Pacing
from .._reconcile import Reconciler
from .._watcher import OrderHook, OrderSource
from ._book import FleetBook
from ._gate import FleetGate
from ._journal import FleetJournal
from ._member import Member, Revocation
from ._settings import Settings
from ._spend import FleetSpend
from ._watch import FleetWatcher


class Binding:
    """One client's part in a fleet: its gate, its ownership records, its watcher, its
    journal and its spend guard."""

    def __init__(
        self,
        settings: Settings,
        *,
        pacing: Pacing,
        ownership: Ownership,
        reconcilers: Sequence[Reconciler[Any]],
        source: OrderSource,
        poll_interval: float,
        on_update: OrderHook | None,
        told: float | None,
        slow_start: bool,
        take_over: Callable[[Sequence[Entry]], None],
        released: Callable[[Sequence[str]], None],
        guard: Guard | None = None,
    ) -> None:
        self.member = Member(settings)
        self.gate = FleetGate(self.member, pacing, told, slow_start)
        pacing.attach(self.gate)
        self.book = FleetBook(self.member, ownership)
        ownership.attach(self.book)
        for reconciler in reconcilers:
            reconciler.attach(self.book)
        self.watcher = FleetWatcher(self.member, source, poll_interval, on_update)
        #: The member's obligations in Redis, and the leader's custody of dead members'.
        self.journal = FleetJournal(
            self.member, leading=lambda: self.watcher.leading, take_over=take_over
        )
        #: The spend guard's counts, the fleet's (read by any member, kept by those
        #: that configure a limit or a breaker).
        self.spend = FleetSpend(
            self.member, guard.limit if guard else None, guard.breaker if guard else None
        )
        if guard is not None:
            guard.attach(self.spend)
        self._released = released
        self.member.on_revoked(self._revoked)
        #: Set by ``stopping()``: no other member stays to take over what this one owes.
        self.last = False

    def _revoked(self, revocation: Revocation) -> None:
        """What the fleet took over is the leader's now, no longer this client's to owe.

        A purchase still on the wire as taken is the leader's to reconcile; its waits
        end, and the client lets go of the orders.
        """
        ids = self.journal.revoked(revocation)
        self.watcher.revoked(revocation, ids)
        self._released(ids)

    async def start(self) -> None:
        """Connect and join (alone, with a warning, if Redis cannot be reached)."""
        await self.member.start()
        await self.gate.start()
        self.book.start()
        self.watcher.start()
        self.journal.start()
        await self.spend.start()

    @property
    def carries(self) -> bool:
        """Whether the fleet would keep what this member owes if it stopped now (a guess).

        Only another live member can act on it: the last member of a fleet (or one cut
        off from Redis) refunds what it owes itself, like a client alone. ``stopping()``
        says it for certain.
        """
        member = self.member
        return member.active and member.peers - len(member.proven_dead) > 1

    async def stopping(self) -> bool:
        """This member stops: whether another member, alive and staying, keeps its rows.

        Asked of Redis atomically, so of members stopping together (a whole fleet scaled
        to zero) the last to ask refunds its own waits and takes over what the others
        left to the fleet (``take_over_leavers``); each alone would leave it to the
        others, and nobody would refund it.
        """
        others = await self.member.stopping() if self.member.active else None
        self.last = not others
        return bool(others)

    async def take_over_leavers(self) -> int:
        """The last member: take over what members leaving left to the fleet."""
        if not self.last or not self.member.active:
            return 0
        return await self.journal.sweep(last=True)

    async def claimed(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` a live member holds or waits on."""
        if not self.member.active:
            return set()
        watched = await self.watcher.watched_by_live_members()
        return await self.book.claimed(ids, watched)

    async def aclose(self) -> None:
        """Leave the fleet at once: what this member still owes is the leader's to take.

        Its heartbeat goes as it leaves, so the leader takes its rows over without
        waiting out ``dead_after``.
        """
        await self.journal.flush()
        await self.watcher.aclose()
        await self.member.aclose()
