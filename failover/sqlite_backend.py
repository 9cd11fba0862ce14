"""SQLite lease elector for instances on one host (specs/failover.md §6).

One row per election in a WAL database; acquire/renew is one ``BEGIN IMMEDIATE`` transaction;
the epoch is the fencing token; expiry uses CLOCK_MONOTONIC (shared by all processes on one
kernel, immune to NTP steps) and ``boot_id`` invalidates leases across reboots.  Fast path: the
leader holds an ``flock`` on ``<db>.lock``; the kernel releases it when the leader dies, so a
standby that gets the lock takes over at once instead of waiting for expiry.  A hung-but-alive
leader keeps the lock, so takeover then falls back to expiry — and that leader steps down on its
own deadline before the lease could be taken.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import trio

from failover.errors import FailoverError
from failover.lease import LeaseRow, LeaseTiming, decide

__all__ = ["SqliteElector", "boot_id"]

log = logging.getLogger(__name__)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


class SqliteElector:
    def __init__(self, path: Path | str, identity: str, *, name: str = "bridge", timing: LeaseTiming | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = str(path)
        self.identity = identity
        self.name = name
        self.timing = timing or LeaseTiming()
        self.timing.check()
        self.clock = clock
        self.boot = boot_id()
        self.fencing_token: int | None = None
        self.leader: str | None = None
        self._deadline = 0.0
        self._lock_fd: int | None = None
        self._limiter = trio.CapacityLimiter(1)
        self.changed = trio.Event()  # set (and replaced) on every change of our role

    # --- the gate the pipeline checks before each publish ---

    def is_leader(self) -> bool:
        return self.fencing_token is not None and self.clock() < self._deadline - self.timing.safety

    def is_active(self) -> bool:
        return self.is_leader()

    # --- storage ---

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timing.rpc_timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT, epoch INTEGER NOT NULL,"
                     " expires_at REAL NOT NULL, boot_id TEXT NOT NULL)")
        return conn

    def _try_flock(self) -> bool:
        """Take the leader lock if free (non-blocking).  Free = no live leader holds it."""
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
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _attempt(self) -> tuple[str, int | None, str | None, float]:
        """One acquire/renew transaction: (outcome, epoch, holder, send time)."""
        sent = self.clock()
        got_lock = self._try_flock()
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            r = conn.execute("SELECT holder, epoch, expires_at, boot_id FROM leases WHERE name = ?",
                             (self.name,)).fetchone()
            row = LeaseRow(*r) if r else None
            force = got_lock and row is not None and row.holder != self.identity
            outcome, new = decide(row, self.identity, self.fencing_token, sent, self.boot, force=force)
            if outcome in ("renew", "take"):
                assert new is not None
                conn.execute("INSERT OR REPLACE INTO leases (name, holder, epoch, expires_at, boot_id) "
                             "VALUES (?, ?, ?, ?, ?)", (self.name, self.identity, new.epoch, sent + self.timing.ttl,
                                                        self.boot))
                conn.execute("COMMIT")
                return outcome, new.epoch, self.identity, sent
            conn.execute("ROLLBACK")
            if got_lock:
                self._release_flock()
            return "wait", None, row.holder if row else None, sent
        except sqlite3.Error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        finally:
            conn.close()

    def _clear(self, epoch: int) -> None:
        conn = self._connect()
        try:
            conn.execute("UPDATE leases SET holder = NULL, expires_at = 0 WHERE name = ? AND holder = ? AND epoch = ?",
                         (self.name, self.identity, epoch))
        finally:
            conn.close()
        self._release_flock()

    def fenced(self, token: int, fn: Callable[[sqlite3.Connection], object]) -> bool:
        """Run ``fn`` in the lease DB only if ``token`` is still the current epoch (real fencing:
        check and write in one transaction).  Returns False if fenced off."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            r = conn.execute("SELECT epoch FROM leases WHERE name = ?", (self.name,)).fetchone()
            if r is None or r[0] != token:
                conn.execute("ROLLBACK")
                return False
            fn(conn)
            conn.execute("COMMIT")
            return True
        finally:
            conn.close()

    # --- the loop ---

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Campaign and renew forever; shielded resign on exit (graceful hand-over)."""
        task_status.started()
        try:
            while True:
                was_leader = self.fencing_token is not None
                try:
                    outcome, epoch, holder, sent = await trio.to_thread.run_sync(self._attempt, limiter=self._limiter)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("failover backend error: %s", exc)
                    outcome, epoch, holder, sent = "error", None, self.leader, 0.0
                self.leader = holder
                if outcome in ("renew", "take"):
                    self._deadline = sent + self.timing.ttl
                    if outcome == "take" or not was_leader:
                        self.fencing_token = epoch
                        log.info("%s is now the active bridge (fencing token %s)", self.identity, epoch)
                        self._notify()
                elif was_leader and not self.is_leader():
                    log.warning("%s lost leadership (%s)", self.identity, outcome)
                    self.fencing_token = None
                    self._release_flock()
                    self._notify()
                elif was_leader and outcome == "wait":  # someone else holds it now
                    self.fencing_token = None
                    self._release_flock()
                    self._notify()
                # Standbys poll twice as often: with the flock fast path that is the takeover latency.
                leading = self.fencing_token is not None
                await trio.sleep(self.timing.renew_interval if leading else self.timing.renew_interval / 2)
        finally:
            with trio.CancelScope(shield=True):
                await self.resign()

    async def resign(self) -> None:
        epoch, self.fencing_token = self.fencing_token, None
        if epoch is not None:
            self._notify()
            try:
                await trio.to_thread.run_sync(self._clear, epoch, limiter=self._limiter)
                log.info("%s resigned (token %s)", self.identity, epoch)
            except (sqlite3.Error, OSError) as exc:
                log.warning("resign failed: %s", exc)
        self._release_flock()


def parse_failover_url(spec: str | None, *, identity: str, data_dir: Path, ttl: float) -> SqliteElector | None:
    """``sqlite:PATH``, ``none``, or None: ``<data dir>/failover.sqlite3``, shared by every instance
    that uses the same data dir (each instance keeps its own state in ``<data dir>/<peer id>/``)."""
    if spec == "none":
        return None
    timing = LeaseTiming.for_ttl(ttl)
    if spec is None or spec == "sqlite:":
        return SqliteElector(Path(data_dir) / "failover.sqlite3", identity, timing=timing)
    if spec.startswith("sqlite:"):
        return SqliteElector(Path(spec.removeprefix("sqlite:")), identity, timing=timing)
    if spec.startswith("etcd://"):
        raise FailoverError("the etcd backend is not built yet (issue: failover); use sqlite:PATH")
    raise FailoverError(f"unknown failover backend {spec!r}")
