"""discv5 metrics (nwaku waku/discovery/waku_discv5.nim and nim-eth discoveryv5 names where they exist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Discv5Metrics"]


class Discv5Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.discovered = Counter("waku_discv5_discovered", "Waku peers found by discv5 that passed the filter",
                                  registry=registry)
        self.errors = Counter("waku_discv5_errors", "discv5 errors, by type", ["type"], registry=registry)
        self.dropped = Counter("waku_discv5_dropped_packets", "Inbound packets dropped, by reason", ["reason"],
                               registry=registry)
        self.packets = Counter("waku_discv5_packets", "UDP packets, by direction", ["direction"], registry=registry)
        self.requests = Counter("discovery_message_requests_outgoing", "Outgoing discv5 requests, by result",
                                ["response"], registry=registry)
        self.table_nodes = Gauge("routing_table_nodes", "Nodes in the discv5 routing table", ["state"],
                                 registry=registry)
        self.lookups = Counter("waku_discv5_lookups", "Completed discv5 lookups", registry=registry)
        self.filtered = Counter("waku_discv5_filtered", "Found records refused by the Waku filter, by reason",
                                ["reason"], registry=registry)
        self.records_served = Gauge("waku_discv5_records_served", "Records of other nodes sent in NODES answers",
                                    registry=registry)
        self.enr_seq = Gauge("waku_discv5_enr_seq", "Sequence number of our advertised ENR", registry=registry)
