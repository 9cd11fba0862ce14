"""The bridge's dedup ledger: one key for both directions, windowed, bounded, persisted.

Key = sha256(v1 topic ‖ v1 data) (bridge.translate.dedup_key).  An entry lives for ``window``
seconds (>= max TTL + skew, enforced by the config), memory holds at most ``capacity`` entries
(the oldest go first), and every new key is committed to SQLite *before* the message is
published, so a restart — even after kill -9 — does not bridge again what v1 peers re-send from
their pools.  The pure part (:class:`DedupCache`) takes ``now`` as an argument.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from common.sqlite import SqliteWorker

__all__ = ["DedupCache", "DedupStore"]


class DedupCache:
    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # key -> expires_at, oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: bytes, now: float) -> bool:
        exp = self._entries.get(key)
        return exp is not None and exp >= now

    def add(self, key: bytes, now: float, expires_at: float | None = None) -> list[bytes]:
        """Insert (or refresh); returns keys evicted to respect the capacity."""
        self._entries[key] = now + self.window if expires_at is None else expires_at
        self._entries.move_to_end(key)
        evicted = []
        while len(self._entries) > self.capacity:
            k, _ = self._entries.popitem(last=False)
            evicted.append(k)
        return evicted

    def expire(self, now: float) -> int:
        n = 0
        while self._entries:
            exp = next(iter(self._entries.values()))
            if exp >= now:
                break
            self._entries.popitem(last=False)
            n += 1
        return n


class DedupStore:
    """:class:`DedupCache` + a SQLite table in the data dir (``path=None``: memory only)."""

    def __init__(self, path: Path | None, *, window: float, capacity: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = DedupCache(window, capacity)
        self.clock = clock
        self._db = SqliteWorker(path) if path is not None else None

    def __len__(self) -> int:
        return len(self.cache)

    async def open(self) -> int:
        """Create the table and load the live entries; returns how many were loaded."""
        if self._db is None:
            return 0
        now = self.clock()

        def load(conn: sqlite3.Connection) -> list[tuple[bytes, float]]:
            conn.execute("CREATE TABLE IF NOT EXISTS dedup (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at)")
            conn.execute("DELETE FROM dedup WHERE expires_at < ?", (now,))
            return conn.execute("SELECT key, expires_at FROM dedup ORDER BY expires_at DESC LIMIT ?",
                                (self.cache.capacity,)).fetchall()

        rows = await self._db.run(load)
        for key, exp in reversed(rows):
            self.cache.add(key, now, exp)
        return len(rows)

    def seen(self, key: bytes) -> bool:
        return self.cache.seen(key, self.clock())

    async def add(self, key: bytes) -> None:
        """Remember ``key``; returns once it is committed (write-ahead of the publish)."""
        now = self.clock()
        self.cache.add(key, now)
        if self._db is not None:
            exp = now + self.cache.window
            await self._db.run(lambda c: c.execute(
                "INSERT OR REPLACE INTO dedup (key, expires_at) VALUES (?, ?)", (key, exp)))

    async def check_and_add(self, key: bytes) -> bool:
        """True if ``key`` is new (and now remembered), False if it is a duplicate."""
        if self.seen(key):
            return False
        await self.add(key)
        return True

    async def prune(self) -> int:
        now = self.clock()
        n = self.cache.expire(now)
        if self._db is not None:
            await self._db.run(lambda c: c.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)))
        return n

    async def aclose(self) -> None:
        if self._db is not None:
            await self._db.aclose()
