"""Failover metrics (names under waku_bridge_ so one dashboard row covers the instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["FailoverMetrics"]


class FailoverMetrics:
    def __init__(self, registry: CollectorRegistry, identity: str) -> None:
        self.role = Gauge("waku_bridge_role", "1 if this instance is the active bridge, else 0", ["peer_id"],
                          registry=registry).labels(identity)
        self.leader_changes = Counter("waku_bridge_leader_changes", "Times this instance became or stopped being "
                                      "leader", ["event"], registry=registry)
        self.fencing_token = Gauge("waku_bridge_fencing_token", "Fencing token of the current term", registry=registry)
        self.takeover = Histogram("waku_bridge_takeover_seconds", "From elected to live (pending bridged)",
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=registry)
        self.errors = Counter("waku_bridge_failover_errors", "Backend errors by kind", ["kind"], registry=registry)
        self.step_downs = Counter("waku_bridge_step_downs", "Leadership lost, by reason", ["reason"], registry=registry)
