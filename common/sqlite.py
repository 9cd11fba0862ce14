"""SQLite on trio: one worker that runs every call for a database file in a thread, one at a time.

Each database of the project (the bridge's hourly aggregates, the v2 store archive, the SQLite
failover lease) goes through a :class:`SqliteWorker`; the dedup ledger uses :func:`connect_wal`
from the event loop itself (one commit of tens of µs per message is cheaper than the thread hand-off,
bridge/dedup.py).  A worker's calls run in
``trio.to_thread.run_sync`` under a ``CapacityLimiter(1)``, so they are serialised in submission
order and never block the event loop.  The default connection is WAL with ``synchronous=NORMAL``:
once a commit returns the bytes are in the OS page cache, so a process kill loses nothing (only an
OS crash can drop the last commits).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

__all__ = ["SqliteClosed", "SqliteWorker", "connect_wal", "file_problem", "is_corruption"]

T = TypeVar("T")


class SqliteClosed(Exception):
    """A call on a worker that is not open (and does not open on first use)."""


# Primary result codes (https://www.sqlite.org/rescode.html); an extended code keeps them in its low byte.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def is_corruption(exc: BaseException) -> bool:
    """``exc`` says the file is damaged or not a database (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed
    to a full disk, a lock or an I/O error, which a retry may get past."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and isinstance(code, int) and code & 0xFF in (
        _SQLITE_CORRUPT, _SQLITE_NOTADB)


def file_problem(path: Path | str, *, deep: bool = True) -> str | None:
    """Why the SQLite file at ``path`` is unusable, or None if it is fine or absent.

    Read-only: nothing is created or repaired.  The header and schema are always read (a file that
    is not SQLite, or truncated inside its first page, fails there); with ``deep`` ``PRAGMA
    quick_check`` then walks every b-tree page (truncation, overwritten pages), which costs a read
    of the whole file: SQLite's own check short of the index-content comparison of
    ``integrity_check`` (https://www.sqlite.org/pragma.html#pragma_quick_check).
    """
    p = Path(path)
    if not p.exists():
        return None
    if p.is_dir():
        return "a directory, not a database file"
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if deep:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
            if rows != ["ok"]:  # one line: the messages come with newlines of their own
                return "quick_check: " + "; ".join(line for r in rows for line in r.splitlines() if line.strip())
        else:  # the first page of every table
            for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall():
                conn.execute(f'SELECT * FROM "{name}" LIMIT 1').fetchall()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and not is_corruption(exc):
            return None  # locked or busy: a live writer, not damage (the open itself reports real errors)
        return str(exc)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    return None


def connect_wal(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """An autocommit connection usable from the worker thread, in WAL mode with NORMAL sync; the
    parent directory is created first."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SqliteWorker:
    """``await worker.run(fn)`` runs ``fn(conn)`` in the worker thread.

    ``connect(path)`` makes the connection (default :func:`connect_wal`).  With ``lazy`` the first
    call opens it; otherwise :meth:`open` must come first and a call on a closed worker raises
    :class:`SqliteClosed`.  With ``per_call`` every call gets a fresh connection, closed when it
    returns (a lease file shared by processes: nothing stays open across a SIGSTOP).  A call that
    fails inside a transaction is rolled back before the error reaches the caller.
    """

    def __init__(self, path: Path | str, connect: Callable[[str], sqlite3.Connection] | None = None, *,
                 lazy: bool = True, per_call: bool = False) -> None:
        self.path = str(path)
        self._connect = connect or connect_wal
        self._lazy = lazy
        self._per_call = per_call
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._per_call:
            conn = self._connect(self.path)
            try:
                return fn(conn)
            finally:
                conn.close()
        if self._conn is None:
            if not self._lazy:
                raise SqliteClosed(f"{self.path} is not open")
            self._conn = self._connect(self.path)
        conn = self._conn
        try:
            return fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    def _open(self) -> None:
        if self._conn is None and not self._per_call:
            self._conn = self._connect(self.path)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def open(self) -> None:
        """Open the connection now (idempotent); errors of ``connect`` reach the caller."""
        await trio.to_thread.run_sync(self._open, limiter=self._limiter)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the worker; calls are serialised in submission order.  The thread
        cannot be cancelled: SQLite's busy timeout bounds a call that waits for a lock."""
        return await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """For start-up and tests, outside the event loop (never while :meth:`run` calls are in flight)."""
        return self._call(fn)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._close, limiter=self._limiter)
