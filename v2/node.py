"""A Waku v2 node: the libp2p host and every mounted protocol, in one nursery.

Mounted per config, as nwaku does: relay, metadata (always), store (+ archive), filter, lightpush,
peer exchange.  Identify lists exactly the registered handlers, so every served codec is
registered, plus filter-push and metadata, which peers look for too (waku-v2.md §16, §17.5).

One message path.  Every message the node accepts (relayed to us, lightpushed to us, or
published by us) is fed to each service's ``on_message`` (store archives, filter pushes);
relayed and lightpushed messages then go to ``messages()`` (bounded: back-pressure reaches the
relay's counted queue); our own publishes never do (nwaku's triggerSelf=false).

On every new connection, inbound or outbound, the node asks the peer for its metadata and
disconnects a peer that does not answer or reports another cluster, as nwaku does (§12).  The
peer manager keeps static peers dialled, runs discovery, and prunes above ``max_connections``.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio
from prometheus_client import CollectorRegistry

from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.core.topics import PubsubTopic
from v2.host import ConnectionEvent, Host, HostConfig
from v2.metadata.client import query_metadata
from v2.metadata.protocol import MetadataService
from v2.metadata.rpc import Verdict, judge
from v2.metadata.rpc_codec import Metadata
from v2.metrics import V2Metrics
from v2.peers.keepalive import KeepAlive
from v2.protocol_ids import FILTER_PUSH, IDENTIFY, PING, RELAY, STORE_V3
from v2.ratelimit import (
    DEFAULT_RELAY_PEER_BYTES_PER_S,
    DEFAULT_RELAY_PEER_MESSAGES_PER_S,
    RateLimitedProtocol,
    parse_rate_limits,
)
from v2.relay.protocol import PublishError, Relay, RelayMessage
from v2.stream import Stream

if TYPE_CHECKING:  # each protocol's package is imported only when it is mounted (see _mount_*)
    from v2.discv5.service import Discv5Service
    from v2.enr.enr import Enr
    from v2.filter.protocol import FilterService
    from v2.lightpush.protocol import LightpushAccepted, LightpushService
    from v2.peer_exchange.protocol import PeerExchangeService
    from v2.peers.manager import PeerManager
    from v2.store.archive import Archive
    from v2.store.legacy_protocol import LegacyStoreService
    from v2.store.protocol import StoreService

__all__ = ["MessageSink", "PublishResult", "ReceivedMessage", "Runnable", "Service", "V2Node", "V2NodeConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class V2NodeConfig:
    """nwaku flag names as fields (docs/decisions/0002)."""

    nodekey: bytes
    listen_address: str = "0.0.0.0"
    tcp_port: int = 60000
    websocket_support: bool = True
    websocket_port: int = 8000
    # nwaku's wss flags: the websocket port serves TLS instead (on even without websocket_support,
    # as nwaku's ``wsEnabled or wssEnabled``), announced as /wss (v2/wss.py).
    websocket_secure_support: bool = False
    websocket_secure_key_path: str | None = None  # PEM private key
    websocket_secure_cert_path: str | None = None  # PEM certificate chain, leaf first
    staticnodes: tuple[str, ...] = ()
    cluster_id: int = 0
    shards: tuple[int, ...] = (0,)
    num_shards_in_network: int = 1
    relay: bool = True
    store: bool = False
    store_message_db_url: str = "sqlite://store.sqlite3"  # relative paths: under ``data_dir``
    store_message_retention_policy: str = "time:172800"
    filter: bool = False
    filter_subscription_timeout: float = 300.0  # s without a ping (waku-v2.md §9 limits)
    filter_max_peers_to_serve: int = 1000
    filter_max_criteria: int = 1000  # per subscriber
    lightpush: bool = False
    peer_exchange: bool = False
    dns_discovery_url: str | None = None
    max_connections: int = 50
    relay_service_ratio: str = "60:40"  # nwaku: relay:service share of max_connections
    ip_colocation_limit: int = 5  # nwaku's default peers per IP; 0 = no limit
    max_msg_size: int = MAX_MESSAGE_SIZE
    # nwaku's repeatable --rate-limit ("[protocol:]volume/period<unit>"), merged over the
    # protective defaults of v2/ratelimit.py DEFAULT_RATE_LIMITS; a bad one raises
    # RateLimitConfigError when the node is built.
    rate_limits: tuple[str, ...] = ()
    # What one relay peer may send us per second (v2/ratelimit.py sizes the defaults); 0 = off.
    relay_rate_limit_messages: int = DEFAULT_RELAY_PEER_MESSAGES_PER_S
    relay_rate_limit_bytes: int = DEFAULT_RELAY_PEER_BYTES_PER_S
    inbound_capacity: int = 4096
    extra_pubsub_topics: tuple[str, ...] = field(default=())
    data_dir: Path | None = None
    # How long a served protocol waits for a request on a stream the peer opened (js-waku
    # pre-opens streams and may use them minutes later; nwaku's mplex timeout is 5 min).
    idle_stream_timeout: float = 300.0
    metadata_timeout: float = 10.0
    # Keep-alive pings to every connected peer (waku-v2.md §16; nwaku: 10 s/2 min, js-waku 300 s);
    # a non-static peer is disconnected after 3 failures in a row.  0 turns it off.
    keepalive_interval: float = 60.0
    keepalive_timeout: float = 10.0  # py-libp2p's own ping handler waits 10 s too
    ext_ip: str | None = None  # address announced in the ENR (default: the listen address)
    # nwaku's discv5 flags (tools/confutils/cli_args.nim): protocol id d5waku, ENR bootnodes only.
    discv5_discovery: bool = False
    discv5_udp_port: int = 9000  # 0 = any free port
    discv5_bootstrap_nodes: tuple[str, ...] = ()  # enr:... texts
    discv5_enr_auto_update: bool = False

    @property
    def pubsub_topics(self) -> tuple[str, ...]:
        topics = [str(PubsubTopic(self.cluster_id, s)) for s in self.shards]
        return tuple(dict.fromkeys([*topics, *self.extra_pubsub_topics]))

    @property
    def relay_shards(self) -> tuple[int, ...]:
        """The shards we relay on our cluster (what metadata and the ENR announce)."""
        if not self.relay:
            return ()
        shards = {PubsubTopic.parse(t).shard for t in self.pubsub_topics
                  if PubsubTopic.parse(t).cluster == self.cluster_id}
        return tuple(sorted(shards))

    def store_db_url(self) -> str:
        """``store_message_db_url`` with a relative SQLite path placed under ``data_dir``."""
        url = self.store_message_db_url
        scheme, sep, rest = url.partition("://")
        if (sep and scheme.lower() == "sqlite" and rest not in ("", "memory", ":memory:")
                and not Path(rest).is_absolute() and self.data_dir is not None):
            return f"sqlite://{self.data_dir / rest}"
        return url


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


class Service(Protocol):
    """The shape every mounted protocol has (docs/decisions/0002)."""

    @property
    def protocol_ids(self) -> tuple[str, ...]: ...

    async def handle(self, stream: Stream) -> None: ...


class Runnable(Protocol):
    """A mounted service with tasks of its own (store retention, filter subscription expiry)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...


MessageSink = Callable[[str, WakuMessage, bytes, bytes], Awaitable[None]]
"""``on_message(pubsub_topic, msg, hash, data)`` of a service fed every message the node accepts."""


class V2Node:
    def __init__(self, config: V2NodeConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = V2Metrics(self.registry)
        ws = config.websocket_port if config.websocket_support or config.websocket_secure_support else None
        # py-libp2p's hard cap stays well above the peer manager's maximum, which prunes.
        self.host = Host(HostConfig(config.nodekey, config.listen_address, config.tcp_port, ws,
                                    connection_limit=max(300, 2 * config.max_connections),
                                    websocket_tls=self._wss_context()))
        self.rate_limits = parse_rate_limits(config.rate_limits)  # every protocol's, defaults filled in
        self.relay = Relay(self.host, self.registry, max_message_size=config.max_msg_size,
                           peer_messages_per_s=config.relay_rate_limit_messages,
                           peer_bytes_per_s=config.relay_rate_limit_bytes)
        self._send, self._recv = trio.open_memory_channel[ReceivedMessage](config.inbound_capacity)
        self.started = trio.Event()
        self.started_at: float | None = None  # wall clock when run() was up (the archive's gap-free since)
        self.peer_metadata: dict[str, Metadata] = {}
        self._enr: Enr | None = None

        self.metadata = MetadataService(config.cluster_id, config.relay_shards, self.registry,
                                        idle_timeout=config.idle_stream_timeout)
        self.services: list[Service] = [self.metadata]
        self._sinks: list[MessageSink] = []  # services fed every accepted message (store, filter)
        self._runners: list[Runnable] = []  # services started with the node (store, filter)
        self.store: StoreService | None = None
        self.legacy_store: LegacyStoreService | None = None
        self.archive: Archive | None = None
        self.filter: FilterService | None = None
        self.lightpush: LightpushService | None = None
        self.peer_exchange: PeerExchangeService | None = None
        self.peer_manager: PeerManager
        self.discv5: Discv5Service | None = None
        if config.discv5_discovery:
            self._mount_discv5()
        if config.store:
            self._mount_store()
        if config.filter:
            self._mount_filter()
        if config.lightpush:
            self._mount_lightpush()
        if config.peer_exchange:
            self._mount_peer_exchange()
        self._mount_peer_manager()
        self.keepalive = KeepAlive(self.host, self.metrics, interval=config.keepalive_interval or 60.0,
                                   timeout=config.keepalive_timeout, is_static=self._is_static,
                                   on_answer=self.peer_manager.note_answer)
        for svc in self.services:
            for pid in svc.protocol_ids:
                self.host.set_stream_handler(pid, svc.handle)
        # We are no filter client, but identify must list the push codec (nwaku drops filter
        # peers whose identify lacks it; §9, §16): accept and discard, counted.
        self.host.set_stream_handler(FILTER_PUSH, self._unsolicited_push)

    def _wss_context(self) -> ssl.SSLContext | None:
        """The wss listener's TLS context, or None for plain ws; a bad key or certificate raises
        :class:`v2.wss.WssConfigError` here, at start."""
        c = self.config
        if not c.websocket_secure_support:
            return None
        from v2.wss import HandshakeFailure, WssConfigError, server_context

        if not c.websocket_secure_cert_path or not c.websocket_secure_key_path:
            raise WssConfigError("cert" if not c.websocket_secure_cert_path else "key",
                                 "websocket_secure_support needs websocket_secure_cert_path and "
                                 "websocket_secure_key_path")
        failures = self.metrics.tls_handshake_failures
        for reason in HandshakeFailure:  # every reason at 0 from the start, for rate() alerts
            failures.labels(reason.value)
        return server_context(c.websocket_secure_cert_path, c.websocket_secure_key_path,
                              lambda reason: failures.labels(reason.value).inc())

    # -- mounts (each protocol's package is imported only when it is enabled) -----------------

    def _mount_store(self) -> None:
        from v2.store.archive import Archive
        from v2.store.legacy_protocol import LegacyStoreService
        from v2.store.protocol import StoreService

        self.archive = Archive(self.config.store_db_url(), retention=self.config.store_message_retention_policy)
        limits = self.rate_limits
        self.store = StoreService(self.archive, self.registry, request_timeout=self.config.idle_stream_timeout,
                                  rate_limit=limits[RateLimitedProtocol.STOREV3])
        # The legacy store reads the same archive (the v3 service opens and closes it).
        self.legacy_store = LegacyStoreService(self.archive, self.registry,
                                               request_timeout=self.config.idle_stream_timeout,
                                               rate_limit=limits[RateLimitedProtocol.STOREV2])
        self.services += [self.store, self.legacy_store]
        self._sinks.append(self.store.on_message)
        self._runners.append(self.store)

    def _mount_filter(self) -> None:
        from v2.filter.protocol import FilterService

        c = self.config
        self.filter = FilterService(self.host, self.registry, request_timeout=c.idle_stream_timeout,
                                    subscription_timeout=c.filter_subscription_timeout,
                                    max_peers=c.filter_max_peers_to_serve, max_criteria_per_peer=c.filter_max_criteria,
                                    rate_limit=self.rate_limits[RateLimitedProtocol.FILTER])
        self.services.append(self.filter)
        self._sinks.append(self.filter.on_message)
        self._runners.append(self.filter)

    def _mount_lightpush(self) -> None:
        from v2.lightpush.protocol import LightpushService

        c = self.config
        self.lightpush = LightpushService(self._lightpush_publish, self.registry, cluster_id=c.cluster_id,
                                          num_shards=c.num_shards_in_network, max_msg_size=c.max_msg_size,
                                          shards=c.relay_shards or c.shards, on_accepted=self._lightpush_accepted,
                                          request_timeout=c.idle_stream_timeout,
                                          rate_limit=self.rate_limits[RateLimitedProtocol.LIGHTPUSH])
        self.services.append(self.lightpush)

    def _mount_peer_exchange(self) -> None:
        from v2.peer_exchange.protocol import PeerExchangeService

        self.peer_exchange = PeerExchangeService(self.registry, enr_source=self._known_enrs,
                                                 read_timeout=self.config.idle_stream_timeout,
                                                 rate_limit=self.rate_limits[RateLimitedProtocol.PX])
        self.services.append(self.peer_exchange)

    def _mount_discv5(self) -> None:
        from v2.discv5.service import Discv5Config, Discv5Service
        from v2.enr.enr import Enr

        c = self.config
        boot = tuple(Enr.from_text(t) for t in c.discv5_bootstrap_nodes)  # a bad bootnode is a startup error
        # Our record's libp2p fields are known once the host listens (run() fills them in).
        self.discv5 = Discv5Service(Discv5Config(
            c.nodekey, bind_host=c.listen_address or "0.0.0.0", udp_port=c.discv5_udp_port, bootnodes=boot,
            enr_ip=c.ext_ip, enr_auto_update=c.discv5_enr_auto_update,
            enough=lambda: self.peer_manager is not None and len(self.host.connected_peers()) >= 6),
            self.registry)

    def _mount_peer_manager(self) -> None:
        """Static peers, ``dns_discovery_url`` and (with peer exchange) PX as discovery sources;
        the manager keeps the static peers dialled and prunes above ``max_connections``."""
        from v2.peers.manager import DiscoverySource, PeerManager
        from v2.peers.policy import PolicyConfig
        from v2.peers.sources import DnsDiscoverySource, PeerExchangeSource

        sources: list[DiscoverySource] = []
        if self.config.dns_discovery_url:
            sources.append(DnsDiscoverySource(self.config.dns_discovery_url))
        if self.discv5 is not None:
            from v2.discv5.service import Discv5Source

            # Taking what discv5 found is a list swap: poll it often, its period bounds the bootstrap.
            sources.append(Discv5Source(self.discv5, interval=1.0))
        if self.config.peer_exchange:
            from v2.peer_exchange.client import PeerExchangeClient

            sources.append(PeerExchangeSource(self.host, PeerExchangeClient(self.host, self.registry)))
        served = self.config.pubsub_topics if self.config.relay else ()
        c = self.config
        policy = PolicyConfig.nwaku(c.max_connections, c.relay_service_ratio, c.ip_colocation_limit)
        self.peer_manager = PeerManager(self.host, self.registry, static_peers=self.config.staticnodes,
                                        config=policy, discovery_sources=sources,
                                        cluster_id=self.config.cluster_id,
                                        relay_peers=lambda: {t: self.relay.topic_peers(t) for t in served},
                                        # Gossipsub scores feed the health score: a graylisted peer is
                                        # replaced (the relay also cuts it itself, nwaku's disconnectBadPeers).
                                        relay_scores=self.relay.peer_scores)

    # -- public surface ------------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return self.host.listen_addrs

    @property
    def ws_addr(self) -> str | None:
        """Our websocket address, ``/ws`` or (with websocket_secure_support) ``/wss``."""
        return next((a for a in self.listen_addrs if a.split("/")[5:6] in (["ws"], ["wss"])), None)

    @property
    def enr(self) -> str | None:
        """Our ENR text (31/WAKU2-ENR), once the host listens; None before (with discv5: its record)."""
        if self.discv5 is not None and self.discv5.port:
            return str(self.discv5.local_enr.to_text())
        return self._enr.to_text() if self._enr is not None else None

    def _build_enr(self) -> Enr:
        from v2.enr.enr import Enr, Waku2

        c = self.config
        bits = Waku2(0)
        for on, bit in ((c.relay, Waku2.RELAY), (c.store, Waku2.STORE), (c.filter, Waku2.FILTER),
                        (c.lightpush, Waku2.LIGHTPUSH)):
            if on:
                bits |= bit
        ip = c.ext_ip or (c.listen_address if c.listen_address not in ("0.0.0.0", "") else None)
        tcp = ws = None
        ws_kind = "ws"
        for a in self.listen_addrs:
            parts = a.split("/")  # /ip4/<ip>/tcp/<port>[/ws|/wss]/p2p/<id>
            if len(parts) > 4 and parts[3] == "tcp":
                if parts[5] in ("ws", "wss"):
                    ws, ws_kind = int(parts[4]), parts[5]
                else:
                    tcp = int(parts[4])
        # Only what ip/tcp cannot say goes in ``multiaddrs``: the ws or wss address js-waku dials
        # (§13; nwaku's enrMultiaddrs, waku/node/net_config.nim).
        maddrs = [f"/ip4/{ip}/tcp/{ws}/{ws_kind}"] if ip is not None and ws is not None else []
        return Enr.build(c.nodekey, 1, ip=ip, tcp=tcp if ip is not None else None, waku2=bits,
                         multiaddrs=maddrs, cluster=c.cluster_id, shards=c.relay_shards)

    def _is_static(self, peer: str) -> bool:
        state = self.peer_manager.policy.get(peer)
        return state is not None and bool(state.static)

    def _known_enrs(self) -> list[Enr]:
        return list(self.peer_manager.enrs())

    def peer_status(self) -> dict[str, Any]:
        """The connection manager's part of ``/status``, with the discv5 routing table's size."""
        out = self.peer_manager.status()
        if self.discv5 is not None:
            es = self.discv5.table.entries()
            out["discv5_table"] = {"nodes": len(es), "live": sum(e.live for e in es)}
        return out

    def protocols(self) -> list[str]:
        """What identify advertises: our handlers plus py-libp2p's built-ins."""
        mounted = [pid for svc in self.services for pid in svc.protocol_ids]
        relay = [RELAY] if self.config.relay else []
        return sorted({IDENTIFY, PING, FILTER_PUSH, *relay, *mounted})

    def messages(self) -> trio.MemoryReceiveChannel[ReceivedMessage]:
        return self._recv

    def peers(self) -> list[str]:
        return self.host.connected_peers()

    def store_peers(self) -> list[str]:
        """Connected peers whose identify lists store v3 (history sources, e.g. at a bridge takeover)."""
        return [p for p in self.host.connected_peers() if STORE_V3 in self.host.peer_protocols(p)]

    def relay_peers(self, pubsub_topic: str) -> list[str]:
        return self.relay.topic_peers(pubsub_topic)

    def publish_peers(self, pubsub_topic: str) -> list[str]:
        """The relay peers our own message on ``pubsub_topic`` reaches now (none: it reaches nobody)."""
        return self.relay.publish_peers(pubsub_topic) if self.config.relay else []

    async def publish(self, pubsub_topic: str, msg: WakuMessage) -> PublishResult:
        """Relay our own message; it is archived and pushed to filter subscribers, never
        delivered back to ``messages()``."""
        if not self.config.relay:
            raise PublishError("relay is not mounted")
        h = await self.relay.publish(pubsub_topic, msg)
        self.metrics.node_messages.labels("published").inc()
        await self._feed(pubsub_topic, msg, h, msg.encode())
        return PublishResult(h, len(self.relay.topic_peers(pubsub_topic)))

    def add_message_sink(self, sink: MessageSink) -> None:
        """Feed ``sink`` every message the node accepts or publishes, as the store and filter are
        fed (the REST API's relay and filter caches)."""
        self._sinks.append(sink)

    async def subscribe(self, pubsub_topic: str) -> None:
        """Relay one more pubsub topic (nwaku's REST ``POST /relay/v1/subscriptions``)."""
        if not self.config.relay:
            raise PublishError("relay is not mounted")
        await self.relay.subscribe(pubsub_topic)

    async def unsubscribe(self, pubsub_topic: str) -> None:
        if not self.config.relay:
            raise PublishError("relay is not mounted")
        await self.relay.unsubscribe(pubsub_topic)

    def info(self) -> dict[str, object]:
        """nwaku's ``/debug/v1/info`` (listenAddresses, enrUri) plus what operators ask next."""
        return {"listenAddresses": self.listen_addrs, "enrUri": self.enr, "peerId": self.peer_id,
                "clusterId": self.config.cluster_id, "pubsubTopics": list(self.config.pubsub_topics),
                "protocols": self.protocols()}

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            conn_events = self.host.connection_events()
            await nursery.start(self.host.run)
            self._enr = self._build_enr()
            nursery.start_soon(self._watch_connections, conn_events)
            if self.discv5 is not None:
                e = self._enr
                self.discv5.update_enr(ip=self.config.ext_ip or e.ip, tcp=e.tcp, waku2=e.waku2,
                                       multiaddrs=tuple(e.waku_multiaddrs), cluster=self.config.cluster_id,
                                       shards=self.config.relay_shards)
                await nursery.start(self.discv5.run)
                log.info("discv5 ENR: %s", self.enr)
            for svc in self._runners:
                await nursery.start(svc.run)
            if self.config.relay:
                for topic in self.config.pubsub_topics:
                    await self.relay.subscribe(topic)
                await nursery.start(self.relay.run)
                nursery.start_soon(self._pump_relay)
            nursery.start_soon(self._gauge_peers)
            if self.config.keepalive_interval > 0:
                await nursery.start(self.keepalive.run)
            await nursery.start(self.peer_manager.run)
            log.info("waku v2 node %s listening: %s", self.peer_id, " ".join(self.listen_addrs))
            log.info("waku v2 node protocols: %s", " ".join(self.protocols()))
            self.started_at = time.time()
            self.started.set()
            task_status.started()

    async def _pump_relay(self) -> None:
        async for m in self.relay.messages():
            await self._accept(m, origin="relay")

    async def _feed(self, pubsub_topic: str, msg: WakuMessage, h: bytes, data: bytes) -> None:
        for sink in self._sinks:
            try:
                await sink(pubsub_topic, msg, h, data)
            except Exception:  # one service's bug must not stop the node's message path
                self.metrics.errors.labels("service_on_message").inc()
                log.exception("on_message of a service failed")

    async def _accept(self, m: RelayMessage, *, origin: str, peer: str = "") -> None:
        self.metrics.node_messages.labels(origin).inc()
        await self._feed(m.pubsub_topic, m.message, m.hash, m.data)
        # Back-pressure from here reaches the relay's explicitly sized, counted queue.
        await self._send.send(ReceivedMessage(m.pubsub_topic, m.message, m.data, m.hash, peer, origin, time.time()))

    async def _lightpush_publish(self, pubsub_topic: str, msg: WakuMessage, data: bytes) -> int:
        """The lightpush service's publish (its contract: relay, archive, filter; return the relay
        peer count, 0 = not published -> 505).  Like nwaku we relay our encoding of the message:
        the message hash, which everything downstream keys on, is the same."""
        if not self.config.relay:
            return 0
        peers = len(self.relay.topic_peers(pubsub_topic))
        if peers == 0:
            return 0  # nwaku: an isolated node cannot accept lightpush
        h = await self.relay.publish(pubsub_topic, msg)
        await self._feed(pubsub_topic, msg, h, msg.encode())
        return max(peers, len(self.relay.topic_peers(pubsub_topic)))

    async def _lightpush_accepted(self, acc: LightpushAccepted) -> None:
        """After a 200: hand it to ``messages()`` (the bridge bridges lightpushed messages too)."""
        self.metrics.node_messages.labels("lightpush").inc()
        await self._send.send(ReceivedMessage(acc.pubsub_topic, acc.message, acc.message.encode(), acc.hash,
                                              acc.peer, "lightpush", time.time()))

    async def _unsolicited_push(self, stream: Stream) -> None:
        self.metrics.errors.labels("unsolicited_filter_push").inc()
        await stream.reset()

    # -- connections ---------------------------------------------------------------------------

    async def _watch_connections(self, events: trio.MemoryReceiveChannel[ConnectionEvent]) -> None:
        limiter = trio.CapacityLimiter(16)  # metadata queries in flight at once
        async with trio.open_nursery() as nursery:
            async for ev in events:
                if ev.connected:
                    nursery.start_soon(self._on_connected, ev.peer, ev.direction, limiter)
                elif ev.peer not in self.host.connected_peers():
                    self.peer_metadata.pop(ev.peer, None)

    async def _on_connected(self, peer: str, direction: str, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            md = await query_metadata(self.host, peer, self.metadata.local, timeout=self.config.metadata_timeout,
                                      metrics=self.metadata.metrics)
        verdict = judge(self.config.cluster_id, md)
        if verdict is Verdict.KEEP:
            assert md is not None
            self.peer_metadata[peer] = md
            return
        self.metadata.metrics.rejected_peers.labels(verdict.reason).inc()
        log.info("v2 peer %s (%s) disconnected: metadata %s (%s)", peer, direction, verdict.reason, md)
        await self.host.disconnect(peer)

    def peer_counts(self) -> dict[tuple[str, str], int]:
        """(direction, protocol) -> connected peers whose identify lists that protocol, as
        nwaku's ``waku_connected_peers`` (§18); a peer counts once under each of its codecs."""
        counts: dict[tuple[str, str], int] = {}
        for peer in self.host.connected_peers():
            direction = self.host.peer_direction(peer)
            for proto in set(self.host.peer_protocols(peer)):
                counts[direction, proto] = counts.get((direction, proto), 0) + 1
        return counts

    async def _gauge_peers(self) -> None:
        while True:
            self.metrics.set_peers(len(self.host.connected_peers()), self.peer_counts())
            await trio.sleep(1)
