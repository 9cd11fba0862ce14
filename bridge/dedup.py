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
from array import array
from collections.abc import Callable
from pathlib import Path

import trio
import trio.lowlevel

from common.sqlite import connect_wal

__all__ = ["KEY_WIDTH", "DedupCache", "DedupStore"]

KEY_WIDTH = 32  # sha256 (bridge.translate.dedup_key); shorter keys are zero-padded, their length kept


class DedupCache:
    """Insertion-ordered ``key -> expires_at`` with a capacity, in flat arrays (no object per key).

    Semantics are those of an ``OrderedDict`` (tests/helpers/dedup_model.py, checked by a
    model-based test): ``add`` inserts or refreshes (a refreshed key moves to the newest end) and
    evicts the oldest beyond ``capacity``; ``expire`` drops from the oldest end while the oldest
    entry has expired.  Layout, about 50 bytes per key instead of ~210 (bytes object, float,
    ordered-dict node): a log of fixed-width slots in arrival order (``_keys`` 32 bytes each,
    ``_lens``, ``_exps``, ``_alive`` — a refreshed key leaves a dead slot behind), trimmed from the
    front as the oldest go; and an open-addressing index (linear probing, deletion by backward
    shift, so no tombstones) of absolute slot numbers + 1 in an ``array('q')``.
    """

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._keys = bytearray()  # KEY_WIDTH bytes per slot, zero-padded
        self._lens = bytearray()
        self._exps = array("d")
        self._alive = bytearray()
        self._base = 0  # absolute number of slot 0 of the arrays
        self._head = 0  # first slot that may be alive
        self._n = 0  # live entries
        self._table = array("q", bytes(8 * 64))
        self._mask = 63

    def __len__(self) -> int:
        return self._n

    # --- the index ---

    def _key_at(self, i: int) -> bytes:
        off = i * KEY_WIDTH
        return bytes(self._keys[off:off + self._lens[i]])

    def _find(self, key: bytes) -> tuple[int, int]:
        """(table position, array slot) of ``key``; slot -1 if absent (position: the free one)."""
        table, mask, base, keys, lens = self._table, self._mask, self._base, self._keys, self._lens
        pos = hash(key) & mask
        n = len(key)
        while True:
            s = table[pos]
            if s == 0:
                return pos, -1
            i = s - 1 - base
            off = i * KEY_WIDTH
            if lens[i] == n and keys[off:off + n] == key:
                return pos, i
            pos = (pos + 1) & mask

    def _unlink(self, pos: int) -> None:
        """Empty table position ``pos``, shifting later members of its cluster back (Knuth 6.4 R)."""
        table, mask, base = self._table, self._mask, self._base
        hole = pos
        j = pos
        while True:
            j = (j + 1) & mask
            s = table[j]
            if s == 0:
                break
            home = hash(self._key_at(s - 1 - base)) & mask
            # the entry at j may fill the hole unless its home lies cyclically in (hole, j]
            if (hole < j and hole < home <= j) or (hole > j and (home > hole or home <= j)):
                continue
            table[hole] = s
            hole = j
        table[hole] = 0

    def _grow(self) -> None:
        size = len(self._table) * 2
        table = array("q", bytes(8 * size))
        mask = size - 1
        for i in range(self._head, len(self._alive)):
            if self._alive[i]:
                pos = hash(self._key_at(i)) & mask
                while table[pos]:
                    pos = (pos + 1) & mask
                table[pos] = self._base + i + 1
        self._table, self._mask = table, mask

    def _drop_slot(self, i: int) -> None:
        pos, j = self._find(self._key_at(i))
        assert j == i
        self._unlink(pos)
        self._alive[i] = 0
        self._n -= 1

    def _trim(self) -> None:
        """Forget the dead slots at the front of the log (amortised: when they are half of it)."""
        while self._head < len(self._alive) and not self._alive[self._head]:
            self._head += 1
        h = self._head
        if h >= 1024 and 2 * h >= len(self._alive):
            del self._keys[:h * KEY_WIDTH]
            del self._lens[:h]
            del self._exps[:h]
            del self._alive[:h]
            self._base += h
            self._head = 0

    # --- the cache ---

    def seen(self, key: bytes, now: float) -> bool:
        _, i = self._find(key)
        return i >= 0 and self._exps[i] >= now

    def add(self, key: bytes, now: float, expires_at: float | None = None) -> list[bytes]:
        """Insert (or refresh); returns keys evicted to respect the capacity."""
        if len(key) > KEY_WIDTH:
            raise ValueError(f"dedup keys are at most {KEY_WIDTH} bytes (sha256), got {len(key)}")
        pos, i = self._find(key)
        if i >= 0:  # refresh: the old slot dies, the key moves to the newest end
            self._unlink(pos)
            self._alive[i] = 0
            self._n -= 1
        if 2 * (self._n + 1) > len(self._table):
            self._grow()
        slot = len(self._alive)
        self._keys += key.ljust(KEY_WIDTH, b"\0")
        self._lens.append(len(key))
        self._exps.append(now + self.window if expires_at is None else expires_at)
        self._alive.append(1)
        pos, _ = self._find(key)  # the free position (the key is not in the index now)
        self._table[pos] = self._base + slot + 1
        self._n += 1
        evicted = []
        while self._n > self.capacity:
            self._trim()
            h = self._head
            evicted.append(self._key_at(h))
            self._drop_slot(h)
        self._trim()
        return evicted

    def expire(self, now: float) -> int:
        n = 0
        while self._n:
            self._trim()
            h = self._head
            if self._exps[h] >= now:
                break
            self._drop_slot(h)
            n += 1
        self._trim()
        return n


class DedupStore:
    """:class:`DedupCache` + a SQLite table in the data dir (``path=None``: memory only).

    The connection is used from the event-loop thread itself: a commit in WAL mode with
    ``synchronous=NORMAL`` is a ``write()`` into the OS page cache (no fsync), 40-50 µs here, and
    durable against kill -9 once it returns (common/sqlite.py).  Handing each commit to a worker
    thread cost more than the commit (thread hand-off and wake-ups: about 17 % of the bridge's
    samples under load, docs/performance.md); only the start-up load runs in a thread, and pruning
    deletes in small chunks so the loop is never held long.
    """

    PRUNE_CHUNK = 5000  # rows per DELETE: a few ms each

    def __init__(self, path: Path | None, *, window: float, capacity: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = DedupCache(window, capacity)
        self.clock = clock
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def __len__(self) -> int:
        return len(self.cache)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS dedup (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)")
        conn.execute("CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at)")

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and self._path is not None:  # used before open(): no history to load
            self._conn = connect_wal(str(self._path))
            self._create(self._conn)
        return self._conn

    async def open(self) -> int:
        """Create the table and load the live entries; returns how many were loaded."""
        if self._path is None:
            return 0
        now = self.clock()
        cache = self.cache

        def load() -> int:
            conn = connect_wal(str(self._path))
            self._create(conn)
            conn.execute("DELETE FROM dedup WHERE expires_at < ?", (now,))
            # The newest ``capacity`` entries, oldest first, streamed into the cache (a fetchall of
            # 1 M rows would hold 1 M tuples at once).  Nothing else touches the cache or the
            # connection until open() returns, so this thread may fill them.
            (count,) = conn.execute("SELECT COUNT(*) FROM dedup").fetchone()
            cur = conn.execute("SELECT key, expires_at FROM dedup ORDER BY expires_at ASC LIMIT -1 OFFSET ?",
                               (max(0, count - cache.capacity),))
            n = 0
            while rows := cur.fetchmany(10_000):
                for key, exp in rows:
                    cache.add(key, now, exp)
                n += len(rows)
            self._conn = conn
            return n

        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return await trio.to_thread.run_sync(load)

    def seen(self, key: bytes) -> bool:
        return self.cache.seen(key, self.clock())

    async def add(self, key: bytes) -> None:
        """Remember ``key``; returns once it is committed (write-ahead of the publish)."""
        now = self.clock()
        self.cache.add(key, now)
        conn = self._connection()
        if conn is not None:  # autocommit: committed when execute returns
            conn.execute("INSERT OR REPLACE INTO dedup (key, expires_at) VALUES (?, ?)",
                         (key, now + self.cache.window))

    async def check_and_add(self, key: bytes) -> bool:
        """True if ``key`` is new (and now remembered), False if it is a duplicate."""
        if self.seen(key):
            return False
        await self.add(key)
        return True

    async def prune(self) -> int:
        now = self.clock()
        n = self.cache.expire(now)
        conn = self._connection()
        while conn is not None:
            cur = conn.execute("DELETE FROM dedup WHERE rowid IN "
                               "(SELECT rowid FROM dedup WHERE expires_at < ? LIMIT ?)", (now, self.PRUNE_CHUNK))
            if cur.rowcount < self.PRUNE_CHUNK:
                break
            await trio.lowlevel.checkpoint()  # let the pipeline run between chunks
        return n

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
