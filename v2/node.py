"""A Waku v2 node: libp2p host + relay (+ the other protocols as they are mounted), one nursery.

Every message the node accepts from the network goes through one path (``_accept``) that feeds
``messages()``; our own publishes are never delivered back there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.core.topics import PubsubTopic
from v2.host import DialError, Host, HostConfig
from v2.metrics import V2Metrics
from v2.relay.protocol import Relay, RelayMessage

__all__ = ["PublishResult", "ReceivedMessage", "V2Node", "V2NodeConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class V2NodeConfig:
    nodekey: bytes
    listen_address: str = "0.0.0.0"
    tcp_port: int = 60000
    websocket_support: bool = True
    websocket_port: int = 8000
    staticnodes: tuple[str, ...] = ()
    cluster_id: int = 0
    shards: tuple[int, ...] = (0,)
    num_shards_in_network: int = 1
    relay: bool = True
    max_msg_size: int = MAX_MESSAGE_SIZE
    inbound_capacity: int = 4096
    extra_pubsub_topics: tuple[str, ...] = field(default=())

    @property
    def pubsub_topics(self) -> tuple[str, ...]:
        topics = [str(PubsubTopic(self.cluster_id, s)) for s in self.shards]
        return tuple(dict.fromkeys([*topics, *self.extra_pubsub_topics]))


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    pubsub_topic: str
    message: WakuMessage
    data: bytes
    hash: bytes
    peer: str
    origin: str  # "relay" | "lightpush"
    received_at: float


@dataclass(frozen=True, slots=True)
class PublishResult:
    hash: bytes
    relay_peers: int


class V2Node:
    def __init__(self, config: V2NodeConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = V2Metrics(self.registry)
        ws = config.websocket_port if config.websocket_support else None
        self.host = Host(HostConfig(config.nodekey, config.listen_address, config.tcp_port, ws))
        self.relay = Relay(self.host, self.registry, max_message_size=config.max_msg_size)
        self._send, self._recv = trio.open_memory_channel[ReceivedMessage](config.inbound_capacity)
        self.started = trio.Event()

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return self.host.listen_addrs

    def messages(self) -> trio.MemoryReceiveChannel[ReceivedMessage]:
        return self._recv

    def peers(self) -> list[str]:
        return self.host.connected_peers()

    def relay_peers(self, pubsub_topic: str) -> list[str]:
        return self.relay.topic_peers(pubsub_topic)

    async def publish(self, pubsub_topic: str, msg: WakuMessage) -> PublishResult:
        h = await self.relay.publish(pubsub_topic, msg)
        self.metrics.node_messages.labels("published").inc()
        return PublishResult(h, len(self.relay.topic_peers(pubsub_topic)))

    def info(self) -> dict[str, object]:
        return {"peerId": self.peer_id, "listenAddresses": self.listen_addrs,
                "pubsubTopics": list(self.config.pubsub_topics)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.host.run)
            for topic in self.config.pubsub_topics:
                await self.relay.subscribe(topic)
            await nursery.start(self.relay.run)
            nursery.start_soon(self._pump_relay)
            nursery.start_soon(self._gauge_peers)
            for addr in self.config.staticnodes:
                nursery.start_soon(self._keep_connected, addr)
            log.info("waku v2 node listening: %s", " ".join(self.listen_addrs))
            self.started.set()
            task_status.started()

    async def _pump_relay(self) -> None:
        async for m in self.relay.messages():
            await self._accept(m, origin="relay")

    async def _accept(self, m: RelayMessage, *, origin: str, peer: str = "") -> None:
        self.metrics.node_messages.labels(origin).inc()
        # Back-pressure from here reaches the relay's explicitly sized, counted queue.
        await self._send.send(ReceivedMessage(m.pubsub_topic, m.message, m.data, m.hash, peer, origin, time.time()))

    async def _gauge_peers(self) -> None:
        while True:
            self.metrics.connected_peers.set(len(self.host.connected_peers()))
            await trio.sleep(1)

    async def _keep_connected(self, addr: str) -> None:
        """Dial a static peer and redial with backoff whenever the connection is gone."""
        peer = addr.rsplit("/p2p/", 1)[-1]
        while True:
            async for attempt in AsyncRetrying(wait=wait_exponential_jitter(initial=1, max=60, jitter=1),
                                               sleep=trio.sleep, retry=retry_if_exception_type(DialError)):
                with attempt:
                    try:
                        await self.host.connect(addr)
                        self.metrics.dials.labels("ok").inc()
                    except DialError as exc:
                        self.metrics.dials.labels("failed").inc()
                        log.info("v2 static peer %s: %s; retrying", addr, exc)
                        raise
            while peer in self.host.connected_peers():  # noqa: ASYNC110 (no disconnect event to wait on)
                await trio.sleep(1)
