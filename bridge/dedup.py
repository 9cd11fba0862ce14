"""The bridge's dedup ledger: one key for both directions, windowed, bounded, persisted.

Key = sha256(v1 topic ‖ v1 data) (bridge.translate.dedup_key).  An entry lives for ``window``
seconds (>= max TTL + skew, enforced by the config), memory holds at most ``capacity`` entries
(the oldest go first), and every new key is committed to SQLite *before* the message is
published, so a restart — even after kill -9 — does not bridge again what v1 peers re-send from
their pools.  The pure part (:class:`DedupCache`) takes ``now`` as an argument.

A commit that fails (a full disk: SQLITE_FULL; a failing device) neither drops the message nor
stops the bridge: the key is in memory already, so this process still never bridges it twice; it
waits in a bounded list of *unsaved* keys that is written, in one transaction, once the disk
takes writes again (retried with the backoff of :class:`bridge.disk.DiskWatch`).  Until then a
restart would forget those keys, and messages still in v1 pools could be bridged once more: the
same bytes again, absorbed by gossipsub's seen cache and the store's hash (docs/operations.md,
"Disk errors").
"""

from __future__ import annotations

import logging
import sqlite3
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import trio
import trio.lowlevel

from bridge.disk import DiskWatch, Store
from bridge.errors import DataFileError
from common.sqlite import connect_wal, is_corruption

__all__ = ["KEY_WIDTH", "DedupCache", "DedupStore"]

log = logging.getLogger(__name__)

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
                 clock: Callable[[], float] = time.time, disk: DiskWatch | None = None,
                 max_unsaved: int | None = None) -> None:
        self.cache = DedupCache(window, capacity)
        self.clock = clock
        self.disk = disk if disk is not None else DiskWatch()
        self.max_unsaved = capacity if max_unsaved is None else max_unsaved
        self.unsaved_dropped = 0  # unsaved keys given up on (the list was full): memory only
        self._unsaved: dict[bytes, float] = {}  # key -> expires_at, oldest first
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def unsaved(self) -> int:
        """Keys in memory whose commit failed and has not been retried successfully yet."""
        return len(self._unsaved)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS dedup (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)")
        conn.execute("CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at)")

    def _corrupt(self, exc: sqlite3.Error) -> DataFileError:
        return DataFileError(Path(str(self._path)), "the dedup ledger", str(exc))

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and self._path is not None:  # before open(), or open() could not write
            conn = connect_wal(str(self._path))
            try:
                self._create(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _failed(self, exc: BaseException, now: float) -> None:
        if is_corruption(exc):  # damaged under us: a restart's check names the file (exit 78)
            log.error("dedup ledger %s is damaged: %s", self._path, exc)
        if self.disk.failed(Store.DEDUP, str(exc), now):
            log.error("dedup ledger: commit to %s failed (%s); bridging goes on with the keys in memory, "
                      "retried with backoff (docs/operations.md#disk-errors)", self._path, exc)

    async def open(self) -> int:
        """Create the table and load the live entries; returns how many were loaded.

        A damaged file raises :class:`bridge.errors.DataFileError`; a disk that refuses writes
        (full) does not stop the start: the entries are loaded if they can be read, and the
        ledger is written once the disk takes writes again."""
        if self._path is None:
            return 0
        now = self.clock()
        cache = self.cache

        def fill(conn: sqlite3.Connection) -> int:
            # The newest ``capacity`` entries, oldest first, streamed into the cache (a fetchall of
            # 1 M rows would hold 1 M tuples at once).  Nothing else touches the cache or the
            # connection until open() returns, so this thread may fill them.
            (count,) = conn.execute("SELECT COUNT(*) FROM dedup WHERE expires_at >= ?", (now,)).fetchone()
            cur = conn.execute("SELECT key, expires_at FROM dedup WHERE expires_at >= ? ORDER BY expires_at ASC "
                               "LIMIT -1 OFFSET ?", (now, max(0, count - cache.capacity)))
            n = 0
            while rows := cur.fetchmany(10_000):
                for key, exp in rows:
                    cache.add(key, now, exp)
                n += len(rows)
            return n

        def load() -> int:
            conn = connect_wal(str(self._path))
            try:
                try:
                    self._create(conn)
                    conn.execute("DELETE FROM dedup WHERE expires_at < ?", (now,))
                except sqlite3.OperationalError as exc:
                    if is_corruption(exc) or not conn.execute(
                            "SELECT 1 FROM sqlite_schema WHERE name = 'dedup'").fetchall():
                        raise
                    self._failed(exc, now)  # cannot write: read what is there
                n = fill(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return n

        def load_immutable() -> int:
            # A full disk cannot even create the -shm of a WAL database (SQLITE_IOERR), but the
            # main file alone, read as immutable, holds every key of a clean shutdown (its last
            # connection checkpointed the WAL); after a kill -9 the keys still in the WAL are missed.
            conn = sqlite3.connect(f"file:{self._path}?immutable=1", uri=True)
            try:
                return fill(conn)
            finally:
                conn.close()

        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            return await trio.to_thread.run_sync(load)
        except sqlite3.Error as exc:
            if is_corruption(exc):
                raise self._corrupt(exc) from None
            self._failed(exc, now)  # memory only until the file can be written
        try:
            n = await trio.to_thread.run_sync(load_immutable)
        except sqlite3.Error as exc:  # no file or no table yet (a new instance on a full disk)
            if is_corruption(exc):
                raise self._corrupt(exc) from None
            return 0
        log.warning("dedup ledger: %d keys read from %s without its WAL (the disk refuses writes)", n, self._path)
        return n

    def seen(self, key: bytes) -> bool:
        return self.cache.seen(key, self.clock())

    async def add(self, key: bytes) -> None:
        """Remember ``key``; returns once it is committed (write-ahead of the publish), or, if the
        disk refuses the write, once it is in memory and queued for the retry."""
        now = self.clock()
        self.cache.add(key, now)
        if self._path is None:
            return
        expires_at = now + self.cache.window
        if not self._unsaved and self.disk.may_write(Store.DEDUP, now):
            try:
                conn = self._connection()
                assert conn is not None
                # autocommit: committed when execute returns
                conn.execute("INSERT OR REPLACE INTO dedup (key, expires_at) VALUES (?, ?)", (key, expires_at))
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc, now)
            else:
                if self.disk.failing:
                    self._recovered()
                return
        self._unsaved.pop(key, None)
        self._unsaved[key] = expires_at
        while len(self._unsaved) > self.max_unsaved:
            del self._unsaved[next(iter(self._unsaved))]
            self.unsaved_dropped += 1
        self.save_unsaved()

    def save_unsaved(self, *, force: bool = False) -> bool:
        """Write the unsaved keys in one transaction if the backoff allows (``force``: now); True
        once none is left."""
        if not self._unsaved:
            return True
        now = self.clock()
        if not force and not self.disk.may_write(Store.DEDUP, now):
            return False
        rows = [(k, e) for k, e in self._unsaved.items() if e >= now]  # expired ones need no saving
        try:
            conn = self._connection()
            assert conn is not None
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT OR REPLACE INTO dedup (key, expires_at) VALUES (?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, now)
            return False
        self._unsaved.clear()
        self._recovered()
        return True

    def _recovered(self) -> None:
        f = self.disk.succeeded(Store.DEDUP)
        if f is not None:
            log.warning("dedup ledger: %s takes writes again after %.0f s and %d failed writes; the keys kept "
                        "in memory are saved", self._path, self.clock() - f.since, f.count)

    async def check_and_add(self, key: bytes) -> bool:
        """True if ``key`` is new (and now remembered), False if it is a duplicate."""
        if self.seen(key):
            return False
        await self.add(key)
        return True

    async def prune(self) -> int:
        now = self.clock()
        n = self.cache.expire(now)
        for k in [k for k, e in self._unsaved.items() if e < now]:
            del self._unsaved[k]
        if self._path is None or not self.disk.may_write(Store.DEDUP, now):
            return n
        try:
            conn = self._connection()
            while conn is not None:
                cur = conn.execute("DELETE FROM dedup WHERE rowid IN "
                                   "(SELECT rowid FROM dedup WHERE expires_at < ? LIMIT ?)",
                                   (now, self.PRUNE_CHUNK))
                if cur.rowcount < self.PRUNE_CHUNK:
                    break
                await trio.lowlevel.checkpoint()  # let the pipeline run between chunks
        except (sqlite3.Error, OSError) as exc:  # a DELETE needs WAL space too
            self._failed(exc, now)
        return n

    async def aclose(self) -> None:
        if self._unsaved and not self.save_unsaved(force=True):
            log.warning("dedup ledger: %d keys could not be saved before exit (the disk refuses writes)",
                        len(self._unsaved))
        if self._conn is not None:
            self._conn.close()
            self._conn = None
