"""Health-aware leadership: leadership follows the ability to serve (docs/failover.md "Health").

An active that has lost every peer on one side (the old bridge after 11 hours, nwaku #1013) keeps
renewing its lease while a healthy standby idles; these rules move the lease, in the spirit of
Patroni's (a replica that cannot serve does not take the leader key; the leader hands over only to
a healthier member; timeouts, not single samples, decide):

1. *A side is unhealthy* once it has had no usable peer for ``unhealthy_after`` seconds.  A
   connected peer is not necessarily usable: a silent partition (packets dropped, no FIN or RST)
   leaves a TCP connection open for as long as retransmission lasts (~15 min, tcp(7)
   ``tcp_retries2``), so the v2 side has a usable peer only while its keep-alive pings are
   answered (:class:`ProbeTracker`; every :attr:`HealthConfig.probe_interval`, libp2p ping).
   A v1 peer needs no probe of ours: RLPx drops a link without a frame for 30 s (geth's frame
   read timeout; our keep-alive Ping every 15 s keeps a live one busy).  It is
   healthy again only after it has had a peer continuously for ``recover_after`` seconds
   (hysteresis: a peer that connects and drops at once does not flip it).  A side that never had
   a peer since the start is not healthy (a fresh instance must not be handed a lease it cannot
   serve); its first peer makes it healthy at once (there is no failure to be sure about).
2. *Every instance publishes* ``{v1, v2}`` beside the lease (SQLite: a ``health`` row per instance,
   etcd: a key under the election's prefix on the session lease), refreshed with every renewal or
   poll; a report older than the TTL is ignored (its writer is gone or partitioned).
3. *The active resigns* when it is unhealthy, a fresh report of another instance says healthy, and
   it has led for at least ``min_tenure`` seconds (so a leader can never be bounced back and
   forth faster than that).
4. *A standby that is unhealthy does not campaign* while a fresh report of another instance says
   healthy.  If no instance is healthy, health does not matter: leadership stays with the lease
   (a degraded active is better than none).

The data dir is a third "side", ``disk``: it is unhealthy once the process's writes there have
kept failing for ``unhealthy_after`` (a full or failing disk, bridge/disk.py), healthy again after
``recover_after`` of writes that succeed; it is healthy from the start (no write has failed).
The same rules then move the lease to a standby whose disk works.

Pure: plain values, ``now`` passed in (the elector's monotonic clock); the backends carry the
reports, :class:`failover.elector.ElectorCore` applies :func:`verdict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Health", "HealthConfig", "HealthTracker", "PeerHealth", "ProbeTracker", "SideHealth", "Verdict",
           "verdict"]


@dataclass(frozen=True, slots=True)
class HealthConfig:
    unhealthy_after: float = 30.0  # failover.unhealthy_after / --failover-unhealthy-after
    recover_after: float = 5.0  # a side must have a peer this long to count as healthy again
    min_tenure: float = 30.0  # an active leads at least this long before it resigns for health

    @classmethod
    def for_unhealthy_after(cls, unhealthy_after: float) -> HealthConfig:
        # Recovery takes a sixth of the detection time (5 s for the default 30 s), and a term lasts
        # at least as long as the detection: a hand-over costs a takeover, never more than that often.
        return cls(unhealthy_after, min(5.0, unhealthy_after / 6), unhealthy_after)

    @property
    def probe_interval(self) -> float:
        """Keep-alive ping period for the v2 peers: a third of ``unhealthy_after``, at most nwaku's
        10 s, so a silently cut peer is found out well within it (10 s for the default 30 s)."""
        return min(10.0, self.unhealthy_after / 3)

    @property
    def probe_timeout(self) -> float:
        """How long a ping may take: py-libp2p's own 10 s, shorter for a short ``unhealthy_after``."""
        return min(10.0, self.unhealthy_after / 3)


@dataclass(frozen=True, slots=True)
class Health:
    v1: bool = True
    v2: bool = True
    disk: bool = True  # the data dir takes writes (a report without it, from an older release: True)

    @property
    def ok(self) -> bool:
        return self.v1 and self.v2 and self.disk

    def as_dict(self) -> dict[str, bool]:
        return {"v1": self.v1, "v2": self.v2, "disk": self.disk}


@dataclass(frozen=True, slots=True)
class PeerHealth:
    """Another instance's published report."""

    identity: str
    health: Health
    age: float  # seconds since it was written (on the store's clock)


class SideHealth:
    """Rule 1 for one side: peer / no peer samples in, healthy or not out."""

    def __init__(self, config: HealthConfig, now: float) -> None:
        self.config = config
        self.last_peer = now
        self.peer_since: float | None = None  # start of the current run of samples with a peer
        self.ever = False  # had a peer since the start
        self.healthy = False

    def observe(self, has_peer: bool, now: float) -> bool:
        if has_peer:
            if not self.ever:
                self.ever = self.healthy = True
            self.last_peer = now
            if self.peer_since is None:
                self.peer_since = now
            if not self.healthy and now - self.peer_since >= self.config.recover_after:
                self.healthy = True
        else:
            self.peer_since = None
            if self.healthy and now - self.last_peer >= self.config.unhealthy_after:
                self.healthy = False
        return self.healthy


class ProbeTracker:
    """Rule 1's *usable*, for a side whose peers are probed: connected, and a probe (a keep-alive
    ping to any of them) answered within one probe period plus its timeout.  A new connection
    gets that long before its first answer is due."""

    def __init__(self, config: HealthConfig) -> None:
        self.window = config.probe_interval + config.probe_timeout
        self.answered = 0  # answered probes so far (a counter, e.g. keep-alive pings "ok")
        self.since: float | None = None  # last answer, or when the side got its first peer

    def observe(self, peers: int, answered: int, now: float) -> int:
        """``peers`` connected, ``answered`` probes so far: how many peers count as usable."""
        if peers == 0:
            self.since = None
        elif self.since is None or answered > self.answered:
            self.since = now
        self.answered = answered
        return peers if self.since is not None and now - self.since <= self.window else 0


class HealthTracker:
    """Both sides and the data dir of one instance."""

    def __init__(self, config: HealthConfig, now: float) -> None:
        self.config = config
        self.v1 = SideHealth(config, now)
        self.v2 = SideHealth(config, now)
        self.disk = SideHealth(config, now)
        self.disk.observe(True, now)  # healthy until writes fail

    def observe(self, v1_peers: int, v2_peers: int, now: float, *, disk_ok: bool = True) -> Health:
        return Health(self.v1.observe(v1_peers > 0, now), self.v2.observe(v2_peers > 0, now),
                      self.disk.observe(disk_ok, now))

    @property
    def health(self) -> Health:
        return Health(self.v1.healthy, self.v2.healthy, self.disk.healthy)


class Verdict(IntEnum):
    STAY = 0  # keep doing what we do (lead and renew, or campaign as usual)
    RESIGN = 1  # rule 3: hand the lease to a healthy standby
    WITHHOLD = 2  # rule 4: a standby that does not campaign


def verdict(me: Health, *, leading: bool, tenure: float, others: Iterable[PeerHealth], ttl: float,
            config: HealthConfig) -> Verdict:
    """What health asks of us now; ``tenure`` = seconds since we were elected (ignored if not
    ``leading``), ``others`` = the other instances' reports (stale ones are ignored here)."""
    if me.ok:
        return Verdict.STAY
    healthy_other = any(o.health.ok and o.age <= ttl for o in others)
    if not healthy_other:
        return Verdict.STAY  # no one can do better: a degraded active beats none
    if leading:
        return Verdict.RESIGN if tenure >= config.min_tenure else Verdict.STAY
    return Verdict.WITHHOLD
