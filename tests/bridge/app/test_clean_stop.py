"""A stopped process ends cleanly: SIGTERM with live peers on both sides, exit status 0 and no
traceback on stderr (py-libp2p's ``[ADDCONN_FAIL] ... LifecycleError`` at shutdown included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.bridgeproc import ROOT, BridgeProc
from tests.helpers.net import free_ports
from tests.helpers.v2node import make_node, start
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig


async def _drain(ch: trio.MemoryReceiveChannel[object]) -> None:
    async for _ in ch:
        pass


async def test_a_stopped_v2_node_process_prints_no_traceback(nursery: trio.Nursery, tmp_path: Path) -> None:
    tcp, ws = free_ports(2)
    log = tmp_path / "v2-node.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.app.cli", "v2-node", "--listen-address", "127.0.0.1", "--tcp-port",
             str(tcp), "--websocket-port", str(ws), "--data-dir", str(tmp_path), "--store", "--filter",
             "--metrics-server=false"],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line, log.read_text()[-4000:]
        addr = next(a for a in json.loads(line)["listen_addrs"] if "/ws" not in a)
        peers = [make_node(staticnodes=(addr,)) for _ in range(2)]  # they redial it while it stops
        for p in peers:
            await start(nursery, p)
        await wait_until(lambda: all(p.peers() for p in peers), 30, "both peers connected")
        proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    text = log.read_text()
    assert code == 0, text[-4000:]
    assert "Traceback" not in text, text[-4000:]


async def test_a_stopped_bridge_prints_no_traceback(nursery: trio.Nursery, tmp_path: Path) -> None:
    v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
    await nursery.start(v1.run)
    hub = make_node()
    await start(nursery, hub)
    nursery.start_soon(_drain, v1.inbound())
    bridge = BridgeProc("A", tmp_path, [v1.enode], [hub.listen_addrs[0]], failover=None)
    await trio.to_thread.run_sync(bridge.start)
    try:
        await trio.to_thread.run_sync(bridge.wait_status, lambda s: s["peers"]["v1"] and s["peers"]["v2"])
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(bridge.proc.wait, 30)
    finally:
        await trio.to_thread.run_sync(bridge.kill, signal.SIGKILL)
    text = bridge.log_tail(1 << 20)
    assert code == 0, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
