"""The trio UDP shell around :class:`v2.discv5.core.Discv5Core`.

One socket, one receive task feeding the core, one timer task expiring calls and challenges, and
background loops: bootstrap (a self lookup from the bootnodes), random walks on a cadence (nwaku
``searchLoop``: a random lookup every 5 s; slower once :attr:`Discv5Config.enough` says the peer
target is met), and revalidation (a ping to a random bucket's least recently seen node every
0..10 s, as nim-eth ``revalidateLoop``).  Records found by lookups go through the Waku filter and
are queued for the peer manager (:class:`Discv5Source`).  Bad input is counted by reason and
dropped; a per-IP token bucket limits what reaches the core.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from v2.discv5.core import (
    CallDone,
    CallFailed,
    Discv5Core,
    Dropped,
    DropReason,
    NodeContact,
    Output,
    Send,
    StaleRecord,
)
from v2.discv5.filters import FilterResult, waku_filter
from v2.discv5.lookup import Lookup
from v2.discv5.messages import FindNode, Message, Ping, Pong
from v2.discv5.metrics import Discv5Metrics
from v2.discv5.packet import WAKU_PROTOCOL_ID
from v2.discv5.ratelimit import IpRateLimiter
from v2.discv5.table import RoutingTable
from v2.enr.enr import Enr, RelayShards, Waku2

__all__ = ["Discv5Config", "Discv5Service", "Discv5Source"]

log = logging.getLogger(__name__)

_RECV_SIZE = 2048  # larger than the 1280-byte limit, so oversize packets are seen and counted


@dataclass(frozen=True, slots=True)
class Discv5Config:
    private_key: bytes
    bind_host: str = "0.0.0.0"
    udp_port: int = 9000  # nwaku --discv5-udp-port; 0 = any free port
    bootnodes: Sequence[Enr] = ()
    protocol_id: bytes = WAKU_PROTOCOL_ID
    enr_ip: str | None = None  # the advertised IPv4; None = bind_host unless it is 0.0.0.0
    tcp_port: int | None = None
    waku2: Waku2 | int | None = None
    cluster: int | None = None
    shards: Sequence[int] = ()
    multiaddrs: Sequence[str] = ()
    enr_auto_update: bool = False  # nwaku --discv5-enr-auto-update: follow PONG address votes
    lookup_interval: float = 5.0
    idle_lookup_interval: float = 30.0
    revalidate_max: float = 10.0
    request_timeout: float = 4.0
    rate: float = 200.0  # packets/s per source IP
    burst: float = 400.0
    enough: Callable[[], bool] = field(default=lambda: False)


class Discv5Service:
    def __init__(self, config: Discv5Config, registry: CollectorRegistry, *,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.metrics = Discv5Metrics(registry)
        self._rng = rng
        self._random = random.Random(int.from_bytes(rng(8), "big"))
        self._fields: dict[str, Any] = {
            "ip": config.enr_ip or (config.bind_host if config.bind_host != "0.0.0.0" else None),
            "tcp": config.tcp_port, "waku2": config.waku2, "multiaddrs": tuple(config.multiaddrs),
            "cluster": config.cluster, "shards": tuple(config.shards),
        }
        self._seq = 1
        enr = Enr.build(config.private_key, self._seq, **self._fields)
        self.core = Discv5Core(config.private_key, enr, rng, protocol_id=config.protocol_id,
                               request_timeout=config.request_timeout)
        self.table: RoutingTable = self.core.table
        self.bootnode_ids = frozenset(b.node_id for b in config.bootnodes)
        self._limiter = IpRateLimiter(config.rate, config.burst)
        self._sock: trio.socket.SocketType | None = None
        self._waiters: dict[bytes, tuple[trio.Event, list[CallDone | CallFailed]]] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._votes: dict[bytes, tuple[str, int]] = {}
        self.found: dict[bytes, Enr] = {}  # Waku peers that passed the filter, by node id
        self._checking: set[bytes] = set()  # nodes with a liveness PING in flight
        self._pending: list[Enr] = []  # found but not yet taken by the peer manager
        self.found_event = trio.Event()
        self.port = 0

    # ------------------------------------------------------------------ our record

    @property
    def local_enr(self) -> Enr:
        return self.core.local_enr

    def update_enr(self, **changes: Any) -> Enr:
        """Change fields of our record; the seq is bumped and the record re-signed only on change."""
        new = {**self._fields, **changes}
        if new == self._fields:
            return self.core.local_enr
        self._fields = new
        self._seq += 1
        self.core.local_enr = Enr.build(self.config.private_key, self._seq, **new)
        self.metrics.enr_seq.set(self._seq)
        log.info("discv5: our ENR is now %s", self.core.local_enr)
        return self.core.local_enr

    @property
    def local_shards(self) -> RelayShards | None:
        c = self._fields.get("cluster")
        return RelayShards(c, tuple(self._fields.get("shards") or ())) if c is not None else None

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((self.config.bind_host, self.config.udp_port))
            self._sock = sock
            self.port = sock.getsockname()[1]
            self.update_enr(udp=self.port)
            log.info("discv5 listening on udp %s:%d, ENR %s", self.config.bind_host, self.port, self.local_enr)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop, sock)
                nursery.start_soon(self._timer_loop)
                for b in self.config.bootnodes:
                    self.core.remember(b)
                    self.table.add(b, trio.current_time())
                nursery.start_soon(self._walk_loop)
                nursery.start_soon(self._revalidate_loop)
                task_status.started()

    async def _receive_loop(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, addr = await sock.recvfrom(_RECV_SIZE)
            except OSError as exc:  # e.g. ICMP port unreachable reported on Linux
                self.metrics.errors.labels("recv").inc()
                log.debug("discv5 recv: %s", exc)
                continue
            self.metrics.packets.labels("in").inc()
            src = (addr[0], addr[1])
            now = trio.current_time()
            if not self._limiter.allow(src[0], now):
                self.metrics.dropped.labels(DropReason.RATE_LIMITED.name.lower()).inc()
                continue
            await self._handle(self.core.datagram(src, data, now))

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time() + 3600):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._handle(self.core.tick(trio.current_time()))

    async def _handle(self, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Send):
                await self._send(o)
            elif isinstance(o, CallDone | CallFailed):
                self._resolve(o)
            elif isinstance(o, NodeContact):
                self._contact(o)
            elif isinstance(o, StaleRecord) and self._nursery is not None:
                self._nursery.start_soon(self._refresh_record, o.enr)
            elif isinstance(o, Dropped):
                self.metrics.dropped.labels(o.reason.name.lower()).inc()
                log.debug("discv5 dropped from %s: %s %s", o.addr, o.reason.name, o.detail)
        self.metrics.records_served.set(self.core.records_served)
        self._wake.set()

    async def _send(self, o: Send) -> None:
        assert self._sock is not None
        try:
            await self._sock.sendto(o.data, o.addr)
            self.metrics.packets.labels("out").inc()
        except OSError as exc:
            self.metrics.errors.labels("send").inc()
            log.debug("discv5 send to %s: %s", o.addr, exc)

    def _resolve(self, o: CallDone | CallFailed) -> None:
        self.metrics.requests.labels("success" if isinstance(o, CallDone) else "no_response").inc()
        w = self._waiters.pop(o.request_id, None)
        if w is not None:
            w[1].append(o)
            w[0].set()

    def _contact(self, o: NodeContact) -> None:
        # A node that handshaked with us: table it unverified and check it answers (nim-eth pings back).
        now = trio.current_time()
        check = self.table.add(o.enr, now)
        if self._nursery is not None:
            entry = self.table.get(o.enr.node_id)
            if entry is not None and not entry.live:
                self._nursery.start_soon(self._liveness, o.enr)
            if check is not None:
                self._nursery.start_soon(self._liveness, check.enr)
        self._update_gauges()

    def _update_gauges(self) -> None:
        es = self.table.entries()
        live = sum(e.live for e in es)
        self.metrics.table_nodes.labels("live").set(live)
        self.metrics.table_nodes.labels("unverified").set(len(es) - live)

    # ------------------------------------------------------------------ requests

    async def call(self, enr: Enr, message: Message) -> CallDone | CallFailed:
        rid, out = self.core.request(enr, message, trio.current_time())
        ev = trio.Event()
        box: list[CallDone | CallFailed] = []
        self._waiters[rid] = (ev, box)
        await self._handle(out)
        await ev.wait()  # the core's own timeout always resolves the call
        res = box[0]
        now = trio.current_time()
        if isinstance(res, CallDone):
            self.table.add(enr, now)
            self.table.mark_live(enr.node_id, now)
            pong = next((m for m in res.responses if isinstance(m, Pong)), None)
            if pong is not None:
                self._vote(enr.node_id, pong)
        else:
            self.table.mark_failed(enr.node_id, max_failures=3)
        self._update_gauges()
        return res

    async def ping(self, enr: Enr) -> CallDone | CallFailed:
        return await self.call(enr, Ping(b"", self.local_enr.seq))

    async def findnode(self, enr: Enr, distances: tuple[int, ...]) -> list[Enr]:
        res = await self.call(enr, FindNode(b"", distances))
        return list(res.enrs) if isinstance(res, CallDone) else []

    async def _liveness(self, enr: Enr) -> None:
        # One check per node at a time: a NODES answer of 16 records for a full bucket asks for the
        # same least-recently-seen entry up to 16 times (nim-eth revalidates one node per round too).
        if enr.node_id in self._checking:
            return
        self._checking.add(enr.node_id)
        try:
            res = await self.ping(enr)
        finally:
            self._checking.discard(enr.node_id)
        if isinstance(res, CallDone):
            pong = res.responses[0]
            if isinstance(pong, Pong) and pong.enr_seq > enr.seq:
                await self._refresh_record(enr)

    async def _refresh_record(self, enr: Enr) -> None:
        """A newer record exists (PING/PONG enr-seq): fetch it with FINDNODE [0] (discv5-wire.md)."""
        for rec in await self.findnode(enr, (0,)):
            if rec.node_id == enr.node_id and rec.seq > enr.seq:
                self.core.remember(rec)
                self.table.add(rec, trio.current_time())
                self._offer([rec])

    def _vote(self, node_id: bytes, pong: Pong) -> None:
        """nim-eth ipVote: our external endpoint as seen by the last peers that answered a PING."""
        if not self.config.enr_auto_update or len(pong.ip) != 4:
            return
        self._votes[node_id] = (".".join(str(b) for b in pong.ip), pong.port)
        if len(self._votes) > 64:
            self._votes.pop(next(iter(self._votes)))
        (ip, port), n = Tally(self._votes.values()).most_common(1)[0]
        if n >= 3 and (ip, port) != (self._fields.get("ip"), self._fields.get("udp")):
            self.update_enr(ip=ip, udp=port)

    # ------------------------------------------------------------------ lookups

    async def lookup(self, target: bytes) -> Lookup:
        seeds = self.table.closest(target) or list(self.config.bootnodes)
        lk = Lookup(self.core.local_id, target, seeds)
        send, recv = trio.open_memory_channel[None](64)
        async with trio.open_nursery() as nursery:
            inflight = 0
            while True:
                for q in lk.next_queries():
                    inflight += 1
                    nursery.start_soon(self._query, lk, q.enr, q.distances, send)
                if inflight == 0:
                    break
                await recv.receive()
                inflight -= 1
        self.metrics.lookups.inc()
        self._offer(lk.seen())
        return lk

    async def _query(self, lk: Lookup, enr: Enr, distances: tuple[int, ...],
                     done: trio.MemorySendChannel[None]) -> None:
        res = await self.call(enr, FindNode(b"", distances))
        if isinstance(res, CallDone):
            lk.on_nodes(enr.node_id, res.enrs)
            now = trio.current_time()
            for rec in res.enrs:
                self.core.remember(rec)
                check = self.table.add(rec, now)
                if check is not None and self._nursery is not None:
                    self._nursery.start_soon(self._liveness, check.enr)
        else:
            lk.on_failure(enr.node_id)
        await done.send(None)

    async def random_lookup(self) -> Lookup:
        return await self.lookup(self._rng(32))

    def _offer(self, enrs: Sequence[Enr]) -> None:
        local = self.local_shards
        new = False
        for e in enrs:
            if e.node_id == self.core.local_id:
                continue
            verdict = waku_filter(e, local, self.bootnode_ids)
            if verdict != FilterResult.ACCEPT:
                self.metrics.filtered.labels(verdict.name.lower()).inc()
                continue
            old = self.found.get(e.node_id)
            if old is not None and old.seq >= e.seq:
                continue
            self.found[e.node_id] = e
            self._pending.append(e)
            self.metrics.discovered.inc()
            new = True
        if new:
            self.found_event.set()
            self.found_event = trio.Event()

    def take_found(self) -> list[Enr]:
        out, self._pending = self._pending, []
        return out

    async def _walk_loop(self) -> None:
        # Bootstrap: a self lookup fills the buckets near us (geth/nim-eth populateTable).
        await self.lookup(self.core.local_id)
        while True:
            await self.random_lookup()
            await trio.sleep(self.config.idle_lookup_interval if self.config.enough()
                             else self.config.lookup_interval)

    async def _revalidate_loop(self) -> None:
        while True:
            await trio.sleep(self._random.uniform(0, self.config.revalidate_max))
            entry = self.table.revalidation_candidate(self._random.randrange(1 << 30))
            if entry is not None:
                await self._liveness(entry.enr)


class Discv5Source:
    """The peer manager's view (v2/peers/manager.py ``DiscoverySource``): new Waku peers since last asked."""

    name = "discv5"

    def __init__(self, service: Discv5Service, interval: float = 5.0) -> None:
        self.service = service
        self.interval = interval

    async def discover(self) -> Sequence[Enr]:
        return self.service.take_found()
