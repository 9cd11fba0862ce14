"""The pure half of serving the legacy store: a decoded legacy query becomes the archive's
:class:`~v2.store.planner.QueryPlan`, and archived rows become legacy cursors.

nwaku's legacy paging (waku_store_legacy/common.nim, waku_archive_legacy ``findMessages``): page
size 0 means the default of 20, larger than 100 is clamped to 100; the time range is inclusive at
both ends (nwaku waku_archive_legacy/driver/sqlite_driver/queries.nim ``storedAt <= (?)``, go-waku
persistence/store.go likewise; store v3's end is exclusive); no direction on the wire means
BACKWARD (waku_store_legacy/rpc_codec.nim: ``default(PagingDirection)``, and go-waku's proto3
omits a 0); the cursor is set iff more rows exist; a page is ascending whatever the direction.

The cursor: a legacy :class:`Index` is (digest, receiver_time, sender_time, pubsub_topic) with
``digest = sha256(content_topic || payload)`` (go-waku protocol/envelope.go, nwaku
waku_store_legacy/common.nim ``computeDigest``).  Our archive orders by (timestamp, message hash),
so a cursor we issue has ``sender_time = receiver_time = timestamp`` (what js-waku's
``createCursor`` builds from a message, too) and the server resolves it back to a row: the rows at
that timestamp on that pubsub topic whose digest matches.  A cursor whose row is gone (retention)
still pages from its position, as nwaku's positional cursors do: strictly after (forward) or before
(backward) every row with that timestamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from v2.core.message import MessageDecodeError, WakuMessage
from v2.store.common import DEFAULT_PAGE_SIZE, HASH_SIZE, MAX_PAGE_SIZE
from v2.store.legacy_codec import HistoryQuery, Index
from v2.store.planner import QueryPlan

__all__ = [
    "CursorPosition",
    "LegacyRow",
    "cursor_position",
    "digest",
    "index_for",
    "legacy_plan",
]

_I64_MAX = 2**63 - 1
# Hash bounds that put a position before / after every real hash at the same timestamp.
_BEFORE_ALL = bytes(HASH_SIZE)
_AFTER_ALL = b"\xff" * HASH_SIZE


def digest(msg: WakuMessage) -> bytes:
    return hashlib.sha256(msg.content_topic.encode() + msg.payload).digest()


def index_for(pubsub_topic: str, msg: WakuMessage) -> Index:
    ts = msg.timestamp or 0
    return Index(digest(msg), ts, ts, pubsub_topic)


@dataclass(frozen=True, slots=True)
class CursorPosition:
    """Where a legacy cursor points in the archive's (timestamp, hash) order."""

    timestamp: int
    message_hash: bytes


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """One archived row at the cursor's timestamp, as the archive returns it."""

    message_hash: bytes
    pubsub_topic: str
    data: bytes


def cursor_position(cursor: Index, forward: bool, candidates: Iterable[LegacyRow]) -> CursorPosition:
    """The position of ``cursor``: its row among ``candidates`` (the rows stored at
    ``cursor.sender_time``), else just past every row at that time in the paging direction."""
    for row in candidates:
        if cursor.pubsub_topic and row.pubsub_topic != cursor.pubsub_topic:
            continue
        try:
            msg = WakuMessage.decode(row.data)
        except MessageDecodeError:  # never stored that way; skip rather than fail the query
            continue
        if digest(msg) == cursor.digest:
            return CursorPosition(cursor.sender_time, row.message_hash)
    return CursorPosition(cursor.sender_time, _AFTER_ALL if forward else _BEFORE_ALL)


def legacy_plan(q: HistoryQuery, cursor: CursorPosition | None) -> QueryPlan:
    """The archive plan for a decoded (already validated) legacy query."""
    page_size = DEFAULT_PAGE_SIZE if q.page_size == 0 else min(q.page_size, MAX_PAGE_SIZE)
    # Inclusive end → the plan's exclusive end; at int64's maximum there is no upper bound at all.
    end = None if q.end_time is None or q.end_time >= _I64_MAX else q.end_time + 1
    topics = tuple(dict.fromkeys(q.content_topics))
    return QueryPlan(include_data=True, pubsub_topic=q.pubsub_topic, content_topics=topics,
                     time_start=q.start_time, time_end=end, hashes=(),
                     cursor=cursor.message_hash if cursor is not None else None, forward=q.forward,
                     page_size=page_size)
