"""Counters of the API requests served, per route and per status."""

from __future__ import annotations

from collections import Counter

from ._records import Stats


class Counters:
    """Mutable request counters; ``snapshot`` gives a frozen ``Stats``."""

    __slots__ = ("by_route", "by_route_status", "by_status", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_route_status: Counter[tuple[str, int]] = Counter()

    def count(self, route: str, status: int) -> None:
        """One request to ``route`` answered with ``status`` (0: dropped)."""
        self.total += 1
        self.by_route[route] += 1
        self.by_status[status] += 1
        self.by_route_status[route, status] += 1

    def reset(self) -> None:
        """Back to zero."""
        self.total = 0
        self.by_route.clear()
        self.by_status.clear()
        self.by_route_status.clear()

    def snapshot(self) -> Stats:
        """A frozen copy."""
        return Stats(
            total=self.total,
            by_route=dict(self.by_route),
            by_status=dict(self.by_status),
            by_route_status=dict(self.by_route_status),
        )
