"""The connection manager: a thin trio shell around :class:`v2.peers.policy.PeerPolicy`.

It reacts to the host's connection events (a new connection is recorded, with its arrival
order, and the maximum enforced at once; a lost static peer is redialled at once) and also
reconciles with ``connected_peers()``, which stays the truth, on every wake-up and at least
every ``poll_interval`` (a slow safety poll: a full event channel drops events).  It dials what
the policy asks for with a deadline per attempt, prunes above the maximum, and runs each
discovery source in its own task.  Discovered peers arrive as ENRs or ``/p2p/`` multiaddrs
through :meth:`add_discovered`.  The host resolves ``/dns4``/``/dns6`` addresses itself.

Each step classifies the connected peers for the policy's nwaku limits: relay peers (on a topic we
relay, or identify lists relay), service peers (identify done, no relay), the rest unknown yet; it
reads each connection's direction and remote IP (the colocation limit), and the peers' health
(:mod:`v2.peers.health`: failed dials, answers reported through :meth:`note_answer`, and the
gossipsub scores of ``relay_scores``).  The bootstrap latency is the time from :meth:`run` to
:data:`~v2.peers.policy.MIN_RELAY_PEERS` relay peers, measured once per start.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry

from v2.enr.enr import Enr
from v2.enr.maddr import MultiaddrError, encode_multiaddr
from v2.errors import V2Error
from v2.host import ConnectionEvent, DialError, Host
from v2.peers.health import HealthBook, HealthConfig, HealthEvent
from v2.peers.metrics import PeerMetrics
from v2.peers.policy import INBOUND, MIN_RELAY_PEERS, STATIC, PeerPolicy, PolicyConfig, PruneReason
from v2.protocol_ids import RELAY

__all__ = ["DiscoverySource", "PeerManager", "RelayPeers", "RelayScores", "dialable", "split_peer_addr"]

log = logging.getLogger(__name__)


# Each pubsub topic we relay -> the peers relaying it with us (protects the last one from pruning).
RelayPeers = Callable[[], Mapping[str, Collection[str]]]

# Peer id -> gossipsub v1.1 score (libp2p gossipsub-v1.1 spec, "Peer Scoring"), from the relay.  A
# score below the health config's ``graylist_threshold`` (nwaku: -10000) means gossipsub ignores
# the peer: it is replaced (pruned, then not redialled for ``backoff_max``) even within the limits.
# A negative score above it lowers the peer's health: it goes first when peers must be pruned.
RelayScores = Callable[[], Mapping[str, float]]


class DiscoverySource(Protocol):
    """Something that yields peers now and then (DNS tree, peer exchange, ...)."""

    name: str
    interval: float

    async def discover(self) -> Sequence[Enr | str]: ...


def split_peer_addr(addr: str) -> tuple[str, str]:
    """``/ip4/…/tcp/…/p2p/<id>`` -> (peer id, addr); raises ValueError without a valid /p2p/ part."""
    if "/p2p/" not in addr or "/p2p-circuit" in addr:
        raise ValueError(f"not a direct /p2p/ multiaddr: {addr!r}")
    try:
        encode_multiaddr(addr)  # the pure codec rejects garbage before py-libp2p sees it
    except MultiaddrError as exc:
        raise ValueError(str(exc)) from None
    return addr.rsplit("/p2p/", 1)[1], addr


def dialable(addr: str) -> bool:
    """What our host can dial: ip4/ip6/dns4/dns6 + tcp, optionally /ws (no wss, circuit or udp)."""
    parts = addr.split("/")
    return (len(parts) >= 5 and parts[1] in ("ip4", "ip6", "dns4", "dns6") and parts[3] == "tcp"
            and "p2p-circuit" not in parts and "wss" not in parts and "tls" not in parts)


class PeerManager:
    def __init__(self, host: Host, registry: CollectorRegistry, *, static_peers: Sequence[str] = (),
                 target: int = 10, maximum: int = 50, discovery_sources: Sequence[DiscoverySource] = (),
                 config: PolicyConfig | None = None, rng: random.Random | None = None,
                 cluster_id: int | None = None, poll_interval: float = 10.0, dial_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, relay_peers: RelayPeers | None = None,
                 relay_scores: RelayScores | None = None, health: HealthConfig | None = None) -> None:
        """``config`` overrides the policy defaults (its target/maximum win over the two arguments).
        ``relay_peers`` (the relay's view) keeps the last relay peer of a topic we serve unpruned
        and counts the relay peers; ``relay_scores``: see :data:`RelayScores` (default: none)."""
        self._host = host
        self._metrics = PeerMetrics.of(registry)
        # nwaku's --max-connections may be set below the default target: the maximum wins.
        cfg = config if config is not None else PolicyConfig(target=min(target, maximum), maximum=maximum)
        static: dict[str, list[str]] = {}
        for a in static_peers:
            pid, addr = split_peer_addr(a)  # a bad configured address is a startup error
            static.setdefault(pid, []).append(addr)
        self._policy = PeerPolicy(cfg, static, rng if rng is not None else random.Random())
        self._sources = list(discovery_sources)
        self._cluster_id = cluster_id
        self._poll = poll_interval
        self._dial_timeout = dial_timeout
        self._clock = clock
        self._relay_peers = relay_peers
        self._relay_scores = relay_scores
        self.health = HealthBook(health)
        self._enrs: dict[str, Enr] = {}
        self._dialing: set[str] = set()
        self._pruning: set[str] = set()
        self._connected: set[str] = set()
        self._kick = trio.Event()
        self.started = trio.Event()
        self._started_at: float | None = None
        self.bootstrap_latency: float | None = None  # s from run() to MIN_RELAY_PEERS relay peers
        self._relay_count = 0
        self._churn = {"connected": 0, "disconnected": 0}
        self._pruned_by: dict[str, int] = {}
        self._gauged: set[tuple[str, str]] = set()

    @property
    def policy(self) -> PeerPolicy:
        return self._policy

    @property
    def relay_scores(self) -> RelayScores | None:
        return self._relay_scores

    def note_answer(self, peer: str, rtt: float | None) -> None:
        """A request-response exchange with ``peer`` took ``rtt`` s (None: failed or timed out)."""
        self.health.answer(peer, rtt, self._clock())

    # ------------------------------------------------------------------ intake

    def add_discovered(self, addrs: Iterable[Enr | str], source: str) -> int:
        """Offer peers found by ``source``; returns how many were new.  Never raises on bad input."""
        new = 0
        for item in addrs:
            result = self._add_one(item, source)
            self._metrics.discovered.labels(source, result).inc()
            new += result == "new"
        self._metrics.peer_store_size.set(len(self._policy))
        if new:
            self._kick.set()
        return new

    def _add_one(self, item: Enr | str, source: str) -> str:
        if isinstance(item, Enr):
            shards = item.shards
            if self._cluster_id is not None and shards is not None and shards.cluster != self._cluster_id:
                return "cluster_mismatch"
            pid, addrs = item.peer_id, [a for a in item.multiaddrs() if dialable(a)]
        else:
            try:
                pid, addr = split_peer_addr(item)
            except ValueError:
                return "invalid"
            addrs = [addr] if dialable(addr) else []
        if pid == self._host.peer_id:
            return "self"
        if not addrs:
            return "undialable"
        addrs.sort(key=lambda a: "/ws" in a)  # plain TCP first (yamux, cheaper than ws)
        result = self._policy.add(pid, addrs, source)
        if isinstance(item, Enr) and result in ("new", "updated"):
            old = self._enrs.get(pid)
            if old is None or item.seq >= old.seq:
                self._enrs[pid] = item
        return result

    def enrs(self) -> list[Enr]:
        """ENRs of discovered peers we have reached at least once (a peer exchange ``enr_source``)."""
        out = []
        for pid, enr in self._enrs.items():
            p = self._policy.get(pid)
            if p is not None and p.ever_connected:
                out.append(enr)
        return out

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        events = self._host.connection_events(capacity=256)
        self._started_at = self._clock()
        self.bootstrap_latency = None
        if self._policy.config.relay_starved:
            log.warning("only %s relay slots: fewer than gossipsub's D (%d); raise --max-connections",
                        self._policy.config.out_relay_target, MIN_RELAY_PEERS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wake_on_connection_events, events)
            nursery.start_soon(self._watch_bootstrap)
            for src in self._sources:
                nursery.start_soon(self._discover_loop, src)
            self.started.set()
            task_status.started()
            while True:
                self._step(nursery)
                now = self._clock()
                due = self._policy.next_due(now)
                wait = self._poll if due is None else min(self._poll, max(due - now, 0.01))
                with trio.move_on_after(wait):
                    await self._kick.wait()
                self._kick = trio.Event()

    async def _wake_on_connection_events(self, events: trio.MemoryReceiveChannel[ConnectionEvent]) -> None:
        async with events:  # closing it on exit makes the host's notifee drop, not queue, for us
            async for ev in events:
                self._on_event(ev)
                self._kick.set()

    def _on_event(self, ev: ConnectionEvent) -> None:
        """Record the change now (arrival order decides pruning); the next step acts on it.
        Checked against ``connected_peers()``: events are queued, a peer may hold several
        connections, and the one that closed need not be its last."""
        now = self._clock()
        live = ev.peer in self._host.connected_peers()
        if ev.connected and live and ev.peer not in self._connected:
            self._joined(ev.peer, now, ev.direction)
        elif not ev.connected and not live and ev.peer in self._connected:
            self._left(ev.peer, now)

    def _joined(self, pid: str, now: float, direction: str) -> None:
        self._connected.add(pid)
        self._policy.connected(pid, now, direction, self._host.peer_ip(pid))
        self._churn["connected"] += 1
        self._metrics.churn.labels("connected", self._policy.direction(pid)).inc()
        if self._is_static(pid):  # a handful at most, and what an operator asks about first
            log.info("static peer %s connected (%s)", pid, self._policy.direction(pid))

    def _left(self, pid: str, now: float) -> None:
        direction = self._policy.direction(pid)
        self._connected.discard(pid)
        self._policy.disconnected(pid, now)
        self._churn["disconnected"] += 1
        self._metrics.churn.labels("disconnected", direction).inc()
        if self._is_static(pid):
            log.info("static peer %s lost (%s); redialling", pid, direction)

    def _is_static(self, pid: str) -> bool:
        p = self._policy.get(pid)
        return p is not None and p.static

    def _classify(self, current: set[str]) -> tuple[Mapping[str, Collection[str]], set[str], set[str], set[str]]:
        """(topic -> relay peers, peers on our topics, relay peers, service-only peers)."""
        topics = self._relay_peers() if self._relay_peers is not None else {}
        on_topics = {p for ps in topics.values() for p in ps} & current
        relay, service = set(on_topics), set()
        for pid in current - on_topics:
            protocols = self._host.peer_protocols(pid)
            if RELAY in protocols:
                relay.add(pid)
            elif protocols:  # identify done, and no relay: a light client or a service-only peer
                service.add(pid)
        return topics, on_topics, relay, service

    def _relay_count_of(self, on_topics: set[str], relay: set[str]) -> int:
        """Relay peers as the bootstrap counts them: on a topic we relay when the relay's view is
        given, else every peer whose identify lists relay."""
        return len(on_topics) if self._relay_peers is not None else len(relay)

    def _step(self, nursery: trio.Nursery) -> None:
        now = self._clock()
        current = set(self._host.connected_peers())
        for pid in self._connected - current:
            self._left(pid, now)
        for pid in current - self._connected:
            self._joined(pid, now, self._host.peer_direction(pid))
        for pid in current:  # direction and IP may be known only now (an event raced the swarm)
            if self._policy.direction(pid) == "unknown":
                self._policy.connected(pid, now, self._host.peer_direction(pid), self._host.peer_ip(pid))
        topics, on_topics, relay, service = self._classify(current)
        self._note_relay_peers(self._relay_count_of(on_topics, relay), now)
        for pid in self._policy.plan_dials(current, self._dialing, now, service=service):
            self._dialing.add(pid)
            nursery.start_soon(self._dial, pid)
        scores = self._relay_scores() if self._relay_scores is not None else {}
        health = self.health.scores(current, now, scores)
        replace = self.health.to_replace(current, scores)
        for pr in self._policy.prune_plan(sorted(current - self._pruning), topics, relay=relay, service=service,
                                          health=health, replace=replace):
            self._pruning.add(pr.peer)
            self._policy.pruned(pr.peer, pr.reason, now)
            self._pruned_by[pr.reason.label] = self._pruned_by.get(pr.reason.label, 0) + 1
            self._metrics.pruned_reason.labels(pr.reason.label).inc()
            if pr.reason is PruneReason.COLOCATION:
                self._metrics.colocation.labels(self._policy.direction(pr.peer)).inc()
            log.debug("pruning %s (%s)", pr.peer, pr.reason.label)
            nursery.start_soon(self._prune, pr.peer)
        if len(self._enrs) > len(self._policy):  # forget the records of peers the policy forgot
            self._enrs = {pid: e for pid, e in self._enrs.items() if self._policy.get(pid) is not None}
        if len(self.health) > len(self._policy) + len(current):
            self.health.forget(current | {p.peer_id for p in self._policy.peers()})
        self._metrics.peer_store_size.set(len(self._policy))
        self._gauge(current)

    def _gauge(self, current: set[str]) -> None:
        by_source: dict[str, int] = {}
        by_both: dict[tuple[str, str], int] = {}
        for pid in current:
            p = self._policy.get(pid)
            src = p.source if p is not None else INBOUND
            by_source[src] = by_source.get(src, 0) + 1
            key = (src, self._policy.direction(pid))
            by_both[key] = by_both.get(key, 0) + 1
        for src in {STATIC, INBOUND, *by_source, *(p.source for p in self._policy.peers())}:
            self._metrics.managed_connected.labels(src).set(by_source.get(src, 0))
        for key in self._gauged | by_both.keys():  # stale label pairs drop to 0, not vanish
            self._metrics.peers.labels(*key).set(by_both.get(key, 0))
        self._gauged |= by_both.keys()

    def _note_relay_peers(self, n: int, now: float) -> None:
        self._relay_count = n
        self._metrics.relay_peers.set(n)
        if self.bootstrap_latency is None and self._started_at is not None and n >= MIN_RELAY_PEERS:
            self.bootstrap_latency = now - self._started_at
            self._metrics.bootstrap_seconds.set(self.bootstrap_latency)
            self._metrics.bootstrap.observe(self.bootstrap_latency)
            log.info("bootstrap: %d relay peers %.2f s after start", n, self.bootstrap_latency)

    async def _watch_bootstrap(self) -> None:
        """Relay peers appear when their subscriptions arrive, which no connection event tells:
        look twice a second until the bootstrap latency is known (every 5 s after a minute: a
        node with one static peer never gets there)."""
        assert self._started_at is not None
        while self.bootstrap_latency is None:
            current = set(self._host.connected_peers())
            _, on_topics, relay, _ = self._classify(current)
            now = self._clock()
            self._note_relay_peers(self._relay_count_of(on_topics, relay), now)
            await trio.sleep(0.5 if now - self._started_at < 60 else 5.0)

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows of the connection manager."""
        cfg = self._policy.config
        by_source: dict[str, dict[str, int]] = {}
        per_ip: dict[str, int] = {}
        for pid in self._connected:
            p = self._policy.get(pid)
            src = p.source if p is not None else INBOUND
            d = by_source.setdefault(src, {})
            direction = self._policy.direction(pid)
            d[direction] = d.get(direction, 0) + 1
            ip = self._policy.ip(pid)
            if ip is not None:
                per_ip[ip] = per_ip.get(ip, 0) + 1
        return {
            "connected": len(self._connected),
            "relay_peers": self._relay_count,
            "by_source": by_source,
            "max_peers_per_ip": max(per_ip.values(), default=0),
            "bootstrap_latency_s": None if self.bootstrap_latency is None else round(self.bootstrap_latency, 3),
            "churn": dict(self._churn),
            "pruned": dict(self._pruned_by),
            "peer_store": len(self._policy),
            "limits": {"max_connections": cfg.maximum, "out_relay_target": cfg.out_relay_target,
                       "in_relay_target": cfg.in_relay_target, "service_max": cfg.service_max,
                       "ip_colocation_limit": cfg.colocation_limit},
        }

    async def _dial(self, pid: str) -> None:
        try:
            p = self._policy.get(pid)
            if p is None:
                return
            last: Exception | None = None
            for addr in p.addrs:
                try:
                    await self._host.connect(addr, timeout=self._dial_timeout)
                except DialError as exc:
                    last = exc
                    continue
                if pid not in self._host.connected_peers():
                    # The peer accepted and closed at once (e.g. it rejected our metadata): a
                    # failed dial, backed off like any other.
                    last = DialError(f"{addr}: connection closed by the peer right away")
                    continue
                self._metrics.dials.labels("ok").inc()
                self._policy.dial_succeeded(pid, self._clock())
                self._connected.add(pid)
                return
            self._metrics.dials.labels("failed").inc()
            self.health.record(pid, HealthEvent.DIAL_FAILED, self._clock())
            delay = self._policy.dial_failed(pid, self._clock())
            log.info("dial %s failed (%s); %s", pid, last,
                     f"next attempt in {delay:.1f} s" if delay is not None else "forgetting it")
        finally:
            self._dialing.discard(pid)
            self._kick.set()

    async def _prune(self, pid: str) -> None:
        try:
            await self._host.disconnect(pid)
            self._metrics.pruned.inc()
        finally:
            self._pruning.discard(pid)

    async def _discover_loop(self, src: DiscoverySource) -> None:
        while True:
            try:
                with trio.fail_after(max(src.interval, 30.0)):
                    found = await src.discover()
            except (V2Error, trio.TooSlowError) as exc:
                self._metrics.discovered.labels(src.name, "error").inc()
                log.info("discovery %s: %s", src.name, exc)
                await trio.sleep(min(src.interval, 30.0))
                continue
            except Exception:  # a bug in one source must not take the connection manager down
                self._metrics.discovered.labels(src.name, "error").inc()
                log.exception("discovery source %s failed", src.name)
                await trio.sleep(min(src.interval, 30.0))
                continue
            self.add_discovered(found, src.name)
            await trio.sleep(src.interval)
