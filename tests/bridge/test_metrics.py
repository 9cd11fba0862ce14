"""Bridge metrics with injected time: windows, v2 share, topic cap, nwaku names in the exposition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from bridge.metrics import OTHER, V1_TO_V2, V2_TO_V1, BridgeMetrics, RateWindow, TopicCap, v2_share

T0 = 1_800_000_000.0


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_nwaku_names_and_labels_are_exported() -> None:
    reg = CollectorRegistry()
    m = BridgeMetrics(reg)
    text = generate_latest(reg).decode()
    # present from the start (zero), so dashboards' rate() has a series before the first transfer
    assert 'waku_bridge_transfers_total{type="v1_to_v2"} 0.0' in text
    assert 'waku_bridge_transfers_total{type="v2_to_v1"} 0.0' in text
    m.dropped.labels("duplicate").inc()
    m.transfer(V1_TO_V2, "/waku/1/0x01020304/rfc26", 300, 0.02, T0)
    text = generate_latest(reg).decode()
    assert 'waku_bridge_transfers_total{type="v1_to_v2"} 1.0' in text
    assert 'waku_bridge_dropped_total{type="duplicate"} 1.0' in text
    assert 'waku_bridge_bytes_total{type="v1_to_v2"} 300.0' in text
    assert 'waku_bridge_topic_messages_total{origin="v1",topic="/waku/1/0x01020304/rfc26"} 1.0' in text
    assert sample(reg, "waku_bridge_latency_seconds_count", type="v1_to_v2") == 1
    assert sample(reg, "waku_bridge_latency_seconds_bucket", type="v1_to_v2", le="0.025") == 1


def test_latency_none_is_not_observed() -> None:
    reg = CollectorRegistry()
    m = BridgeMetrics(reg)
    m.transfer(V2_TO_V1, "/waku/1/0x01020304/rfc26", 10, None, T0)  # e.g. bridged on takeover
    assert sample(reg, "waku_bridge_transfers_total", type="v2_to_v1") == 1
    assert sample(reg, "waku_bridge_latency_seconds_count", type="v2_to_v1") in (None, 0)


def test_rates_and_v2_share_over_windows() -> None:
    reg = CollectorRegistry()
    m = BridgeMetrics(reg)
    # an hour ago: 3600 messages from v1 only, one per second
    for i in range(3600):
        m.transfer(V1_TO_V2, "/waku/1/0x0000000a/rfc26", 100, 0.0, T0 + i)
    # the last minute: 60 from v1, 180 from v2
    t1 = T0 + 3600
    for i in range(60):
        m.transfer(V1_TO_V2, "/waku/1/0x0000000a/rfc26", 100, 0.0, t1 + i)
        for _ in range(3):
            m.transfer(V2_TO_V1, "/waku/1/0x0000000b/rfc26", 100, 0.0, t1 + i + 0.5)
    now = t1 + 59.9
    m.refresh(now)
    assert sample(reg, "waku_bridge_rate", type="v1_to_v2", window="1m") == 1.0
    assert sample(reg, "waku_bridge_rate", type="v2_to_v1", window="1m") == 3.0
    assert sample(reg, "waku_bridge_v2_share", window="1m") == 0.75
    # 1 h window = seconds (now-3600, now]: 3540 + 60 from v1, 180 from v2
    assert sample(reg, "waku_bridge_v2_share", window="1h") == 180 / (3600 + 180)
    assert sample(reg, "waku_bridge_v2_share", window="total") == 180 / (3660 + 180)
    assert m.rates(now)["v2_to_v1"]["1h"] == 180 / 3600
    # later, with no traffic: windows drain; the last share stays exported (no NaN), the gauge
    # only changes when there is something to divide
    m.refresh(now + 7200)
    assert sample(reg, "waku_bridge_rate", type="v1_to_v2", window="1h") == 0.0
    assert m.shares(now + 7200)["1h"] is None
    assert sample(reg, "waku_bridge_v2_share", window="1h") == 180 / (3600 + 180)


def test_topic_cardinality_cap() -> None:
    reg = CollectorRegistry()
    m = BridgeMetrics(reg, topic_cap=3)
    for i in range(10):
        m.transfer(V2_TO_V1, f"/waku/1/0x{i:08x}/rfc26", 1, 0.0, T0)
        m.transfer(V1_TO_V2, f"/waku/1/0x{i:08x}/rfc26", 1, 0.0, T0)
    labels = {s.labels["topic"] for metric in reg.collect() if metric.name == "waku_bridge_topic_messages"
              for s in metric.samples if s.name.endswith("_total")}
    assert len(labels) == 4 and OTHER in labels  # 3 named + other, whatever arrives
    assert sample(reg, "waku_bridge_topic_messages_total", topic=OTHER, origin="v2") == 7
    assert sample(reg, "waku_bridge_topic_messages_total", topic=OTHER, origin="v1") == 7
    # a topic literally named "other" does not take a slot of its own
    cap = TopicCap(5)
    assert cap.label(OTHER) == OTHER and len(cap) == 0


def topic_labels(reg: CollectorRegistry) -> set[str]:
    return {s.labels["topic"] for metric in reg.collect() if metric.name == "waku_bridge_topic_messages"
            for s in metric.samples if s.name.endswith("_total")}


def test_topic_labels_follow_the_busiest_topics() -> None:
    """A burst of junk topics at start-up takes the free labels, then loses them to real traffic."""
    reg = CollectorRegistry()
    m = BridgeMetrics(reg, topic_cap=2)
    m.refresh(T0)  # arms the re-rank clock (every 60 s)
    for i in range(100):  # 100 one-off topics: bounded candidates, 2 labels
        m.transfer(V2_TO_V1, f"/waku/1/0x{i:08x}/rfc26", 1, 0.0, T0)
    assert len(topic_labels(reg)) == 3
    busy = ["/waku/1/0x000000aa/rfc26", "/waku/1/0x000000bb/rfc26"]
    for k in range(50):
        for t in busy:
            m.transfer(V1_TO_V2, t, 1, 0.0, T0 + 1 + k)
    assert topic_labels(reg) - {OTHER} == {"/waku/1/0x00000000/rfc26", "/waku/1/0x00000001/rfc26"}
    m.refresh(T0 + 59)
    assert topic_labels(reg) - {OTHER} == {"/waku/1/0x00000000/rfc26", "/waku/1/0x00000001/rfc26"}
    m.refresh(T0 + 60)  # re-rank: the busy topics take the labels, the junk series are removed
    assert topic_labels(reg) == {OTHER}
    m.transfer(V1_TO_V2, busy[0], 1, 0.0, T0 + 61)  # their series start with their next message
    m.transfer(V1_TO_V2, busy[1], 1, 0.0, T0 + 61)
    assert topic_labels(reg) == {OTHER, *busy}
    assert sample(reg, "waku_bridge_topic_messages_total", topic=busy[0], origin="v1") == 1
    assert sample(reg, "waku_bridge_topic_messages_total", topic=OTHER, origin="v1") == 100
    assert len(m._topics._counts) <= 8 + 2 * 4  # bounded candidate set


@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 5))
def test_topic_cap_never_exceeds_its_cap(topics: list[int], cap: int) -> None:
    c = TopicCap(cap, rerank_every=10)
    c.due(0)
    for i, t in enumerate(topics):
        c.label(f"t{t}")
        if c.due(i):
            c.rerank(i)
        assert len(c) <= cap and len(c._counts) <= max(4 * cap, cap + 8)


def test_listener_sees_every_transfer() -> None:
    m = BridgeMetrics(CollectorRegistry())
    got: list[tuple[str, str, int, float]] = []
    m.add_listener(lambda *a: got.append(a))
    m.transfer(V1_TO_V2, "/waku/1/0x01020304/rfc26", 5, 0.1, T0)
    assert got == [(V1_TO_V2, "/waku/1/0x01020304/rfc26", 5, T0)]


def test_rate_window_clock_step_back_stays_consistent() -> None:
    w = RateWindow(60)
    w.add(T0 + 10)
    w.add(T0 + 5)  # wall clock stepped back: folded into the newest bucket
    assert w.count(T0 + 10) == 2
    assert w.count(T0 + 70) == 0


@given(st.lists(st.tuples(st.floats(0, 500), st.integers(1, 5)), max_size=200), st.integers(1, 120))
def test_rate_window_matches_brute_force(events: list[tuple[float, int]], seconds: int) -> None:
    w = RateWindow(seconds)
    t = T0
    seen: list[tuple[int, int]] = []
    for dt, n in events:
        t += dt / 100
        w.add(t, n)
        seen.append((int(t), n))
        expected = sum(c for s, c in seen if s > int(t) - seconds)
        assert w.count(t) == expected
        assert w.rate(t) == expected / seconds


def test_v2_share() -> None:
    assert v2_share(0, 0) is None
    assert v2_share(1, 3) == 0.75
