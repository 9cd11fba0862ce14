"""The connection manager's policy (pure: the clock is an argument, randomness an injected rng).

Rules (nwaku peer_manager and js-waku's connection manager, waku-v2.md §16, simplified):
- static peers are always wanted: redialled after every loss, never forgotten, never pruned;
- discovered peers fill up to ``target`` connections, and no single discovery source may supply
  more than ``max_source_share`` of the target while another source still has known peers
  (one poisoned bootstrap list must not own the node's whole view);
- a failed dial backs off exponentially per peer, with jitter so that many nodes restarted
  together do not redial in lock-step; a connection that drops within ``flap_window`` counts as
  a failure (a peer that accepts and then kicks us must not be hammered);
- above ``maximum`` connections the surplus is pruned: never a static peer, never a peer whose
  loss would leave a pubsub topic we relay without any relay peer; among the rest, peers that
  relay none of our topics go first (light clients, peers on other shards: nwaku v0.36 drops
  relay peers with no common shard too), then inbound strangers before peers we chose to dial,
  newest connection first (a burst of newcomers must not push out the peers the node has
  settled on; nwaku prunes its surplus inbound relay peers likewise).
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["INBOUND", "STATIC", "PeerPolicy", "PeerState", "PolicyConfig"]

STATIC = "static"
INBOUND = "inbound"  # a connected peer we never dialled (source of peers unknown to the store)
_NO_TOPICS: Final[Mapping[str, Collection[str]]] = {}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    target: int = 10
    maximum: int = 50
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    static_backoff_max: float = 30.0  # static peers are expected back: look often
    jitter: float = 0.25  # each delay is scaled by a factor in [1 - jitter, 1 + jitter)
    max_failures: int = 5  # consecutive failures after which a discovered peer is forgotten
    max_source_share: float = 0.5
    flap_window: float = 5.0
    max_known: int = 1000
    max_parallel_dials: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.target <= self.maximum:
            raise ValueError("need 0 <= target <= maximum")
        if not 0 < self.max_source_share <= 1 or not 0 <= self.jitter < 1:
            raise ValueError("max_source_share in (0, 1], jitter in [0, 1)")


@dataclass(slots=True)
class PeerState:
    peer_id: str
    addrs: list[str]
    source: str
    static: bool = False
    failures: int = 0
    next_dial_at: float = 0.0
    connected_since: float | None = None
    ever_connected: bool = False


class PeerPolicy:
    def __init__(self, config: PolicyConfig, static_peers: Mapping[str, Sequence[str]], rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._peers: dict[str, PeerState] = {
            pid: PeerState(pid, list(addrs), STATIC, static=True) for pid, addrs in static_peers.items()}
        # When each currently connected peer (known or not) connected: newest are pruned first.
        self._arrived: dict[str, float] = {}

    # ------------------------------------------------------------------ store

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, peer_id: str) -> PeerState | None:
        return self._peers.get(peer_id)

    def peers(self) -> list[PeerState]:
        return list(self._peers.values())

    def add(self, peer_id: str, addrs: Sequence[str], source: str) -> str:
        """Offer a discovered peer; returns "new", "updated", "static" or "full"."""
        p = self._peers.get(peer_id)
        if p is not None:
            if p.static:
                return "static"  # a static peer's addresses come from configuration only
            p.addrs = list(dict.fromkeys([*addrs, *p.addrs]))
            return "updated"
        if len(self._peers) >= self.config.max_known:
            # Make room by forgetting the oldest idle discovered peer (discovery keeps offering
            # fresh ones; an unbounded store is a memory leak fed by the network).
            victim = next((q.peer_id for q in self._peers.values() if not q.static and q.connected_since is None),
                          None)
            if victim is None:
                return "full"
            del self._peers[victim]
        self._peers[peer_id] = PeerState(peer_id, list(addrs), source)
        return "new"

    def _source(self, peer_id: str) -> str:
        p = self._peers.get(peer_id)
        return p.source if p is not None else INBOUND

    # ------------------------------------------------------------------ events

    def connected(self, peer_id: str, now: float) -> None:
        self._arrived.setdefault(peer_id, now)
        p = self._peers.get(peer_id)
        if p is not None and p.connected_since is None:
            p.connected_since = now
            p.ever_connected = True

    def disconnected(self, peer_id: str, now: float) -> None:
        self._arrived.pop(peer_id, None)
        p = self._peers.get(peer_id)
        if p is None or p.connected_since is None:
            return
        lived = now - p.connected_since
        p.connected_since = None
        if lived < self.config.flap_window:
            self.dial_failed(peer_id, now)
        else:
            p.next_dial_at = now  # a lost connection is worth one immediate redial

    def dial_succeeded(self, peer_id: str, now: float) -> None:
        p = self._peers.get(peer_id)
        if p is not None:
            p.failures = 0
            self.connected(peer_id, now)

    def dial_failed(self, peer_id: str, now: float) -> float | None:
        """Schedule the next attempt; returns the delay, or None if the peer was forgotten."""
        p = self._peers.get(peer_id)
        if p is None:
            return None
        p.failures += 1
        if not p.static and p.failures >= self.config.max_failures:
            del self._peers[peer_id]
            return None
        delay = self.backoff(p.failures, p.static)
        p.next_dial_at = now + delay
        return delay

    def backoff(self, failures: int, static: bool) -> float:
        cap = self.config.static_backoff_max if static else self.config.backoff_max
        base = min(cap, self.config.backoff_initial * 2 ** min(failures - 1, 62))
        return base * (1 + self.config.jitter * (2 * self._rng.random() - 1))

    # ------------------------------------------------------------------ decisions

    def plan_dials(self, connected: Collection[str], dialing: Collection[str], now: float) -> list[str]:
        """Peers to dial now: every due static peer, then discovered peers up to the target."""
        busy = set(connected) | set(dialing)
        out = [p.peer_id for p in self._peers.values()
               if p.static and p.peer_id not in busy and p.next_dial_at <= now]
        slots = min(self.config.target - len(busy), self.config.max_parallel_dials - len(dialing))
        if slots <= 0:
            return out
        candidates: dict[str, list[PeerState]] = {}
        for p in self._peers.values():
            if not p.static and p.peer_id not in busy and p.next_dial_at <= now:
                candidates.setdefault(p.source, []).append(p)
        for group in candidates.values():
            group.sort(key=lambda p: p.failures)  # stable: insertion order within equal failures
        counts: dict[str, int] = {}
        for pid in busy:
            src = self._source(pid)
            counts[src] = counts.get(src, 0) + 1
        sources_known = {p.source for p in self._peers.values() if not p.static}
        cap = max(1, math.ceil(self.config.target * self.config.max_source_share))
        while slots > 0:
            capped = len(sources_known) >= 2
            open_sources = [s for s, g in candidates.items() if g and not (capped and counts.get(s, 0) >= cap)]
            if not open_sources:
                break
            src = min(open_sources, key=lambda s: (counts.get(s, 0), s))
            out.append(candidates[src].pop(0).peer_id)
            counts[src] = counts.get(src, 0) + 1
            slots -= 1
        return out

    def plan_prune(self, connected: Sequence[str],
                   relay_peers: Mapping[str, Collection[str]] = _NO_TOPICS) -> list[str]:
        """Peers to disconnect so that at most ``maximum`` stay, in pruning order.

        ``relay_peers`` maps each pubsub topic we relay to the peers relaying it with us.  Never
        a static peer, never the last connected relay peer of such a topic (counted as the plan
        goes: two peers alone on a shard are not both pruned); see the module docstring.
        """
        excess = len(connected) - self.config.maximum
        if excess <= 0:
            return []
        here = set(connected)
        topics_of: dict[str, list[str]] = {}
        left: dict[str, int] = {}
        for topic, peers in relay_peers.items():
            members = here.intersection(peers)
            left[topic] = len(members)
            for pid in members:
                topics_of.setdefault(pid, []).append(topic)
        never = float("inf")  # a peer whose arrival we missed counts as the newest

        def order(pid: str) -> tuple[bool, bool, float]:
            chosen = self._source(pid) != INBOUND
            return pid in topics_of, chosen, -self._arrived.get(pid, never)

        candidates = sorted((pid for pid in dict.fromkeys(connected)
                             if not (pid in self._peers and self._peers[pid].static)), key=order)
        out: list[str] = []
        for pid in candidates:
            if excess <= 0:
                break
            mine = topics_of.get(pid, [])
            if any(left[t] <= 1 for t in mine):
                continue  # the only relay peer left on a topic we serve
            for t in mine:
                left[t] -= 1
            out.append(pid)
            excess -= 1
        return out

    def next_due(self, now: float) -> float | None:
        """The earliest future time a backed-off peer becomes dialable (for the shell's sleep)."""
        times = [p.next_dial_at for p in self._peers.values() if p.connected_since is None and p.next_dial_at > now]
        return min(times) if times else None
