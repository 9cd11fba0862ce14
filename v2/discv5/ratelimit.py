"""Per-IP token buckets for inbound packets (pure; ``now`` passed in)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["IpRateLimiter"]


class IpRateLimiter:
    def __init__(self, rate: float, burst: float, *, max_ips: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_ips = max_ips
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ip -> (tokens, last)

    def allow(self, ip: str, now: float) -> bool:
        tokens, last = self._buckets.pop(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_ips:
            self._buckets.popitem(last=False)
        return ok
