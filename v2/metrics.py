"""Node-level v2 metrics (protocol metrics live next to each protocol; the peer manager's in
v2/peers/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["V2Metrics"]


class V2Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected_peers = Gauge("waku_connected_peers", "Connected libp2p peers", registry=registry)
        self.node_messages = Counter("waku_node_messages", "Messages handled by the node, by origin",
                                     ["type"], registry=registry)
        self.errors = Counter("waku_node_errors", "Node-level errors, by type", ["type"], registry=registry)
