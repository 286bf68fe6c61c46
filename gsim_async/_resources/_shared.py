"""What every view of one client shares beyond its transport: who owns what, and the
background work (docs/architecture.md, "Layers")."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .. import _registry
from .._background import Background
from .._obligations import Obligations
from .._ownership import Ownership
from .._waiting import OpenActivations, Waits

if TYPE_CHECKING:
    from .._transport import Transport

#: Which client bought an order, for the top-level ``wait_for_code(order)``.
OWNERS: _registry.Owners[Any] = _registry.Owners()


class Shared:
    """Ownership, obligations, background tasks, open activations, waits, shared settings."""

    def __init__(self, transport: Transport, poll_interval: float, reconcile_window: float) -> None:
        self.root = transport
        self.poll_interval = poll_interval
        self.reconcile_window = reconcile_window
        self.ownership = Ownership(transport.clock)
        self.background = Background(lambda: transport.pacing.paused_for)
        self.activations = OpenActivations()
        #: The waits in progress, and whether the client stopped (design.md, rule 9).
        self.waits = Waits()
        #: What this client owes for the orders it holds (written to its journals).
        self.obligations = Obligations(transport.clock)
        self.ownership.on_foreign = self.obligations.foreign
        #: Orders whose refund is under way right now.
        self.refunding: set[str] = set()
        #: Set by the orders namespace: the weak reference OWNERS keeps per order.
        self.owner_ref: weakref.ref[Any] | None = None
