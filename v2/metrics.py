"""Node-level v2 metrics (protocol metrics live next to each protocol)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["V2Metrics"]


class V2Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected_peers = Gauge("waku_connected_peers", "Connected libp2p peers", registry=registry)
        self.dials = Counter("waku_peers_dials", "Dials of static peers, by result", ["result"], registry=registry)
        self.node_messages = Counter("waku_node_messages", "Messages handled by the node, by origin",
                                     ["type"], registry=registry)
        self.errors = Counter("waku_node_errors", "Node-level errors, by type", ["type"], registry=registry)
        self.rejected_connections = Counter("waku_node_rejected_connections",
                                            "Connections closed by the node before use, by reason",
                                            ["reason"], registry=registry)
