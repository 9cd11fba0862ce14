"""Health-aware leadership with real bridge processes on one SQLite lease (failover/health.py).

A and B share a v2 node but each has its own v1 node.  A is active; its v1 node goes away, so A
has no usable v1 peer: after ``--failover-unhealthy-after 3`` s (and as long a tenure) it resigns,
the healthy B takes over, and A, unhealthy, does not campaign while B is healthy.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig
from v2.node import V2Node, V2NodeConfig


def sample(text: str, line_prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix))


async def test_the_active_losing_its_v1_peer_hands_over_to_the_healthy_standby(nursery: trio.Nursery,
                                                                               tmp_path: Path) -> None:
    v1_scope = trio.CancelScope()
    v1a = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0), CollectorRegistry())

    async def run_v1a(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with v1_scope:
            await v1a.run(task_status=task_status)

    await nursery.start(run_v1a)
    v1b = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0), CollectorRegistry())
    await nursery.start(v1b.run)
    tcp, ws = free_ports(2)
    v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, True, ws), CollectorRegistry())
    await nursery.start(v2.run)
    lease = f"sqlite:{tmp_path / 'failover.sqlite3'}"
    extra = ["--failover-unhealthy-after", "3"]
    a = BridgeProc("A", tmp_path / "A", [v1a.enode], [v2.listen_addrs[0]], failover=lease, extra=extra)
    b = BridgeProc("B", tmp_path / "B", [v1b.enode], [v2.listen_addrs[0]], failover=lease, extra=extra)
    try:
        await trio.to_thread.run_sync(a.start)
        # A healthy before B exists: no healthier instance could have taken its place meanwhile
        await wait_until(lambda: (a.status() or {}).get("role") == "active", 60, "A active")
        await wait_until(lambda: (a.status() or {}).get("health") == {"v1": True, "v2": True, "disk": True}, 60,
                         "A healthy")
        await trio.to_thread.run_sync(b.start)
        await wait_until(lambda: (b.status() or {}).get("health") == {"v1": True, "v2": True, "disk": True}, 60,
                         "B healthy")
        assert (a.status() or {}).get("role") == "active" and (b.status() or {}).get("role") == "standby"
        v1_scope.cancel()  # A's only v1 peer goes away (its redials fail from now on)
        await wait_until(lambda: (a.status() or {}).get("peers", {}).get("v1") == 0, 60, "A without v1 peers")
        await wait_until(lambda: (b.status() or {}).get("role") == "active", 60, "B to take over")
        # A learns the new holder at its next poll (it may have polled between its resign and B's take)
        await wait_until(lambda: (a.status() or {}).get("leader") == "B", 60, "A to see B as the leader")
        st = a.status(timeout=5) or {}
        assert st["role"] == "standby" and st["health"] == {"v1": False, "v2": True, "disk": True}
        metrics = await trio.to_thread.run_sync(a.metrics)
        assert sample(metrics, 'waku_bridge_step_downs_total{reason="unhealthy"}') == 1
        await wait_until(lambda: sample(a.metrics(), "waku_bridge_campaign_withheld") == 1, 60, "A withholding")
        assert (b.status() or {}).get("role") == "active" and (a.status() or {}).get("role") == "standby"
    finally:
        for x in (a, b):
            await trio.to_thread.run_sync(x.kill, signal.SIGTERM)
