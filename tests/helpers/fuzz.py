"""Decoder fuzzing shared by the v2 codec tests (house rule: bad input is only ever a V2Error)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from hypothesis import strategies as st

from v2.errors import V2Error

__all__ = ["FLIPS", "decode_or_refuse", "mutate", "nested_rlp_lists"]

# Up to four (position, new byte) overwrites; positions wrap around the frame.
FLIPS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


def mutate(frame: bytes, flips: Sequence[tuple[int, int]]) -> bytes:
    buf = bytearray(frame)
    for pos, val in flips:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf)


def decode_or_refuse(decoders: Iterable[Callable[[bytes], object]], data: bytes) -> None:
    """Each decoder returns or raises a V2Error; any other exception fails the test."""
    for decode in decoders:
        try:
            decode(data)
        except V2Error:
            pass


def nested_rlp_lists(depth: int) -> bytes:
    """``depth`` RLP lists inside each other: pyrlp's recursive decoder runs out of stack near 1 000."""
    out = b"\xc0"
    for _ in range(depth):
        n = len(out).to_bytes((len(out).bit_length() + 7) // 8, "big")
        out = (bytes([0xC0 + len(out)]) if len(out) < 56 else bytes([0xF7 + len(n)]) + n) + out
    return out
