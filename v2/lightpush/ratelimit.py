"""A token bucket for nwaku's ``--rate-limit=lightpush:<volume>/<period>`` (pure; ``now`` injected).

nwaku answers a request over the limit with 429 TOO_MANY_REQUESTS and request_id "N/A" without
decoding it (waku-v2.md §10.1); the service does the same.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(self, volume: int, period: float) -> None:
        if volume <= 0 or period <= 0:
            raise ValueError("a rate limit needs a positive volume and period")
        self.volume = volume
        self.period = period
        self._tokens = float(volume)
        self._last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token if there is one; refills continuously at volume/period."""
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.volume), self._tokens + (now - self._last) * self.volume / self.period)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
