"""Composition roots: the standalone nodes and the bridge service, each in one nursery.

Signals: SIGTERM and SIGINT cancel the root nursery; every component cleans up in shielded
``finally`` blocks (devp2p Disconnect with CLIENT_QUITTING, leadership resigned, state flushed).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import AppConfig
from bridge.app.http import HttpServer, Request, Response, json_response, metrics_route
from bridge.app.keys import load_or_create_key

__all__ = ["instance_dir", "node_key", "run_bridge", "run_v1_node", "run_v2_node", "v1_node_config"]

log = logging.getLogger(__name__)


def node_key(directory: Path, explicit: str | None, name: str) -> str:
    """The configured key, else the persistent one in ``directory`` (created on first start)."""
    if explicit:
        return explicit
    return load_or_create_key(Path(directory) / name)


def instance_dir(cfg: AppConfig) -> Path:
    """Per-instance state (keys, dedup ledger): ``<data dir>/<peer id>``; the data dir itself is shared
    by the instances of one host (the failover lease lives there)."""
    return Path(cfg.data_dir) / cfg.peer_id if cfg.peer_id else Path(cfg.data_dir)


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


async def _until_signal(cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            cancel.cancel()
            return


async def _serve_http(nursery: trio.Nursery, cfg: AppConfig,
                      routes: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
    if cfg.metrics.enabled:
        server = HttpServer(cfg.metrics.address, cfg.metrics.port, routes)
        await nursery.start(server.run)


async def _health(_: Request) -> Response:
    return json_response({"status": "ok"})


async def run_v1_node(cfg: AppConfig) -> None:
    """``waku-bridge v1-node``: a Waku v1 node alone (test networks, the sandbox)."""
    from v1.node import V1Node

    registry = CollectorRegistry()
    node = V1Node(v1_node_config(cfg), registry)

    async def status(_: Request) -> Response:
        return json_response({"enode": node.enode, "peers": [p.enode for p in node.peers()],
                              "pool": len(node.pool)})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_until_signal, nursery.cancel_scope)
        await nursery.start(node.run)
        print(node.enode, flush=True)  # scripts read the enode from the first line of stdout
        await _serve_http(nursery, cfg, {"/metrics": metrics_route(registry), "/health": _health,
                                         "/status": status})
        async for _ in node.inbound():  # a standalone node has no consumer: keep the channel drained
            pass


async def run_v2_node(cfg: AppConfig) -> None:
    from bridge.app.v2service import run_v2_node as run

    await run(cfg)


async def run_bridge(cfg: AppConfig) -> None:
    from bridge.app.bridgeservice import run_bridge as run

    await run(cfg)
