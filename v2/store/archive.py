"""The message archive the store services use, on SQLite or PostgreSQL (waku-v2.md §7).

``Archive(url)`` picks the backend by the scheme of nwaku's ``--store-message-db-url``:
``sqlite://…`` (v2.store.sqlite_archive, the default) or ``postgres://…``
(v2.store.postgres_archive, for a fleet whose nodes share one database).  Both keep the same
rows, pages and retention semantics; the services never see which one runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from v2.core.message import WakuMessage
from v2.store.backend import ArchiveBackend, ArchivedMessage, Item, select_sql
from v2.store.common import DbUrl, RetentionPolicy, parse_db_url, parse_retention_policy
from v2.store.planner import Page, QueryPlan
from v2.store.sqlite_archive import SqliteArchive

__all__ = ["Archive", "ArchiveBackend", "ArchivedMessage", "select_sql"]


class Archive:
    """``Archive("sqlite://store.sqlite3", retention="time:172800")``; ``await open()`` before use.

    ``connect_timeout`` bounds how long :meth:`open` keeps trying to reach a PostgreSQL server,
    ``retry_deadline`` how long a call waits for a lost connection to come back (both seconds).
    """

    def __init__(self, db_url: str = "sqlite://store.sqlite3", *,
                 retention: str | Sequence[RetentionPolicy] = "none",
                 clock: Callable[[], float] = time.time,
                 connect_timeout: float = 10.0, retry_deadline: float = 10.0) -> None:
        self.url: DbUrl = parse_db_url(db_url)
        policies = parse_retention_policy(retention) if isinstance(retention, str) else tuple(retention)
        self.backend: ArchiveBackend
        if self.url.is_postgres:
            from v2.store.postgres_archive import PostgresArchive  # psycopg only where it is used

            self.backend = PostgresArchive(self.url, retention=policies, clock=clock,
                                           connect_timeout=connect_timeout, retry_deadline=retry_deadline)
        else:
            self.backend = SqliteArchive(self.url, retention=policies, clock=clock)

    @property
    def retention(self) -> tuple[RetentionPolicy, ...]:
        return self.backend.retention

    @property
    def is_open(self) -> bool:
        return self.backend.is_open

    @property
    def message_count(self) -> int:
        """Rows stored, as of this object's last operation (no database access).  With several
        nodes on one PostgreSQL database the others' inserts show after the next :meth:`count`."""
        return self.backend.message_count

    @property
    def retention_deleted(self) -> int:
        """Messages this object's retention policies removed, the trims that capacity and size
        retention do right after an insert included (monotonic; for the metric)."""
        return self.backend.retention_deleted

    @property
    def connection_failures(self) -> int:
        """Failed attempts to (re)connect to the database server (monotonic; for the metric)."""
        return self.backend.connection_failures

    async def open(self) -> None:
        await self.backend.open()

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> Archive:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def insert(self, pubsub_topic: str, msg_hash: bytes, msg: WakuMessage, data: bytes) -> bool:
        """Archive one message (no eligibility check here); False if its hash was already stored."""
        return await self.backend.insert_many([(pubsub_topic, msg_hash, msg, data)]) == 1

    async def insert_many(self, items: Sequence[Item]) -> int:
        """Archive several messages in one transaction; returns how many were new."""
        return await self.backend.insert_many(items)

    async def find(self, plan: QueryPlan, cursor_ts: int | None = None) -> Page[ArchivedMessage]:
        """One page for a validated plan (see v2.store.planner); an unknown cursor gives an empty page.

        nwaku compares against the cursor row's (timestamp, hash); a cursor that is not (or no
        longer) in the archive matches nothing, so the client sees the end of the results.  With
        ``cursor_ts`` the cursor is a position (timestamp, ``plan.cursor``) that need not be a row
        (the legacy store's positional cursors, v2.store.legacy_planner).
        """
        return await self.backend.find(plan, cursor_ts)

    async def rows_at(self, timestamp: int, limit: int = 1000) -> list[tuple[bytes, str, bytes]]:
        """(hash, pubsub topic, data) of the rows stored with ``timestamp`` (at most ``limit``)."""
        return await self.backend.rows_at(timestamp, limit)

    async def count(self) -> int:
        return await self.backend.count()

    async def database_size(self) -> int:
        """The archive's size as size retention measures it (bytes)."""
        return await self.backend.database_size()

    async def apply_retention(self, now: float | None = None) -> int:
        """Run every retention policy once; returns the number of messages deleted.

        ``time:S`` removes messages with timestamp < now − S; ``capacity:N`` keeps the newest N;
        ``size:B`` removes the oldest while the archive is over B bytes (down to 80 % of it).
        Deletes go in chunks, each its own transaction, so queries are served in between.
        """
        return await self.backend.apply_retention(now)
