"""Relay-only v2 nodes on loopback for tests: a host, a relay subscribed to :data:`TOPIC`, and what it receives."""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.v2host import new_host
from v2.relay.protocol import Relay

__all__ = ["TOPIC", "Node", "wait_mesh"]

TOPIC = "/waku/2/rs/0/0"


class Node:
    def __init__(self, **relay_options: Any) -> None:
        self.registry = CollectorRegistry()
        self.host = new_host(ws=True)
        self.relay = Relay(self.host, self.registry, **relay_options)
        self.got: list[bytes] = []
        self.payloads: list[bytes] = []

    async def start(self, nursery: trio.Nursery) -> Node:
        await nursery.start(self.host.run)
        await self.relay.subscribe(TOPIC)
        await nursery.start(self.relay.run)
        nursery.start_soon(self._collect)
        return self

    async def _collect(self) -> None:
        async for m in self.relay.messages():
            self.got.append(m.hash)
            self.payloads.append(m.message.payload)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def wait_mesh(nodes: list[Node], degree: int = 1) -> None:
    with trio.fail_after(20):
        while any(len(n.relay.mesh_peers(TOPIC)) < degree for n in nodes):
            await trio.sleep(0.1)
