"""Legacy store (``/vac/waku/store/2.0.0-beta4``) wire codec, both sides: pure encode/decode.

go-waku v0.10.0 serves only this store (waku/v2/protocol/legacy_store/waku_store_protocol.go; its
store v3 package is a client), so reading history from a go-waku node needs it.  Layout per
go-waku ``legacy_store/pb/store.proto`` and nwaku ``waku/waku_store_legacy/rpc_codec.nim``.

Encoding writes what nwaku's decoder requires (HistoryRPC request_id, all four Index fields,
each content filter's topic).  Decoding is lenient where go-waku is: its proto3 encoder leaves
out ``error`` when it is NONE (0) and answers the last page with an empty PagingInfo, so neither
is required.  Anything else unacceptable (bad wire format, a message that is not a valid
WakuMessage, an incomplete cursor) raises :class:`LegacyStoreDecodeError`, never anything else.
Server side (:func:`decode_query`, :func:`encode_response`): a query decodes leniently in the
same way (go-waku's proto3 encoder omits a zero page size, a BACKWARD direction, zero cursor
times), but a HistoryRPC without request_id or query is refused as nwaku refuses it
(waku_store_legacy/protocol.nim: "empty query rpc").  The only importer of ``legacy_rpc_pb2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from v2.codec import optional, parse, require, set_present
from v2.core.message import MessageDecodeError, WakuMessage
from v2.store import legacy_rpc_pb2
from v2.store.common import StoreError

__all__ = [
    "MAX_CONTENT_FILTERS",
    "Direction",
    "HistoryError",
    "HistoryQuery",
    "HistoryResponse",
    "Index",
    "LegacyQueryInvalid",
    "LegacyStoreDecodeError",
    "decode_query",
    "decode_response",
    "encode_query",
    "encode_response",
]

MAX_CONTENT_FILTERS = 10  # go-waku legacy_store/pb/validation.go MaxContentFilters; more -> stream reset
_I64 = 2**63


class LegacyStoreDecodeError(StoreError):
    """Bytes that are not an acceptable legacy store response."""


class LegacyQueryInvalid(LegacyStoreDecodeError):
    """A well-formed request that asks for something not allowed; answered with an error."""

    def __init__(self, request_id: str, reason: str) -> None:
        super().__init__(reason)
        self.request_id = request_id
        self.reason = reason


class Direction(IntEnum):
    BACKWARD = 0
    FORWARD = 1


class HistoryError(IntEnum):
    NONE = 0
    INVALID_CURSOR = 1
    TOO_MANY_REQUESTS = 429  # nwaku only
    SERVICE_UNAVAILABLE = 503  # nwaku only


@dataclass(frozen=True, slots=True)
class Index:
    """The legacy cursor; the client sends back exactly what the server gave it."""

    digest: bytes
    receiver_time: int
    sender_time: int
    pubsub_topic: str


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    request_id: str
    pubsub_topic: str | None = None
    content_topics: tuple[str, ...] = ()
    page_size: int = 0  # 0: the server's default (go-waku 20; at most 100)
    forward: bool = True
    cursor: Index | None = None
    start_time: int | None = None  # ns
    end_time: int | None = None  # ns

    def __post_init__(self) -> None:
        if len(self.content_topics) > MAX_CONTENT_FILTERS:
            raise ValueError(f"at most {MAX_CONTENT_FILTERS} content topics per legacy query")
        if not 0 <= self.page_size < 2**64:
            raise ValueError("page_size out of uint64 range")
        for t in (self.start_time, self.end_time):
            if t is not None and not -_I64 <= t < _I64:
                raise ValueError("time bound out of int64 range")


@dataclass(frozen=True, slots=True)
class HistoryResponse:
    request_id: str
    messages: tuple[bytes, ...]  # each a valid WakuMessage, in its original encoding
    cursor: Index | None  # set iff more pages exist
    error: int = HistoryError.NONE

    def decoded(self) -> list[WakuMessage]:
        return [WakuMessage.decode(m) for m in self.messages]


def encode_query(q: HistoryQuery) -> bytes:
    rpc = legacy_rpc_pb2.HistoryRPC(request_id=q.request_id)
    query = rpc.query
    set_present(query, pubsub_topic=q.pubsub_topic, start_time=q.start_time, end_time=q.end_time)
    for t in q.content_topics:
        query.content_filters.add(content_topic=t)
    query.paging_info.page_size = q.page_size
    query.paging_info.direction = Direction.FORWARD if q.forward else Direction.BACKWARD
    if q.cursor is not None:
        c = q.cursor
        query.paging_info.cursor.CopyFrom(legacy_rpc_pb2.Index(digest=c.digest, receiver_time=c.receiver_time,
                                                                sender_time=c.sender_time, pubsub_topic=c.pubsub_topic))
    return rpc.SerializeToString(deterministic=True)


def decode_query(data: bytes) -> HistoryQuery:
    """A server's view of one request.  More than :data:`MAX_CONTENT_FILTERS` filters or an empty
    content topic raise :class:`LegacyQueryInvalid` (carrying the request id, so the server can
    answer it with an error); anything else unacceptable raises :class:`LegacyStoreDecodeError`."""
    rpc = parse(legacy_rpc_pb2.HistoryRPC(), data, LegacyStoreDecodeError)
    if not rpc.request_id:
        raise LegacyStoreDecodeError("HistoryRPC: request_id (1) missing")
    if not rpc.HasField("query"):
        raise LegacyStoreDecodeError("HistoryRPC: query (2) missing")
    query = rpc.query
    topics = tuple(f.content_topic for f in query.content_filters)
    if len(topics) > MAX_CONTENT_FILTERS:
        raise LegacyQueryInvalid(rpc.request_id, f"too many content filters: {len(topics)} "
                                                 f"(max {MAX_CONTENT_FILTERS})")
    if any(t == "" for t in topics):
        raise LegacyQueryInvalid(rpc.request_id, "empty content topic")
    paging = query.paging_info
    cursor = None
    if paging.HasField("cursor"):
        c = paging.cursor
        cursor = Index(c.digest, c.receiver_time, c.sender_time, c.pubsub_topic)
    return HistoryQuery(rpc.request_id, optional(query, "pubsub_topic"), topics, paging.page_size,
                        paging.direction == Direction.FORWARD, cursor, optional(query, "start_time"),
                        optional(query, "end_time"))


def encode_response(resp: HistoryResponse, *, direction: Direction = Direction.FORWARD) -> bytes:
    """nwaku's layout: the page's size and direction in PagingInfo, the cursor only if more exist."""
    rpc = legacy_rpc_pb2.HistoryRPC(request_id=resp.request_id)
    body = rpc.response
    body.messages.extend(resp.messages)
    body.error = resp.error
    body.paging_info.page_size = len(resp.messages)
    body.paging_info.direction = direction
    if resp.cursor is not None:
        c = resp.cursor
        body.paging_info.cursor.CopyFrom(legacy_rpc_pb2.Index(digest=c.digest, receiver_time=c.receiver_time,
                                                               sender_time=c.sender_time, pubsub_topic=c.pubsub_topic))
    return rpc.SerializeToString(deterministic=True)


def decode_response(data: bytes) -> HistoryResponse:
    rpc = parse(legacy_rpc_pb2.HistoryRPC(), data, LegacyStoreDecodeError)
    if not rpc.HasField("response"):
        raise LegacyStoreDecodeError("HistoryRPC: response (3) missing")
    resp = rpc.response
    for i, body in enumerate(resp.messages):
        try:
            WakuMessage.decode(body)
        except MessageDecodeError as exc:
            raise LegacyStoreDecodeError(f"HistoryResponse: messages[{i}]: {exc}") from None
    cursor = None
    if resp.HasField("paging_info") and resp.paging_info.HasField("cursor"):
        c = resp.paging_info.cursor
        # go-waku's proto3 Index omits zero fields; only the digest and topic must be there.
        require(c, LegacyStoreDecodeError, "digest", "pubsub_topic", prefix="HistoryResponse: cursor.")
        cursor = Index(c.digest, c.receiver_time, c.sender_time, c.pubsub_topic)
    return HistoryResponse(rpc.request_id, tuple(resp.messages), cursor, optional(resp, "error") or 0)
