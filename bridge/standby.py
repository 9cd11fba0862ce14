"""The warm-standby core: what an instance holds while it may not publish, and what it bridges, when,
once it may (docs/failover.md "Takeover", docs/operations.md "Warm standby and takeover").

Pure: no trio, no I/O, no clock of its own.  Every call takes ``now`` (the pipeline's clock, wall
seconds: envelope expiries and v2 timestamps are wall-clock values) and the gate's answer
``active``, and returns its decision; :class:`bridge.pipeline.Pipeline` is the trio shell that
feeds it arrivals and the clock and carries the decisions out (dedup, history lookup, publish).

The rules, each with the reason it exists (a takeover publishes what is "not in the dedup cache,
the ledger or a sink history query", without echoing anything back; docs/failover.md):

* *Pending.*  While not active nothing is published: a message seen on one side whose translation
  has not been seen on the other is kept, keyed by its dedup key, until the translation arrives
  (:meth:`Standby.clear`: the active bridged it) or its envelope expires.  At most ``max_pending``
  entries; the oldest go first (a counted drop).
* *Echo grace.*  A pending v1->v2 item may be the v1 translation of a v2 message that the old
  active bridged and whose v2 original has not reached us yet (the v1 copy won the race).  Items
  younger than ``echo_grace_s`` are held past a takeover until the grace has passed
  (:meth:`Standby.release`); the original's arrival clears them as it does on a standby.
* *Takeover window.*  The old active's last v2->v1 posts still travel through v1 peers when we
  take over, and their v2 originals can reach us later (relay under load: the drills measured
  ~1 s).  So for ``echo_grace_s`` after the gate opens every v1 arrival is held like the items
  pending at takeover.  An instance whose gate is open from the start has no window.
* *Uncertain.*  With a sink history to ask, a v1 envelope created before we were warm (``start``
  + ``warmup_s``) may be a pool's re-offer of a v2 message our v2 node never saw: it is held too,
  and the shell checks the history before bridging it.
* *Two active bridges.*  A v2 message that looks like a v1->v2 translation is deferred by
  ``echo_grace_s`` once running (:meth:`Standby.defer_echo`): the v1 original normally arrives
  meanwhile and makes it a duplicate; bridging it back would post a *new* envelope (our TTL, not
  the original's) on v1.  A full queue means "bridge now" rather than a drop.

Not applied: "skip pending items received well before the active's last visible bridging".  It
assumes the active received every item we did, in the same order, and bridged it unless it was a
duplicate; with several v1 peers, a link that dropped on the active only, or a publish that failed
there, the item was never bridged and the rule would lose it (tests/bridge/test_pipeline.py).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from bridge.translate import NS, Unsealed, V1ToV2
from v2.core.message import WakuMessage

__all__ = [
    "Action",
    "Batch",
    "Pending",
    "Standby",
    "StandbyConfig",
    "looks_bridged_from_v1",
]


class Action(IntEnum):
    """What to do with a new (not duplicate) arrival."""

    FORWARD = 0  # bridge it now
    HOLD = 1  # keep it pending (see :meth:`Standby.hold`)


@dataclass(frozen=True, slots=True)
class StandbyConfig:
    echo_grace_s: float = 2.0
    max_pending: int = 100_000
    warmup_s: float = 5.0
    max_echoes: int = 10_000  # v2 messages deferred by the echo grace at once


@dataclass(frozen=True, slots=True)
class Pending:
    item: V1ToV2 | Unsealed  # V1ToV2: a v1->v2 item, Unsealed: a v2->v1 one
    expires: float  # the envelope's expiry: dropped if still pending then
    sent_at: float  # its creation second: the order in which a takeover bridges
    held_at: float  # when it became pending: the echo grace counts from here

    @property
    def from_v1(self) -> bool:
        return isinstance(self.item, V1ToV2)


@dataclass(frozen=True, slots=True)
class Batch:
    """What a takeover or a release bridges, oldest first in each direction.  v2->v1 items go
    first (they need no lookup; the networks are independent, order is per direction); v1->v2
    items go after the sink history check.  ``expired`` entries were dropped from pending."""

    v2_to_v1: tuple[tuple[bytes, Pending], ...] = ()
    v1_to_v2: tuple[tuple[bytes, Pending], ...] = ()
    expired: int = 0


def looks_bridged_from_v1(msg: WakuMessage) -> bool:
    """A v1->v2 translation: RFC 26 payload on a /waku/1 topic with a whole-second timestamp
    (bridge.translate.v1_to_v2 sets the envelope's creation second)."""
    return (msg.version == 1 and msg.content_topic.startswith("/waku/1/") and bool(msg.timestamp)
            and (msg.timestamp or 0) % NS == 0)


class Standby:
    """Pending sets, the gate's last answer, the takeover window, the echo grace."""

    def __init__(self, config: StandbyConfig, *, active: bool, checks_history: bool) -> None:
        self.config = config
        self.checks_history = checks_history  # the "uncertain" rule needs a history to ask
        self._pending: OrderedDict[bytes, Pending] = OrderedDict()
        self._echoes: deque[tuple[float, WakuMessage, float]] = deque()
        self._running = False
        self._warm_from: float | None = None  # v1 envelopes created before this are uncertain
        self._was_active = active  # a gate open from the start has no takeover window
        self._active_since: float | None = None  # when the gate last opened

    @property
    def pending(self) -> Mapping[bytes, Pending]:
        return self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, now: float) -> None:
        """The pipeline runs: deferring echoes starts, and so does the warm-up."""
        self._running = True
        self._warm_from = now + self.config.warmup_s

    # --- the gate ---

    def observe(self, active: bool, now: float) -> bool:
        """Note the gate's answer (its opening starts the takeover window); returns ``active``."""
        if active and not self._was_active:
            self._active_since = now
        self._was_active = active
        return active

    def in_takeover_window(self, t: float) -> bool:
        return self._active_since is not None and t < self._active_since + self.config.echo_grace_s

    def uncertain(self, sent: float) -> bool:
        """Created before we were warm: if it is a translation, its v2 original may have passed
        before our v2 node was up, so it needs the sink history check (only if we have one)."""
        return self.checks_history and self._warm_from is not None and sent < self._warm_from

    # --- arrivals (new keys only: duplicates go to :meth:`clear`) ---

    def on_v1(self, *, active: bool, sent: float, received_at: float, now: float) -> Action:
        if not self.observe(active, now) or self.uncertain(sent) or self.in_takeover_window(received_at):
            return Action.HOLD
        return Action.FORWARD

    @staticmethod
    def on_v2(*, active: bool) -> Action:
        # v2->v1 items need no grace: their v1 copies are absorbed by v1 pools (same bytes).
        return Action.FORWARD if active else Action.HOLD

    def hold(self, key: bytes, item: V1ToV2 | Unsealed, *, expires: float, sent_at: float, now: float) -> int:
        """Remember ``item`` as pending; returns how many of the oldest entries were evicted to
        stay within ``max_pending`` (the caller counts each as a drop)."""
        self._pending[key] = Pending(item, expires, sent_at, now)
        evicted = 0
        while len(self._pending) > self.config.max_pending:
            self._pending.popitem(last=False)
            evicted += 1
        return evicted

    def clear(self, key: bytes, *, from_v1: bool) -> bool:
        """``key`` arrived again (a duplicate) from v1 if ``from_v1`` else from v2: a pending entry
        of the *other* direction is gone (the active bridged it, its translation reached us)."""
        p = self._pending.get(key)
        if p is None or p.from_v1 == from_v1:
            return False
        del self._pending[key]
        return True

    # --- takeover and release ---

    def _held(self, p: Pending, now: float) -> bool:
        """Within the echo grace: a v1->v2 item whose v2 original may still be on its way."""
        return p.from_v1 and p.held_at + self.config.echo_grace_s > now

    def takeover(self, *, active: bool, now: float) -> Batch:
        """What to bridge on taking over: everything pending except v1->v2 items within the echo
        grace (they stay for :meth:`release`).  Expired entries are dropped.  The entries stay
        pending until the shell :meth:`claim` s each in its turn, so an original that arrives
        meanwhile still clears its entry."""
        self.observe(active, now)
        return self._batch([k for k, p in self._pending.items() if not self._held(p, now)], now)

    def release(self, *, active: bool, now: float) -> Batch:
        """The held v1->v2 items whose grace has passed (nothing while not active)."""
        if not active:
            return Batch()
        return self._batch([k for k, p in self._pending.items() if p.from_v1 and not self._held(p, now)], now)

    def held_until(self) -> float | None:
        """When the next v1->v2 item comes out of its echo grace (None: none pending)."""
        dues = [p.held_at + self.config.echo_grace_s for p in self._pending.values() if p.from_v1]
        return min(dues) if dues else None

    def _batch(self, keys: Iterable[bytes], now: float) -> Batch:
        live: list[tuple[bytes, Pending]] = []
        expired = 0
        for k in keys:
            p = self._pending.get(k)
            if p is None:
                continue
            if p.expires <= now:
                del self._pending[k]
                expired += 1
                continue
            live.append((k, p))
        live.sort(key=lambda kp: kp[1].sent_at)
        return Batch(tuple(kp for kp in live if not kp[1].from_v1), tuple(kp for kp in live if kp[1].from_v1),
                     expired)

    def claim(self, key: bytes) -> Pending | None:
        """Take ``key`` out of pending to bridge it; None if its translation arrived meanwhile."""
        return self._pending.pop(key, None)

    def keep(self, key: bytes, p: Pending) -> None:
        """Put a claimed entry back (leadership went while we bridged): for the next takeover."""
        self._pending[key] = p

    def expire(self, now: float) -> int:
        """Forget the entries whose envelopes have expired; returns how many."""
        dead = [k for k, p in self._pending.items() if p.expires <= now]
        for k in dead:
            del self._pending[k]
        return len(dead)

    # --- echo grace for v2 arrivals (two active bridges) ---

    def defer_echo(self, msg: WakuMessage, received_at: float, now: float) -> bool:
        """True if ``msg`` waits ``echo_grace_s`` (:meth:`next_echo`) before it is bridged; False:
        bridge it now (not running yet, no grace, not a translation's shape, or the queue is full)."""
        if not (self._running and self.config.echo_grace_s > 0 and looks_bridged_from_v1(msg)):
            return False
        if len(self._echoes) >= self.config.max_echoes:
            return False
        self._echoes.append((now + self.config.echo_grace_s, msg, received_at))
        return True

    def next_echo(self) -> float | None:
        """When the oldest deferred v2 message is due (None: none deferred)."""
        return self._echoes[0][0] if self._echoes else None

    def pop_echo(self) -> tuple[WakuMessage, float]:
        """The oldest deferred v2 message and when it was received (call once it is due)."""
        _, msg, received_at = self._echoes.popleft()
        return msg, received_at
