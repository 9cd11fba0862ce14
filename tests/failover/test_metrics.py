"""The elector keeps the failover metrics: role, token, leader changes, step-downs, errors, RPCs."""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from failover.etcd.elector import EtcdElector
from failover.lease import LeaseTiming
from failover.metrics import FailoverMetrics
from failover.sqlite_backend import SqliteElector

FAST = LeaseTiming(ttl=2.0, renew_interval=0.3, rpc_timeout=0.2, safety=0.3)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_sqlite_elector_metrics(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    e = SqliteElector(tmp_path / "l.sqlite3", "A", timing=FAST, metrics=FailoverMetrics(reg, "A"))
    assert value(reg, "waku_bridge_role", peer_id="A") == 0
    async with trio.open_nursery() as n:
        await n.start(e.run)
        with trio.fail_after(3):
            term = await e.campaign()
        await trio.sleep(0.4)  # one renew
        assert value(reg, "waku_bridge_role", peer_id="A") == 1
        assert value(reg, "waku_bridge_fencing_token") == term.token
        assert value(reg, "waku_bridge_leader_changes_total", event="elected") == 1
        assert 0 < value(reg, "waku_bridge_failover_deadline_margin_seconds") <= FAST.ttl - FAST.safety
        assert value(reg, "waku_bridge_failover_rpc_seconds_count", op="renew") >= 1
        n.cancel_scope.cancel()
    assert value(reg, "waku_bridge_role", peer_id="A") == 0
    assert value(reg, "waku_bridge_step_downs_total", reason="resign") == 1
    assert value(reg, "waku_bridge_leader_changes_total", event="lost") == 1
    assert value(reg, "waku_bridge_failover_deadline_margin_seconds") == 0


async def test_etcd_backend_errors_are_counted() -> None:
    reg = CollectorRegistry()
    e = EtcdElector(["127.0.0.1:1"], "A", timing=LeaseTiming(ttl=3, renew_interval=0.5, rpc_timeout=0.3,
                                                             safety=0.5), metrics=FailoverMetrics(reg, "A"))
    async with trio.open_nursery() as n:
        await n.start(e.run)
        await trio.sleep(0.5)
        n.cancel_scope.cancel()
    assert value(reg, "waku_bridge_failover_errors_total", kind="unavailable") >= 1
    assert value(reg, "waku_bridge_role", peer_id="A") == 0
