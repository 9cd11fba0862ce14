"""Peer management and peer exchange metrics (nwaku names, waku-v2.md §18).

The connection manager, the peer exchange service and its client all count into one set per
registry, so :meth:`PeerMetrics.of` hands out a single instance per ``CollectorRegistry``
(registering a name twice on one registry is an error in prometheus_client).
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["PeerMetrics"]

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, PeerMetrics] = weakref.WeakKeyDictionary()


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
        self.discovered = Counter("waku_discovery_peers", "Peers offered by discovery, by source and result",
                                  ["source", "result"], registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> PeerMetrics:
        m = _BY_REGISTRY.get(registry)
        if m is None:
            m = _BY_REGISTRY[registry] = cls(registry)
        return m
