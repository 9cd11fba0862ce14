"""``waku-bridge v1-node``: a standalone Waku v1 node (test networks, the sandbox).

On start it prints its ``enode://`` URL as the first line of stdout; the metrics server serves
``/metrics``, ``/health`` and ``/status`` (enode, peers, pool size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import AppConfig
from bridge.app.http import Request, Response, json_response, metrics_route
from bridge.app.process import health, node_key, serve_http, until_signal

__all__ = ["run_v1_node", "v1_node_config"]


def v1_node_config(cfg: AppConfig, directory: Path | None = None) -> Any:
    from v1.node import V1NodeConfig
    from v1.rlpx.keys import NodeKey

    return V1NodeConfig(
        listen_address=cfg.listen_address,
        port=cfg.v1.port,
        node_key=NodeKey.from_hex(node_key(directory or Path(cfg.data_dir), cfg.v1.nodekey, "nodekey-v1")),
        static_nodes=cfg.v1.staticnodes,
        pow_requirement=cfg.v1.pow,
        max_peers=cfg.v1.max_peers,
        target_peers=cfg.v1.target_peers,
        future_allowance_s=cfg.v1.future_allowance,
        rate_limit_packets=cfg.v1.rate_limit_packets,
        rate_limit_bytes=cfg.v1.rate_limit_bytes,
        pool_capacity=cfg.v1.pool_capacity,
    )


async def run_v1_node(cfg: AppConfig) -> None:
    """``waku-bridge v1-node``: a Waku v1 node alone (test networks, the sandbox)."""
    from v1.node import V1Node

    registry = CollectorRegistry()
    node = V1Node(v1_node_config(cfg), registry)

    async def status(_: Request) -> Response:
        return json_response({"enode": node.enode, "peers": [p.enode for p in node.peers()],
                              "pool": len(node.pool)})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_signal, nursery.cancel_scope)
        await nursery.start(node.run)
        print(node.enode, flush=True)  # scripts read the enode from the first line of stdout
        await serve_http(nursery, cfg, {"/metrics": metrics_route(registry), "/health": health,
                                         "/status": status})
        async for _ in node.inbound():  # a standalone node has no consumer: keep the channel drained
            pass
