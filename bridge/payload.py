"""Unencrypted, unsigned RFC 26 (26/WAKU-PAYLOAD) wrapping with deterministic (zero) padding.

``flags(1) ‖ length (little-endian, N = 1..3 bytes; N in flags bits 0-1) ‖ payload ‖ padding`` up
to a multiple of 256 bytes (a full 256 when already aligned).  nwaku padded with random bytes,
which made two bridges' envelopes differ; zeros keep translation deterministic.
"""

from __future__ import annotations

__all__ = ["padding_length", "unwrap_unencrypted", "wrap_unencrypted"]

_BLOCK = 256
_SIGNATURE_LEN = 65


def _length_bytes(n: int) -> int:
    for size in (1, 2, 3):
        if n < 1 << (8 * size):
            return size
    raise ValueError("payload too large for a 3-byte length field")


def padding_length(payload_len: int, *, signed: bool = False) -> int:
    total = 1 + _length_bytes(payload_len) + payload_len + (_SIGNATURE_LEN if signed else 0)
    rem = total % _BLOCK
    return _BLOCK - rem if rem else _BLOCK


def wrap_unencrypted(payload: bytes) -> bytes:
    n = _length_bytes(len(payload))
    return bytes([n]) + len(payload).to_bytes(n, "little") + payload + b"\0" * padding_length(len(payload))


def unwrap_unencrypted(data: bytes) -> bytes:
    """Inverse of :func:`wrap_unencrypted` (unsigned only); ValueError if it is not one."""
    if not data:
        raise ValueError("empty")
    flags = data[0]
    n = flags & 0x03
    if flags & 0x04 or n == 0 or len(data) < 1 + n:
        raise ValueError("not an unsigned RFC 26 payload")
    size = int.from_bytes(data[1:1 + n], "little")
    if 1 + n + size > len(data):
        raise ValueError("length exceeds data")
    return data[1 + n:1 + n + size]
