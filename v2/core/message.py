"""WakuMessage (14/WAKU2-MESSAGE): the one pinned encoder, a strict decoder, the deterministic hash.

Two bridges must emit byte-identical messages (the relay message id is sha256 of the bytes), so
encoding is hand-written and fixed: fields in order 1, 2, 3, 10, 11, 21, 31; payload and
content_topic always written (nwaku requires their tags); the others exactly when not None.
Decoding goes through the generated protobuf code (robust against any wire input).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from google.protobuf.message import DecodeError

from v2.codec import encode_uvarint
from v2.core.proto import message_pb2
from v2.errors import V2DecodeError

__all__ = ["MAX_MESSAGE_SIZE", "MAX_META_SIZE", "MessageDecodeError", "WakuMessage", "message_hash"]

MAX_MESSAGE_SIZE = 153_600  # 150 KiB (64/WAKU2-NETWORK; nwaku DefaultMaxWakuMessageSize)
MAX_META_SIZE = 64  # nwaku MaxMetaAttrLength


class MessageDecodeError(V2DecodeError):
    """Bytes that are not an acceptable WakuMessage."""


def _key(field: int, wire: int) -> bytes:
    return encode_uvarint(field << 3 | wire)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + encode_uvarint(len(value)) + value


def _zigzag64(n: int) -> int:
    return (n << 1) ^ (n >> 63)


@dataclass(frozen=True)  # no slots: the encoding is cached per instance
class WakuMessage:
    payload: bytes
    content_topic: str
    version: int | None = None
    timestamp: int | None = None  # nanoseconds since the Unix epoch
    meta: bytes | None = None
    ephemeral: bool | None = None
    rate_limit_proof: bytes | None = None

    def __post_init__(self) -> None:
        if self.version is not None and not 0 <= self.version < 2**32:
            raise MessageDecodeError("version out of uint32 range")
        if self.timestamp is not None and not -(2**63) <= self.timestamp < 2**63:
            raise MessageDecodeError("timestamp out of int64 range")

    @cached_property
    def _encoded(self) -> bytes:
        out = _bytes_field(1, self.payload) + _bytes_field(2, self.content_topic.encode())
        if self.version is not None:
            out += _key(3, 0) + encode_uvarint(self.version)
        if self.timestamp is not None:
            out += _key(10, 0) + encode_uvarint(_zigzag64(self.timestamp))
        if self.meta is not None:
            out += _bytes_field(11, self.meta)
        if self.rate_limit_proof is not None:
            out += _bytes_field(21, self.rate_limit_proof)
        if self.ephemeral is not None:
            out += _key(31, 0) + encode_uvarint(int(self.ephemeral))
        return out

    def encode(self) -> bytes:
        return self._encoded

    @classmethod
    def decode(cls, data: bytes) -> WakuMessage:
        pb = message_pb2.WakuMessage()
        try:
            pb.ParseFromString(data)
        except (DecodeError, ValueError) as exc:
            raise MessageDecodeError(f"not a WakuMessage: {exc}") from None
        if not pb.HasField("content_topic") or not pb.content_topic:
            raise MessageDecodeError("content_topic missing")
        if pb.HasField("meta") and len(pb.meta) > MAX_META_SIZE:
            raise MessageDecodeError(f"meta longer than {MAX_META_SIZE} bytes")
        return cls(
            payload=pb.payload,  # absent = empty; the relay validator refuses empty payloads
            content_topic=pb.content_topic,
            version=pb.version if pb.HasField("version") else None,
            timestamp=pb.timestamp if pb.HasField("timestamp") else None,
            meta=pb.meta if pb.HasField("meta") else None,
            ephemeral=pb.ephemeral if pb.HasField("ephemeral") else None,
            rate_limit_proof=pb.rate_limit_proof if pb.HasField("rate_limit_proof") else None,
        )


def message_hash(pubsub_topic: str, msg: WakuMessage) -> bytes:
    """sha256(pubsub_topic ‖ payload ‖ content_topic ‖ meta ‖ int64_be(timestamp)) (14/WAKU2-MESSAGE).

    nwaku semantics: the 8 timestamp bytes are always appended, also for 0/absent (js-waku
    omits them then; we always set a timestamp on what we publish, so the two agree).
    """
    h = hashlib.sha256()
    h.update(pubsub_topic.encode())
    h.update(msg.payload)
    h.update(msg.content_topic.encode())
    if msg.meta:
        h.update(msg.meta)
    h.update((msg.timestamp or 0).to_bytes(8, "big", signed=True))
    return h.digest()
