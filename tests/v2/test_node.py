"""The full node (relay + metadata + store + filter + ...) on loopback: exactly-once delivery over a
five-node mesh with every message archived everywhere, the metadata handshake and identify."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.helpers.net import free_ports
from tests.helpers.v2node import TOPIC, make_node, metric, start
from v2.core.message import WakuMessage
from v2.host import Host, HostConfig
from v2.metadata.rpc_codec import Metadata
from v2.protocol_ids import FILTER_PUSH, FILTER_SUBSCRIBE, LIGHTPUSH_V3, METADATA, RELAY, STORE_V3

ROOT = Path(__file__).resolve().parents[2]
CONTENT = "/test/1/node/proto"


def msg(tag: str) -> WakuMessage:
    return WakuMessage(f"payload {tag}".encode(), CONTENT, version=0, timestamp=time.time_ns())


async def test_five_full_nodes_deliver_exactly_once_and_archive_everything(nursery: trio.Nursery,
                                                                           tmp_path: Path) -> None:
    nodes = [make_node(tmp_path) for _ in range(5)]
    cols = [await start(nursery, n) for n in nodes]
    for i, n in enumerate(nodes[1:], 1):  # a line plus a chord
        await n.host.connect(nodes[i - 1].listen_addrs[0])
    await nodes[4].host.connect(nodes[0].listen_addrs[0])
    with trio.fail_after(20):
        while any(len(n.relay.mesh_peers(TOPIC)) < 2 for n in nodes):
            await trio.sleep(0.1)
    sent: dict[int, list[bytes]] = {i: [] for i in range(5)}
    for k in range(10):
        for i, n in enumerate(nodes):
            sent[i].append((await n.publish(TOPIC, msg(f"{i}-{k}"))).hash)
    with trio.fail_after(30):
        while any(len(c.got) < 40 for c in cols):
            await trio.sleep(0.1)
    await trio.sleep(1.0)  # late duplicates would show up now
    everything = sorted(h for hs in sent.values() for h in hs)
    for i, (n, c) in enumerate(zip(nodes, cols, strict=True)):
        assert sorted(m.hash for m in c.got) == sorted(h for j, hs in sent.items() if j != i for h in hs), i
        assert all(m.origin == "relay" and m.pubsub_topic == TOPIC for m in c.got)
        assert n.archive is not None
        with trio.fail_after(10):  # own publishes are archived too
            while n.archive.message_count < 50:
                await trio.sleep(0.05)
        assert await n.archive.count() == len(everything)
        assert n.peer_metadata and all(md == Metadata(0, (0,)) for md in n.peer_metadata.values())


async def test_cluster_mismatch_disconnects_and_is_counted(nursery: trio.Nursery) -> None:
    a, b = make_node(), make_node(cluster_id=7, shards=(0,))
    await start(nursery, a)
    await start(nursery, b)
    await b.host.connect(a.listen_addrs[0])
    with trio.fail_after(10):
        while a.peers() or b.peers():
            await trio.sleep(0.05)
    rejected = (metric(a, "waku_metadata_rejected_peers_total", reason="cluster_mismatch")
                + metric(b, "waku_metadata_rejected_peers_total", reason="cluster_mismatch"))
    assert rejected >= 1
    # same cluster stays connected
    c = make_node()
    await start(nursery, c)
    await c.host.connect(a.listen_addrs[0])
    with trio.fail_after(10):
        while c.peer_id not in a.peer_metadata:
            await trio.sleep(0.05)
    await trio.sleep(0.5)
    assert a.peer_id in c.peers()


async def test_peer_without_metadata_is_disconnected(nursery: trio.Nursery) -> None:
    a = make_node()
    await start(nursery, a)
    tcp, ws = free_ports(2)
    bare = Host(HostConfig(secrets.token_bytes(32), "127.0.0.1", tcp, ws))  # speaks no Waku at all
    await nursery.start(bare.run)
    await bare.connect(a.listen_addrs[0])
    with trio.fail_after(10):
        while bare.connected_peers():
            await trio.sleep(0.05)
    assert metric(a, "waku_metadata_rejected_peers_total", reason="query_failed") == 1


async def test_identify_lists_every_mounted_protocol(nursery: trio.Nursery, tmp_path: Path) -> None:
    a = make_node(tmp_path)
    await start(nursery, a)
    b = make_node()
    await start(nursery, b)
    await b.host.connect(a.listen_addrs[0])
    want = {RELAY, METADATA, STORE_V3, FILTER_SUBSCRIBE, FILTER_PUSH}
    assert want <= set(a.protocols())
    with trio.fail_after(10):
        while not want <= set(b.host.peer_protocols(a.peer_id)):
            await trio.sleep(0.05)
    info = a.info()
    assert info["listenAddresses"] == a.listen_addrs and str(info["enrUri"]).startswith("enr:")


def _start_v2_node_process(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    tcp, ws, rest, metrics_port = free_ports(4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.app.cli", "v2-node", "--listen-address", "127.0.0.1", "--tcp-port", str(tcp),
         "--websocket-port", str(ws), "--data-dir", str(tmp), "--store", "--filter", "--lightpush", "--rest",
         "--rest-port", str(rest), "--metrics-server-port", str(metrics_port), "--nat", "extip:127.0.0.2"],
        stdout=subprocess.PIPE, stderr=(tmp / "v2-node.log").open("w"), text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"v2-node did not start: {(tmp / 'v2-node.log').read_text()[-4000:]}")
    return proc, {**json.loads(line), "rest": f"http://127.0.0.1:{rest}", "metrics": f"http://127.0.0.1:{metrics_port}"}


async def test_v2_node_command_rest_metrics_and_dial(nursery: trio.Nursery, tmp_path: Path) -> None:
    from v2.enr.enr import Enr, Waku2

    proc, out = await trio.to_thread.run_sync(_start_v2_node_process, tmp_path)
    try:
        assert all(f"/p2p/{out['peer_id']}" in a for a in out["listen_addrs"])
        assert {METADATA, STORE_V3, FILTER_SUBSCRIBE, FILTER_PUSH, RELAY, LIGHTPUSH_V3} <= set(out["protocols"])
        info = (await trio.to_thread.run_sync(lambda: httpx.get(out["rest"] + "/debug/v1/info", timeout=5))).json()
        assert info["listenAddresses"] == out["listen_addrs"] and info["enrUri"] == out["enr"]
        enr = Enr.from_text(info["enrUri"])
        assert enr.peer_id == out["peer_id"] and enr.ip == "127.0.0.2"
        assert enr.waku2 == Waku2.RELAY | Waku2.STORE | Waku2.FILTER | Waku2.LIGHTPUSH
        assert any(a.endswith("/ws") for a in enr.waku_multiaddrs) and enr.shards is not None
        health = await trio.to_thread.run_sync(lambda: httpx.get(out["rest"] + "/health", timeout=5))
        assert health.status_code == 200 and health.json()["nodeHealth"] == "Ready"
        ours = make_node()
        await start(nursery, ours)
        await ours.host.connect(out["listen_addrs"][-1])
        with trio.fail_after(10):
            while out["peer_id"] not in ours.peer_metadata:
                await trio.sleep(0.05)
        metrics = (await trio.to_thread.run_sync(lambda: httpx.get(out["metrics"] + "/metrics", timeout=5))).text
        assert "waku_metadata_requests_total" in metrics and "waku_connected_peers" in metrics
        assert "waku_peer_manager_churn_total" in metrics and "waku_peer_manager_peers" in metrics
        st = (await trio.to_thread.run_sync(lambda: httpx.get(out["metrics"] + "/status", timeout=5))).json()
        pm = st["peer_manager"]
        assert st["peer_id"] == out["peer_id"] and pm["connected"] >= 1 and pm["churn"]["connected"] >= 1
        assert pm["by_source"]["inbound"]["inbound"] >= 1 and pm["limits"]["ip_colocation_limit"] == 5
        assert pm["bootstrap_latency_s"] is None  # one relay peer is not six
    finally:
        proc.terminate()
        assert await trio.to_thread.run_sync(proc.wait, 15) == 0


async def test_lightpush_needs_a_relay_peer_and_feeds_the_node(nursery: trio.Nursery, tmp_path: Path) -> None:
    from v2.lightpush.client import LightpushClient
    from v2.lightpush.rpc_codec import LightpushStatus

    s = make_node(tmp_path, lightpush=True)
    s_col = await start(nursery, s)
    light = make_node(relay=False)  # a light client: no relay, only asks
    await start(nursery, light)
    await light.host.connect(s.listen_addrs[0])
    m = msg("pushed")
    alone = await LightpushClient(light.host).push(s.peer_id, TOPIC, m)
    assert alone.status_code == LightpushStatus.NO_PEERS_TO_RELAY  # nwaku: an isolated node refuses (505)
    r = make_node()
    r_col = await start(nursery, r)
    await r.host.connect(s.listen_addrs[0])
    with trio.fail_after(20):
        while not s.relay.topic_peers(TOPIC):
            await trio.sleep(0.05)
    ok = await LightpushClient(light.host).push(s.peer_id, TOPIC, m)
    assert ok.ok and ok.relay_peer_count == 1
    with trio.fail_after(10):
        while not r_col.got or not s_col.got or s.archive is None or s.archive.message_count < 1:
            await trio.sleep(0.05)
    assert r_col.got[0].message == m and r_col.got[0].origin == "relay"
    assert s_col.got[0].message == m and s_col.got[0].origin == "lightpush" and s_col.got[0].peer == light.peer_id


def test_gossipsub_scores_feed_the_peer_manager() -> None:
    # The connection manager's health score reads the relay's gossipsub scores (issue: a flooder is
    # graylisted *and replaced*); a node built without this wiring would keep its flooders' slots.
    node = make_node()
    assert node.peer_manager.relay_scores is not None
    assert node.peer_manager.relay_scores() == node.relay.peer_scores()
