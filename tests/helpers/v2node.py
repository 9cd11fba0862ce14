"""Full v2 nodes on loopback for tests: random key, free ports, store/filter on a temp dir, and a
collector of what each node receives."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.net import free_ports
from v2.node import ReceivedMessage, V2Node, V2NodeConfig

__all__ = ["TOPIC", "Collector", "make_node", "metric", "start"]

TOPIC = "/waku/2/rs/0/0"


def make_node(tmp: Path | None = None, **kw: Any) -> V2Node:
    tcp, ws = free_ports(2)
    if tmp is not None:
        kw.setdefault("store", True)
        kw.setdefault("filter", True)
        kw.setdefault("data_dir", tmp)
        kw.setdefault("store_message_db_url", f"sqlite://store-{tcp}.sqlite3")
    return V2Node(V2NodeConfig(secrets.token_bytes(32), "127.0.0.1", tcp, True, ws, **kw), CollectorRegistry())


class Collector:
    def __init__(self, node: V2Node) -> None:
        self.node = node
        self.got: list[ReceivedMessage] = []

    async def run(self) -> None:
        async for m in self.node.messages():
            self.got.append(m)


async def start(nursery: trio.Nursery, node: V2Node) -> Collector:
    await nursery.start(node.run)
    c = Collector(node)
    nursery.start_soon(c.run)
    return c


def metric(node: V2Node, name: str, **labels: str) -> float:
    return node.registry.get_sample_value(name, labels) or 0.0
