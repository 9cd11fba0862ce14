"""Disk faults of the data dir, as the bridge sees them: which stores fail to write, since when, and
when to try again (pure: ``now`` passed in).

Every writer of the data dir (the dedup ledger, the hourly aggregates; the store archive through
its own error counter) reports each write's outcome here.  A store whose last write failed is
*failing*; while it is, its next attempt waits for an exponential backoff (``base_delay``,
doubling, at most ``max_delay``), so a full disk costs one failed statement per interval and not
one per message, and the first write that succeeds after space is freed clears it.  The process's
disk is *ok* while no store is failing: ``/status`` → ``disk``, ``waku_bridge_disk_ok``, and the
``disk`` side of the failover health (failover/health.py), which moves the lease to a standby
whose disk works when this one keeps failing for ``failover.unhealthy_after``.

SQLite reports a full file system as SQLITE_FULL ("database or disk is full"), also when the WAL
cannot grow (https://www.sqlite.org/rescode.html#full); a failing device as SQLITE_IOERR.  Both
are ``sqlite3.OperationalError``; they are treated alike: what matters is that the write did not
happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DiskWatch", "Failure", "Store"]


class Store(StrEnum):
    """The ``store`` label of ``waku_bridge_disk_errors_total``."""

    DEDUP = "dedup"  # <data dir>/<peer id>/bridge.sqlite3
    AGGREGATES = "aggregates"  # <data dir>/<peer id>/aggregates.sqlite3
    ARCHIVE = "archive"  # the v2 store archive (--store)


@dataclass(frozen=True, slots=True)
class Failure:
    """A store that is failing: since when, how many writes failed in a row, the last error."""

    since: float
    count: int
    error: str
    retry_at: float


class DiskWatch:
    def __init__(self, *, base_delay: float = 1.0, max_delay: float = 30.0,
                 on_error: Callable[[Store], None] | None = None) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.on_error = on_error  # every failed write (the counter)
        self.failing: dict[Store, Failure] = {}
        self.errors: dict[Store, int] = dict.fromkeys(Store, 0)

    @property
    def ok(self) -> bool:
        return not self.failing

    def may_write(self, store: Store, now: float) -> bool:
        """False while ``store`` is failing and its backoff has not passed (skip the write)."""
        f = self.failing.get(store)
        return f is None or now >= f.retry_at

    def failed(self, store: Store, error: str, now: float) -> bool:
        """One write failed; returns True if the store was fine until now (log it once)."""
        self.errors[store] += 1
        if self.on_error is not None:
            self.on_error(store)
        prev = self.failing.get(store)
        count = 1 if prev is None else prev.count + 1
        delay = min(self.max_delay, self.base_delay * 2 ** min(count - 1, 30))
        self.failing[store] = Failure(now if prev is None else prev.since, count, error, now + delay)
        return prev is None

    def succeeded(self, store: Store) -> Failure | None:
        """One write succeeded; returns the failure it ends (None if the store was fine)."""
        return self.failing.pop(store, None)

    def reason(self) -> str | None:
        """One line for ``/status``: which stores fail and why (None while the disk is ok)."""
        if not self.failing:
            return None
        return "; ".join(f"{s.value}: {f.error}" for s, f in sorted(self.failing.items()))

    def as_dict(self, now: float) -> dict[str, object]:
        return {"ok": self.ok, "reason": self.reason(),
                "failing": {s.value: {"for_s": round(now - f.since, 1), "failures": f.count,
                                      "error": f.error} for s, f in sorted(self.failing.items())},
                "errors": {s.value: n for s, n in self.errors.items()}}
