"""Health-aware leadership on etcd (failover/health.py; the health keys of failover/etcd/elector.py)
against a real etcd member: the unhealthy active resigns to the healthy standby, which then leads;
the unhealthy one withholds its campaign but knows the leader; the healthy one leaving (its lease
revoked, its health key gone) lets the unhealthy one lead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from failover.elector import StepDown
from failover.etcd.elector import EtcdElector
from failover.etcd.wire import b64, parse_kvs, prefix_end
from failover.health import Health, HealthConfig
from failover.lease import LeaseTiming
from failover.metrics import FailoverMetrics
from tests.helpers.etcd import EtcdCluster, etcd_available
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.skipif(not etcd_available(), reason="needs the etcd binary (scripts/setup.sh)")

FAST = LeaseTiming(ttl=3, renew_interval=0.5, rpc_timeout=0.5, safety=0.5)
QUICK = HealthConfig(unhealthy_after=1.0, recover_after=0.2, min_tenure=1.0)


async def test_etcd_electors_hand_over_for_health(tmp_path: Path) -> None:
    cluster = EtcdCluster.start(tmp_path, 1)
    try:
        health = {"A": Health(), "B": Health()}
        metrics = FailoverMetrics(CollectorRegistry(), "A")
        a = EtcdElector(cluster.endpoints, "A", name="health", timing=FAST, metrics=metrics)
        b = EtcdElector(cluster.endpoints, "B", name="health", timing=FAST)
        a.set_health_source(lambda: health["A"], QUICK)
        b.set_health_source(lambda: health["B"], QUICK)
        async with trio.open_nursery() as n:
            await n.start(a.run)
            await a.campaign()
            b_scope = trio.CancelScope()

            async def run_b() -> None:
                with b_scope:
                    await b.run()

            n.start_soon(run_b)
            await wait_until(lambda: "A" in b.others_health and "B" in a.others_health, 20, "health keys exchanged")
            resp = await a.client.post("/v3/kv/range", {"key": b64(a.health_prefix),
                                                        "range_end": b64(prefix_end(a.health_prefix))})
            reports = {kv.key.decode(): json.loads(kv.value) for kv in parse_kvs(resp)}
            assert reports == {"/bridge-election/.health/health/A": {"disk": True, "v1": True, "v2": True},
                               "/bridge-election/.health/health/B": {"disk": True, "v1": True, "v2": True}}
            assert all(kv.lease for kv in parse_kvs(resp))  # on the session leases: gone with their writer
            health["A"] = Health(v2=False)
            await wait_until(b.is_leader, 20, "B to take over from the unhealthy A")
            assert metrics.step_downs.labels(StepDown.UNHEALTHY.value)._value.get() == 1
            await wait_until(lambda: a.withheld and a.leader == "B", 20, "A withholding, knowing B leads")
            assert not a.is_leader()
            b_scope.cancel()  # B resigns and revokes its lease: its health key goes with it
            await wait_until(a.is_leader, 20, "A to lead once no healthy instance is left")
            n.cancel_scope.cancel()
    finally:
        cluster.close()
