"""py-libp2p 0.8.1's gossipsub, made to speak Waku relay (11/WAKU2-RELAY).

Each class below fixes one measured fault of the stock implementation (py-libp2p-notes.md §3-4);
nothing else in the code base patches py-libp2p.  Pinned to libp2p==0.8.1: re-check every fix
when upgrading (tests/v2/relay exercises each one).

- fault 1, codec: ``add_peer`` refuses ``/vac/waku/relay/2.0.0``.
  Fix: :meth:`WakuGossipSub.add_peer` treats such peers as gossipsub v1.1 peers.
- fault 2, signing: strict signing signs every message.  Fix: ``strict_signing=False``.
- fault 3, publish: from/seqno always set, js-waku rejects them.
  Fix: :meth:`WakuPubsub.publish` sends data + topic only (StrictNoSign).
- fault 4, message id: from + seqno, so all Waku messages collide.
  Fix: ``msg_id_constructor`` = sha256(data).
- fault 5, mcache key: a module function (from + seqno) that ignores fault 4's setting.
  Fix: :class:`WakuMessageCache` keys by sha256(data).
- fault 6, equivocation: keyed on the empty from/seqno, it drops every other message.
  Fix: disabled (dedup by message id suffices).
- spam limiter: 10 msg/s per peer per topic, our own publishes included.
  Fix: ``spam_protection_enabled=False``; our limits are explicit in relay.
- per-peer relay limit: py-libp2p has no hook between reading a peer's message and validating it.
  Fix: :meth:`WakuPubsub.push_msg` asks ``admit(forwarder, msg)`` first (the relay's
  v2/ratelimit.py limits); a refused message is dropped before the seen-cache, validation and
  forwarding, as a graylisted peer's is.
- Q1: ``publish`` only enqueues; a full 32-RPC per-peer queue drops with a debug log.
  Fix: :meth:`WakuPubsub.publish` waits while any peer queue is more than half full.
- Q2: the 32-slot subscription channel drops with a warning.
  Fix: :meth:`WakuPubsub.notify_subscriptions` hands messages to the relay's counted sink.
- self-delivery: own publishes reach own subscribers.
  Fix: skipped in the sink (nwaku's triggerSelf=false).
- fault 7, remote crash: ``Pubsub.stream_handler`` catches stream and varint errors but not
  protobuf's ``DecodeError``, so ONE undecodable RPC frame on the relay stream escaped into the
  host's service manager and stopped the whole node (found by tests/v2/test_bad_input.py).
  Fix: :meth:`WakuPubsub.stream_handler` resets the stream, drops the peer's pubsub state
  (what the stock handler does for its own errors) and counts it via ``on_malformed_rpc``.
- fault 8, signed peer record per RPC: every RPC written carries our signed peer record
  (``senderRecord``), looked up afresh each time (``env_to_send_in_RPC`` turns every listen
  address into a string: ~0.7 ms per RPC, a tenth of a bridge's CPU), and every one received
  with a record is parsed and its ECDSA signature verified.  Waku peers ignore the field.
  Fix: :func:`install_signed_record_cache` (through :func:`install`) caches our record bytes per host
  for ``RECORD_REFRESH_S`` and accepts a record identical to the last one verified for that peer
  without verifying it again.  The record cannot be dropped altogether: a py-libp2p receiver
  rejects an RPC whose record field is present but empty.
- fault 9, scoring: the stock ``PeerScorer`` has the gossipsub v1.1 shape but not its function.
  P1 adds 1 per GRAFT instead of counting time in the mesh; P3 is a bonus, not a deficit penalty;
  P4 (invalid messages) is linear and capped, its weight subtracted (nwaku's -100 would reward);
  there is no topic weight, no decayToZero, no decay interval (it decays every heartbeat); P5-P7
  are renumbered; a disconnected peer's score is wiped, so a flooder reconnects clean; a peer's IP
  (P6) is looked up before it is known, so never found; and RPCs of a graylisted peer are still
  processed.  It also rejects incoming messages of peers below the *publish* threshold, which
  the spec applies to our own messages only.
  Fix: :class:`WakuPeerScorer` puts v2/relay/scoring.py (the spec's function, nwaku's
  parameters) behind the stock interface; :meth:`WakuPubsub.push_msg`,
  :meth:`WakuPubsub.handle_subscription` and :meth:`WakuGossipSub.handle_rpc` ignore a
  graylisted peer (counted via ``on_graylisted``); :meth:`WakuPubsub.validate_msg` hands each
  failed validation to ``on_rejected`` so P4 counts Reject verdicts only, not Ignore ones.
  :meth:`WakuGossipSub.mesh_heartbeat` and :meth:`WakuGossipSub.handle_graft` keep
  negative-score peers out of the mesh, as the spec and nim-libp2p do.
- fault 10, score-driven mesh and heartbeat changes: two stock extras act on scores.
  ``_maintain_mesh_quality`` (inert while every score was 0) swaps the worst mesh peer for a
  better one every heartbeat (1 s), with a 60 s backoff for the swapped-out peer.  Adaptive
  gossip re-rates the network's "health" every 30 s (already with the stock all-zero scores)
  and, below 0.7, sets the heartbeat to at least 30 or 60 s and raises D_low and D_high
  (measured on 0.8.1: one mesh peer out of D=6 gives health 0.275, a 30 s heartbeat instead of
  our 1 s, and D_low/D_high 6/11).  Neither is in gossipsub v1.1, nim-libp2p or go-libp2p.
  Fix: both off (:class:`WakuGossipSub`), so nwaku's D and 1 s heartbeat hold.

- fault 11, oversize RPC frames: a frame above ``max_inbound_rpc_size`` resets the stream and
  drops the peer's pubsub state with a log line only (``continuously_read_stream``).
  Fix: :func:`install_oversize_rpc_hook` (through :func:`install`) tells the reading
  :class:`WakuPubsub` (``on_oversize_rpc``), which the relay counts and scores.

- fault 12, no flood publishing: our own messages go to the mesh peers only (the fanout when not
  subscribed), so one published while the mesh is empty (a peer's connection was just reset and
  the peer is back, but the next heartbeat has not grafted it yet; or every mesh peer is gone
  and others are still subscribed) reaches nobody, and ``publish`` returns as if it was sent.
  gossipsub v1.1 ("Flood Publishing") sends one's own messages to every topic peer scoring at
  least ``publishThreshold``, the default in go-libp2p-pubsub, js-libp2p-gossipsub and
  nim-libp2p (nwaku).  It is also the redundancy a bridge needs: a message then travels on
  every link at once, so the reset of one does not lose it.
  Fix: :meth:`WakuGossipSub._get_peers_to_send` adds those peers for our own messages.

Importing this module changes nothing in py-libp2p: the module-level patches (faults 8, 11) are applied by
:func:`install`, which v2/host.py calls before it creates a py-libp2p host (idempotent).  With
v2/host.py this is the only module that imports libp2p (an import-linter contract):
:data:`RpcMessage` and :func:`running` are what v2/relay/protocol.py needs of it.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import trio
from google.protobuf.message import DecodeError
from libp2p.custom_types import TProtocol
from libp2p.exceptions import ValidationError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer, ScoreParams
from libp2p.tools.anyio_service import background_trio_service

from v2.relay.scoring import PeerScores

__all__ = ["RECORD_REFRESH_S", "WAKU_RELAY_CODEC", "RpcMessage", "WakuGossipSub", "WakuMessageCache", "WakuPeerScorer",
           "WakuPubsub", "install", "install_oversize_rpc_hook", "install_signed_record_cache", "running",
           "waku_message_id"]

RpcMessage = rpc_pb2.Message  # a gossipsub message as py-libp2p hands it to validators and sinks

WAKU_RELAY_CODEC = TProtocol("/vac/waku/relay/2.0.0")
OUTBOUND_HIGH_WATER = 16  # of py-libp2p's OutBoundQueueSize = 32


RECORD_REFRESH_S = 30.0  # our listen addresses change rarely (a restart); peers learn them within this
_VERIFIED_MAX = 4096  # peers whose last record we remember; beyond it start afresh (churn must not grow it)


def install_signed_record_cache() -> None:
    """Fault 8 (see the module table): patch the three pubsub modules' imported names, once."""
    import libp2p.pubsub.floodsub as floodsub_mod
    import libp2p.pubsub.gossipsub as gossipsub_mod
    import libp2p.pubsub.pubsub as pubsub_mod
    from libp2p.peer.peerstore import env_to_send_in_RPC as stock_env
    from libp2p.pubsub.utils import maybe_consume_signed_record as stock_consume

    if getattr(pubsub_mod.env_to_send_in_RPC, "waku_cached", False):
        return
    ours: weakref.WeakKeyDictionary[Any, tuple[float, tuple[bytes, bool]]] = weakref.WeakKeyDictionary()
    verified: weakref.WeakKeyDictionary[Any, dict[Any, bytes]] = weakref.WeakKeyDictionary()

    def env_to_send_in_rpc(host: Any) -> tuple[bytes, bool]:
        now = time.monotonic()
        hit = ours.get(host)
        if hit is not None and now < hit[0]:
            return hit[1][0], False
        out: tuple[bytes, bool] = stock_env(host)
        ours[host] = (now + RECORD_REFRESH_S, out)
        return out

    def consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        seen = verified.setdefault(host, {})
        record = bytes(msg.senderRecord)
        if seen.get(peer_id) == record:
            return True
        ok = bool(stock_consume(msg, host, peer_id))
        if ok:
            if len(seen) >= _VERIFIED_MAX:
                seen.clear()
            seen[peer_id] = record
        return ok

    setattr(env_to_send_in_rpc, "waku_cached", True)  # noqa: B010 - a marker on a plain function
    for mod in (pubsub_mod, gossipsub_mod, floodsub_mod):
        mod.env_to_send_in_RPC = env_to_send_in_rpc  # type: ignore[attr-defined]
        mod.maybe_consume_signed_record = consume_signed_record  # type: ignore[attr-defined]


# The WakuPubsub whose read loop runs in this task (each inbound relay stream has its own task).
_READER: ContextVar[WakuPubsub | None] = ContextVar("waku_pubsub_reader", default=None)


def install_oversize_rpc_hook() -> None:
    """Fault 11: wrap the pubsub module's frame reader, once, to report an oversize frame."""
    import libp2p.pubsub.pubsub as pubsub_mod

    stock = pubsub_mod.read_varint_prefixed_bytes_limited
    if getattr(stock, "waku_oversize_hook", False):
        return

    async def read_limited(reader: Any, max_length: int) -> bytes:
        try:
            return bytes(await stock(reader, max_length))
        except MessageTooLarge:
            ps = _READER.get()
            if ps is not None and ps.on_oversize_rpc is not None:
                ps.on_oversize_rpc(reader.muxed_conn.peer_id)
            raise

    setattr(read_limited, "waku_oversize_hook", True)  # noqa: B010 - a marker on a plain function
    pubsub_mod.read_varint_prefixed_bytes_limited = read_limited  # type: ignore[attr-defined]


def waku_message_id(msg: Any) -> bytes:
    """Relay message id: sha256(Message.data), as nwaku, go-waku and js-waku compute it."""
    return hashlib.sha256(msg.data).digest()


class WakuMessageCache(MessageCache):
    """Fault 5: the stock cache keys entries with from+seqno regardless of the pubsub id."""

    def put(self, msg: rpc_pb2.Message) -> None:
        mid = waku_message_id(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class WakuPeerScorer(PeerScorer):
    """Fault 9: py-libp2p's scorer interface over :class:`v2.relay.scoring.PeerScores`.

    The stock hooks map onto the spec's counters; the stock attributes (``ip_by_peer``,
    ``params``' thresholds) stay filled because the router reads them directly.  py-libp2p
    calls ``allow_publish`` on incoming messages (Pubsub.push_msg) and, for outgoing ones, only
    after the gossip gate of ``_get_peers_to_send``, which is the higher threshold: the one
    gate it can still add is the graylist, so that is what it checks.  Its penalty amounts (5
    for IWANT/IHAVE floods, 10 for a GRAFT flood) become one behaviour-penalty count each, as
    the spec counts misbehaviours.
    """

    def __init__(self, scores: PeerScores, clock: Callable[[], float]) -> None:
        t = scores.thresholds
        super().__init__(ScoreParams(publish_threshold=t.publish, gossip_threshold=t.gossip,
                                     graylist_threshold=t.graylist, accept_px_threshold=t.accept_px))
        self.scores = scores
        self._clock = clock

    def on_heartbeat(self, dt_seconds: float = 1.0) -> None:
        self.scores.refresh(self._clock())

    def on_join_mesh(self, peer: ID, topic: str) -> None:
        self.scores.graft(str(peer), topic, self._clock())

    def on_leave_mesh(self, peer: ID, topic: str) -> None:
        self.scores.prune(str(peer), topic, self._clock())

    def remove_peer(self, peer: ID) -> None:
        super().remove_peer(peer)
        self.scores.remove_peer(str(peer), self._clock())

    def on_first_delivery(self, peer: ID, topic: str) -> None:
        self.scores.deliver_first(str(peer), topic)

    def on_invalid_message(self, peer: ID, topic: str) -> None:
        """Scored by the relay through ``WakuPubsub.on_rejected`` (Reject verdicts only)."""

    def penalize_behavior(self, peer: ID, amount: float = 1.0) -> None:
        self.scores.penalize(str(peer))

    def penalize_graft_flood(self, peer: ID, amount: float = 10.0) -> None:
        self.scores.penalize(str(peer))

    def penalize_iwant_spam(self, peer: ID, amount: float = 5.0) -> None:
        self.scores.penalize(str(peer))

    def penalize_ihave_spam(self, peer: ID, amount: float = 5.0) -> None:
        self.scores.penalize(str(peer))

    def penalize_equivocation(self, peer: ID, amount: float = 100.0) -> None:
        self.scores.penalize(str(peer))

    def add_peer_ip(self, peer: ID, ip_str: str) -> None:
        super().add_peer_ip(peer, ip_str)
        self.scores.set_ip(str(peer), ip_str)

    def score(self, peer: ID, topics: list[str]) -> float:
        return self.scores.score(str(peer))  # the spec's score is per peer, over all scored topics

    def allow_publish(self, peer: ID, topics: list[str]) -> bool:
        return not self.scores.graylisted(str(peer))

    def allow_gossip(self, peer: ID, topics: list[str]) -> bool:
        return self.scores.score(str(peer)) >= self.scores.thresholds.gossip

    def is_graylisted(self, peer: ID, topics: list[str]) -> bool:
        return self.scores.graylisted(str(peer))

    def allow_px_from(self, peer: ID, topics: list[str]) -> bool:
        return self.scores.score(str(peer)) >= self.scores.thresholds.accept_px


class WakuGossipSub(GossipSub):
    def __init__(self, *, scores: PeerScores | None = None, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        kwargs.setdefault("protocols", [WAKU_RELAY_CODEC])
        kwargs["spam_protection_enabled"] = False  # limiter: see the module table
        kwargs["adaptive_gossip_enabled"] = False  # fault 10
        super().__init__(**kwargs)
        stock: Any = getattr(self, "mcache")  # noqa: B009 (typed as Any: the base class is untyped)
        self.mcache = WakuMessageCache(stock.window_size, stock.history_size)
        self.scores = scores if scores is not None else PeerScores(now=clock())
        self._clock = clock
        self.scorer = WakuPeerScorer(self.scores, clock)
        self.on_graylisted: Callable[[str], None] | None = None  # kind: "message" | "control" | "subscription"

    def add_peer(self, peer_id: ID, protocol_id: TProtocol | None) -> None:
        """Fault 1: treat Waku relay peers as gossipsub v1.1 peers (no IDONTWANT sent to them)."""
        self.scores.add_peer(str(peer_id), self._clock())  # a reconnecting peer gets its retained record back
        if protocol_id == WAKU_RELAY_CODEC:
            super().add_peer(peer_id, PROTOCOL_ID_V11)
        else:
            super().add_peer(peer_id, protocol_id)

    def _learn_ip(self, peer_id: ID) -> None:
        """Fault 9: the stock router looks up a peer's IP (for P6) in ``add_peer``, before pubsub has
        registered the peer's stream, and through ``muxed_conn.conn``, which yamux lacks.  We ask
        the muxed connection once the stream is there (and each heartbeat until it answers; over
        websocket it never does: 0.8.1's P2PWebSocketConnection.get_remote_address is a stub).  Only
        the scores learn the IP: the stock IP-diversity grafting (not in nwaku) stays as inert as it was."""
        stream = self.pubsub.peers.get(peer_id) if self.pubsub is not None else None
        try:
            remote = stream.muxed_conn.get_remote_address() if stream is not None else None  # (ip, port)
        except Exception:
            remote = None
        ip = self._extract_ip_from_remote_addr(remote) if remote else None
        if ip:
            self.scores.set_ip(str(peer_id), ip)

    async def flush_pending_messages(self, peer_id: ID) -> None:
        """The first call after pubsub has registered a new peer's stream."""
        self._learn_ip(peer_id)
        await super().flush_pending_messages(peer_id)

    def graylisted(self, peer_id: ID, kind: str) -> bool:
        """Fault 9: is ``peer_id`` graylisted?  If so, count the ignored RPC part."""
        if not self.scores.graylisted(str(peer_id)):
            return False
        if self.on_graylisted is not None:
            self.on_graylisted(kind)
        return True

    async def handle_rpc(self, rpc: rpc_pb2.RPC, sender_peer_id: ID) -> None:
        """Fault 9: control messages of a graylisted peer are ignored (gossipsub v1.1)."""
        if self.graylisted(sender_peer_id, "control"):
            return
        await super().handle_rpc(rpc, sender_peer_id)

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        """Fault 9: a GRAFT from a negative-score peer is answered with PRUNE (nim-libp2p handleGraft)."""
        topic = graft_msg.topicID
        if topic in self.mesh and self.scores.score(str(sender_peer_id)) < 0:
            self._add_back_off(sender_peer_id, topic, False)
            await self.emit_prune(topic, sender_peer_id, False, False)
            return
        await super().handle_graft(graft_msg, sender_peer_id)

    def mesh_heartbeat(self) -> tuple[Any, Any]:
        """Fault 9: keep the scores' mesh view exact (the stock heartbeat grafts without telling the
        scorer), learn missing IPs, and prune negative-score peers with the prune backoff (the
        spec's heartbeat)."""
        peers_to_graft, peers_to_prune = super().mesh_heartbeat()
        now = self._clock()
        for peer_id in list(self.pubsub.peers if self.pubsub is not None else ()):
            if self.scores.ip_of(str(peer_id)) is None:
                self._learn_ip(peer_id)
        for topic, members in self.mesh.items():
            for peer in [p for p in members if self.scores.score(str(p)) < 0]:
                members.discard(peer)
                self._add_back_off(peer, topic, False)
                if topic in peers_to_graft.get(peer, ()):
                    peers_to_graft[peer].remove(topic)
                    if not peers_to_graft[peer]:
                        del peers_to_graft[peer]
                else:
                    peers_to_prune[peer].append(topic)
            self.scores.sync_mesh(topic, (str(p) for p in members), now)
        for topic in self.scores.topics:
            if topic not in self.mesh:  # left: nobody is in its mesh any more
                self.scores.sync_mesh(topic, (), now)
        return peers_to_graft, peers_to_prune

    def _get_peers_to_send(self, topic_ids: Any, msg_forwarder: ID, origin: ID,
                           msg_id: bytes | None = None) -> Any:
        """Fault 12: our own messages go to every peer on the topic scoring at least the publish
        threshold, not only to the mesh (gossipsub v1.1 "Flood Publishing")."""
        topics = list(topic_ids)
        peers = set(super()._get_peers_to_send(topics, msg_forwarder, origin, msg_id))
        if self.pubsub is not None and msg_forwarder == self.pubsub.my_id:
            for topic in topics:
                peers.update(p for p in self.flood_peers(topic) if p != origin)
        return iter(peers)

    def flood_peers(self, topic: str) -> list[ID]:
        """The peers our own message on ``topic`` goes to now: subscribed, known to the router
        (our stream to them is up: a peer's subscription can arrive over its stream before ours
        to it is negotiated, and until then nothing is sent to it) and scoring at least the
        publish threshold."""
        if self.pubsub is None:
            return []
        return [p for p in self.pubsub.peer_topics.get(topic, ())
                if p in self.peer_protocol and self.scores.score(str(p)) >= self.scores.thresholds.publish]

    async def _maintain_mesh_quality(self, topic: str) -> None:
        """Fault 10: no score-driven mesh swaps every heartbeat."""

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        """Fault 6: Waku messages carry no from/seqno, so "equivocation" is meaningless here."""
        return True


class WakuPubsub(Pubsub):
    """Pubsub with StrictNoSign publishing and a sink instead of the 32-slot subscription queue."""

    def __init__(self, host: Any, router: WakuGossipSub, sink: Callable[[str, rpc_pb2.Message, bool], None],
                 **kwargs: Any) -> None:
        super().__init__(host, router, strict_signing=False, msg_id_constructor=waku_message_id, **kwargs)
        self._sink = sink
        self._own: set[int] = set()
        self._router: WakuGossipSub = router
        self.on_malformed_rpc: Callable[[], None] | None = None
        self.on_oversize_rpc: Callable[[ID], None] | None = None  # fault 11: the peer that sent one
        # Fault 9: every failed validation of a peer's message (fresh or from the validation
        # cache), with the forwarder, so the relay can count it and score Reject verdicts.
        self.on_rejected: Callable[[ID, rpc_pb2.Message], None] | None = None
        # Per-peer relay limit: False drops a peer's message before any work on it (the relay counts
        # and scores it).
        self.admit: Callable[[ID, rpc_pb2.Message], bool] | None = None

    async def continuously_read_stream(self, stream: Any) -> None:
        """Fault 11: mark this task as our read loop for the frame-reader hook."""
        _READER.set(self)
        await super().continuously_read_stream(stream)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Fault 9: a graylisted peer's messages are ignored before any work is done on them; so are
        those over the peer's rate limit (``admit``)."""
        if msg_forwarder != self.my_id:
            if self._router.graylisted(msg_forwarder, "message"):
                return
            if self.admit is not None and not self.admit(msg_forwarder, msg):
                return
        await super().push_msg(msg_forwarder, msg)

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        """Fault 9: so are its subscriptions."""
        if self._router.graylisted(origin_id, "subscription"):
            return
        super().handle_subscription(origin_id, sub_message)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Fault 9: report each failed validation (the stock scorer hook is told nothing)."""
        try:
            await super().validate_msg(msg_forwarder, msg)
        except ValidationError:
            if self.on_rejected is not None:
                self.on_rejected(msg_forwarder, msg)
            raise

    async def stream_handler(self, stream: Any) -> None:
        """Fault 7: an undecodable RPC frame is the peer's problem, not a node crash."""
        try:
            await super().stream_handler(stream)
        except DecodeError:
            if self.on_malformed_rpc is not None:
                self.on_malformed_rpc()
            await stream.reset()
            self._handle_dead_peer(stream.muxed_conn.peer_id)

    async def publish(self, topic_id: str | list[str], data: bytes) -> None:
        """Fault 3: a Waku relay message is data + topic, nothing else (StrictNoSign)."""
        topics = [topic_id] if isinstance(topic_id, str) else list(topic_id)
        # Q1 back-pressure: the per-peer queues hold 32 RPCs and drop beyond; keep them half full.
        while any(len(q) > OUTBOUND_HIGH_WATER for q in self.peer_queues.values()):  # noqa: ASYNC110
            await trio.sleep(0.002)
        msg = rpc_pb2.Message(data=data, topicIDs=topics)
        self._own.add(id(msg))
        try:
            await self.push_msg(self.my_id, msg)
        finally:
            self._own.discard(id(msg))

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        """Q2: hand every message on a subscribed topic to the relay's sink (which counts and
        queues it) instead of a 32-slot channel that drops with a log line."""
        own = id(publish_message) in self._own
        for topic in publish_message.topicIDs:
            if topic in self.topic_ids:
                self._sink(topic, publish_message, own)


def install() -> None:
    """Apply the module-level py-libp2p patches of this module (faults 8, 11); idempotent.  Called
    by v2/host.py before it builds a py-libp2p host, so every pubsub on that host sees them."""
    install_signed_record_cache()
    install_oversize_rpc_hook()


@asynccontextmanager
async def running(pubsub: WakuPubsub, router: WakuGossipSub) -> AsyncIterator[None]:
    """Run ``pubsub`` and its ``router`` as py-libp2p services for the duration of the block."""
    async with background_trio_service(pubsub), background_trio_service(router):
        yield
