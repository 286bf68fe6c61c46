"""The journal in one process: its lock, what closing leaves to it, and what it refuses.

The kills live in tests/crash/; these check what a user meets without killing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from helpers import fast_client

import gsim_async
from gsim_async._journal import accounts, normal_base_url
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gsim.db"


async def until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:.0f} s: {what}")
        await anyio.sleep(0.05)


async def test_a_second_live_client_on_one_journal_is_refused(
    sandbox: Sandbox, journal: Path
) -> None:
    async with fast_client(sandbox, journal=journal) as first:
        assert first.journal == str(journal)
        with pytest.raises(gsim_async.JournalInUseError, match="in use by another live client"):
            fast_client(sandbox, journal=journal)
        await first.balance()
    # Closed: the file is free again, and nothing was corrupted.
    async with fast_client(sandbox, journal=journal) as second:
        await second.balance()
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_the_journal_is_taken_from_the_environment(
    sandbox: Sandbox, journal: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSIM_JOURNAL", str(journal))
    async with fast_client(sandbox) as gsim:
        assert gsim.journal == str(journal)
        await gsim.orders.create("telegram", "russia")
    assert journal.exists()  # noqa: ASYNC240 - a test's check, not the SDK's work


async def test_a_bad_journal_path_is_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(gsim_async.InvalidArgumentError, match="not a directory"):
        gsim_async.Client("2s_" + "k" * 40, journal=tmp_path)
    with pytest.raises(gsim_async.InvalidArgumentError, match="file path"):
        gsim_async.Client("2s_" + "k" * 40, journal=42)  # type: ignore[arg-type]
    with pytest.raises(gsim_async.InvalidArgumentError, match="grace"):
        gsim_async.Journal(tmp_path / "x.db", grace=-1)


async def test_an_unwritable_journal_buys_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(gsim_async.JournalError, match="cannot open the journal"):
        fast_client(sandbox, journal=blocked / "gsim.db")
    assert sandbox.orders() == []


@pytest.mark.slow  # a refund outage longer than the old 30-s deadline, waited out
async def test_refunds_are_never_given_up_while_the_client_is_open(sandbox: Sandbox) -> None:
    # Issue 18, case 4: refunds that keep failing for longer than cleanup's old 30 s
    # deadline were given up, and the orders left charged while the client stayed open.
    sandbox.set_faults(refund_error_rate=1.0)
    async with fast_client(sandbox) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(20)]
        errors = await asyncio.gather(
            *(gsim.orders.wait_for_code(o, timeout=0.5) for o in orders), return_exceptions=True
        )
        assert all(isinstance(e, gsim_async.CodeTimeoutError) for e in errors)
        # The refunds fail for over 30 s (cleanup's old deadline), then the provider is
        # back: every one lands.
        await anyio.sleep(28)
        assert {o.status for o in sandbox.orders()} == {"PENDING"}
        sandbox.clear_faults()
        await until(
            lambda: {o.status for o in sandbox.orders()} == {"BANNED"},
            20,
            "every refund landed once the provider was back",
        )
        refunds = [await e.wait_refund() for e in errors]  # type: ignore[union-attr]
        assert refunds == [o.price for o in orders]
    assert sandbox.balance() == Decimal("100")


async def test_closing_says_which_orders_are_left_charged(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.set_faults(refund_error_rate=1.0)
    gsim = fast_client(sandbox)
    order = await gsim.orders.create("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError) as caught:
        await gsim.orders.wait_for_code(order, timeout=0.1)
    assert caught.value.refund_pending
    assert "tried again until it lands while the client is open" in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="gsim_async"):
        await gsim.aclose(timeout=0.5)
    [line] = [r.getMessage() for r in caplog.records if "not landed" in r.getMessage()]
    assert order.id in line and "left charged" in line
    assert sandbox.order(order.id).status == "PENDING"


async def test_closing_leaves_unlanded_refunds_to_the_journal(
    sandbox: Sandbox, journal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.set_faults(refund_error_rate=1.0)
    gsim = fast_client(sandbox, journal=journal)
    order = await gsim.orders.create("telegram", "russia")
    with pytest.raises(gsim_async.CodeTimeoutError):
        await gsim.orders.wait_for_code(order, timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="gsim_async"):
        await gsim.aclose(timeout=0.5)
    [line] = [r.getMessage() for r in caplog.records if "not landed" in r.getMessage()]
    assert order.id in line and str(journal) in line
    sandbox.clear_faults()
    # The next run with the journal makes the refund at once.
    async with fast_client(sandbox, journal=journal):
        await until(lambda: sandbox.order(order.id).status == "BANNED", 5, "the refund made")
    assert sandbox.balance() == Decimal("100")


async def test_another_accounts_rows_are_left_alone(
    sandbox: Sandbox, journal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fast_client(sandbox, journal=journal) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        sandbox.set_faults(refund_error_rate=1.0)
        with pytest.raises(gsim_async.CodeTimeoutError):
            await gsim.orders.wait_for_code(order, timeout=0.1)
        await gsim.aclose(timeout=0.1)
    sandbox.clear_faults()
    other = sandbox.add_key()
    # Seen without logging: the journal counts them, opened or not.
    config = gsim_async.Journal(journal)
    assert config.foreign_rows is None
    rows = config.open_rows(other, sandbox.base_url)
    assert (rows.own, rows.foreign, rows.servers) == (0, 1, (sandbox.base_url,))
    assert config.open_rows(sandbox.api_key, sandbox.base_url + "/").own == 1
    with caplog.at_level(logging.WARNING, logger="gsim_async"):
        async with gsim_async.Client(other, base_url=sandbox.base_url, journal=config) as gsim:
            await gsim.balance()
            assert await gsim.orders.recovered() == []
    assert config.foreign_rows == 1
    assert any("another API key or server" in r.getMessage() for r in caplog.records)
    assert sandbox.order(order.id).status == "PENDING"


def test_base_urls_are_keyed_in_a_normal_form() -> None:
    same = [
        "http://localhost:8080",
        "HTTP://LOCALHOST:8080/",
        "http://LocalHost:8080//",
    ]
    assert {normal_base_url(u) for u in same} == {"http://localhost:8080"}
    assert normal_base_url("https://gsim.io:443/") == "https://gsim.io"
    assert normal_base_url("http://127.0.0.1:80") == "http://127.0.0.1"
    assert normal_base_url("https://[::1]:8443/") == "https://[::1]:8443"
    # The path is the server's to interpret: kept as it is.
    assert normal_base_url("https://Proxy.example/GSIM/") == "https://proxy.example/GSIM"
    assert normal_base_url("https://gsim.io:8443") != normal_base_url("https://gsim.io")
    key = "2s_" + "k" * 40
    assert accounts(key, "HTTPS://GSIM.IO:443/")[0] == accounts(key, "https://gsim.io")[0]
    # Rows keyed before the normal form (the URL as given) are still this client's.
    assert len(accounts(key, "HTTPS://GSIM.IO")) == 2


async def test_without_a_journal_nothing_is_recovered(client: gsim_async.Client) -> None:
    assert client.journal is None
    assert await client.orders.recovered() == []
    assert await client.rentals.recovered() == []


async def test_a_journal_locked_for_a_while_refuses_purchases_only_meanwhile(
    sandbox: Sandbox, journal: Path
) -> None:
    async with fast_client(sandbox, journal=journal) as gsim:
        await gsim.orders.create("telegram", "russia")
        # Another program (a backup, the sqlite3 shell) holds the file longer than
        # SQLite waits (5 s): a purchase meanwhile is refused, nothing is bought.
        locker = sqlite3.connect(journal, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(gsim_async.JournalError, match="cannot be written"):
                await gsim.orders.create("telegram", "russia")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert len(sandbox.orders()) == 1
        # Free again: purchases go through, and are journaled.
        order = await gsim.orders.create("telegram", "russia")
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        [(state,)] = conn.execute("SELECT state FROM entries WHERE item_id = ?", (order.id,))
    assert state == "owed"


async def test_closing_while_a_lost_purchase_is_reconciled_leaves_it_to_the_journal(
    sandbox: Sandbox, journal: Path
) -> None:
    # The server takes 3 s to buy; the client gives up waiting at 1 s and is closed at
    # 2 s, while it reconciles: the purchase it cannot tell stays in the journal.
    sandbox.set_faults(purchase_delay=3)
    gsim = fast_client(sandbox, journal=journal, timeout=1, reconcile_window=10)

    async def block() -> None:
        async with gsim.orders.activation("telegram", "russia"):
            pass

    task = asyncio.ensure_future(block())
    await anyio.sleep(2)
    await gsim.aclose(timeout=0.5)
    with pytest.raises(gsim_async.GsimError):
        await task
    await until(lambda: len(sandbox.orders()) == 1, 5, "the slow purchase made")
    sandbox.clear_faults()
    async with fast_client(sandbox, journal=gsim_async.Journal(journal, grace=0.2)):
        await until(
            lambda: sandbox.orders()[0].status == "CANCELLED", 10, "refunded by the next run"
        )
    assert sandbox.balance() == Decimal("100")


async def test_a_journal_of_an_earlier_format_is_opened(sandbox: Sandbox, journal: Path) -> None:
    # A file made before columns were added (stamped, clock, alive, foreign_seen).
    journal.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        conn.executescript(
            """
            CREATE TABLE runs (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL,
                account TEXT NOT NULL, started REAL NOT NULL, closed REAL,
                baseline TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE entries (ref TEXT PRIMARY KEY, run INTEGER NOT NULL,
                account TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
                purpose TEXT NOT NULL, request TEXT, sent REAL, received REAL, item_id TEXT,
                item TEXT, deadline REAL, action TEXT, outcome TEXT, updated REAL NOT NULL);
            PRAGMA user_version = 1;
            """
        )
    async with fast_client(sandbox, journal=journal) as gsim:
        await gsim.orders.create("telegram", "russia")
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        [(stamped,)] = conn.execute("SELECT stamped FROM entries")
    assert stamped == 1
