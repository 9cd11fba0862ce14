"""Legacy store (2.0.0-beta4) codec: what go-waku sends decodes, what nwaku requires is written,
bad bytes are only ever a LegacyStoreDecodeError (fuzz)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import FLIPS, decode_or_refuse, mutate
from v2.core.message import WakuMessage
from v2.store import legacy_rpc_pb2
from v2.store.legacy_codec import (
    Direction,
    HistoryError,
    HistoryQuery,
    Index,
    LegacyStoreDecodeError,
    decode_response,
    encode_query,
)

TOPIC = "/waku/2/rs/16/32"
MSG = WakuMessage(b"hello", "/app/1/t/proto", version=0, timestamp=1_700_000_000_000_000_000)


def go_waku_response(cursor: bool, error: int = 0) -> bytes:
    """The shape go-waku's server writes (legacy_store/waku_store_protocol.go FindMessages): proto3
    without presence, so a NONE error is absent and the last page has an empty PagingInfo."""
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="r1")
    rpc.response.messages.append(MSG.encode())
    rpc.response.paging_info.SetInParent()
    if cursor:
        rpc.response.paging_info.cursor.CopyFrom(legacy_rpc_pb2.Index(
            digest=b"\x01" * 32, receiver_time=5, sender_time=MSG.timestamp, pubsub_topic=TOPIC))
    if error:
        rpc.response.error = error
    return rpc.SerializeToString()


def test_go_waku_pages_decode() -> None:
    last = decode_response(go_waku_response(cursor=False))
    assert last.request_id == "r1" and last.cursor is None and last.error == HistoryError.NONE
    assert last.decoded() == [MSG] and last.messages == (MSG.encode(),)
    more = decode_response(go_waku_response(cursor=True))
    assert more.cursor == Index(b"\x01" * 32, 5, MSG.timestamp, TOPIC)
    assert decode_response(go_waku_response(False, 1)).error == HistoryError.INVALID_CURSOR


def test_query_writes_every_field_nwaku_requires() -> None:
    q = HistoryQuery("rid", TOPIC, ("/a/1/b/proto", "/c/1/d/proto"), page_size=0, forward=False,
                     cursor=Index(b"", 0, 0, ""), start_time=0, end_time=10)
    rpc = legacy_rpc_pb2.HistoryRPC.FromString(encode_query(q))
    assert rpc.HasField("request_id") and rpc.request_id == "rid"
    pi = rpc.query.paging_info
    assert pi.HasField("page_size") and pi.HasField("direction") and pi.direction == Direction.BACKWARD
    for f in ("digest", "receiver_time", "sender_time", "pubsub_topic"):  # even at their zero value
        assert pi.cursor.HasField(f), f
    assert [cf.content_topic for cf in rpc.query.content_filters] == list(q.content_topics)
    assert rpc.query.HasField("start_time") and rpc.query.start_time == 0 and rpc.query.end_time == 10
    bare = legacy_rpc_pb2.HistoryRPC.FromString(encode_query(HistoryQuery("x")))
    assert not bare.query.HasField("pubsub_topic") and not bare.query.paging_info.HasField("cursor")
    assert bare.query.paging_info.direction == Direction.FORWARD


def test_bad_responses_are_refused() -> None:
    for bad in (b"\xff", legacy_rpc_pb2.HistoryRPC(request_id="x").SerializeToString()):  # junk; no response
        try:
            decode_response(bad)
        except LegacyStoreDecodeError:
            continue
        raise AssertionError(bad)
    rpc = legacy_rpc_pb2.HistoryRPC(request_id="x")
    rpc.response.messages.append(b"\x0a\x01")  # a truncated WakuMessage
    try:
        decode_response(rpc.SerializeToString())
    except LegacyStoreDecodeError as exc:
        assert "messages[0]" in str(exc)
    else:
        raise AssertionError("accepted")


@settings(max_examples=300)
@given(st.booleans(), FLIPS)
def test_fuzz_mutated_responses(cursor: bool, flips: list[tuple[int, int]]) -> None:
    decode_or_refuse([decode_response], mutate(go_waku_response(cursor), flips))


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    decode_or_refuse([decode_response], data)
