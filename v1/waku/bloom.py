"""The 64-byte topic bloom filter (waku-v1.md §8).

status-go/geth *assign* the bit within a byte (the last of colliding bits wins); nim ORs.  We test
envelopes with the assignment variant (a subset of the OR variant, so it matches filters built
either way) and advertise the OR variant for our own topics.
"""

from __future__ import annotations

__all__ = ["BLOOM_LEN", "EMPTY_BLOOM", "FULL_BLOOM", "bloom_matches", "bloom_or", "topic_to_bloom"]

BLOOM_LEN = 64
FULL_BLOOM = b"\xff" * BLOOM_LEN
EMPTY_BLOOM = b"\x00" * BLOOM_LEN


def _indices(topic: bytes) -> list[int]:
    return [topic[i] + (256 if topic[3] & (1 << i) else 0) for i in range(3)]


def topic_to_bloom(topic: bytes, *, assign: bool = True) -> bytes:
    b = bytearray(BLOOM_LEN)
    for n in _indices(topic):
        if assign:
            b[n // 8] = 1 << (n % 8)
        else:
            b[n // 8] |= 1 << (n % 8)
    return bytes(b)


def bloom_or(topics: list[bytes]) -> bytes:
    out = bytearray(BLOOM_LEN)
    for t in topics:
        for i, v in enumerate(topic_to_bloom(t, assign=False)):
            out[i] |= v
    return bytes(out)


def bloom_matches(filter_: bytes, sample: bytes) -> bool:
    """The sample's bits are a subset of the filter's."""
    return all((f | s) == f for f, s in zip(filter_, sample, strict=True))
