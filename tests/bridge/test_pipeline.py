"""The pipeline with two real nodes on each side is tested end to end in tests/bridge/app; here it is
driven through its own ports (in-memory V1/V2 sides), to pin down dedup, loops and standby."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bridge.dedup import DedupStore
from bridge.metrics import BridgeMetrics, RateWindow, TopicCap
from bridge.pipeline import (
    MAX_HISTORY_TOPICS,
    HistoryRequest,
    HistoryResult,
    Pipeline,
    PipelineConfig,
    SinkHistory,
    history_requests,
    sink_key,
)
from bridge.policy import Policy
from bridge.translate import NS, V1ToV2, v1_to_v2
from tests.helpers.clock import FakeClock
from tests.helpers.metrics import metric_value
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
        return type("R", (), {"accepted": True})()

    def peers(self) -> list[Any]:
        return []


@dataclass
class V2Port:
    published: list[tuple[str, WakuMessage]] = field(default_factory=list)

    def messages(self) -> Any:
        raise NotImplementedError

    async def publish(self, topic: str, msg: WakuMessage) -> Any:
        self.published.append((topic, msg))

    def peers(self) -> list[str]:
        return []


class Gate:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


async def make(tmp: Path, name: str, active: bool = True, *, clock: Callable[[], float] = time.time,
               history: SinkHistory | None = None, **kw: Any) -> tuple[Pipeline, V1Port, V2Port, Gate]:
    v1, v2, gate = V1Port(), V2Port(), Gate(active)
    dedup = DedupStore(tmp / f"{name}.sqlite3", window=600, capacity=10_000)
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


async def test_run_loops_with_channels(tmp_path: Path) -> None:
    """The run() wiring: inbound channels in, publishes out, metrics refreshed."""
    p, p1, p2, _ = await make(tmp_path, "run")
    s1, r1 = trio.open_memory_channel[Any](10)
    s2, r2 = trio.open_memory_channel[Any](10)
    p.v1.inbound = lambda: r1  # type: ignore[method-assign]
    p.v2.messages = lambda: r2  # type: ignore[method-assign]
    async with trio.open_nursery() as n:
        await n.start(p.run)
        await s1.send(type("R", (), {"envelope": env(b"chan")})())
        await s2.send(type("M", (), {"message": wmsg(b"chan v2")})())
        with trio.fail_after(10):
            while not (p1.posted and p2.published):
                await trio.sleep(0.01)
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


async def test_echo_grace_holds_translations_until_the_original_arrives(tmp_path: Path) -> None:
    """The race of two active bridges: B gets A's translation first, the v1 original 0.3 s later."""
    a, _, a2, _ = await make(tmp_path, "a")
    b, b1, b2, _ = await make(tmp_path, "b", echo_grace_s=1.0)
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
        await s2.send(type("M", (), {"message": translation})())
        await trio.sleep(0.3)
        await s1.send(type("R", (), {"envelope": e})())
        await trio.sleep(1.5)
        n.cancel_scope.cancel()
    assert b1.posted == []  # no new envelope with B's TTL went to v1
    assert [m.encode() for _, m in b2.published] == [translation.encode()]


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


async def test_release_loop_bridges_held_and_uncertain_items_in_real_time(tmp_path: Path) -> None:
    """run()'s release loop: items held at takeover, and (with a sink history) v1 envelopes created
    before the pipeline was warm that arrive while active, e.g. a re-offer still queued."""
    hist = History()
    s, _, s2, gate = await make(tmp_path, "s", active=False, echo_grace_s=0.2, history=hist)
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
        await s_in.send(type("R", (), {"envelope": echo})())  # created before warm: checked, not bridged
        await s_in.send(type("R", (), {"envelope": env(b"also uncertain, not in history")})())
        with trio.fail_after(10):
            while len(s2.published) < 2 or s.pending:
                await trio.sleep(0.05)
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


async def test_sink_history_failure_or_hang_never_blocks_nor_loses(tmp_path: Path) -> None:
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


def test_history_requests_batch_topics_and_cover_exact_windows() -> None:
    items = []
    for i in range(2 * MAX_HISTORY_TOPICS + 3):
        for dt in (0, 1, 5):  # seconds 1_000_000 + {0, 1, 5}: two 2-second chunks
            e = Envelope(1_000_000 + dt + 10, 10, i.to_bytes(4, "big"), b"x")
            out = v1_to_v2(e, cluster_id=1, num_shards=8, pubsub_topic="/waku/2/rs/1/0")
            assert isinstance(out, V1ToV2)
            items.append(out)
    reqs = history_requests(items, chunk_s=2)
    assert [len(r.content_topics) for r in reqs] == [10, 10, 10, 10, 3, 3]
    topics = sorted({i.message.content_topic for i in items})
    assert sorted(t for r in reqs for t in r.content_topics) == sorted(topics * 2)  # each topic, both chunks
    for r in reqs:
        assert (r.time_start, r.time_end) in ((1_000_000 * NS, 1_000_002 * NS), (1_000_005 * NS, 1_000_006 * NS))
    for it in items:  # every item is inside one query
        ts = it.message.timestamp or 0
        assert any(it.message.content_topic in r.content_topics and r.time_start <= ts < r.time_end for r in reqs)


def test_sink_key_is_the_key_of_the_v2_to_v1_translation() -> None:
    m = wmsg(b"k")
    assert sink_key(m) is not None
    assert sink_key(WakuMessage(b"k", "/app/1/chat/proto", timestamp=1)) is None


async def test_sink_history_asks_own_archive_and_store_peers(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The service's lookup on real nodes: a store peer S and our node B (store mounted)."""
    from bridge.app.bridgeservice import sink_history
    from tests.helpers.v2node import make_node
    from v2.core.topics import PubsubTopic

    topic = str(PubsubTopic(0, 0))
    s_node, b_node, c_node = make_node(tmp_path), make_node(tmp_path), make_node()
    for n in (s_node, b_node, c_node):
        await nursery.start(n.run)
    await b_node.host.connect(s_node.listen_addrs[0])
    await c_node.host.connect(s_node.listen_addrs[0])
    with trio.fail_after(20):
        while (b_node.store_peers() != [s_node.peer_id] or c_node.store_peers() != [s_node.peer_id]
               or not b_node.relay.mesh_peers(topic)):
            await trio.sleep(0.05)
    assert b_node.started_at is not None  # our archive counts for windows from its start second on
    await trio.sleep(max(0.0, int(b_node.started_at) + 1 - time.time()))
    m1, m2 = wmsg(b"archived by the store peer"), wmsg(b"archived by us")
    await s_node.publish(topic, m1)
    await b_node.publish(topic, m2)
    lo, hi = min(m1.timestamp or 0, m2.timestamp or 0), max(m1.timestamp or 0, m2.timestamp or 0)
    req = HistoryRequest(topic, (m1.content_topic,), lo // NS * NS, (hi // NS + 1) * NS)
    with trio.fail_after(10):
        while s_node.archive.message_count < 1 or b_node.archive.message_count < 1:
            await trio.sleep(0.05)
    res = await sink_history(b_node, req, trio.current_time() + 5)
    assert res.sources == 2 and res.failures == ()  # our archive (up over the window) and S
    assert {m.payload for m in res.messages} >= {m1.payload, m2.payload}
    res = await sink_history(c_node, req, trio.current_time() + 5)  # no store of its own
    assert res.sources == 1 and m1.payload in {m.payload for m in res.messages}
    early = HistoryRequest(topic, (m1.content_topic,), 0, NS)  # before B started: only S is asked
    assert (await sink_history(b_node, early, trio.current_time() + 5)).sources == 1
