"""The blocking client (``SyncClient``): ``Client`` in a thread of its own."""

from __future__ import annotations

from ._client import SyncClient
from ._guard import SyncSpendGuard
from ._orders import SyncActivation, SyncActivations, SyncOrders
from ._rentals import SyncRentals

__all__ = [
    "SyncActivation",
    "SyncActivations",
    "SyncClient",
    "SyncOrders",
    "SyncRentals",
    "SyncSpendGuard",
]
