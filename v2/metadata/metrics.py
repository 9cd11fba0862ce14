"""Metadata metrics (nwaku has none for this protocol; names follow its waku_<protocol>_* style)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["MetadataMetrics"]


class MetadataMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("waku_metadata_requests", "Metadata exchanges, by role (served, queried)",
                                ["type"], registry=registry)
        self.errors = Counter("waku_metadata_errors", "Metadata exchanges that failed, by reason",
                              ["type"], registry=registry)
        self.rejected_peers = Counter("waku_metadata_rejected_peers",
                                      "Peers disconnected after the metadata handshake, by reason",
                                      ["reason"], registry=registry)
