"""Filter v2 wire format (waku-v2.md §9): pure encoders and strict decoders.

Decoders refuse what nwaku's decoder refuses (§3: a missing request_id, status_code, waku_message
or pubsub_topic tag) and anything that is not valid protobuf; every refusal is a
:class:`FilterDecodeError`, never another exception.  Encoders always write the required fields.
The only module that imports the generated ``filter_rpc_pb2``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from v2.codec import optional, parse, require, set_present
from v2.core.message import MessageDecodeError, WakuMessage
from v2.errors import V2DecodeError

# Imported by name so mypy does not analyse protoc 3.21's untyped gencode.
pb: Any = importlib.import_module("v2.filter.filter_rpc_pb2")

__all__ = [
    "MAX_PUSH_SIZE",
    "MAX_SUBSCRIBE_REQUEST_SIZE",
    "MAX_SUBSCRIBE_RESPONSE_SIZE",
    "FilterDecodeError",
    "FilterStatus",
    "FilterSubscribeRequest",
    "FilterSubscribeResponse",
    "FilterSubscribeType",
    "MessagePush",
    "encode_message_push",
]

# nwaku's read limits (waku-v2.md §2): DefaultMaxSubscribeSize = 10*150KiB+64KiB, responses 64 KiB.
MAX_SUBSCRIBE_REQUEST_SIZE = 10 * 150 * 1024 + 64 * 1024
MAX_SUBSCRIBE_RESPONSE_SIZE = 64 * 1024
MAX_PUSH_SIZE = 10 * 150 * 1024 + 64 * 1024


class FilterDecodeError(V2DecodeError):
    """Bytes that are not an acceptable filter RPC."""


class FilterSubscribeType(IntEnum):
    SUBSCRIBER_PING = 0
    SUBSCRIBE = 1
    UNSUBSCRIBE = 2
    UNSUBSCRIBE_ALL = 3


class FilterStatus(IntEnum):
    """nwaku's FilterSubscribeErrorKind values (waku-v2.md §9)."""

    OK = 200
    BAD_RESPONSE = 300
    BAD_REQUEST = 400
    NOT_FOUND = 404
    TOO_MANY_REQUESTS = 429
    SERVICE_UNAVAILABLE = 503
    PEER_DIAL_FAILURE = 504


@dataclass(frozen=True, slots=True)
class FilterSubscribeRequest:
    request_id: str
    type: FilterSubscribeType
    pubsub_topic: str | None = None
    content_topics: tuple[str, ...] = ()

    def encode(self) -> bytes:
        m = pb.FilterSubscribeRequest(request_id=self.request_id, filter_subscribe_type=int(self.type),
                                      content_topics=list(self.content_topics))
        set_present(m, pubsub_topic=self.pubsub_topic)
        return m.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> FilterSubscribeRequest:
        m = parse(pb.FilterSubscribeRequest(), data, FilterDecodeError)
        require(m, FilterDecodeError, "request_id")
        raw_type = m.filter_subscribe_type  # absent decodes as SUBSCRIBER_PING (0), as in nwaku
        try:
            kind = FilterSubscribeType(raw_type)
        except ValueError:
            raise FilterDecodeError(f"unknown filter_subscribe_type {raw_type}") from None
        return cls(m.request_id, kind, optional(m, "pubsub_topic"), tuple(m.content_topics))


@dataclass(frozen=True, slots=True)
class FilterSubscribeResponse:
    request_id: str
    status_code: int
    status_desc: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def encode(self) -> bytes:
        m = pb.FilterSubscribeResponse(request_id=self.request_id, status_code=self.status_code)
        set_present(m, status_desc=self.status_desc)
        return m.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> FilterSubscribeResponse:
        m = parse(pb.FilterSubscribeResponse(), data, FilterDecodeError)
        require(m, FilterDecodeError, "request_id", "status_code")
        return cls(m.request_id, m.status_code, optional(m, "status_desc"))


def encode_message_push(pubsub_topic: str, message_data: bytes) -> bytes:
    """A MessagePush around the message's original bytes (never re-encoded; §6)."""
    return pb.MessagePush(waku_message=message_data, pubsub_topic=pubsub_topic).SerializeToString()


@dataclass(frozen=True, slots=True)
class MessagePush:
    pubsub_topic: str
    message: WakuMessage
    data: bytes  # the WakuMessage bytes as they travelled

    def encode(self) -> bytes:
        return encode_message_push(self.pubsub_topic, self.data)

    @classmethod
    def of(cls, pubsub_topic: str, message: WakuMessage) -> MessagePush:
        return cls(pubsub_topic, message, message.encode())

    @classmethod
    def decode(cls, data: bytes) -> MessagePush:
        m = parse(pb.MessagePush(), data, FilterDecodeError)
        # pubsub_topic: js-waku drops pushes without it, nwaku fails to decode them
        require(m, FilterDecodeError, "waku_message", "pubsub_topic")
        try:
            msg = WakuMessage.decode(m.waku_message)
        except MessageDecodeError as exc:
            raise FilterDecodeError(f"waku_message: {exc}") from None
        return cls(m.pubsub_topic, msg, m.waku_message)
