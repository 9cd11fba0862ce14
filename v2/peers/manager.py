"""The connection manager: a thin trio shell around :class:`v2.peers.policy.PeerPolicy`.

It reacts to the host's connection events (a new connection is recorded, with its arrival
order, and the maximum enforced at once; a lost static peer is redialled at once) and also
reconciles with ``connected_peers()``, which stays the truth, on every wake-up and at least
every ``poll_interval`` (a slow safety poll: a full event channel drops events).  It dials what
the policy asks for with a deadline per attempt, prunes above the maximum, and runs each
discovery source in its own task.  Discovered peers arrive as ENRs or ``/p2p/`` multiaddrs
through :meth:`add_discovered`.  The host resolves ``/dns4``/``/dns6`` addresses itself.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

import trio
from prometheus_client import CollectorRegistry

from v2.enr.enr import Enr
from v2.enr.maddr import MultiaddrError, encode_multiaddr
from v2.errors import V2Error
from v2.host import ConnectionEvent, DialError, Host
from v2.peers.metrics import PeerMetrics
from v2.peers.policy import STATIC, PeerPolicy, PolicyConfig

__all__ = ["DiscoverySource", "PeerManager", "RelayPeers", "dialable", "split_peer_addr"]

log = logging.getLogger(__name__)


# Each pubsub topic we relay -> the peers relaying it with us (protects the last one from pruning).
RelayPeers = Callable[[], Mapping[str, Collection[str]]]


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
                 clock: Callable[[], float] = time.monotonic, relay_peers: RelayPeers | None = None) -> None:
        """``config`` overrides the policy defaults (its target/maximum win over the two arguments).
        ``relay_peers`` (the relay's view) keeps the last relay peer of a topic we serve unpruned."""
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
        self._enrs: dict[str, Enr] = {}
        self._dialing: set[str] = set()
        self._pruning: set[str] = set()
        self._connected: set[str] = set()
        self._kick = trio.Event()
        self.started = trio.Event()

    @property
    def policy(self) -> PeerPolicy:
        return self._policy

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
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wake_on_connection_events, events)
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
            self._connected.add(ev.peer)
            self._policy.connected(ev.peer, now)
        elif not ev.connected and not live and ev.peer in self._connected:
            self._connected.discard(ev.peer)
            self._policy.disconnected(ev.peer, now)

    def _step(self, nursery: trio.Nursery) -> None:
        now = self._clock()
        current = set(self._host.connected_peers())
        for pid in self._connected - current:
            self._policy.disconnected(pid, now)
        for pid in current - self._connected:
            self._policy.connected(pid, now)
        self._connected = current
        for pid in self._policy.plan_dials(current, self._dialing, now):
            self._dialing.add(pid)
            nursery.start_soon(self._dial, pid)
        relay = self._relay_peers() if self._relay_peers is not None else {}
        for pid in self._policy.plan_prune(sorted(current - self._pruning), relay):
            self._pruning.add(pid)
            nursery.start_soon(self._prune, pid)
        if len(self._enrs) > len(self._policy):  # forget the records of peers the policy forgot
            self._enrs = {pid: e for pid, e in self._enrs.items() if self._policy.get(pid) is not None}
        self._metrics.peer_store_size.set(len(self._policy))
        by_source: dict[str, int] = {}
        for pid in current:
            p = self._policy.get(pid)
            src = p.source if p is not None else "inbound"
            by_source[src] = by_source.get(src, 0) + 1
        for src in {STATIC, "inbound", *by_source, *(p.source for p in self._policy.peers())}:
            self._metrics.managed_connected.labels(src).set(by_source.get(src, 0))

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
