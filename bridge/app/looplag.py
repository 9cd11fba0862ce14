"""How late the trio scheduler wakes a task that asked to sleep: the process's CPU starvation or
a call that blocks the loop.  Everything time-bound in the bridge (lease renewals, keepalives,
the echo grace, store lookups at takeover) is late by the same amount, so this is the first
number to read when those misbehave (docs/operations.md#event-loop-lag)."""

from __future__ import annotations

import logging
from collections import deque

import trio
from prometheus_client import CollectorRegistry, Gauge, Histogram

__all__ = ["LoopLag"]

log = logging.getLogger(__name__)


class LoopLag:
    def __init__(self, registry: CollectorRegistry, *, interval: float = 0.1, window: float = 10.0,
                 warn_at: float = 1.0, warn_every: float = 60.0) -> None:
        self.interval = interval
        self.window = window
        self.warn_at = warn_at
        self.warn_every = warn_every
        self.lag = Histogram("waku_bridge_event_loop_lag_seconds", "How late a 100 ms sleep of the event loop woke",
                             buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=registry)
        self.lag_max = Gauge("waku_bridge_event_loop_lag_max_seconds",
                             "The largest event-loop lag over the last 10 s", registry=registry)
        self.worst = 0.0  # the largest lag of the last window (s), as the gauge says
        self._recent: deque[tuple[float, float]] = deque()
        self._warned = -warn_every

    def record(self, now: float, lag: float) -> None:
        """Pure bookkeeping (``now`` from trio.current_time()): histogram, windowed max, warning."""
        self.lag.observe(lag)
        self._recent.append((now, lag))
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        self.worst = max(v for _, v in self._recent)
        self.lag_max.set(self.worst)
        if lag >= self.warn_at and now - self._warned >= self.warn_every:
            self._warned = now
            log.warning("the event loop ran %.1f s late (CPU starved, or a blocking call): renewals, "
                        "keepalives and deadlines are late by as much", lag)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            due = trio.current_time() + self.interval
            await trio.sleep_until(due)
            now = trio.current_time()
            self.record(now, max(0.0, now - due))
