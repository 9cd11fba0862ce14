"""The bridge pipeline: v1 → v2 and v2 → v1, each: policy → dedup → translate → publish.

Depends only on small protocols (``V1Side``, ``V2Side``, ``Gate``) that ``v1.node.V1Node`` and
``v2.node.V2Node`` satisfy.  Every message ends as a transfer or a counted drop.

Dedup is one ledger for both directions (key = sha256(v1 topic ‖ v1 data)); a key is committed
*before* the publish (write-ahead), so a restart never bridges it again.  A key seen arriving on
either side means "this message exists there", which is what makes loops impossible: our v2→v1
post that comes back to us from v1 has the key of the original v2 message, and vice versa.

Warm standby: while the gate says we are not active, nothing is published; messages are
remembered as *pending* until their translation is seen arriving on the other side (the active
bridged them).  :meth:`Pipeline.take_over` bridges what is still pending and within its TTL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from bridge.dedup import DedupStore
from bridge.metrics import V1_TO_V2, V2_TO_V1, BridgeMetrics
from bridge.policy import Policy
from bridge.translate import NS, Drop, DropReason, Unsealed, V1ToV2, seal, v1_to_v2, v2_to_v1
from v1.waku.envelope import Envelope
from v2.core.message import WakuMessage

__all__ = ["AlwaysActive", "Gate", "Pipeline", "PipelineConfig", "V1Side", "V2Side"]

log = logging.getLogger(__name__)


class V1Side(Protocol):
    def inbound(self) -> Any: ...  # trio.MemoryReceiveChannel[ReceivedEnvelope]
    async def post(self, envelope: Envelope) -> Any: ...  # .accepted, .reason
    def peers(self) -> list[Any]: ...


class V2Side(Protocol):
    def messages(self) -> Any: ...  # trio.MemoryReceiveChannel[ReceivedMessage]
    async def publish(self, pubsub_topic: str, msg: WakuMessage) -> Any: ...
    def peers(self) -> list[str]: ...


class Gate(Protocol):
    def is_active(self) -> bool: ...


class AlwaysActive:
    def is_active(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    cluster_id: int = 0
    num_shards: int = 1
    pubsub_topic: str | None = None
    ttl: int = 10
    max_skew: float = 20.0
    pow_target: float = 0.002
    pow_budget_s: float = 2.0
    hashes_per_s: float = 1_000_000.0  # measured (docs/performance.md): turns the budget into a nonce cap
    max_pending: int = 100_000
    echo_grace_s: float = 2.0  # hold v2 messages that look bridged from v1 (see on_message)


@dataclass(slots=True)
class _Pending:
    direction: str
    expires: float
    sent_at: float
    item: V1ToV2 | Unsealed


class Pipeline:
    def __init__(self, v1: V1Side, v2: V2Side, dedup: DedupStore, metrics: BridgeMetrics, config: PipelineConfig,
                 *, policy: Policy | None = None, gate: Gate | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.v1 = v1
        self.v2 = v2
        self.dedup = dedup
        self.metrics = metrics
        self.config = config
        self.policy = policy or Policy()
        self.gate = gate or AlwaysActive()
        self.clock = clock
        self.pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._mine_limiter = trio.CapacityLimiter(1)
        self._grace_send, self._grace_recv = trio.open_memory_channel[tuple[float, WakuMessage, float]](10_000)
        self._running = False

    # --- helpers ---

    def _drop(self, reason: DropReason, detail: str = "") -> None:
        self.metrics.dropped.labels(reason.value).inc()
        if reason not in (DropReason.DUPLICATE, DropReason.NOT_BRIDGEABLE):
            log.info("not bridged: %s %s", reason.value, detail)

    async def _seen_or_remember(self, key: bytes, direction: str) -> bool:
        """True if ``key`` was known (and it clears a pending entry of the *other* direction)."""
        if self.dedup.seen(key):
            p = self.pending.get(key)
            if p is not None and p.direction != direction:
                del self.pending[key]  # the active bridged it: its translation reached us
                self.metrics.pending.set(len(self.pending))
            self._drop(DropReason.DUPLICATE)
            return True
        await self.dedup.add(key)  # write-ahead of the publish
        self.metrics.dedup_entries.set(len(self.dedup))
        return False

    def _hold(self, key: bytes, direction: str, item: V1ToV2 | Unsealed, expires: float, sent_at: float) -> None:
        self.pending[key] = _Pending(direction, expires, sent_at, item)
        while len(self.pending) > self.config.max_pending:
            self.pending.popitem(last=False)
            self._drop(DropReason.STANDBY_EXPIRED, "pending set full")
        self.metrics.pending.set(len(self.pending))

    # --- v1 -> v2 ---

    async def on_envelope(self, env: Envelope, received_at: float | None = None) -> None:
        received_at = self.clock() if received_at is None else received_at
        if not self.policy.allows_v1_topic(env.topic):
            return self._drop(DropReason.DENIED, env.topic.hex())
        out = v1_to_v2(env, cluster_id=self.config.cluster_id, num_shards=self.config.num_shards,
                       pubsub_topic=self.config.pubsub_topic)
        if isinstance(out, Drop):
            return self._drop(out.reason, out.detail)
        if await self._seen_or_remember(out.key, V1_TO_V2):
            return
        if not self.gate.is_active():
            return self._hold(out.key, V1_TO_V2, out, float(env.expiry), float(env.sent))
        await self._publish_v2(out, received_at)

    async def _publish_v2(self, out: V1ToV2, received_at: float | None = None) -> None:
        try:
            await self.v2.publish(out.pubsub_topic, out.message)
        except Exception as exc:  # a failed publish is a counted drop, never a crash of the loop
            return self._drop(DropReason.PUBLISH_FAILED, f"v2: {exc}")
        now = self.clock()
        latency = None if received_at is None else now - received_at  # receive -> publish
        self.metrics.transfer(V1_TO_V2, out.message.content_topic, len(out.message.payload), latency, now)

    # --- v2 -> v1 ---

    @staticmethod
    def looks_bridged_from_v1(msg: WakuMessage) -> bool:
        """A v1->v2 translation: RFC 26 payload on a /waku/1 topic with a whole-second timestamp."""
        return (msg.version == 1 and msg.content_topic.startswith("/waku/1/") and bool(msg.timestamp)
                and (msg.timestamp or 0) % NS == 0)

    async def on_message(self, msg: WakuMessage, received_at: float | None = None) -> None:
        # Two active bridges race: B may see A's v1->v2 translation on relay before the v1 original
        # reaches B through v1 forwarding (300 ms per hop).  Bridging it back would post a *new*
        # envelope (its TTL is ours, not the original's) on v1.  Such messages wait a short grace
        # period in which the original's key normally arrives; genuine v2 messages with a
        # whole-second timestamp are merely delayed.
        received_at = self.clock() if received_at is None else received_at
        if self._running and self.config.echo_grace_s > 0 and self.looks_bridged_from_v1(msg):
            try:
                self._grace_send.send_nowait((self.clock() + self.config.echo_grace_s, msg, received_at))
                return
            except trio.WouldBlock:
                pass  # grace queue full: bridge now rather than drop
        await self._on_message_now(msg, received_at)

    async def _grace_loop(self) -> None:
        async for due, msg, received_at in self._grace_recv:
            delay = due - self.clock()
            if delay > 0:
                await trio.sleep(delay)
            await self._on_message_now(msg, received_at)

    async def _on_message_now(self, msg: WakuMessage, received_at: float | None = None) -> None:
        if not self.policy.allows_content_topic(msg.content_topic):
            return self._drop(DropReason.DENIED, msg.content_topic)
        now = self.clock()
        out = v2_to_v1(msg, now=now, ttl=self.config.ttl, max_skew=self.config.max_skew)
        if isinstance(out, Drop):
            return self._drop(out.reason, out.detail)
        if not self.policy.allows_v1_topic(out.topic):
            return self._drop(DropReason.DENIED, out.topic.hex())
        if await self._seen_or_remember(out.key, V2_TO_V1):
            return
        if not self.gate.is_active():
            return self._hold(out.key, V2_TO_V1, out, float(out.expiry), float(out.expiry - out.ttl))
        await self._post_v1(out, received_at)

    async def _post_v1(self, u: Unsealed, received_at: float | None = None) -> None:
        max_nonce = int(self.config.pow_budget_s * self.config.hashes_per_s)
        # Mining is CPU-bound: run it in a worker thread so the event loop keeps serving peers.
        env = await trio.to_thread.run_sync(
            lambda: seal(u, self.config.pow_target, max_nonce=max_nonce), limiter=self._mine_limiter)
        if isinstance(env, Drop):
            log.warning("PoW mining exceeded its budget (%.1f s) for a %d-byte payload: dropped",
                        self.config.pow_budget_s, len(u.data))
            return self._drop(env.reason, env.detail)
        if not self.gate.is_active():  # leadership may have gone while we mined
            return self._hold(u.key, V2_TO_V1, u, float(u.expiry), float(u.expiry - u.ttl))
        res = await self.v1.post(env)
        if not getattr(res, "accepted", True):
            if getattr(res, "reason", None) == "duplicate":
                # Our pool already holds these exact bytes (the active's post reached us and waits in
                # our inbound queue, e.g. at takeover): it is on the network, not a failure.
                return self._drop(DropReason.DUPLICATE)
            return self._drop(DropReason.PUBLISH_FAILED, f"v1: {getattr(res, 'reason', '')}")
        now = self.clock()
        latency = None if received_at is None else now - received_at  # receive -> post, mining included
        self.metrics.transfer(V2_TO_V1, f"/waku/1/0x{u.topic.hex()}/rfc26", len(u.data), latency, now)

    # --- standby / takeover ---

    async def take_over(self) -> int:
        """Bridge every pending message still within its TTL, oldest first; returns how many."""
        now = self.clock()
        items = sorted(self.pending.items(), key=lambda kv: kv[1].sent_at)
        self.pending.clear()
        self.metrics.pending.set(0)
        done = 0
        for _key, p in items:
            if p.expires <= now:
                self._drop(DropReason.STANDBY_EXPIRED)
                continue
            if isinstance(p.item, V1ToV2):
                await self._publish_v2(p.item)
            else:
                await self._post_v1(p.item)
            done += 1
        return done

    def expire_pending(self, now: float) -> None:
        dead = [k for k, p in self.pending.items() if p.expires <= now]
        for k in dead:
            del self.pending[k]
        self.metrics.pending.set(len(self.pending))

    # --- run ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._running = True
            nursery.start_soon(self._v1_loop)
            nursery.start_soon(self._v2_loop)
            nursery.start_soon(self._grace_loop)
            nursery.start_soon(self._housekeeping)
            task_status.started()

    async def _v1_loop(self) -> None:
        async for rec in self.v1.inbound():
            await self.on_envelope(rec.envelope, getattr(rec, "received_at", None))

    async def _v2_loop(self) -> None:
        async for rm in self.v2.messages():
            await self.on_message(rm.message, getattr(rm, "received_at", None))

    async def _housekeeping(self) -> None:
        ticks = 0
        while True:
            await trio.sleep(1)
            now = self.clock()
            self.metrics.refresh(now)
            self.metrics.peers.labels("v1").set(len(self.v1.peers()))
            self.metrics.peers.labels("v2").set(len(self.v2.peers()))
            above = [p for p in self.v1.peers() if getattr(p, "pow_requirement", 0) > self.config.pow_target]
            if above and not self.metrics.pow_above_target._value.get():
                log.warning("%d v1 peer(s) require more PoW than our target %.6g: they will drop our posts",
                            len(above), self.config.pow_target)
            self.metrics.pow_above_target.set(len(above))
            self.expire_pending(now)
            ticks += 1
            if ticks % 30 == 0:
                await self.dedup.prune()
                self.metrics.dedup_entries.set(len(self.dedup))
