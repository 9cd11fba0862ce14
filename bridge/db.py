"""SQLite on trio: one connection, used by one worker thread at a time (WAL, NORMAL sync).

``synchronous=NORMAL`` in WAL mode survives a process kill (the bytes are in the OS page cache
once a commit returns), which is the crash the dedup ledger must survive; only an OS crash can
lose the last commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

__all__ = ["SqliteWorker"]

T = TypeVar("T")


class SqliteWorker:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the worker; calls are serialised in submission order."""

        def call() -> T:
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """For start-up and tests, outside the event loop."""
        if self._conn is None:
            self._conn = self._open()
        return fn(self._conn)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            def close() -> None:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

            await trio.to_thread.run_sync(close, limiter=self._limiter)
