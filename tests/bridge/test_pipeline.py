"""The pipeline with two real nodes on each side is tested end to end in tests/bridge/app; here it is
driven through its own ports (in-memory V1/V2 sides), to pin down dedup, loops and standby.  The
standby decisions alone are tested in test_standby.py; here the shell that carries them out.

Tests that run ``Pipeline.run`` do it on trio's ``MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock``) with a pipeline clock that follows it and a memory-only ledger: virtual time,
no real sleeps.  They wait for events, never for a deadline, because a worker thread (PoW mining)
lets virtual time run ahead."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.dedup import DedupStore
from bridge.history import HistoryRequest, HistoryResult, SinkHistory
from bridge.metrics import BridgeMetrics, RateWindow, TopicCap
from bridge.pipeline import Pipeline, PipelineConfig
from bridge.policy import Policy
from bridge.translate import NS, V1ToV2, v1_to_v2
from tests.helpers.clock import FakeClock, trio_wall_clock
from tests.helpers.metrics import metric_value
from tests.helpers.wait import wait_until
from v1.node import PostResult
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce
from v2.core.message import WakuMessage


@dataclass
class V1Port:
    posted: list[Envelope] = field(default_factory=list)

    def inbound(self) -> Any:
        raise NotImplementedError

    async def post(self, envelope: Envelope) -> Any:
        self.posted.append(envelope)
        return PostResult(True)

    def peers(self) -> list[Any]:
        return []


@dataclass
class V2Port:
    published: list[tuple[str, WakuMessage]] = field(default_factory=list)

    def messages(self) -> Any:
        raise NotImplementedError

    relay: list[str] = field(default_factory=lambda: ["relay-peer"])  # subscribed to every topic

    async def publish(self, topic: str, msg: WakuMessage) -> Any:
        self.published.append((topic, msg))

    def peers(self) -> list[str]:
        return []

    def publish_peers(self, topic: str) -> list[str]:
        return self.relay


@dataclass(frozen=True)
class EnvIn:
    """What V1Node.inbound() carries, as far as the pipeline reads it (bridge.ports.EnvelopeIn)."""

    envelope: Envelope
    received_at: float


@dataclass(frozen=True)
class MsgIn:
    """What V2Node.messages() carries, as far as the pipeline reads it (bridge.ports.MessageIn)."""

    message: WakuMessage
    received_at: float


class Gate:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


async def make(tmp: Path | None, name: str, active: bool = True, *, clock: Callable[[], float] = time.time,
               history: SinkHistory | None = None, **kw: Any) -> tuple[Pipeline, V1Port, V2Port, Gate]:
    """A pipeline on in-memory ports; its ledger is a SQLite file in ``tmp`` (None: memory only)."""
    v1, v2, gate = V1Port(), V2Port(), Gate(active)
    dedup = DedupStore(None if tmp is None else tmp / f"{name}.sqlite3", window=600, capacity=10_000, clock=clock)
    await dedup.open()
    p = Pipeline(v1, v2, dedup, BridgeMetrics(CollectorRegistry()), PipelineConfig(cluster_id=1, num_shards=8, **kw),
                 gate=gate, clock=clock, history=history)
    return p, v1, v2, gate


@dataclass
class History:
    """A sink history holding ``messages``; records what it was asked."""

    messages: list[WakuMessage] = field(default_factory=list)
    asked: list[HistoryRequest] = field(default_factory=list)
    fail: bool = False
    hang: bool = False

    async def __call__(self, req: HistoryRequest, deadline: float) -> HistoryResult:
        self.asked.append(req)
        if self.fail:
            raise OSError("store peer unreachable")
        if self.hang:
            await trio.sleep_forever()
        hits = tuple(m for m in self.messages if m.content_topic in req.content_topics
                     and req.time_start <= (m.timestamp or 0) < req.time_end)
        return HistoryResult(hits, 1)


def env(data: bytes, now: float | None = None) -> Envelope:
    now = time.time() if now is None else now
    e = int(now) + 10
    return Envelope(e, 10, b"\x1a\x2b\x3c\x4d", data, mine_smallest_nonce(e, 10, b"\x1a\x2b\x3c\x4d", data, 0.002) or 0)


def wmsg(payload: bytes) -> WakuMessage:
    return WakuMessage(payload, "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=time.time_ns())


def dropped(p: Pipeline, reason: str) -> float:
    return metric_value(p.metrics.dropped, reason)


async def test_two_bridges_back_to_back_make_no_loops(tmp_path: Path) -> None:
    """v1 -> A -> v2 -> B -> v1 and v2 -> A -> v1 -> B -> v2: neither comes back."""
    a, a1, a2, _ = await make(tmp_path, "a")
    b, b1, b2, _ = await make(tmp_path, "b")
    e = env(b"from v1")
    await a.on_envelope(e)
    (_topic, m), = a2.published
    await b.on_envelope(e)  # B has the original from its v1 peers (forwarded within 300 ms)...
    await b.on_message(m)  # ...so A's identical v2 output is a duplicate for B
    assert b1.posted == [] and len(b2.published) == 1
    assert b2.published[0][1].encode() == m.encode()  # both active: byte-identical, gossipsub dedups
    assert dropped(b, "duplicate") == 1
    b2.published.clear()
    # the other way round
    m2 = wmsg(b"from v2")
    await a.on_message(m2)
    (posted,) = a1.posted
    await b.on_message(m2)  # B is on the same relay mesh: it has m2 before A's mined post ...
    await b.on_envelope(posted)  # ... reaches it through v1 (300 ms ticks)
    assert len(b1.posted) == 1 and b1.posted[0].encode() == posted.encode()  # identical: absorbed
    assert b2.published == []
    assert dropped(b, "duplicate") == 2
    # and A itself never bridges its own output back
    await a.on_envelope(posted)
    await a.on_message(m)
    assert len(a1.posted) == 1 and len(a2.published) == 1


async def test_determinism_across_instances(tmp_path: Path) -> None:
    a, a1, a2, _ = await make(tmp_path, "a")
    b, b1, b2, _ = await make(tmp_path, "b")
    e, m = env(b"same"), wmsg(b"same v2")
    for p in (a, b):
        await p.on_envelope(e)
        await p.on_message(m)
    assert a2.published[0][1].encode() == b2.published[0][1].encode()
    assert a2.published[0][0] == b2.published[0][0] == "/waku/2/rs/1/4"
    assert a1.posted[0].encode() == b1.posted[0].encode() and a1.posted[0].hash == b1.posted[0].hash


async def test_restart_does_not_bridge_twice(tmp_path: Path) -> None:
    a, _, a2, _ = await make(tmp_path, "a")
    e = env(b"once")
    await a.on_envelope(e)
    await a.dedup.aclose()
    a_again, _, a2_again, _ = await make(tmp_path, "a")  # same dedup file
    await a_again.on_envelope(e)  # a v1 peer re-sends it from its pool
    assert len(a2.published) == 1 and a2_again.published == []


async def test_standby_tracks_pending_and_takes_over(tmp_path: Path) -> None:
    clock = FakeClock()
    s, s1, s2, gate = await make(tmp_path, "s", active=False, clock=clock)
    e1, e2 = env(b"bridged by the active"), env(b"lost by the active")
    m1 = wmsg(b"v2 side")
    await s.on_envelope(e1)
    await s.on_envelope(e2)
    await s.on_message(m1)
    assert s1.posted == [] and s2.published == [] and len(s.pending) == 3
    # the active bridged e1: its translation arrives on v2 and clears the pending entry
    active, _, a2, _ = await make(tmp_path, "active")
    await active.on_envelope(e1)
    await s.on_message(a2.published[0][1])
    assert len(s.pending) == 2
    gate.active = True
    clock.now += 2.5  # past the echo grace
    assert await s.take_over() == 2
    assert [m.payload for _, m in s2.published] == [b"lost by the active"]
    assert [x.data for x in s1.posted] == [b"v2 side"]


async def test_policy_and_drop_reasons(tmp_path: Path) -> None:
    p, p1, p2, _ = await make(tmp_path, "p")
    p.policy = Policy.from_lists(deny=("0x1a2b3c4d",))
    await p.on_envelope(env(b"denied"))
    await p.on_message(wmsg(b"denied too"))
    p.policy = Policy()
    await p.on_message(WakuMessage(b"x", "/app/1/chat/proto", timestamp=time.time_ns()))
    await p.on_message(WakuMessage(b"x", "/waku/1/0xzz/rfc26", timestamp=time.time_ns()))
    await p.on_message(WakuMessage(b"x", "/waku/1/0x1a2b3c4d/rfc26", timestamp=time.time_ns() - 100 * NS))
    await p.on_envelope(Envelope(int(time.time()) + 10, 10, b"abcd", b"y" * 200_000))
    assert p1.posted == [] and p2.published == []
    for reason in ("denied", "not_bridgeable", "invalid_topic", "expired", "too_large"):
        assert dropped(p, reason) >= 1, reason


async def test_pow_budget_miss_is_counted(tmp_path: Path) -> None:
    p, p1, _, _ = await make(tmp_path, "pow", pow_target=1e9, pow_budget_s=0.0001)
    await p.on_message(wmsg(b"needs too much work"))
    assert p1.posted == [] and dropped(p, "pow_failed") == 1


def test_rate_window_and_topic_cap() -> None:
    w = RateWindow(60)
    for i in range(120):
        w.add(1000 + i * 0.5)
    assert w.count(1059.9) == 120 and w.count(1100) == 38  # seconds 1041..1059
    cap = TopicCap(2)
    assert [cap.label(t) for t in ("a", "b", "c", "a")] == ["a", "b", "other", "a"]


async def test_run_loops_with_channels(autojump_clock: trio.abc.Clock) -> None:
    """The run() wiring: inbound channels in, publishes out, metrics refreshed."""
    p, p1, p2, _ = await make(None, "run", clock=trio_wall_clock())
    s1, r1 = trio.open_memory_channel[Any](10)
    s2, r2 = trio.open_memory_channel[Any](10)
    p.v1.inbound = lambda: r1  # type: ignore[method-assign]
    p.v2.messages = lambda: r2  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(p.run)
        await s1.send(EnvIn(env(b"chan"), p.clock()))
        await s2.send(MsgIn(wmsg(b"chan v2"), p.clock()))
        await wait_until(lambda: bool(p1.posted and p2.published), interval=0.01)
        n.cancel_scope.cancel()


async def test_race_both_active_output_is_byte_identical(tmp_path: Path) -> None:
    """B sees A's v2 translation before the v1 original: what B posts to v1 is the original
    envelope byte for byte when the TTLs agree, so v1 pools absorb it (docs/mapping.md)."""
    a, _, a2, _ = await make(tmp_path, "a")
    b, b1, _, _ = await make(tmp_path, "b")
    e = env(b"race")
    await a.on_envelope(e)
    await b.on_message(a2.published[0][1])
    assert b1.posted[0].encode() == e.encode()


async def test_echo_grace_holds_translations_until_the_original_arrives(tmp_path: Path,
                                                                        autojump_clock: trio.abc.Clock) -> None:
    """The race of two active bridges: B gets A's translation first, the v1 original 0.3 s later."""
    a, _, a2, _ = await make(tmp_path, "a")
    b, b1, b2, _ = await make(None, "b", echo_grace_s=1.0, clock=trio_wall_clock())
    e = env(b"race with another ttl", now=time.time())
    e = Envelope(e.expiry + 20, e.ttl + 20, e.topic, e.data,
                 mine_smallest_nonce(e.expiry + 20, e.ttl + 20, e.topic, e.data, 0.002) or 0)
    await a.on_envelope(e)
    translation = a2.published[0][1]
    assert Pipeline.looks_bridged_from_v1(translation)
    s1, r1 = trio.open_memory_channel[Any](10)
    s2, r2 = trio.open_memory_channel[Any](10)
    b.v1.inbound = lambda: r1  # type: ignore[method-assign]
    b.v2.messages = lambda: r2  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(b.run)
        await s2.send(MsgIn(translation, b.clock()))
        await trio.sleep(0.3)
        assert b2.published == [] and b1.posted == []  # deferred, not bridged
        await s1.send(EnvIn(e, b.clock()))
        await wait_until(lambda: bool(b2.published), interval=0.01)  # the original, bridged at once
        await trio.sleep(1.5)  # the grace has passed: the translation was a duplicate by then
        assert b.standby.next_echo() is None and dropped(b, "duplicate") == 1
        n.cancel_scope.cancel()
    assert b1.posted == []  # no new envelope with B's TTL went to v1
    assert [m.encode() for _, m in b2.published] == [translation.encode()]


async def test_echo_grace_passes_then_a_genuine_v2_message_is_bridged(autojump_clock: trio.abc.Clock) -> None:
    """A genuine v2 message with a whole-second timestamp looks like a translation: it is only
    delayed by the grace, in arrival order; one that does not look like one is not delayed."""
    # PoW mining runs in a thread, during which virtual time runs ahead: TTL and skew wide enough
    # that no message can expire meanwhile, however slow the machine.
    b, b1, _, _ = await make(None, "b", echo_grace_s=1.0, clock=trio_wall_clock(), ttl=10**6, max_skew=1e6,
                             pow_target=1e-9)
    second = int(b.clock()) * NS
    looks = [WakuMessage(f"whole second {i}".encode(), "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=second)
             for i in range(3)]
    plain = WakuMessage(b"not whole", "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=second + 1)
    s2, r2 = trio.open_memory_channel[Any](10)
    b.v1.inbound = lambda: trio.open_memory_channel[Any](1)[1]  # type: ignore[method-assign]
    b.v2.messages = lambda: r2  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(b.run)
        for m in looks:
            await s2.send(MsgIn(m, b.clock()))
            await trio.sleep(0.1)
        await s2.send(MsgIn(plain, b.clock()))
        await wait_until(lambda: len(b1.posted) == 1, interval=0.01)
        assert b1.posted[0].data == plain.payload  # it arrived last, after the three deferred ones
        await wait_until(lambda: len(b1.posted) == 4, interval=0.01)
        assert [x.data for x in b1.posted[1:]] == [m.payload for m in looks]
        n.cancel_scope.cancel()


def skipped(p: Pipeline, reason: str = "in_sink_history") -> float:
    return metric_value(p.metrics.takeover_skipped, reason)


def history_queries(p: Pipeline, result: str) -> float:
    return metric_value(p.metrics.takeover_history_queries, result)


async def translated_by_active(tmp: Path, m: WakuMessage) -> Envelope:
    """What the (old) active posted to v1 for the v2 message ``m``."""
    a, a1, _, _ = await make(tmp, f"active-{m.payload.hex()[:8]}")
    await a.on_message(m)
    (e,) = a1.posted
    return e


async def test_takeover_holds_young_v1_items_until_the_echo_grace_passed(tmp_path: Path) -> None:
    """The race at takeover: the old active's v1 translation of a v2 message reached us before the
    v2 original; taking over at once would bridge it back to v2 as a new message."""
    clock = FakeClock()
    s, s1, s2, gate = await make(tmp_path, "s", active=False, clock=clock, echo_grace_s=2.0)
    m = wmsg(b"v2 original, slow to reach the standby")
    echo = await translated_by_active(tmp_path, m)
    original = env(b"a genuine v1 message")
    await s.on_envelope(echo)
    await s.on_envelope(original)
    clock.now += 0.5
    gate.active = True
    assert await s.take_over() == 0  # both are younger than the grace: held, not dropped
    assert s2.published == [] and len(s.pending) == 2
    assert s.held_until() == clock.now - 0.5 + 2.0
    clock.now += 0.5
    await s.on_message(m)  # the original arrives: the held translation is its duplicate
    assert s1.posted == [] and len(s.pending) == 1
    clock.now += 0.9
    assert await s.release_held() == 0  # not yet due
    clock.now += 0.2
    assert await s.release_held() == 1  # zero loss: the genuine v1 message is bridged
    assert [x.payload for _, x in s2.published] == [b"a genuine v1 message"]
    assert s.pending == {} and s.held_until() is None and s1.posted == []


async def test_v1_arrivals_just_after_a_takeover_wait_for_their_v2_original(tmp_path: Path) -> None:
    """The old active's last v2->v1 posts still travel through v1 peers when we take over; their
    v2 originals can reach us after them (drill under load: ~1 s).  Bridging them at once would be
    an echo, so for the echo grace after the gate opens v1 arrivals are held like pending items."""
    clock = FakeClock()
    s, _, s2, gate = await make(tmp_path, "s", active=False, clock=clock, echo_grace_s=2.0)
    m = wmsg(b"v2 original bridged by the old active just before it died")
    echo = await translated_by_active(tmp_path, m)
    gate.active = True
    assert await s.take_over() == 0  # nothing was pending
    clock.now += 0.3
    await s.on_envelope(echo)  # after the takeover, before its original
    genuine = env(b"a v1 original in the takeover window")
    await s.on_envelope(genuine)
    assert s2.published == [] and len(s.pending) == 2
    clock.now += 1.0
    await s.on_message(m)  # the original, late: clears the translation
    assert len(s.pending) == 1
    clock.now += 1.1
    assert await s.release_held() == 1  # zero loss for the v1 original, only delayed
    assert [x.payload for _, x in s2.published] == [genuine.data]
    late = env(b"after the window: bridged at once")
    await s.on_envelope(late)
    assert [x.payload for _, x in s2.published][-1] == late.data and s.pending == {}


async def test_held_items_stay_pending_if_leadership_goes(tmp_path: Path) -> None:
    clock = FakeClock()
    s, _, s2, gate = await make(tmp_path, "s", active=False, clock=clock)
    await s.on_envelope(env(b"held across a lost lease"))
    gate.active = True
    assert await s.take_over() == 0
    gate.active = False
    clock.now += 3
    assert await s.release_held() == 0 and len(s.pending) == 1  # for the next takeover
    clock.now += 30  # ... unless its TTL passes first
    gate.active = True
    assert await s.take_over() == 0 and s.pending == {} and s2.published == []
    assert dropped(s, "standby_expired") == 1


async def test_release_loop_bridges_held_and_uncertain_items(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """run()'s release loop: items held at takeover, and (with a sink history) v1 envelopes created
    before the pipeline was warm that arrive while active, e.g. a re-offer still queued."""
    hist = History()
    s, _, s2, gate = await make(None, "s", active=False, echo_grace_s=0.2, history=hist, clock=trio_wall_clock())
    s_in, r_in = trio.open_memory_channel[Any](10)
    s.v1.inbound = lambda: r_in  # type: ignore[method-assign]
    s.v2.messages = lambda: trio.open_memory_channel[Any](1)[1]  # type: ignore[method-assign]
    m = wmsg(b"bridged by the active while we were down")
    hist.messages.append(m)
    echo = await translated_by_active(tmp_path, m)
    async with trio.open_nursery() as n:
        await n.start(s.run)
        await s.on_envelope(env(b"held at takeover"))
        gate.active = True
        assert await s.take_over() == 0
        await s_in.send(EnvIn(echo, s.clock()))  # created before warm: checked, not bridged
        await s_in.send(EnvIn(env(b"also uncertain, not in history"), s.clock()))
        await wait_until(lambda: len(s2.published) >= 2 and not s.pending, interval=0.01)
        n.cancel_scope.cancel()
    assert sorted(x.payload for _, x in s2.published) == [b"also uncertain, not in history", b"held at takeover"]
    assert skipped(s) == 1


async def test_cold_standby_skips_the_reoffer_found_in_sink_history(tmp_path: Path) -> None:
    """The standby was down while v2 messages were bridged; on reconnect the v1 hub re-offers their
    translations, which look like v1 originals.  The sink's history shows they exist on v2."""
    clock = FakeClock()
    hist = History()
    s, s1, s2, gate = await make(tmp_path, "s", active=False, clock=clock, history=hist)
    missed = [wmsg(f"published while the standby was down {i}".encode()) for i in range(3)]
    hist.messages += missed
    reoffer = [await translated_by_active(tmp_path, m) for m in missed]
    for e in reoffer:
        await s.on_envelope(e)  # the hub's re-offer
    lost = env(b"a v1 original the active never bridged")
    await s.on_envelope(lost)
    bridged = env(b"a v1 original the active bridged")
    out = v1_to_v2(bridged, cluster_id=1, num_shards=8)
    assert isinstance(out, V1ToV2)
    hist.messages.append(out.message)  # the active's translation is in the store (we missed it on relay)
    await s.on_envelope(bridged)
    assert len(s.pending) == 5
    clock.now += 3
    gate.active = True
    assert await s.take_over() == 1
    assert [x.payload for _, x in s2.published] == [b"a v1 original the active never bridged"]
    assert skipped(s) == 4 and history_queries(s, "ok") == 1 and s.pending == {} and s1.posted == []
    assert {(r.pubsub_topic, r.content_topics) for r in hist.asked} == {("/waku/2/rs/1/4",
                                                                         ("/waku/1/0x1a2b3c4d/rfc26",))}
    # skipped keys stay in the ledger: a later re-offer is a plain duplicate
    for e in reoffer:
        await s.on_envelope(e)
    assert len(s2.published) == 1 and s.pending == {}


async def test_sink_history_failure_or_hang_never_blocks_nor_loses(tmp_path: Path,
                                                                 autojump_clock: trio.abc.Clock) -> None:
    """The lookup's deadline runs on virtual time: a hanging history costs no real wait."""
    for mode in ("fail", "hang"):
        clock = FakeClock()
        hist = History(fail=mode == "fail", hang=mode == "hang")
        s, _, s2, gate = await make(tmp_path, f"s-{mode}", active=False, clock=clock, history=hist,
                                    history_deadline_s=0.1)
        m = wmsg(b"in history, but history is down " + mode.encode())
        hist.messages.append(m)
        await s.on_envelope(await translated_by_active(tmp_path, m))
        clock.now += 3
        gate.active = True
        # not found (the lookup failed): bridged, a duplicate being better than a loss (§7.7)
        assert await s.take_over() == 1 and len(s2.published) == 1
        assert history_queries(s, "failed" if mode == "fail" else "timeout") == 1


async def test_translation_arriving_during_the_history_lookup_clears_its_item(tmp_path: Path) -> None:
    clock = FakeClock()
    m = wmsg(b"arrives while we look")
    holder: list[Pipeline] = []

    async def slow_history(req: HistoryRequest, deadline: float) -> HistoryResult:
        await holder[0].on_message(m)  # the v2 original comes in meanwhile
        return HistoryResult((), 1)

    s, s1, s2, gate = await make(tmp_path, "s", active=False, clock=clock, history=slow_history)
    holder.append(s)
    await s.on_envelope(await translated_by_active(tmp_path, m))
    clock.now += 3
    gate.active = True
    assert await s.take_over() == 0
    assert s2.published == [] and s1.posted == [] and s.pending == {}


async def test_no_local_progress_rule_a_message_only_the_standby_got_is_bridged(tmp_path: Path) -> None:
    """Why "skip pending items received well before the active's last visible bridging" is not
    applied: the standby got ``only_here`` from a v1 peer the active is not connected to; the
    active's later bridging shows on v2, yet ``only_here`` was never bridged."""
    clock = FakeClock()
    s, _, s2, gate = await make(tmp_path, "s", active=False, clock=clock, history=History())
    only_here = env(b"reached the standby only")
    await s.on_envelope(only_here)
    clock.now += 5
    later = env(b"the active bridged this one")
    await s.on_envelope(later)
    out = v1_to_v2(later, cluster_id=1, num_shards=8)
    assert isinstance(out, V1ToV2)
    await s.on_message(out.message)  # the active's progress, visible on the sink
    clock.now += 3
    gate.active = True
    assert await s.take_over() == 1
    assert [x.payload for _, x in s2.published] == [b"reached the standby only"]


async def test_v1_messages_wait_for_a_v2_relay_peer(autojump_clock: trio.abc.Clock) -> None:
    """No relay peer on the topic (every v2 connection just reset): a publish would reach nobody
    and look sent.  The active holds the message (counted) and publishes it once a peer is back;
    one that expires meanwhile is a counted ``no_peers`` drop, never a silent one; leadership
    gone, what is held joins the pending set."""
    p, _, p2, gate = await make(None, "out", clock=trio_wall_clock())
    p2.relay = []
    p.v1.inbound = lambda: trio.open_memory_channel[Any](1)[1]  # type: ignore[method-assign]
    p.v2.messages = lambda: trio.open_memory_channel[Any](1)[1]  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(p.run)
        await p.on_envelope(env(b"while no peer"))
        short = env(b"expires first", p.clock() - 9)  # 1 s of its TTL left
        await p.on_envelope(short)
        assert not p2.published and len(p.outbox) == 2
        assert metric_value(p.metrics.held_no_peers) == 2
        await trio.sleep(short.expiry - p.clock() + 0.5)
        assert dropped(p, "no_peers") == 1 and len(p.outbox) == 1
        p2.relay = ["back"]
        await wait_until(lambda: bool(p2.published), interval=0.01)
        assert [m.payload for _, m in p2.published] == [b"while no peer"] and not p.outbox
        p2.relay = []
        await p.on_envelope(env(b"held, then leadership went"))
        gate.active = False
        await wait_until(lambda: not p.outbox, interval=0.01)
        assert len(p.pending) == 1 and len(p2.published) == 1
        n.cancel_scope.cancel()
