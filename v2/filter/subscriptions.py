"""The filter service's subscription table and push dedup (waku-v2.md §9): pure, ``now`` injected.

A subscriber is a peer with a set of exact (pubsub_topic, content_topic) criteria.  nwaku's limits
are constructor parameters (100 content topics per request, 1000 criteria per peer, 1000 peers:
the CLI defaults).  A subscription lives ``ttl`` seconds (5 min) after its last subscribe or
ping; an expired peer no longer matches, answers 404 to a ping, and is removed by :meth:`sweep`
(the service runs it every minute, nwaku's maintenance period).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from v2.errors import V2Error

__all__ = [
    "CriteriaLimitError",
    "NotSubscribedError",
    "PeerLimitError",
    "PushDedup",
    "SubscriptionError",
    "SubscriptionTable",
    "TooManyContentTopicsError",
]

Criterion = tuple[str, str]  # (pubsub_topic, content_topic)


class SubscriptionError(V2Error):
    """A request the table refuses; ``str(exc)`` is nwaku's status_desc."""


class TooManyContentTopicsError(SubscriptionError):  # 400
    pass


class PeerLimitError(SubscriptionError):  # 503
    pass


class CriteriaLimitError(SubscriptionError):  # 503
    pass


class NotSubscribedError(SubscriptionError):  # 404
    pass


@dataclass(slots=True)
class _Subscriber:
    criteria: set[Criterion]
    refreshed_at: float


class SubscriptionTable:
    def __init__(self, *, max_peers: int = 1000, max_criteria_per_peer: int = 1000,
                 max_content_topics_per_request: int = 100, ttl: float = 300.0) -> None:
        self.max_peers = max_peers
        self.max_criteria_per_peer = max_criteria_per_peer
        self.max_content_topics_per_request = max_content_topics_per_request
        self.ttl = ttl
        self._peers: dict[str, _Subscriber] = {}
        self._index: dict[Criterion, set[str]] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def peers(self) -> list[str]:
        return list(self._peers)

    def criteria(self, peer: str) -> frozenset[Criterion]:
        sub = self._peers.get(peer)
        return frozenset(sub.criteria) if sub else frozenset()

    def _live(self, peer: str, now: float) -> _Subscriber | None:
        sub = self._peers.get(peer)
        if sub is None or now - sub.refreshed_at > self.ttl:
            return None
        return sub

    def is_subscribed(self, peer: str, now: float) -> bool:
        return self._live(peer, now) is not None

    def _check_request(self, content_topics: Iterable[str]) -> list[str]:
        topics = list(content_topics)
        if len(topics) > self.max_content_topics_per_request:
            raise TooManyContentTopicsError(f"exceeds maximum content topics: {self.max_content_topics_per_request}")
        return topics

    def subscribe(self, peer: str, pubsub_topic: str, content_topics: Iterable[str], now: float) -> None:
        """Add criteria (refreshing the TTL); all or nothing when a limit is hit."""
        topics = self._check_request(content_topics)
        new = {(pubsub_topic, ct) for ct in topics}
        if self._live(peer, now) is None:
            self.remove(peer)  # an expired subscription starts afresh, as after nwaku's maintenance
            if len(self._peers) >= self.max_peers:
                self.sweep(now)
            if len(self._peers) >= self.max_peers:
                raise PeerLimitError("node has reached maximum number of subscriptions")
            current: set[Criterion] = set()
        else:
            current = self._peers[peer].criteria
        if len(current | new) > self.max_criteria_per_peer:
            raise CriteriaLimitError("peer has reached maximum number of filter criteria")
        sub = self._peers.setdefault(peer, _Subscriber(set(), now))
        sub.refreshed_at = now
        for c in new - sub.criteria:
            sub.criteria.add(c)
            self._index.setdefault(c, set()).add(peer)

    def unsubscribe(self, peer: str, pubsub_topic: str, content_topics: Iterable[str], now: float) -> None:
        topics = self._check_request(content_topics)
        sub = self._live(peer, now)
        if sub is None:
            raise NotSubscribedError("peer has no subscriptions")
        for c in {(pubsub_topic, ct) for ct in topics} & sub.criteria:
            sub.criteria.discard(c)
            self._unindex(c, peer)
        sub.refreshed_at = now
        if not sub.criteria:
            del self._peers[peer]

    def ping(self, peer: str, now: float) -> None:
        sub = self._live(peer, now)
        if sub is None:
            raise NotSubscribedError("peer has no subscriptions")
        sub.refreshed_at = now

    def unsubscribe_all(self, peer: str, now: float) -> None:
        if self._live(peer, now) is None:
            raise NotSubscribedError("peer has no subscriptions")
        self.remove(peer)

    def remove(self, peer: str) -> bool:
        sub = self._peers.pop(peer, None)
        if sub is None:
            return False
        for c in sub.criteria:
            self._unindex(c, peer)
        return True

    def _unindex(self, c: Criterion, peer: str) -> None:
        peers = self._index.get(c)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._index[c]

    def sweep(self, now: float) -> list[str]:
        """Remove every expired subscriber; returns them."""
        expired = [p for p, s in self._peers.items() if now - s.refreshed_at > self.ttl]
        for p in expired:
            self.remove(p)
        return expired

    def match(self, pubsub_topic: str, content_topic: str, now: float) -> list[str]:
        """Live subscribers of exactly this (pubsub_topic, content_topic) pair."""
        return [p for p in self._index.get((pubsub_topic, content_topic), ()) if self._live(p, now)]


class PushDedup:
    """Each message hash is pushed once per ``ttl`` (nwaku's 2 min push cache), bounded in size."""

    def __init__(self, *, ttl: float = 120.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_seen(self, msg_hash: bytes, now: float) -> bool:
        """True (and remembered) if the hash was not seen in the last ``ttl`` seconds."""
        self._expire(now)
        if msg_hash in self._seen:
            return False
        self._seen[msg_hash] = now
        while len(self._seen) > self.max_entries:  # bounded memory under a flood: oldest go first
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        # Insertion order is time order for a non-decreasing clock; a clock that steps back only
        # keeps entries longer, never shorter.
        while self._seen:
            h, t = next(iter(self._seen.items()))
            if now - t <= self.ttl:
                break
            del self._seen[h]
