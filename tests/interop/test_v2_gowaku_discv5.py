"""Discovery v5 (``d5waku``) with go-waku v0.10.0 (tests/interop/go/wakuv2, go-discover @8ee308fe):
our service bootstraps from a go-waku ENR and finds the other go-waku nodes; go-waku nodes that know
only our ENR find each other through our FINDNODE answers.

Every node is on 127.0.0.1: go-waku binds discv5 to the wildcard address (waku/v2/discv5/discover.go
``udpAddr: IP: net.IPv4zero``), so its packets leave from 127.0.0.1 whatever ``-host`` says, and
discv5 sessions are keyed by (node id, ip:port) (go-discover v5wire ``sessionID``; ours likewise):
with distinct 127.0.0.x ENR addresses not even two go-waku nodes find each other.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.jsproc import GoPeer, JsPeer
from tests.helpers.net import free_ports
from v2.discv5.service import Discv5Config, Discv5Service
from v2.enr.enr import Enr, Waku2

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CLUSTER, SHARD = 16, 32


async def go_node(nursery: trio.Nursery, bootnodes: list[str]) -> tuple[JsPeer, dict[str, Any]]:
    tcp, udp = free_ports(2)
    args = ["-host", HOST, "-port", str(tcp), "-discv5-port", str(udp), "-cluster-id", str(CLUSTER),
            "-shards", str(SHARD)]
    if bootnodes:
        args += ["-discv5-bootnodes", ",".join(bootnodes)]
    go = await GoPeer.start_go(nursery, "wakuv2", args)
    ready = (await go.wait_event("ready", timeout=60))[0]
    return go, ready


def our_service(bootnodes: list[Enr]) -> Discv5Service:
    (tcp,) = free_ports(1)  # advertised for libp2p; nothing listens (go-waku's dials just fail)
    return Discv5Service(Discv5Config(secrets.token_bytes(32), bind_host=HOST, udp_port=0, tcp_port=tcp,
                                      waku2=Waku2.RELAY, cluster=CLUSTER, shards=(SHARD,), bootnodes=bootnodes,
                                      lookup_interval=1.0), CollectorRegistry())


async def known_peers(go: JsPeer) -> set[str]:
    return {p["peer_id"] for p in (await go.request("peers"))["peers"] or []}  # Go: nil slice = null


async def test_we_bootstrap_from_gowaku_and_find_the_others() -> None:
    async with trio.open_nursery() as nursery:
        g1, r1 = await go_node(nursery, [])
        others = [await go_node(nursery, [r1["enr"]]) for _ in range(2)]
        boot = Enr.from_text(r1["enr"])
        assert boot.udp is not None and boot.shards is not None and boot.shards.cluster == CLUSTER
        svc = our_service([boot])
        await nursery.start(svc.run)
        want = {Enr.from_text(r["enr"]).node_id for _, r in others} | {boot.node_id}
        with trio.fail_after(60):
            while not want <= set(svc.found):
                await trio.sleep(0.1)
        # What we hand to the peer manager is dialable go-waku libp2p addresses.
        by_peer = {r["peer_id"]: r for _, r in [(g1, r1), *others]}
        for e in svc.take_found():
            assert e.peer_id in by_peer and e.multiaddrs()[0] in by_peer[e.peer_id]["multiaddrs"]
        # The go-waku nodes answered our requests: they are live entries of our table.
        assert want <= {e.node_id for e in svc.table.entries() if e.live}
        for go in (g1, *(g for g, _ in others)):
            await go.aclose()
        nursery.cancel_scope.cancel()


async def test_gowaku_nodes_find_each_other_through_us() -> None:
    async with trio.open_nursery() as nursery:
        svc = our_service([])
        await nursery.start(svc.run)
        gos = [await go_node(nursery, [svc.local_enr.to_text()]) for _ in range(3)]
        ids = {r["peer_id"] for _, r in gos}
        with trio.fail_after(90):
            while True:
                known = [await known_peers(g) for g, _ in gos]
                if all(ids - {r["peer_id"]} <= k for k, (_, r) in zip(known, gos, strict=True)):
                    break
                await trio.sleep(0.3)
        # They reached us over discv5 (handshake + our PING back) and we relayed them to each other.
        go_ids = {Enr.from_text(r["enr"]).node_id for _, r in gos}
        assert go_ids <= {e.node_id for e in svc.table.entries() if e.live}
        assert svc.metrics.requests.labels("success")._value.get() >= 3
        assert svc.core.records_served >= 2  # go-waku records we handed to the other go-waku nodes
        for g, _ in gos:
            await g.aclose()
        nursery.cancel_scope.cancel()


async def test_v2_node_discv5_relay_connections_follow() -> None:
    """Our V2Node with discv5 mounted: go-waku peers found from one go-waku bootnode are handed to
    the peer manager, which dials them; a message published by the one we never configured arrives."""
    import os
    import time

    from tests.v2.test_node import start
    from v2.core.message import WakuMessage
    from v2.node import V2Node, V2NodeConfig

    topic = f"/waku/2/rs/{CLUSTER}/{SHARD}"
    async with trio.open_nursery() as nursery:
        g1, r1 = await go_node(nursery, [])
        g2, r2 = await go_node(nursery, [r1["enr"]])
        (tcp,) = free_ports(1)
        node = V2Node(V2NodeConfig(secrets.token_bytes(32), HOST, tcp, False, cluster_id=CLUSTER, shards=(SHARD,),
                                   discv5_discovery=True, discv5_udp_port=0,
                                   discv5_bootstrap_nodes=(r1["enr"],)), CollectorRegistry())
        col = await start(nursery, node)
        ours = Enr.from_text(node.enr or "")
        assert ours.udp == node.discv5.port and ours.tcp == tcp and ours.shards is not None
        with trio.fail_after(90):
            while not {r1["peer_id"], r2["peer_id"]} <= set(node.relay.mesh_peers(topic)):
                await trio.sleep(0.2)
        m = WakuMessage(os.urandom(16), "/waku-bridge/1/discv5/proto", version=0, timestamp=time.time_ns())
        await g2.request("publish", pubsub_topic=topic, content_topic=m.content_topic, payload=m.payload.hex(),
                         timestamp=m.timestamp)
        with trio.fail_after(30):
            while not any(r.message.payload == m.payload for r in col.got):
                await trio.sleep(0.05)
        for g in (g1, g2):
            await g.aclose()
        nursery.cancel_scope.cancel()
