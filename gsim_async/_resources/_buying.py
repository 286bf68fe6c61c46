"""Buying: the one purchase path of orders and rentals (docs/architecture.md, rule 2).

A purchase is sent once per attempt and never blindly repeated: when its answer is
lost it is reconciled (``_reconcile``), and bought again only once reconciliation
proved it bought nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._crashpoints import reached
from .._exceptions import APIConnectionError, GsimError, JournalError
from .._obligations import Purchase
from .._ownership import Key
from .._reconcile import Item, Lost, Reconciler
from .._transport import LostAnswerError
from .._validation import ID_PATTERN

T = TypeVar("T", bound=Item)


async def buy(
    *,
    reconciler: Reconciler[T],
    key: Key,
    what: str,
    matches: Callable[[T], bool],
    send: Callable[[list[float], Callable[[], Awaitable[None]]], Awaitable[T]],
    reread: Callable[[str], Awaitable[T]],
    retries: int,
    path: str,
    journal: Callable[[], Purchase],
    record: Callable[[Purchase, T], None],
) -> T:
    """Buy once: ``send(sent_log, before)`` sends the purchase; a lost answer is reconciled.

    ``journal()`` gives each attempt's journal rows: ``before()`` (which ``send`` awaits
    once the request has its turn to leave) puts the intent on disk, and
    ``record(purchase, item)`` notes what it bought.

    Raises what the purchase raised, ``OutcomeUnknownError`` when the outcome cannot be
    told, or ``APIConnectionError`` when every attempt provably bought nothing.
    """
    for _ in range(retries + 1):
        started = await reconciler.begin(key)
        purchase = journal()
        sent_log: list[float] = []

        async def before(purchase: Purchase = purchase) -> None:
            purchase.leaving()

        try:
            reached("before-intent")
            # On disk before the request waits for its turn: purchases started together
            # share one commit. When it leaves, the row is stamped (not awaited).
            await purchase.start()
            reached("after-intent")
            item = await send(sent_log, before)
            reached("after-answer")
        except LostAnswerError as lost:
            # Undecided (OutcomeUnknownError, or the client closing): the row stays on the
            # journal's wire, for the next run to reconcile.
            found = await _resolve(reconciler, key, started, lost, what, matches, reread)
            if found is not None:
                record(purchase, found)
                return found
            purchase.nothing("nothing bought")
            continue  # provably nothing was bought: buy again
        except BaseException as exc:
            await reconciler.abandon(key, started)
            if isinstance(exc, JournalError):
                purchase.nothing("not sent: the journal could not record it")
            elif not isinstance(exc, asyncio.CancelledError):
                # A definite error: nothing was bought, and the journal says so before
                # the caller hears of it. (A cancelled purchase stays on the journal's
                # wire: whether it bought is not known here.)
                await purchase.refused(f"refused: {type(exc).__name__}")
            raise
        await reconciler.bought(key, started, item.id, sent_log[-1] if sent_log else started)
        record(purchase, item)
        return item
    raise APIConnectionError(
        f"buying {what} failed {retries + 1} times, each time provably without buying "
        "anything; nothing was charged",
        method="POST",
        path=path,
    )


async def _resolve(
    reconciler: Reconciler[T],
    key: Key,
    started: float,
    lost: LostAnswerError,
    what: str,
    matches: Callable[[T], bool],
    reread: Callable[[str], Awaitable[T]],
) -> T | None:
    data = lost.data
    if lost.happened and isinstance(data, dict):
        # A 2xx whose body we could not read as a whole may still name what it bought.
        item_id = data.get("id")
        if isinstance(item_id, str) and ID_PATTERN.fullmatch(item_id):
            try:
                item = await reread(item_id)
            except GsimError:
                pass
            else:
                if matches(item):
                    await reconciler.bought(key, started, item.id, lost.sent)
                    return item
    return await reconciler.resolve(
        key,
        started,
        Lost(
            key=key,
            what=what,
            matches=matches,
            sent=lost.sent,
            deadline=lost.sent_mono + reconciler.window,
            happened=lost.happened,
        ),
    )
