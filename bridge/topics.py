"""Topic mapping between the networks (23/WAKU2-TOPICS "bridging"; bridge-prior-art.md §2-3).

v1 topic ``1a2b3c4d`` <-> content topic ``/waku/1/0x1a2b3c4d/rfc26``.  Only content topics of
application ``waku`` version ``1`` are bridgeable; their name must be exactly 4 bytes of hex with
an optional ``0x`` (the old bridge silently truncated longer names: we refuse them).
"""

from __future__ import annotations

import re

from bridge.errors import WakuBridgeError
from v2.core.topics import ContentTopic, TopicError

__all__ = ["InvalidTopic", "NotBridgeable", "TopicMappingError", "content_topic_for", "v1_topic_of"]

_HEX8 = re.compile(r"^(0x|0X)?([0-9a-fA-F]{8})$")


class TopicMappingError(WakuBridgeError):
    pass


class NotBridgeable(TopicMappingError):
    """Not a ``/waku/1/...`` content topic: not ours to bridge (counted, not an error)."""


class InvalidTopic(TopicMappingError):
    """A ``/waku/1/...`` topic whose name is not exactly 4 bytes of hex."""


def content_topic_for(v1_topic: bytes) -> str:
    if len(v1_topic) != 4:
        raise InvalidTopic("a v1 topic is 4 bytes")
    return f"/waku/1/0x{v1_topic.hex()}/rfc26"


def v1_topic_of(content_topic: str) -> bytes:
    try:
        ct = ContentTopic.parse(content_topic)
    except TopicError as exc:
        raise NotBridgeable(str(exc)) from None
    if ct.application != "waku" or ct.version != "1":
        raise NotBridgeable(f"{content_topic!r} is not a /waku/1/... topic")
    m = _HEX8.match(ct.name)
    if not m:
        raise InvalidTopic(f"{content_topic!r}: the name must be 4 bytes of hex (0x optional)")
    return bytes.fromhex(m.group(2))
