"""Store v3 service and client over real libp2p hosts on 127.0.0.1 (waku-v2.md §2, §7)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.v2host import start_host
from tests.v2.store.conftest import DbFactory
from v2.core.message import WakuMessage, message_hash
from v2.protocol_ids import STORE_V3
from v2.ratelimit import RateLimit
from v2.store.archive import Archive
from v2.store.client import StoreClient, StoreClientError, StoreQueryFailed
from v2.store.common import StatusCode
from v2.store.protocol import MAX_REQUEST_SIZE, StoreService
from v2.store.rpc_codec import StoreQuery, StoreResponse, decode_response, encode_query
from v2.stream import StreamClosedError

NOW = 1_700_000_000.0
PUBSUB = "/waku/2/rs/0/0"
TOPIC = "/test/1/store/proto"


def make_msg(i: int, topic: str = TOPIC, **kw: object) -> WakuMessage:
    # Message i is i ms old at NOW, so all are within the 20 s eligibility window.
    return WakuMessage(f"payload {i}".encode(), topic, timestamp=int(NOW * 1e9) - (1000 - i) * 10**6, **kw)  # type: ignore[arg-type]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def setup(nursery: trio.Nursery, store_db: DbFactory, **kw: Any) -> tuple[StoreService, CollectorRegistry,
                                                                             StoreClient, str]:
    registry = CollectorRegistry()
    service = StoreService(Archive(store_db()), registry, clock=lambda: NOW, **kw)
    await nursery.start(service.run)
    server = await start_host(nursery, services=[service])
    client_host = await start_host(nursery)
    await client_host.connect(server.listen_addrs[0])
    return service, registry, StoreClient(client_host), server.peer_id


async def test_paged_query_over_the_network(nursery: trio.Nursery, store_db: DbFactory) -> None:
    service, registry, client, peer = await setup(nursery, store_db)
    msgs = [make_msg(i) for i in range(45)]
    for m in msgs:
        await service.on_message(PUBSUB, m, message_hash(PUBSUB, m), m.encode())
    other = make_msg(500, "/test/1/other/proto")
    await service.on_message(PUBSUB, other, message_hash(PUBSUB, other), other.encode())
    assert value(registry, "waku_archive_messages", type="stored") == 46

    q = StoreQuery("", include_data=True, pubsub_topic=PUBSUB, content_topics=(TOPIC,), pagination_forward=True)
    pages = [p async for p in client.pages(peer, q)]
    assert [len(p.messages) for p in pages] == [20, 20, 5]
    got = [kv for p in pages for kv in p.messages]
    assert [kv.message for kv in got] == msgs  # ascending, exact, nothing twice
    assert [kv.data for kv in got] == [m.encode() for m in msgs]  # the original bytes
    assert all(kv.pubsub_topic == PUBSUB for kv in got)
    assert all(p.status_code == 200 and p.status_desc == "OK" and p.request_id for p in pages)

    back = [p async for p in client.pages(peer, StoreQuery("", pubsub_topic=PUBSUB, content_topics=(TOPIC,),
                                                           pagination_limit=20))]
    assert [kv.message_hash for kv in back[0].messages] == [kv.message_hash for kv in got[-20:]]
    assert [len(p.messages) for p in back] == [20, 20, 5]
    assert all(kv.data is None for p in back for kv in p.messages)  # keys only without include_data

    # js-waku asks once more with the last hash and stops on an empty page (§7).
    end = await client.query(peer, StoreQuery("end", pubsub_topic=PUBSUB, content_topics=(TOPIC,),
                                              pagination_cursor=got[-1].message_hash, pagination_forward=True))
    assert (end.status_code, end.status_desc, end.messages, end.pagination_cursor) == (200, "OK", (), None)
    assert end.request_id == "end"

    lookup = await client.query(peer, StoreQuery("h", message_hashes=(got[3].message_hash,), include_data=True))
    assert [kv.message for kv in lookup.messages] == [msgs[3]]
    assert value(registry, "waku_store_queries_total") == 3 + 3 + 1 + 1  # forward pages, backward pages, end, lookup


async def test_archiving_rules_are_counted(nursery: trio.Nursery, store_db: DbFactory) -> None:
    service, registry, client, peer = await setup(nursery, store_db)
    ok = make_msg(1)
    await service.on_message(PUBSUB, ok, message_hash(PUBSUB, ok), ok.encode())
    await service.on_message(PUBSUB, ok, message_hash(PUBSUB, ok), ok.encode())
    for m in (make_msg(2, ephemeral=True), WakuMessage(b"old", TOPIC, timestamp=int((NOW - 60) * 1e9)),
              WakuMessage(b"future", TOPIC, timestamp=int((NOW + 60) * 1e9))):
        await service.on_message(PUBSUB, m, message_hash(PUBSUB, m), m.encode())
    assert value(registry, "waku_archive_duplicates_total") == 1
    for label in ("invalid_message_ephemeral", "invalid_message_too_old", "invalid_message_future_timestamp"):
        assert value(registry, "waku_archive_errors_total", type=label) == 1
    r = await client.query(peer, StoreQuery("", pubsub_topic=PUBSUB, content_topics=(TOPIC,)))
    assert [kv.message_hash for kv in r.messages] == [message_hash(PUBSUB, ok)]


async def raw_exchange(client: StoreClient, peer: str, data: bytes) -> StoreResponse:
    s = await client.host.new_stream(peer, [STORE_V3])
    try:
        await s.write_lp(data)
        raw = await s.read_lp(1 << 20, timeout=10)
        assert raw is not None
        assert await s.read_lp(1 << 20, timeout=10) is None  # the server closed its write side
        return decode_response(raw)
    finally:
        await s.aclose()


async def assert_still_serving(client: StoreClient, peer: str) -> None:
    r = await client.query(peer, StoreQuery("", pubsub_topic=PUBSUB, content_topics=(TOPIC,)))
    assert r.status_code == StatusCode.OK


async def test_bad_requests_get_a_status_and_the_service_keeps_serving(nursery: trio.Nursery,
                                                                       store_db: DbFactory) -> None:
    _, registry, client, peer = await setup(nursery, store_db, request_timeout=0.5)

    garbage = await raw_exchange(client, peer, b"\xff\xff\xff\xff")
    assert (garbage.status_code, garbage.request_id) == (400, "N/A")
    assert value(registry, "waku_store_errors_total", type="decode_rpc_failure") == 1
    await assert_still_serving(client, peer)

    no_request_id = await raw_exchange(client, peer, bytes.fromhex("1001"))  # include_data only
    assert no_request_id.status_code == 400 and "request_id" in no_request_id.status_desc
    await assert_still_serving(client, peer)

    oversize = await raw_exchange(client, peer, b"\x0a" * (MAX_REQUEST_SIZE + 1))
    assert oversize.status_code == 400 and "exceeds" in oversize.status_desc
    assert value(registry, "waku_store_errors_total", type="request_too_large") == 1
    await assert_still_serving(client, peer)

    bad_cursor = await client.query(peer, StoreQuery("c", pagination_cursor=b"\x01" * 31))
    assert bad_cursor.status_code == 300 and bad_cursor.status_desc.startswith("archive error: ")
    assert bad_cursor.request_id == "c"
    mixed = await client.query(peer, StoreQuery("m", message_hashes=(b"\x01" * 32,), content_topics=(TOPIC,)))
    assert mixed.status_code == 400
    with pytest.raises(StoreQueryFailed) as failed:
        _ = [p async for p in client.pages(peer, StoreQuery("", pagination_cursor=bytes(32)))]
    assert failed.value.response.status_code == 300

    # A stream that opens and goes silent is closed after the deadline, counted.
    silent = await client.host.new_stream(peer, [STORE_V3])
    try:
        try:
            assert await silent.read_lp(1024, timeout=30) is None
        except StreamClosedError:
            pass  # reset: closed either way
    finally:
        await silent.aclose()
    assert value(registry, "waku_store_errors_total", type="read_failure") >= 1

    # A request cut short (EOF inside the message) is closed too.
    truncated = await client.host.new_stream(peer, [STORE_V3])
    await truncated._write(b"\x64" + b"\x0a\x00")  # announces 100 bytes, sends 2
    await truncated.close_write()
    try:
        assert await truncated.read_lp(1024, timeout=30) is None
    except StreamClosedError:
        pass
    finally:
        await truncated.aclose()

    # A stream opened ahead of time and closed unused (js-waku) is no error.
    idle = await client.host.new_stream(peer, [STORE_V3])
    await idle.close_write()
    assert await idle.read_lp(1024, timeout=30) is None
    await idle.aclose()
    await assert_still_serving(client, peer)
    assert value(registry, "waku_store_errors_total", type="internal_error") == 0


async def test_client_errors(nursery: trio.Nursery, store_db: DbFactory) -> None:
    plain = await start_host(nursery)  # serves no store
    client_host = await start_host(nursery)
    await client_host.connect(plain.listen_addrs[0])
    with pytest.raises(StoreClientError):
        await StoreClient(client_host).query(plain.peer_id, StoreQuery("x"), timeout=5)


async def test_answers_without_a_network(store_db: DbFactory) -> None:
    """Not open yet → 503; no room in the bounded query queue → 429; each counted."""
    registry = CollectorRegistry()
    archive = Archive(store_db("a"))
    service = StoreService(archive, registry, clock=lambda: NOW, max_pending_queries=0)
    raw = encode_query(StoreQuery("q", content_topics=(TOPIC,)))
    assert (await service.answer(raw)).status_code == StatusCode.SERVICE_UNAVAILABLE
    m = make_msg(1)
    await service.on_message(PUBSUB, m, message_hash(PUBSUB, m), m.encode())  # archive closed: counted, no raise
    assert value(registry, "waku_archive_errors_total", type="insert_failure") == 1
    async with archive:
        r = await service.answer(raw)
        assert (r.status_code, r.request_id) == (StatusCode.TOO_MANY_REQUESTS, "q")
    assert value(registry, "waku_store_errors_total", type="service_unavailable") == 1
    assert value(registry, "waku_store_errors_total", type="too_many_requests") == 1


async def test_retention_deletes_are_counted(store_db: DbFactory) -> None:
    """Size (and capacity) trims right after an insert count in waku_archive_retention_deleted
    like the periodic run's deletes."""
    registry = CollectorRegistry()
    archive = Archive(store_db("sized"), retention="size:128KB")
    service = StoreService(archive, registry, clock=lambda: NOW)
    async with archive:
        for i in range(300):  # ~300 KB of messages into a 128 KiB archive
            m = WakuMessage(i.to_bytes(2, "big") * 500, TOPIC, timestamp=int(NOW * 1e9) - (1000 - i) * 10**6)
            await service.on_message(PUBSUB, m, message_hash(PUBSUB, m), m.encode())
        # PostgreSQL keeps the table at about the limit (v2.store.postgres_archive), SQLite under it.
        assert await archive.database_size() <= (2 if archive.url.is_postgres else 1) * 128 * 1024
        deleted = value(registry, "waku_archive_retention_deleted_total")
        assert deleted > 0 and deleted == archive.retention_deleted == 300 - archive.message_count
        assert value(registry, "waku_archive_messages", type="stored") == archive.message_count


async def test_rate_limit_answers_429_undecoded_and_counts(nursery: trio.Nursery, store_db: DbFactory) -> None:
    """nwaku's --rate-limit=storev3: over it, 429 "TOO_MANY_REQUESTS" with request_id "N/A", without
    decoding the request or touching the archive; counted as nwaku counts it."""
    _, registry, client, peer = await setup(nursery, store_db, rate_limit=RateLimit(2, 3600.0))
    q = StoreQuery("q", pubsub_topic=PUBSUB, content_topics=(TOPIC,))
    assert [(await client.query(peer, q)).status_code for _ in range(2)] == [200, 200]
    limited = await client.query(peer, q)
    assert (limited.request_id, limited.status_code, limited.status_desc) == ("N/A", 429, "TOO_MANY_REQUESTS")
    assert limited.messages == ()
    assert value(registry, "waku_store_queries_total") == 2  # the third never reached the planner
    assert value(registry, "waku_store_errors_total", type="rate_limited") == 1
    assert value(registry, "waku_service_requests_total", service="storev3", state="served") == 2
    assert value(registry, "waku_service_requests_total", service="storev3", state="rejected") == 1
    assert value(registry, "waku_service_rate_limited_total", service="storev3", scope="service") == 1
    with pytest.raises(StoreQueryFailed) as exc:  # the paging client stops on it
        async for _ in client.pages(peer, q):
            pass
    assert exc.value.response.status_code == StatusCode.TOO_MANY_REQUESTS
