"""Bridge metrics: nwaku's names kept (dashboards query them) plus skew and migration views.

nwaku's ``waku_bridge_transfers_total{type="v1_to_v2"|"v2_to_v1"}`` and
``waku_bridge_dropped_total{type=<reason>}`` keep their names and labels (bridge-prior-art.md §8,
§12.6); the drop reasons are :class:`bridge.translate.DropReason` values.

Skew = how traffic shifts between the networks: per-direction rates over 1 m / 1 h windows and
the share of *originated* traffic that comes from v2 (a v1->v2 transfer originated on v1, a v2->v1
transfer on v2).  The windows are pure sliding counters with the time passed in; the gauges are
set from them by :meth:`BridgeMetrics.refresh`, which the pipeline calls every second.

Per-content-topic origin counts have a hard cardinality cap: the ``topic_cap`` busiest topics
(re-ranked every minute on recent volume, see :class:`TopicCap`) get their own label, every
other topic is counted as ``other``.  The exact per-topic history lives in the persisted hourly
aggregates (``waku-bridge report``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.disk import Store

__all__ = ["OTHER", "V1_TO_V2", "V2_TO_V1", "WINDOWS", "BridgeMetrics", "RateWindow", "TopicCap",
           "TransferListener", "origin_of", "v2_share"]

V1_TO_V2, V2_TO_V1 = "v1_to_v2", "v2_to_v1"
WINDOWS = {"1m": 60, "1h": 3600}
OTHER = "other"

TransferListener = Callable[[str, str, int, float], None]
"""``(direction, content_topic, size, now)``: called for every transfer (the aggregates writer)."""


def origin_of(direction: str) -> str:
    """The network a transfer's message originated on ("v1" or "v2")."""
    return "v1" if direction == V1_TO_V2 else "v2"


class RateWindow:
    """Events per second over a sliding window, in 1-second buckets (pure; time passed in).

    Memory is bounded by the window length in seconds (one bucket per second that saw events).
    Time going backwards (a wall-clock step) is folded into the newest bucket rather than
    reordering the deque, so the window stays consistent.
    """

    def __init__(self, seconds: int) -> None:
        if seconds < 1:
            raise ValueError("a window is at least 1 s")
        self.seconds = seconds
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._total = 0

    def add(self, now: float, n: int = 1) -> None:
        sec = int(now)
        if self._buckets and self._buckets[-1][0] >= sec:
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
    """The top ``cap`` content topics by recent volume get their own label; the rest are :data:`OTHER`.

    Pure (time passed in).  Counts are kept for at most ``4 * cap`` candidate topics with the
    space-saving rule (a new topic replaces the least-counted candidate and inherits its count),
    so memory is bounded whatever the network sends.  While labels are free, topics are admitted
    as they come; every ``rerank_every`` seconds the labelled set becomes the top ``cap``
    candidates and the counts are halved, so the set follows recent traffic: a burst of junk
    topics at start-up cannot hold the labels once real traffic arrives.  :meth:`rerank`
    returns the topics that lost their label (their series are removed; Prometheus' ``rate()``
    treats a topic that comes back as a counter reset).
    """

    def __init__(self, cap: int, *, rerank_every: float = 60.0) -> None:
        self.cap = cap
        self.rerank_every = rerank_every
        self._max_candidates = max(4 * cap, cap + 8)
        self._counts: dict[str, float] = {}
        self._known: set[str] = set()
        self._next_rerank: float | None = None

    def __len__(self) -> int:
        return len(self._known)

    def _count(self, topic: str) -> None:
        if topic in self._counts:
            self._counts[topic] += 1
            return
        floor = 0.0
        if len(self._counts) >= self._max_candidates:
            victim = min((t for t in self._counts if t not in self._known), key=self._counts.__getitem__,
                         default=None)
            if victim is None:  # every candidate is labelled (cap >= candidates): nothing to displace
                return
            floor = self._counts.pop(victim)
        self._counts[topic] = floor + 1

    def label(self, topic: str) -> str:
        if topic == OTHER:
            return OTHER
        self._count(topic)
        if topic in self._known:
            return topic
        if len(self._known) < self.cap:
            self._known.add(topic)
            return topic
        return OTHER

    def due(self, now: float) -> bool:
        if self._next_rerank is None:
            self._next_rerank = now + self.rerank_every
        return now >= self._next_rerank

    def rerank(self, now: float) -> list[str]:
        """Make the labelled set the current top ``cap``; returns the topics that lost their label."""
        self._next_rerank = now + self.rerank_every
        top = sorted(self._counts, key=lambda t: (-self._counts[t], t))[:self.cap]
        evicted = sorted(self._known - set(top))
        self._known = set(top)
        self._counts = {t: c / 2 for t, c in self._counts.items() if c / 2 >= 0.5 or t in self._known}
        return evicted


def v2_share(v1_count: float, v2_count: float) -> float | None:
    """Share of originated messages that came from v2; None when nothing was originated."""
    total = v1_count + v2_count
    return v2_count / total if total else None


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry, *, topic_cap: int = 50) -> None:
        r = registry
        self.transfers = Counter("waku_bridge_transfers", "Messages bridged, by direction", ["type"], registry=r)
        self.dropped = Counter("waku_bridge_dropped", "Messages not bridged, by reason", ["type"], registry=r)
        self.bytes = Counter("waku_bridge_bytes", "Payload bytes bridged, by direction", ["type"], registry=r)
        self.latency = Histogram("waku_bridge_latency_seconds",
                                 "Bridging latency: received from one network to published on the other",
                                 ["type"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
                                 registry=r)
        self.peers = Gauge("waku_bridge_peers", "Connected peers per side", ["side"], registry=r)
        self.rate = Gauge("waku_bridge_rate", "Bridged messages per second, by direction and window",
                          ["type", "window"], registry=r)
        self.v2_share = Gauge("waku_bridge_v2_share",
                              "Share of originated traffic that comes from Waku v2 (window 1m, 1h, total)",
                              ["window"], registry=r)
        self.topic_messages = Counter("waku_bridge_topic_messages",
                                      "Bridged messages per content topic and origin (capped; the rest is 'other')",
                                      ["topic", "origin"], registry=r)
        self.pending = Gauge("waku_bridge_pending", "Messages seen on one side, translation not yet seen (standby)",
                             registry=r)
        self.dedup_entries = Gauge("waku_bridge_dedup_entries", "Keys in the dedup ledger", registry=r)
        self.outbox = Gauge("waku_bridge_outbox", "v1->v2 messages held while the v2 side has no relay peer on "
                            "their topic (active)", registry=r)
        self.held_no_peers = Counter("waku_bridge_held_no_peers", "v1->v2 messages held for want of a v2 relay "
                                     "peer on their topic", registry=r)
        self.takeover_skipped = Counter("waku_bridge_takeover_skipped",
                                        "Pending messages not bridged on takeover, by reason", ["reason"], registry=r)
        self.takeover_history_queries = Counter("waku_bridge_takeover_history_queries",
                                                "Sink history queries at takeover, per source, by result",
                                                ["result"], registry=r)
        self.pow_above_target = Gauge("waku_bridge_v1_peer_pow_above_target",
                                      "Connected v1 peers requiring more PoW than we mine for", registry=r)
        self.aggregates_flushes = Counter("waku_bridge_aggregates_flushes",
                                          "Hourly-aggregate flushes to the data dir, by result", ["result"],
                                          registry=r)
        # The standby's audit of the active (bridge/audit.py): checked = met + missed.
        self.audit_checked = Counter("waku_bridge_audit_checked",
                                     "Messages a standby expected the active to bridge, checked (met or missed)",
                                     ["direction"], registry=r)
        self.audit_missed = Counter("waku_bridge_audit_missed",
                                    "Messages a standby saw whose translation did not arrive within the deadline",
                                    ["direction"], registry=r)
        # Writes to the data dir that failed (bridge/disk.py), by store; 1 while none is failing.
        self.disk_errors = Counter("waku_bridge_disk_errors", "Failed writes to the data dir, by store",
                                   ["store"], registry=r)
        self.disk_ok = Gauge("waku_bridge_disk_ok", "1 while every store of the data dir takes writes", registry=r)
        self.dedup_unsaved = Gauge("waku_bridge_dedup_unsaved",
                                   "Dedup keys kept in memory only: their commit failed, retried with backoff",
                                   registry=r)
        self.disk_ok.set(1)
        for store in Store:
            self.disk_errors.labels(store.value)
        self._windows = {(d, w): RateWindow(s) for d in (V1_TO_V2, V2_TO_V1) for w, s in WINDOWS.items()}
        self._totals = {V1_TO_V2: 0, V2_TO_V1: 0}
        self._topics = TopicCap(topic_cap)
        self._listeners: list[TransferListener] = []
        for d in (V1_TO_V2, V2_TO_V1):  # export zeros from the start: absent series break dashboards
            self.transfers.labels(d)
            self.bytes.labels(d)
            self.audit_checked.labels(d)
            self.audit_missed.labels(d)

    def pow_above_target_now(self) -> float:
        """The current value of ``pow_above_target`` (through collect(), not prometheus internals)."""
        return float(next(iter(self.pow_above_target.collect())).samples[0].value)

    def add_listener(self, listener: TransferListener) -> None:
        self._listeners.append(listener)

    def transfer(self, direction: str, content_topic: str, size: int, latency: float | None, now: float) -> None:
        """One message bridged; ``latency`` = receive -> publish (None: not measured, e.g. takeover)."""
        self.transfers.labels(direction).inc()
        self.bytes.labels(direction).inc(size)
        if latency is not None:
            self.latency.labels(direction).observe(max(0.0, latency))
        self.topic_messages.labels(self._topics.label(content_topic), origin_of(direction)).inc()
        self._totals[direction] += 1
        for w in WINDOWS:
            self._windows[(direction, w)].add(now)
        for listener in self._listeners:
            listener(direction, content_topic, size, now)

    def refresh(self, now: float) -> None:
        """Update the window gauges (called every second) and re-rank the labelled topics."""
        if self._topics.due(now):
            for topic in self._topics.rerank(now):
                for origin in ("v1", "v2"):
                    with contextlib.suppress(KeyError):  # a series only exists once counted
                        self.topic_messages.remove(topic, origin)
        for (d, w), win in self._windows.items():
            self.rate.labels(d, w).set(win.rate(now))
        for w, share in self.shares(now).items():
            if share is not None:
                self.v2_share.labels(w).set(share)

    def rates(self, now: float) -> dict[str, dict[str, float]]:
        return {d: {w: self._windows[(d, w)].rate(now) for w in WINDOWS} for d in (V1_TO_V2, V2_TO_V1)}

    def shares(self, now: float) -> dict[str, float | None]:
        """v2 share of originated traffic per window ("1m", "1h") and since start ("total")."""
        out = {w: v2_share(self._windows[(V1_TO_V2, w)].count(now), self._windows[(V2_TO_V1, w)].count(now))
               for w in WINDOWS}
        out["total"] = v2_share(self._totals[V1_TO_V2], self._totals[V2_TO_V1])
        return out
