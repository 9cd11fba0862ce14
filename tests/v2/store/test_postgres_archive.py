"""What only the PostgreSQL archive has: several nodes on one database, a server that goes away,
size retention without shrinking files (v2.store.postgres_archive).  The rest of the store suite
runs on it too (the ``store_db`` fixture)."""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from pathlib import Path

import psycopg
import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.net import LOOPBACK, free_port, free_ports
from tests.helpers.postgres import PostgresServer
from tests.v2.store.test_archive import BASE, LIMIT, Item, big_batches, collect, flat, item, order_key, plan
from v2.core.message import WakuMessage, message_hash
from v2.core.topics import PubsubTopic
from v2.node import V2Node, V2NodeConfig
from v2.store.archive import Archive
from v2.store.common import ArchiveError
from v2.store.protocol import StoreService


def admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)


async def test_two_writers_store_each_message_once(postgres_server: PostgresServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two archives (two nodes' worth: two connections, two threads) write the same 3 000 messages
    into one database at once, in different orders and batchings: no duplicate-key error, no
    deadlock, every message once, and the two "new" counts add up to exactly the messages; then
    both run time retention at once, in small chunks, and delete exactly the old ones between them."""
    monkeypatch.setattr("v2.store.postgres_archive._RETENTION_CHUNK", 100)
    url = postgres_server.new_schema()
    items = [item(i, ts=BASE + (i // 3) * 10**6) for i in range(3000)]  # ties on timestamp too
    a, b = Archive(url, retention="time:60"), Archive(url, retention="capacity:100000;time:60")
    async with a, b:
        rng = random.Random(4)
        mine, theirs = items[:], items[::-1]
        rng.shuffle(mine)
        added = {"a": 0, "b": 0}

        async def write(name: str, archive: Archive, order: list[Item], batch: int) -> None:
            for i in range(0, len(order), batch):
                chunk = order[i:i + batch]
                n = await (archive.insert(*chunk[0]) if batch == 1 else archive.insert_many(chunk))
                added[name] += n  # not `+= await`: that reads the old value before waiting

        async with trio.open_nursery() as n:
            n.start_soon(write, "a", a, mine, 50)
            n.start_soon(write, "b", b, theirs, 1)
            n.start_soon(write, "a", a, mine[::7], 200)  # the same node again, overlapping itself
        assert added["a"] + added["b"] == 3000
        assert await a.count() == 3000 == await b.count()
        pages = flat(await collect(b, pagination_limit=100, pagination_forward=True))
        assert pages == [it[1] for it in sorted(items, key=order_key)]  # each once, in order
        with admin(url) as conn:
            assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT hash) FROM messages").fetchone() == (3000, 3000)
        now = BASE / 1e9 + 60 + 0.5  # the cutoff falls on the 1 500 oldest (timestamps 0 .. 999 ms)
        async with trio.open_nursery() as n:
            n.start_soon(a.apply_retention, now)
            n.start_soon(b.apply_retention, now)
        assert a.retention_deleted + b.retention_deleted == 1500
        assert flat(await collect(a, pagination_limit=100, pagination_forward=True)) == pages[1500:]


async def test_nodes_starting_together_create_the_schema_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_schema()
    archives = [Archive(url) for _ in range(6)]
    async with trio.open_nursery() as n:
        for a in archives:
            n.start_soon(a.open)
    assert all(a.is_open for a in archives)
    for a in archives:
        await a.aclose()


async def test_two_v2_nodes_archive_into_one_database(nursery: trio.Nursery,
                                                      postgres_server: PostgresServer) -> None:
    """Two real nodes with the store mounted, one relay mesh, one database: every message relayed
    reaches both archives, which write it at about the same time; stored once, no archive error."""
    url = postgres_server.new_schema()
    topic = str(PubsubTopic(0, 0))
    registries = [CollectorRegistry(), CollectorRegistry()]
    nodes = []
    for reg in registries:
        tcp, ws = free_ports(2)
        cfg = dataclasses.replace(V2NodeConfig(secrets.token_bytes(32), LOOPBACK, tcp, True, ws), store=True,
                                  store_message_db_url=url)
        nodes.append(V2Node(cfg, reg))
    for node in nodes:
        await nursery.start(node.run)
    a, b = nodes
    await b.host.connect(a.listen_addrs[0])
    with trio.fail_after(20):
        while not a.relay.mesh_peers(topic) or not b.relay.mesh_peers(topic):
            await trio.sleep(0.05)
    msgs = [WakuMessage(f"m{i}".encode(), "/test/1/pg/proto", timestamp=time.time_ns()) for i in range(40)]
    for i, m in enumerate(msgs):
        await (a if i % 2 else b).publish(topic, m)
    def duplicates() -> float:
        return sum(r.get_sample_value("waku_archive_duplicates_total") or 0 for r in registries)

    with trio.fail_after(20):  # each message: new for one node, already there for the other
        while duplicates() < len(msgs):
            await trio.sleep(0.05)
    with admin(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (len(msgs),)
    hashes = {message_hash(topic, m) for m in msgs}
    assert a.archive is not None
    page = await a.archive.find(plan(pagination_limit=100, pagination_forward=True))
    assert {r.message_hash for r in page.rows} == hashes
    for reg in registries:
        assert (reg.get_sample_value("waku_archive_errors_total", {"type": "insert_failure"}) or 0) == 0


async def test_unreachable_server_is_an_archive_error_at_start() -> None:
    url = f"postgres://waku:s3cret@{LOOPBACK}:{free_port()}/archive"  # nothing listens there
    a = Archive(url, connect_timeout=0.5)
    with pytest.raises(ArchiveError, match="cannot open archive") as err:
        await a.open()
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    assert a.connection_failures >= 1 and not a.is_open


async def test_a_lost_connection_is_made_again_and_counted(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_schema()
    registry = CollectorRegistry()
    archive = Archive(url, retry_deadline=10)
    service = StoreService(archive, registry, clock=lambda: BASE / 1e9)
    async with archive:
        assert await archive.insert(*item(1))
        with admin(url) as conn:  # what a server restart or a failover does to our session
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'waku-bridge-archive'")
        m = WakuMessage(b"after", "/test/1/a/proto", timestamp=int(BASE))
        await service.on_message("/waku/2/rs/0/0", m, message_hash("/waku/2/rs/0/0", m), m.encode())
        assert await archive.count() == 2
        assert archive.connection_failures >= 1
        assert registry.get_sample_value("waku_archive_db_connection_failures_total") == archive.connection_failures


async def test_a_server_gone_for_good_fails_calls_after_the_deadline() -> None:
    registry = CollectorRegistry()
    with PostgresServer() as pg:
        url = pg.new_database()
        archive = Archive(url, retry_deadline=0.5)
        service = StoreService(archive, registry, clock=lambda: BASE / 1e9)
        await archive.open()
        pg.stop()
        with pytest.raises(ArchiveError, match="unreachable"):
            await archive.insert(*item(1))
        m = WakuMessage(b"x", "/test/1/a/proto", timestamp=int(BASE))
        await service.on_message("/waku/2/rs/0/0", m, message_hash("/waku/2/rs/0/0", m), m.encode())  # no raise
        assert registry.get_sample_value("waku_archive_errors_total", {"type": "insert_failure"}) == 1
        assert (registry.get_sample_value("waku_archive_db_connection_failures_total") or 0) >= 2
        await archive.aclose()


async def test_a_foreign_messages_table_is_refused(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    with admin(url) as conn:  # nwaku's schema (waku_archive/driver/postgres_driver)
        conn.execute("CREATE TABLE messages (pubsubTopic VARCHAR NOT NULL, contentTopic VARCHAR NOT NULL, "
                     "payload VARCHAR, version INTEGER NOT NULL, timestamp BIGINT NOT NULL, "
                     "messageHash VARCHAR NOT NULL PRIMARY KEY, storedAt BIGINT NOT NULL)")
    with pytest.raises(ArchiveError, match="not a waku-bridge archive"):
        await Archive(url).open()
    with admin(url) as conn:
        conn.execute("CREATE SCHEMA bridge")
    # Its own schema in the same database: the URL's server options reach the session.
    async with Archive(url + "?options=-csearch_path%3Dbridge") as ours:
        assert await ours.insert(*item(1))
    with admin(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM bridge.messages").fetchone() == (1,)


async def test_size_retention_holds_the_table_at_about_the_limit(postgres_server: PostgresServer) -> None:
    """Deleted space is reused, never returned: the table stays near the limit however much is
    written, the oldest go first, and a restart (or another node) keeps the same row budget."""
    url = postgres_server.new_schema()
    a = Archive(url, retention="size:256KB")
    await a.open()
    inserted: list[Item] = []
    sizes = []
    for batch in big_batches(0, 150):  # ~3 MB of ~1 KB messages through a 256 KiB archive
        await a.insert_many(batch)
        inserted += batch
        sizes.append(await a.database_size())
    assert max(sizes) <= 1.5 * LIMIT
    kept = flat(await collect(a, pagination_forward=True, pagination_limit=100))
    everything = [it[1] for it in sorted(inserted, key=order_key)]
    assert 60 < len(kept) < 256 and kept == everything[-len(kept):]
    assert a.retention_deleted == len(inserted) - len(kept) == len(inserted) - await a.count()
    await a.aclose()
    b = Archive(url, retention="size:256KB")
    await b.open()
    for batch in big_batches(150, 50):
        await b.insert_many(batch)
        assert await b.database_size() <= 1.5 * LIMIT
    assert 60 < await b.count() < 256
    await b.aclose()


async def test_both_backends_give_the_same_pages(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """The same rows and random queries on SQLite and PostgreSQL: page for page the same hashes
    and cursors (BLOB and BYTEA compare alike, so (timestamp, hash) ties break the same way)."""
    rng = random.Random(11)
    topics = ("/t/1/a/proto", "/t/1/b/proto", "/t/1/c/proto")
    items = [item(i, rng.choice(topics), ts=BASE + rng.randrange(40) * 10**6,
                  pubsub=rng.choice(("/waku/2/rs/0/0", "/waku/2/rs/0/1"))) for i in range(400)]
    sq, pg = Archive(f"sqlite://{tmp_path / 'same.sqlite3'}"), Archive(postgres_server.new_schema())
    async with sq, pg:
        for a in (sq, pg):
            assert await a.insert_many(items) == 400
        for _ in range(60):
            kw: dict[str, object] = {"pagination_forward": rng.random() < 0.5,
                                     "pagination_limit": rng.choice((0, 7, 100))}
            if rng.random() < 0.7:
                kw["content_topics"] = tuple(rng.sample(topics, rng.randint(1, 3)))
            if rng.random() < 0.5:
                kw["pubsub_topic"] = "/waku/2/rs/0/0"
            if rng.random() < 0.4:
                lo = BASE + rng.randrange(40) * 10**6
                kw["time_start"], kw["time_end"] = lo, lo + rng.randrange(1, 20) * 10**6
            assert await collect(sq, **kw) == await collect(pg, **kw), kw  # every page, cursor to cursor
            at = plan(pagination_cursor=rng.choice(items)[1], **kw)  # from any stored row
            assert await sq.find(at) == await pg.find(at), kw
        lookup = plan(message_hashes=tuple(it[1] for it in rng.sample(items, 30)), include_data=True)
        assert await sq.find(lookup) == await pg.find(lookup)
        assert await sq.rows_at(BASE + 5 * 10**6) == await pg.rows_at(BASE + 5 * 10**6)
