"""LightPush service metrics, nwaku's names (waku-v2.md §18): v3 and legacy counters apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["LightpushMetrics"]


class LightpushMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # type = nwaku's label ("PushRequest"); status = the v3 code we answered.
        self.v3_messages = Counter("waku_lightpush_v3_messages", "LightPush v3 requests by type and answered status",
                                   ["type", "status"], registry=registry)
        self.v3_errors = Counter("waku_lightpush_v3_errors", "LightPush v3 failures by type", ["type"],
                                 registry=registry)
        # Legacy: status = "success" | "failure" (is_success).
        self.messages = Counter("waku_lightpush_messages", "Legacy lightpush requests by type and result",
                                ["type", "status"], registry=registry)
        self.errors = Counter("waku_lightpush_errors", "Legacy lightpush failures by type", ["type"],
                              registry=registry)
