"""The bridge pipeline: v1 → v2 and v2 → v1, each: policy → translate → dedup → gate → publish.

Depends only on small protocols (``V1Side``, ``V2Side``, ``Gate``) that ``v1.node.V1Node`` and
``v2.node.V2Node`` satisfy.  Every message ends as a transfer or a counted drop.

Dedup is one ledger for both directions (key = sha256(v1 topic ‖ v1 data)); a key is committed
*before* the publish (write-ahead), so a restart never bridges it again.  A key seen arriving on
either side means "this message exists there", which is what makes loops impossible: our v2→v1
post that comes back to us from v1 has the key of the original v2 message, and vice versa.

Warm standby: while the gate says we are not active, nothing is published; messages are
remembered as *pending* until their translation is seen arriving on the other side (the active
bridged them).  :meth:`Pipeline.take_over` bridges what is still pending and within its TTL, after
two checks that keep a takeover from making an echo (specs/failover.md §7.5: publish what is "not
in the dedup cache, the ledger or a sink history query"):

* *Echo grace.*  A pending v1→v2 item may be the v1 translation of a v2 message that the old active
  bridged and whose v2 original has not reached us yet (the v1 copy won the race).  Items younger
  than ``echo_grace_s`` stay pending until the grace has passed (:meth:`Pipeline.release_held`);
  the original's arrival clears them as it does on a standby.
* *Sink history.*  A standby that was down missed v2 messages; on reconnect its v1 peers re-offer
  their pools, which hold the v1 translations of those messages, and it cannot tell them from v1
  originals.  Before bridging pending v1→v2 items we ask the v2 side's history (an injected
  :data:`SinkHistory`: our own archive and connected store peers) for their content topics and
  timestamps; a stored message with the item's dedup key already exists on v2: it is skipped.
  The re-offer can still sit in our v1 inbound queue when we become active, so while active a v1
  envelope created before we were warm (``run()`` + ``warmup_s``) is treated the same way: it
  becomes pending and the release loop bridges it after the grace and the history check.
* *Takeover window.*  The old active's last v2→v1 posts are still travelling through v1 peers
  when we take over, and their v2 originals can reach us later than they do (relay under load:
  the drills measured ~1 s).  So for ``echo_grace_s`` after the gate opens, every v1 envelope
  is held like the items pending at takeover, and bridged after its grace and the history check.
  Outside a takeover nothing is held: v1 originals are delayed only then.

Not applied: "skip pending items received well before the active's last visible bridging" (the
standby tracking the active's progress on the sink).  It assumes the active received every item we
did, in the same order, and bridged it unless it was a duplicate; with several v1 peers, a link
that dropped on the active only, or a publish that failed there, the item was never bridged and the
rule would lose it (tests/bridge/test_pipeline.py pins the case).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from bridge.dedup import DedupStore
from bridge.metrics import V1_TO_V2, V2_TO_V1, BridgeMetrics
from bridge.payload import wrap_unencrypted
from bridge.policy import Policy
from bridge.topics import InvalidTopic, NotBridgeable, v1_topic_of
from bridge.translate import NS, Drop, DropReason, Unsealed, V1ToV2, dedup_key, seal, v1_to_v2, v2_to_v1
from v1.waku.envelope import Envelope
from v2.core.message import WakuMessage

__all__ = [
    "MAX_HISTORY_TOPICS",
    "AlwaysActive",
    "Gate",
    "HistoryRequest",
    "HistoryResult",
    "Pipeline",
    "PipelineConfig",
    "SinkHistory",
    "V1Side",
    "V2Side",
    "history_requests",
    "sink_key",
]

MAX_HISTORY_TOPICS = 10  # content topics per store query (nwaku's limit, waku-v2.md §7)

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


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """One sink history query: messages on ``pubsub_topic`` with one of ``content_topics`` and
    ``time_start <= timestamp < time_end`` (ns), as a store v3 query expresses it."""

    pubsub_topic: str
    content_topics: tuple[str, ...]  # at most MAX_HISTORY_TOPICS
    time_start: int
    time_end: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    messages: tuple[WakuMessage, ...] = ()
    sources: int = 0  # how many history sources were asked
    failures: tuple[str, ...] = ()  # one short reason per source that did not answer in full


SinkHistory = Callable[[HistoryRequest, float], Awaitable[HistoryResult]]
"""``history(request, deadline)``: what the v2 side's history holds for ``request``, from every
source that can answer (``deadline`` is a ``trio.current_time()`` value: return by then with what
arrived, a source that did not finish listed in ``failures``)."""


def sink_key(msg: WakuMessage) -> bytes | None:
    """The dedup key a stored v2 message has (that of its v2->v1 translation); None if it has no
    v1 form.  Same rule as :func:`bridge.translate.v2_to_v1`, without the time checks."""
    try:
        topic = v1_topic_of(msg.content_topic)
    except (NotBridgeable, InvalidTopic):
        return None
    return dedup_key(topic, msg.payload if msg.version == 1 else wrap_unencrypted(msg.payload))


def history_requests(items: Iterable[V1ToV2], chunk_s: int = 2) -> list[HistoryRequest]:
    """Queries covering ``items``: per pubsub topic, content topics in batches of at most
    :data:`MAX_HISTORY_TOPICS`, and per batch one query per ``chunk_s`` seconds of timestamps that
    hold an item, [first second, last second + 1 s) (short windows run in parallel: a takeover
    after a restart looks up a pool's worth, TTL seconds of traffic).

    A v1->v2 item's timestamp is the envelope's creation second; the v2 message it may be the
    translation of has a timestamp in that second (v2_to_v1 floors ns to s), and a translation of
    a v1 original has exactly it: the windows are exact, no slack needed."""
    by_topic: dict[str, dict[str, set[int]]] = {}
    for it in items:
        sec = (it.message.timestamp or 0) // NS
        by_topic.setdefault(it.pubsub_topic, {}).setdefault(it.message.content_topic, set()).add(sec)
    out = []
    step = max(1, chunk_s)
    for pubsub, topics in sorted(by_topic.items()):
        names = sorted(topics)
        for i in range(0, len(names), MAX_HISTORY_TOPICS):
            batch = names[i:i + MAX_HISTORY_TOPICS]
            chunks = sorted({sec // step for n in batch for sec in topics[n]})
            for c in chunks:
                secs = [sec for n in batch for sec in topics[n] if sec // step == c]
                out.append(HistoryRequest(pubsub, tuple(batch), min(secs) * NS, (max(secs) + 1) * NS))
    return out


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
    echo_grace_s: float = 2.0  # hold v2 messages that look bridged from v1 (see on_message), and
    # pending v1->v2 items at takeover (see take_over)
    history_deadline_s: float = 5.0  # the sink history lookup at takeover, all queries together
    history_chunk_s: int = 2  # seconds of timestamps per history query (queries run in parallel)
    warmup_s: float = 5.0  # after run(): until then our v2 node may have missed originals (see above)


@dataclass(slots=True)
class _Pending:
    direction: str
    expires: float
    sent_at: float
    item: V1ToV2 | Unsealed
    received_at: float = field(default=0.0)


class Pipeline:
    def __init__(self, v1: V1Side, v2: V2Side, dedup: DedupStore, metrics: BridgeMetrics, config: PipelineConfig,
                 *, policy: Policy | None = None, gate: Gate | None = None,
                 history: SinkHistory | None = None, clock: Callable[[], float] = time.time) -> None:
        self.v1 = v1
        self.v2 = v2
        self.dedup = dedup
        self.metrics = metrics
        self.config = config
        self.policy = policy or Policy()
        self.gate = gate or AlwaysActive()
        self.history = history
        self.clock = clock
        self.pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._mine_limiter = trio.CapacityLimiter(1)
        self._grace_send, self._grace_recv = trio.open_memory_channel[tuple[float, WakuMessage, float]](10_000)
        self._running = False
        self._warm_from: float | None = None  # v1 envelopes created before this are uncertain
        self._was_active = self.gate.is_active()  # an always-open gate has no takeover window
        self._active_since: float | None = None  # when the gate last opened (see "Takeover window")
        self._bridge_lock = trio.Lock()  # one pass over pending at a time (takeover, release loop)

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
        self.pending[key] = _Pending(direction, expires, sent_at, item, self.clock())
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
        if not self._gate_open(self.clock()) or self._uncertain(env) or self._in_takeover_window(received_at):
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

    def _gate_open(self, now: float) -> bool:
        """``gate.is_active()``, noting when it opens (the start of the takeover window)."""
        active = self.gate.is_active()
        if active and not self._was_active:
            self._active_since = now
        self._was_active = active
        return active

    def _in_takeover_window(self, now: float) -> bool:
        return self._active_since is not None and now < self._active_since + self.config.echo_grace_s

    def _uncertain(self, env: Envelope) -> bool:
        """Created before we were warm: its v2 original (if it is a translation) may have passed
        before our v2 node was up, so it needs the sink history check (only if we have one)."""
        return self.history is not None and self._warm_from is not None and env.sent < self._warm_from

    def _held(self, p: _Pending, now: float) -> bool:
        """Within the echo grace: a v1->v2 item whose v2 original may still be on its way."""
        return p.direction == V1_TO_V2 and p.received_at + self.config.echo_grace_s > now

    async def take_over(self) -> int:
        """Bridge what is pending, oldest first; returns how many were bridged.

        Expired items are dropped; v1->v2 items within the echo grace stay pending for
        :meth:`release_held`; v1->v2 items found in the sink's history are skipped (they exist on
        v2 already).  Items stay in ``pending`` until their turn comes, so an original that arrives
        meanwhile still clears its entry."""
        now = self.clock()
        self._gate_open(now)
        return await self._bridge_pending([k for k, p in self.pending.items() if not self._held(p, now)], now)

    def held_until(self) -> float | None:
        """When the next item held by the echo grace comes due (None: nothing held)."""
        dues = [p.received_at + self.config.echo_grace_s for p in self.pending.values() if p.direction == V1_TO_V2]
        return min(dues) if dues else None

    async def release_held(self) -> int:
        """Bridge the held items whose grace has passed, with the same checks as :meth:`take_over`."""
        if not self.gate.is_active():
            return 0
        now = self.clock()
        return await self._bridge_pending(
            [k for k, p in self.pending.items() if p.direction == V1_TO_V2 and not self._held(p, now)], now)

    async def _bridge_pending(self, keys: Sequence[bytes], now: float) -> int:
        async with self._bridge_lock:
            return await self._bridge_pending_locked(keys, now)

    async def _bridge_pending_locked(self, keys: Sequence[bytes], now: float) -> int:
        candidates = []
        for k in keys:
            p = self.pending.get(k)
            if p is None:
                continue
            if p.expires <= now:
                del self.pending[k]
                self._drop(DropReason.STANDBY_EXPIRED)
                continue
            candidates.append((k, p))
        self.metrics.pending.set(len(self.pending))
        candidates.sort(key=lambda kp: kp[1].sent_at)
        # v2->v1 first: they need no lookup (the networks are independent; order is per direction).
        done = await self._bridge_candidates([kp for kp in candidates if kp[1].direction == V2_TO_V1], set())
        v1_items = [kp for kp in candidates if kp[1].direction == V1_TO_V2]
        in_history = await self._in_sink_history([p.item for _, p in v1_items if isinstance(p.item, V1ToV2)])
        return done + await self._bridge_candidates(v1_items, in_history)

    async def _bridge_candidates(self, candidates: list[tuple[bytes, _Pending]], in_history: set[bytes]) -> int:
        done = 0
        for key, p in candidates:
            if self.pending.pop(key, None) is None:
                continue  # its translation arrived while we looked (counted as a duplicate then)
            self.metrics.pending.set(len(self.pending))
            if key in in_history:
                self.metrics.takeover_skipped.labels("in_sink_history").inc()
                if not self.dedup.seen(key):
                    await self.dedup.add(key)
                continue
            if not self.gate.is_active():  # leadership went while we looked: keep it for the next one
                self.pending[key] = p
                self.metrics.pending.set(len(self.pending))
                continue
            if isinstance(p.item, V1ToV2):
                await self._publish_v2(p.item)
            else:
                await self._post_v1(p.item)
            done += 1
        return done

    async def _in_sink_history(self, items: list[V1ToV2]) -> set[bytes]:
        """The keys of ``items`` that the sink's history holds.  Bounded by ``history_deadline_s``
        in total; a query that fails or runs out of time is counted and treated as "not found"
        (we then bridge: a duplicate is better than a loss, §7.7)."""
        if self.history is None or not items:
            return set()
        wanted = {it.key for it in items}
        found: set[bytes] = set()
        history = self.history
        deadline = trio.current_time() + self.config.history_deadline_s

        async def one(req: HistoryRequest) -> None:
            try:
                res = await history(req, deadline)
            except Exception as exc:  # a broken lookup must not stop the takeover
                log.warning("sink history query failed: %s", exc)
                self.metrics.takeover_history_queries.labels("failed").inc()
                return
            for reason in res.failures:
                log.info("sink history source failed: %s", reason)
            self.metrics.takeover_history_queries.labels("ok").inc(max(0, res.sources - len(res.failures)))
            self.metrics.takeover_history_queries.labels("failed").inc(len(res.failures))
            for m in res.messages:
                k = sink_key(m)
                if k in wanted:
                    found.add(k)

        requests = history_requests(items, self.config.history_chunk_s)
        # A grace of 0.5 s past the deadline for the lookup to return what it has; then cut.
        with trio.move_on_at(deadline + 0.5) as scope:
            async with trio.open_nursery() as nursery:
                for req in requests:
                    nursery.start_soon(one, req)
        if scope.cancelled_caught:
            self.metrics.takeover_history_queries.labels("timeout").inc()
            log.warning("sink history lookup cut at its deadline (%.1f s)", self.config.history_deadline_s)
        log.info("sink history: %d of %d pending v1->v2 found on v2 (%d queries, %.2f s)", len(found), len(wanted),
                 len(requests), self.config.history_deadline_s - (deadline - trio.current_time()))
        return found

    def expire_pending(self, now: float) -> None:
        dead = [k for k, p in self.pending.items() if p.expires <= now]
        for k in dead:
            del self.pending[k]
        self.metrics.pending.set(len(self.pending))

    # --- run ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._running = True
            self._warm_from = self.clock() + self.config.warmup_s
            nursery.start_soon(self._v1_loop)
            nursery.start_soon(self._release_loop)
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

    async def _release_loop(self) -> None:
        """While active: bridge pending v1->v2 items once their grace has passed (held at takeover,
        or uncertain ones that arrived since), with the sink history check."""
        while True:
            await trio.sleep(0.2)
            if not self._gate_open(self.clock()):
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
            above = [p for p in self.v1.peers() if getattr(p, "pow_requirement", 0) > self.config.pow_target]
            if above and not self.metrics.pow_above_target_now():
                log.warning("%d v1 peer(s) require more PoW than our target %.6g: they will drop our posts",
                            len(above), self.config.pow_target)
            self.metrics.pow_above_target.set(len(above))
            self.expire_pending(now)
            ticks += 1
            if ticks % 30 == 0:
                await self.dedup.prune()
                self.metrics.dedup_entries.set(len(self.dedup))
