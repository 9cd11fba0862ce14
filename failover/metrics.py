"""Failover metrics (names under waku_bridge_ so one dashboard row covers the instance).

nwaku has no leader-election metrics, so these names are ours; deploy/prometheus/alerts.yml and
the Grafana board use ``waku_bridge_role``, ``waku_bridge_leader_changes_total``,
``waku_bridge_failover_errors_total`` and ``waku_bridge_fencing_token``.
"""

from __future__ import annotations

from collections.abc import Callable

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
        self.step_downs = Counter("waku_bridge_step_downs", "Leadership lost, by reason (deadline: no renewal in "
                                  "time; lost: the store says it is gone; resign; error)", ["reason"],
                                  registry=registry)
        self.rpc = Histogram("waku_bridge_failover_rpc_seconds", "Latency of successful backend operations "
                             "(compare with failover.rpc_timeout)", ["op"],
                             buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2), registry=registry)
        self.deadline_margin = Gauge("waku_bridge_failover_deadline_margin_seconds", "While active: seconds "
                                     "until this instance steps down unless a renewal succeeds (0 on a standby)",
                                     registry=registry)
        self._health(registry)

    def _health(self, registry: CollectorRegistry) -> None:
        self.health = Gauge("waku_bridge_health", "1 if this side has had a usable peer recently enough, "
                            "or (disk) the data dir takes writes (failover/health.py), by side", ["side"],
                            registry=registry)
        self.withheld = Gauge("waku_bridge_campaign_withheld", "1 while this standby does not campaign: a side "
                              "is unhealthy and a healthy instance exists", registry=registry)
        for side in ("v1", "v2", "disk"):
            self.health.labels(side)

    def bind(self, deadline_margin: Callable[[], float]) -> None:
        """Read the live deadline margin (the elector's ``deadline_margin``) at scrape time."""
        self.deadline_margin.set_function(deadline_margin)
