"""What every archive backend offers (SQLite, PostgreSQL), and the SQL they share (pure).

The store services talk to :class:`v2.store.archive.Archive`, which picks a backend by the URL's
scheme; a backend is any object with the :class:`ArchiveBackend` methods.  Rows are keyed by the
deterministic message hash and ordered by (timestamp, hash) everywhere; both backends run
:func:`select_sql` (only the placeholder differs), so a page is the same rows on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from v2.core.message import WakuMessage
from v2.store.common import RetentionPolicy
from v2.store.planner import Page, QueryPlan

__all__ = ["ArchiveBackend", "ArchivedMessage", "Item", "select_sql"]

Item = tuple[str, bytes, WakuMessage, bytes]  # (pubsub topic, message hash, message, original bytes)


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    message_hash: bytes
    pubsub_topic: str
    timestamp: int
    data: bytes | None  # None when the query did not ask for data


class ArchiveBackend(Protocol):
    """The async interface of one archive database (every method may raise ``ArchiveError``)."""

    retention: tuple[RetentionPolicy, ...]

    @property
    def is_open(self) -> bool: ...

    @property
    def message_count(self) -> int:
        """Rows stored as of this object's last operation (no database access)."""
        ...

    @property
    def retention_deleted(self) -> int:
        """Messages this object's retention removed (monotonic)."""
        ...

    @property
    def connection_failures(self) -> int:
        """Failed attempts to reach the database (monotonic; 0 for a file)."""
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def insert_many(self, items: Sequence[Item]) -> int: ...

    async def find(self, plan: QueryPlan, cursor_ts: int | None = None) -> Page[ArchivedMessage]: ...

    async def rows_at(self, timestamp: int, limit: int = 1000) -> list[tuple[bytes, str, bytes]]: ...

    async def count(self) -> int: ...

    async def database_size(self) -> int: ...

    async def apply_retention(self, now: float | None = None) -> int: ...


def select_sql(plan: QueryPlan, cursor_ts: int | None, ph: str = "?") -> tuple[str, list[Any]]:
    """The one SELECT for ``plan`` (fetching ``page_size + 1`` rows in query order).

    ``cursor_ts`` is the timestamp of the cursor's row (looked up by hash beforehand); ``ph`` is
    the driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg).  Pure.
    """
    order = "ASC" if plan.forward else "DESC"
    cols = f"hash, pubsub_topic, timestamp, {'data' if plan.include_data else 'NULL'} AS data"
    where: list[str] = []
    params: list[Any] = []
    if plan.cursor is not None:
        assert cursor_ts is not None
        where.append(f"(timestamp, hash) {'>' if plan.forward else '<'} ({ph}, {ph})")
        params += [cursor_ts, plan.cursor]
    if plan.hashes:
        where.append(f"hash IN ({', '.join([ph] * len(plan.hashes))})")
        params += plan.hashes
    if plan.pubsub_topic is not None:
        where.append(f"pubsub_topic = {ph}")
        params.append(plan.pubsub_topic)
    if plan.time_start is not None:
        where.append(f"timestamp >= {ph}")
        params.append(plan.time_start)
    if plan.time_end is not None:
        where.append(f"timestamp < {ph}")
        params.append(plan.time_end)
    limit = plan.page_size + 1
    tail = f"ORDER BY timestamp {order}, hash {order} LIMIT {limit}"
    if len(plan.content_topics) <= 1:
        if plan.content_topics:
            where.insert(0, f"content_topic = {ph}")
            params.insert(0, plan.content_topics[0])
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {cols} FROM messages{cond} {tail}", params
    arms, all_params = [], []
    for i, topic in enumerate(plan.content_topics):
        cond = " AND ".join([f"content_topic = {ph}", *where])
        # PostgreSQL (before 16) wants every subquery in FROM named; SQLite accepts the alias.
        arms.append(f"SELECT * FROM (SELECT {cols} FROM messages WHERE {cond} {tail}) AS t{i}")
        all_params += [topic, *params]
    return " UNION ALL ".join(arms) + f" {tail}", all_params
