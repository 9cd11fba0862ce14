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

With the nwaku limits (:meth:`PolicyConfig.nwaku`, waku/node/peer_manager/peer_manager.nim ``new``
and ``onPeerEvent``): ``--max-connections`` split by ``--relay-service-ratio`` into relay and service
slots, the relay slots into outbound (a third, at least :data:`MIN_RELAY_PEERS`) and inbound; the node
dials until it has its outbound relay peers and prunes, in this order (:meth:`PeerPolicy.prune_plan`):
1. peers above ``--ip-colocation-limit`` on one IP (nwaku default 5; 0 = off).  nwaku drops the
   earliest peers of the IP; we drop the newest, for the reason above: a burst from one address
   must not evict the peer that address had;
2. peers to replace: gossipsub graylisted them (see :mod:`v2.peers.health`);
3. inbound relay peers above the inbound target (nwaku ``pruneInRelayConns``);
4. service (non-relay) peers above the service slots;
5. anyone above the maximum, as above.
Within a step the least healthy peer goes first, then the newest.  Candidates to dial skip IPs
already at the colocation limit and prefer, within their source, a /24 (IPv4) or /48 (IPv6) subnet
the node has no peer in yet: one operator's rack or one cloud region should not be the node's view.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["INBOUND", "MIN_RELAY_PEERS", "STATIC", "PeerPolicy", "PeerState", "PolicyConfig", "Prune", "PruneReason",
           "addr_ip", "parse_relay_service_ratio", "subnet_of"]

STATIC = "static"
INBOUND = "inbound"  # a connected peer we never dialled (source of peers unknown to the store)
_NO_TOPICS: Final[Mapping[str, Collection[str]]] = {}
# gossipsub's D (libp2p gossipsub v1.0 spec; nwaku and go-waku keep D = 6): fewer relay peers and
# the mesh cannot even form at its target degree.
MIN_RELAY_PEERS: Final = 6


class PruneReason(enum.IntEnum):
    COLOCATION = 1
    UNHEALTHY = 2
    IN_RELAY_SURPLUS = 3
    SERVICE_SURPLUS = 4
    MAXIMUM = 5

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Prune:
    peer: str
    reason: PruneReason


def parse_relay_service_ratio(text: str) -> tuple[float, float]:
    """nwaku's ``--relay-service-ratio`` ("60:40"): two non-negative parts summing to 100."""
    parts = text.split(":")
    try:
        relay, service = (float(x) for x in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        relay = service = math.nan
    if not (relay >= 0 and service >= 0 and math.isclose(relay + service, 100.0)):
        raise ValueError(f"relay-service-ratio must be 'relay:service' summing to 100, not {text!r}")
    return relay / 100.0, service / 100.0


def addr_ip(addr: str) -> str | None:
    """The IP of an ``/ip4/`` or ``/ip6/`` multiaddr (None for /dns*: unknown until resolved)."""
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        return parts[2]
    return None


def subnet_of(ip: str) -> str:
    """The /24 of an IPv4 address, the /48 of an IPv6 one (what one site usually holds)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return str(ipaddress.ip_network(f"{a}/{24 if a.version == 4 else 48}", strict=False))


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
    colocation_limit: int = 0  # peers per IP; 0 = no limit (nwaku: 0 disables it)
    # The nwaku limits (None: not applied; then ``target`` counts every connection).  With
    # ``out_relay_target`` the node dials until that many outbound peers it does not know to be
    # service-only are connected; ``target`` is then unused.
    out_relay_target: int | None = None
    in_relay_target: int | None = None
    service_max: int | None = None
    prune_hold: float = 30.0  # s a pruned peer is not redialled (it would be pruned again)

    def __post_init__(self) -> None:
        if not 0 <= self.target <= self.maximum:
            raise ValueError("need 0 <= target <= maximum")
        if not 0 < self.max_source_share <= 1 or not 0 <= self.jitter < 1:
            raise ValueError("max_source_share in (0, 1], jitter in [0, 1)")
        if self.colocation_limit < 0 or any(v is not None and not 0 <= v <= self.maximum for v in (
                self.out_relay_target, self.in_relay_target, self.service_max)):
            raise ValueError("need colocation_limit >= 0 and the relay/service limits in [0, maximum]")

    @property
    def relay_starved(self) -> bool:
        """Too few relay slots for a gossipsub mesh of degree D (the node should say so)."""
        out, inbound = self.out_relay_target, self.in_relay_target or 0
        return out is not None and out + inbound < MIN_RELAY_PEERS

    @classmethod
    def nwaku(cls, max_connections: int = 50, relay_service_ratio: str = "60:40", colocation_limit: int = 5,
              **kw: float) -> PolicyConfig:
        """nwaku's split (peer_manager.nim ``new``): relay slots ``ceil(max x relay)``, service slots
        ``floor(max x service)``, a third of the relay slots outbound, the rest inbound.  nwaku
        refuses fewer relay slots than gossipsub's D_high (12); we keep at least D (6) outbound
        when the relay slots allow it, and below that all of them (see :meth:`relay_starved`)."""
        relay_ratio, service_ratio = parse_relay_service_ratio(relay_service_ratio)
        relay = math.ceil(max_connections * relay_ratio - 1e-9)
        service = math.floor(max_connections * service_ratio + 1e-9)
        out = min(relay, max(MIN_RELAY_PEERS, relay // 3))
        return cls(target=out, maximum=max_connections, colocation_limit=colocation_limit, out_relay_target=out,
                   in_relay_target=relay - out, service_max=service, **kw)  # type: ignore[arg-type]


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
    hold_until: float = 0.0  # pruned: not redialled before this


@dataclass(slots=True)
class _Conn:
    arrived: float
    direction: str  # "inbound" | "outbound" | "unknown"
    ip: str | None


class PeerPolicy:
    def __init__(self, config: PolicyConfig, static_peers: Mapping[str, Sequence[str]], rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._peers: dict[str, PeerState] = {
            pid: PeerState(pid, list(addrs), STATIC, static=True) for pid, addrs in static_peers.items()}
        # Each currently connected peer (known or not): when it connected (newest are pruned
        # first), its direction and remote IP.
        self._conns: dict[str, _Conn] = {}

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

    def connected(self, peer_id: str, now: float, direction: str = "unknown", ip: str | None = None) -> None:
        c = self._conns.get(peer_id)
        if c is None:
            self._conns[peer_id] = _Conn(now, direction, ip)
        else:  # what a later look at the connection learnt
            c.direction = direction if c.direction == "unknown" else c.direction
            c.ip = ip if c.ip is None else c.ip
        p = self._peers.get(peer_id)
        if p is not None and p.connected_since is None:
            p.connected_since = now
            p.ever_connected = True

    def disconnected(self, peer_id: str, now: float) -> None:
        self._conns.pop(peer_id, None)
        p = self._peers.get(peer_id)
        if p is None or p.connected_since is None:
            return
        lived = now - p.connected_since
        p.connected_since = None
        if lived < self.config.flap_window and p.hold_until <= now:
            self.dial_failed(peer_id, now)
        else:
            p.next_dial_at = max(now, p.hold_until)  # a lost connection is worth one immediate redial

    def pruned(self, peer_id: str, reason: PruneReason, now: float) -> None:
        """We are disconnecting the peer: do not redial it at once (it would be pruned again);
        a peer replaced for its relay behaviour waits as long as the longest backoff."""
        p = self._peers.get(peer_id)
        if p is not None and not p.static:
            hold = self.config.backoff_max if reason is PruneReason.UNHEALTHY else self.config.prune_hold
            p.hold_until = max(p.hold_until, now + hold)
            p.next_dial_at = max(p.next_dial_at, p.hold_until)

    def direction(self, peer_id: str) -> str:
        c = self._conns.get(peer_id)
        return c.direction if c is not None else "unknown"

    def ip(self, peer_id: str) -> str | None:
        """The remote IP of a connected peer (what the connection saw), else of its first address."""
        c = self._conns.get(peer_id)
        if c is not None and c.ip is not None:
            return c.ip
        p = self._peers.get(peer_id)
        return next((ip for ip in map(addr_ip, p.addrs) if ip is not None), None) if p is not None else None

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
        p.next_dial_at = max(now + delay, p.hold_until)
        return delay

    def backoff(self, failures: int, static: bool) -> float:
        cap = self.config.static_backoff_max if static else self.config.backoff_max
        base = min(cap, self.config.backoff_initial * 2 ** min(failures - 1, 62))
        return base * (1 + self.config.jitter * (2 * self._rng.random() - 1))

    # ------------------------------------------------------------------ decisions

    def plan_dials(self, connected: Collection[str], dialing: Collection[str], now: float, *,
                   service: Collection[str] = ()) -> list[str]:
        """Peers to dial now: every due static peer, then discovered peers up to the target.

        ``service``: connected peers known to relay nothing (identify listed no relay); with the
        nwaku limits they do not count towards the outbound relay target."""
        cfg = self.config
        busy = set(connected) | set(dialing)
        out = [p.peer_id for p in self._peers.values()
               if p.static and p.peer_id not in busy and p.next_dial_at <= now]
        if cfg.out_relay_target is None:
            slots = cfg.target - len(busy)
        else:
            outbound = sum(1 for pid in connected if self.direction(pid) == "outbound" and pid not in service)
            slots = min(cfg.out_relay_target - outbound - len(dialing), cfg.maximum - len(busy))
        slots = min(slots, cfg.max_parallel_dials - len(dialing))
        if slots <= 0:
            return out
        per_ip: dict[str, int] = {}
        per_subnet: dict[str, int] = {}

        def count(pid: str) -> None:
            ip = self.ip(pid)
            if ip is not None:
                per_ip[ip] = per_ip.get(ip, 0) + 1
                per_subnet[subnet_of(ip)] = per_subnet.get(subnet_of(ip), 0) + 1

        for pid in busy | set(out):
            count(pid)
        limit = cfg.colocation_limit
        candidates: dict[str, list[tuple[int, PeerState, str | None]]] = {}
        for i, p in enumerate(self._peers.values()):
            if not p.static and p.peer_id not in busy and p.next_dial_at <= now:
                candidates.setdefault(p.source, []).append((i, p, self.ip(p.peer_id)))
        counts: dict[str, int] = {}
        for pid in busy:
            src = self._source(pid)
            counts[src] = counts.get(src, 0) + 1
        sources_known = {p.source for p in self._peers.values() if not p.static}
        cap = max(1, math.ceil(cfg.target * cfg.max_source_share))
        while slots > 0:
            for group in candidates.values():  # an IP that reached the limit is no candidate any more
                group[:] = [c for c in group if not (limit and c[2] is not None and per_ip.get(c[2], 0) >= limit)]
            capped = len(sources_known) >= 2
            open_sources = [s for s, g in candidates.items() if g and not (capped and counts.get(s, 0) >= cap)]
            if not open_sources:
                break
            src = min(open_sources, key=lambda s: (counts.get(s, 0), s))
            group = candidates[src]
            # An unseen subnet first, then fewer failures, then the order peers were found in.
            best = min(group, key=lambda c: (per_subnet.get(subnet_of(c[2]), 0) if c[2] is not None else 0,
                                             c[1].failures, c[0]))
            group.remove(best)
            out.append(best[1].peer_id)
            count(best[1].peer_id)
            counts[src] = counts.get(src, 0) + 1
            slots -= 1
        return out

    def plan_prune(self, connected: Sequence[str],
                   relay_peers: Mapping[str, Collection[str]] = _NO_TOPICS) -> list[str]:
        """Peers to disconnect so that at most ``maximum`` stay, in pruning order (see
        :meth:`prune_plan`, whose peers this is)."""
        return [p.peer for p in self.prune_plan(connected, relay_peers)]

    def prune_plan(self, connected: Sequence[str], relay_peers: Mapping[str, Collection[str]] = _NO_TOPICS, *,
                   relay: Collection[str] = (), service: Collection[str] = (),
                   health: Mapping[str, float] | None = None, replace: Collection[str] = ()) -> list[Prune]:
        """What to disconnect and why, in the order of the module docstring.

        ``relay_peers`` maps each pubsub topic we relay to the peers relaying it with us.  Never
        a static peer, never the last connected relay peer of such a topic (counted as the plan
        goes: two peers alone on a shard are not both pruned), except for the colocation limit,
        which is a hard one.  ``relay``/``service``: connected peers known to relay / to relay
        nothing; ``health``: peer -> score (higher is better, absent = 0); ``replace``: peers to
        drop whatever the counts (gossipsub graylisted them).
        """
        cfg = self.config
        here = list(dict.fromkeys(connected))
        topics_of: dict[str, list[str]] = {}
        left: dict[str, int] = {}
        here_set = set(here)
        for topic, peers in relay_peers.items():
            members = here_set.intersection(peers)
            left[topic] = len(members)
            for pid in members:
                topics_of.setdefault(pid, []).append(topic)
        scores = health if health is not None else {}
        never = float("inf")  # a peer whose arrival we missed counts as the newest

        def arrived(pid: str) -> float:
            c = self._conns.get(pid)
            return c.arrived if c is not None else never

        def static(pid: str) -> bool:
            p = self._peers.get(pid)
            return p is not None and p.static

        def worst_first(pid: str) -> tuple[float, float]:
            return scores.get(pid, 0.0), -arrived(pid)

        out: list[Prune] = []
        gone: set[str] = set()

        def remaining() -> list[str]:
            return [pid for pid in here if pid not in gone]

        def take(pids: Iterable[str], reason: PruneReason, n: int, guard: bool = True) -> None:
            for pid in pids:
                if n <= 0:
                    return
                if pid in gone or static(pid):
                    continue
                mine = topics_of.get(pid, [])
                if guard and any(left[t] <= 1 for t in mine):
                    continue  # the only relay peer left on a topic we serve
                for t in mine:
                    left[t] -= 1
                gone.add(pid)
                out.append(Prune(pid, reason))
                n -= 1

        if cfg.colocation_limit:
            by_ip: dict[str, list[str]] = {}
            for pid in here:
                ip = self.ip(pid) if pid in self._conns else None
                if ip is not None:
                    by_ip.setdefault(ip, []).append(pid)
            for peers in by_ip.values():
                if len(peers) > cfg.colocation_limit:
                    take(sorted(peers, key=worst_first), PruneReason.COLOCATION, len(peers) - cfg.colocation_limit,
                         guard=False)
        take(sorted((pid for pid in here if pid in replace), key=worst_first), PruneReason.UNHEALTHY, len(here))
        if cfg.in_relay_target is not None:
            inbound = [pid for pid in remaining() if pid in relay and self.direction(pid) == "inbound"]
            take(sorted(inbound, key=worst_first), PruneReason.IN_RELAY_SURPLUS, len(inbound) - cfg.in_relay_target)
        if cfg.service_max is not None:
            svc = [pid for pid in remaining() if pid in service]
            take(sorted(svc, key=worst_first), PruneReason.SERVICE_SURPLUS, len(svc) - cfg.service_max)

        def order(pid: str) -> tuple[bool, bool, float, float]:
            chosen = self._source(pid) != INBOUND
            return pid in topics_of, chosen, *worst_first(pid)

        rest = remaining()
        take(sorted(rest, key=order), PruneReason.MAXIMUM, len(rest) - cfg.maximum)
        return out

    def next_due(self, now: float) -> float | None:
        """The earliest future time a backed-off peer becomes dialable (for the shell's sleep)."""
        times = [p.next_dial_at for p in self._peers.values() if p.connected_since is None and p.next_dial_at > now]
        return min(times) if times else None
