"""``waku-bridge v2-node``: a standalone Waku v2 node with nwaku's flags and REST subset.

REST (``--rest``, ``--rest-address``, ``--rest-port``): nwaku's REST API (v2/rest/api.py, documented in
v2/rest/openapi.yaml); admin routes need ``WAKU_BRIDGE_ADMIN_TOKEN`` off loopback.  The metrics server
(``--metrics-server``) serves ``/metrics``, ``/health`` and ``/status`` (the connection manager:
peers by source and direction, relay peers, bootstrap latency, churn, prunes, limits, discv5 table).
On start the node prints one JSON line (peer id, listen addresses, ENR) on stdout and logs its full
multiaddrs, so scripts and operators can dial it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import AppConfig
from bridge.app.http import HttpServer, Request, Response, json_response, metrics_route
from bridge.app.process import instance_dir, node_key, until_signal

__all__ = ["rest_server", "run_v2_node", "v2_node_config"]

log = logging.getLogger(__name__)

# V2NodeConfig fields the app sets itself rather than copying from the v2 section.
_DERIVED = frozenset({"nodekey", "listen_address", "shards", "filter_subscription_timeout", "extra_pubsub_topics",
                      "data_dir", "ext_ip"})


def v2_node_config(cfg: AppConfig, key_hex: str, *, bridge_topics: bool = False,
                   data_dir: Path | None = None) -> Any:
    """The V2NodeConfig of ``cfg``; relative store paths go under ``data_dir``, by default the
    instance's own directory (two bridge instances on one host never share an archive)."""
    from v2.node import V2NodeConfig

    extra: tuple[str, ...] = ()
    if bridge_topics and cfg.bridge.pubsub_topic:
        extra = (cfg.bridge.pubsub_topic,)
    # V2Section and V2NodeConfig share their field names (nwaku's flags): copy every shared field,
    # then what the app derives (key, shards, bridge topic, data dir, ENR address).
    shared = {f.name for f in dataclasses.fields(V2NodeConfig)} & {f.name for f in dataclasses.fields(cfg.v2)}
    return V2NodeConfig(
        **{name: getattr(cfg.v2, name) for name in shared if name not in _DERIVED},
        nodekey=bytes.fromhex(key_hex),
        listen_address=cfg.listen_address,
        shards=cfg.effective_shards(),
        filter_subscription_timeout=float(cfg.v2.filter_subscription_timeout),
        extra_pubsub_topics=extra,
        data_dir=data_dir if data_dir is not None else instance_dir(cfg),
        ext_ip=cfg.v2.nat,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("waku-bridge")
    except PackageNotFoundError:
        return "unknown"


def rest_server(cfg: AppConfig, node: Any) -> Any:
    """The REST server of ``node`` (a V2Node) on ``--rest-address``/``--rest-port``; its API is
    built now, so its message caches see every message from the node's start."""
    import os

    from v2.rest.api import RestApi
    from v2.rest.server import RestServer

    api = RestApi(node, version=_version(), admin_token=os.environ.get("WAKU_BRIDGE_ADMIN_TOKEN") or None)
    return RestServer(cfg.v2.rest_address, cfg.v2.rest_port, api.routes())


async def run_v2_node(cfg: AppConfig) -> None:
    from v2.node import V2Node

    registry = CollectorRegistry()
    node = V2Node(v2_node_config(cfg, node_key(Path(cfg.data_dir), cfg.v2.nodekey, "nodekey-v2")), registry)

    async def health(_: Request) -> Response:
        # nwaku's /health: the node is up; relay readiness is reported alongside.
        ready = node.started.is_set()
        return json_response({"nodeHealth": "Ready" if ready else "Initializing", "status": "ok" if ready else "init",
                              "peers": len(node.peers())}, 200 if ready else 503)

    async def status(_: Request) -> Response:
        return json_response({"peer_id": node.peer_id, "peers": len(node.peers()), "peer_manager": node.peer_status()})

    rest = rest_server(cfg, node) if cfg.v2.rest else None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_signal, nursery.cancel_scope)
        await nursery.start(node.run)
        ports: dict[str, int] = {}
        if cfg.metrics.enabled:
            ports["metrics"] = await nursery.start(HttpServer(cfg.metrics.address, cfg.metrics.port,
                                                              {"/metrics": metrics_route(registry),
                                                               "/health": health, "/status": status}).run)
        if rest is not None:
            ports["rest"] = await nursery.start(rest.run)
        for addr in node.listen_addrs:
            log.info("v2-node listening on %s", addr)
        log.info("v2-node ENR %s", node.enr)
        print(json.dumps({"peer_id": node.peer_id, "listen_addrs": node.listen_addrs, "enr": node.enr,
                          "protocols": node.protocols(), **{f"{k}_port": v for k, v in ports.items()}}), flush=True)
        async for _ in node.messages():  # no application here: keep the channel drained
            pass
