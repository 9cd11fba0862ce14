"""What every command's process shares: its state directory and keys, the signals that stop it,
and its HTTP endpoint.  Imported by the three services (v1service, v2service, bridgeservice)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bridge.app.config import AppConfig
from bridge.app.http import HttpServer, Request, Response, json_response
from bridge.app.keys import load_or_create_key

__all__ = ["health", "instance_dir", "node_key", "serve_http", "until_signal"]

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


async def until_signal(cancel: trio.CancelScope) -> None:
    """Cancel ``cancel`` (the root nursery's scope) on the first SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            cancel.cancel()
            return


async def serve_http(nursery: trio.Nursery, cfg: AppConfig,
                     routes: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
    """Start the metrics server with ``routes`` in ``nursery``, unless metrics are disabled."""
    if cfg.metrics.enabled:
        server = HttpServer(cfg.metrics.address, cfg.metrics.port, routes)
        await nursery.start(server.run)


async def health(_: Request) -> Response:
    return json_response({"status": "ok"})
