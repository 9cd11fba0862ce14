"""Protective rate limits of the v2 node: nwaku's ``--rate-limit`` for the request-response
services and a per-peer limit on relay traffic (pure; ``now`` is always passed in).

**Request-response services** (store v3, legacy store, lightpush, peer exchange, filter).  The
setting syntax is nwaku's (waku/common/rate_limit/setting.nim)::

    --rate-limit=[<protocol>:]<volume>/<period><unit>     protocol: store|storev2|storev3|lightpush|px|filter
                                                          unit: ms|s|m|h; repeatable

No protocol means a global setting; ``store`` sets storev2 and storev3 unless they are named
themselves; the last setting of a protocol wins; a volume or period of 0 turns the limit off.
As in nwaku's CLI (tools/confutils/cli_args.nim), what is given is merged over the defaults
(:data:`DEFAULT_RATE_LIMITS`), except that a global setting replaces the default of every
protocol not named.

Each service holds one :class:`RequestLimiter`, built as nwaku's (request_limiter.nim): a bucket
for the whole service of ``volume`` per ``period``, and one per peer with 75 % of the volume over
a longer window (x10 for periods up to 1 s, x3 up to 1 min, x2 beyond), so that one peer can
never take the whole service while a burst from a single client still passes.  A peer is checked
first, then the service.  Filter, as nwaku's PerPeerRateLimiter (per_peer_limiter.nim), has the
per-peer bucket only, at the setting itself.

**Relay** (:class:`RelayPeerLimiter`): messages and bytes per second that one peer may send us
over gossipsub, checked before any decoding or validation.  What is over is ignored (neither
delivered nor forwarded) and costs the peer a behaviour penalty (gossipsub v1.1 P7) in
proportion: :meth:`RelayPeerLimiter.penalty` is one penalty per second's worth of excess traffic.

Per-peer state is bounded: a peer idle for longer than its bucket needs to refill completely is
forgotten (its bucket would be full again anyway), and beyond ``max_peers`` the least recently
seen peer is forgotten first (it starts again from a full bucket; the service bucket still holds).
A disconnect forgets nothing: reconnecting must not refill a peer's bucket.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from v2.errors import V2Error

__all__ = [
    "DEFAULT_MAX_PEERS",
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_RELAY_BURST_S",
    "DEFAULT_RELAY_PEER_BYTES_PER_S",
    "DEFAULT_RELAY_PEER_MESSAGES_PER_S",
    "UNLIMITED",
    "Limited",
    "RateLimit",
    "RateLimitConfigError",
    "RateLimitedProtocol",
    "RelayPeerLimiter",
    "RequestLimiter",
    "TokenBucket",
    "parse_rate_limit",
    "parse_rate_limits",
]


class RateLimitConfigError(V2Error, ValueError):
    """A ``--rate-limit`` setting that does not parse (a ValueError for the config loader)."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"invalid rate-limit setting {setting!r}: {reason}")
        self.setting = setting
        self.reason = reason


class RateLimitedProtocol(StrEnum):
    """nwaku's RateLimitedProtocol; the values are the names of the setting syntax."""

    GLOBAL = "global"
    STOREV2 = "storev2"  # the legacy store, /vac/waku/store/2.0.0-beta4
    STOREV3 = "storev3"
    LIGHTPUSH = "lightpush"  # v3 and legacy together, as one service
    PX = "px"
    FILTER = "filter"  # filter-subscribe requests, per peer only


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``volume`` requests per ``period`` seconds; a volume or period of 0 is no limit (nwaku's
    ``isUnlimited``)."""

    volume: int
    period: float

    @property
    def unlimited(self) -> bool:
        return self.volume <= 0 or self.period <= 0

    @property
    def per_second(self) -> float:
        return 0.0 if self.unlimited else self.volume / self.period

    def __str__(self) -> str:
        if self.unlimited:
            return "no-limit"
        ms = round(self.period * 1000)
        for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if ms % size == 0:
                return f"{self.volume}/{ms // size}{unit}"
        return f"{self.volume}/{ms}ms"


UNLIMITED = RateLimit(0, 0.0)

P = RateLimitedProtocol

# The defaults, sized for what legitimate clients and fleet peers do (docs/operations.md
# "v2 rate limits").  nwaku's CLI defaults are filter 100/1s, lightpush 5/1s, px 5/1s and no store
# limit (tools/confutils/cli_args.nim ``rateLimits``); where we differ, the reason is given.
DEFAULT_RATE_LIMITS: Mapping[RateLimitedProtocol, RateLimit] = {
    P.GLOBAL: UNLIMITED,  # nwaku: only protocols without a setting of their own fall back to it
    # nwaku leaves the store unlimited; a store query is the most expensive request we serve (a
    # database query and up to 100 messages of 150 KiB written back), so it gets a bound.  A
    # Status client catching up pages sequentially (one round trip each, tens of pages): 100/s
    # for the node, 75/s sustained and 750 in a 10 s burst for one peer, is well above that.
    P.STOREV3: RateLimit(100, 1.0),
    P.STOREV2: RateLimit(100, 1.0),
    # nwaku's 5/1s refuses the sixth message a client pushes within a second (go-waku's client
    # pushes back to back; a Status client sends a message, its reactions and receipts together).
    # A lightpushed message costs us what a relayed one does, and the relay takes thousands per
    # second per peer: 50/s for the node (375 in 10 s for one peer) protects and never bites.
    P.LIGHTPUSH: RateLimit(50, 1.0),
    # nwaku's: a light client asks once at start and when it loses peers.
    P.PX: RateLimit(5, 1.0),
    # nwaku's, per peer: js-waku subscribes, then pings once a minute per subscription.
    P.FILTER: RateLimit(100, 1.0),
}

_SETTING = re.compile(r"^\s*(?:(store|storev2|storev3|lightpush|px|filter)\s*:)?\s*(\d+)\s*/\s*(\d+)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate_limit(text: str) -> tuple[str, RateLimit]:
    """One setting: (protocol name, "global" or "store" included, its limit).  Case-insensitive
    and lazy about whitespace, as nwaku's regex."""
    if not isinstance(text, str):
        raise RateLimitConfigError(repr(text), "expected a string like store:100/1s")
    m = _SETTING.match(text.lower())
    if m is None:
        raise RateLimitConfigError(text, "expected [store|storev2|storev3|lightpush|px|filter:]<volume>/<period>"
                                         "<ms|s|m|h>, e.g. lightpush:50/1s")
    proto, volume, period, unit = m.group(1) or "global", int(m.group(2)), int(m.group(3)), m.group(4)
    return proto, RateLimit(volume, period * _UNIT_S[unit])


def parse_rate_limits(settings: Iterable[str],
                      defaults: Mapping[RateLimitedProtocol, RateLimit] = DEFAULT_RATE_LIMITS,
                      ) -> dict[RateLimitedProtocol, RateLimit]:
    """Every protocol's limit from repeated settings merged over ``defaults`` (module docstring)."""
    named: dict[RateLimitedProtocol, RateLimit] = {}
    store: RateLimit | None = None
    for text in settings:
        proto, limit = parse_rate_limit(text)
        if proto == "store":
            store = limit  # only for the versions not named themselves, in any order (setting.nim)
        else:
            named[RateLimitedProtocol(proto)] = limit  # the last one wins
    if store is not None:
        named.setdefault(P.STOREV2, store)
        named.setdefault(P.STOREV3, store)
    glob = named.get(P.GLOBAL)
    out: dict[RateLimitedProtocol, RateLimit] = {}
    for proto in RateLimitedProtocol:
        if proto in named:
            out[proto] = named[proto]
        elif glob is not None:
            out[proto] = glob
        else:
            out[proto] = defaults.get(proto, defaults.get(P.GLOBAL, UNLIMITED))
    return out


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate`` per second; full at the first use.
    A clock that steps back adds nothing."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.tokens = self.capacity
        self.stamp: float | None = None

    @classmethod
    def of(cls, limit: RateLimit) -> TokenBucket:
        """``volume`` per ``period``, ``volume`` at once."""
        if limit.unlimited:
            raise ValueError("an unlimited setting has no bucket")
        return cls(limit.volume, limit.volume / limit.period)

    def _refill(self, now: float) -> None:
        if self.stamp is None:
            self.stamp = now
        elif now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> float:
        """The tokens there are at ``now`` (refilled, nothing spent)."""
        self._refill(now)
        return self.tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if there are that many."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    @property
    def refill_time(self) -> float:
        """Seconds an empty bucket needs to be full again."""
        return self.capacity / self.rate


DEFAULT_MAX_PEERS = 4096  # per-peer buckets kept per service; the connection limit is 50 by default


class _PeerTable:
    """Per-peer state, least recently used first; bounded by idleness and by ``max_peers``."""

    def __init__(self, idle_after: float, max_peers: int) -> None:
        self.idle_after = idle_after
        self.max_peers = max(1, max_peers)
        self._peers: OrderedDict[str, tuple[float, list[TokenBucket]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def get(self, peer: str, now: float) -> list[TokenBucket] | None:
        self._expire(now)
        entry = self._peers.get(peer)
        if entry is None:
            return None
        self._peers[peer] = (now, entry[1])
        self._peers.move_to_end(peer)
        return entry[1]

    def put(self, peer: str, now: float, buckets: list[TokenBucket]) -> None:
        self._peers[peer] = (now, buckets)
        self._peers.move_to_end(peer)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._peers:
            peer, (seen, _) = next(iter(self._peers.items()))
            if now - seen <= self.idle_after:
                return
            del self._peers[peer]

    def forget(self, peer: str) -> None:
        self._peers.pop(peer, None)


class Limited(IntEnum):
    """The outcome of a request check (the label of ``waku_service_rate_limited_total{scope}``)."""

    NO = 0
    PEER = 1  # the peer's own bucket is empty
    SERVICE = 2  # the service's bucket is empty

    @property
    def label(self) -> str:
        return self.name.lower()


def _peer_ratio(period: float) -> int:
    """nwaku request_limiter.nim ``calcPeriodRatio``."""
    if period <= 1.0:
        return 10
    if period <= 60.0:
        return 3
    return 2


class RequestLimiter:
    """One service's limiter (module docstring): ``check(peer, now)`` spends a token or refuses."""

    def __init__(self, limit: RateLimit, *, per_peer_only: bool = False, max_peers: int = DEFAULT_MAX_PEERS) -> None:
        if limit.unlimited:
            raise ValueError("an unlimited setting needs no limiter")
        self.limit = limit
        if per_peer_only:
            self._service: TokenBucket | None = None
            self.peer_limit = limit
        else:
            self._service = TokenBucket.of(limit)
            ratio = _peer_ratio(limit.period)
            self.peer_limit = RateLimit(max(1, math.trunc(limit.volume * ratio * 0.75)), limit.period * ratio)
        probe = TokenBucket.of(self.peer_limit)
        self._peers = _PeerTable(probe.refill_time, max_peers)

    @property
    def tracked_peers(self) -> int:
        return len(self._peers)

    def check(self, peer: str, now: float) -> Limited:
        buckets = self._peers.get(peer, now)
        if buckets is None:
            buckets = [TokenBucket.of(self.peer_limit)]
            self._peers.put(peer, now, buckets)
        if not buckets[0].take(now):
            return Limited.PEER
        if self._service is not None and not self._service.take(now):
            return Limited.SERVICE
        return Limited.NO

    def forget(self, peer: str) -> None:
        self._peers.forget(peer)


# Relay, per peer.  A fleet relay peer forwards us its whole shard, duplicates included (every
# mesh peer may send us each message once), so the limit must sit far above the busiest shard.
# Status fleets carry a few to some tens of messages per second per shard; this bridge publishes
# up to ~500/s of bridged v1 traffic into it and its own node receives about 1 000 msg/s from one
# go-waku peer at most (docs/interop-gowaku.md).  2 000 messages/s with a 2 s burst is at least
# twice anything a legitimate peer can make us receive, and a multiple of the ~10/s the stock
# py-libp2p spam limiter allowed.  Bytes: 16 MiB/s holds 100 messages/s of nwaku's largest size
# (150 KiB), while the typical Status message is well under 1 KiB.
DEFAULT_RELAY_PEER_MESSAGES_PER_S = 2000
DEFAULT_RELAY_PEER_BYTES_PER_S = 16 << 20
DEFAULT_RELAY_BURST_S = 2.0


class RelayPeerLimiter:
    """Messages/s and bytes/s one relay peer may send us (0 = that one unlimited)."""

    def __init__(self, messages_per_s: float = DEFAULT_RELAY_PEER_MESSAGES_PER_S,
                 bytes_per_s: float = DEFAULT_RELAY_PEER_BYTES_PER_S, *, burst_s: float = DEFAULT_RELAY_BURST_S,
                 max_peers: int = DEFAULT_MAX_PEERS, max_message: int = 0) -> None:
        self.messages_per_s = max(0.0, float(messages_per_s))
        self.bytes_per_s = max(0.0, float(bytes_per_s))
        self.burst_s = max(burst_s, 1e-3)
        # The byte bucket holds at least one largest legitimate message, else it could never pass.
        self._byte_capacity = max(self.bytes_per_s * self.burst_s, float(max_message))
        self._peers = _PeerTable(self.burst_s + (self._byte_capacity / self.bytes_per_s if self.bytes_per_s else 0),
                                 max_peers)

    @property
    def enabled(self) -> bool:
        return self.messages_per_s > 0 or self.bytes_per_s > 0

    @property
    def tracked_peers(self) -> int:
        return len(self._peers)

    def _buckets(self, peer: str, now: float) -> list[TokenBucket]:
        buckets = self._peers.get(peer, now)
        if buckets is None:
            buckets = []
            if self.messages_per_s > 0:
                buckets.append(TokenBucket(max(1.0, self.messages_per_s * self.burst_s), self.messages_per_s))
            if self.bytes_per_s > 0:
                buckets.append(TokenBucket(self._byte_capacity, self.bytes_per_s))
            self._peers.put(peer, now, buckets)
        return buckets

    def check(self, peer: str, size: int, now: float) -> str | None:
        """None if the message may go on, else the limit it exceeds ("messages" | "bytes").  A
        refused message spends nothing."""
        if not self.enabled:
            return None
        buckets = self._buckets(peer, now)
        count = buckets[0] if self.messages_per_s > 0 else None
        size_bucket = buckets[-1] if self.bytes_per_s > 0 else None
        if count is not None and count.available(now) < 1.0:
            return "messages"
        if size_bucket is not None and not size_bucket.take(now, float(size)):
            return "bytes"
        if count is not None:
            count.take(now)
        return None

    def penalty(self, kind: str, size: int) -> float:
        """The behaviour penalty for one refused message: the fraction of a second's allowance it
        is, so a peer sending at k times the limit gains about k - 1 penalties per second."""
        if kind == "messages":
            return 1.0 / self.messages_per_s if self.messages_per_s > 0 else 0.0
        return size / self.bytes_per_s if self.bytes_per_s > 0 else 0.0

    def forget(self, peer: str) -> None:
        self._peers.forget(peer)
