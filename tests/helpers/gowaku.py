"""Shared by the go-waku interop tests: our node, a go-waku harness process, and waits on both."""

from __future__ import annotations

import secrets
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.jsproc import GoPeer, JsPeer
from tests.helpers.net import free_ports
from v2.node import V2Node, V2NodeConfig

__all__ = ["STATUS_TOPIC", "go_node", "our_node", "tcp_addr", "wait_go_peer", "wait_mesh"]

STATUS_TOPIC = "/waku/2/rs/16/32"  # Status's cluster 16, shard 32 (status-go's default relay shard)


def our_node(cluster: int, shards: tuple[int, ...], num_shards: int = 0, **kw: Any) -> V2Node:
    tcp, ws = free_ports(2)
    return V2Node(V2NodeConfig(secrets.token_bytes(32), "127.0.0.1", tcp, True, ws, cluster_id=cluster,
                               shards=shards, num_shards_in_network=num_shards, **kw), CollectorRegistry())


async def go_node(nursery: trio.Nursery, *args: str) -> tuple[JsPeer, dict[str, Any]]:
    go = await GoPeer.start_go(nursery, "wakuv2", list(args))
    ready = (await go.wait_event("ready", timeout=60))[0]
    return go, ready


def tcp_addr(ready: dict[str, Any]) -> str:
    return next(a for a in ready["multiaddrs"] if "/ws" not in a)


async def wait_go_peer(go: JsPeer, peer_id: str, protocol: str = "/vac/waku/relay/2.0.0") -> None:
    with trio.fail_after(30):
        while True:
            peers = (await go.request("peers"))["peers"]
            if any(p["peer_id"] == peer_id and p["connected"] and protocol in p["protocols"] for p in peers):
                return
            await trio.sleep(0.2)


async def wait_mesh(ours: V2Node, topic: str, go_id: str) -> None:
    with trio.fail_after(30):
        while go_id not in ours.relay.mesh_peers(topic):
            await trio.sleep(0.1)
