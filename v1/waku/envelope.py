"""Waku v1 envelopes: ``[expiry, ttl, topic(4), data, nonce]`` (6/WAKU1 §"Envelope"; waku-v1.md §4-5).

Integers are canonical (minimal) RLP integers as both implementations write them; decoding is
strict so that re-encoding reproduces the received bytes and therefore the envelope hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import rlp

from v1.errors import V1DecodeError
from v1.rlpx.crypto import keccak256

__all__ = [
    "TOPIC_LEN",
    "Envelope",
    "EnvelopeError",
    "bytes_to_topic",
    "decode_envelope_item",
    "topic_from_str",
    "topic_to_str",
]

TOPIC_LEN = 4
MAX_UINT32 = (1 << 32) - 1
MAX_UINT64 = (1 << 64) - 1


class EnvelopeError(V1DecodeError):
    """Not a well-formed envelope."""


def bytes_to_topic(b: bytes) -> bytes:
    """status-go BytesToTopic: the first min(len, 4) bytes, right-padded with zeros."""
    return (b[:TOPIC_LEN] + b"\0" * TOPIC_LEN)[:TOPIC_LEN]


def topic_to_str(topic: bytes) -> str:
    return "0x" + topic.hex()


def topic_from_str(s: str) -> bytes:
    """``0x`` + exactly 8 hex digits (status-go's JSON rule)."""
    h = s.removeprefix("0x").removeprefix("0X")
    if len(h) != 8:
        raise EnvelopeError(f"topic must be 8 hex digits: {s!r}")
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise EnvelopeError(f"topic is not hex: {s!r}") from None


def _uint(v: object, limit: int, what: str) -> int:
    if not isinstance(v, bytes):
        raise EnvelopeError(f"{what} is not an RLP integer")
    if v[:1] == b"\0":
        raise EnvelopeError(f"{what} has leading zero bytes")
    n = int.from_bytes(v, "big")
    if n > limit:
        raise EnvelopeError(f"{what} out of range")
    return n


@dataclass(frozen=True)  # no slots: the encodings and the hash are cached per instance
class Envelope:
    expiry: int
    ttl: int
    topic: bytes
    data: bytes
    nonce: int = 0

    def __post_init__(self) -> None:
        if len(self.topic) != TOPIC_LEN:
            raise EnvelopeError("topic must be 4 bytes")
        if not (0 <= self.expiry <= MAX_UINT32 and 0 <= self.ttl <= MAX_UINT32 and 0 <= self.nonce <= MAX_UINT64):
            raise EnvelopeError("expiry/ttl/nonce out of range")

    @property
    def sent(self) -> int:
        """Creation time (Unix seconds): expiry − ttl."""
        return self.expiry - self.ttl

    @cached_property
    def short_rlp(self) -> bytes:
        """rlp([expiry, ttl, topic, data]): what the PoW hash covers."""
        return rlp.encode([self.expiry, self.ttl, self.topic, self.data])

    def encode_item(self) -> list[object]:
        return [self.expiry, self.ttl, self.topic, self.data, self.nonce]

    @cached_property
    def raw(self) -> bytes:
        return rlp.encode(self.encode_item())

    def encode(self) -> bytes:
        return self.raw

    @cached_property
    def hash(self) -> bytes:
        """Envelope id: keccak256(rlp(envelope)) (status-go, mailservers, Message Response)."""
        return keccak256(self.raw)

    @property
    def size(self) -> int:
        """Full RLP length: the size rule nim's ``allowed()`` applies (and the stricter one)."""
        return len(self.raw)

    def with_nonce(self, nonce: int) -> Envelope:
        return Envelope(self.expiry, self.ttl, self.topic, self.data, nonce)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        # RecursionError: pyrlp decodes nested lists recursively; ~1 000 levels (2-3 KB) exhaust the stack.
        try:
            item = rlp.decode(data)
        except (rlp.exceptions.DecodingError, RecursionError) as exc:
            raise EnvelopeError(f"malformed envelope RLP: {exc}") from None
        return decode_envelope_item(item)


def decode_envelope_item(item: object) -> Envelope:
    """From an already decoded RLP item (an element of a Messages packet)."""
    if not isinstance(item, list) or len(item) != 5:
        raise EnvelopeError("envelope must be a list of 5 items")
    expiry = _uint(item[0], MAX_UINT32, "expiry")
    ttl = _uint(item[1], MAX_UINT32, "ttl")
    topic, data = item[2], item[3]
    if not isinstance(topic, bytes) or len(topic) != TOPIC_LEN:
        raise EnvelopeError("topic must be a 4-byte string")
    if not isinstance(data, bytes):
        raise EnvelopeError("data must be a string")
    nonce = _uint(item[4], MAX_UINT64, "nonce")
    return Envelope(expiry, ttl, topic, data, nonce)
