"""``waku-bridge v2-node``: a standalone Waku v2 node with nwaku's REST subset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import AppConfig
from bridge.app.http import HttpServer, Request, Response, json_response, metrics_route
from bridge.app.service import _until_signal, node_key

__all__ = ["run_v2_node", "v2_node_config"]


def v2_node_config(cfg: AppConfig, key_hex: str, *, bridge_topics: bool = False) -> Any:
    from v2.node import V2NodeConfig

    extra: tuple[str, ...] = ()
    if bridge_topics and cfg.bridge.pubsub_topic:
        extra = (cfg.bridge.pubsub_topic,)
    return V2NodeConfig(
        nodekey=bytes.fromhex(key_hex),
        listen_address=cfg.listen_address,
        tcp_port=cfg.v2.tcp_port,
        websocket_support=cfg.v2.websocket_support,
        websocket_port=cfg.v2.websocket_port,
        staticnodes=cfg.v2.staticnodes,
        cluster_id=cfg.v2.cluster_id,
        shards=cfg.effective_shards(),
        num_shards_in_network=cfg.v2.num_shards_in_network,
        relay=cfg.v2.relay,
        extra_pubsub_topics=extra,
    )


async def run_v2_node(cfg: AppConfig) -> None:
    from v2.node import V2Node

    registry = CollectorRegistry()
    node = V2Node(v2_node_config(cfg, node_key(Path(cfg.data_dir), cfg.v2.nodekey, "nodekey-v2")), registry)

    async def info(_: Request) -> Response:
        return json_response(node.info())

    async def health(_: Request) -> Response:
        return json_response({"status": "ok", "peers": len(node.peers())})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_until_signal, nursery.cancel_scope)
        await nursery.start(node.run)
        print(json.dumps({"peer_id": node.peer_id, "listen_addrs": node.listen_addrs}), flush=True)
        if cfg.metrics.enabled:
            await nursery.start(HttpServer(cfg.metrics.address, cfg.metrics.port,
                                           {"/metrics": metrics_route(registry), "/health": health}).run)
        if cfg.v2.rest:
            await nursery.start(HttpServer(cfg.v2.rest_address, cfg.v2.rest_port,
                                           {"/debug/v1/info": info, "/health": health}).run)
        async for _ in node.messages():  # no application here: keep the channel drained
            pass
