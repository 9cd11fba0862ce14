"""Proof of work of Waku v1 envelopes (waku-v1.md §6).

``pow = 2**leading_zero_bits(keccak256(short_rlp ‖ nonce_be64)) / (size · ttl)``.  ``size`` differs
by implementation: the spec and status-go use len(short_rlp), nim uses 20 + len(data).  Our posts
are mined for STRICT (the larger size, i.e. the lower PoW), so both kinds of peers accept them,
and the nonce is the *smallest* that meets the target: every bridge instance finds the same one.
"""

from __future__ import annotations

from enum import Enum

import sha3  # safe-pysha3: Keccak-256 with copy(), so mining reuses the midstate

from v1.waku.envelope import Envelope

__all__ = ["SizeRule", "calc_pow", "leading_zero_bits", "mine_smallest_nonce", "pow_hash", "pow_size",
           "pow_value", "required_bits"]


class SizeRule(Enum):
    SPEC = "spec"  # len(rlp([expiry, ttl, topic, data])) — 6/WAKU1, status-go
    NIM = "nim"  # 20 + len(data) — nim-eth / nwaku
    STRICT = "strict"  # the larger of the two: what both verifiers accept


def pow_size(short_rlp_len: int, data_len: int, rule: SizeRule) -> int:
    if rule is SizeRule.SPEC:
        return short_rlp_len
    if rule is SizeRule.NIM:
        return 20 + data_len
    return max(short_rlp_len, 20 + data_len)


def pow_hash(env: Envelope) -> bytes:
    h = sha3.keccak_256(env.short_rlp)
    h.update(env.nonce.to_bytes(8, "big"))
    return h.digest()


def leading_zero_bits(h: bytes) -> int:
    return 8 * len(h) - int.from_bytes(h, "big").bit_length()


def calc_pow(size: int, ttl: int, h: bytes) -> float:
    return float(2 ** leading_zero_bits(h)) / (size * ttl)


def pow_value(env: Envelope, rule: SizeRule = SizeRule.SPEC) -> float:
    if env.ttl == 0:
        return 0.0
    return calc_pow(pow_size(len(env.short_rlp), len(env.data), rule), env.ttl, pow_hash(env))


def required_bits(target: float, size: int, ttl: int) -> int | None:
    """Smallest number of leading zero bits whose PoW (as a verifier computes it) is >= target."""
    if target <= 0:
        return 0
    for bits in range(257):
        if float(2**bits) / (size * ttl) >= target:
            return bits
    return None


def mine_smallest_nonce(
    expiry: int,
    ttl: int,
    topic: bytes,
    data: bytes,
    target_pow: float,
    *,
    size_rule: SizeRule = SizeRule.STRICT,
    max_nonce: int | None = None,
) -> int | None:
    """The smallest nonce >= 0 whose PoW meets ``target_pow``, or None if none <= ``max_nonce``.

    Deterministic (no randomness, no clock), so two bridges mine the same envelope.
    """
    base = Envelope(expiry, ttl, topic, data, 0)
    if ttl == 0:
        return None
    bits = required_bits(target_pow, pow_size(len(base.short_rlp), len(data), size_rule), ttl)
    if bits is None:
        return None
    if bits == 0:
        return 0
    threshold = 1 << (256 - bits)  # hash (as an integer) must be below this
    mid = sha3.keccak_256(base.short_rlp)
    limit = (1 << 64) - 1 if max_nonce is None else max_nonce
    nonce = 0
    while nonce <= limit:
        h = mid.copy()
        h.update(nonce.to_bytes(8, "big"))
        if int.from_bytes(h.digest(), "big") < threshold:
            return nonce
        nonce += 1
    return None
