"""The journal: what a client owes, on disk, so that it outlives the process.

One SQLite file (the standard library's ``sqlite3``, WAL) holds a row per purchase and
per order the client answers for (docs/guides/crash-safety.md):

* ``wire``: a purchase's intent, written (and committed) before the request leaves;
* ``owed``: an order held without its code yet, with how its refund falls due
  (``purpose``: ``activation`` a grace after a later run finds its block dead,
  ``wait`` when the wait would have ended, ``order`` before the order expires), when
  (``due``: a time on the server's clock, written once and kept by every later run)
  and how (``action``: ban or cancel);
* ``done``: how it ended (a code, a refund, a final status), kept a day for the
  ownership of later runs, then dropped.

Writes run on one thread of their own and are grouped: whatever queued up while the
last transaction committed goes in the next one, so a thousand purchases a second
cost a handful of commits. Only an intent is awaited (it must be on disk before the
purchase leaves); every other write is queued in order behind it. WAL with
``synchronous=NORMAL`` survives the process being killed (the OS has the pages);
it does not promise to survive the machine losing power mid-write.

A lock file beside the journal (``<path>.lock``, ``flock``) refuses a second live
client on the same file: it goes away with the process that opened the journal, even
when it is killed. A child forked from that process (``multiprocessing``'s fork start
method, a prefork server) closes its copy of the lock at once, so the lock never
outlives the parent in it, and cannot write to the journal (``JournalError``).

Rows are keyed by a hash of the API key and the server's base URL in a normal form
(scheme and host in lower case, no default port, no trailing slash).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import queue
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
#: 2: due times on the server's clock (``due``), one-sided clock bounds, ``runs.server``.
SCHEMA_VERSION = 2
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
    foreign_seen REAL,
    server TEXT
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
    due REAL,
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
    ``orders.recovered()`` before it is refunded. The first run that finds the block
    dead writes that time into the row and every later run keeps it, so a program that
    keeps dying still has the order refunded a grace after it was first found.

    ``foreign_rows`` is how many open rows of another API key or server the file held
    when a client last opened it (left alone: only a client with that key and server
    recovers them); ``open_rows()`` reads the file for the same at any time.
    """

    #: Open rows of another API key or server found when a client last opened this
    #: journal (``None``: no client has opened it through this object).
    foreign_rows: int | None

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
        self.foreign_rows = None

    def open_rows(self, api_key: str | None = None, base_url: str | None = None) -> JournalRows:
        """The rows of this file that still need something, by whose they are.

        ``api_key`` and ``base_url`` default as ``Client``'s do (``GSIM_API_KEY``,
        ``GSIM_BASE_URL``, else the default server). Reads the file without locking it:
        safe beside a live client. A missing file holds nothing.
        """
        key = api_key if api_key is not None else os.environ.get("GSIM_API_KEY")
        if not key or not key.strip():
            raise InvalidArgumentError(
                "no API key: pass open_rows(api_key=...) or set GSIM_API_KEY (rows are "
                "told apart by the key and server they were written for)"
            )
        url = base_url if base_url is not None else os.environ.get("GSIM_BASE_URL")
        mine = set(accounts(key.strip(), url or C.DEFAULT_BASE_URL))
        return _count_rows(self.path, mine)

    def __repr__(self) -> str:
        return f"gsim_async.Journal({str(self.path)!r}, grace={self.grace:g})"

    def __fspath__(self) -> str:
        return str(self.path)


@attrs.frozen
class JournalRows:
    """Open rows of a journal file: the caller's, and those of other keys or servers."""

    #: Rows of this API key and server: what a client opening the file recovers.
    own: int = 0
    #: Rows of another API key or server: left alone by this client.
    foreign: int = 0
    #: The base URLs (normal form) the foreign rows were written for, where the file
    #: says (a file written before gsim-async kept them does not).
    servers: tuple[str, ...] = ()


def normal_base_url(url: str) -> str:
    """``url`` in the form journal rows are keyed by: one server, one spelling.

    Scheme and host in lower case (RFC 3986: they are case-insensitive), the scheme's
    default port dropped, no trailing slash; the path is kept as it is.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    if parts.username is not None:  # never expected; kept apart all the same
        auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{auth}@{host}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


def _account_hash(api_key: str, base_url: str) -> str:
    return hashlib.sha256(f"gsim-async-journal:{api_key}|{base_url}".encode()).hexdigest()[:24]


def accounts(api_key: str, base_url: str) -> tuple[str, ...]:
    """What a client's rows are keyed by (a hash of the key and server, never the key).

    The first is the key written; the next, if any, is how rows were keyed before base
    URLs were normalised (the URL as given): those rows are this client's too.
    """
    keyed = _account_hash(api_key, normal_base_url(base_url))
    legacy = _account_hash(api_key, base_url.strip().rstrip("/"))
    return (keyed,) if legacy == keyed else (keyed, legacy)


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
    #: A file written before due times were kept on the server's clock: a wait's end
    #: on that run's wall clock.
    deadline: float | None
    action: str | None
    #: What that run had pinned of (server stamp - its wall clock), -inf/inf where it
    #: knew nothing; None: a row of an older version, which kept nothing when unpinned.
    clock: tuple[float, float] | None = None
    #: Whether ``sent`` is when the request left (else when its intent was written,
    #: before it waited for its turn: it left later, if at all).
    stamped: bool = False
    #: When the refund falls due, on the server's clock (written once: kept as it is).
    due: float | None = None


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
    #: The servers those rows were written for, where known.
    foreign_servers: tuple[str, ...] = ()
    #: run → when it last saw another buyer on its key.
    foreign_seen: dict[int, float] = attrs.Factory(dict)
    #: run → the last time it wrote (it was alive until about then).
    alive: dict[int, float] = attrs.Factory(dict)


def _lock(path: Path) -> int:
    """Hold ``<path>.lock`` exclusively for this client; JournalInUseError if taken.

    Returns the descriptor that holds it. Opened close-on-exec (a program started with
    ``subprocess`` never inherits it) and closed in every forked child (see
    ``_forked``): the lock lives exactly as long as this process keeps it.
    """
    # One lock per file, however it is named (a relative path, a symlink).
    real = path.resolve()
    lock_path = real.with_name(real.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        os.close(fd)
        raise JournalInUseError(
            f"the journal {path} is in use by another live client (process {holder}); "
            "give each client its own journal file"
        ) from None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _unlock(fd: int) -> None:
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


#: Every journal open in this process, for the fork hook below.
_OPEN: weakref.WeakSet[FileJournal] = weakref.WeakSet()


def _forked() -> None:
    """In a forked child: let go of every journal the parent had open.

    The child's copy of the lock descriptor shares the parent's open file description,
    and a ``flock`` lives as long as any descriptor of it does: left open, a child that
    outlives its parent (a worker pool's process) would keep the journal locked with
    nobody alive to recover it. Closed here (never unlocked: that would release the
    parent's lock too); the child's writes are refused (``FileJournal._put``).
    """
    for journal in list(_OPEN):
        journal._orphan()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


#: Columns added to the format since a file may have been made (added when missing).
_ADDED_COLUMNS = {
    "entries": {"stamped": "INTEGER NOT NULL DEFAULT 0", "clock": "TEXT", "due": "REAL"},
    "runs": {"alive": "REAL", "foreign_seen": "REAL", "server": "TEXT"},
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


def _count_rows(path: Path, mine: set[str]) -> JournalRows:
    if not path.exists():
        return JournalRows()
    query = (
        "SELECT e.account, r.server, count(*) FROM entries e LEFT JOIN runs r ON r.id = e.run "
        "WHERE e.state != 'done' GROUP BY e.account, r.server"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                rows = conn.execute(query).fetchall()
            except sqlite3.OperationalError:  # a file from before runs.server
                rows = conn.execute(
                    "SELECT account, NULL, count(*) FROM entries WHERE state != 'done' "
                    "GROUP BY account"
                ).fetchall()
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from exc
    own = sum(n for account, _, n in rows if account in mine)
    foreign = [(server, n) for account, server, n in rows if account not in mine]
    servers = tuple(sorted({server for server, _ in foreign if server}))
    return JournalRows(own, sum(n for _, n in foreign), servers)


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

    def __init__(
        self, path: Path, account: str | Sequence[str], *, server: str | None = None
    ) -> None:
        self.path = path
        keys = (account,) if isinstance(account, str) else tuple(account)
        #: What rows are written with; ``_mine``: every key whose rows are this client's.
        self.account = keys[0]
        self._mine = frozenset(keys)
        self.server = server
        #: The process that opened the journal: the only one that may write to it.
        self._pid = os.getpid()
        self._forked_off = False
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
                    "INSERT INTO runs (pid, account, started, server) VALUES (?, ?, ?, ?)",
                    (os.getpid(), self.account, time.time(), server),
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
        _OPEN.add(self)

    def _orphan(self) -> None:
        """This is a forked child of the process that opened the journal (see ``_forked``)."""
        if self._forked_off:
            return
        self._forked_off = True
        fd, self._lock = self._lock, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _refuse_fork(self) -> JournalError:
        return JournalError(
            f"the journal {self.path} belongs to process {self._pid}, which opened it; "
            f"this process ({os.getpid()}) is a fork of it and cannot write to it. A "
            "forked process must make a Client of its own (with its own journal file, "
            "or journal=False)"
        )

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
            "deadline, action, clock, stamped, due FROM entries WHERE state != 'done' "
            "ORDER BY sent, ref"
        ).fetchall()
        entries: list[Entry] = []
        foreign = 0
        foreign_runs: set[int] = set()
        for row in rows:
            ref, run, account, kind, state, purpose, request, sent, item_id, item = row[:10]
            dl, act, clock, stamped, due = row[10:]
            if account not in self._mine:
                foreign += 1
                foreign_runs.add(run)
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
                    due=due,
                )
            )
        # The ids a purchase on the wire must not be matched to: what this journal
        # bought from an hour before the oldest such purchase (none without one).
        wire = [e.sent for e in entries if e.state == "wire" and e.sent is not None]
        held = (
            tuple(
                (row[0], row[1], row[2])
                for row in conn.execute(
                    "SELECT item_id, sent, received, account FROM entries "
                    "WHERE item_id IS NOT NULL AND updated >= ?",
                    (min(wire, default=time.time()) - C.FOREIGN_BUYER_MEMORY,),
                )
                if row[3] in self._mine
            )
            if wire
            else ()
        )
        baselines: dict[int, dict[str, tuple[list[str], str | None]]] = {}
        foreign_seen: dict[int, float] = {}
        alive: dict[int, float] = {}
        runs = {e.run for e in entries}
        servers: set[str] = set()
        query = "SELECT id, baseline, foreign_seen, alive, started, server FROM runs"
        for run_id, text, seen, last, started, server in conn.execute(query):
            if run_id in foreign_runs and server:
                servers.add(server)
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
        return Snapshot(
            entries=tuple(entries),
            held=held,
            baselines=baselines,
            foreign=foreign,
            foreign_servers=tuple(sorted(servers)),
            foreign_seen=foreign_seen,
            alive=alive,
        )

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
        """Record a purchase about to leave; returns once it is on disk.

        ``clock``: what the client has pinned of (server stamp - our clock), -inf/inf
        where it knows nothing (kept as null).
        """
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
                None if clock is None else json.dumps(_finite(clock)),
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
        """``ref`` is held (or taken over): due at ``deadline`` (on the server's clock;
        None: as ``purpose`` says), refunded by ``action``."""
        now = time.time()
        self._put(
            "INSERT INTO entries (ref, run, account, kind, state, purpose, sent, received, "
            "item_id, item, due, action, updated) "
            "VALUES (?, ?, ?, ?, 'owed', ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (ref) DO UPDATE SET run = excluded.run, state = 'owed', "
            "purpose = excluded.purpose, sent = coalesce(entries.sent, excluded.sent), "
            "received = coalesce(excluded.received, entries.received), "
            "item_id = excluded.item_id, item = excluded.item, deadline = NULL, "
            "due = excluded.due, action = excluded.action, updated = excluded.updated",
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
        """How an owed order's refund falls due changed (a wait began or ended).

        ``deadline`` is on the server's clock (None: as ``purpose`` says).
        """
        self._put(
            "UPDATE entries SET purpose = ?, deadline = NULL, due = ?, action = ?, updated = ? "
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
        if self._forked_off or os.getpid() != self._pid:
            # A fork the hook did not see (a C extension's fork()) lets go here.
            self._orphan()
            raise self._refuse_fork()
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
        if self._forked_off:
            return  # the parent's: its writer thread and its lock are not this process's
        _OPEN.discard(self)
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
    """Clock bounds as a journal row keeps them (a JSON pair, null for what was not
    known: -inf below, inf above), or None."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    if not all(v is None or type(v) in (int, float) for v in value):
        return None
    lo, hi = value
    return (
        -math.inf if lo is None else float(lo),
        math.inf if hi is None else float(hi),
    )


def _finite(bounds: tuple[float, float]) -> list[float | None]:
    return [b if math.isfinite(b) else None for b in bounds]


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


__all__ = [
    "Entry",
    "FileJournal",
    "Journal",
    "JournalRows",
    "Snapshot",
    "accounts",
    "bounds_of",
    "normal_base_url",
    "open_rows",
]
