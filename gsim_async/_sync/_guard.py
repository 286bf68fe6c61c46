"""``SyncClient.guard``: the blocking twin of ``client.guard``."""

from __future__ import annotations

from .._guard import SpendGuard
from .._guard_config import Breaker, SpendLimit
from .._ledger import GuardStatus
from ._portal import Runner


class SyncSpendGuard:
    """The spend limit's and the breakers' state, and their reset (see ``client.guard``)."""

    def __init__(self, runner: Runner, guard: SpendGuard) -> None:
        self._runner = runner
        self._guard = guard

    @property
    def spend_limit(self) -> SpendLimit | None:
        """The spend limit this client enforces (``None``: none)."""
        return self._guard.spend_limit

    @property
    def breaker(self) -> Breaker | None:
        """The breaker this client enforces (``None``: none)."""
        return self._guard.breaker

    def status(self) -> GuardStatus:
        """Net spend in the window, what purchases in flight reserve, and the breakers."""
        return self._runner.call(self._guard.status)

    def reset(self, service: str | None = None, country: str | None = None) -> int:
        """Close the breakers of ``service`` (in ``country``), or all of them; how many."""
        return self._runner.call(lambda: self._guard.reset(service, country))


__all__ = ["SyncSpendGuard"]
