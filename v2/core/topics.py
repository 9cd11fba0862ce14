"""Pubsub (shard) topics ``/waku/2/rs/<cluster>/<shard>``, content topics, autosharding.

Autosharding (51/WAKU2-RELAY-SHARDING): shard = last 8 bytes of sha256(app ‖ version) as a
big-endian uint64, mod the number of shards — the nwaku/js-waku rule, which differs from a literal
"hash mod n" reading for non-power-of-two counts (vectors.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from v2.errors import V2Error

__all__ = ["ContentTopic", "PubsubTopic", "TopicError", "autoshard"]

_PUBSUB = re.compile(r"^/waku/2/rs/(\d{1,5})/(\d{1,4})$", re.ASCII)  # \d alone matches any Unicode digit


class TopicError(V2Error):
    pass


@dataclass(frozen=True, slots=True, order=True)
class PubsubTopic:
    cluster: int
    shard: int

    def __post_init__(self) -> None:
        if not 0 <= self.cluster <= 65535 or not 0 <= self.shard <= 1023:
            raise TopicError(f"cluster/shard out of range: {self.cluster}/{self.shard}")

    @classmethod
    def parse(cls, s: str) -> PubsubTopic:
        m = _PUBSUB.match(s)
        if not m:
            raise TopicError(f"not a static-sharding pubsub topic: {s!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"/waku/2/rs/{self.cluster}/{self.shard}"


@dataclass(frozen=True, slots=True)
class ContentTopic:
    application: str
    version: str
    name: str
    encoding: str
    generation: int = 0

    @classmethod
    def parse(cls, s: str) -> ContentTopic:
        """``/{app}/{ver}/{name}/{enc}`` or ``/{gen}/{app}/{ver}/{name}/{enc}`` (gen must be 0)."""
        if not s.startswith("/"):
            raise TopicError(f"content topic must start with '/': {s!r}")
        parts = s[1:].split("/")
        if len(parts) == 5:
            gen_s, *parts = parts
            # ASCII only: str.isdigit() is also true for "²" or "٣", which int() refuses or reads.
            if not (gen_s.isascii() and gen_s.isdigit()):
                raise TopicError(f"generation is not a number: {s!r}")
            if gen_s.strip("0"):  # compared as text: int() refuses over 4 300 digits
                raise TopicError(f"generation {gen_s[:20]} is not supported (only 0): {s!r}")
            gen = 0
        elif len(parts) == 4:
            gen = 0
        else:
            raise TopicError(f"content topic needs 4 or 5 segments: {s!r}")
        if not all(parts):
            raise TopicError(f"empty segment in content topic: {s!r}")
        return cls(parts[0], parts[1], parts[2], parts[3], gen)


def autoshard(content_topic: str | ContentTopic, cluster_id: int, num_shards: int) -> PubsubTopic:
    ct = ContentTopic.parse(content_topic) if isinstance(content_topic, str) else content_topic
    if num_shards <= 0:
        raise TopicError("autosharding needs at least one shard")
    digest = hashlib.sha256((ct.application + ct.version).encode()).digest()
    return PubsubTopic(cluster_id, int.from_bytes(digest[24:32], "big") % num_shards)
