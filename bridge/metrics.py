"""Bridge metrics: nwaku's names kept (dashboards query them) plus skew and migration views.

Skew = how traffic shifts between the networks: per-direction rates over 1 m / 1 h windows and
the share of *originated* traffic that comes from v2 (a v1->v2 transfer originated on v1).
Per-content-topic origin counts have a hard cardinality cap: the first ``topic_cap`` topics get
their own label, every later one is counted as ``other``.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BridgeMetrics", "RateWindow", "TopicCap"]

V1_TO_V2, V2_TO_V1 = "v1_to_v2", "v2_to_v1"
WINDOWS = {"1m": 60, "1h": 3600}


class RateWindow:
    """Events per second over a sliding window, in 1-second buckets (pure; time passed in)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._total = 0

    def add(self, now: float, n: int = 1) -> None:
        sec = int(now)
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([sec, n])
        self._total += n
        self._trim(sec)

    def _trim(self, sec: int) -> None:
        while self._buckets and self._buckets[0][0] <= sec - self.seconds:
            self._total -= self._buckets.popleft()[1]

    def rate(self, now: float) -> float:
        self._trim(int(now))
        return self._total / self.seconds

    def count(self, now: float) -> int:
        self._trim(int(now))
        return self._total


class TopicCap:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._known: set[str] = set()

    def label(self, topic: str) -> str:
        if topic in self._known:
            return topic
        if len(self._known) < self.cap:
            self._known.add(topic)
            return topic
        return "other"


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry, *, topic_cap: int = 50) -> None:
        r = registry
        self.transfers = Counter("waku_bridge_transfers", "Messages bridged, by direction", ["type"], registry=r)
        self.dropped = Counter("waku_bridge_dropped", "Messages not bridged, by reason", ["type"], registry=r)
        self.bytes = Counter("waku_bridge_bytes", "Payload bytes bridged, by direction", ["type"], registry=r)
        self.latency = Histogram("waku_bridge_latency_seconds", "Source timestamp to publish, by direction",
                                 ["type"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.peers = Gauge("waku_bridge_peers", "Connected peers per side", ["side"], registry=r)
        self.rate = Gauge("waku_bridge_rate", "Bridged messages per second, by direction and window",
                          ["type", "window"], registry=r)
        self.v2_share = Gauge("waku_bridge_v2_share", "Share of originated traffic that comes from Waku v2",
                              ["window"], registry=r)
        self.topic_messages = Counter("waku_bridge_topic_messages", "Bridged messages per content topic and origin",
                                      ["topic", "origin"], registry=r)
        self.pending = Gauge("waku_bridge_pending", "Messages seen on one side, translation not yet seen (standby)",
                             registry=r)
        self.dedup_entries = Gauge("waku_bridge_dedup_entries", "Keys in the dedup ledger", registry=r)
        self.pow_above_target = Gauge("waku_bridge_v1_peer_pow_above_target",
                                      "Connected v1 peers requiring more PoW than we mine for", registry=r)
        self._windows = {(d, w): RateWindow(s) for d in (V1_TO_V2, V2_TO_V1) for w, s in WINDOWS.items()}
        self._topics = TopicCap(topic_cap)

    def transfer(self, direction: str, content_topic: str, size: int, latency: float, now: float) -> None:
        self.transfers.labels(direction).inc()
        self.bytes.labels(direction).inc(size)
        self.latency.labels(direction).observe(max(0.0, latency))
        origin = "v1" if direction == V1_TO_V2 else "v2"
        self.topic_messages.labels(self._topics.label(content_topic), origin).inc()
        for w in WINDOWS:
            self._windows[(direction, w)].add(now)

    def refresh(self, now: float) -> None:
        """Update the window gauges (called every second)."""
        for (d, w), win in self._windows.items():
            self.rate.labels(d, w).set(win.rate(now))
        for w in WINDOWS:
            v1 = self._windows[(V1_TO_V2, w)].count(now)
            v2 = self._windows[(V2_TO_V1, w)].count(now)
            if v1 + v2:
                self.v2_share.labels(w).set(v2 / (v1 + v2))

    def rates(self, now: float) -> dict[str, dict[str, float]]:
        return {d: {w: self._windows[(d, w)].rate(now) for w in WINDOWS} for d in (V1_TO_V2, V2_TO_V1)}
