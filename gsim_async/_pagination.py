"""Turning list answers into ``Page`` and walking every page lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import attrs

from ._converter import Listing
from ._models import Page


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T")
I = TypeVar("I", bound=_HasId)  # noqa: E741


def make_page(data: Listing[T], requested_page: int, requested_limit: int) -> Page[T]:
    """A Page, deriving what the answer left out (rentals and SMS lists omit some)."""
    items = data.items
    page = data.page or requested_page
    limit = data.limit or requested_limit
    total = data.total
    if total is None:
        # Unknown size: a full page may have a successor, a short one has none.
        total = (page - 1) * limit + len(items)
        if len(items) >= limit:
            total += 1
    total_pages = data.total_pages
    if total_pages is None:
        total_pages = -(-total // limit) if limit else 0
    return Page(items=tuple(items), total=total, page=page, limit=limit, total_pages=total_pages)


async def walk_pages(fetch: Callable[[int], Awaitable[Page[I]]]) -> AsyncIterator[Page[I]]:
    """Every page, fetched one at a time, with items already seen on earlier pages removed.

    Lists are newest first, so an item created while we page pushes older ones down
    and one may show up twice.
    """
    seen: set[str] = set()
    number = 1
    while True:
        page = await fetch(number)
        fresh = tuple(item for item in page.items if item.id not in seen)
        seen.update(item.id for item in fresh)
        yield attrs.evolve(page, items=fresh)
        if not page.items or len(page.items) < page.limit or number >= page.total_pages:
            return
        number += 1


async def iterate_pages(fetch: Callable[[int], Awaitable[Page[I]]]) -> AsyncIterator[I]:
    """Every item of every page, fetched one page at a time, each item once."""
    async for page in walk_pages(fetch):
        for item in page.items:
            yield item
