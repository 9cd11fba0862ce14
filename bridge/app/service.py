"""Composition roots: the standalone nodes and the bridge service, each in one nursery.

Signals: SIGTERM and SIGINT cancel the root nursery; every component cleans up in shielded
``finally`` blocks (devp2p Disconnect with CLIENT_QUITTING, leadership resigned, state flushed).
Each command lives in its own module (v1service, v2service, bridgeservice; shared process
plumbing in process.py); this module is the CLI's one entry point and imports them on demand.
"""

from __future__ import annotations

from bridge.app.config import AppConfig

__all__ = ["run_bridge", "run_v1_node", "run_v2_node"]


async def run_v1_node(cfg: AppConfig) -> None:
    from bridge.app.v1service import run_v1_node as run

    await run(cfg)


async def run_v2_node(cfg: AppConfig) -> None:
    from bridge.app.v2service import run_v2_node as run

    await run(cfg)


async def run_bridge(cfg: AppConfig) -> None:
    from bridge.app.bridgeservice import run_bridge as run

    await run(cfg)
