"""The bridge pipeline: v1 → v2 and v2 → v1, each: policy → translate → dedup → gate → publish.

Depends only on the small protocols of :mod:`bridge.ports` (``V1Port``, ``V2Port``, ``Gate``) that
``v1.node.V1Node``, ``v2.node.V2Node`` and the failover elector satisfy.  Every message ends as a
transfer or a counted drop.

Dedup is one ledger for both directions (key = sha256(v1 topic ‖ v1 data)); a key is committed
*before* the publish (write-ahead), so a restart never bridges it again.  A key seen arriving on
either side means "this message exists there", which is what makes loops impossible: our v2→v1
post that comes back to us from v1 has the key of the original v2 message, and vice versa.

Warm standby: while the gate says we are not active, nothing is published; what to hold, and what
to bridge when at takeover, is decided by the pure core :mod:`bridge.standby` (its docstring states
the rules: pending, echo grace, takeover window, uncertain envelopes, two active bridges).  This
module is its trio shell: it feeds the core every arrival with the gate's answer and the clock,
and carries out the decisions (dedup, the sink history check of :mod:`bridge.history`, publish,
post).  Timers sleep for
differences of the injected clock, so a clock that follows trio's (tests: ``MockClock``) makes
the whole pipeline run on virtual time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import trio

from bridge.audit import Audit, AuditConfig
from bridge.dedup import DedupStore
from bridge.history import SinkHistory, find_in_history
from bridge.metrics import V1_TO_V2, V2_TO_V1, BridgeMetrics
from bridge.outbox import Outbox
from bridge.policy import Policy
from bridge.ports import AlwaysActive, Gate, V1Port, V2Port
from bridge.standby import Action, Batch, Pending, Standby, StandbyConfig, looks_bridged_from_v1
from bridge.translate import Drop, DropReason, Unsealed, V1ToV2, seal, v1_to_v2, v2_to_v1
from v1.waku.envelope import Envelope
from v2.core.message import WakuMessage

__all__ = ["Pipeline", "PipelineConfig"]

log = logging.getLogger(__name__)

INLINE_NONCES = 1000  # nonces tried on the event loop before mining moves to a worker thread (~1 ms)


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
    max_held: int = 10_000  # v1->v2 messages held while the v2 side has no relay peer (bridge/outbox.py)
    # The standby rules' parameters (bridge/standby.py): the echo grace of v2 messages that look
    # bridged from v1, of v1->v2 items pending at takeover and of the takeover window; the warm-up
    # after run() until which our v2 node may have missed originals.
    echo_grace_s: float = 2.0
    warmup_s: float = 5.0
    history_deadline_s: float = 5.0  # the sink history lookup at takeover, all queries together
    history_chunk_s: int = 2  # seconds of timestamps per history query (queries run in parallel)
    audit_deadline_s: float = 10.0  # the standby's audit of the active (bridge/audit.py)
    # TEST-ONLY fault hook: while active, silently skip every Nth publish per direction (0 = off).
    # Set only from $WAKU_BRIDGE_TEST_ONLY_DROP_EVERY (bridge/app/bridgeservice.py) so a test can
    # show the standby's audit catching exactly those; never a configuration key.
    test_only_drop_every: int = 0


class Pipeline:
    def __init__(self, v1: V1Port, v2: V2Port, dedup: DedupStore, metrics: BridgeMetrics, config: PipelineConfig,
                 *, policy: Policy | None = None, gate: Gate | None = None,
                 history: SinkHistory | None = None, clock: Callable[[], float] = time.time,
                 auditing: Callable[[], bool] | None = None) -> None:
        self.v1 = v1
        self.v2 = v2
        self.dedup = dedup
        self.metrics = metrics
        self.config = config
        self.policy = policy or Policy()
        self.gate = gate or AlwaysActive()
        self.history = history
        self.clock = clock
        self.standby = Standby(StandbyConfig(echo_grace_s=config.echo_grace_s, max_pending=config.max_pending,
                                             warmup_s=config.warmup_s),
                               active=self.gate.is_active(), checks_history=history is not None)
        self._mine_limiter = trio.CapacityLimiter(1)
        self._echo_queued = trio.Event()  # set when the core defers a v2 message (wakes _echo_loop)
        self._bridge_lock = trio.Lock()  # one pass over pending at a time (takeover, release loop)
        # The audit of the active (bridge/audit.py): ``auditing()`` is true while another instance
        # is the active (the elector knows a leader that is not us); None: never (no failover).
        self.audit = Audit(AuditConfig(deadline_s=config.audit_deadline_s), (V1_TO_V2, V2_TO_V1))
        self._auditing = auditing
        self._test_drops = {V1_TO_V2: 0, V2_TO_V1: 0}
        self.outbox = Outbox(config.max_held)

    @property
    def pending(self) -> Mapping[bytes, Pending]:
        return self.standby.pending

    # --- helpers ---

    def _drop(self, reason: DropReason, detail: str = "") -> None:
        self.metrics.dropped.labels(reason.value).inc()
        if reason not in (DropReason.DUPLICATE, DropReason.NOT_BRIDGEABLE):
            log.info("not bridged: %s %s", reason.value, detail)

    def auditing(self) -> bool:
        return self._auditing is not None and not self.gate.is_active() and self._auditing()

    def audit_sweep(self, now: float) -> None:
        """Count the expectations past their deadline as misses; forget them all when we are not
        auditing (we became active, or no leader is known: not the active's misses)."""
        if not self.auditing():
            self.audit.reset()
            return
        for miss in self.audit.sweep(now):
            self.metrics.audit_checked.labels(miss.direction).inc()
            self.metrics.audit_missed.labels(miss.direction).inc()
            log.warning("audit: the active did not bridge %s %s within %.0f s", miss.direction, miss.key.hex(),
                        self.config.audit_deadline_s)

    def _test_only_drop(self, direction: str) -> bool:
        n = self.config.test_only_drop_every
        if n <= 0:
            return False
        self._test_drops[direction] += 1
        if self._test_drops[direction] % n:
            return False
        log.warning("TEST-ONLY fault hook: %s publish number %d skipped", direction, self._test_drops[direction])
        return True

    def _pending_changed(self) -> None:
        self.metrics.pending.set(len(self.standby))

    async def _seen_or_remember(self, key: bytes, *, from_v1: bool) -> bool:
        """True if ``key`` was known (and it clears a pending entry of the *other* direction)."""
        if self.dedup.seen(key):
            met = self.audit.seen(key, from_v1=from_v1)
            if met is not None:
                self.metrics.audit_checked.labels(met).inc()
            if self.standby.clear(key, from_v1=from_v1):
                self._pending_changed()  # the active bridged it: its translation reached us
            self._drop(DropReason.DUPLICATE)
            return True
        await self.dedup.add(key)  # write-ahead of the publish
        self.metrics.dedup_entries.set(len(self.dedup))
        return False

    def _hold(self, key: bytes, item: V1ToV2 | Unsealed, expires: float, sent_at: float) -> None:
        if self.auditing():  # the active should bridge it: expect its translation
            self.audit.expect(key, from_v1=isinstance(item, V1ToV2), now=self.clock())
        for _ in range(self.standby.hold(key, item, expires=expires, sent_at=sent_at, now=self.clock())):
            self._drop(DropReason.STANDBY_EXPIRED, "pending set full")
        self._pending_changed()

    # --- v1 -> v2 ---

    async def on_envelope(self, env: Envelope, received_at: float | None = None) -> None:
        received_at = self.clock() if received_at is None else received_at
        if not self.policy.allows_v1_topic(env.topic):
            return self._drop(DropReason.DENIED, env.topic.hex())
        out = v1_to_v2(env, cluster_id=self.config.cluster_id, num_shards=self.config.num_shards,
                       pubsub_topic=self.config.pubsub_topic)
        if isinstance(out, Drop):
            return self._drop(out.reason, out.detail)
        if await self._seen_or_remember(out.key, from_v1=True):
            return
        action = self.standby.on_v1(active=self.gate.is_active(), sent=env.sent, received_at=received_at,
                                    now=self.clock())
        if action is Action.HOLD:
            return self._hold(out.key, out, float(env.expiry), float(env.sent))
        await self._publish_v2(out, float(env.expiry), float(env.sent), received_at)

    async def _publish_v2(self, out: V1ToV2, expires: float, sent_at: float,
                          received_at: float | None = None) -> None:
        if self._test_only_drop(V1_TO_V2):
            return
        if not self.v2.publish_peers(out.pubsub_topic):  # gossipsub would hand it to nobody (bridge/outbox.py)
            return self._hold_for_peers(out, expires, sent_at, received_at)
        try:
            await self.v2.publish(out.pubsub_topic, out.message)
        except Exception as exc:  # a failed publish is a counted drop, never a crash of the loop
            return self._drop(DropReason.PUBLISH_FAILED, f"v2: {exc}")
        now = self.clock()
        latency = None if received_at is None else now - received_at  # receive -> publish
        self.metrics.transfer(V1_TO_V2, out.message.content_topic, len(out.message.payload), latency, now)

    def _hold_for_peers(self, out: V1ToV2, expires: float, sent_at: float, received_at: float | None) -> None:
        if not self.outbox:
            log.info("no v2 relay peer on %s: holding v1->v2 messages until one is back", out.pubsub_topic)
        self.metrics.held_no_peers.inc()
        for _ in range(self.outbox.hold(out, expires=expires, sent_at=sent_at, received_at=received_at)):
            self._drop(DropReason.NO_PEERS, "outbox full")
        self.metrics.outbox.set(len(self.outbox))

    async def _outbox_loop(self) -> None:
        """Publish what the outbox holds once its topic has a relay peer again, oldest first, while
        active; leadership gone, the items join the standby's pending set (the new active bridges
        them unless their translation shows up)."""
        while True:
            await trio.sleep(0.2)
            if not self.outbox:
                continue
            if not self.gate.is_active():
                for h in self.outbox.drain():
                    self._hold(h.item.key, h.item, h.expires, h.sent_at)
                self.metrics.outbox.set(0)
                continue
            ready, expired = self.outbox.take({t for t in self.outbox.topics() if self.v2.publish_peers(t)},
                                              self.clock())
            for _ in range(expired):
                self._drop(DropReason.NO_PEERS, "expired while no v2 relay peer was connected")
            self.metrics.outbox.set(len(self.outbox))
            if ready:
                log.info("a v2 relay peer is back: publishing %d held v1->v2 messages", len(ready))
            for h in ready:
                await self._publish_v2(h.item, h.expires, h.sent_at, h.received_at)

    # --- v2 -> v1 ---

    looks_bridged_from_v1 = staticmethod(looks_bridged_from_v1)

    async def on_message(self, msg: WakuMessage, received_at: float | None = None) -> None:
        received_at = self.clock() if received_at is None else received_at
        if self.standby.defer_echo(msg, received_at, self.clock()):  # two active bridges race (standby.py)
            self._echo_queued.set()
            return
        await self._on_message_now(msg, received_at)

    async def _echo_loop(self) -> None:
        """Bridges each v2 message the core deferred once its echo grace has passed."""
        while True:
            due = self.standby.next_echo()
            if due is None:
                self._echo_queued = trio.Event()
                await self._echo_queued.wait()
                continue
            delay = due - self.clock()
            if delay > 0:
                await trio.sleep(delay)
            msg, received_at = self.standby.pop_echo()
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
        if await self._seen_or_remember(out.key, from_v1=False):
            return
        if self.standby.on_v2(active=self.gate.is_active()) is Action.HOLD:
            return self._hold(out.key, out, float(out.expiry), float(out.expiry - out.ttl))
        await self._post_v1(out, received_at)

    async def _post_v1(self, u: Unsealed, received_at: float | None = None) -> None:
        max_nonce = int(self.config.pow_budget_s * self.config.hashes_per_s)
        # Mining is CPU-bound.  Most seals at the bridge's target (0.002, 300 B) take a few dozen
        # tries, far less than a worker-thread round trip: try INLINE_NONCES nonces on the loop
        # (<= ~1 ms), and only a seal that needs more goes to the worker thread with the whole
        # budget, so the event loop keeps serving peers (the nonce found is the same either way:
        # the smallest one meeting the target).
        env = seal(u, self.config.pow_target, max_nonce=min(max_nonce, INLINE_NONCES))
        if isinstance(env, Drop) and max_nonce > INLINE_NONCES:
            env = await trio.to_thread.run_sync(
                lambda: seal(u, self.config.pow_target, max_nonce=max_nonce), limiter=self._mine_limiter)
        if isinstance(env, Drop):
            log.warning("PoW mining exceeded its budget (%.1f s) for a %d-byte payload: dropped",
                        self.config.pow_budget_s, len(u.data))
            return self._drop(env.reason, env.detail)
        if self.standby.on_v2(active=self.gate.is_active()) is Action.HOLD:  # leadership went while we mined
            return self._hold(u.key, u, float(u.expiry), float(u.expiry - u.ttl))
        if self._test_only_drop(V2_TO_V1):
            return
        res = await self.v1.post(env)
        if not res.accepted:
            if res.reason == "duplicate":
                # Our pool already holds these exact bytes (the active's post reached us and waits in
                # our inbound queue, e.g. at takeover): it is on the network, not a failure.
                return self._drop(DropReason.DUPLICATE)
            return self._drop(DropReason.PUBLISH_FAILED, f"v1: {res.reason}")
        now = self.clock()
        latency = None if received_at is None else now - received_at  # receive -> post, mining included
        self.metrics.transfer(V2_TO_V1, f"/waku/1/0x{u.topic.hex()}/rfc26", len(u.data), latency, now)

    # --- standby / takeover (decisions: bridge.standby) ---

    async def take_over(self) -> int:
        """Bridge what is pending, oldest first; returns how many were bridged.

        Expired items are dropped; v1->v2 items within the echo grace stay pending for
        :meth:`release_held`; v1->v2 items found in the sink's history are skipped (they exist on
        v2 already).  Items stay in ``pending`` until their turn comes, so an original that arrives
        meanwhile still clears its entry."""
        return await self._bridge(self.standby.takeover(active=self.gate.is_active(), now=self.clock()))

    def held_until(self) -> float | None:
        """When the next item held by the echo grace comes due (None: nothing held)."""
        return self.standby.held_until()

    async def release_held(self) -> int:
        """Bridge the held items whose grace has passed, with the same checks as :meth:`take_over`."""
        return await self._bridge(self.standby.release(active=self.gate.is_active(), now=self.clock()))

    async def _bridge(self, batch: Batch) -> int:
        for _ in range(batch.expired):
            self._drop(DropReason.STANDBY_EXPIRED)
        self._pending_changed()
        if not batch.v2_to_v1 and not batch.v1_to_v2:
            return 0
        async with self._bridge_lock:
            done = await self._bridge_candidates(batch.v2_to_v1, set())
            in_history: set[bytes] = set()
            if self.history is not None:
                in_history = await find_in_history(
                    self.history, [p.item for _, p in batch.v1_to_v2 if isinstance(p.item, V1ToV2)], self.metrics,
                    deadline_s=self.config.history_deadline_s, chunk_s=self.config.history_chunk_s)
            return done + await self._bridge_candidates(batch.v1_to_v2, in_history)

    async def _bridge_candidates(self, candidates: Iterable[tuple[bytes, Pending]], in_history: set[bytes]) -> int:
        done = 0
        for key, _ in candidates:
            p = self.standby.claim(key)
            if p is None:
                continue  # its translation arrived while we looked (counted as a duplicate then)
            self._pending_changed()
            if key in in_history:
                self.metrics.takeover_skipped.labels("in_sink_history").inc()
                if not self.dedup.seen(key):
                    await self.dedup.add(key)
                continue
            if not self.gate.is_active():  # leadership went while we looked: keep it for the next one
                self.standby.keep(key, p)
                self._pending_changed()
                continue
            if isinstance(p.item, V1ToV2):
                await self._publish_v2(p.item, p.expires, p.sent_at)
            else:
                await self._post_v1(p.item)
            done += 1
        return done

    def expire_pending(self, now: float) -> None:
        self.standby.expire(now)
        self._pending_changed()

    # --- run ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.standby.start(self.clock())
            nursery.start_soon(self._v1_loop)
            nursery.start_soon(self._release_loop)
            nursery.start_soon(self._v2_loop)
            nursery.start_soon(self._echo_loop)
            nursery.start_soon(self._outbox_loop)
            nursery.start_soon(self._housekeeping)
            task_status.started()

    async def _v1_loop(self) -> None:
        async for rec in self.v1.inbound():
            await self.on_envelope(rec.envelope, rec.received_at)

    async def _v2_loop(self) -> None:
        async for rm in self.v2.messages():
            await self.on_message(rm.message, rm.received_at)

    async def _release_loop(self) -> None:
        """While active: bridge pending v1->v2 items once their grace has passed (held at takeover,
        or uncertain ones that arrived since), with the sink history check."""
        while True:
            await trio.sleep(0.2)
            if not self.standby.observe(self.gate.is_active(), self.clock()):
                continue
            due = self.held_until()
            if due is not None and due <= self.clock():
                n = await self.release_held()
                if n:
                    log.info("%d pending v1->v2 messages bridged after the echo grace and history check", n)

    async def _housekeeping(self) -> None:
        ticks = 0
        while True:
            await trio.sleep(1)
            now = self.clock()
            self.metrics.refresh(now)
            self.metrics.peers.labels("v1").set(len(self.v1.peers()))
            self.metrics.peers.labels("v2").set(len(self.v2.peers()))
            above = [p for p in self.v1.peers() if p.pow_requirement > self.config.pow_target]
            if above and not self.metrics.pow_above_target_now():
                log.warning("%d v1 peer(s) require more PoW than our target %.6g: they will drop our posts",
                            len(above), self.config.pow_target)
            self.metrics.pow_above_target.set(len(above))
            self.expire_pending(now)
            self.audit_sweep(now)
            ticks += 1
            if ticks % 30 == 0:
                await self.dedup.prune()
                self.metrics.dedup_entries.set(len(self.dedup))
