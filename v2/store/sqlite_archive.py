"""The SQLite archive backend: stdlib sqlite3 in one worker thread, WAL (waku-v2.md §7).

One connection, used through ``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)``, so every
statement runs serialised in submission order and the event loop never blocks on disk.
``synchronous=NORMAL`` in WAL mode keeps every committed insert across a process kill (only an OS
crash can lose the last commits), which is the failure a bridge host actually sees.

Rows are keyed by the deterministic message hash (duplicates are ignored) and keep the ORIGINAL
message bytes, so a store answer carries exactly what was relayed (a re-encoding could differ;
§5).  Order is (timestamp, hash) everywhere: queries, cursors and capacity retention.
Indexes: the unique hash index (lookups, cursors), (content_topic, timestamp, hash) for
content-filtered pages, (timestamp, hash) for time retention, capacity retention and queries
without content topics.  A query over several content topics is one ordered, limited scan per
topic merged in SQL, so a page costs O(topics × page) rows, never a sort of a whole topic.

Size retention (nwaku ``size:<n>MB``) measures the database as nwaku's SQLite driver does,
``page_count × page_size``.  New archives are created with ``auto_vacuum=INCREMENTAL`` (an older
file is converted once, by a VACUUM, when a size policy is first configured), so a purge can hand
the freed pages back to the file system with ``PRAGMA incremental_vacuum`` followed by a
truncating WAL checkpoint: the file really shrinks, without rewriting the whole database.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from common.sqlite import SqliteClosed, SqliteWorker
from v2.store.backend import ArchivedMessage, Item, select_sql
from v2.store.common import (
    ArchiveError,
    CapacityRetention,
    DbUrl,
    RetentionPolicy,
    SizeRetention,
    TimeRetention,
)
from v2.store.planner import Page, QueryPlan, cut_page

__all__ = ["SqliteArchive"]

T = TypeVar("T")

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        pubsub_topic TEXT NOT NULL,
        content_topic TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",  # data last: rows are read without touching a large body's overflow pages
    "CREATE INDEX IF NOT EXISTS i_content ON messages (content_topic, timestamp, hash)",
    "CREATE INDEX IF NOT EXISTS i_time ON messages (timestamp, hash)",
)
_INSERT = ("INSERT INTO messages (hash, pubsub_topic, content_topic, timestamp, stored_at, data) "
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING")
_RETENTION_CHUNK = 5000  # rows deleted per worker call, so queries interleave with a big purge
# Over the size limit, purge down to this fraction of it.  nwaku's SQLite driver keeps 80 % of the
# rows (decreaseDatabaseSize: DeleteLimit = 0.80); we aim at 80 % of the *bytes* instead, which is
# what the operator set, and the slack means a purge runs once per ~20 % of growth, not per insert.
_SIZE_TARGET = 0.8
_AUTO_VACUUM_INCREMENTAL = 2


class SqliteArchive:
    """The SQLite backend of :class:`v2.store.archive.Archive`, which parses the URL and the
    retention policies; ``await open()`` before use."""

    def __init__(self, url: DbUrl, *, retention: Sequence[RetentionPolicy] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.retention: tuple[RetentionPolicy, ...] = tuple(retention)
        self._capacity = min((p.capacity for p in self.retention if isinstance(p, CapacityRetention)), default=None)
        self._size_limit = min((p.max_bytes for p in self.retention if isinstance(p, SizeRetention)), default=None)
        self._deleted = 0
        self._purging = False  # a size purge started and has not reached its target yet
        self._clock = clock
        self._db = SqliteWorker(self.url.path, self._connect, lazy=False)
        self._count = 0

    @property
    def is_open(self) -> bool:
        return self._db.is_open

    @property
    def message_count(self) -> int:
        """Rows stored, as of the last completed operation (no disk access)."""
        return self._count

    @property
    def connection_failures(self) -> int:
        return 0  # a file is always there

    @property
    def retention_deleted(self) -> int:
        """Messages this object's retention policies removed, the trims that capacity and size
        retention do right after an insert included (monotonic; for the metric)."""
        return self._deleted

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._db.run(fn)  # the worker rolls back a failed transaction
        except SqliteClosed:
            raise ArchiveError("archive is not open") from None
        except sqlite3.Error as exc:
            raise ArchiveError(f"{type(exc).__name__}: {exc}") from exc

    def _connect(self, path: str) -> sqlite3.Connection:
        """The archive's connection (in the worker thread): WAL, schema, retention settings."""
        if not self.url.in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot open archive {path}: {exc}") from exc
        try:
            # Only takes effect on a file with no tables yet; an existing one is converted below.
            conn.execute(f"PRAGMA auto_vacuum={_AUTO_VACUUM_INCREMENTAL}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: keeps the index pages of ~1 M rows hot
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ArchiveError(f"archive {path} has schema version {version}, expected {SCHEMA_VERSION}")
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
            if (self._size_limit is not None
                    and conn.execute("PRAGMA auto_vacuum").fetchone()[0] != _AUTO_VACUUM_INCREMENTAL):
                # An archive created before (or without) incremental auto-vacuum: without it a
                # purge only moves pages to the free list and the file never shrinks.  One
                # full VACUUM switches the mode (it rewrites the file once).
                log.info("archive %s: enabling incremental auto-vacuum for size retention (one VACUUM)", path)
                conn.execute(f"PRAGMA auto_vacuum={_AUTO_VACUUM_INCREMENTAL}")
                conn.execute("VACUUM")
            if self._size_limit is not None:
                # The -wal file sits beside the database and SQLite checkpoints it only every
                # 1 000 pages (4 MiB) by default, which would dwarf a small limit: checkpoint
                # at a tenth of the limit instead, and truncate the file back after each one.
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                wal_pages = max(16, min(1000, self._size_limit // page_size // 10))
                conn.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
                conn.execute(f"PRAGMA journal_size_limit={wal_pages * page_size}")
            self._count = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        except (sqlite3.Error, ArchiveError) as exc:
            conn.close()
            if isinstance(exc, ArchiveError):
                raise
            raise ArchiveError(f"cannot open archive {path}: {exc}") from exc
        return conn

    async def open(self) -> None:
        await self._db.open()

    async def aclose(self) -> None:
        await self._db.aclose()

    async def __aenter__(self) -> SqliteArchive:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _trim_to_capacity(self, conn: sqlite3.Connection, capacity: int) -> int:
        excess = self._count - capacity
        if excess <= 0:
            return 0
        return self._delete_oldest(conn, excess)

    def _delete_oldest(self, conn: sqlite3.Connection, n: int) -> int:
        cur = conn.execute("DELETE FROM messages WHERE id IN "
                           "(SELECT id FROM messages ORDER BY timestamp, hash LIMIT ?)", (n,))
        self._count -= cur.rowcount
        self._deleted += cur.rowcount
        return cur.rowcount

    @staticmethod
    def _db_size(conn: sqlite3.Connection) -> int:
        """nwaku's measure (db_sqlite getDatabaseSize): page_count × page_size, free pages included."""
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])

    async def database_size(self) -> int:
        """The archive's size as size retention measures it (bytes)."""
        return await self._run(self._db_size)

    def _size_step(self, conn: sqlite3.Connection) -> tuple[int, bool]:
        """One bounded piece of size retention: (messages deleted, whether the purge goes on).

        A purge starts when the database exceeds the limit and deletes the oldest messages (by
        timestamp, then hash) until the pages in use fit in ``_SIZE_TARGET`` of it; one step
        deletes at most ``_RETENTION_CHUNK`` rows and hands the freed pages back to the file
        system, so a big purge spreads over several inserts (or the periodic run) and never
        stalls the message path.
        """
        limit = self._size_limit
        assert limit is not None
        if not self._purging:
            if self._db_size(conn) <= limit:
                return 0, False
            self._purging = True
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        target = int(limit * _SIZE_TARGET)

        def used() -> int:
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            return (pages - int(conn.execute("PRAGMA freelist_count").fetchone()[0])) * page_size

        deleted = 0
        while deleted < _RETENTION_CHUNK and self._count > 0 and (now_used := used()) > target:
            # Rows cost about the same, so delete the share of rows that is the share of bytes over
            # the target; freed pages lag deleted rows (index pages go half empty first), so measure
            # again and repeat until the target is met.
            n = min(_RETENTION_CHUNK - deleted, max(1, math.ceil(self._count * (now_used - target) / now_used)))
            conn.execute("BEGIN IMMEDIATE")
            deleted += self._delete_oldest(conn, n)
            conn.execute("COMMIT")
        # executescript, not execute: the pragma frees one page per step and execute() steps once.
        conn.executescript("PRAGMA incremental_vacuum;")
        if self._count > 0 and used() > target:
            return deleted, True
        self._purging = False
        # In WAL mode the main file is truncated only when the WAL is checkpointed into it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted, False

    async def insert_many(self, items: Sequence[Item]) -> int:
        """Archive several messages in one transaction; returns how many were new."""
        stored_at = int(self._clock() * 1e9)
        rows = [(h, topic, m.content_topic, m.timestamp or 0, stored_at, data) for topic, h, m, data in items]

        def do(conn: sqlite3.Connection) -> tuple[int, bool]:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany(_INSERT, rows)
            added = conn.total_changes - before
            self._count += added
            if self._capacity is not None:  # capacity holds on every insert, not only on the periodic run
                self._trim_to_capacity(conn, self._capacity)
            conn.execute("COMMIT")
            limit = self._size_limit
            return added, limit is not None and (self._purging or self._db_size(conn) > limit)

        added, over_size = await self._run(do)
        if over_size:
            # Like capacity, size holds on every insert: one bounded step, in its own worker call.
            try:
                await self._run(self._size_step)
            except ArchiveError as exc:  # the insert itself is committed; the periodic run retries (counted)
                log.warning("archive: size retention after an insert failed: %s", exc)
        return added

    async def find(self, plan: QueryPlan, cursor_ts: int | None = None) -> Page[ArchivedMessage]:
        """One page for a validated plan (see v2.store.planner); an unknown cursor gives an empty page.

        nwaku compares against the cursor row's (timestamp, hash); a cursor that is not (or no
        longer) in the archive matches nothing, so the client sees the end of the results.  With
        ``cursor_ts`` the cursor is a position (timestamp, ``plan.cursor``) that need not be a row
        (the legacy store's positional cursors, v2.store.legacy_planner).
        """
        if plan.empty_range:
            return Page((), None)

        def do(conn: sqlite3.Connection, cursor_ts: int | None = cursor_ts) -> list[ArchivedMessage]:
            if plan.cursor is not None and cursor_ts is None:
                row = conn.execute("SELECT timestamp FROM messages WHERE hash = ?", (plan.cursor,)).fetchone()
                if row is None:
                    return []
                cursor_ts = row[0]
            sql, params = select_sql(plan, cursor_ts)
            return [ArchivedMessage(*r) for r in conn.execute(sql, params)]

        return cut_page(plan, await self._run(do))

    async def rows_at(self, timestamp: int, limit: int = 1000) -> list[tuple[bytes, str, bytes]]:
        """(hash, pubsub topic, data) of the rows stored with ``timestamp`` (at most ``limit``)."""

        def do(conn: sqlite3.Connection) -> list[tuple[bytes, str, bytes]]:
            return list(conn.execute("SELECT hash, pubsub_topic, data FROM messages WHERE timestamp = ? "
                                     "ORDER BY hash LIMIT ?", (timestamp, limit)))

        return await self._run(do)

    async def count(self) -> int:
        def do(conn: sqlite3.Connection) -> int:
            self._count = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            return self._count

        return await self._run(do)

    async def apply_retention(self, now: float | None = None) -> int:
        """Run every retention policy once; returns the number of messages deleted.

        ``time:S`` removes messages with timestamp < now − S; ``capacity:N`` keeps the newest N;
        ``size:B`` removes the oldest while the database is over B bytes (down to 80 % of it).
        Deletes go in chunks, each its own transaction, so queries are served in between.
        """
        now = self._clock() if now is None else now
        deleted = 0
        for policy in self.retention:
            if isinstance(policy, TimeRetention):
                cutoff = int((now - policy.seconds) * 1e9)

                def by_time(conn: sqlite3.Connection, cutoff: int = cutoff) -> int:
                    cur = conn.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages "
                                       "WHERE timestamp < ? ORDER BY timestamp LIMIT ?)", (cutoff, _RETENTION_CHUNK))
                    self._count -= cur.rowcount
                    self._deleted += cur.rowcount
                    return cur.rowcount

                while (n := await self._run(by_time)) > 0:
                    deleted += n
                    if n < _RETENTION_CHUNK:
                        break
            elif isinstance(policy, SizeRetention):
                if policy.max_bytes == self._size_limit:  # the tightest one; looser ones then hold too
                    more = True
                    while more:
                        n, more = await self._run(self._size_step)
                        deleted += n
            else:
                capacity = policy.capacity

                def by_capacity(conn: sqlite3.Connection, capacity: int = capacity) -> int:
                    return self._trim_to_capacity(conn, max(capacity, self._count - _RETENTION_CHUNK))

                while (n := await self._run(by_capacity)) > 0:
                    deleted += n
        return deleted
