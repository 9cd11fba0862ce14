"""Hourly aggregates (real SQLite file, injected time) and the pure migration report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from bridge.aggregates import HOUR, AggregatesWriter, HourlyAccumulator, HourlyRow, hour_of, read_hourly
from bridge.metrics import OTHER, V1_TO_V2, V2_TO_V1
from bridge.report import DAY, TopicStatus, build_report, render_json, render_table, window_start
from tests.helpers.aggregates import CHAT, DAY0, LEGACY, NEW, simulate
from tests.helpers.clock import FakeClock


def test_accumulator_counts_and_caps() -> None:
    acc = HourlyAccumulator(max_topics=2)
    for t in ("a", "b", "c", "d", "a"):
        acc.add(DAY0 + 10, t, "v1", 10)
    acc.add(DAY0 + HOUR + 1, "c", "v2", 7)  # a new hour: the cap starts over
    rows = acc.drain()
    assert rows == [HourlyRow(DAY0, "a", "v1", 2, 20), HourlyRow(DAY0, "b", "v1", 1, 10),
                    HourlyRow(DAY0, OTHER, "v1", 2, 20), HourlyRow(DAY0 + HOUR, "c", "v2", 1, 7)]
    assert acc.drain() == [] and len(acc) == 0
    acc.restore(rows[:1])
    assert acc.drain() == rows[:1]


async def test_writer_persists_survives_restart_and_prunes(tmp_path: Path) -> None:
    path = tmp_path / "A" / "aggregates.sqlite3"
    clock = FakeClock(DAY0 + 5)
    w = AggregatesWriter(path, flush_interval=3600, clock=clock, retention_days=2)
    async with trio.open_nursery() as n:
        await n.start(w.run)
        w.record(V1_TO_V2, CHAT, 300, clock.now)
        w.record(V1_TO_V2, CHAT, 300, clock.now)
        w.record(V2_TO_V1, CHAT, 500, clock.now)
        assert await w.flush() == 2
        w.record(V2_TO_V1, CHAT, 500, clock.now)  # not flushed yet: the shutdown flush must write it
        n.cancel_scope.cancel()
    assert read_hourly(path) == [HourlyRow(DAY0, CHAT, "v1", 2, 600), HourlyRow(DAY0, CHAT, "v2", 2, 1000)]
    # a restart adds to the same hour's rows
    w2 = AggregatesWriter(path, clock=clock, retention_days=2)
    async with trio.open_nursery() as n:
        await n.start(w2.run)
        w2.record(V2_TO_V1, CHAT, 500, clock.now)
        n.cancel_scope.cancel()
    assert read_hourly(path)[1] == HourlyRow(DAY0, CHAT, "v2", 3, 1500)
    # three days later, the retention (2 days) prunes them on start
    clock.now += 3 * DAY
    w3 = AggregatesWriter(path, clock=clock, retention_days=2)
    async with trio.open_nursery() as n:
        await n.start(w3.run)
        n.cancel_scope.cancel()
    assert read_hourly(path) == []


async def test_failed_flush_keeps_rows_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "aggregates.sqlite3"
    results: list[str] = []
    clock = FakeClock(DAY0)
    w = AggregatesWriter(path, clock=clock, on_flush=results.append)
    await w.store.open()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TRIGGER full BEFORE INSERT ON hourly BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    w.record(V1_TO_V2, CHAT, 1, DAY0)
    assert await w.flush() == 0 and results == ["failed"] and len(w.acc) == 1 and not w.disk.ok
    conn.execute("DROP TRIGGER full")  # recovered
    conn.close()
    assert await w.flush() == 0 and results == ["failed"]  # the backoff (1 s) has not passed
    clock.now += 1
    assert await w.flush() == 1 and results == ["failed", "ok"] and w.disk.ok
    await w.store.aclose()
    assert read_hourly(path) == [HourlyRow(DAY0, CHAT, "v1", 1, 1)]


async def test_report_over_simulated_migration(tmp_path: Path) -> None:
    path = tmp_path / "aggregates.sqlite3"
    clock = await simulate(path, 6)
    rows = read_hourly(path)
    assert len({r.hour for r in rows}) == 6 * 24
    rep = build_report(rows, now=clock.now, days=6)
    assert [d.day for d in rep.days] == [f"2027-01-{10 + i}" for i in range(6)]
    # day 0: 24 h x (2 legacy + 3 chat) from v1; day 5: 48 legacy from v1, 72 chat + 24 new from v2
    d0, d5 = rep.days[0], rep.days[5]
    assert (d0.v1_messages, d0.v2_messages, d0.v2_share) == (120, 0, 0.0)
    assert (d5.v1_messages, d5.v2_messages) == (48, 96) and d5.v2_share == 96 / 144
    assert d5.v2_bytes == 9600
    assert rep.total.messages == sum(d.messages for d in rep.days)
    assert rep.by_status(TopicStatus.MIXED) == [CHAT]
    assert rep.by_status(TopicStatus.V2_ONLY) == [NEW]
    assert rep.by_status(TopicStatus.V1_ONLY) == [LEGACY]
    # over the last 2 days chat has moved: v2-only now
    rep2 = build_report(rows, now=clock.now, days=2)
    assert rep2.by_status(TopicStatus.V2_ONLY) == [CHAT, NEW]  # by volume
    assert rep2.by_status(TopicStatus.V1_ONLY) == [LEGACY]
    chat = next(t for t in rep.topics if t.topic == CHAT)
    assert chat.last_v1 == DAY0 + 3 * DAY + 23 * HOUR and chat.last_v2 == DAY0 + 5 * DAY + 23 * HOUR
    # renderings carry the same numbers
    doc = json.loads(render_json(rep2))
    assert doc["v2_only"] == [CHAT, NEW] and doc["v1_only"] == [LEGACY] and doc["mixed"] == []
    assert doc["total"]["v2_messages"] == 2 * 96 and doc["days"][1]["v2_share"] == 96 / 144
    table = render_table(rep2)
    lines = table.splitlines()
    assert any(line.startswith("2027-01-15") and line.rstrip().endswith("66.7 %") for line in lines)
    assert "1 v1-only" in table and "2 v2-only" in table and "0 mixed" in table
    header = next(line for line in lines if line.startswith("day"))
    row = next(line for line in lines if line.startswith("2027-01-15"))
    assert len(header) == len(row)  # aligned columns


def test_window_and_empty_days() -> None:
    now = DAY0 + 5 * DAY + 7 * HOUR
    assert window_start(now, 1) == DAY0 + 5 * DAY
    rep = build_report([HourlyRow(DAY0, "x", "v1", 1, 1)], now=now, days=3)  # out of the window
    assert [d.messages for d in rep.days] == [0, 0, 0] and rep.topics == ()
    assert rep.days[0].v2_share is None and "-" in render_table(rep)


@given(st.lists(st.tuples(st.integers(0, 10 * 24), st.sampled_from(["a", "b", "c"]), st.sampled_from(["v1", "v2"]),
                          st.integers(0, 50)), max_size=60), st.integers(1, 12))
def test_report_partitions_the_rows(cells: list[tuple[int, str, str, int]], days: int) -> None:
    now = DAY0 + 10 * DAY + 1
    rows = [HourlyRow(DAY0 + h * HOUR, t, o, c, 3 * c) for h, t, o, c in cells]
    rep = build_report(rows, now=now, days=days)
    inside = [r for r in rows if window_start(now, days) <= r.hour <= now]
    assert rep.total.messages == sum(r.count for r in inside)
    assert rep.total.v2_bytes == sum(r.bytes for r in inside if r.origin == "v2")
    assert sum(t.v1_messages + t.v2_messages for t in rep.topics) == rep.total.messages
    for t in rep.topics:
        assert (t.status is TopicStatus.V2_ONLY) == (t.v1_messages == 0)
        assert (t.status is TopicStatus.V1_ONLY) == (t.v2_messages == 0)
    assert hour_of(now) == DAY0 + 10 * DAY
