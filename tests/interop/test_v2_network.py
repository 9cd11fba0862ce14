"""A 12-node Waku network on loopback, bootstrapped from one node: the connection manager's limits.

Six of our nodes (in-process V2Nodes, two per address on 127.0.0.2-4) and six go-waku v0.10.0 nodes
(tests/interop/go/wakuv2), every one of them started with the discv5 ENR of our first node and
nothing else.  Every one of ours must reach 6 relay peers on the shared shard with at most
``--ip-colocation-limit`` 2 peers per IP, and report its bootstrap latency (start -> 6 relay peers).

The go-waku nodes all live on 127.0.0.1: go-waku binds discv5 to the wildcard address, so its UDP
packets leave from 127.0.0.1 whatever ``-host`` says, and discv5 sessions are keyed by ip:port
(see test_v2_gowaku_discv5.py).  That makes 127.0.0.1 the crowded address: six nodes behind one IP,
of which each of ours may keep two.  Our nodes dial from their own listen address
(v2/host.py ``_dial_from_listen_ip``), so they count as three distinct hosts to each other.
"""

from __future__ import annotations

import secrets
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.gowaku import go_node
from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v2.node import V2Node, V2NodeConfig
from v2.peers.policy import MIN_RELAY_PEERS

CLUSTER, SHARD = 16, 32
TOPIC = f"/waku/2/rs/{CLUSTER}/{SHARD}"
LIMIT = 2
OUR_HOSTS = ("127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.4")
GO_HOST = "127.0.0.1"
N_GO = 6


def our_node(host: str, bootnodes: tuple[str, ...]) -> V2Node:
    return V2Node(V2NodeConfig(secrets.token_bytes(32), host, 0, websocket_support=False, cluster_id=CLUSTER,
                               shards=(SHARD,), discv5_discovery=True, discv5_udp_port=0,
                               discv5_bootstrap_nodes=bootnodes, ip_colocation_limit=LIMIT), CollectorRegistry())


def per_ip(node: V2Node) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in node.peers():
        ip = node.host.peer_ip(p)
        if ip is not None:
            counts[ip] = counts.get(ip, 0) + 1
    return counts


async def test_twelve_nodes_from_one_bootstrap_node() -> None:
    ours: list[V2Node] = []
    gos: list[tuple[JsPeer, dict[str, Any]]] = []
    # Over the limit for longer than a prune takes (the moment between accept and prune is
    # allowed: nwaku too sees a connection before it can drop it), in samples 0.25 s apart.
    over: dict[int, int] = {}
    worst: dict[int, int] = {}

    async def watch() -> None:
        while True:
            for i, n in enumerate(ours):
                top = max(per_ip(n).values(), default=0)
                over[i] = over.get(i, 0) + 1 if top > LIMIT else 0
                worst[i] = max(worst.get(i, 0), over[i])
            await trio.sleep(0.25)

    async def start_go(boot_enr: str) -> None:
        tcp, udp = free_ports(2)
        gos.append(await go_node(nursery, "-host", GO_HOST, "-port", str(tcp), "-discv5-port", str(udp),
                                 "-cluster-id", str(CLUSTER), "-shards", str(SHARD), "-discv5-bootnodes", boot_enr))

    async with trio.open_nursery() as nursery:
        boot = our_node(OUR_HOSTS[0], ())
        await nursery.start(boot.run)
        boot_enr = boot.enr or ""
        ours.append(boot)
        nursery.start_soon(watch)
        async with trio.open_nursery() as starting:
            for _ in range(N_GO):
                starting.start_soon(start_go, boot_enr)
            for host in OUR_HOSTS[1:]:
                n = our_node(host, (boot_enr,))
                await nursery.start(n.run)
                ours.append(n)
        assert len(ours) + len(gos) >= 12
        go_ids = {r["peer_id"] for _, r in gos}

        def bootstrapped() -> bool:
            return all(n.peer_manager.bootstrap_latency is not None for n in ours)

        await wait_until(bootstrapped, 90, "every one of our nodes to reach 6 relay peers", interval=0.25)
        # ... and they keep them (the relay's own view, not only the manager's count)
        await wait_until(lambda: all(len(n.relay_peers(TOPIC)) >= MIN_RELAY_PEERS for n in ours), 30,
                         "6 relay peers each, still", interval=0.25)
        latencies = []
        for i, n in enumerate(ours):
            st = n.peer_status()
            assert st["bootstrap_latency_s"] is not None
            gauge = n.registry.get_sample_value("waku_peer_manager_bootstrap_seconds")
            assert gauge == n.peer_manager.bootstrap_latency
            assert n.registry.get_sample_value("waku_peer_manager_bootstrap_latency_seconds_count") == 1
            assert all(c <= LIMIT for c in per_ip(n).values()), (i, per_ip(n))
            assert st["limits"]["ip_colocation_limit"] == LIMIT and st["discv5_table"]["nodes"] >= 1
            latencies.append(st["bootstrap_latency_s"])
        # The limit was binding: more go-waku nodes were known (discv5) than one IP may hold.
        known_go = set().union(*({p.peer_id for p in n.peer_manager.policy.peers()} & go_ids for n in ours))
        assert len(known_go) > LIMIT
        assert all(sum(p in go_ids for p in n.peers()) <= LIMIT for n in ours)
        assert all(w <= 20 for w in worst.values()), worst  # any excess gone within ~5 s
        pruned = sum(n.registry.get_sample_value("waku_peer_manager_colocation_pruned_total", {"direction": d}) or 0
                     for n in ours for d in ("inbound", "outbound", "unknown"))
        print(f"bootstrap latencies (s): {sorted(latencies)}; colocation prunes: {pruned:.0f}; "
              f"go-waku known: {len(known_go)}")
        for g, _ in gos:
            await g.aclose()
        nursery.cancel_scope.cancel()
