"""Crash safety: real processes killed with SIGKILL at every point that matters.

Each test runs a program with a journal in its own process against the sandbox (in
this process, with a real SQLite file), kills it, starts it again on the same journal,
and checks the sandbox's ledger: nothing charged twice, nothing left charged past its
deadline plus a few seconds, every code that arrived still readable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from helpers import fast_client
from processes import Worker

from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("crash_worker.py")
OPENING = Decimal("100")
#: Seconds past a refund's deadline within which it must have landed.
SLACK = 5.0


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=23, auto_deliver=False, balance=OPENING) as sb:
        yield sb


_STARTED: list[Worker] = []


@pytest.fixture(autouse=True)
async def no_worker_left() -> AsyncIterator[None]:
    """Whatever a test's outcome, none of its processes outlives it."""
    yield
    while _STARTED:
        worker = _STARTED.pop()
        if worker.process.returncode is None:
            await worker.killed()
        else:
            await worker.exited()


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "gsim.db")


def config(sandbox: Sandbox, journal: str, scenario: str, **more: Any) -> dict[str, Any]:
    return {
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "journal": journal,
        "scenario": scenario,
        **more,
    }


async def run(
    sandbox: Sandbox, journal: str, scenario: str, env: dict[str, str] | None = None, **more: Any
) -> Worker:
    worker = await Worker.start(WORKER, config(sandbox, journal, scenario, **more), env)
    _STARTED.append(worker)
    if not env:
        await worker.next("ready")
    return worker


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll the sandbox until ``check()`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:.0f} s: {what}")
        await anyio.sleep(0.05)


def statuses(sandbox: Sandbox) -> dict[str, str]:
    return {o.id: o.status for o in sandbox.orders()}


def assert_refunded_once(sandbox: Sandbox, status: str) -> None:
    orders = sandbox.orders()
    assert orders
    for order in orders:
        assert order.status == status, order
        assert order.charged == order.price and order.refunded == order.price, order
    assert sandbox.balance() == OPENING


async def test_killed_while_waiting_refunds_at_the_waits_deadline(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "wait", count=5, timeout=3)
    bought = (await first.next("bought"))["ids"]
    waits_end = time.monotonic() + 3
    await anyio.sleep(0.5)  # well into the waits (their rows are written as they begin)
    await first.killed()
    assert set(statuses(sandbox).values()) == {"PENDING"}

    second = await run(sandbox, journal, "recover", stay=30)
    await until(
        lambda: set(statuses(sandbox).values()) == {"BANNED"},
        waits_end - time.monotonic() + SLACK,
        "the waits' orders banned after their timeout",
    )
    assert sorted(statuses(sandbox)) == sorted(bought)
    assert_refunded_once(sandbox, "BANNED")
    await second.killed()


async def test_killed_inside_activation_refunds_after_the_grace(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "activation", count=3)
    for _ in range(3):
        await first.next("bought")
    await first.killed()

    second = await run(sandbox, journal, "recover", stay=30, grace=1)
    await until(
        lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
        1 + SLACK,
        "the dead blocks' orders cancelled after the grace",
    )
    assert_refunded_once(sandbox, "CANCELLED")
    await second.killed()


async def test_killed_with_the_purchase_on_the_wire(sandbox: Sandbox, journal: str) -> None:
    # The server charges at once and answers 60 s later: the process dies before.
    sandbox.set_faults(purchase_answer_delay=60)
    first = await run(sandbox, journal, "activation", count=1)
    await until(lambda: len(sandbox.orders()) == 1, 10, "the purchase charged")
    await first.killed()
    sandbox.clear_faults()

    second = await run(sandbox, journal, "recover", stay=30, grace=1)
    await until(
        lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
        1 + 1 + SLACK,  # reconcile window, grace
        "the purchase found and refunded",
    )
    assert len(sandbox.orders()) == 1  # never bought again
    assert_refunded_once(sandbox, "CANCELLED")
    await second.killed()


async def test_killed_after_the_answer_before_the_order_was_journaled(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "activation", env={"_GSIM_CRASH_AT": "after-answer"})
    assert await first.exited() == -9
    assert set(statuses(sandbox).values()) == {"PENDING"}

    second = await run(sandbox, journal, "recover", stay=30, grace=1)
    await until(
        lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
        1 + 1 + SLACK,
        "the answered purchase found and refunded",
    )
    assert len(sandbox.orders()) == 1
    assert_refunded_once(sandbox, "CANCELLED")
    await second.killed()


async def test_killed_before_the_intent_was_written_buys_nothing(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "activation", env={"_GSIM_CRASH_AT": "before-intent"})
    assert await first.exited() == -9
    second = await run(sandbox, journal, "recover", take_back=True)
    recovered = await second.next("recovered")
    assert recovered["ids"] == []
    done = await second.finish()
    assert not [line for line in done["log"] if "earlier run" in line]
    assert sandbox.orders() == []
    assert sandbox.balance() == OPENING


async def test_killed_in_the_middle_of_a_refund_refunds_at_once(
    sandbox: Sandbox, journal: str
) -> None:
    sandbox.set_faults(refund_error_rate=1.0)
    first = await run(sandbox, journal, "wait", count=3, timeout=0.2, stay=600)
    for _ in range(3):
        assert (await first.next("timeout"))["refund_pending"] is True
    await first.killed()
    assert set(statuses(sandbox).values()) == {"PENDING"}
    sandbox.clear_faults()

    second = await run(sandbox, journal, "recover", stay=30)
    await until(
        lambda: set(statuses(sandbox).values()) == {"BANNED"},
        SLACK,
        "the refunds under way made at once",
    )
    assert_refunded_once(sandbox, "BANNED")
    await second.killed()


async def test_a_bare_create_is_refunded_before_it_expires(journal: str) -> None:
    # Orders expire 63 s after purchase; a create()'s refund falls due 60 s before.
    async with Sandbox(seed=29, auto_deliver=False, order_ttl=63, balance=OPENING) as sandbox:
        first = await run(sandbox, journal, "create", count=2)
        await first.next("bought")
        await first.killed()
        second = await run(sandbox, journal, "recover", stay=30)
        await until(
            lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
            3 + SLACK,
            "the created orders cancelled before they expire",
        )
        assert_refunded_once(sandbox, "CANCELLED")
        await second.killed()


async def test_the_program_takes_its_orders_back_and_gets_their_codes(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "activation", count=2)
    ids = [(await first.next("bought"))["ids"][0] for _ in range(2)]
    await first.killed()
    # One code comes while the program is down.
    early = sandbox.deliver_code(ids[0])

    second = await run(sandbox, journal, "recover", take_back=True, grace=1)
    recovered = await second.next("recovered")
    assert sorted(recovered["ids"]) == sorted(ids)
    assert recovered["codes"][ids[0]] == early
    late = sandbox.deliver_code(ids[1])
    codes = await second.next("codes")
    assert codes["codes"] == {ids[1]: late}
    await second.finish()
    # Taken back: neither was refunded, both codes were paid for and read.
    for order in sandbox.orders():
        assert order.status == "RECEIVED" and order.refunded == 0, order
    assert sandbox.balance() == OPENING - sum(o.price for o in sandbox.orders())


async def test_a_rental_on_the_wire_is_found_and_handed_back(
    sandbox: Sandbox, journal: str
) -> None:
    sandbox.set_faults(purchase_answer_delay=60)
    first = await run(sandbox, journal, "rent")
    await until(lambda: len(sandbox.rentals()) == 1, 10, "the rental charged")
    await first.killed()
    sandbox.clear_faults()

    second = await run(sandbox, journal, "recover", take_back=True)
    recovered = await second.next("recovered", timeout=30)
    assert recovered["rentals"] == [sandbox.rentals()[0].id]
    await second.finish()
    assert len(sandbox.rentals()) == 1


async def test_several_purchases_on_the_wire_are_all_found(sandbox: Sandbox, journal: str) -> None:
    # Three purchases of one service and country leave together; the process dies at
    # the first answer, the other two still on the wire. One listing must see all
    # three as this journal's, not two of them as another buyer's.
    # Every purchase is charged at once and answered a second later: all three are
    # charged before the first answer comes back.
    sandbox.set_faults(purchase_answer_delay=1)
    first = await run(
        sandbox, journal, "activation", env={"_GSIM_CRASH_AT": "after-answer"}, count=3
    )
    assert await first.exited() == -9
    assert len(sandbox.orders()) == 3
    sandbox.clear_faults()

    second = await run(sandbox, journal, "recover", stay=30, grace=1)
    await until(
        lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
        1 + 1 + SLACK,
        "the three purchases found and refunded",
    )
    assert len(sandbox.orders()) == 3
    assert_refunded_once(sandbox, "CANCELLED")
    await second.killed()


async def test_another_clients_order_after_the_window_is_not_adopted(
    sandbox: Sandbox, journal: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The program dies with its second purchase's intent on disk but the purchase never
    # sent. Another client on the key buys the same thing after the server could have
    # answered it: that order is not the dead purchase's, and is left alone.
    first = await run(
        sandbox, journal, "one_by_one", env={"_GSIM_CRASH_AT": "after-intent#2"}, count=2
    )
    assert await first.exited() == -9
    [held] = sandbox.orders()
    # Past what it could have bought: its death (known to within the journal's 1 s
    # heartbeat, plus a second) and then the reconcile window (1 s).
    await anyio.sleep(3.5)
    async with fast_client(sandbox) as other:
        theirs = await other.orders.create("telegram", "russia")
        second = await run(sandbox, journal, "recover", stay=30, grace=0.5)
        await until(lambda: sandbox.order(held.id).status == "CANCELLED", SLACK, "the refund")
        await anyio.sleep(1)
        assert sandbox.order(theirs.id).status == "PENDING"
        await second.killed()


async def test_recovered_waits_for_the_look_and_keeps_the_grace(
    sandbox: Sandbox, journal: str
) -> None:
    # One activation bought and held, the next one's purchase on the wire (never sent)
    # when the program dies: orders.recovered() waits for that purchase's
    # reconciliation (3 s here); the held one's grace (1 s) counts from then, so the
    # program still gets it back.
    first = await run(
        sandbox, journal, "one_by_one", env={"_GSIM_CRASH_AT": "after-intent#2"}, count=2
    )
    assert await first.exited() == -9
    [held] = sandbox.orders()
    second = await run(
        sandbox, journal, "recover", take_back=True, grace=1, reconcile_window=3, timeout=5
    )
    recovered = await second.next("recovered", timeout=30)
    assert recovered["ids"] == [held.id]
    sandbox.deliver_code(held.id)
    await second.next("codes")
    assert sandbox.order(held.id).status == "RECEIVED"


async def test_a_failing_listing_does_not_lose_a_purchase_on_the_wire(
    sandbox: Sandbox, journal: str
) -> None:
    sandbox.set_faults(purchase_answer_delay=60)
    first = await run(sandbox, journal, "activation")
    await until(lambda: len(sandbox.orders()) == 1, 10, "the purchase charged")
    await first.killed()
    await anyio.sleep(1.2)  # restarted after the reconcile window: one listing decides
    # The account cannot be listed for a while: every answer is a proxy's 502.
    sandbox.set_faults(html_502_rate=1.0)
    second = await run(sandbox, journal, "recover", stay=60, grace=0.5)
    await anyio.sleep(3)
    sandbox.clear_faults()
    await until(
        lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
        20,
        "the purchase found and refunded once the account could be listed",
    )
    await second.killed()


# -- issue 25: a crash loop, a fork, a clock step, an equivalent base URL -----------------

#: Two hours: a machine clock wrong by that much, then corrected (NTP after a boot).
STEP = 7200.0


async def test_a_crash_loop_refunds_dead_blocks_one_grace_after_the_first_recovery(
    sandbox: Sandbox, journal: str
) -> None:
    # The first run holds 2 activation blocks and 2 waits and is killed; then every run
    # lives 1.5 s, less than the grace (3 s), and is killed too (CrashLoopBackOff).
    grace, wait = 3.0, 5.0
    first = await run(sandbox, journal, "mixed", timeout=wait, grace=grace)
    kinds: dict[str, str] = {}
    for _ in range(4):
        event = await first.next("bought")
        kinds[event["ids"][0]] = event["kind"]
    await anyio.sleep(0.3)  # the waits' rows are written
    await first.killed()
    blocks = [i for i, kind in kinds.items() if kind == "activation"]
    waits = [i for i, kind in kinds.items() if kind == "wait"]
    assert len(blocks) == 2 and len(waits) == 2

    first_recovery = time.monotonic()
    blocks_refunded: float | None = None
    for _ in range(6):
        worker = await run(sandbox, journal, "recover", stay=60, grace=grace)
        lives_until = time.monotonic() + 1.5
        while time.monotonic() < lives_until:
            if blocks_refunded is None and all(
                sandbox.order(i).status == "CANCELLED" for i in blocks
            ):
                blocks_refunded = time.monotonic()
            await anyio.sleep(0.05)
        await worker.killed()
        if blocks_refunded is not None and all(sandbox.order(i).status == "BANNED" for i in waits):
            break
    assert blocks_refunded is not None, f"dead blocks still charged: {statuses(sandbox)}"
    # No later than one grace after the first recovery, however often the program died.
    assert blocks_refunded - first_recovery <= grace + SLACK
    for order_id in waits:
        assert sandbox.order(order_id).status == "BANNED"
    for order in sandbox.orders():
        assert order.charged == order.price and order.refunded == order.price, order
    assert sandbox.balance() == OPENING


async def test_an_order_taken_back_is_the_new_runs_own_again(
    sandbox: Sandbox, journal: str
) -> None:
    # A dead block's order is taken back by the next run, which waits on it again (4 s)
    # and dies: the run after refunds it when that wait would have ended, not at the
    # dead block's grace (which has passed by then).
    first = await run(sandbox, journal, "activation", count=1)
    [order_id] = (await first.next("bought"))["ids"]
    await first.killed()
    second = await run(sandbox, journal, "recover", take_back=True, grace=0.5, timeout=4)
    assert (await second.next("recovered"))["ids"] == [order_id]
    waits_end = time.monotonic() + 4
    await anyio.sleep(0.8)  # past the block's grace
    await second.killed()
    third = await run(sandbox, journal, "recover", stay=30, grace=0.5)
    while time.monotonic() < waits_end - 1:
        assert sandbox.order(order_id).status == "PENDING"
        await anyio.sleep(0.05)
    await until(
        lambda: sandbox.order(order_id).status == "BANNED",
        waits_end - time.monotonic() + SLACK,
        "the taken-back order banned when the new wait would have ended",
    )
    assert_refunded_once(sandbox, "BANNED")
    await third.killed()


async def test_a_forked_child_does_not_keep_the_journal_locked(
    sandbox: Sandbox, journal: str
) -> None:
    # The program forks a helper (multiprocessing, fork start method) and is killed;
    # the helper lives on. The next run opens the journal and refunds the waits.
    first = await run(sandbox, journal, "fork", count=3, timeout=2)
    bought = (await first.next("bought"))["ids"]
    helper = (await first.next("forked"))["pid"]
    waits_end = time.monotonic() + 2
    try:
        first.kill()
        await first.exited()
        os.kill(helper, 0)  # the helper is alive
        second = await Worker.start(WORKER, config(sandbox, journal, "recover", stay=30))
        _STARTED.append(second)
        await second.next("ready", timeout=15)
        await until(
            lambda: all(sandbox.order(i).status == "BANNED" for i in bought),
            waits_end - time.monotonic() + SLACK,
            "the dead parent's waits banned while its forked helper lives",
        )
        os.kill(helper, 0)  # ... still
        assert_refunded_once(sandbox, "BANNED")
        await second.killed()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGKILL)


async def test_a_forked_child_using_the_parents_client_gets_a_clear_error(
    sandbox: Sandbox, journal: str
) -> None:
    first = await run(sandbox, journal, "fork", count=1, timeout=30, use=True)
    await first.next("bought")
    helper = (await first.next("forked"))["pid"]
    try:
        # The child may speak before the parent says it forked: next("forked") passed it.
        early = first.all("helper")
        said = early[0] if early else await first.next("helper")
        assert said["error"] == "JournalError", said
        assert "fork" in said["message"] and "own" in said["message"], said
        assert len(sandbox.orders()) == 1  # the child bought nothing
        await first.killed()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGKILL)


async def test_waits_of_a_run_whose_clock_was_ahead_are_banned_on_time(journal: str) -> None:
    # The run's clock was 2 h ahead; the next run's is right. Orders live 300 s: a due
    # time capped by expiry alone would still be 4 minutes late.
    async with Sandbox(seed=31, auto_deliver=False, order_ttl=300, balance=OPENING) as sandbox:
        first = await run(sandbox, journal, "wait", count=2, timeout=3, clock_step=STEP)
        await first.next("bought")
        waits_end = time.monotonic() + 3
        await anyio.sleep(0.5)
        await first.killed()
        second = await run(sandbox, journal, "recover", stay=30)
        await until(
            lambda: set(statuses(sandbox).values()) == {"BANNED"},
            waits_end - time.monotonic() + SLACK,
            "the waits banned when they would have ended",
        )
        assert_refunded_once(sandbox, "BANNED")
        await second.killed()


async def test_waits_of_a_run_whose_clock_was_behind_are_not_banned_early(journal: str) -> None:
    async with Sandbox(seed=37, auto_deliver=False, order_ttl=300, balance=OPENING) as sandbox:
        first = await run(sandbox, journal, "wait", count=2, timeout=4, clock_step=-STEP)
        await first.next("bought")
        waits_end = time.monotonic() + 4
        await anyio.sleep(0.5)
        await first.killed()
        second = await run(sandbox, journal, "recover", stay=30)
        while time.monotonic() < waits_end - 1:
            assert set(statuses(sandbox).values()) == {"PENDING"}, "banned before its time"
            await anyio.sleep(0.05)
        await until(
            lambda: set(statuses(sandbox).values()) == {"BANNED"},
            waits_end - time.monotonic() + SLACK,
            "the waits banned when they would have ended",
        )
        assert_refunded_once(sandbox, "BANNED")
        await second.killed()


async def test_a_wait_longer_than_its_order_lives_is_refunded_before_it_expires(
    journal: str,
) -> None:
    # A 10-minute wait on an order that expires 63 s after purchase: its refund falls due
    # no later than a create()'s, a minute before expiry (3 s after purchase here).
    async with Sandbox(seed=43, auto_deliver=False, order_ttl=63, balance=OPENING) as sandbox:
        first = await run(sandbox, journal, "wait", count=2, timeout=600)
        await first.next("bought")
        await anyio.sleep(0.5)
        await first.killed()
        second = await run(sandbox, journal, "recover", stay=30)
        await until(
            lambda: set(statuses(sandbox).values()) == {"BANNED"},
            3 + SLACK,
            "the waits' orders refunded a minute before they expire",
        )
        assert_refunded_once(sandbox, "BANNED")
        await second.killed()


async def test_a_first_purchase_on_the_wire_is_found_after_the_clock_was_corrected(
    sandbox: Sandbox, journal: str
) -> None:
    # The run's clock was 2 h behind; it dies with its first purchase on the wire (it
    # never pinned the server's clock). The account held an older order already.
    async with fast_client(sandbox) as other:
        older = await other.orders.create("telegram", "russia")
        await other.orders.cancel(older)
    sandbox.set_faults(purchase_answer_delay=60)
    first = await run(sandbox, journal, "activation", count=1, clock_step=-STEP)
    await until(lambda: len(sandbox.orders()) == 2, 10, "the purchase charged")
    await first.killed()
    sandbox.clear_faults()
    [bought] = [o.id for o in sandbox.orders() if o.id != older.id]

    second = await run(sandbox, journal, "recover", stay=30, grace=1)
    await until(
        lambda: sandbox.order(bought).status == "CANCELLED",
        1 + 1 + SLACK,
        "the purchase found and refunded",
    )
    assert len(sandbox.orders()) == 2  # never bought again
    assert_refunded_once(sandbox, "CANCELLED")
    await second.killed()


async def test_a_purchase_never_sent_on_a_clock_ahead_is_settled_within_a_window(
    sandbox: Sandbox, journal: str
) -> None:
    # The run's clock was 2 h ahead; it dies with an intent on disk, the purchase never
    # sent. Its send time looks 2 h in the future: the next run still concludes it bought
    # nothing once a reconcile window (1 s) has passed, and recovered() returns.
    first = await run(
        sandbox, journal, "activation", env={"_GSIM_CRASH_AT": "after-intent"}, clock_step=STEP
    )
    assert await first.exited() == -9
    second = await run(sandbox, journal, "recover", take_back=True)
    recovered = await second.next("recovered", timeout=1 + SLACK)
    assert recovered["ids"] == []
    await second.finish()
    assert sandbox.orders() == []
    assert sandbox.balance() == OPENING


async def test_an_equivalent_base_url_finds_the_earlier_runs_rows(journal: str) -> None:
    # Orders expire 63 s after purchase: a create()'s refund falls due 3 s after it.
    async with Sandbox(seed=41, auto_deliver=False, order_ttl=63, balance=OPENING) as sandbox:
        port = urlsplit(sandbox.base_url).port
        first = await run(
            sandbox, journal, "create", count=2, client_url=f"http://localhost:{port}"
        )
        await first.next("bought")
        await first.killed()
        second = await run(
            sandbox, journal, "recover", stay=30, client_url=f"HTTP://LOCALHOST:{port}/"
        )
        await until(
            lambda: set(statuses(sandbox).values()) == {"CANCELLED"},
            3 + SLACK,
            "the orders found under the same server's other spelling, and refunded",
        )
        assert_refunded_once(sandbox, "CANCELLED")
        await second.killed()
