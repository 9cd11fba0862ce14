"""The envelope pool and per-peer forwarding state (pure; time passed in).

Mirrors nim's queue and status-go's ``known`` sets (waku-v1.md §9): bounded capacity ordered by
PoW (when full: drop expired, then evict the lowest PoW, or refuse a newcomer with lower PoW);
every envelope is offered once to each peer that has not seen it, if it meets that peer's PoW
requirement and bloom/topic interest.

Each peer has an outbox of the hashes added since its last flush (a new peer's starts with the
whole pool), so a flush costs what is new, not the pool: with a full pool, 50 peers and a 300 ms
tick, rescanning every entry would be millions of lookups per second.  Likewise expiry and
eviction use heaps (lazily cleaned: an entry that left by another way is skipped when it
surfaces), so a full pool under load does not scan itself on every add.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from v1.waku.bloom import FULL_BLOOM, bloom_matches, topic_to_bloom
from v1.waku.envelope import Envelope
from v1.waku.pow import SizeRule, pow_value

__all__ = ["AddResult", "EnvelopePool", "PeerFilter", "Rejection", "receiver_pow", "validate"]


class Rejection(Enum):
    """Reasons an envelope is refused; the values are the metric labels (nwaku's names)."""

    EXPIRED = "expired"
    FUTURE = "future_timestamp"
    TTL_ZERO = "ttl_zero"
    TOO_LARGE = "too_large"
    LOW_POW = "low_pow"
    BLOOM = "bloom_filter_mismatch"
    TOPIC = "topic_mismatch"
    DUPLICATE = "duplicate"
    FULL_NEW = "full_queue_new"
    MALFORMED = "malformed"


def validate(env: Envelope, now: float, *, pow_requirement: float, max_size: int, future_allowance: float,
             bloom: bytes = FULL_BLOOM, topic_interest: frozenset[bytes] | None = None) -> Rejection | None:
    """Acceptance checks of a received or posted envelope (waku-v1.md §9, §7)."""
    if env.ttl == 0:
        return Rejection.TTL_ZERO
    if env.expiry < now:
        return Rejection.EXPIRED
    if env.sent > now + future_allowance:
        return Rejection.FUTURE
    if env.size > max_size:
        return Rejection.TOO_LARGE
    if pow_requirement > 0 and pow_value(env, SizeRule.SPEC) < pow_requirement:
        return Rejection.LOW_POW
    if topic_interest is not None:
        if env.topic not in topic_interest:
            return Rejection.TOPIC
    elif bloom != FULL_BLOOM and not bloom_matches(bloom, topic_to_bloom(env.topic)):
        return Rejection.BLOOM
    return None


def receiver_pow(pow_spec: float, env: Envelope, now: float) -> float:
    """The PoW a status-go peer computes for ``env`` on receipt at ``now``.

    For an envelope created in the (near) future, status-go recomputes the PoW with the ttl
    stretched by the time left plus one second (waku/waku.go addAndBridge: ``CalculatePoW(sent -
    now + 1)``, whole seconds), so an envelope just above a peer's requirement is refused by it as
    low PoW until its creation time has come.
    """
    t = int(now)
    if env.sent <= t or env.ttl == 0:
        return pow_spec
    return pow_spec * env.ttl / (env.ttl + env.sent - t + 1)


@dataclass(frozen=True, slots=True)
class PeerFilter:
    """What a peer wants, from its Status / Status Update."""

    pow_requirement: float = 0.001
    bloom: bytes = FULL_BLOOM
    topic_interest: frozenset[bytes] | None = None
    light: bool = False

    def wants(self, env: Envelope, pow_spec: float) -> bool:
        if pow_spec < self.pow_requirement:
            return False
        if self.topic_interest is not None:
            return env.topic in self.topic_interest
        return self.bloom == FULL_BLOOM or bloom_matches(self.bloom, topic_to_bloom(env.topic))


@dataclass(slots=True)
class _Entry:
    env: Envelope
    pow: float
    origin: str | None  # peer id it came from; None = our own post
    seq: int = 0  # insertion order: ties of PoW evict the oldest; tells a live heap item from a stale one


@dataclass(slots=True)
class AddResult:
    new: bool
    rejection: Rejection | None = None
    evicted: int = 0


@dataclass(slots=True)
class EnvelopePool:
    capacity: int = 4096
    _entries: dict[bytes, _Entry] = field(default_factory=dict)
    _known: dict[str, set[bytes]] = field(default_factory=dict)
    # (seq, hash) not yet offered, in order; the seq tells this life of a hash from an earlier one
    # (an envelope evicted and added again is offered at its new place, as a rescan would)
    _outbox: dict[str, deque[tuple[int, bytes]]] = field(default_factory=dict)
    _by_expiry: list[tuple[int, int, bytes]] = field(default_factory=list)  # heap (expiry, seq, hash)
    _by_pow: list[tuple[float, int, bytes]] = field(default_factory=list)  # heap (pow, seq, hash)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, h: bytes) -> bool:
        return h in self._entries

    def add_peer(self, peer: str) -> None:
        self._known.setdefault(peer, set())
        self._outbox.setdefault(peer, self._all_in_order())

    def remove_peer(self, peer: str) -> None:
        self._known.pop(peer, None)
        self._outbox.pop(peer, None)

    def mark_known(self, peer: str, h: bytes) -> None:
        self._known.setdefault(peer, set()).add(h)

    def add(self, env: Envelope, now: float, origin: str | None = None) -> AddResult:
        h = env.hash
        if origin is not None:
            self.mark_known(origin, h)
        if h in self._entries:
            return AddResult(False, Rejection.DUPLICATE)
        pow_ = pow_value(env, SizeRule.SPEC)
        evicted = 0
        if len(self._entries) >= self.capacity:
            evicted += self.expire(now)
        if len(self._entries) >= self.capacity:
            low_h, low = self._lowest_pow()
            if low.pow >= pow_:
                return AddResult(False, Rejection.FULL_NEW)
            self._drop(low_h)
            evicted += 1
        seq = next(self._seq)
        self._entries[h] = _Entry(env, pow_, origin, seq)
        heapq.heappush(self._by_expiry, (env.expiry, seq, h))
        heapq.heappush(self._by_pow, (pow_, seq, h))
        if len(self._by_pow) > 2 * len(self._entries) + 1024:
            self._compact()
        for peer, box in self._outbox.items():
            if peer != origin:
                box.append((seq, h))
        return AddResult(True, None, evicted)

    def _all_in_order(self) -> deque[tuple[int, bytes]]:
        return deque((e.seq, h) for h, e in self._entries.items())

    def _drop(self, h: bytes) -> None:
        del self._entries[h]
        for known in self._known.values():
            known.discard(h)

    def _live(self, seq: int, h: bytes) -> _Entry | None:
        e = self._entries.get(h)
        return e if e is not None and e.seq == seq else None

    def _lowest_pow(self) -> tuple[bytes, _Entry]:
        """The entry a full pool evicts first: lowest PoW, oldest among equals (pool not empty)."""
        while True:
            _, seq, h = self._by_pow[0]
            e = self._live(seq, h)
            if e is not None:
                return h, e
            heapq.heappop(self._by_pow)

    def _compact(self) -> None:
        """Rebuild the heaps from the live entries (stale items pile up in the PoW heap, whose
        top rarely holds the envelopes that expire)."""
        self._by_expiry = [(e.env.expiry, e.seq, h) for h, e in self._entries.items()]
        self._by_pow = [(e.pow, e.seq, h) for h, e in self._entries.items()]
        heapq.heapify(self._by_expiry)
        heapq.heapify(self._by_pow)

    def expire(self, now: float) -> int:
        """Drop envelopes whose expiry has passed; returns how many."""
        n = 0
        while self._by_expiry and self._by_expiry[0][0] < now:
            _, seq, h = heapq.heappop(self._by_expiry)
            if self._live(seq, h) is not None:
                self._drop(h)
                n += 1
        return n

    def pending_for(self, peer: str, filt: PeerFilter, now: float) -> list[Envelope]:
        """Envelopes to send this peer now (marked known for it as they are returned)."""
        known = self._known.setdefault(peer, set())
        box = self._outbox.get(peer)
        if box is None:  # not added as a peer: offer the whole pool, as to a new one
            box = self._outbox[peer] = self._all_in_order()
        out: list[Envelope] = []
        later: list[tuple[int, bytes]] = []
        while box:
            seq, h = box.popleft()
            e = self._live(seq, h)
            if e is None or h in known or e.env.expiry < now:
                continue
            # A light peer still gets envelopes (status-go does), but we never send it back its own.
            if filt.wants(e.env, receiver_pow(e.pow, e.env, now)):
                out.append(e.env)
            elif e.env.sent > now and filt.wants(e.env, e.pow):
                later.append((seq, h))  # from the near future: it will pass once its creation time is here
                continue
            known.add(h)
        box.extend(later)
        return out
