"""Peer management and peer exchange metrics (nwaku names, waku-v2.md §18).

The connection manager, the peer exchange service and its client all count into one set per
registry, so :meth:`PeerMetrics.of` hands out a single instance per ``CollectorRegistry``
(registering a name twice on one registry is an error in prometheus_client).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from v2.metrics import per_registry

__all__ = ["PeerMetrics"]

class PeerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dials = Counter("waku_peers_dials", "Outbound dials by the connection manager, by outcome",
                             ["outcome"], registry=registry)
        self.peer_store_size = Gauge("waku_peer_store_size", "Peers known to the connection manager",
                                     registry=registry)
        self.managed_connected = Gauge("waku_peer_manager_connected", "Connected peers, by origin",
                                       ["source"], registry=registry)
        self.pruned = Counter("waku_peer_manager_pruned", "Peers disconnected above the maximum",
                              registry=registry)
        self.px_peers_received = Counter("waku_px_peers_received", "Valid ENRs received via peer exchange",
                                         registry=registry)  # exported as waku_px_peers_received_total
        self.px_peers_sent = Counter("waku_px_peers_sent", "ENRs sent to peer exchange requesters",
                                     registry=registry)
        self.px_errors = Counter("waku_px_errors", "Peer exchange errors, by type", ["type"], registry=registry)
        self.peers = Gauge("waku_peer_manager_peers", "Connected peers, by origin and direction",
                           ["source", "direction"], registry=registry)
        self.relay_peers = Gauge("waku_peer_manager_relay_peers", "Connected peers relaying a topic we relay",
                                 registry=registry)
        self.churn = Counter("waku_peer_manager_churn", "Peers connected and disconnected, by direction",
                             ["event", "direction"], registry=registry)
        self.pruned_reason = Counter("waku_peer_manager_prunes", "Peers the manager disconnected, by reason",
                                     ["reason"], registry=registry)
        self.colocation = Counter("waku_peer_manager_colocation_pruned",
                                  "Connections closed above --ip-colocation-limit, by direction", ["direction"],
                                  registry=registry)
        # Once per start: from the manager's start to MIN_RELAY_PEERS relay peers.
        self.bootstrap_seconds = Gauge("waku_peer_manager_bootstrap_seconds",
                                       "Seconds from start until 6 relay peers were connected", registry=registry)
        self.bootstrap = Histogram("waku_peer_manager_bootstrap_latency_seconds",
                                   "Start to 6 relay peers, once per start", registry=registry,
                                   buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
        self.discovered = Counter("waku_discovery_peers", "Peers offered by discovery, by source and result",
                                  ["source", "result"], registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> PeerMetrics:
        return per_registry(cls, registry)
