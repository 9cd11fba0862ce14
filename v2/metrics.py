"""Node-level v2 metrics (protocol metrics live next to each protocol; the peer manager's in
v2/peers/metrics.py)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ServiceLimitMetrics", "V2Metrics", "per_registry"]


class V2Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # nwaku's per-protocol peer gauge (waku-v2.md §18): a peer counts once under each codec
        # its identify lists, so the total lives in its own gauge (nim-libp2p's libp2p_peers).
        self.connected_peers = Gauge("waku_connected_peers", "Connected peers, by direction and protocol",
                                     ["direction", "protocol"], registry=registry)
        self.peers = Gauge("libp2p_peers", "Total connected peers", registry=registry)
        self.node_messages = Counter("waku_node_messages", "Messages handled by the node, by origin",
                                     ["type"], registry=registry)
        self.errors = Counter("waku_node_errors", "Node-level errors, by type", ["type"], registry=registry)
        self.keep_alive_pings = Counter("waku_node_keep_alive_pings", "Keep-alive pings sent, by result",
                                        ["result"], registry=registry)
        self.keep_alive_disconnects = Counter("waku_node_keep_alive_disconnects",
                                              "Peers disconnected after repeated keep-alive failures",
                                              registry=registry)
        # wss only (v2/wss.py HandshakeFailure): a client whose TLS handshake failed, by reason.
        self.tls_handshake_failures = Counter("waku_node_tls_handshake_failures",
                                              "Failed TLS handshakes on the wss port, by reason",
                                              ["reason"], registry=registry)
        self._peer_labels: set[tuple[str, str]] = set()

    def set_peers(self, total: int, by_direction_protocol: Mapping[tuple[str, str], int]) -> None:
        """Refresh both peer gauges; label sets that no longer occur are removed, not left stale."""
        self.peers.set(total)
        for labels, n in by_direction_protocol.items():
            self.connected_peers.labels(*labels).set(n)
        for gone in self._peer_labels - set(by_direction_protocol):
            self.connected_peers.remove(*gone)
        self._peer_labels = set(by_direction_protocol)


_M = TypeVar("_M")
_PER_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, dict[object, object]] = weakref.WeakKeyDictionary()


def per_registry(make: Callable[[CollectorRegistry], _M], registry: CollectorRegistry) -> _M:
    """The one metrics set ``make`` builds on ``registry``: several components count into one set,
    and prometheus_client refuses a name registered twice on a registry."""
    sets = _PER_REGISTRY.setdefault(registry, {})
    if make not in sets:
        sets[make] = make(registry)
    return cast(_M, sets[make])


class ServiceLimitMetrics:
    """nwaku's service rate-limit metrics (waku/common/rate_limit/service_metrics.nim), one set per
    registry: every request-response service counts into it, labelled by its codec."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("waku_service_requests", "Requests to non-relay services, by service and state "
                                "(served | rejected)", ["service", "state"], registry=registry)
        self.rejected = Counter("waku_service_rate_limited", "Requests refused over a rate limit, by service "
                                "and the bucket that was empty (peer | service)", ["service", "scope"],
                                registry=registry)
        self.limit = Gauge("waku_service_requests_limit", "Applied rate limit of a non-relay service, "
                           "requests per second (absent: no limit)", ["service"], registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ServiceLimitMetrics:
        return per_registry(cls, registry)
