"""A Waku v1 node: RLPx server + static-peer dialer + waku/1 peers + pool + 300 ms forwarding.

One nursery.  Per peer: Status handshake (5 s), a read loop (validation, rate limits, pool), and
a forwarder that sends it, every tick, what it has not seen.  What each packet of a peer means
(Status first, dispatch, status merge, rate limits, pacing) is decided by its sans-I/O core,
:class:`v1.waku.peer.WakuPeer`; this shell runs the timers, the shared pool and the metrics.
Newly accepted envelopes from peers go to a bounded channel (``inbound()``) with back-pressure;
our own posts never do.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from v1.errors import V1Error
from v1.metrics import V1Metrics
from v1.rlpx.base import Capability, DisconnectReason
from v1.rlpx.enode import Enode
from v1.rlpx.keys import NodeKey
from v1.rlpx.metrics import RLPxMetrics
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import PeerDisconnected, RLPxConnection, Timeouts, rlpx_connect, rlpx_serve
from v1.waku.envelope import Envelope
from v1.waku.messages import WAKU_CAPABILITY_LENGTH, WakuCode
from v1.waku.peer import (
    MAX_PACKET,
    STATUS_TIMEOUT,
    Disconnect,
    EnvelopesDropped,
    EnvelopesRefused,
    Event,
    MessagesIn,
    OutPacket,
    PacketIn,
    PeerConfig,
    PeerState,
    RateLimited,
    Received,
    StatusUpdated,
    WakuPeer,
    advertised_interest,
)
from v1.waku.pool import EnvelopePool, PeerFilter, Rejection, validate
from v1.waku.ratelimit import PeerRateLimiter, SendPacer
from v1.waku.status import RateLimits, StatusOptions, encode_status

__all__ = ["PostResult", "ReceivedEnvelope", "V1Node", "V1NodeConfig", "V1PeerInfo"]

log = logging.getLogger(__name__)

WAKU = Capability("waku", 1, WAKU_CAPABILITY_LENGTH)


class _StableSessionEnded(Exception):
    """A static peer's stable session ended: its redial backoff starts over (not a tenacity retry)."""


@dataclass(frozen=True, slots=True)
class V1NodeConfig:
    listen_address: str = "0.0.0.0"
    port: int = 30303
    node_key: NodeKey = field(default_factory=NodeKey.generate)
    static_nodes: tuple[str, ...] = ()
    pow_requirement: float = 0.002
    max_peers: int = 50
    target_peers: int = 4
    future_allowance_s: float = 2.0  # nim's allowance: the stricter of the two (waku-v1.md §9)
    max_envelope_size: int = 1024 * 1024
    rate_limit_packets: float = 0.0  # per peer per second; 0 = unlimited
    rate_limit_bytes: float = 0.0
    client_id: str = "waku-bridge/v1"
    p2p_version: int = 5
    light_node: bool = False
    pool_capacity: int = 4096
    forward_interval: float = 0.3  # both implementations flush every 300 ms
    inbound_capacity: int = 1024
    timeouts: Timeouts = field(default_factory=Timeouts)
    # A static peer's session that lasted this long starts its redial backoff over (_keep_dialed).
    stable_session_s: float = 10.0
    # Only these topics are wanted (None: all): advertised in our Status (topic interest + bloom,
    # v1.waku.peer.advertised_interest), so peers that honour it stop sending the rest.
    topic_interest: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReceivedEnvelope:
    envelope: Envelope
    peer: str  # the sender's enode
    received_at: float


@dataclass(frozen=True, slots=True)
class PostResult:
    accepted: bool
    reason: str | None = None
    hash: bytes = b""


@dataclass(frozen=True, slots=True)
class V1PeerInfo:
    enode: str
    inbound: bool
    pow_requirement: float
    bloom: bytes
    light: bool
    client_id: str


@dataclass(slots=True)
class _Peer:
    conn: RLPxConnection
    id: str
    core: WakuPeer  # its waku/1 state and decisions

    @property
    def filter(self) -> PeerFilter:
        return self.core.filter

    @property
    def limiter(self) -> PeerRateLimiter:
        return self.core.limiter

    @property
    def pacer(self) -> SendPacer:  # what we send it, within the packets/s and bytes/s it advertised
        return self.core.pacer

    @property
    def confirmations(self) -> bool:  # it advertised confirmations: it answers our Messages packets
        return self.core.confirmations


class V1Node:
    def __init__(self, config: V1NodeConfig, registry: CollectorRegistry | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.metrics = V1Metrics(registry)
        self.rlpx_metrics = RLPxMetrics(self.metrics.registry)
        self.clock = clock
        self.pool = EnvelopePool(config.pool_capacity)
        self._peers: dict[str, _Peer] = {}
        self._in_send, self._in_recv = trio.open_memory_channel[ReceivedEnvelope](config.inbound_capacity)
        self.port = config.port
        self._hello = HelloParams(config.client_id, (WAKU,), config.port, config.p2p_version)
        # Our own limits are advertised (keys 4 and 6, per peer id) so that peers can pace to them.
        limited = config.rate_limit_packets > 0 or config.rate_limit_bytes > 0
        bloom, interest = advertised_interest(config.topic_interest)
        self._status = encode_status(StatusOptions(
            pow_requirement=config.pow_requirement, bloom=bloom, light_node=config.light_node, topic_interest=interest,
            confirmations=False,
            rate_limits=RateLimits(0, math.ceil(config.rate_limit_packets), 0) if limited else None,
            bytes_rate_limits=RateLimits(0, math.ceil(config.rate_limit_bytes), 0) if limited else None))
        self._peer_config = PeerConfig(
            pow_requirement=config.pow_requirement, max_envelope_size=config.max_envelope_size,
            future_allowance=config.future_allowance_s, rate_limit_packets=config.rate_limit_packets,
            rate_limit_bytes=config.rate_limit_bytes, light_node=config.light_node, max_packet=MAX_PACKET - 16,
            bloom=bloom, topic_interest=None if interest is None else frozenset(interest))
        self._outbound = 0
        self.started = trio.Event()

    # --- public API ---

    @property
    def enode(self) -> str:
        host = "127.0.0.1" if self.config.listen_address in ("0.0.0.0", "") else self.config.listen_address
        return str(Enode(self.config.node_key.pubkey, host, self.port))

    def peers(self) -> list[V1PeerInfo]:
        return [V1PeerInfo(p.conn.remote_enode, p.conn.inbound, p.filter.pow_requirement, p.filter.bloom,
                           p.filter.light, p.conn.remote_hello.client_id) for p in self._peers.values()]

    def inbound(self) -> trio.MemoryReceiveChannel[ReceivedEnvelope]:
        return self._in_recv

    async def post(self, envelope: Envelope) -> PostResult:
        """Validate against our own rules, pool it, forward on the next tick."""
        now = self.clock()
        rej = validate(envelope, now, pow_requirement=self.config.pow_requirement,
                       max_size=self.config.max_envelope_size, future_allowance=self.config.future_allowance_s)
        if rej is None:
            res = self.pool.add(envelope, now, origin=None)
            rej = res.rejection
        self.metrics.posts.labels("accepted" if rej is None else rej.value).inc()
        self.metrics.pool_size.set(len(self.pool))
        return PostResult(rej is None, None if rej is None else rej.value, envelope.hash)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(self._serve)
            self._hello = HelloParams(self.config.client_id, (WAKU,), self.port, self.config.p2p_version)
            nursery.start_soon(self._forward_loop)
            for url in self.config.static_nodes:
                nursery.start_soon(self._keep_dialed, Enode.parse(url))
            log.info("waku v1 node listening: %s", self.enode)
            self.started.set()
            task_status.started()

    # --- internals ---

    async def _serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        def admit(pubkey: bytes) -> DisconnectReason | None:
            return DisconnectReason.ALREADY_CONNECTED if pubkey.hex() in self._peers else None

        await rlpx_serve(self.config.listen_address, self.config.port, self.config.node_key, self._hello,
                         self._run_peer, max_peers=self.config.max_peers, metrics=self.rlpx_metrics,
                         timeouts=self.config.timeouts, admit=admit, task_status=task_status)

    async def _keep_dialed(self, enode: Enode) -> None:
        """Redial a static peer with exponential backoff for as long as the node runs (nwaku #1013).

        The backoff starts over after a session that lasted ``stable_session_s``: one tenacity loop
        for the node's whole life counted every session's end as one more failure, so from a peer's
        third restart on we waited 30-60 s to reconnect it.  A peer that accepts and drops us at once
        still backs off."""
        while True:
            try:
                await self._dial_until_stable(enode)
            except _StableSessionEnded:
                continue

    async def _dial_until_stable(self, enode: Enode) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(initial=1, max=60, jitter=1), sleep=trio.sleep,
            retry=retry_if_exception_type((PeerDisconnected, V1Error, OSError)), reraise=True,
        ):
            with attempt:
                # polling is fine here: slots free up at most a few times a minute
                while self._outbound >= self.config.target_peers or enode.pubkey.hex() in self._peers:  # noqa: ASYNC110
                    await trio.sleep(1.0)
                started = self.clock()
                connected: float | None = None
                try:
                    async with rlpx_connect(enode, self.config.node_key, self._hello, metrics=self.rlpx_metrics,
                                            timeouts=self.config.timeouts) as conn:
                        self.metrics.dials.labels("ok").inc()
                        connected = self.clock()
                        self._outbound += 1
                        try:
                            await self._run_peer(conn)
                        finally:
                            self._outbound -= 1
                except (PeerDisconnected, V1Error, OSError) as exc:
                    self.metrics.dials.labels("failed" if self.clock() - started < 1 else "dropped").inc()
                    log.info("v1 static peer %s: %s; redialling", enode.host + ":" + str(enode.port), exc)
                    await self._if_stable(connected, exc)
                    raise
                # A clean end (either side disconnected in order): go round again after a pause.
                end = PeerDisconnected(DisconnectReason.REQUESTED, by_remote=False)
                await self._if_stable(connected, end)
                raise end

    async def _if_stable(self, connected: float | None, cause: BaseException) -> None:
        """Raise :class:`_StableSessionEnded` (after the backoff's first wait) if the session that
        just ended was up since ``connected`` for ``stable_session_s`` or more."""
        if connected is not None and self.clock() - connected >= self.config.stable_session_s:
            await trio.sleep(1.0)
            raise _StableSessionEnded from cause

    async def _run_peer(self, conn: RLPxConnection) -> None:
        try:
            await self._serve_peer(conn)
        finally:
            self._count_end(conn)

    def _count_end(self, conn: RLPxConnection) -> None:
        """One count per session that ended while we served it, by cause (not our own shutdown).

        ``waku_v1_peer_disconnects{reason}``: we ended it, and why (mac_mismatch, frame_too_large,
        bad_snappy, ping_timeout, write_timeout, rate_limit, malformed_messages, no_status, ...).
        ``waku_v1_peer_lost{reason}``: the peer ended it (the reason it sent, e.g.
        breach_of_protocol) or the link went (connection_closed, connection_lost).
        """
        end = conn.ended
        if end is None:
            return  # still open: we are shutting down (the transport sends CLIENT_QUITTING)
        if end.by_remote or end.cause in ("connection_closed", "connection_lost"):
            self.metrics.peer_lost.labels(end.cause).inc()
        else:
            self.metrics.peer_disconnects.labels(end.cause).inc()

    async def _serve_peer(self, conn: RLPxConnection) -> None:
        pid = conn.remote_pubkey.hex()
        if pid in self._peers:
            await conn.disconnect(DisconnectReason.ALREADY_CONNECTED)
            return
        core = WakuPeer(self._peer_config)
        if not await self._handshake(conn, core):
            return
        peer = _Peer(conn, pid, core)
        self._peers[pid] = peer
        self.pool.add_peer(pid)
        direction = "in" if conn.inbound else "out"
        self.metrics.peers.labels(direction).inc()
        self._update_max_pow()
        log.info("v1 peer connected: %s (%s, pow %.6g)", conn.remote_enode, conn.remote_hello.client_id,
                 peer.filter.pow_requirement)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forwarder, peer)
                try:
                    await self._read_loop(peer)
                except PeerDisconnected as exc:
                    log.info("v1 peer %s gone: %s", conn.remote_enode, exc)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._peers.pop(pid, None)
            self.pool.remove_peer(pid)
            self.metrics.peers.labels(direction).dec()
            self._update_max_pow()

    async def _handshake(self, conn: RLPxConnection, core: WakuPeer) -> bool:
        """Symmetric Status exchange; the first packet must be Status (waku-v1.md §2)."""
        await conn.send(WakuCode.STATUS, self._status)
        try:
            with trio.fail_after(STATUS_TIMEOUT):
                code, data, size = await conn.receive_sized()
        except trio.TooSlowError:
            events: list[Event] = [core.status_timeout()]
        except PeerDisconnected:
            return False
        else:
            events = core.receive(code, data, size, self.clock())
        for ev in events:
            if isinstance(ev, Disconnect):
                if ev.detail:
                    log.info("v1 peer %s: %s", conn.remote_address, ev.detail)
                await conn.disconnect(ev.reason, cause=ev.cause)
        return core.state is PeerState.READY

    async def _drop(self, peer: _Peer, why: str, reason: DisconnectReason) -> None:
        await peer.conn.disconnect(reason, cause=why)  # counted once the session is over (_count_end)

    async def _read_loop(self, peer: _Peer) -> None:
        while True:
            code, data, size = await peer.conn.receive_sized()
            now = self.clock()
            for ev in peer.core.receive(code, data, size, now):
                if isinstance(ev, PacketIn):
                    self.metrics.packets_in.labels(ev.label).inc()
                elif isinstance(ev, RateLimited):
                    self.metrics.rate_limited.labels(ev.kind).inc()  # not processed (counted)
                elif isinstance(ev, MessagesIn):
                    await self._on_messages(peer, ev.envelopes, now)
                elif isinstance(ev, StatusUpdated):
                    self._update_max_pow()
                elif isinstance(ev, EnvelopesDropped):
                    self.metrics.envelopes_dropped.labels(ev.reason).inc(ev.count)
                elif isinstance(ev, EnvelopesRefused):
                    for err in ev.errors:
                        self.metrics.peer_envelope_errors.labels(str(err.code)).inc()
                        log.warning("v1 peer %s refused envelope %s: %s (code %d)", peer.conn.remote_enode,
                                    err.envelope_hash.hex(), err.description, err.code)
                elif isinstance(ev, Disconnect):
                    if ev.detail:
                        log.info("v1 peer %s dropped: %s", peer.conn.remote_enode, ev.detail)
                    await self._drop(peer, ev.cause, ev.reason)
                    return

    async def _on_messages(self, peer: _Peer, received: tuple[Received, ...], now: float) -> None:
        for r in received:
            self.metrics.envelopes_received.inc()
            env = r.envelope
            if env is None:
                self.metrics.envelopes_dropped.labels(Rejection.MALFORMED.value).inc()
                continue
            if r.rejection is not None:
                self.pool.mark_known(peer.id, env.hash)
                self.metrics.envelopes_dropped.labels(r.rejection.value).inc()
                continue
            res = self.pool.add(env, now, origin=peer.id)
            if not res.new:
                assert res.rejection is not None
                self.metrics.envelopes_dropped.labels(res.rejection.value).inc()
                continue
            self.metrics.envelopes_valid.inc()
            self.metrics.pool_size.set(len(self.pool))
            # Back-pressure: a slow consumer slows this peer's reads (and TCP), never drops.
            await self._in_send.send(ReceivedEnvelope(env, peer.conn.remote_enode, now))

    async def _forward_loop(self) -> None:
        """The pool's expiry sweep, every second (both implementations; waku-v1.md §9)."""
        while True:
            await trio.sleep(1.0)
            self.pool.expire(self.clock())
            self.metrics.pool_size.set(len(self.pool))

    async def _forwarder(self, peer: _Peer) -> None:
        """This peer's flush every ``forward_interval`` (300 ms in both implementations).

        One task per peer: a peer that reads slowly (a frozen bridge, a starved CPU) holds up
        only its own envelopes.  A single loop over all peers stalled everyone behind it for up
        to the 20 s write timeout.
        """
        while True:
            await trio.sleep(self.config.forward_interval)
            now = self.clock()
            out = peer.core.flush(self.pool.pending_for(peer.id, peer.filter, now), now)
            if out.expired:
                self.metrics.send_expired.inc(out.expired)
            if out.oversize:
                self.metrics.send_oversize.inc(out.oversize)
            for packet in out.packets:
                if not await self._send(peer, packet):
                    return  # the session is over; the read loop ends and removes the peer

    async def _send(self, peer: _Peer, packet: OutPacket) -> bool:
        try:
            await peer.conn.send(packet.code, packet.data)
        except PeerDisconnected:
            return False
        peer.core.sent(packet)
        self.metrics.envelopes_sent.inc(packet.envelopes)
        return True

    def _update_max_pow(self) -> None:
        self.metrics.max_peer_pow.set(max((p.filter.pow_requirement for p in self._peers.values()), default=0.0))

