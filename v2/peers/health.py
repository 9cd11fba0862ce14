"""A per-peer health score (pure: ``now`` is an argument) for pruning and replacing peers.

Three inputs, the ones nwaku's peer store and gossipsub keep apart and the connection manager
has to weigh together:
- failed dials (nwaku's ``NumberFailedConnBook``): a peer we cannot reach is worth less than one we can;
- request-response answers (ping, store, peer exchange, metadata): a failed or slow answer
  (slower than ``slow_answer`` seconds) costs, a prompt one slowly earns the cost back;
- relay behaviour: the gossipsub v1.1 peer score (libp2p gossipsub-v1.1 spec, "Peer Scoring"),
  read from ``relay_scores()``.  A score below ``graylist_threshold`` means gossipsub already
  ignores the peer's RPCs (spec: graylistThreshold), so the connection only takes a slot: such a
  peer is *replaced* (pruned and backed off) even when the node is not above its limits.

Penalties decay exponentially (half-life ``half_life``): a peer that misbehaved an hour ago and has
behaved since is as good as new, so a transient outage does not brand a peer for ever.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["HealthBook", "HealthConfig", "HealthEvent"]

# nwaku waku/waku_relay/protocol.nim GossipsubParams: gossip -100, publish -1000, graylist -10000.
DEFAULT_GRAYLIST_THRESHOLD = -10_000.0


class HealthEvent(enum.IntEnum):
    DIAL_FAILED = 1
    ANSWER_FAILED = 2
    ANSWER_SLOW = 3
    ANSWER_OK = 4


@dataclass(frozen=True, slots=True)
class HealthConfig:
    slow_answer: float = 2.0  # s: an answer slower than this counts as slow
    half_life: float = 600.0  # s after which a penalty weighs half
    dial_failed: float = 1.0  # penalty per event
    answer_failed: float = 1.0
    answer_slow: float = 0.5
    answer_ok: float = 0.1  # a prompt answer pays back this much of the penalty
    graylist_threshold: float = DEFAULT_GRAYLIST_THRESHOLD
    # The relay score's weight: a score at the graylist threshold weighs as 10 failed answers.
    relay_weight: float = 10.0

    def __post_init__(self) -> None:
        if self.half_life <= 0 or self.slow_answer <= 0 or self.graylist_threshold >= 0:
            raise ValueError("need half_life > 0, slow_answer > 0, graylist_threshold < 0")


@dataclass(slots=True)
class _Record:
    penalty: float = 0.0
    at: float = 0.0  # when ``penalty`` was last brought up to date


class HealthBook:
    """Health of the peers we know: 0 is a peer with a clean record, lower is worse."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config if config is not None else HealthConfig()
        self._records: dict[str, _Record] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _decayed(self, r: _Record, now: float) -> float:
        dt = max(0.0, now - r.at)
        return r.penalty * math.pow(0.5, dt / self.config.half_life)

    def record(self, peer: str, event: HealthEvent, now: float) -> None:
        c = self.config
        r = self._records.setdefault(peer, _Record(at=now))
        cost = {HealthEvent.DIAL_FAILED: c.dial_failed, HealthEvent.ANSWER_FAILED: c.answer_failed,
                HealthEvent.ANSWER_SLOW: c.answer_slow, HealthEvent.ANSWER_OK: -c.answer_ok}[event]
        r.penalty = max(0.0, self._decayed(r, now) + cost)
        r.at = now
        if r.penalty == 0.0:
            del self._records[peer]  # a clean record needs no entry: the book stays as small as the trouble

    def answer(self, peer: str, rtt: float | None, now: float) -> None:
        """A request-response answer took ``rtt`` seconds (None: it failed or timed out)."""
        if rtt is None:
            self.record(peer, HealthEvent.ANSWER_FAILED, now)
        elif rtt > self.config.slow_answer:
            self.record(peer, HealthEvent.ANSWER_SLOW, now)
        else:
            self.record(peer, HealthEvent.ANSWER_OK, now)

    def score(self, peer: str, now: float, relay_score: float = 0.0) -> float:
        """<= 0; the relay score only counts when negative (a positive gossipsub score says the
        peer delivers, which its being connected already tells)."""
        r = self._records.get(peer)
        penalty = self._decayed(r, now) if r is not None else 0.0
        relay = min(0.0, relay_score) / -self.config.graylist_threshold * self.config.relay_weight
        return relay - penalty

    def scores(self, peers: Iterable[str], now: float, relay_scores: Mapping[str, float]) -> dict[str, float]:
        return {p: self.score(p, now, relay_scores.get(p, 0.0)) for p in peers}

    def to_replace(self, peers: Iterable[str], relay_scores: Mapping[str, float]) -> set[str]:
        """Peers whose gossipsub score fell below the graylist threshold."""
        t = self.config.graylist_threshold
        return {p for p in peers if relay_scores.get(p, 0.0) < t}

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the records of peers not in ``keep`` (the peer store forgot them)."""
        kept = set(keep)
        for p in [p for p in self._records if p not in kept]:
            del self._records[p]
