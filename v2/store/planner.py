"""The pure half of answering a query: validate a decoded request into a plan, and cut a page.

No SQL here (archive.py turns a :class:`QueryPlan` into statements).  The decisions follow nwaku's
waku_archive ``findMessages`` (waku-v2.md §7): page size default 20, clamped to 100; a cursor must
be 32 bytes and not all zero; at most 10 content topics (checked on every query: nwaku only checks
inside its cursor branch, a bug we do not copy); invalid queries are archive errors, status 300
"archive error: …".  A request that contradicts the spec's query kinds (a hash lookup mixed with
content criteria, a hash that is not 32 bytes) is refused as 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from v2.store.common import DEFAULT_PAGE_SIZE, HASH_SIZE, MAX_CONTENT_TOPICS, MAX_PAGE_SIZE, StatusCode
from v2.store.rpc_codec import StoreQuery

__all__ = ["Page", "QueryPlan", "Rejection", "Row", "cut_page", "plan_query"]

_ZERO_HASH = bytes(HASH_SIZE)


@dataclass(frozen=True, slots=True)
class QueryPlan:
    include_data: bool
    pubsub_topic: str | None
    content_topics: tuple[str, ...]  # deduplicated, in request order
    time_start: int | None  # ns, inclusive
    time_end: int | None  # ns, exclusive
    hashes: tuple[bytes, ...]  # non-empty = hash lookup
    cursor: bytes | None
    forward: bool
    page_size: int  # after default and clamping; the archive fetches page_size + 1 rows

    @property
    def empty_range(self) -> bool:
        """True when no message can match (so the archive need not be asked)."""
        return self.time_start is not None and self.time_end is not None and self.time_start >= self.time_end


@dataclass(frozen=True, slots=True)
class Rejection:
    status: StatusCode
    desc: str


def _archive_error(why: str) -> Rejection:
    return Rejection(StatusCode.BAD_RESPONSE, f"archive error: invalid query: {why}")


def plan_query(q: StoreQuery) -> QueryPlan | Rejection:
    hashes = tuple(dict.fromkeys(q.message_hashes))
    if hashes:
        if q.pubsub_topic is not None or q.content_topics or q.time_start is not None or q.time_end is not None:
            return Rejection(StatusCode.BAD_REQUEST, "a message hash lookup cannot be combined with "
                                                     "pubsub topic, content topics or a time range")
        bad = next((h for h in hashes if len(h) != HASH_SIZE), None)
        if bad is not None:
            return Rejection(StatusCode.BAD_REQUEST, f"message hash of {len(bad)} bytes (expected {HASH_SIZE})")
    if q.pagination_cursor is not None:
        if len(q.pagination_cursor) != HASH_SIZE:
            return _archive_error(f"invalid cursor hash length: {len(q.pagination_cursor)}")
        if q.pagination_cursor == _ZERO_HASH:
            return _archive_error("all zeroes cursor hash")
    topics = tuple(dict.fromkeys(q.content_topics))
    if len(topics) > MAX_CONTENT_TOPICS:
        return _archive_error(f"too many content topics: {len(topics)} (max {MAX_CONTENT_TOPICS})")
    if any(t == "" for t in topics):
        return _archive_error("empty content topic")
    limit = q.pagination_limit
    page_size = DEFAULT_PAGE_SIZE if not limit else min(limit, MAX_PAGE_SIZE)
    return QueryPlan(include_data=q.include_data, pubsub_topic=q.pubsub_topic, content_topics=topics,
                     time_start=q.time_start, time_end=q.time_end, hashes=hashes, cursor=q.pagination_cursor,
                     forward=q.pagination_forward, page_size=page_size)


class Row(Protocol):
    @property
    def message_hash(self) -> bytes: ...


R = TypeVar("R", bound=Row)


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    rows: tuple[R, ...]  # always ascending (timestamp, hash), whatever the direction
    cursor: bytes | None  # set iff more rows exist beyond this page


def cut_page(plan: QueryPlan, fetched: Sequence[R]) -> Page[R]:
    """Turn the ``page_size + 1`` rows fetched in query order into a response page.

    The extra row only says that more exist; the cursor is then the last row *included* in query
    order (the newest for forward, the oldest for backward), and responses are always ascending.
    """
    rows = list(fetched[:plan.page_size])
    cursor = rows[-1].message_hash if len(fetched) > plan.page_size else None
    if not plan.forward:
        rows.reverse()
    return Page(tuple(rows), cursor)
