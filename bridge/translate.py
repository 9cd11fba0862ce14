"""Deterministic translation between envelopes and WakuMessages (bridge-prior-art.md §12).

Pure functions: the same input gives byte-identical output in every bridge instance, which is what
lets the networks' own dedup (gossipsub message id = sha256(bytes); v1 pools keyed by envelope
hash) absorb a message bridged twice.  Time enters as ``now``; mining is a separate step
(:func:`seal`) so the service can run it off the event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from bridge.payload import wrap_unencrypted
from bridge.topics import InvalidTopic, NotBridgeable, content_topic_for, v1_topic_of
from v1.waku.envelope import Envelope
from v1.waku.pow import SizeRule, mine_smallest_nonce
from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.core.topics import autoshard

__all__ = [
    "NS",
    "Drop",
    "DropReason",
    "Unsealed",
    "V1ToV2",
    "dedup_key",
    "seal",
    "v1_to_v2",
    "v2_to_v1",
]

NS = 10**9


class DropReason(Enum):
    """Why a message was not bridged; values are ``waku_bridge_dropped_total{type=...}`` labels."""

    DUPLICATE = "duplicate"
    NOT_BRIDGEABLE = "not_bridgeable"
    INVALID_TOPIC = "invalid_topic"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    FUTURE_TIMESTAMP = "future_timestamp"
    NO_TIMESTAMP = "no_timestamp"
    POW_FAILED = "pow_failed"
    DENIED = "denied"
    PUBLISH_FAILED = "publish_failed"
    INVALID_MESSAGE = "invalid_message"
    STANDBY_EXPIRED = "standby_expired"
    NO_PEERS = "no_peers"  # held for want of a v2 relay peer until it expired or the outbox was full


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    detail: str = ""


def dedup_key(v1_topic: bytes, v1_data: bytes) -> bytes:
    """sha256(topic ‖ data): the only thing preserved across v2→v1→v2 (design.md)."""
    return hashlib.sha256(v1_topic + v1_data).digest()


@dataclass(frozen=True, slots=True)
class V1ToV2:
    pubsub_topic: str
    message: WakuMessage
    key: bytes


def v1_to_v2(env: Envelope, *, cluster_id: int, num_shards: int, pubsub_topic: str | None = None,
             max_size: int = MAX_MESSAGE_SIZE) -> V1ToV2 | Drop:
    msg = WakuMessage(
        payload=env.data,
        content_topic=content_topic_for(env.topic),
        version=1,  # 26/WAKU-PAYLOAD
        timestamp=(env.expiry - env.ttl) * NS,  # Python ints: no uint32 overflow (nwaku #1570)
    )
    if len(msg.encode()) > max_size:
        return Drop(DropReason.TOO_LARGE, f"{len(msg.encode())} > {max_size} bytes")
    topic = pubsub_topic or str(autoshard(msg.content_topic, cluster_id, max(1, num_shards)))
    return V1ToV2(topic, msg, dedup_key(env.topic, env.data))


@dataclass(frozen=True, slots=True)
class Unsealed:
    """An envelope without its nonce yet (mining is the expensive part)."""

    expiry: int
    ttl: int
    topic: bytes
    data: bytes
    key: bytes


def v2_to_v1(msg: WakuMessage, *, now: float, ttl: int, max_skew: float,
             max_envelope_size: int = 1024 * 1024) -> Unsealed | Drop:
    try:
        topic = v1_topic_of(msg.content_topic)
    except NotBridgeable as exc:
        return Drop(DropReason.NOT_BRIDGEABLE, str(exc))
    except InvalidTopic as exc:
        return Drop(DropReason.INVALID_TOPIC, str(exc))
    if not msg.timestamp:
        # Without a timestamp there is no deterministic creation time (and js-waku hashes it
        # differently); refusing is the only way to keep two bridges' outputs identical.
        return Drop(DropReason.NO_TIMESTAMP)
    sent = msg.timestamp // NS
    if msg.timestamp / NS > now + max_skew:
        return Drop(DropReason.FUTURE_TIMESTAMP, f"{msg.timestamp / NS - now:.1f} s ahead")
    if msg.timestamp / NS < now - max_skew or sent + ttl <= now:
        return Drop(DropReason.EXPIRED, f"{now - msg.timestamp / NS:.1f} s old")
    data = msg.payload if msg.version == 1 else wrap_unencrypted(msg.payload)
    if len(data) + 64 > max_envelope_size:  # full envelope RLP must stay <= 1 MiB (nim)
        return Drop(DropReason.TOO_LARGE, f"{len(data)} bytes")
    return Unsealed(sent + ttl, ttl, topic, data, dedup_key(topic, data))


def seal(u: Unsealed, pow_target: float, *, max_nonce: int | None = None) -> Envelope | Drop:
    """Mine the smallest nonce meeting ``pow_target`` under the STRICT size rule."""
    nonce = mine_smallest_nonce(u.expiry, u.ttl, u.topic, u.data, pow_target, size_rule=SizeRule.STRICT,
                                max_nonce=max_nonce)
    if nonce is None:
        return Drop(DropReason.POW_FAILED, f"no nonce <= {max_nonce} meets PoW {pow_target}")
    return Envelope(u.expiry, u.ttl, u.topic, u.data, nonce)
