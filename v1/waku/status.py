"""waku/1 Status and Status Update options: a bare association list ``[[key, value], ...]``.

Keys (waku-v1.md §3): 0 pow-requirement (uint64 holding the IEEE-754 bits of a float64),
1 bloom (64 bytes), 2 light-node, 3 confirmations, 4 packet rate limits [ip, peer, topic],
5 topic interest (<= 10000 topics), 6 bytes rate limits.  Unknown keys are ignored.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from enum import IntEnum

import rlp

from v1.errors import V1DecodeError
from v1.waku.bloom import BLOOM_LEN, FULL_BLOOM

__all__ = ["MAX_TOPIC_INTEREST", "RateLimits", "StatusError", "StatusKey", "StatusOptions",
           "apply_update", "decode_status", "encode_status", "float_bits"]

MAX_TOPIC_INTEREST = 10_000


class StatusError(V1DecodeError):
    pass


class StatusKey(IntEnum):
    POW_REQUIREMENT = 0
    BLOOM_FILTER = 1
    LIGHT_NODE = 2
    CONFIRMATIONS = 3
    RATE_LIMITS = 4
    TOPIC_INTEREST = 5
    BYTES_RATE_LIMITS = 6


@dataclass(frozen=True, slots=True)
class RateLimits:
    ip: int = 0
    peer_id: int = 0
    topic: int = 0


@dataclass(frozen=True, slots=True)
class StatusOptions:
    """All fields optional: None = the key was absent (defaults are applied by the caller)."""

    pow_requirement: float | None = None
    bloom: bytes | None = None
    light_node: bool | None = None
    confirmations: bool | None = None
    rate_limits: RateLimits | None = None
    topic_interest: tuple[bytes, ...] | None = None
    bytes_rate_limits: RateLimits | None = None


def float_bits(f: float) -> int:
    return int(struct.unpack(">Q", struct.pack(">d", f))[0])


def _bits_float(n: int) -> float:
    return float(struct.unpack(">d", struct.pack(">Q", n))[0])


def encode_status(o: StatusOptions) -> bytes:
    """Keys in ascending order (as the nwaku bridge sent them)."""
    items: list[list[object]] = []
    if o.pow_requirement is not None:
        items.append([StatusKey.POW_REQUIREMENT, float_bits(o.pow_requirement)])
    if o.bloom is not None:
        items.append([StatusKey.BLOOM_FILTER, o.bloom])
    if o.light_node is not None:
        items.append([StatusKey.LIGHT_NODE, 1 if o.light_node else 0])
    if o.confirmations is not None:
        items.append([StatusKey.CONFIRMATIONS, 1 if o.confirmations else 0])
    if o.rate_limits is not None:
        r = o.rate_limits
        items.append([StatusKey.RATE_LIMITS, [r.ip, r.peer_id, r.topic]])
    if o.topic_interest is not None:
        items.append([StatusKey.TOPIC_INTEREST, list(o.topic_interest)])
    if o.bytes_rate_limits is not None:
        r = o.bytes_rate_limits
        items.append([StatusKey.BYTES_RATE_LIMITS, [r.ip, r.peer_id, r.topic]])
    return rlp.encode(items)


def _uint(v: object, what: str) -> int:
    if not isinstance(v, bytes) or len(v) > 8:
        raise StatusError(f"{what}: not a uint64")
    return int.from_bytes(v, "big")


def _bool(v: object, what: str) -> bool:
    if v in (b"", b"\x00"):
        return False
    if v == b"\x01":
        return True
    raise StatusError(f"{what}: not a bool")


def _limits(v: object) -> RateLimits:
    if not isinstance(v, list) or len(v) < 3:
        raise StatusError("rate limits must be [ip, peer_id, topic]")
    return RateLimits(_uint(v[0], "ip limit"), _uint(v[1], "peer limit"), _uint(v[2], "topic limit"))


def decode_status(data: bytes) -> StatusOptions:
    # RecursionError: pyrlp decodes nested lists recursively; ~1 000 levels (2-3 KB) exhaust the stack.
    try:
        items = rlp.decode(data)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise StatusError(f"malformed status RLP: {exc}") from None
    if not isinstance(items, list):
        raise StatusError("status must be a list")
    o = StatusOptions()
    for kv in items:
        if not isinstance(kv, list) or len(kv) != 2 or not isinstance(kv[0], bytes):
            raise StatusError("status option must be [key, value]")
        key, value = _uint(kv[0], "key"), kv[1]
        if key == StatusKey.POW_REQUIREMENT:
            pow_ = _bits_float(_uint(value, "pow"))
            if math.isnan(pow_) or math.isinf(pow_) or pow_ < 0:
                raise StatusError(f"invalid pow requirement {pow_}")
            o = replace(o, pow_requirement=pow_)
        elif key == StatusKey.BLOOM_FILTER:
            if not isinstance(value, bytes) or len(value) not in (0, BLOOM_LEN):
                raise StatusError("bloom must be 64 bytes")
            o = replace(o, bloom=value or None)
        elif key == StatusKey.LIGHT_NODE:
            o = replace(o, light_node=_bool(value, "light"))
        elif key == StatusKey.CONFIRMATIONS:
            o = replace(o, confirmations=_bool(value, "confirmations"))
        elif key == StatusKey.RATE_LIMITS:
            o = replace(o, rate_limits=_limits(value))
        elif key == StatusKey.TOPIC_INTEREST:
            if not isinstance(value, list) or len(value) > MAX_TOPIC_INTEREST:
                raise StatusError("topic interest must be a list of <= 10000 topics")
            if not all(isinstance(t, bytes) and len(t) == 4 for t in value):
                raise StatusError("topic interest entries must be 4 bytes")
            o = replace(o, topic_interest=tuple(value))  # type: ignore[arg-type]
        elif key == StatusKey.BYTES_RATE_LIMITS:
            o = replace(o, bytes_rate_limits=_limits(value))
        # unknown keys: ignored (forward compatibility)
    return o


@dataclass(frozen=True, slots=True)
class _Defaults:
    pow_requirement: float = 0.001  # status-go WithDefaults; nim would assume 0.2
    bloom: bytes = FULL_BLOOM


def apply_update(current: StatusOptions, update: StatusOptions) -> StatusOptions:
    """Status Update semantics (status-go): topic interest clears the bloom and vice versa."""
    o = current
    for field in ("pow_requirement", "light_node", "confirmations", "rate_limits", "bytes_rate_limits"):
        v = getattr(update, field)
        if v is not None:
            o = replace(o, **{field: v})
    if update.topic_interest is not None:
        o = replace(o, topic_interest=update.topic_interest, bloom=None)
    elif update.bloom is not None:
        o = replace(o, bloom=update.bloom, topic_interest=None)
    return o
