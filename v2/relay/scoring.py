"""Gossipsub v1.1 peer scoring with nwaku's parameters: the pure core (clock passed in).

The score function is the one of libp2p/specs pubsub/gossipsub/gossipsub-v1.1.md ("The Score
Function"), computed as nim-libp2p does it (libp2p/protocols/pubsub/gossipsub/scoring.nim,
``updateScores``)::

    score = sum over scored topics of topic_weight * (P1 + P2 + P3 + P3b + P4)
            + P5 (app-specific) + P6 (IP colocation) + P7 (behaviour penalty)

The parameters are nwaku's (waku/waku_relay/protocol.nim: ``TopicParameters`` and
``GossipsubParameters``), which go-waku uses too (waku/v2/protocol/relay/config.go).  With them
a peer earns at most 10.1 per topic (P1 0.1 + P2 10) and loses 100 x n^2 for n invalid
messages, so the 11th invalid message in a burst (halved every 12 s) takes it below the
graylist threshold of -10000.

Like go-libp2p (score.go) and unlike nim-libp2p, which recomputes every decay interval, the
score is computed when asked: a burst of invalid messages takes effect at once.  Time moves
only through :meth:`PeerScores.refresh` (decay steps and the time-in-mesh term); every other
call changes counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["NWAKU_PEER_SCORE", "NWAKU_THRESHOLDS", "NWAKU_TOPIC_SCORE", "PeerScoreParams", "PeerScores",
           "ScoreThresholds", "TopicScoreParams"]


@dataclass(frozen=True, slots=True)
class TopicScoreParams:
    """One topic's P1-P4 (the spec's ``TopicScoreParams``; durations in seconds)."""

    topic_weight: float
    time_in_mesh_weight: float  # P1
    time_in_mesh_quantum: float
    time_in_mesh_cap: float
    first_message_deliveries_weight: float  # P2
    first_message_deliveries_decay: float
    first_message_deliveries_cap: float
    mesh_message_deliveries_weight: float  # P3 (a deficit penalty, weight <= 0)
    mesh_message_deliveries_decay: float
    mesh_message_deliveries_cap: float
    mesh_message_deliveries_threshold: float
    mesh_message_deliveries_activation: float
    mesh_failure_penalty_weight: float  # P3b
    mesh_failure_penalty_decay: float
    invalid_message_deliveries_weight: float  # P4 (weight <= 0, applied to the count squared)
    invalid_message_deliveries_decay: float


@dataclass(frozen=True, slots=True)
class PeerScoreParams:
    """The peer-wide part (the spec's ``PeerScoreParams``; durations in seconds)."""

    decay_interval: float
    decay_to_zero: float
    retain_score: float
    app_specific_weight: float  # P5
    ip_colocation_factor_weight: float  # P6
    ip_colocation_factor_threshold: float
    behaviour_penalty_weight: float  # P7
    behaviour_penalty_decay: float
    # Addresses P6 never counts (go-libp2p's IPColocationFactorWhitelist).  Loopback by default:
    # every peer of a single-host test or deployment shares 127.0.0.1, and six of them would
    # already cost each one -50, seven -200, below the gossip threshold.
    ip_colocation_whitelist: tuple[str, ...] = ("127.", "::1")


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    gossip: float  # no gossip (IHAVE/IWANT) to or from peers below
    publish: float  # our own messages are not flooded to peers below
    graylist: float  # every RPC of a peer below is ignored; nwaku disconnects it (disconnectBadPeers)
    accept_px: float  # peer exchange in a PRUNE is followed only from peers at or above
    opportunistic_graft: float


# nwaku waku/waku_relay/protocol.nim TopicParameters (go-waku config.go setDefaultTopicParams: same).
NWAKU_TOPIC_SCORE = TopicScoreParams(
    topic_weight=1.0,
    time_in_mesh_weight=0.01, time_in_mesh_quantum=1.0, time_in_mesh_cap=10.0,
    first_message_deliveries_weight=1.0, first_message_deliveries_decay=0.5, first_message_deliveries_cap=10.0,
    mesh_message_deliveries_weight=0.0, mesh_message_deliveries_decay=0.0, mesh_message_deliveries_cap=0.0,
    mesh_message_deliveries_threshold=0.0, mesh_message_deliveries_activation=0.0,
    mesh_failure_penalty_weight=0.0, mesh_failure_penalty_decay=0.0,
    invalid_message_deliveries_weight=-100.0, invalid_message_deliveries_decay=0.5,
)

# nwaku GossipsubParameters (go-waku config.go setDefaultPeerScoreParams: same).
NWAKU_PEER_SCORE = PeerScoreParams(
    decay_interval=12.0, decay_to_zero=0.01, retain_score=600.0,
    app_specific_weight=0.0,
    ip_colocation_factor_weight=-50.0, ip_colocation_factor_threshold=5.0,
    behaviour_penalty_weight=-10.0, behaviour_penalty_decay=0.986,
)

# nwaku GossipsubParameters; acceptPXThreshold is not set there, so nim-libp2p's 0 applies.
NWAKU_THRESHOLDS = ScoreThresholds(gossip=-100.0, publish=-1000.0, graylist=-10000.0, accept_px=0.0,
                                   opportunistic_graft=0.0)


@dataclass(slots=True)
class _TopicStats:
    in_mesh: bool = False
    graft_time: float = 0.0
    first_deliveries: float = 0.0
    mesh_deliveries: float = 0.0
    mesh_failure: float = 0.0
    invalid: float = 0.0


@dataclass(slots=True)
class _PeerStats:
    connected: bool = False
    expire: float = math.inf  # when a disconnected peer's stats are forgotten
    ip: str | None = None
    behaviour: float = 0.0
    app_score: float = 0.0
    topics: dict[str, _TopicStats] = field(default_factory=dict)


class PeerScores:
    """Per-peer scoring state.  Peers are keyed by their peer id text.

    A disconnected peer's counters are kept for ``retain_score`` (nwaku: 10 min), so a flooder
    cannot reconnect with a clean slate; its first-delivery credit is dropped on disconnect, as
    nim-libp2p's ``unsubscribePeer`` does.
    """

    def __init__(self, params: PeerScoreParams = NWAKU_PEER_SCORE,
                 thresholds: ScoreThresholds = NWAKU_THRESHOLDS, *, now: float = 0.0) -> None:
        self.params = params
        self.thresholds = thresholds
        self._topics: dict[str, TopicScoreParams] = {}
        self._peers: dict[str, _PeerStats] = {}
        self._by_ip: dict[str, set[str]] = {}
        self._now = now
        self._last_decay = now
        self._cache: dict[str, float] = {}

    # -- configuration -------------------------------------------------------------------------

    def set_topic(self, topic: str, params: TopicScoreParams = NWAKU_TOPIC_SCORE) -> None:
        """Score deliveries on ``topic`` (nwaku sets its TopicParameters on every subscribed shard).
        Topics without parameters are not scored at all, as in nim-libp2p."""
        self._topics[topic] = params
        self._cache.clear()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._topics)

    # -- peers ---------------------------------------------------------------------------------

    def _stats(self, peer: str) -> _PeerStats:
        st = self._peers.get(peer)
        if st is None:  # heard of before (or without) a connection: kept like a disconnected peer
            st = self._peers[peer] = _PeerStats(connected=False, expire=self._now + self.params.retain_score)
        return st

    def add_peer(self, peer: str, now: float) -> None:
        """A peer (re)connected: a retained record is picked up again."""
        st = self._stats(peer)
        st.connected, st.expire = True, math.inf
        if st.ip is not None:
            self._by_ip.setdefault(st.ip, set()).add(peer)
        self._invalidate_ip(st.ip)
        self._cache.pop(peer, None)

    def remove_peer(self, peer: str, now: float) -> None:
        st = self._peers.get(peer)
        if st is None or not st.connected:
            return
        for topic, ts in st.topics.items():
            if ts.in_mesh:
                self._left_mesh(ts, self._topics.get(topic), now)
            ts.first_deliveries = 0.0
        st.connected, st.expire = False, now + self.params.retain_score
        if st.ip is not None:
            self._drop_ip(peer, st.ip)
        self._cache.pop(peer, None)

    def set_ip(self, peer: str, ip: str) -> None:
        st = self._stats(peer)
        if st.ip == ip:
            return
        if st.ip is not None:
            self._drop_ip(peer, st.ip)
        st.ip = ip
        if st.connected:
            self._by_ip.setdefault(ip, set()).add(peer)
        self._invalidate_ip(ip)

    def _drop_ip(self, peer: str, ip: str) -> None:
        peers = self._by_ip.get(ip)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._by_ip[ip]
        self._invalidate_ip(ip)

    def _invalidate_ip(self, ip: str | None) -> None:
        for p in self._by_ip.get(ip, ()) if ip is not None else ():
            self._cache.pop(p, None)

    # -- events --------------------------------------------------------------------------------

    def _topic(self, peer: str, topic: str) -> _TopicStats:
        st = self._stats(peer)
        ts = st.topics.get(topic)
        if ts is None:
            ts = st.topics[topic] = _TopicStats()
        return ts

    def graft(self, peer: str, topic: str, now: float) -> None:
        ts = self._topic(peer, topic)
        if not ts.in_mesh:
            ts.in_mesh, ts.graft_time = True, now
            self._cache.pop(peer, None)

    def prune(self, peer: str, topic: str, now: float) -> None:
        st = self._peers.get(peer)
        ts = st.topics.get(topic) if st is not None else None
        if ts is not None and ts.in_mesh:
            self._left_mesh(ts, self._topics.get(topic), now)
            self._cache.pop(peer, None)

    def _left_mesh(self, ts: _TopicStats, tp: TopicScoreParams | None, now: float) -> None:
        """P3b: a peer leaving the mesh with a P3 deficit keeps it as a sticky penalty (spec)."""
        if tp is not None and tp.mesh_message_deliveries_weight and self._p3_active(ts, tp, now):
            deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
            if deficit > 0:
                ts.mesh_failure += deficit * deficit
        ts.in_mesh = False

    def sync_mesh(self, topic: str, mesh: Iterable[str], now: float) -> None:
        """Align the in-mesh state of ``topic`` with the router's mesh (grafts it made silently)."""
        members = set(mesh)
        for peer in members:
            self.graft(peer, topic, now)
        for peer, st in self._peers.items():
            ts = st.topics.get(topic)
            if ts is not None and ts.in_mesh and peer not in members:
                self.prune(peer, topic, now)

    def deliver_first(self, peer: str, topic: str) -> None:
        """``peer`` was the first to bring us a valid message on ``topic`` (P2; P3 when in mesh)."""
        tp = self._topics.get(topic)
        if tp is None or peer not in self._peers:  # not a peer (our own publish)
            return
        ts = self._topic(peer, topic)
        ts.first_deliveries = min(ts.first_deliveries + 1, tp.first_message_deliveries_cap)
        if ts.in_mesh:
            ts.mesh_deliveries = min(ts.mesh_deliveries + 1, tp.mesh_message_deliveries_cap)
        self._cache.pop(peer, None)

    def reject(self, peer: str, topic: str) -> None:
        """``peer`` delivered a message on ``topic`` that validation rejected (P4)."""
        if topic not in self._topics:
            return
        self._topic(peer, topic).invalid += 1
        self._cache.pop(peer, None)

    def penalize(self, peer: str, count: float = 1.0) -> None:
        """A protocol misbehaviour (P7): the spec counts one per GRAFT in backoff, broken promise, ..."""
        self._stats(peer).behaviour += count
        self._cache.pop(peer, None)

    def set_app_score(self, peer: str, value: float) -> None:
        self._stats(peer).app_score = value
        self._cache.pop(peer, None)

    # -- time ----------------------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Advance the clock: whole ``decay_interval`` steps of decay, forget expired peers."""
        self._now = now
        self._cache.clear()
        steps = int((now - self._last_decay) // self.params.decay_interval)
        if steps <= 0:
            return
        self._last_decay += steps * self.params.decay_interval
        zero = self.params.decay_to_zero

        def decay(value: float, factor: float) -> float:
            value *= factor ** steps
            return 0.0 if value < zero else value

        for peer in [p for p, st in self._peers.items() if not st.connected and st.expire <= now]:
            del self._peers[peer]
        for st in self._peers.values():
            st.behaviour = decay(st.behaviour, self.params.behaviour_penalty_decay)
            for topic, ts in st.topics.items():
                tp = self._topics.get(topic)
                if tp is None:
                    continue
                ts.first_deliveries = decay(ts.first_deliveries, tp.first_message_deliveries_decay)
                ts.mesh_deliveries = decay(ts.mesh_deliveries, tp.mesh_message_deliveries_decay)
                ts.mesh_failure = decay(ts.mesh_failure, tp.mesh_failure_penalty_decay)
                ts.invalid = decay(ts.invalid, tp.invalid_message_deliveries_decay)

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _p3_active(ts: _TopicStats, tp: TopicScoreParams, now: float) -> bool:
        return ts.in_mesh and now - ts.graft_time > tp.mesh_message_deliveries_activation

    def score(self, peer: str) -> float:
        """The peer's score as of the last :meth:`refresh`; 0 for a peer we know nothing of."""
        cached = self._cache.get(peer)
        if cached is not None:
            return cached
        st = self._peers.get(peer)
        value = 0.0 if st is None else self._compute(st)
        self._cache[peer] = value
        return value

    def _compute(self, st: _PeerStats) -> float:
        now, total = self._now, 0.0
        for topic, ts in st.topics.items():
            tp = self._topics.get(topic)
            if tp is None or not tp.topic_weight:
                continue
            s = 0.0
            if ts.in_mesh:
                p1 = min((now - ts.graft_time) / tp.time_in_mesh_quantum, tp.time_in_mesh_cap)
                s += max(p1, 0.0) * tp.time_in_mesh_weight
            s += ts.first_deliveries * tp.first_message_deliveries_weight
            if tp.mesh_message_deliveries_weight and self._p3_active(ts, tp, now):
                deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
                if deficit > 0:
                    s += deficit * deficit * tp.mesh_message_deliveries_weight
            s += ts.mesh_failure * tp.mesh_failure_penalty_weight
            s += ts.invalid * ts.invalid * tp.invalid_message_deliveries_weight
            total += s * tp.topic_weight
        p = self.params
        total += st.app_score * p.app_specific_weight
        if st.connected and st.ip is not None and not st.ip.startswith(p.ip_colocation_whitelist):
            over = len(self._by_ip.get(st.ip, ())) - p.ip_colocation_factor_threshold
            if over > 0:
                total += over * over * p.ip_colocation_factor_weight
        total += st.behaviour * st.behaviour * p.behaviour_penalty_weight
        return total

    def graylisted(self, peer: str) -> bool:
        return self.score(peer) < self.thresholds.graylist

    def scores(self) -> dict[str, float]:
        """Every peer we hold a record of: connected ones and disconnected ones still retained."""
        return {peer: self.score(peer) for peer in self._peers}

    def connected(self) -> list[str]:
        return [p for p, st in self._peers.items() if st.connected]

    def ip_of(self, peer: str) -> str | None:
        """The address P6 counts the peer under (None: not learnt)."""
        st = self._peers.get(peer)
        return st.ip if st is not None else None

    def invalid_deliveries(self, peer: str, topic: str) -> float:
        """The decayed P4 counter (for metrics and tests)."""
        st = self._peers.get(peer)
        ts = st.topics.get(topic) if st is not None else None
        return ts.invalid if ts is not None else 0.0

    def bands(self) -> Mapping[str, int]:
        """Connected peers per score band, for a gauge: above/below 0 and each threshold."""
        t = self.thresholds
        out = {"positive": 0, "zero": 0, "negative": 0, "below_gossip": 0, "below_publish": 0, "graylisted": 0}
        for peer in self.connected():
            s = self.score(peer)
            band = ("positive" if s > 0 else "zero" if s == 0 else "negative" if s >= t.gossip
                    else "below_gossip" if s >= t.publish else "below_publish" if s >= t.graylist else "graylisted")
            out[band] += 1
        return out
