"""Hourly migration aggregates persisted in the data dir: hour × content topic × origin → count, bytes.

Prometheus forgets; operators deciding when v1 can be switched off need months of history (which
topics still originate on v1).  Every transfer is added to an in-memory :class:`HourlyAccumulator`
(pure: ``now`` passed in); :class:`AggregatesWriter` flushes it every ``flush_interval`` seconds
and, shielded, on shutdown into ``aggregates.sqlite3`` through one worker thread (WAL), the same
way the dedup ledger is written.  Rows are upserted (``count = count + new``), so flushes from
successive runs of the same instance add up; a kill -9 loses at most the counts of the last
``flush_interval`` (the messages themselves are unaffected: dedup is write-ahead).  Retention
is bounded (default 400 days: a year and a month, enough to compare against the same month last
year).

Cardinality: content topics come from the network, so an hour keeps at most ``max_topics``
distinct topics; later ones in that hour are folded into :data:`bridge.metrics.OTHER`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from bridge.disk import DiskWatch, Store
from bridge.metrics import OTHER, origin_of
from common.sqlite import SqliteWorker

__all__ = [
    "AGGREGATES_FILE",
    "HOUR",
    "AggregatesStore",
    "AggregatesWriter",
    "HourlyAccumulator",
    "HourlyRow",
    "hour_of",
    "read_hourly",
]

log = logging.getLogger(__name__)

HOUR = 3600
AGGREGATES_FILE = "aggregates.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hourly (
    hour   INTEGER NOT NULL,  -- unix seconds at the start of the UTC hour
    topic  TEXT    NOT NULL,  -- content topic (v1 topics as /waku/1/0x<hex>/rfc26)
    origin TEXT    NOT NULL,  -- 'v1' | 'v2': the network the message originated on
    count  INTEGER NOT NULL,
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (hour, topic, origin)
) WITHOUT ROWID
"""


def hour_of(now: float) -> int:
    return int(now // HOUR) * HOUR


@dataclass(frozen=True, slots=True)
class HourlyRow:
    hour: int
    topic: str
    origin: str
    count: int
    bytes: int


class HourlyAccumulator:
    """Counts since the last :meth:`drain`, keyed by (hour, topic, origin) (pure)."""

    def __init__(self, max_topics: int = 10_000) -> None:
        self.max_topics = max_topics
        self._cells: dict[tuple[int, str, str], list[int]] = {}
        self._hour = -1
        self._hour_topics: set[str] = set()  # topics given their own row in the current hour

    def __len__(self) -> int:
        return len(self._cells)

    def add(self, now: float, topic: str, origin: str, size: int, count: int = 1) -> None:
        hour = hour_of(now)
        if hour > self._hour:
            self._hour, self._hour_topics = hour, set()
        if hour == self._hour and topic not in self._hour_topics:
            if len(self._hour_topics) >= self.max_topics:
                topic = OTHER
            else:
                self._hour_topics.add(topic)
        cell = self._cells.setdefault((hour, topic, origin), [0, 0])
        cell[0] += count
        cell[1] += size

    def drain(self) -> list[HourlyRow]:
        rows = [HourlyRow(h, t, o, c, b) for (h, t, o), (c, b) in sorted(self._cells.items())]
        self._cells = {}
        return rows

    def restore(self, rows: list[HourlyRow]) -> None:
        """Put back rows whose flush failed (they are retried with the next one)."""
        for r in rows:
            cell = self._cells.setdefault((r.hour, r.topic, r.origin), [0, 0])
            cell[0] += r.count
            cell[1] += r.bytes


class AggregatesStore:
    """The ``hourly`` table, written through one worker thread."""

    def __init__(self, path: Path, *, retention_days: int = 400) -> None:
        self.path = path
        self.retention_days = retention_days
        self._db = SqliteWorker(path)

    async def open(self) -> None:
        await self._db.run(lambda c: c.execute(_SCHEMA))

    async def write(self, rows: list[HourlyRow]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(_SCHEMA)  # open() may have met a full disk
            # One transaction per flush (the connection is in autocommit mode: ``with conn`` alone
            # would commit row by row, and a flush failing half-way, then retried whole, would
            # count its first rows twice); the worker rolls back a failed one.
            conn.execute("BEGIN")
            with conn:
                conn.executemany(
                    "INSERT INTO hourly (hour, topic, origin, count, bytes) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (hour, topic, origin) DO UPDATE SET "
                    "count = count + excluded.count, bytes = bytes + excluded.bytes",
                    [(r.hour, r.topic, r.origin, r.count, r.bytes) for r in rows])

        if rows:
            await self._db.run(upsert)

    async def prune(self, now: float) -> int:
        cutoff = hour_of(now) - self.retention_days * 24 * HOUR
        return await self._db.run(lambda c: c.execute("DELETE FROM hourly WHERE hour < ?", (cutoff,)).rowcount)

    async def aclose(self) -> None:
        await self._db.aclose()


class AggregatesWriter:
    """Accumulate transfers in memory; flush periodically and on shutdown."""

    def __init__(self, path: Path, *, flush_interval: float = 10.0, retention_days: int = 400,
                 max_topics: int = 10_000, clock: Callable[[], float] = time.time,
                 on_flush: Callable[[str], None] | None = None, disk: DiskWatch | None = None) -> None:
        self.store = AggregatesStore(path, retention_days=retention_days)
        self.disk = disk if disk is not None else DiskWatch()
        self.acc = HourlyAccumulator(max_topics)
        self.flush_interval = flush_interval
        self.clock = clock
        self.on_flush = on_flush
        self.last_flush: float | None = None
        self._lock = trio.Lock()  # a periodic flush and the shutdown flush never interleave

    def record(self, direction: str, content_topic: str, size: int, now: float) -> None:
        """A :data:`bridge.metrics.TransferListener`: synchronous, no I/O."""
        self.acc.add(now, content_topic, origin_of(direction), size)

    async def flush(self, *, force: bool = False) -> int:
        """Write what accumulated; returns the rows written (0 on failure: they are retried, after
        the disk watch's backoff unless ``force``)."""
        async with self._lock:
            if not force and not self.disk.may_write(Store.AGGREGATES, self.clock()):
                return 0
            rows = self.acc.drain()
            if not rows:
                return 0
            try:
                await self.store.write(rows)
            except (sqlite3.Error, OSError) as exc:  # disk full, locked: keep counting, retry next time
                self.acc.restore(rows)
                log.warning("hourly aggregates not flushed (%s): %d rows kept in memory", exc, len(rows))
                self.disk.failed(Store.AGGREGATES, str(exc), self.clock())
                if self.on_flush:
                    self.on_flush("failed")
                return 0
            if self.disk.succeeded(Store.AGGREGATES) is not None:
                log.warning("hourly aggregates: %s takes writes again", self.store.path)
            self.last_flush = self.clock()
            if self.on_flush:
                self.on_flush("ok")
            return len(rows)

    async def _prune(self) -> None:
        try:
            await self.store.prune(self.clock())
        except (sqlite3.Error, OSError) as exc:  # a DELETE needs WAL space too: the next hour retries
            log.warning("hourly aggregates not pruned (%s)", exc)
            self.disk.failed(Store.AGGREGATES, str(exc), self.clock())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.store.open()
        except (sqlite3.Error, OSError) as exc:  # a new file on a full disk: counted, the flushes retry
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            log.warning("hourly aggregates: cannot create %s (%s): counts kept in memory", self.store.path, exc)
            self.disk.failed(Store.AGGREGATES, str(exc), self.clock())
        await self._prune()
        try:
            task_status.started()
            pruned_hour = hour_of(self.clock())
            while True:
                await trio.sleep(self.flush_interval)
                await self.flush()
                if hour_of(self.clock()) != pruned_hour:
                    pruned_hour = hour_of(self.clock())
                    await self._prune()
        finally:
            with trio.CancelScope(shield=True):  # shutdown: what was counted reaches the disk
                await self.flush(force=True)
                await self.store.aclose()


def read_hourly(path: Path, *, since: int = 0) -> list[HourlyRow]:
    """Rows with ``hour >= since`` from an aggregates file, opened read-only (the report)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = conn.execute("SELECT hour, topic, origin, count, bytes FROM hourly WHERE hour >= ? "
                            "ORDER BY hour, topic, origin", (since,)).fetchall()
    finally:
        conn.close()
    return [HourlyRow(int(h), str(t), str(o), int(c), int(b)) for h, t, o, c, b in rows]
