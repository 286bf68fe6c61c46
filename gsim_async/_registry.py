"""Process-wide bookkeeping: which client an order belongs to, and what live clients claim.

Two questions reach across clients of one process:

* ``gsim_async.wait_for_code(order)`` takes only an order: which client bought it?
  An order is remembered while it can still get a code (until it settles or its
  expiry passes), so the registry never grows with the orders a client ever handled.
* ``orders.cancel_stale()`` must not cancel an order another live client of this
  process holds or waits on.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from . import _constants as C


class Claims(Protocol):
    """A live client's say over orders: whether it holds or waits on one."""

    def claims(self, order_id: str) -> bool:
        """Whether this client holds or waits on ``order_id``."""


OwnerT = TypeVar("OwnerT")

#: Every live client's claims (weakly: a client that is gone claims nothing).
_live: weakref.WeakSet[Claims] = weakref.WeakSet()


def register_claims(claims: Claims) -> None:
    """Count ``claims`` among the live clients of this process."""
    _live.add(claims)


def claimed(order_id: str) -> bool:
    """Whether any live client of this process holds or waits on ``order_id``."""
    return any(c.claims(order_id) for c in list(_live))


class Owners(Generic[OwnerT]):
    """Order id → the (weakly held) owner an order belongs to, while it may get a code."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._entries: dict[str, tuple[weakref.ref[OwnerT], float]] = {}
        self._purge_at = 1024

    def remember(
        self, order_id: str, owner: weakref.ref[OwnerT], seconds_left: float | None
    ) -> None:
        """Note that ``order_id`` belongs to ``owner`` for about ``seconds_left`` more."""
        life = C.ORDER_LIFETIME if seconds_left is None else max(seconds_left, 0.0)
        entry = self._entries.get(order_id)
        if entry is None or entry[0] is not owner:
            self._entries[order_id] = (owner, self._monotonic() + life + 60.0)
            if len(self._entries) >= self._purge_at:
                self._purge()

    def knows(self, order_id: str, owner: weakref.ref[OwnerT]) -> bool:
        """Whether ``order_id`` is remembered as ``owner``'s already."""
        entry = self._entries.get(order_id)
        return entry is not None and entry[0] is owner

    def forget(self, order_id: str) -> None:
        """The order settled: nobody will wait on it through the registry any more."""
        self._entries.pop(order_id, None)

    def owner(self, order_id: str) -> OwnerT | None:
        """The live owner of ``order_id``, if any."""
        entry = self._entries.get(order_id)
        if entry is None:
            return None
        return entry[0]()

    def held_by(self, owner: weakref.ref[OwnerT]) -> list[str]:
        """The orders remembered as ``owner``'s that may still get a code."""
        now = self._monotonic()
        entries = list(self._entries.items())
        return [k for k, (ref, until) in entries if ref is owner and until > now]

    def __len__(self) -> int:
        return len(self._entries)

    def _purge(self) -> None:
        now = self._monotonic()
        self._entries = {
            k: (ref, until) for k, (ref, until) in self._entries.items()
            if until > now and ref() is not None
        }  # fmt: skip
        self._purge_at = max(1024, 2 * len(self._entries))
