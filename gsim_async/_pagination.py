"""Turning list envelopes into ``Page`` and walking every page lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from ._models import Page


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T")
I = TypeVar("I", bound=_HasId)  # noqa: E741


def make_page(
    items: Sequence[T],
    *,
    total: int | None,
    page: int | None,
    limit: int | None,
    total_pages: int | None,
    requested_page: int,
    requested_limit: int,
) -> Page[T]:
    """A Page, deriving what the response left out (rentals and SMS lists omit some)."""
    page = page or requested_page
    limit = limit or requested_limit
    if total is None:
        # Unknown size: a full page may have a successor, a short one has none.
        total = (page - 1) * limit + len(items)
        if len(items) >= limit:
            total += 1
    if total_pages is None:
        total_pages = -(-total // limit) if limit else 0
    return Page(items=tuple(items), total=total, page=page, limit=limit, total_pages=total_pages)


async def iterate_pages(
    fetch: Callable[[int], Awaitable[Page[I]]],
) -> AsyncIterator[I]:
    """Every item of every page, fetched one page at a time, each item once.

    Lists are newest first, so an item created while we page pushes older ones down
    and one may show up twice; ids already yielded are skipped.
    """
    seen: set[str] = set()
    number = 1
    while True:
        page = await fetch(number)
        for item in page.items:
            if item.id not in seen:
                seen.add(item.id)
                yield item
        if not page.items or len(page.items) < page.limit or number >= page.total_pages:
            return
        number += 1
