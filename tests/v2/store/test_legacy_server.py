"""Legacy store server side: the request decoder (and its fuzz), the planner's paging rules and
cursors, and the service's answers from a real (in-memory) archive."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers.fuzz import FLIPS, mutate
from tests.helpers.v2host import start_host
from tests.v2.store.conftest import DbFactory
from v2.core.message import WakuMessage, message_hash
from v2.ratelimit import RateLimit
from v2.store import legacy_rpc_pb2
from v2.store.archive import Archive
from v2.store.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from v2.store.legacy_client import LegacyStoreClient, LegacyStoreQueryFailed
from v2.store.legacy_codec import (
    Direction,
    HistoryError,
    HistoryQuery,
    HistoryResponse,
    Index,
    LegacyQueryInvalid,
    LegacyStoreDecodeError,
    decode_query,
    decode_response,
    encode_query,
    encode_response,
)
from v2.store.legacy_planner import CursorPosition, LegacyRow, cursor_position, digest, index_for, legacy_plan
from v2.store.legacy_protocol import LegacyStoreService

TOPIC = "/waku/2/rs/16/32"
CT = "/app/1/t/proto"
T0 = 1_700_000_000_000_000_000


def msg(i: int, ct: str = CT) -> WakuMessage:
    return WakuMessage(b"p%d" % i, ct, version=0, timestamp=T0 + i * 1000)


def go_waku_query(**paging: int) -> bytes:
    """go-waku's proto3 encoding: zero values (page size 0, BACKWARD, zero times) are absent."""
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="abc")
    rpc.query.pubsub_topic = TOPIC
    rpc.query.content_filters.add(content_topic=CT)
    rpc.query.paging_info.SetInParent()
    for k, v in paging.items():
        setattr(rpc.query.paging_info, k, v)
    return rpc.SerializeToString()


# -- codec --------------------------------------------------------------------------------------

def test_decode_query_round_trips_our_encoding() -> None:
    q = HistoryQuery("r1", TOPIC, (CT, "/b/1/c/proto"), 7, False, Index(b"\x02" * 32, 1, 2, TOPIC), 10, 20)
    assert decode_query(encode_query(q)) == q


def test_go_waku_defaults_decode_as_backward_default_page() -> None:
    q = decode_query(go_waku_query())
    assert q.forward is False and q.page_size == 0 and q.cursor is None and q.start_time is None
    assert decode_query(go_waku_query(direction=Direction.FORWARD, page_size=5)).forward is True


def test_decode_query_refusals() -> None:
    with pytest.raises(LegacyStoreDecodeError, match="request_id"):
        decode_query(legacy_rpc_pb2.HistoryRPC(query=legacy_rpc_pb2.HistoryQuery()).SerializeToString())
    with pytest.raises(LegacyStoreDecodeError, match="query"):
        decode_query(legacy_rpc_pb2.HistoryRPC(request_id="x").SerializeToString())
    with pytest.raises(LegacyStoreDecodeError):
        decode_query(b"\xff" * 12)
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="x")
    for i in range(11):
        rpc.query.content_filters.add(content_topic=f"/a/1/{i}/proto")
    with pytest.raises(LegacyQueryInvalid, match="too many") as exc:
        decode_query(rpc.SerializeToString())
    assert exc.value.request_id == "x"
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="y")
    rpc.query.content_filters.add()
    with pytest.raises(LegacyQueryInvalid, match="empty"):
        decode_query(rpc.SerializeToString())


def test_encode_response_is_what_our_client_decodes() -> None:
    c = index_for(TOPIC, msg(1))
    r = HistoryResponse("r", (msg(1).encode(), msg(2).encode()), c)
    assert decode_response(encode_response(r)) == r
    last = HistoryResponse("r", (msg(1).encode(),), None, HistoryError.INVALID_CURSOR)
    assert decode_response(encode_response(last, direction=Direction.BACKWARD)) == last


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode_query_random_bytes(data: bytes) -> None:
    try:
        decode_query(data)
    except LegacyStoreDecodeError:
        pass


@settings(max_examples=400, deadline=None)
@given(FLIPS)
def test_fuzz_decode_query_mutated(flips: list[tuple[int, int]]) -> None:
    frame = encode_query(HistoryQuery("r1", TOPIC, (CT,), 7, True, Index(b"\x02" * 32, 1, 2, TOPIC), 10, 20))
    try:
        decode_query(mutate(frame, flips))
    except LegacyStoreDecodeError:
        pass


# -- planner ------------------------------------------------------------------------------------

def test_plan_page_size_default_and_clamp() -> None:
    assert legacy_plan(HistoryQuery("r"), None).page_size == DEFAULT_PAGE_SIZE
    assert legacy_plan(HistoryQuery("r", page_size=5000), None).page_size == MAX_PAGE_SIZE
    assert legacy_plan(HistoryQuery("r", page_size=3), None).page_size == 3


def test_plan_time_range_inclusive_end() -> None:
    p = legacy_plan(HistoryQuery("r", start_time=5, end_time=9), None)
    assert (p.time_start, p.time_end, p.include_data) == (5, 10, True)
    assert legacy_plan(HistoryQuery("r", end_time=2**63 - 1), None).time_end is None


def test_digest_is_go_wakus() -> None:
    m = msg(3)
    assert digest(m) == hashlib.sha256(CT.encode() + m.payload).digest()
    assert m.timestamp is not None and index_for(TOPIC, m) == Index(digest(m), m.timestamp, m.timestamp, TOPIC)


def test_cursor_position_finds_the_row_or_falls_back_to_a_bound() -> None:
    m, other = msg(1), msg(2)
    rows = [LegacyRow(message_hash(TOPIC, other), TOPIC, other.encode()),
            LegacyRow(b"\x00" * 31 + b"\x01", TOPIC, b"\xff\xff"),  # undecodable: skipped
            LegacyRow(message_hash(TOPIC, m), TOPIC, m.encode())]
    c = index_for(TOPIC, m)
    assert cursor_position(c, True, rows) == CursorPosition(m.timestamp or 0, message_hash(TOPIC, m))
    assert cursor_position(Index(c.digest, 0, c.sender_time, "/other"), True, rows).message_hash == b"\xff" * 32
    assert cursor_position(Index(b"\x09" * 32, 0, 7, ""), False, rows) == CursorPosition(7, b"\x00" * 32)


# -- service over an archive on each backend ---------------------------------------------------------

@pytest.fixture
async def service(store_db: DbFactory) -> AsyncIterator[tuple[LegacyStoreService, list[WakuMessage]]]:
    archive = Archive(store_db())
    await archive.open()
    msgs = [msg(i, CT if i % 3 else "/b/1/c/proto") for i in range(30)]
    await archive.insert_many([(TOPIC, message_hash(TOPIC, m), m, m.encode()) for m in msgs])
    try:
        yield LegacyStoreService(archive, CollectorRegistry()), msgs
    finally:
        await archive.aclose()


async def pages(svc: LegacyStoreService, q: HistoryQuery) -> list[HistoryResponse]:
    out: list[HistoryResponse] = []
    while True:
        raw = await svc.answer(encode_query(q))
        assert raw is not None
        r = decode_response(raw)
        assert r.request_id == q.request_id and r.error == HistoryError.NONE
        out.append(r)
        if r.cursor is None:
            return out
        q = HistoryQuery(q.request_id, q.pubsub_topic, q.content_topics, q.page_size, q.forward, r.cursor,
                         q.start_time, q.end_time)


async def test_service_pages_forward_backward(service: tuple[LegacyStoreService, list[WakuMessage]]) -> None:
    svc, msgs = service
    want = [m for m in msgs if m.content_topic == CT]
    fwd = await pages(svc, HistoryQuery("f", TOPIC, (CT,), 6, True))
    assert [len(p.messages) for p in fwd] == [6, 6, 6, 2]
    assert [m for p in fwd for m in p.decoded()] == want
    bwd = await pages(svc, HistoryQuery("b", TOPIC, (CT,), 6, False))
    assert bwd[0].decoded() == want[-6:] and bwd[-1].decoded() == want[:2]
    assert svc.metrics.queries._value.get() == 8


async def test_service_resumes_from_a_cursor_whose_row_is_gone(
        service: tuple[LegacyStoreService, list[WakuMessage]]) -> None:
    svc, msgs = service
    gone = Index(b"\x07" * 32, 0, msgs[9].timestamp or 0, TOPIC)  # digest of no row: positional
    got = await pages(svc, HistoryQuery("g", TOPIC, (), 100, True, gone))
    assert [m for p in got for m in p.decoded()] == msgs[10:]
    got = await pages(svc, HistoryQuery("h", TOPIC, (), 100, False, gone))
    assert [m for p in got for m in p.decoded()] == msgs[:9]


async def test_service_refusals_are_answered_or_reset_and_counted(
        service: tuple[LegacyStoreService, list[WakuMessage]]) -> None:
    svc, _ = service
    assert await svc.answer(b"\xff" * 20) is None
    assert svc.metrics.errors.labels("decode_rpc_failure")._value.get() == 1
    bad_cursor = await svc.answer(encode_query(HistoryQuery("c", TOPIC, cursor=Index(b"\x01", 0, 0, TOPIC))))
    assert bad_cursor is not None and decode_response(bad_cursor).error == HistoryError.INVALID_CURSOR
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="many")
    for i in range(11):
        rpc.query.content_filters.add(content_topic=f"/a/1/{i}/proto")
    many = await svc.answer(rpc.SerializeToString())
    assert many is not None
    r = decode_response(many)
    assert (r.request_id, r.error, r.messages) == ("many", HistoryError.INVALID_CURSOR, ())
    assert svc.metrics.errors.labels("invalid_query")._value.get() == 1
    await svc.archive.aclose()
    closed = await svc.answer(encode_query(HistoryQuery("z", TOPIC)))
    assert closed is not None and decode_response(closed).error == HistoryError.SERVICE_UNAVAILABLE


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_service_answer(data: bytes) -> None:
    """Whatever arrives, the service answers bytes our client decodes, or asks for a reset."""
    async def main() -> None:
        archive = Archive("sqlite://:memory:")
        async with archive:
            raw = await LegacyStoreService(archive, CollectorRegistry()).answer(data)
            if raw is not None:
                decode_response(raw)

    trio.run(main)


async def test_rate_limit_over_real_streams(nursery: trio.Nursery, store_db: DbFactory) -> None:
    """nwaku's --rate-limit=storev2: over it the answer is error TOO_MANY_REQUESTS (429 on the wire)
    with the request's own id (go-waku's client refuses any other), and it is counted."""
    archive = Archive(store_db())
    await archive.open()
    m = msg(1)
    await archive.insert_many([(TOPIC, message_hash(TOPIC, m), m, m.encode())])
    registry = CollectorRegistry()
    svc = LegacyStoreService(archive, registry, rate_limit=RateLimit(1, 3600.0))
    server = await start_host(nursery, services=[svc])
    client_host = await start_host(nursery)
    await client_host.connect(server.listen_addrs[0])
    client = LegacyStoreClient(client_host)
    try:
        ok = await client.query(server.peer_id, HistoryQuery("first", TOPIC, (CT,)))
        assert (ok.error, len(ok.messages)) == (HistoryError.NONE, 1)
        limited = await client.query(server.peer_id, HistoryQuery("second", TOPIC, (CT,)))
        assert (limited.request_id, limited.error, limited.messages) == ("second", HistoryError.TOO_MANY_REQUESTS, ())
        assert int(limited.error) == 429
        with pytest.raises(LegacyStoreQueryFailed):
            async for _ in client.pages(server.peer_id, HistoryQuery("", TOPIC, (CT,))):
                pass

        def value(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        assert value("waku_legacy_store_errors_total", type="rate_limited") == 2
        assert value("waku_legacy_store_queries_total") == 1
        assert value("waku_service_requests_total", service="storev2", state="rejected") == 2
        assert value("waku_service_requests_total", service="storev2", state="served") == 1
    finally:
        await archive.aclose()
