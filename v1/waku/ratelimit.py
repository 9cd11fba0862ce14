"""Per-peer token buckets for packets/s and bytes/s (status-go rate_limiter.go; waku-v1.md §10)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_LEGIT_PACKET", "PeerRateLimiter", "TokenBucket"]

# A full Messages packet (<= 1 MiB of envelopes, waku-v1.md §7) plus snappy's worst-case growth.
MAX_LEGIT_PACKET = (1 << 20) + (1 << 16)


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second; 0 = unlimited
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, n: float, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass(slots=True)
class PeerRateLimiter:
    """Counts exceedances; ``abusive`` once ``tolerance`` happen within one refill window."""

    packets: TokenBucket
    bytes: TokenBucket
    tolerance: int = 5
    exceeded: int = 0
    _window_start: float = 0.0

    @classmethod
    def create(cls, packets_per_s: float, bytes_per_s: float, tolerance: int = 5) -> PeerRateLimiter:
        # One second of burst, as status-go's buckets (capacity = rate).  The byte bucket holds at
        # least one full legitimate Messages packet: with a smaller capacity such a packet could
        # never pass, and a peer batching 200 envelopes/s into 1 MiB packets would be "abuse".
        return cls(TokenBucket(packets_per_s, max(packets_per_s, 1.0)),
                   TokenBucket(bytes_per_s, max(bytes_per_s, MAX_LEGIT_PACKET)), tolerance)

    def check(self, size: int, now: float) -> str | None:
        """None if within limits, else the kind exceeded ("packets" | "bytes")."""
        kind = None
        if not self.packets.take(1, now):
            kind = "packets"
        elif not self.bytes.take(size, now):
            kind = "bytes"
        if kind is not None:
            if now - self._window_start > 1.0:
                self._window_start, self.exceeded = now, 0
            self.exceeded += 1
        return kind

    @property
    def abusive(self) -> bool:
        return self.exceeded >= self.tolerance
