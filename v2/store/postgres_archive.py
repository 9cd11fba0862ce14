"""The PostgreSQL archive backend: psycopg 3 in one worker thread (``--store-message-db-url
postgres://user:password@host:port/db``, as nwaku's waku_archive/driver/postgres_driver).

One connection, used through ``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)``, as the
SQLite backend: calls are serialised and the event loop never waits on the network.  The schema is
the SQLite one (hash primary key, original bytes, (timestamp, hash) order, the same two indexes),
and queries are the same SQL (v2.store.backend.select_sql), so pages are identical on both.

Several nodes may share one database, and this is what the design is for:

* Inserts are ``INSERT … ON CONFLICT (hash) DO NOTHING``: the second node to write a message
  waits for the first one's commit and then skips the row, so there is no ``duplicate key …
  messageindex`` error (nwaku's plain INSERT raises it whenever two nodes store the same
  message).  Each batch is sorted by hash, so two batches lock their rows in the same order and
  cannot deadlock each other; a deadlock or serialisation failure is retried anyway.
* No partitions.  nwaku partitions by time and creates/drops partitions from each node; two
  nodes racing there is what kills a node (nwaku #4147).  One table with a (timestamp, hash) index
  serves time-range pages and retention in O(log n + page); deleting old rows by chunks costs about
  what dropping a partition saves, and there is nothing to maintain.
* Schema creation runs under a transaction-level advisory lock, so nodes starting together
  create it once; retention deletes are chunked ``DELETE … WHERE hash IN (SELECT … LIMIT n)``,
  which two nodes may run at once (the second one waits on the rows the first deletes, finds them
  gone and deletes nothing); a size purge is held by one node at a time (session advisory lock).

Size retention measures the archive's own relations, ``pg_total_relation_size('messages')``
(heap, TOAST and indexes), not nwaku's ``pg_database_size``: an empty database is already ~7 MiB
of catalog, and a shared database holds other things.  PostgreSQL does not give deleted space back
to the file system (only ``VACUUM FULL`` does, under an exclusive lock), so a purge deletes the
oldest rows down to 80 % of the limit *by row count* (rows × the bytes per row when the purge
starts) and then runs a plain ``VACUUM``, which makes that space reusable; the size after it is
remembered (table ``archive_meta``, shared by the nodes) and the next purge starts when the table
grows past it, i.e. once the freed space is used up.  The table therefore stays at about the limit.

A lost connection is re-established for up to ``retry_deadline`` seconds before a call fails with
``ArchiveError``; every failed attempt is counted (``connection_failures``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

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

__all__ = ["PostgresArchive"]

T = TypeVar("T")

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_COLUMNS = {"hash", "pubsub_topic", "content_topic", "timestamp", "stored_at", "data"}
_TABLE = """CREATE TABLE IF NOT EXISTS messages (
    hash BYTEA PRIMARY KEY,
    pubsub_topic TEXT NOT NULL,
    content_topic TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    data BYTEA NOT NULL
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS messages_content_time ON messages (content_topic, timestamp, hash)",
    "CREATE INDEX IF NOT EXISTS messages_time ON messages (timestamp, hash)",
    "CREATE TABLE IF NOT EXISTS archive_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# One statement per batch: the arrays are unnested in hash order (the lock order, see above).
_INSERT = ("INSERT INTO messages (hash, pubsub_topic, content_topic, timestamp, stored_at, data) "
           "SELECT * FROM unnest(%s::bytea[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bytea[]) "
           "ON CONFLICT (hash) DO NOTHING")
_DELETE_OLDEST = ("DELETE FROM messages WHERE hash IN "
                  "(SELECT hash FROM messages ORDER BY timestamp, hash LIMIT %s)")
_DELETE_BEFORE = ("DELETE FROM messages WHERE hash IN "
                  "(SELECT hash FROM messages WHERE timestamp < %s ORDER BY timestamp, hash LIMIT %s)")
_SIZE = "SELECT pg_total_relation_size('messages'::regclass)"
# Advisory locks are per database: the key pairs a class ("wksc", "wksz" in ASCII) with the
# schema, so archives in two schemas of one database do not wait for each other.
_LOCK_SCHEMA = f"{0x776B7363}, hashtext(current_schema())"
_LOCK_SIZE = f"{0x77736B7A}, hashtext(current_schema())"
_RETENTION_CHUNK = 5000  # rows deleted per worker call, so queries interleave with a big purge
_SIZE_TARGET = 0.8  # as the SQLite backend: purge down to 80 % of the limit
_STATEMENT_TIMEOUT_MS = 60_000  # no statement holds the worker thread longer (VACUUM excepted)
_TRANSIENT = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def _scalar(sql: str, conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _rowcount(sql: str, params: tuple[int, ...], conn: psycopg.Connection[Any]) -> int:
    return conn.execute(sql, params).rowcount


class _Lost(Exception):
    """The connection is gone (or could not be made); the call may be retried on a new one."""


class PostgresArchive:
    """The archive in a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: DbUrl, *, retention: Sequence[RetentionPolicy] = (),
                 clock: Callable[[], float] = time.time, connect_timeout: float = 10.0,
                 retry_deadline: float = 10.0) -> None:
        self.url = url
        self.retention: tuple[RetentionPolicy, ...] = tuple(retention)
        self._capacity = min((p.capacity for p in self.retention if isinstance(p, CapacityRetention)), default=None)
        self._size_limit = min((p.max_bytes for p in self.retention if isinstance(p, SizeRetention)), default=None)
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._retry_deadline = retry_deadline
        self._limiter = trio.CapacityLimiter(1)
        self._conn: psycopg.Connection[Any] | None = None
        self._open = False
        self._count = 0
        self._deleted = 0
        self._failures = 0
        self._mark = 0  # table size after the last purge's VACUUM (0: none yet for this limit)
        self._rows_cap: int | None = None  # rows that fit in the size limit, from the last purge
        self._purge_goal: int | None = None  # rows to keep while a size purge is under way

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def message_count(self) -> int:
        return self._count

    @property
    def retention_deleted(self) -> int:
        return self._deleted

    @property
    def connection_failures(self) -> int:
        return self._failures

    # -- the worker ------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            # Ours are added to the URL's own server options (e.g. a search_path), not instead.
            own = conninfo_to_dict(self.url.url).get("options") or ""
            options = f"{own} -c statement_timeout={_STATEMENT_TIMEOUT_MS}"
            conn = psycopg.connect(
                self.url.url, autocommit=True, connect_timeout=max(1, math.ceil(self._connect_timeout)),
                # A dead peer must not hang the worker thread: TCP keepalive notices it in ~25 s.
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                options=options.strip(), application_name="waku-bridge-archive")
        except psycopg.OperationalError as exc:
            self._failures += 1
            raise _Lost(str(exc).strip()) from exc
        except psycopg.Error as exc:  # e.g. an unknown connection option in the URL's query
            raise ArchiveError(f"cannot connect to {self.url.redacted}: {exc}") from exc
        return conn

    def _call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            return fn(conn)
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                self._failures += 1
                self._drop()
                self._purge_goal = None  # a size purge's advisory lock went with the session
                raise _Lost(str(exc).strip()) from exc
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    async def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(conn)`` in the worker; a lost connection is re-made until ``retry_deadline``."""
        if not self._open:
            raise ArchiveError("archive is not open")
        return await self._retrying(fn, self._retry_deadline)

    async def _retrying(self, fn: Callable[[psycopg.Connection[Any]], T], budget: float) -> T:
        deadline = trio.current_time() + budget
        delay = 0.05
        while True:
            try:
                return await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter)
            except _Lost as exc:
                if trio.current_time() + delay > deadline:
                    raise ArchiveError(f"database {self.url.redacted} unreachable: {exc}") from None
                (log.warning if delay == 0.05 else log.debug)(  # once per call, not once per attempt
                    "archive: database %s unreachable, retrying for %.0f s: %s", self.url.redacted, budget, exc)
            except _TRANSIENT as exc:
                if trio.current_time() + delay > deadline:
                    raise ArchiveError(f"{type(exc).__name__}: {exc}") from exc
            except psycopg.Error as exc:
                raise ArchiveError(f"{type(exc).__name__}: {exc}") from exc
            await trio.sleep(delay)
            delay = min(1.0, delay * 2)

    # -- life cycle --------------------------------------------------------------------------------

    def _prepare(self, conn: psycopg.Connection[Any]) -> int:
        """Create (or check) the schema, once per database whatever the number of nodes."""
        with conn.transaction():
            conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_SCHEMA})")
            conn.execute(_TABLE)
            cols = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'messages'")}
            if not _COLUMNS.issubset(cols):
                raise ArchiveError(f"table messages in {self.url.redacted} is not a waku-bridge archive "
                                   f"(columns {sorted(cols)}; an nwaku database?)")
            for stmt in _INDEXES:
                conn.execute(stmt)
            conn.execute("INSERT INTO archive_meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION),))
            row = conn.execute("SELECT value FROM archive_meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise ArchiveError(f"archive {self.url.redacted} has schema version {row and row[0]}, "
                               f"expected {SCHEMA_VERSION}")
        self._mark, self._rows_cap = self._read_mark(conn)
        if _scalar("SELECT reltuples::bigint FROM pg_class WHERE oid = 'messages'::regclass", conn) < 0:
            # Never analysed (a table made by an older schema step or restored from a dump):
            # without statistics the planner may sort a whole topic instead of walking the
            # (content_topic, timestamp, hash) index.  Autovacuum keeps them fresh from then on.
            conn.execute("ANALYZE messages")
        return _scalar("SELECT COUNT(*) FROM messages", conn)

    async def open(self) -> None:
        """Connect and prepare the schema, trying for ``connect_timeout`` seconds; then
        ``ArchiveError`` (an unreachable server is a start-up error, not a crash loop)."""
        if self._open:
            return
        try:
            self._count = await self._retrying(self._prepare, self._connect_timeout)
        except ArchiveError as exc:
            await trio.to_thread.run_sync(self._drop, limiter=self._limiter)
            raise ArchiveError(f"cannot open archive: {exc}") from None
        self._open = True

    async def aclose(self) -> None:
        self._open = False
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._drop, limiter=self._limiter)

    # -- writes --------------------------------------------------------------------------------

    async def insert_many(self, items: Sequence[Item]) -> int:
        stored_at = int(self._clock() * 1e9)
        rows = sorted({h: (h, topic, m.content_topic, m.timestamp or 0, stored_at, data)
                       for topic, h, m, data in items}.values())
        if not rows:
            return 0
        columns = [list(c) for c in zip(*rows, strict=True)]
        capacity = self._capacity

        def do(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            added = conn.execute(_INSERT, columns).rowcount
            deleted = 0
            if capacity is not None and self._count + added > capacity:
                # Its own statement, not the insert's transaction: its row locks (the oldest rows)
                # are then never held while another node's batch waits on ours.
                deleted = conn.execute(_DELETE_OLDEST, (self._count + added - capacity,)).rowcount
            return added, deleted

        added, deleted = await self._run(do)
        self._count += added - deleted
        self._deleted += deleted
        if self._size_limit is not None:
            try:  # one bounded step, as on SQLite; the periodic run finishes a big purge
                await self._size_step()
            except ArchiveError as exc:
                log.warning("archive: size retention after an insert failed: %s", exc)
        return added

    # -- reads ---------------------------------------------------------------------------------

    async def find(self, plan: QueryPlan, cursor_ts: int | None = None) -> Page[ArchivedMessage]:
        if plan.empty_range:
            return Page((), None)

        def do(conn: psycopg.Connection[Any], cursor_ts: int | None = cursor_ts) -> list[ArchivedMessage]:
            if plan.cursor is not None and cursor_ts is None:
                row = conn.execute("SELECT timestamp FROM messages WHERE hash = %s", (plan.cursor,)).fetchone()
                if row is None:
                    return []
                cursor_ts = row[0]
            sql, params = select_sql(plan, cursor_ts, "%s")
            return [ArchivedMessage(bytes(h), t, ts, None if d is None else bytes(d))
                    for h, t, ts, d in conn.execute(sql, params)]

        return cut_page(plan, await self._run(do))

    async def rows_at(self, timestamp: int, limit: int = 1000) -> list[tuple[bytes, str, bytes]]:
        def do(conn: psycopg.Connection[Any]) -> list[tuple[bytes, str, bytes]]:
            cur = conn.execute("SELECT hash, pubsub_topic, data FROM messages WHERE timestamp = %s "
                               "ORDER BY hash LIMIT %s", (timestamp, limit))
            return [(bytes(h), t, bytes(d)) for h, t, d in cur]

        return await self._run(do)

    async def count(self) -> int:
        self._count = await self._run(partial(_scalar, "SELECT COUNT(*) FROM messages"))
        return self._count

    async def database_size(self) -> int:
        return await self._run(partial(_scalar, _SIZE))

    # -- retention -----------------------------------------------------------------------------

    def _read_mark(self, conn: psycopg.Connection[Any]) -> tuple[int, int | None]:
        """(table size after the last purge, rows that fit in the limit) as the last purge left
        them for the current limit; (0, None) if there was none, or it was for another limit."""
        row = conn.execute("SELECT value FROM archive_meta WHERE key = 'size_mark'").fetchone()
        if row is None or self._size_limit is None:
            return 0, None
        limit, size, rows = [*str(row[0]).split(":"), "", "", ""][:3]
        if limit != str(self._size_limit) or not size.isdigit() or not rows.isdigit():
            return 0, None
        return int(size), int(rows)

    async def _size_step(self) -> tuple[int, bool]:
        """One bounded piece of size retention: (messages deleted, whether the purge goes on).

        A purge starts when the table grows past both the limit and its size after the last purge
        (the freed space is used up), or holds more rows than fit (``_rows_cap``, rows × limit /
        size when the table was last found full).  It deletes the oldest rows down to 80 % of
        that many, then VACUUMs; one step deletes at most ``_RETENTION_CHUNK`` rows.
        """
        limit = self._size_limit
        assert limit is not None

        def do(conn: psycopg.Connection[Any]) -> tuple[int, bool, int]:
            if self._purge_goal is None:
                size = _scalar(_SIZE, conn)
                cap = self._rows_cap
                if size <= max(limit, self._mark) and (cap is None or self._count <= cap):
                    return 0, False, self._count
                if not _scalar(f"SELECT pg_try_advisory_lock({_LOCK_SIZE})::int", conn):
                    return 0, False, self._count  # another node is purging this database
                self._mark, cap = self._read_mark(conn)  # that node may have purged meanwhile
                count = _scalar("SELECT COUNT(*) FROM messages", conn)
                if size > max(limit, self._mark) and count > 0:
                    # The table has no free space now (it grew past the last mark), so size / count
                    # is what a row costs.
                    cap = max(1, int(count * limit / size))
                if cap is None or count <= cap:
                    self._rows_cap = cap
                    conn.execute(f"SELECT pg_advisory_unlock({_LOCK_SIZE})")
                    return 0, False, count
                self._rows_cap = cap
                self._purge_goal = int(cap * _SIZE_TARGET)
            else:
                count = self._count
            n = min(_RETENTION_CHUNK, count - self._purge_goal)
            deleted = conn.execute(_DELETE_OLDEST, (n,)).rowcount if n > 0 else 0
            if count - deleted > self._purge_goal and deleted > 0:
                return deleted, True, count - deleted
            self._purge_goal = None
            conn.execute("SET statement_timeout = 0")
            try:
                conn.execute("VACUUM messages")  # the freed space becomes reusable
            finally:
                conn.execute("RESET statement_timeout")
            self._mark = max(limit, _scalar(_SIZE, conn))
            conn.execute("INSERT INTO archive_meta (key, value) VALUES ('size_mark', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (f"{limit}:{self._mark}:{self._rows_cap}",))
            conn.execute(f"SELECT pg_advisory_unlock({_LOCK_SIZE})")
            return deleted, False, count - deleted

        try:
            deleted, more, count = await self._run(do)
        except ArchiveError:
            self._purge_goal = None  # the lock went with the connection, or is released on the next purge
            raise
        self._count = count
        self._deleted += deleted
        return deleted, more

    async def apply_retention(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        deleted = 0
        for policy in self.retention:
            if isinstance(policy, TimeRetention):
                cutoff = int((now - policy.seconds) * 1e9)
                while True:
                    n = await self._run(partial(_rowcount, _DELETE_BEFORE, (cutoff, _RETENTION_CHUNK)))
                    self._count = max(0, self._count - n)
                    self._deleted += n
                    deleted += n
                    if n < _RETENTION_CHUNK:
                        break
            elif isinstance(policy, SizeRetention):
                if policy.max_bytes == self._size_limit:  # the tightest one; looser ones then hold too
                    more = True
                    while more:
                        n, more = await self._size_step()
                        deleted += n
            else:
                await self.count()  # other nodes' inserts count too
                while (excess := self._count - policy.capacity) > 0:
                    n = await self._run(partial(_rowcount, _DELETE_OLDEST, (min(excess, _RETENTION_CHUNK),)))
                    self._count -= n
                    self._deleted += n
                    deleted += n
                    if n == 0:  # another node deleted them first
                        await self.count()
        return deleted
