"""LightPush wire formats (waku-v2.md §10): v3 request/response and legacy PushRPC; pure, strict.

Decoders refuse what nwaku's decoders refuse (§3): v3 request without request_id or message,
v3 response without request_id or status_code, PushRPC without request_id, PushRequest without
pubsub_topic or message, PushResponse without is_success; a message that is not a valid
WakuMessage (14/WAKU2-MESSAGE) fails the whole request, as in nwaku.  Every refusal is a
:class:`LightpushDecodeError`.  Encoders always write the required fields (``is_success=false``
too).  The only module that imports the generated ``lightpush_rpc_pb2``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from v2.codec import optional, parse, require, set_present
from v2.core.message import MessageDecodeError, WakuMessage
from v2.errors import V2DecodeError

__all__ = [
    "LightpushDecodeError",
    "LightpushRequest",
    "LightpushResponse",
    "LightpushStatus",
    "PushRPC",
    "PushRequest",
    "PushResponse",
]

# Imported by name so mypy does not analyse protoc 3.21's untyped gencode.
pb: Any = importlib.import_module("v2.lightpush.lightpush_rpc_pb2")


class LightpushDecodeError(V2DecodeError):
    """Bytes that are not an acceptable lightpush RPC."""


class LightpushStatus(IntEnum):
    """v3 status codes, the implementation column of waku-v2.md §10.2 (nwaku / js-waku)."""

    SUCCESS = 200
    BAD_REQUEST = 400
    PAYLOAD_TOO_LARGE = 413
    INVALID_MESSAGE = 420
    UNSUPPORTED_PUBSUB_TOPIC = 421
    TOO_MANY_REQUESTS = 429
    INTERNAL_SERVER_ERROR = 500
    SERVICE_NOT_AVAILABLE = 503
    OUT_OF_RLN_PROOF = 504
    NO_PEERS_TO_RELAY = 505


def _message(data: bytes) -> WakuMessage:
    try:
        return WakuMessage.decode(data)
    except MessageDecodeError as exc:
        raise LightpushDecodeError(f"message: {exc}") from None


@dataclass(frozen=True, slots=True)
class LightpushRequest:
    request_id: str
    pubsub_topic: str | None  # None = autoshard from the content topic
    message: WakuMessage
    data: bytes  # the WakuMessage bytes as they travelled

    @classmethod
    def of(cls, request_id: str, pubsub_topic: str | None, message: WakuMessage) -> LightpushRequest:
        return cls(request_id, pubsub_topic, message, message.encode())

    def encode(self) -> bytes:
        m = pb.LightpushRequest(request_id=self.request_id, message=self.data)
        set_present(m, pubsub_topic=self.pubsub_topic)
        return m.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> LightpushRequest:
        m = parse(pb.LightpushRequest(), data, LightpushDecodeError)
        require(m, LightpushDecodeError, "request_id", "message")
        return cls(m.request_id, optional(m, "pubsub_topic"), _message(m.message), m.message)


@dataclass(frozen=True, slots=True)
class LightpushResponse:
    request_id: str
    status_code: int
    status_desc: str | None = None
    relay_peer_count: int | None = None

    def encode(self) -> bytes:
        m = pb.LightpushResponse(request_id=self.request_id, status_code=self.status_code)
        set_present(m, status_desc=self.status_desc, relay_peer_count=self.relay_peer_count)
        return m.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> LightpushResponse:
        m = parse(pb.LightpushResponse(), data, LightpushDecodeError)
        require(m, LightpushDecodeError, "request_id", "status_code")
        return cls(m.request_id, m.status_code, optional(m, "status_desc"), optional(m, "relay_peer_count"))


@dataclass(frozen=True, slots=True)
class PushRequest:
    pubsub_topic: str
    message: WakuMessage
    data: bytes

    @classmethod
    def of(cls, pubsub_topic: str, message: WakuMessage) -> PushRequest:
        return cls(pubsub_topic, message, message.encode())


@dataclass(frozen=True, slots=True)
class PushResponse:
    is_success: bool
    info: str | None = None


@dataclass(frozen=True, slots=True)
class PushRPC:
    request_id: str
    request: PushRequest | None = None
    response: PushResponse | None = None

    def encode(self) -> bytes:
        m = pb.PushRPC(request_id=self.request_id)
        if self.request is not None:
            m.request.pubsub_topic = self.request.pubsub_topic
            m.request.message = self.request.data
        if self.response is not None:
            m.response.is_success = self.response.is_success
            set_present(m.response, info=self.response.info)
        return m.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> PushRPC:
        m = parse(pb.PushRPC(), data, LightpushDecodeError)
        require(m, LightpushDecodeError, "request_id")
        request = response = None
        if m.HasField("request"):
            r = m.request
            require(r, LightpushDecodeError, "pubsub_topic", "message", prefix="request.")
            request = PushRequest(r.pubsub_topic, _message(r.message), r.message)
        if m.HasField("response"):
            s = m.response
            require(s, LightpushDecodeError, "is_success", prefix="response.")
            response = PushResponse(s.is_success, optional(s, "info"))
        return cls(m.request_id, request, response)
