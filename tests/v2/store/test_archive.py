"""The SQLite archive and the query planner: paging, lookups, ranges, limits, retention, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.archive_writer import PUBSUB, make_messages
from tests.v2.store.conftest import DbFactory
from v2.core.message import WakuMessage, message_hash
from v2.store.archive import Archive, ArchivedMessage
from v2.store.common import (
    ArchiveError,
    CapacityRetention,
    SizeRetention,
    StatusCode,
    StoreConfigError,
    TimeRetention,
    ineligibility,
    parse_db_url,
    parse_retention_policy,
)
from v2.store.planner import Page, QueryPlan, Rejection, plan_query
from v2.store.rpc_codec import StoreQuery

REPO = Path(__file__).resolve().parents[3]
BASE = 1_700_000_000 * 10**9  # ns
TOPIC_A, TOPIC_B, TOPIC_C = "/test/1/a/proto", "/test/1/b/proto", "/test/1/c/proto"
OTHER_PUBSUB = "/waku/2/rs/0/1"

Item = tuple[str, bytes, WakuMessage, bytes]


def item(i: int, topic: str = TOPIC_A, ts: int | None = None, pubsub: str = PUBSUB) -> Item:
    m = WakuMessage(f"m{i}-{topic}".encode(), topic, timestamp=BASE + i * 10**6 if ts is None else ts)
    return pubsub, message_hash(pubsub, m), m, m.encode()


def order_key(it: Item) -> tuple[int, bytes]:
    return it[2].timestamp or 0, it[1]


def plan(**kw: object) -> QueryPlan:
    p = plan_query(StoreQuery("t", **kw))  # type: ignore[arg-type]
    assert isinstance(p, QueryPlan), p
    return p


def flat(pages: Iterable[list[bytes]]) -> list[bytes]:
    return [h for page in pages for h in page]


def hashes(page: Page[ArchivedMessage]) -> list[bytes]:
    return [r.message_hash for r in page.rows]


async def collect(archive: Archive, **kw: object) -> list[list[bytes]]:
    """Follow cursors to the end; return the hashes of every page."""
    pages, cursor = [], None
    while True:
        page = await archive.find(plan(pagination_cursor=cursor, **kw))
        pages.append(hashes(page))
        if page.cursor is None:
            return pages
        cursor = page.cursor


@pytest.fixture
async def archive(store_db: DbFactory) -> AsyncIterator[Archive]:
    a = Archive(store_db())
    await a.open()
    yield a
    await a.aclose()


async def test_paging_both_directions(archive: Archive) -> None:
    # 50 on topic A, 5 sharing one timestamp (ties broken by hash), plus noise on B and another shard.
    items = [item(i) for i in range(45)] + [item(100 + i, ts=BASE + 7 * 10**6) for i in range(5)]
    noise = [item(i, TOPIC_B) for i in range(10)] + [item(i, pubsub=OTHER_PUBSUB) for i in range(10)]
    assert await archive.insert_many(items + noise) == 70
    expected = [it[1] for it in sorted(items, key=order_key)]
    q = {"pubsub_topic": PUBSUB, "content_topics": (TOPIC_A,)}

    fwd = await collect(archive, pagination_forward=True, **q)
    assert [len(p) for p in fwd] == [20, 20, 10]
    assert flat(fwd) == expected  # each page ascending, pages in order, nothing twice

    back = await collect(archive, pagination_forward=False, **q)
    assert [len(p) for p in back] == [20, 20, 10]
    assert back[0] == expected[-20:] and back[1] == expected[-40:-20] and back[2] == expected[:10]

    # js-waku pages with the last (forward) / first (backward) hash until it gets an empty page.
    end = await archive.find(plan(pagination_cursor=expected[-1], pagination_forward=True, **q))
    assert end.rows == () and end.cursor is None
    start = await archive.find(plan(pagination_cursor=expected[0], pagination_forward=False, **q))
    assert start.rows == () and start.cursor is None

    # Page cursors: the last included row in query order.
    p1 = await archive.find(plan(pagination_forward=True, **q))
    assert p1.cursor == expected[19]
    b1 = await archive.find(plan(pagination_forward=False, **q))
    assert b1.cursor == expected[-20]

    # Data and pubsub topic only with include_data.
    with_data = await archive.find(plan(include_data=True, pagination_limit=3, pagination_forward=True, **q))
    by_hash = {it[1]: it for it in items}
    assert [r.data for r in with_data.rows] == [by_hash[h][3] for h in expected[:3]]
    assert all(r.pubsub_topic == PUBSUB for r in with_data.rows)
    assert all(r.data is None for r in p1.rows)


async def test_several_content_topics_and_no_filters(archive: Archive) -> None:
    items = [item(i, (TOPIC_A, TOPIC_B, TOPIC_C)[i % 3]) for i in range(60)]
    await archive.insert_many(items)
    ab = [it[1] for it in sorted(items, key=order_key) if it[2].content_topic != TOPIC_C]
    pages = await collect(archive, pubsub_topic=PUBSUB, content_topics=(TOPIC_B, TOPIC_A), pagination_limit=15,
                          pagination_forward=True)
    assert [len(p) for p in pages] == [15, 15, 10] and flat(pages) == ab
    back = await collect(archive, pubsub_topic=PUBSUB, content_topics=(TOPIC_A, TOPIC_B), pagination_limit=15)
    assert flat(reversed(back)) == ab
    everything = await collect(archive, pagination_forward=True, pagination_limit=100)
    assert everything == [[it[1] for it in sorted(items, key=order_key)]]
    only_pubsub = await collect(archive, pubsub_topic=OTHER_PUBSUB)
    assert only_pubsub == [[]]


async def test_hash_lookup(archive: Archive) -> None:
    items = [item(i) for i in range(30)]
    await archive.insert_many(items)
    wanted = [items[25][1], items[3][1], items[14][1], b"\x09" * 32]  # one unknown hash
    page = await archive.find(plan(message_hashes=tuple(wanted), include_data=True))
    assert hashes(page) == [items[3][1], items[14][1], items[25][1]]  # ascending, unknown omitted
    assert page.rows[0].data == items[3][3] and page.cursor is None
    presence = await archive.find(plan(message_hashes=(items[7][1],)))
    assert hashes(presence) == [items[7][1]] and presence.rows[0].data is None
    paged = await collect(archive, message_hashes=tuple(it[1] for it in items), pagination_limit=12,
                          pagination_forward=True)
    assert [len(p) for p in paged] == [12, 12, 6]


async def test_time_range(archive: Archive) -> None:
    items = [item(i) for i in range(20)]
    await archive.insert_many(items)
    ts = [it[2].timestamp or 0 for it in items]
    page = await archive.find(plan(content_topics=(TOPIC_A,), time_start=ts[5], time_end=ts[9],
                                   pagination_forward=True))
    assert hashes(page) == [it[1] for it in items[5:9]]  # start inclusive, end exclusive
    empty = await archive.find(plan(time_start=ts[9], time_end=ts[9]))
    assert empty.rows == ()
    from_start = await archive.find(plan(time_start=ts[15], pagination_forward=True))
    assert hashes(from_start) == [it[1] for it in items[15:]]


async def test_page_size_default_and_clamp(archive: Archive) -> None:
    await archive.insert_many([item(i) for i in range(150)])
    for limit, size in ((None, 20), (0, 20), (5, 5), (100, 100), (101, 100), (2**64 - 1, 100)):
        p = plan(pagination_limit=limit)
        assert p.page_size == size
        page = await archive.find(p)
        assert len(page.rows) == size and page.cursor is not None


def test_planner_rejections() -> None:
    def rejected(**kw: object) -> Rejection:
        r = plan_query(StoreQuery("t", **kw))  # type: ignore[arg-type]
        assert isinstance(r, Rejection), r
        return r

    for cursor in (b"\x01" * 31, b"\x01" * 33, b""):
        r = rejected(pagination_cursor=cursor)
        assert r.status == StatusCode.BAD_RESPONSE and r.desc.startswith("archive error: ")
    assert "all zeroes" in rejected(pagination_cursor=bytes(32)).desc
    r = rejected(content_topics=tuple(f"/t/1/{i}/proto" for i in range(11)))
    assert r.status == StatusCode.BAD_RESPONSE and "too many content topics" in r.desc
    assert plan(content_topics=tuple(f"/t/1/{i}/proto" for i in range(10))).content_topics  # 10 is fine
    assert rejected(message_hashes=(b"\x01" * 32,), content_topics=(TOPIC_A,)).status == StatusCode.BAD_REQUEST
    assert rejected(message_hashes=(b"\x01" * 32,), time_start=1).status == StatusCode.BAD_REQUEST
    assert rejected(message_hashes=(b"\x01" * 5,)).status == StatusCode.BAD_REQUEST


async def test_bad_and_unknown_cursors(archive: Archive) -> None:
    await archive.insert_many([item(i) for i in range(5)])
    unknown = await archive.find(plan(pagination_cursor=b"\x07" * 32))  # nwaku: matches nothing
    assert unknown.rows == () and unknown.cursor is None


async def test_duplicates_ignored(archive: Archive) -> None:
    it = item(1)
    assert await archive.insert(*it) is True
    assert await archive.insert(*it) is False
    assert await archive.insert_many([it, item(2), item(2)]) == 1
    assert await archive.count() == 2 == archive.message_count


async def test_time_retention_removes_exactly_the_old(store_db: DbFactory) -> None:
    now = 1_700_000_000.0
    a = Archive(store_db("r"), retention="time:60")
    await a.open()
    items = [item(i, ts=int((now - 120 + i) * 1e9)) for i in range(120)]  # ages 120 s .. 1 s
    await a.insert_many(items)
    assert await a.apply_retention(now) == 60
    left = await collect(a, pagination_limit=100, pagination_forward=True)
    assert flat(left) == [it[1] for it in items[60:]]  # timestamp >= now - 60 kept
    assert await a.apply_retention(now) == 0
    await a.aclose()


async def test_capacity_retention_keeps_exactly_the_newest(store_db: DbFactory) -> None:
    path = store_db("c")
    a = Archive(path, retention="capacity:10")
    await a.open()
    items = [item(i) for i in range(25)]
    shuffled = items[::2] + items[1::2]  # insertion order differs from timestamp order
    for it in shuffled[:12]:
        await a.insert(*it)
    await a.insert_many(shuffled[12:])
    assert await a.count() == 10
    newest = [it[1] for it in items[-10:]]
    assert flat(await collect(a, pagination_forward=True)) == newest
    await a.aclose()
    # A tighter capacity applies to what is already stored when the policy runs.
    b = Archive(path, retention=[CapacityRetention(4)])
    await b.open()
    assert await b.apply_retention() == 6
    assert flat(await collect(b, pagination_forward=True)) == newest[-4:]
    await b.aclose()


async def test_messages_survive_reopen(store_db: DbFactory) -> None:
    path = store_db("persist")
    items = [item(i) for i in range(40)]
    a = Archive(path)
    await a.open()
    await a.insert_many(items[:20])
    for it in items[20:]:
        await a.insert(*it)
    await a.aclose()
    b = Archive(path)
    await b.open()
    assert b.message_count == 40
    page = await b.find(plan(message_hashes=tuple(it[1] for it in items), include_data=True, pagination_limit=100))
    assert [r.data for r in page.rows] == [it[3] for it in items]
    await b.aclose()


async def test_messages_survive_sigkill(store_db: DbFactory) -> None:
    path = store_db("killed")
    n = 200
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await trio.lowlevel.open_process([sys.executable, "-m", "tests.helpers.archive_writer", path, str(n)],
                                            stdout=-1, cwd=REPO, env=env)
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(60):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some()
                assert chunk, "writer exited early"
                buf += chunk
        assert buf.strip() == f"inserted {n}".encode()
    finally:
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        await proc.stdout.aclose()  # type: ignore[union-attr]
    a = Archive(path)
    await a.open()
    msgs = make_messages(n)
    assert a.message_count == n
    page = await a.find(plan(message_hashes=tuple(message_hash(PUBSUB, m) for m in msgs[-50:]), include_data=True,
                             pagination_limit=100))
    assert [r.data for r in page.rows] == [m.encode() for m in msgs[-50:]]
    await a.aclose()


async def test_in_memory_and_closed_archive() -> None:
    a = Archive("sqlite://:memory:")
    with pytest.raises(ArchiveError, match="not open"):
        await a.insert(*item(1))
    async with a:
        assert await a.insert(*item(1))
        assert a.message_count == 1
    assert not a.is_open


async def test_foreign_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "v9.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=9")
    conn.close()
    with pytest.raises(ArchiveError, match="schema version 9"):
        await Archive(f"sqlite://{path}").open()


def test_retention_policy_parsing() -> None:
    assert parse_retention_policy("none") == ()
    assert parse_retention_policy("") == ()
    assert parse_retention_policy("time:172800") == (TimeRetention(172800),)
    assert parse_retention_policy("capacity:50000") == (CapacityRetention(50000),)
    assert parse_retention_policy("time:60;capacity:10") == (TimeRetention(60), CapacityRetention(10))
    for bad, why in (("time:", "positive integer"), ("time:-5", "positive integer"), ("capacity:x", "capacity"),
                     ("forever", "expected"), ("weeks:3", "unknown")):
        with pytest.raises(StoreConfigError, match=why) as e:
            parse_retention_policy(bad)
        assert e.value.key == "store_message_retention_policy"


def test_size_retention_parsing() -> None:
    # nwaku's units (mb, gb in any case; binary, as nwaku: 1 MB = 1024² bytes) plus kb and *iB.
    for spec, size in (("size:30GB", 30 * 2**30), ("size:512mb", 512 * 2**20), ("SIZE:2Mb", 2 * 2**20),
                       ("size:1.5gb", 3 * 2**29), ("size:.5MB", 2**19), ("size:100KB", 102_400),
                       ("size:64kib", 65_536), ("size:3MiB", 3 * 2**20), ("size:1GiB", 2**30)):
        assert parse_retention_policy(spec) == (SizeRetention(size),), spec
    assert parse_retention_policy("time:60; size:1MB ;capacity:5") == (
        TimeRetention(60), SizeRetention(2**20), CapacityRetention(5))
    for bad, why in (("size:", "size:<number><unit>"), ("size:10XB", "unknown size unit 'xb'"),
                     ("size:-1MB", "positive number"), ("size:MB", "size:<number><unit>"),
                     ("size:10", "size:<number><unit>"), ("size:0MB", "below the minimum"),
                     ("size:1KB", "below the minimum"), ("size:1e3MB", "size:<number><unit>"),
                     ("size:" + "9" * 400 + "GB", "too large")):
        with pytest.raises(StoreConfigError, match=why) as e:
            parse_retention_policy(bad)
        assert e.value.key == "store_message_retention_policy"
        assert str(e.value).startswith("store_message_retention_policy: ")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"(?i)size:-?[0-9.e]{0,6}[kmgi]{0,2}[bx]?", fullmatch=True)))
def test_retention_parser_accepts_or_names_the_key(spec: str) -> None:
    try:
        policies = parse_retention_policy(spec)
    except StoreConfigError as e:
        assert e.key == "store_message_retention_policy"
    else:
        assert all(getattr(p, "max_bytes", 1) >= 64 * 1024 for p in policies)


def big_item(i: int, ts: int) -> Item:
    m = WakuMessage(i.to_bytes(4, "big") * 250, TOPIC_A, timestamp=ts)  # ~1 KB each
    return PUBSUB, message_hash(PUBSUB, m), m, m.encode()


def big_batches(start: int, batches: int, per_batch: int = 20) -> list[list[Item]]:
    """Batches newer than the previous ones; within a batch two messages share each timestamp and
    insertion order is reversed, so only (timestamp, hash) can explain which go first."""
    out = []
    for b in range(start, start + batches):
        items = [big_item(b * per_batch + j, BASE + (b * per_batch + j // 2) * 10**6) for j in range(per_batch)]
        out.append(items[::-1])
    return out


def disk_size(path: Path) -> tuple[int, int]:
    """(database file, -wal file) sizes in bytes."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size, (wal.stat().st_size if wal.exists() else 0)


LIMIT = 256 * 1024


async def test_size_retention_keeps_the_file_under_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "size.db"
    a = Archive(f"sqlite://{path}", retention="size:256KB")
    await a.open()
    batches = big_batches(0, 60)  # 1 200 messages of ~1 KB: well past 256 KiB (and the WAL's 4 MiB)
    inserted: list[Item] = []
    for batch in batches:
        await a.insert_many(batch)
        inserted += batch
        assert await a.database_size() <= LIMIT  # enforced on every insert, like capacity
    main, wal = disk_size(path)
    assert main <= LIMIT  # the file itself shrank (incremental vacuum + truncating checkpoint)
    assert wal <= LIMIT  # checkpointed every tenth of the limit, so only the last transactions
    kept = flat(await collect(a, pagination_forward=True, pagination_limit=100))
    everything = [it[1] for it in sorted(inserted, key=order_key)]
    assert 60 < len(kept) < 300 and kept == everything[-len(kept):]  # the oldest went first
    assert a.retention_deleted == len(inserted) - len(kept) == len(inserted) - await a.count()
    await a.aclose()

    # Restart: the same file, the same policy, still enforced; a tighter limit applies on the periodic run.
    b = Archive(f"sqlite://{path}", retention="size:256KB")
    await b.open()
    assert b.message_count == len(kept)
    for batch in big_batches(60, 20):
        await b.insert_many(batch)
        assert await b.database_size() <= LIMIT
    await b.aclose()
    c = Archive(f"sqlite://{path}", retention=[SizeRetention(128 * 1024)])
    await c.open()
    before = c.message_count
    assert await c.apply_retention() > 0
    assert await c.database_size() <= 128 * 1024 and disk_size(path)[0] <= 128 * 1024
    assert c.message_count < before and c.retention_deleted == before - c.message_count
    assert await c.apply_retention() == 0  # under the limit: nothing more
    await c.aclose()


async def test_size_retention_converts_an_archive_without_auto_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # a file created before incremental auto-vacuum (auto_vacuum=NONE)
    conn.execute("PRAGMA auto_vacuum=0")
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    a = Archive(f"sqlite://{path}")
    await a.open()
    for batch in big_batches(0, 30):
        await a.insert_many(batch)
    await a.aclose()
    assert disk_size(path)[0] + disk_size(path)[1] > 2 * LIMIT
    b = Archive(f"sqlite://{path}", retention="time:3600;size:256KB")  # combined with another policy
    await b.open()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL now
    conn.close()
    assert await b.apply_retention(now=BASE / 1e9 + 60) > 0  # time:3600 keeps all of them; size does not
    assert disk_size(path)[0] <= LIMIT and await b.database_size() <= LIMIT
    await b.aclose()


async def test_size_and_capacity_together(store_db: DbFactory) -> None:
    url = store_db("both")
    # PostgreSQL keeps the rows capacity deleted until VACUUM: its table needs more room for 50.
    a = Archive(url, retention=f"size:{'1MB' if url.startswith('postgres') else '256KB'};capacity:50")
    await a.open()
    for batch in big_batches(0, 20):
        await a.insert_many(batch)
    assert await a.count() == 50  # capacity is the tighter here
    assert await a.database_size() <= (4 if a.url.is_postgres else 1) * LIMIT
    await a.aclose()


def test_db_url_parsing() -> None:
    assert parse_db_url("sqlite://store.sqlite3").path == "store.sqlite3"
    assert parse_db_url("sqlite:///var/lib/s.db").path == "/var/lib/s.db"
    assert parse_db_url("sqlite://:memory:").in_memory
    pg = parse_db_url("postgres://waku:s3cret@db.internal:5433/archive")
    assert pg.is_postgres and not pg.in_memory and pg.path == "archive"
    assert pg.url == "postgresql://waku:s3cret@db.internal:5433/archive"
    assert pg.redacted == "postgresql://waku:***@db.internal:5433/archive"
    assert parse_db_url("postgresql://h/db?sslmode=require").url == "postgresql://h/db?sslmode=require"
    for bad in ("store.sqlite3", "sqlite://", "mysql://u:p@h/db", "postgres://u:s3cret@h:5432",
                "postgres://u:s3cret@:5432/db", "postgres://u:s3cret@h:99999/db", "postgres://u:s3cret@h:x/db"):
        with pytest.raises(StoreConfigError) as e:
            parse_db_url(bad)
        assert e.value.key == "store_message_db_url"
        assert "s3cret" not in str(e.value)


def test_eligibility() -> None:
    now = 1_700_000_000.0
    ns = int(now * 1e9)
    ok = WakuMessage(b"x", TOPIC_A, timestamp=ns)
    assert ineligibility(ok, now) is None
    assert ineligibility(WakuMessage(b"x", TOPIC_A, timestamp=ns - 20 * 10**9), now) is None  # ≤ 20 s is fine
    assert ineligibility(WakuMessage(b"x", TOPIC_A, timestamp=ns + 20 * 10**9), now) is None
    assert ineligibility(WakuMessage(b"x", TOPIC_A, timestamp=ns - 21 * 10**9), now) == "invalid_message_too_old"
    assert ineligibility(WakuMessage(b"x", TOPIC_A, timestamp=ns + 21 * 10**9), now) == \
        "invalid_message_future_timestamp"
    assert ineligibility(WakuMessage(b"x", TOPIC_A), now) == "invalid_message_too_old"  # no timestamp
    assert ineligibility(WakuMessage(b"x", TOPIC_A, timestamp=ns, ephemeral=True), now) == \
        "invalid_message_ephemeral"


async def test_a_big_purge_spreads_over_inserts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One insert deletes at most one chunk, so a purge never stalls the message path; the
    periodic run finishes it."""
    monkeypatch.setattr("v2.store.sqlite_archive._RETENTION_CHUNK", 10)
    path = tmp_path / "spread.db"
    a = Archive(f"sqlite://{path}")
    await a.open()
    inserted = [it for batch in big_batches(0, 30) for it in batch]  # 600 KB, no policy yet
    await a.insert_many(inserted)
    await a.aclose()
    b = Archive(f"sqlite://{path}", retention="size:256KB")
    await b.open()
    later = big_batches(30, 3, per_batch=1)
    for batch in later:
        before = b.retention_deleted
        await b.insert_many(batch)
        assert b.retention_deleted - before == 10  # one chunk per insert, not the whole purge
        inserted += batch
    assert await b.database_size() > LIMIT  # not there yet
    assert await b.apply_retention() > 0
    assert await b.database_size() <= LIMIT and disk_size(path)[0] <= LIMIT
    kept = flat(await collect(b, pagination_forward=True, pagination_limit=100))
    assert kept == [it[1] for it in sorted(inserted, key=order_key)][-len(kept):]
    await b.aclose()
