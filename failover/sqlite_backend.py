"""SQLite lease elector for instances on one host (specs/failover.md §6).

One row per election in a WAL database; acquire/renew is one ``BEGIN IMMEDIATE`` transaction;
the epoch is the fencing token; expiry uses CLOCK_MONOTONIC (shared by all processes on one
kernel, immune to NTP steps) and ``boot_id`` invalidates leases across reboots.

Fast path: the leader holds an ``flock`` on ``<db>.lock`` and records that in the row
(``locked``).  The kernel releases the flock when the leader dies, so a standby that gets it while
the row says "the holder has the flock" takes over at once instead of waiting for expiry.  A
holder that took over by expiry (because a stopped zombie still held the flock) records
``locked = 0``, and then the flock proves nothing until that holder gets it itself.

After a long pause (SIGSTOP, VM freeze) the first thing the loop and the watchdog do is compare
the local deadline with the clock: a lapsed term steps down (and drops the flock) before any
renew is attempted, and a renew also needs an unexpired row, so a lapsed term is never
resurrected: the next term gets a new epoch.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from common.sqlite import SqliteWorker
from failover.elector import ElectorCore, StepDown
from failover.health import Health, PeerHealth, Verdict
from failover.lease import LeaseRow, LeaseTiming, decide

if TYPE_CHECKING:
    from failover.metrics import FailoverMetrics

__all__ = ["SqliteElector", "boot_id"]

log = logging.getLogger(__name__)

FLOCK_POLL = 0.02  # standby: how often to try the dead leader's flock (the fast-path latency)
# The lease's WAL checkpoints past 4 pages (a renewal writes two or three): it reaches its full
# size (~6 pages) in the first seconds and is then reused from its start, never grown.  The cost is
# a passive checkpoint every other renewal, outside the write lock.
WAL_PAGES = 4


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: str  # renew | take | wait
    epoch: int | None
    holder: str | None
    holder_locked: bool
    sent: float
    others: tuple[PeerHealth, ...] = ()  # the other instances' health rows (failover/health.py)


class SqliteElector(ElectorCore):
    def __init__(self, path: Path | str, identity: str, *, name: str = "bridge", timing: LeaseTiming | None = None,
                 clock: Callable[[], float] = time.monotonic, metrics: FailoverMetrics | None = None,
                 flock: bool = True) -> None:
        self.timing = timing or LeaseTiming()
        self.timing.check()
        super().__init__(identity, safety=self.timing.safety, clock=clock, metrics=metrics)
        self.path = str(path)
        self.name = name
        self.flock = flock
        self.boot = boot_id()
        self._lock_fd: int | None = None
        self._fd_guard = threading.Lock()  # the fd is touched by the worker thread and the watchdog
        # A fresh connection per call: the lease file is shared by processes, and nothing stays
        # open across a SIGSTOP of this one.
        self._db = SqliteWorker(self.path, self._connect, per_call=True)
        self._holder_locked = False
        self._wake = trio.Event()
        self._hold_until = -1.0

    # --- storage (worker thread) ---

    def _connect(self, path: str) -> sqlite3.Connection:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=self.timing.rpc_timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # No fsync per lease commit (WAL + NORMAL is still atomic; only a power loss can drop the
        # last commits, and a reboot frees the lease via boot_id anyway): the write lock is held
        # for microseconds, so a process frozen mid-renewal blocks the others far less often.
        conn.execute("PRAGMA synchronous=NORMAL")
        # A small WAL, reset often: with the keeper connection (run()) holding the -wal and -shm
        # files open, renewals then rewrite pages the WAL already has, and keep working on a full
        # disk (docs/operations.md#disk-errors).
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        conn.execute("CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT, epoch INTEGER NOT NULL,"
                     " expires_at REAL NOT NULL, boot_id TEXT NOT NULL, locked INTEGER NOT NULL DEFAULT 0)")
        # Health beside the lease (failover/health.py rule 2): one row per instance, written in the
        # same transaction as its acquire/renew/poll; updated_at is CLOCK_MONOTONIC like expires_at.
        conn.execute("CREATE TABLE IF NOT EXISTS health (name TEXT NOT NULL, identity TEXT NOT NULL,"
                     " v1 INTEGER NOT NULL, v2 INTEGER NOT NULL, updated_at REAL NOT NULL, boot_id TEXT NOT NULL,"
                     " disk INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (name, identity))")
        # Columns added after the first version of this elector (a file it wrote).
        for table, column in (("leases", "locked INTEGER NOT NULL DEFAULT 0"), ("health", "disk INTEGER NOT NULL "
                                                                                          "DEFAULT 1")):
            cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column.split()[0] not in cols:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                except sqlite3.OperationalError:  # another instance added it meanwhile
                    pass
        return conn

    def _keeper(self) -> sqlite3.Connection:
        conn = self._connect(self.path)
        conn.close()  # the tables exist now; the keeper itself only reads, from any thread
        keeper = sqlite3.connect(self.path, timeout=self.timing.rpc_timeout, isolation_level=None,
                                 check_same_thread=False)
        keeper.execute("SELECT 1 FROM leases LIMIT 1").fetchall()  # opens the -shm; no lock stays held
        return keeper

    def _try_flock(self) -> bool:
        """Take the leader lock if free (non-blocking).  Free = no live process holds it."""
        if not self.flock:
            return False
        with self._fd_guard:
            if self._lock_fd is not None:
                return True
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock_fd = fd
            return True

    def _release_flock(self) -> None:
        with self._fd_guard:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def _health_rows(self, conn: sqlite3.Connection, health: Health | None, sent: float) -> tuple[PeerHealth, ...]:
        if health is None:
            return ()
        conn.execute("INSERT OR REPLACE INTO health (name, identity, v1, v2, disk, updated_at, boot_id) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (self.name, self.identity, int(health.v1), int(health.v2),
                                                      int(health.disk), sent, self.boot))
        rows = conn.execute("SELECT identity, v1, v2, disk, updated_at FROM health WHERE name = ? AND identity != ? "
                            "AND boot_id = ?", (self.name, self.identity, self.boot)).fetchall()
        return tuple(PeerHealth(r[0], Health(bool(r[1]), bool(r[2]), bool(r[3])), sent - r[4]) for r in rows)

    def _attempt(self, conn: sqlite3.Connection, token: int | None, health: Health | None = None,
                 campaign: bool = True) -> _Attempt:
        """One acquire/renew transaction for the term ``token`` (None: campaigning; with
        ``campaign`` False only a poll: publish our health, learn the holder, take nothing)."""
        sent = self.clock()
        try:
            conn.execute("BEGIN IMMEDIATE")
            others = self._health_rows(conn, health, sent)
            r = conn.execute("SELECT holder, epoch, expires_at, boot_id, locked FROM leases WHERE name = ?",
                             (self.name,)).fetchone()
            row = LeaseRow(r[0], r[1], r[2], r[3], bool(r[4])) if r else None
            if token is None and not campaign:
                conn.execute("COMMIT")
                live = row is not None and row.holder is not None and row.expires_at >= sent
                return _Attempt("wait", None, row.holder if live and row else None, bool(row and row.locked),
                                sent, others)
            # Try the flock only where it means something: as the holder (to record it) or when
            # the row says the holder has it (so getting it proves the holder is gone).
            leading = token is not None
            meaningful = (leading or row is None or row.locked or row.holder is None or row.expires_at < sent)
            have = self._try_flock() if meaningful else False
            outcome, new = decide(row, self.identity, token, sent, self.boot, have_flock=have)
            if outcome in ("renew", "take"):
                assert new is not None
                conn.execute("INSERT OR REPLACE INTO leases (name, holder, epoch, expires_at, boot_id, locked) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (self.name, self.identity, new.epoch, sent + self.timing.ttl, self.boot, int(have)))
                conn.execute("COMMIT")
                return _Attempt(outcome, new.epoch, self.identity, have, sent, others)
            conn.execute("COMMIT" if health is not None else "ROLLBACK")  # keep our health row
            self._release_flock()  # a standby never keeps it: the holder may want it
            assert row is not None
            return _Attempt("wait", None, row.holder, row.locked, sent, others)
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _clear(self, conn: sqlite3.Connection, epoch: int) -> None:
        conn.execute("UPDATE leases SET holder = NULL, expires_at = 0, locked = 0 "
                     "WHERE name = ? AND holder = ? AND epoch = ?", (self.name, self.identity, epoch))
        self._release_flock()

    def fenced(self, token: int, fn: Callable[[sqlite3.Connection], object]) -> bool:
        """Run ``fn`` in the lease DB only if ``token`` is still the current epoch (real fencing:
        check and write in one transaction).  Returns False if fenced off."""
        def txn(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            r = conn.execute("SELECT epoch FROM leases WHERE name = ?", (self.name,)).fetchone()
            if r is None or r[0] != token:
                conn.execute("ROLLBACK")
                return False
            fn(conn)
            conn.execute("COMMIT")
            return True

        return self._db.run_sync(txn)

    # --- the loop ---

    def _on_lapse(self) -> None:
        # The term is over locally; the flock must go too, or a standby could not use the fast path.
        self._release_flock()

    async def _flock_watch(self) -> None:
        """Standby fast path: while the row says the holder has the flock, poll it (a non-blocking
        syscall); getting it means the holder died, so wake the loop for an immediate takeover."""
        while True:
            await trio.sleep(FLOCK_POLL)
            if (self.fencing_token is None and self._holder_locked and self.leader is not None
                    and self._probe_flock()):
                self._wake.set()

    def _probe_flock(self) -> bool:
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)  # the attempt takes it again inside its transaction
            return True
        finally:
            os.close(fd)

    async def _loop(self) -> None:
        ttl = self.timing.ttl
        while True:
            if self.lapsed():  # after a pause: step down before anything else, never renew first
                self._step_down(StepDown.DEADLINE, "no successful renewal in time")
                self._on_lapse()
            token = self.fencing_token
            # Resigned: let a standby have it.  With health on, keep polling meanwhile (publish our
            # health, learn the new holder); without, just wait as before.
            holding = token is None and self.clock() < self._hold_until
            if holding and self.health_source is None:
                await trio.sleep(self._hold_until - self.clock())
                continue
            v = self.health_verdict(ttl)
            if v is Verdict.RESIGN and token is not None:  # failover/health.py rule 3
                log.warning("%s resigns: unhealthy %s and a healthy standby exists", self.identity,
                            self.own_health.as_dict())
                await self.resign(StepDown.UNHEALTHY)
                continue
            t0 = self.clock()
            health = self.own_health if self.health_source is not None else None
            try:
                a = await self._db.run(functools.partial(self._attempt, token=token, health=health,
                                                         campaign=v is not Verdict.WITHHOLD and not holding))
            except (sqlite3.Error, OSError) as exc:
                log.warning("failover backend error: %s", exc)
                self._backend_error(type(exc).__name__)
            else:
                self._rpc_done("renew" if token is not None else "campaign", self.clock() - t0)
                self._holder_locked = a.holder_locked
                self.others_health = {o.identity: o for o in a.others}
                if token is not None and self.fencing_token != token:
                    pass  # the watchdog ended this term while the attempt ran: its result is void
                elif a.outcome == "renew":
                    self._renewed(a.sent, ttl)
                elif a.outcome == "take":
                    if token is not None:
                        self._step_down(StepDown.DEADLINE, "term lapsed")
                    assert a.epoch is not None
                    self._elected(a.epoch, a.sent, ttl)
                elif token is not None:
                    self._step_down(StepDown.LOST, f"lease held by {a.holder}")
                if self.fencing_token is None:
                    self.leader = a.holder if a.outcome == "wait" else None
            # Standbys poll twice as often; the flock watch wakes them at once when a holder dies.
            wake = self._wake = trio.Event()
            with trio.move_on_after(self.timing.renew_interval if self.fencing_token is not None
                                    else self.timing.renew_interval / 2):
                await wake.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Campaign and renew until cancelled; then a shielded resign (graceful hand-over).
        May be called again after it returned."""
        # The keeper: one idle connection for as long as we run.  Without it every call's own
        # connection is the last one when it closes, and SQLite then checkpoints and deletes the
        # -wal and -shm, which the next call must create again: on a full disk it cannot (SQLITE_IOERR),
        # and the active would step down for want of a few KiB.  Idle, it holds no lock but the
        # shared one that keeps those files (https://www.sqlite.org/walformat.html#the_wal_index_file_format),
        # so a SIGSTOP of this process blocks no one.
        keeper: sqlite3.Connection | None = None
        try:
            keeper = await trio.to_thread.run_sync(self._keeper)
        except (sqlite3.Error, OSError) as exc:  # the loop reports and retries the backend's errors
            log.warning("failover backend error: %s", exc)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog, self._on_lapse)
                if self.flock:
                    nursery.start_soon(self._flock_watch)
                task_status.started()
                await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                await self.resign()
                if keeper is not None:
                    keeper.close()

    async def resign(self, reason: StepDown = StepDown.RESIGN) -> None:
        epoch = self.fencing_token
        if epoch is not None:
            self._step_down(reason)
            self._hold_until = self.clock() + self.timing.ttl
            try:
                # Bounded by SQLite's busy timeout (rpc_timeout); the thread cannot be cancelled.
                await self._db.run(functools.partial(self._clear, epoch=epoch))
                log.info("%s resigned (token %s)", self.identity, epoch)
            except (sqlite3.Error, OSError) as exc:
                log.warning("resign failed: %s", exc)
                self._backend_error(type(exc).__name__)
        self._release_flock()
