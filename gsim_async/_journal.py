"""The journal: what a client owes, on disk, so that it outlives the process.

One SQLite file (the standard library's ``sqlite3``, WAL) holds a row per purchase and
per order the client answers for (docs/guides/crash-safety.md):

* ``wire``: a purchase's intent, written (and committed) before the request leaves;
* ``owed``: an order held without its code yet, with how its refund falls due
  (``purpose``: ``activation`` at once, ``wait`` at ``deadline``, ``order`` before
  the order expires) and how (``action``: ban or cancel);
* ``done``: how it ended (a code, a refund, a final status), kept a day for the
  ownership of later runs, then dropped.

Writes run on one thread of their own and are grouped: whatever queued up while the
last transaction committed goes in the next one, so a thousand purchases a second
cost a handful of commits. Only an intent is awaited (it must be on disk before the
purchase leaves); every other write is queued in order behind it. WAL with
``synchronous=NORMAL`` survives the process being killed (the OS has the pages);
it does not promise to survive the machine losing power mid-write.

A lock file beside the journal (``<path>.lock``, ``flock``) refuses a second live
client on the same file: it goes away with the process that holds it, even when it
is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import _constants as C
from . import _validation as v
from ._converter import dumps
from ._exceptions import InvalidArgumentError, JournalError, JournalInUseError

log = logging.getLogger("gsim_async")

#: Ended rows are kept this long (seconds): later runs still know those orders as
#: this journal's own, and a lost purchase is never matched to one of them.
KEEP_DONE = 24 * 3600.0
#: The file's format (``PRAGMA user_version``); a newer one is refused, not misread.
SCHEMA_VERSION = 1
#: Seconds a write nobody awaits may wait for others to share its commit. Killed within
#: it, a run loses such rows (what a purchase bought, a wait's deadline): the intent
#: on disk still makes the next run reconcile the purchase, and the refund falls due as
#: the row before it said.
_LINGER = 0.05
#: An idle journal still writes this often (seconds) that its run is alive: a later run
#: then knows to within this when a purchase it left unstamped can have been sent.
_ALIVE_EVERY = 1.0
#: Rows a transaction takes at most (the rest wait for the next one).
_BATCH = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    account TEXT NOT NULL,
    started REAL NOT NULL,
    closed REAL,
    alive REAL,
    baseline TEXT NOT NULL DEFAULT '{}',
    foreign_seen REAL
);
CREATE TABLE IF NOT EXISTS entries (
    ref TEXT PRIMARY KEY,
    run INTEGER NOT NULL,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    purpose TEXT NOT NULL,
    request TEXT,
    sent REAL,
    stamped INTEGER NOT NULL DEFAULT 0,
    clock TEXT,
    received REAL,
    item_id TEXT,
    item TEXT,
    deadline REAL,
    action TEXT,
    outcome TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (state) WHERE state != 'done';
CREATE INDEX IF NOT EXISTS entries_item ON entries (item_id);
"""


class Journal:
    """Where a client keeps what it owes: ``Client(journal=Journal("gsim.db"))``.

    A plain path (``Client(journal="gsim.db")``) is the same with the defaults.
    ``grace`` is how long (seconds) an earlier run's ``activation()`` order, whose block
    died with that run, waits for the program to take it back with
    ``orders.recovered()`` before it is refunded.
    """

    def __init__(self, path: str | os.PathLike[str], *, grace: float = C.RECOVERY_GRACE) -> None:
        try:
            self.path = Path(os.fspath(path)).expanduser()
        except TypeError:
            raise InvalidArgumentError(f"journal must be a file path, got {path!r}") from None
        if not str(path).strip():
            raise InvalidArgumentError("journal must be a file path, got an empty string")
        if self.path.is_dir():
            raise InvalidArgumentError(f"journal must be a file path, not a directory: {path}")
        self.grace = v.positive_seconds("grace", grace, allow_zero=True)

    def __repr__(self) -> str:
        return f"gsim_async.Journal({str(self.path)!r}, grace={self.grace:g})"

    def __fspath__(self) -> str:
        return str(self.path)


@attrs.frozen
class Entry:
    """One open row of an earlier run, as recovery reads it."""

    ref: str
    run: int
    kind: str  # "order" | "rental"
    state: str  # "wire" | "owed"
    purpose: str  # "order" | "activation" | "wait" | "refund"
    request: dict[str, Any] | None
    sent: float | None
    item_id: str | None
    item: dict[str, Any] | None
    deadline: float | None
    action: str | None
    #: The bounds that run had pinned on (server stamp - our clock), if it had.
    clock: tuple[float, float] | None = None
    #: Whether ``sent`` is when the request left (else when its intent was written,
    #: before it waited for its turn: it left later, if at all).
    stamped: bool = False


@attrs.frozen
class Snapshot:
    """What an opened journal held from earlier runs of the same account."""

    entries: tuple[Entry, ...] = ()
    #: (item id, sent, received) of every order or rental the journal knows as its own.
    held: tuple[tuple[str, float | None, float | None], ...] = ()
    #: run → kind → (ids, newest stamp) the account held before that run first bought.
    baselines: dict[int, dict[str, tuple[list[str], str | None]]] = attrs.Factory(dict)
    #: Open rows of other accounts or servers, left alone.
    foreign: int = 0
    #: run → when it last saw another buyer on its key.
    foreign_seen: dict[int, float] = attrs.Factory(dict)
    #: run → the last time it wrote (it was alive until about then).
    alive: dict[int, float] = attrs.Factory(dict)


def _lock(path: Path) -> Any:
    """Hold ``<path>.lock`` exclusively for this client; JournalInUseError if taken."""
    # One lock per file, however it is named (a relative path, a symlink).
    real = path.resolve()
    lock_path = real.with_name(real.name + ".lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the journal's life
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise JournalInUseError(
            f"the journal {path} is in use by another live client (process {holder}); "
            "give each client its own journal file"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _unlock(handle: Any) -> None:
    with contextlib.suppress(OSError):
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


#: Columns added to the format since a file may have been made (added when missing).
_ADDED_COLUMNS = {
    "entries": {"stamped": "INTEGER NOT NULL DEFAULT 0", "clock": "TEXT"},
    "runs": {"alive": "REAL", "foreign_seen": "REAL"},
}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def open_rows(path: Path) -> int:
    """How many rows of ``path`` still need something (0 for no file); never locks it."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT count(*) FROM entries WHERE state != 'done'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # Committed pages reach the OS at once: a killed process loses nothing committed.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


_Write = tuple[str, Sequence[Any], "asyncio.Future[None] | None"]


class FileJournal:
    """A journal in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, account: str) -> None:
        self.path = path
        self.account = account
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(self.path)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        try:
            conn = _connect(self.path)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise JournalError(
                        f"the journal {self.path} was written by a newer gsim-async "
                        f"(format {version}); upgrade, or give this client another file"
                    )
                conn.executescript(_SCHEMA)
                _add_missing_columns(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.snapshot = self._read(conn)
                cursor = conn.execute(
                    "INSERT INTO runs (pid, account, started) VALUES (?, ?, ?)",
                    (os.getpid(), account, time.time()),
                )
                self.run = int(cursor.lastrowid or 0)
            finally:
                conn.close()
        except (sqlite3.Error, JournalError) as exc:
            _unlock(self._lock)
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        #: Set by an awaited write: the writer stops lingering.
        self._urgent = threading.Event()
        self._baselines: dict[str, Any] = {}
        self._closed = False
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="gsim_async journal", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<gsim_async journal {str(self.path)!r} run={self.run}>"

    # -- reading (once, when opened) ----------------------------------------------------

    def _read(self, conn: sqlite3.Connection) -> Snapshot:
        cutoff = time.time() - KEEP_DONE
        conn.execute("DELETE FROM entries WHERE state = 'done' AND updated < ?", (cutoff,))
        conn.execute(
            "DELETE FROM runs WHERE started < ? AND id NOT IN (SELECT run FROM entries)",
            (cutoff,),
        )
        rows = conn.execute(
            "SELECT ref, run, account, kind, state, purpose, request, sent, item_id, item, "
            "deadline, action, clock, stamped FROM entries WHERE state != 'done' "
            "ORDER BY sent, ref"
        ).fetchall()
        entries: list[Entry] = []
        foreign = 0
        for row in rows:
            ref, run, account, kind, state, purpose, request, sent, item_id, item = row[:10]
            dl, act, clock, stamped = row[10:]
            if account != self.account:
                foreign += 1
                continue
            entries.append(
                Entry(
                    ref=ref,
                    run=run,
                    kind=kind,
                    state=state,
                    purpose=purpose,
                    request=_load(request),
                    sent=sent,
                    item_id=item_id,
                    item=_load(item),
                    deadline=dl,
                    action=act,
                    clock=bounds_of(_load(clock)),
                    stamped=bool(stamped),
                )
            )
        # The ids a purchase on the wire must not be matched to: what this journal
        # bought from an hour before the oldest such purchase (none without one).
        wire = [e.sent for e in entries if e.state == "wire" and e.sent is not None]
        held = (
            tuple(
                (row[0], row[1], row[2])
                for row in conn.execute(
                    "SELECT item_id, sent, received FROM entries "
                    "WHERE item_id IS NOT NULL AND account = ? AND updated >= ?",
                    (self.account, min(wire, default=time.time()) - C.FOREIGN_BUYER_MEMORY),
                )
            )
            if wire
            else ()
        )
        baselines: dict[int, dict[str, tuple[list[str], str | None]]] = {}
        foreign_seen: dict[int, float] = {}
        alive: dict[int, float] = {}
        runs = {e.run for e in entries}
        query = "SELECT id, baseline, foreign_seen, alive, started FROM runs"
        for run_id, text, seen, last, started in conn.execute(query):
            if run_id in runs and seen is not None:
                foreign_seen[run_id] = seen
            if run_id in runs:
                alive[run_id] = last if last is not None else started
            if run_id in runs:
                data = _load(text) or {}
                baselines[run_id] = {
                    kind: (list(value.get("ids", [])), value.get("newest"))
                    for kind, value in data.items()
                    if isinstance(value, dict)
                }
        return Snapshot(tuple(entries), held, baselines, foreign, foreign_seen, alive)

    # -- writing ------------------------------------------------------------------------

    async def intent(
        self,
        ref: str,
        *,
        kind: str,
        purpose: str,
        request: dict[str, Any],
        sent: float,
        clock: tuple[float, float] | None = None,
    ) -> None:
        """Record a purchase about to leave; returns once it is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(
            "INSERT OR REPLACE INTO entries (ref, run, account, kind, state, purpose, request, "
            "sent, clock, updated) VALUES (?, ?, ?, ?, 'wire', ?, ?, ?, ?, ?)",
            (
                ref,
                self.run,
                self.account,
                kind,
                purpose,
                dumps(request),
                sent,
                None if clock is None else dumps(list(clock)),
                sent,
            ),
            future,
        )
        await future

    def leaving(self, ref: str, sent: float) -> None:
        """The purchase's request leaves now (queued: it may linger a moment)."""
        self._put(
            "UPDATE entries SET sent = ?, stamped = 1, updated = ? "
            "WHERE ref = ? AND state = 'wire'",
            (sent, sent, ref),
        )

    def owe(
        self,
        ref: str,
        *,
        kind: str,
        purpose: str,
        item_id: str,
        item: dict[str, Any],
        deadline: float | None,
        action: str | None,
        sent: float | None = None,
        received: float | None = None,
    ) -> None:
        """``ref`` is held (or taken over): owed by ``deadline``, refunded by ``action``."""
        now = time.time()
        self._put(
            "INSERT INTO entries (ref, run, account, kind, state, purpose, sent, received, "
            "item_id, item, deadline, action, updated) "
            "VALUES (?, ?, ?, ?, 'owed', ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (ref) DO UPDATE SET run = excluded.run, state = 'owed', "
            "purpose = excluded.purpose, sent = coalesce(entries.sent, excluded.sent), "
            "received = coalesce(excluded.received, entries.received), "
            "item_id = excluded.item_id, item = excluded.item, "
            "deadline = excluded.deadline, action = excluded.action, updated = excluded.updated",
            (
                ref,
                self.run,
                self.account,
                kind,
                purpose,
                sent,
                received,
                item_id,
                dumps(item),
                deadline,
                action,
                now,
            ),
        )

    def due(self, ref: str, *, purpose: str, deadline: float | None, action: str | None) -> None:
        """How an owed order's refund falls due changed (a wait began or ended)."""
        self._put(
            "UPDATE entries SET purpose = ?, deadline = ?, action = ?, updated = ? "
            "WHERE ref = ? AND state = 'owed'",
            (purpose, deadline, action, time.time(), ref),
        )

    def done(self, ref: str, outcome: str) -> None:
        """``ref`` ended (a code, a refund, a final status, nothing bought, ...)."""
        self._put(
            "UPDATE entries SET state = 'done', outcome = ?, updated = ? WHERE ref = ?",
            (outcome, time.time(), ref),
        )

    def baseline(self, kind: str, ids: Iterable[str], newest: str | None) -> None:
        """What the account held before this run first bought a ``kind``."""
        self._baselines[kind] = {"ids": list(ids), "newest": newest}
        self._put(
            "UPDATE runs SET baseline = ? WHERE id = ?", (json.dumps(self._baselines), self.run)
        )

    async def flushed(self) -> None:
        """Returns once every write queued before it is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put("SELECT 1", (), future)
        await future

    def foreign(self) -> None:
        """This run saw another buyer on its key: a later run will not guess either."""
        self._put("UPDATE runs SET foreign_seen = ? WHERE id = ?", (time.time(), self.run))

    def _put(
        self, sql: str, params: Sequence[Any], future: asyncio.Future[None] | None = None
    ) -> None:
        if self._closed:
            if future is not None:
                future.set_exception(JournalError("the journal was closed"))
            return
        self._queue.put((sql, params, future))
        if future is not None:
            self._urgent.set()

    def _writer(self) -> None:
        try:
            conn: sqlite3.Connection | None = _connect(self.path)
        except sqlite3.Error as exc:  # pragma: no cover - opened a moment ago
            self._fail(exc)
            conn = None
        pending: list[_Write] = []
        stop = False
        failures = 0
        while True:
            if not stop and not pending:
                try:
                    item = self._queue.get(timeout=_ALIVE_EVERY)
                except queue.Empty:
                    # Idle: say this run is still alive (see _commit), in a commit of its own.
                    self._commit(conn, [])
                    continue
                if item is None:
                    stop = True
                else:
                    pending.append(item)
            # What nobody waits for lingers a moment, so that a steady stream of writes
            # costs a few commits a second, not one each. The thread sleeps meanwhile:
            # only an awaited write (an intent, before its purchase leaves) or closing
            # wakes it, and it commits at once with everything queued before.
            if not stop and all(w[2] is None for w in pending):
                self._urgent.wait(_LINGER)
            self._urgent.clear()
            while len(pending) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    continue
                pending.append(item)
            if not pending:
                if stop:
                    break
                continue
            error = self._commit(conn, pending)
            for _, _, future in pending:
                if future is not None:
                    _resolve(future, error, self.path)
            if error is None:
                pending, failures = [], 0
                if self._failed is not None:
                    log.warning("the journal %s can be written again", self.path)
                    self._failed = None
                continue
            # An intent fails at once (its purchase is refused); the other writes are
            # kept, in order, and tried again with what comes next.
            pending = [w for w in pending if w[2] is None]
            failures += 1
            if stop and failures > 3:
                log.error("the journal %s lost %d writes at close", self.path, len(pending))
                break
            time.sleep(min(0.1 * 2**failures, 2.0))
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("UPDATE runs SET closed = ? WHERE id = ?", (time.time(), self.run))
                conn.close()

    def _commit(self, conn: sqlite3.Connection | None, batch: list[_Write]) -> BaseException | None:
        """Write ``batch`` in one transaction; the error, if it failed."""
        if conn is None:
            return self._failed or JournalError("no connection")
        try:
            conn.execute("BEGIN")
            for sql, params, _ in batch:
                conn.execute(sql, params)
            # Alive until at least now: a later run bounds what a purchase of this run
            # left unstamped can have bought.
            conn.execute("UPDATE runs SET alive = ? WHERE id = ?", (time.time(), self.run))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._fail(exc)
            return exc
        return None

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            log.error(
                "the journal %s cannot be written (%s): purchases are refused until it can",
                self.path,
                exc,
            )
        self._failed = exc

    async def aclose(self) -> None:
        """Write what is queued, close the file and release the lock."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._urgent.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        _unlock(self._lock)


def _resolve(future: asyncio.Future[None], error: BaseException | None, path: Path) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(JournalError(f"the journal {path} cannot be written: {error}"))

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        future.get_loop().call_soon_threadsafe(settle)


def bounds_of(value: Any) -> tuple[float, float] | None:
    """Clock bounds as a journal row keeps them (a JSON pair), or None."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
    ):
        return (float(value[0]), float(value[1]))
    return None


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


__all__ = ["Entry", "FileJournal", "Journal", "Snapshot", "bounds_of", "open_rows"]
