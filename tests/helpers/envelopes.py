"""Waku v1 envelopes for tests: sent now (or at ``now``), with the smallest nonce meeting the PoW."""

from __future__ import annotations

import time

from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce

__all__ = ["TOPIC", "mined_envelope"]

TOPIC = bytes.fromhex("1a2b3c4d")  # /waku/1/0x1a2b3c4d/rfc26 on the v2 side


def mined_envelope(data: bytes, *, ttl: int = 20, topic: bytes = TOPIC, now: float | None = None,
                   pow_target: float = 0.002) -> Envelope:
    """An envelope of ``data`` sent at ``now`` (default: the wall clock) that lives ``ttl`` s."""
    expiry = int(time.time() if now is None else now) + ttl
    nonce = mine_smallest_nonce(expiry, ttl, topic, data, pow_target)
    assert nonce is not None, "no nonce within the mining budget"
    return Envelope(expiry, ttl, topic, data, nonce)
