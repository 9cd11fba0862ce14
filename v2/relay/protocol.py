"""Waku relay (11/WAKU2-RELAY) on the patched gossipsub: validation, scoring, metrics, no silent drops.

Publishing returns the deterministic message hash.  Every received message is validated (decodes
as a WakuMessage, non-empty payload, <= max size), counted, and handed to a bounded channel; a
full channel is a counted drop, never a silent one.  Our own publishes are not delivered back
(nwaku's triggerSelf=false).

Peers are scored with gossipsub v1.1 peer scoring and nwaku's parameters (v2/relay/scoring.py).
A message that is invalid for every Waku relay (not a WakuMessage, too large: nwaku rejects both)
is a Reject and costs its forwarder P4 on that topic; an empty payload (js-waku rejects it, nwaku
relays it, so an honest nwaku peer may forward one) is an Ignore: dropped, counted, not scored.
A peer below the graylist threshold has its RPCs ignored and, as nwaku's disconnectBadPeers
does, is disconnected; it is cut again on sight while it is remembered (``retain_score``).

Each peer may send us ``peer_messages_per_s`` messages and ``peer_bytes_per_s`` bytes per second
(v2/ratelimit.py :class:`RelayPeerLimiter`; 0 = that one off), checked before the message is
decoded or validated.  A message over the limit is ignored, as gossipsub v1.1 ignores a message it
will not validate: not delivered, not forwarded, counted in ``waku_relay_rate_limited{kind}``.
Flooding is a misbehaviour the other score terms do not see, which is what the behaviour penalty
P7 is for (gossipsub-v1.1.md, "P7: Behavioural Penalty"): each refused message adds the fraction
of a second's allowance it is, so a peer that keeps sending at k times its limit gains about
k - 1 penalties a second, is below the gossip threshold (-100) after 3-4 penalties and graylisted,
hence disconnected, after 32 (-10 x n^2); a legitimate peer's rare burst past the limit costs it
a fraction of one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from v2.core.message import MAX_MESSAGE_SIZE, MessageDecodeError, WakuMessage, message_hash
from v2.errors import V2Error
from v2.host import Host
from v2.ratelimit import DEFAULT_RELAY_PEER_BYTES_PER_S, DEFAULT_RELAY_PEER_MESSAGES_PER_S, RelayPeerLimiter
from v2.relay.gossipsub_compat import WAKU_RELAY_CODEC, RpcMessage, WakuGossipSub, WakuPubsub, running
from v2.relay.scoring import NWAKU_PEER_SCORE, NWAKU_THRESHOLDS, PeerScoreParams, PeerScores, ScoreThresholds

__all__ = ["GossipParams", "PublishError", "Relay", "RelayMessage", "RelayMetrics", "ValidationResult", "classify"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GossipParams:
    """nwaku's gossipsub parameters (waku-v2.md §6.2; the stock heartbeat is 120 s)."""

    d: int = 6
    d_low: int = 4
    d_high: int = 8
    heartbeat_interval: int = 1
    fanout_ttl: int = 60
    gossip_window: int = 3
    gossip_history: int = 6
    prune_backoff: int = 60
    unsubscribe_backoff: int = 5
    seen_ttl: int = 120


@dataclass(frozen=True, slots=True)
class RelayMessage:
    pubsub_topic: str
    message: WakuMessage
    data: bytes  # the original bytes, forwarded as is (never re-encoded)
    hash: bytes
    received_at: float


class PublishError(V2Error):
    pass


class ValidationResult(IntEnum):
    """A validation outcome, as libp2p pubsub's (nim-libp2p ValidationResult)."""

    ACCEPT = 0
    IGNORE = 1  # dropped, not scored
    REJECT = 2  # dropped, and P4 for the peer that forwarded it


def classify(data: bytes, max_size: int) -> tuple[ValidationResult, str]:
    """The verdict on a relay message's data and its reason label (``waku_relay_rejected``)."""
    if len(data) > max_size:
        return ValidationResult.REJECT, "too_large"
    try:
        wm = WakuMessage.decode(data)
    except MessageDecodeError:
        return ValidationResult.REJECT, "malformed"  # nwaku: "reject decode error" (waku_relay/protocol.nim)
    if not wm.payload:
        return ValidationResult.IGNORE, "empty_payload"
    return ValidationResult.ACCEPT, ""


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter("waku_relay_messages", "Relay messages by topic and direction",
                                ["topic", "direction"], registry=registry)
        self.rejected = Counter("waku_relay_rejected", "Relay messages refused by validation, by reason",
                                ["reason"], registry=registry)
        self.dropped = Counter("waku_relay_dropped", "Accepted relay messages not delivered, by reason",
                               ["reason"], registry=registry)
        self.peers = Gauge("waku_relay_peers", "Peers speaking relay", registry=registry)
        self.score_bands = Gauge("waku_relay_peer_score_peers",
                                 "Connected relay peers by gossipsub score band", ["band"], registry=registry)
        self.graylisted_ignored = Counter("waku_relay_graylisted_ignored",
                                          "RPC parts of graylisted peers ignored, by kind", ["kind"],
                                          registry=registry)
        self.graylist_disconnects = Counter("waku_relay_graylist_disconnects",
                                            "Peers disconnected for a score below the graylist threshold",
                                            registry=registry)
        self.rate_limited = Counter("waku_relay_rate_limited",
                                    "Relay messages ignored over the sending peer's rate limit, by the limit "
                                    "exceeded (messages | bytes)", ["kind"], registry=registry)
        for kind in ("messages", "bytes"):
            self.rate_limited.labels(kind)


class Relay:
    def __init__(self, host: Host, registry: CollectorRegistry, *, params: GossipParams = GossipParams(),
                 max_message_size: int = MAX_MESSAGE_SIZE, inbound_capacity: int = 4096,
                 score_params: PeerScoreParams = NWAKU_PEER_SCORE, thresholds: ScoreThresholds = NWAKU_THRESHOLDS,
                 disconnect_graylisted: bool = True, clock: Callable[[], float] = time.monotonic,
                 peer_messages_per_s: float = DEFAULT_RELAY_PEER_MESSAGES_PER_S,
                 peer_bytes_per_s: float = DEFAULT_RELAY_PEER_BYTES_PER_S) -> None:
        """``disconnect_graylisted`` is nwaku's disconnectBadPeers (on there too)."""
        self.host = host
        self.params = params
        self.max_message_size = max_message_size
        self.metrics = RelayMetrics(registry)
        self.scores = PeerScores(score_params, thresholds, now=clock())
        self.disconnect_graylisted = disconnect_graylisted
        self._clock = clock
        self.peer_limiter = RelayPeerLimiter(peer_messages_per_s, peer_bytes_per_s,
                                             max_message=max_message_size + 1024)
        self._blocked: dict[str, float] = {}  # graylisted peers we disconnected -> until when we cut them again
        self._send, self._recv = trio.open_memory_channel[RelayMessage](inbound_capacity)
        self._topics: set[str] = set()
        self._pubsub: WakuPubsub | None = None
        self._router: WakuGossipSub | None = None
        self.ready = trio.Event()

    def messages(self) -> trio.MemoryReceiveChannel[RelayMessage]:
        return self._recv

    def _validate(self, _forwarder: object, msg: RpcMessage) -> bool:
        return classify(msg.data, self.max_message_size)[0] is ValidationResult.ACCEPT  # counted in _on_rejected

    def _on_rejected(self, forwarder: object, msg: RpcMessage) -> None:
        """Every failed validation, fresh or a repeat of a cached one: counted, and a Reject costs the
        forwarder P4 on each scored topic of the message (nim-libp2p punishInvalidMessage)."""
        verdict, reason = classify(msg.data, self.max_message_size)
        self.metrics.rejected.labels(reason or "validator").inc()
        peer = str(forwarder)
        if verdict is ValidationResult.REJECT and peer != self.host.peer_id:
            for topic in msg.topicIDs:
                self.scores.reject(peer, topic)

    def _admit(self, forwarder: object, msg: RpcMessage) -> bool:
        """The per-peer limit, before anything else is done with the message (module docstring)."""
        peer, size = str(forwarder), len(msg.data)
        kind = self.peer_limiter.check(peer, size, self._clock())
        if kind is None:
            return True
        self.metrics.rate_limited.labels(kind).inc()
        self.scores.penalize(peer, self.peer_limiter.penalty(kind, size))
        return False

    def _on_oversize_rpc(self, peer: object) -> None:
        """An RPC frame above our limit: py-libp2p resets the stream.  nim-libp2p just closes it;
        we also count one behaviour penalty (P7, -10 x n^2), so a peer that keeps sending them
        falls below the gossip threshold at the 4th and is graylisted at the 32nd."""
        self.metrics.rejected.labels("rpc_too_large").inc()
        self.scores.penalize(str(peer))

    # -- scoring ------------------------------------------------------------------------------

    def peer_scores(self) -> dict[str, float]:
        """Peer id -> gossipsub score, for every peer connected or still remembered (the connection
        manager's ``relay_scores``)."""
        return self.scores.scores()

    def graylisted(self, peer: str) -> bool:
        """Below the graylist threshold, or disconnected for it and not yet allowed back."""
        until = self._blocked.get(peer)
        return self.scores.graylisted(peer) or (until is not None and until > self._clock())

    @property
    def graylist_threshold(self) -> float:
        return self.scores.thresholds.graylist

    async def _police(self) -> None:
        """Once a second: score gauges, and nwaku's disconnectBadPeers for graylisted peers."""
        now = self._clock()
        self.scores.refresh(now)
        for band, n in self.scores.bands().items():
            self.metrics.score_bands.labels(band).set(n)
        self._blocked = {p: t for p, t in self._blocked.items() if t > now}
        if not self.disconnect_graylisted:
            return
        for peer in self.host.connected_peers():
            blocked = peer in self._blocked
            if blocked or self.scores.graylisted(peer):
                log.info("relay peer %s disconnected: score %.1f, graylist threshold %.0f%s", peer,
                         self.scores.score(peer), self.graylist_threshold, " (still blocked)" if blocked else "")
                self._blocked.setdefault(peer, now + self.scores.params.retain_score)
                self.metrics.graylist_disconnects.inc()
                with trio.move_on_after(5):  # a stuck close must not stall the relay's housekeeping
                    await self.host.disconnect(peer)

    def _sink(self, topic: str, msg: RpcMessage, own: bool) -> None:
        if own:
            return
        self.metrics.messages.labels(topic, "in").inc()
        try:
            wm = WakuMessage.decode(msg.data)
        except MessageDecodeError:  # already validated; unreachable unless a validator was skipped
            self.metrics.rejected.labels("malformed").inc()
            return
        item = RelayMessage(topic, wm, bytes(msg.data), message_hash(topic, wm), time.time())
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            # Explicitly sized and counted (the stock 32-slot queue dropped with a log line).
            self.metrics.dropped.labels("queue_full").inc()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        p = self.params
        router = WakuGossipSub(
            protocols=[WAKU_RELAY_CODEC], degree=p.d, degree_low=p.d_low, degree_high=p.d_high,
            time_to_live=p.fanout_ttl, gossip_window=p.gossip_window, gossip_history=p.gossip_history,
            heartbeat_interval=p.heartbeat_interval, prune_back_off=p.prune_backoff,
            unsubscribe_back_off=p.unsubscribe_backoff, scores=self.scores, clock=self._clock,
        )
        router.on_graylisted = lambda kind: self.metrics.graylisted_ignored.labels(kind).inc()
        pubsub = WakuPubsub(self.host.libp2p_host, router, self._sink, seen_ttl=p.seen_ttl,
                            max_inbound_rpc_size=self.max_message_size + 64 * 1024)
        pubsub.on_malformed_rpc = self.metrics.rejected.labels("malformed_rpc").inc
        pubsub.on_rejected = self._on_rejected
        pubsub.on_oversize_rpc = self._on_oversize_rpc
        if self.peer_limiter.enabled:
            pubsub.admit = self._admit
        self._router, self._pubsub = router, pubsub
        async with running(pubsub, router):
            await pubsub.wait_until_ready()
            for topic in sorted(self._topics):
                await self._join(topic)
            self.ready.set()
            task_status.started()
            while True:
                self.metrics.peers.set(len(router.peer_protocol))
                await self._police()
                await trio.sleep(1)

    async def _join(self, topic: str) -> None:
        assert self._pubsub is not None
        self.scores.set_topic(topic)  # nwaku sets TopicParameters on every topic it subscribes to
        self._pubsub.set_topic_validator(topic, self._validate, False)
        await self._pubsub.subscribe(topic)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        if self._pubsub is not None:
            await self._join(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        if self._pubsub is not None and topic in self._pubsub.topic_ids:
            await self._pubsub.unsubscribe(topic)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted(self._topics))

    def mesh_peers(self, topic: str) -> list[str]:
        if self._router is None:
            return []
        return [str(p) for p in self._router.mesh.get(topic, ())]

    def topic_peers(self, topic: str) -> list[str]:
        if self._pubsub is None:
            return []
        return [str(p) for p in self._pubsub.peer_topics.get(topic, ())]

    def publish_peers(self, topic: str) -> list[str]:
        """The peers a message we publish on ``topic`` now reaches (gossipsub_compat fault 12)."""
        return [] if self._router is None else [str(p) for p in self._router.flood_peers(topic)]

    async def publish(self, topic: str, msg: WakuMessage) -> bytes:
        """Publish; returns the message hash.  Size is checked here (relay refuses > 150 KiB)."""
        data = msg.encode()
        if len(data) > self.max_message_size:
            raise PublishError(f"message of {len(data)} bytes exceeds {self.max_message_size}")
        if self._pubsub is None:
            raise PublishError("relay not running")
        await self._pubsub.publish(topic, data)
        self.metrics.messages.labels(topic, "out").inc()
        return message_hash(topic, msg)
