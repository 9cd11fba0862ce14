"""Filter service metrics, nwaku's names (waku-v2.md §18; nim-metrics adds ``_total`` to counters, as
prometheus_client does)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["FilterMetrics"]


class FilterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # type = nwaku's label (the request type, e.g. SUBSCRIBE); status = the code we answered.
        self.requests = Counter("waku_filter_requests", "Filter subscribe requests by type and answered status",
                                ["type", "status"], registry=registry)
        # type = nwaku's error kinds: decode_rpc_failure, push_timeout_failure, dial_failure, ...
        self.errors = Counter("waku_filter_errors", "Filter service errors by type", ["type"], registry=registry)
        self.subscriptions = Gauge("waku_filter_subscriptions", "Peers with a filter subscription",
                                   registry=registry)
        self.request_duration = Histogram("waku_filter_request_duration_seconds",
                                          "Time to handle a filter subscribe request", ["type"],
                                          registry=registry)
        self.handle_message_duration = Histogram("waku_filter_handle_message_duration_seconds",
                                                 "Time to match a message and queue its pushes",
                                                 registry=registry)
        self.pushes = Counter("waku_filter_pushes", "MessagePush writes to subscribers, by result",
                              ["result"], registry=registry)
        # nwaku has no counter for these (it logs them): reason = expired (no ping within the
        # subscription timeout) | no_push_codec (identify does not list filter-push, §9).
        self.subscribers_removed = Counter("waku_filter_subscribers_removed",
                                           "Subscribers removed by maintenance, by reason", ["reason"],
                                           registry=registry)
