"""`waku-bridge v1-node` as a real process: logs its enode, serves peers and metrics, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.metrics import metric_value
from tests.helpers.net import free_ports
from v1.node import V1Node, V1NodeConfig

ROOT = Path(__file__).resolve().parents[3]


async def test_v1_node_process(nursery: trio.Nursery, tmp_path: Path) -> None:
    p2p, metrics = free_ports(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.app.cli", "v1-node", "--listen-address", "127.0.0.1",
         "--devp2p-tcp-port", str(p2p), "--metrics-server-port", str(metrics), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        enode = await trio.to_thread.run_sync(proc.stdout.readline)
        assert enode.startswith("enode://") and enode.strip().endswith(f"@127.0.0.1:{p2p}")
        assert (tmp_path / "nodekey-v1").stat().st_mode & 0o777 == 0o600
        peer = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=(enode.strip(),)),
                      CollectorRegistry())
        async with trio.open_nursery() as n:
            await n.start(peer.run)
            with trio.fail_after(10):
                while not peer.peers():
                    await trio.sleep(0.05)
            text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
            assert "waku_v1_peers" in text and "rlpx_connected_peers 1.0" in text
            proc.send_signal(signal.SIGTERM)
            code = await trio.to_thread.run_sync(proc.wait, 15)
            assert code == 0
            with trio.fail_after(10):  # our peer saw a clean Disconnect (client quitting)
                while peer.peers():
                    await trio.sleep(0.05)
            assert metric_value(peer.rlpx_metrics.disconnects, "client_quitting", "remote") == 1
            n.cancel_scope.cancel()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
