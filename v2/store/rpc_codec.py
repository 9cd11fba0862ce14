"""Store v3 wire codec: pure encode/decode between bytes and frozen records (waku-v2.md §3, §7).

The only importer of ``rpc_pb2``.  Encoding always writes the fields nwaku's decoder requires
(request_id; status_code and status_desc), because they are ``optional`` in rpc.proto.  Decoding
is strict the same way nwaku's is: a missing required tag, a bad wire format, invalid UTF-8 or an
embedded message that is not a valid WakuMessage raises :class:`StoreDecodeError`, never anything
else.  Message bodies travel as their original bytes (``KeyValue.data``).
"""

from __future__ import annotations

from dataclasses import dataclass

from v2.codec import optional, parse, require, set_present
from v2.core.message import MessageDecodeError, WakuMessage
from v2.errors import V2DecodeError
from v2.store import rpc_pb2
from v2.store.common import StoreError

__all__ = [
    "KeyValue",
    "StoreDecodeError",
    "StoreQuery",
    "StoreResponse",
    "decode_query",
    "decode_response",
    "encode_query",
    "encode_response",
]

_U64 = 2**64
_I64 = 2**63


class StoreDecodeError(StoreError, V2DecodeError):
    """Bytes that are not an acceptable Store v3 request or response."""


@dataclass(frozen=True, slots=True)
class StoreQuery:
    request_id: str
    include_data: bool = False
    pubsub_topic: str | None = None
    content_topics: tuple[str, ...] = ()
    time_start: int | None = None  # ns, inclusive
    time_end: int | None = None  # ns, exclusive
    message_hashes: tuple[bytes, ...] = ()
    pagination_cursor: bytes | None = None  # a message hash, exclusive
    pagination_forward: bool = False  # the proto default: backward, newest page first
    pagination_limit: int | None = None

    def __post_init__(self) -> None:
        if self.pagination_limit is not None and not 0 <= self.pagination_limit < _U64:
            raise ValueError("pagination_limit out of uint64 range")
        for t in (self.time_start, self.time_end):
            if t is not None and not -_I64 <= t < _I64:
                raise ValueError("time bound out of int64 range")


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One result: the message hash, and with include_data the pubsub topic and message bytes."""

    message_hash: bytes
    data: bytes | None = None  # the WakuMessage exactly as archived (its original encoding)
    pubsub_topic: str | None = None

    @classmethod
    def of(cls, message_hash: bytes, msg: WakuMessage, pubsub_topic: str) -> KeyValue:
        return cls(message_hash, msg.encode(), pubsub_topic)

    @property
    def message(self) -> WakuMessage | None:
        # The decoder has already checked these bytes, so this only fails for hand-built records.
        return None if self.data is None else WakuMessage.decode(self.data)


@dataclass(frozen=True, slots=True)
class StoreResponse:
    request_id: str
    status_code: int
    status_desc: str
    messages: tuple[KeyValue, ...] = ()
    pagination_cursor: bytes | None = None  # set iff more results exist

    def __post_init__(self) -> None:
        if not 0 <= self.status_code < 2**32:
            raise ValueError("status_code out of uint32 range")


def encode_query(q: StoreQuery) -> bytes:
    pb = rpc_pb2.StoreQueryRequest(request_id=q.request_id, include_data=q.include_data,
                                   content_topics=list(q.content_topics), message_hashes=list(q.message_hashes),
                                   pagination_forward=q.pagination_forward)
    set_present(pb, pubsub_topic=q.pubsub_topic, time_start=q.time_start, time_end=q.time_end,
                pagination_cursor=q.pagination_cursor, pagination_limit=q.pagination_limit)
    return pb.SerializeToString(deterministic=True)


def decode_query(data: bytes) -> StoreQuery:
    pb = parse(rpc_pb2.StoreQueryRequest(), data, StoreDecodeError)
    if not pb.HasField("request_id"):
        raise StoreDecodeError("StoreQueryRequest: request_id (1) missing")
    return StoreQuery(
        request_id=pb.request_id,
        include_data=pb.include_data,
        pubsub_topic=optional(pb, "pubsub_topic"),
        content_topics=tuple(pb.content_topics),
        time_start=optional(pb, "time_start"),
        time_end=optional(pb, "time_end"),
        message_hashes=tuple(pb.message_hashes),
        pagination_cursor=optional(pb, "pagination_cursor"),
        pagination_forward=pb.pagination_forward,
        pagination_limit=optional(pb, "pagination_limit"),
    )


def encode_response(r: StoreResponse) -> bytes:
    pb = rpc_pb2.StoreQueryResponse(request_id=r.request_id, status_code=r.status_code, status_desc=r.status_desc)
    for kv in r.messages:
        set_present(pb.messages.add(message_hash=kv.message_hash), message=kv.data, pubsub_topic=kv.pubsub_topic)
    set_present(pb, pagination_cursor=r.pagination_cursor)
    return pb.SerializeToString(deterministic=True)


def decode_response(data: bytes) -> StoreResponse:
    pb = parse(rpc_pb2.StoreQueryResponse(), data, StoreDecodeError)
    require(pb, StoreDecodeError, "request_id", "status_code", "status_desc", prefix="StoreQueryResponse: ")
    items = []
    for i, kv in enumerate(pb.messages):
        require(kv, StoreDecodeError, "message_hash", prefix=f"StoreQueryResponse: messages[{i}].")
        body = optional(kv, "message")
        if body is not None:
            try:
                WakuMessage.decode(body)
            except MessageDecodeError as exc:
                raise StoreDecodeError(f"StoreQueryResponse: messages[{i}].message: {exc}") from None
        items.append(KeyValue(kv.message_hash, body, optional(kv, "pubsub_topic")))
    return StoreResponse(
        request_id=pb.request_id,
        status_code=pb.status_code,
        status_desc=pb.status_desc,
        messages=tuple(items),
        pagination_cursor=optional(pb, "pagination_cursor"),
    )
