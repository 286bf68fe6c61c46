"""What a client owes for the orders it holds, written through to its journals.

Every order a client buys is owed something until it ends: its code, or its refund by
a deadline (design.md, money rule 7). ``Obligations`` keeps that account for one
client (all its views) and writes each change through to its *sinks*: the file
journal (``Client(journal=...)``) and a fleet's Redis. Without a sink it records
nothing and costs nothing.

How a refund falls due, the ``purpose`` a row carries:

* ``activation``: an ``activation()`` block holds the order; if the process dies, the
  block died with it, so the order is refunded (cancelled) after a short grace;
* ``wait``: a wait with a timeout holds it; refunded (banned, or as ``on_timeout``
  said) once that timeout has passed;
* ``order``: bought by ``create()`` and held by the program; refunded (cancelled)
  shortly before it expires, unless the program takes it back;
* ``refund``: a refund was under way; it is due at once.

When it falls due (a sink's ``deadline``) is a time on the *server's* clock: this
machine's wall clock plus the client's best guess of the server's offset. A later run
turns it back with its own guess, so a wall clock stepped between the two runs (NTP
correcting it after a boot) moves nothing. None: as the purpose says (an order, before
it expires; an activation, a grace after a later run finds its block dead, a time that
run then writes).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs

from . import _constants as C
from ._clock import ServerClock
from ._models import Order

log = logging.getLogger("gsim_async")


class Sink(Protocol):
    """Where obligations are written: a file journal, or a fleet's Redis."""

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
        """Record a purchase about to leave; returns once it is durable.

        ``clock``: what the client has pinned of (server stamp - our clock), never from
        a Date header, -inf/inf where it knows nothing: a later run tells by it which
        orders this purchase can have made, whatever its own clock says.
        """

    def leaving(self, ref: str, sent: float) -> None:
        """The purchase's request leaves now (its turn at the rate gate came): not awaited."""

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
        """``item_id`` is held: due at ``deadline`` (server's clock), refunded by ``action``."""

    def due(self, ref: str, *, purpose: str, deadline: float | None, action: str | None) -> None:
        """How an owed order's refund falls due changed (``deadline``: server's clock)."""

    def done(self, ref: str, outcome: str) -> None:
        """``ref`` ended."""

    def baseline(self, kind: str, ids: Iterable[str], newest: str | None) -> None:
        """What the account held before this client first bought a ``kind``."""

    def foreign(self) -> None:
        """Another buyer was seen on the key now (a later run will not guess either)."""

    async def flushed(self) -> None:
        """Returns once every write queued before it is durable."""


@attrs.define(slots=True)
class _Owed:
    ref: str
    base: str  # the purpose while no wait overlays it: "order" or "activation"
    expires: float | None  # wall clock
    waiting: bool = False


class Purchase:
    """One purchase's journal rows: the intent, then what it bought (or not)."""

    __slots__ = ("_kind", "_owner", "_purpose", "_request", "ref", "sent")

    def __init__(
        self, owner: Obligations, kind: str, purpose: str, request: dict[str, Any]
    ) -> None:
        self._owner = owner
        self._kind = kind
        self._purpose = purpose
        self._request = request
        self.ref: str | None = None
        self.sent = 0.0

    async def start(self) -> None:
        """Record the intent (durably) before the request leaves."""
        owner = self._owner
        if not owner.sinks:
            return
        self.ref = owner.new_ref()
        owner.on_wire += 1
        self.sent = time.time()
        clock = owner.clock
        # Always kept, the first purchase's too: before our own purchases pin it, the
        # account's newest stamp (read before the first purchase) bounds it from below.
        bounds = clock.pinned() if clock is not None else None
        await asyncio.gather(
            *(
                s.intent(
                    self.ref,
                    kind=self._kind,
                    purpose=self._purpose,
                    request=self._request,
                    sent=self.sent,
                    clock=bounds,
                )
                for s in owner.sinks
            )
        )

    def leaving(self) -> None:
        """The request leaves now: the row says when (the intent was written before it
        waited for its turn, so that purchases started together share a commit)."""
        if self.ref is None:
            return
        self.sent = time.time()
        for sink in self._owner.sinks:
            sink.leaving(self.ref, self.sent)

    def bought_order(self, order: Order, wire: dict[str, Any], expires: float | None) -> None:
        """The purchase bought ``order`` (its answer came, or it was reconciled)."""
        if self.ref is None:
            return
        self._owner.hold(self.ref, order, wire, expires, self._purpose, sent=self.sent)
        self._owner.on_wire -= 1
        self.ref = None

    def bought_rental(self, rental_id: str, phone_number: str) -> None:
        """The purchase rented ``rental_id``: nothing is owed, the id is remembered."""
        if self.ref is None:
            return
        self._owner.rented(self.ref, rental_id, phone_number, self.sent)
        self._owner.on_wire -= 1
        self.ref = None

    def nothing(self, outcome: str) -> None:
        """The purchase provably bought nothing."""
        if self.ref is None:
            return
        for sink in self._owner.sinks:
            sink.done(self.ref, outcome)
        self._owner.on_wire -= 1
        self.ref = None

    async def refused(self, outcome: str) -> None:
        """The server refused the purchase: recorded, and durable, before the caller hears.

        A failure to write is logged, not raised: the caller must hear the refusal.
        """
        if self.ref is None:
            return
        self.nothing(outcome)
        for sink in self._owner.sinks:
            try:
                await sink.flushed()
            except Exception as exc:
                log.warning("the journal could not record a refused purchase: %s", exc)


class Obligations:
    """What one client owes for the orders it holds (see the module docstring)."""

    def __init__(self, clock: ServerClock | None = None) -> None:
        self.sinks: list[Sink] = []
        #: The client's view of the server's clock, kept with each intent.
        self.clock = clock
        self._owed: dict[str, _Owed] = {}
        self._tag = uuid.uuid4().hex[:12]
        self._count = 0
        self._foreign_noted = -1e18
        #: Purchases whose intent is written and whose outcome is not (yet).
        self.on_wire = 0

    @property
    def active(self) -> bool:
        """Whether anything is written (a journal or a fleet is attached)."""
        return bool(self.sinks)

    @property
    def open_rows(self) -> int:
        """Rows that still need something: orders owed, purchases on the wire."""
        return len(self._owed) + self.on_wire

    def new_ref(self) -> str:
        """A fresh row reference, unique across runs and processes."""
        self._count += 1
        return f"{self._tag}-{self._count}"

    def purchase(self, kind: str, purpose: str, request: dict[str, Any]) -> Purchase:
        """The rows of one purchase (``kind``: order or rental)."""
        return Purchase(self, kind, purpose, request)

    def hold(
        self,
        ref: str,
        order: Order,
        wire: dict[str, Any],
        expires: float | None,
        purpose: str,
        *,
        sent: float | None = None,
    ) -> None:
        """``order`` is this client's: owed as ``purpose`` says until it ends."""
        if not self.sinks:
            return
        self.adopt(
            ref,
            order,
            wire,
            expires,
            purpose="activation" if purpose == "activation" else "order",
            deadline=None,  # an order's is before its expiry; an activation's, the grace
            action="cancel",
            sent=sent,
            received=time.time(),
        )

    def adopt(
        self,
        ref: str,
        order: Order,
        wire: dict[str, Any],
        expires: float | None,
        *,
        purpose: str,
        deadline: float | None,
        action: str,
        sent: float | None = None,
        received: float | None = None,
    ) -> None:
        """``order`` is owed under row ``ref``, due at ``deadline`` (server's clock).

        An earlier run's row is written again with the due time it had (kept as it is).
        """
        base = "activation" if purpose == "activation" else "order"
        self._owed[order.id] = _Owed(ref, base, expires)
        for sink in self.sinks:
            sink.owe(
                ref,
                kind="order",
                purpose=purpose,
                item_id=order.id,
                item=wire,
                deadline=None if purpose == "order" else deadline,
                action=action,
                sent=sent,
                received=received,
            )

    def rented(self, ref: str, rental_id: str, phone_number: str, sent: float | None) -> None:
        """An earlier run's rental purchase, found: nothing is owed, the id is kept."""
        wire = {"id": rental_id, "phoneNumber": phone_number}
        for sink in self.sinks:
            sink.owe(
                ref,
                kind="rental",
                purpose="rental",
                item_id=rental_id,
                item=wire,
                deadline=None,
                action=None,
                sent=sent,
            )
            sink.done(ref, "rented")

    def forget(self, ref: str, outcome: str) -> None:
        """A row that needs nothing more (an earlier run's, resolved)."""
        for sink in self.sinks:
            sink.done(ref, outcome)

    def waiting(
        self,
        order: Order,
        seconds: float,
        action: str,
        wire: Callable[[], dict[str, Any]],
        expires: Callable[[], float],
    ) -> None:
        """A wait with a timeout began: if the process dies, refund when it would have.

        ``wire()`` and ``expires()`` describe an order not held yet (read by id, an
        earlier run's): it is answered for from now on.
        """
        if not self.sinks:
            return
        owed = self._owed.get(order.id)
        if owed is None:
            self.hold(self.new_ref(), order, wire(), expires(), "order")
            owed = self._owed[order.id]
        owed.waiting = True
        if owed.base == "activation":
            return  # a dead block is refunded after the grace, whatever its wait said
        deadline = self.on_server(time.time() + seconds)
        for sink in self.sinks:
            sink.due(owed.ref, purpose="wait", deadline=deadline, action=action)

    def not_waiting(self, order_id: str) -> None:
        """A wait stopped without an outcome (cancelled, or kept): back to its holder."""
        owed = self._owed.get(order_id)
        if owed is None or not owed.waiting:
            return
        owed.waiting = False
        if owed.base == "activation":
            return
        for sink in self.sinks:
            sink.due(owed.ref, purpose=owed.base, deadline=None, action="cancel")

    def kept(self, order_id: str) -> None:
        """The program keeps the order (``on_timeout="keep"``, a kept activation)."""
        owed = self._owed.get(order_id)
        if owed is None:
            return
        owed.base = "order"
        owed.waiting = False
        for sink in self.sinks:
            sink.due(owed.ref, purpose="order", deadline=None, action="cancel")

    def due_fixed(self, order_id: str, ref: str, deadline: float) -> None:
        """A dead block's refund now falls due at ``deadline`` (server's clock), for good."""
        owed = self._owed.get(order_id)
        if owed is None or owed.ref != ref or owed.base != "activation":
            return  # taken back, or ended, meanwhile
        for sink in self.sinks:
            sink.due(ref, purpose="activation", deadline=deadline, action="cancel")

    def refunding(self, order_id: str, action: str) -> None:
        """A refund began: if the process dies before it lands, it is due at once."""
        owed = self._owed.get(order_id)
        if owed is None:
            return
        deadline = self.on_server(time.time())
        for sink in self.sinks:
            sink.due(owed.ref, purpose="refund", deadline=deadline, action=action)

    def ended(self, order_id: str, outcome: str) -> None:
        """``order_id`` got its code, was refunded, or reached a final status."""
        owed = self._owed.pop(order_id, None)
        if owed is None:
            return
        for sink in self.sinks:
            sink.done(owed.ref, outcome)

    def on_server(self, wall: float) -> float:
        """``wall`` (this machine's clock) on the server's clock (best guess)."""
        clock = self.clock
        return wall if clock is None else wall + clock.offset

    def on_wall(self, server: float) -> float:
        """A time on the server's clock, on this machine's (best guess)."""
        clock = self.clock
        return server if clock is None else server - clock.offset

    def baseline(self, kind: str, ids: Iterable[str], newest: str | None) -> None:
        """What the account held before this client first bought a ``kind``."""
        for sink in self.sinks:
            sink.baseline(kind, ids, newest)

    def foreign(self, item_id: str) -> None:
        """Another buyer bought ``item_id`` on this key (kept for a later run)."""
        now = time.monotonic()
        if now - self._foreign_noted < 60.0:
            return  # once a minute is plenty: it is remembered for an hour
        self._foreign_noted = now
        for sink in self.sinks:
            sink.foreign()


def expiry_wall(seconds_left: float) -> float:
    """An order's expiry on this machine's wall clock, from the seconds it has left."""
    return time.time() + min(seconds_left, C.ORDER_LIFETIME)


__all__ = ["Obligations", "Purchase", "Sink", "expiry_wall"]
