"""Store v3 codec: round trips, always-written required fields, strict decoding, fuzz (waku-v2.md §3, §7)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.vectors import load_vectors
from v2.core.message import WakuMessage, message_hash
from v2.errors import V2Error
from v2.store.common import StatusCode
from v2.store.planner import Rejection, plan_query
from v2.store.rpc_codec import (
    KeyValue,
    StoreDecodeError,
    StoreQuery,
    StoreResponse,
    decode_query,
    decode_response,
    encode_query,
    encode_response,
)

V = load_vectors("waku2_message_hash.json")["vectors"][0]
RFC_MSG = WakuMessage(bytes.fromhex(V["payload_hex"]), V["content_topic"], version=0,
                      timestamp=int(V["timestamp_hex"], 16), meta=bytes.fromhex(V["meta_hex"]),
                      ephemeral=False, rate_limit_proof=b"")


def test_required_fields_always_written() -> None:
    """nwaku's decoder needs request_id (request) and request_id/status_code/status_desc (response),
    even at their default values (§3)."""
    assert encode_query(StoreQuery("")).hex() == "0a00"
    assert encode_response(StoreResponse("", 0, "")).hex() == "0a0050005a00"
    with pytest.raises(StoreDecodeError, match="request_id"):
        decode_query(b"")
    for missing in ("0a005000", "0a005a00", "50005a00"):
        with pytest.raises(StoreDecodeError):
            decode_response(bytes.fromhex(missing))


def test_query_wire_layout() -> None:
    """Field numbers and types of §7: sint64 (zig-zag) times, fields 51-53 for paging."""
    q = StoreQuery("id", include_data=True, pubsub_topic="/waku/2/rs/0/0", content_topics=("/a/1/b/proto",),
                   time_start=-1, time_end=1, message_hashes=(), pagination_cursor=b"\x01" * 32,
                   pagination_forward=True, pagination_limit=5)
    raw = encode_query(q)
    assert raw.startswith(bytes.fromhex("0a026964" "1001"))  # request_id, include_data
    assert bytes.fromhex("6001" "6802") in raw  # time_start = -1 → zig-zag 1; time_end = 1 → 2
    assert raw.endswith(bytes.fromhex("a00301" "a80305"))  # forward (52) true, limit (53) 5
    assert decode_query(raw) == q


def test_response_round_trip_keeps_original_message_bytes() -> None:
    """A message archived in nwaku's encoding (empty field 21 included) goes out byte for byte."""
    data = RFC_MSG.encode()
    h = message_hash(V["pubsub_topic"], RFC_MSG)
    r = StoreResponse("r1", 200, "OK", (KeyValue(h, data, V["pubsub_topic"]), KeyValue(b"\x02" * 32)),
                      pagination_cursor=h)
    back = decode_response(encode_response(r))
    assert back == r
    assert back.messages[0].data == data
    assert back.messages[0].message == RFC_MSG
    assert back.messages[1].message is None and back.messages[1].pubsub_topic is None
    assert KeyValue.of(h, RFC_MSG, "t").data == data


def test_response_with_invalid_embedded_message_is_refused() -> None:
    bad = encode_response(StoreResponse("r", 200, "OK", (KeyValue(b"\x01" * 32, b"\x0a\x00"),)))  # no content_topic
    with pytest.raises(StoreDecodeError, match="message"):
        decode_response(bad)
    no_hash = bytes.fromhex("0a00" "5000" "5a00" "a201" "00")  # messages[0] = empty KeyValue
    with pytest.raises(StoreDecodeError, match="message_hash"):
        decode_response(no_hash)


def test_bad_utf8_and_truncation() -> None:
    with pytest.raises(StoreDecodeError):
        decode_query(bytes.fromhex("0a02fffe"))  # request_id not UTF-8
    with pytest.raises(StoreDecodeError):
        decode_query(encode_query(StoreQuery("abc", pubsub_topic="x"))[:-1])


_hashes = st.binary(min_size=32, max_size=32)
_i64 = st.integers(-(2**63), 2**63 - 1)
_text = st.text(max_size=30)


@st.composite
def queries(draw: st.DrawFn) -> StoreQuery:
    return StoreQuery(
        request_id=draw(_text), include_data=draw(st.booleans()),
        pubsub_topic=draw(st.none() | _text), content_topics=tuple(draw(st.lists(_text, max_size=12))),
        time_start=draw(st.none() | _i64), time_end=draw(st.none() | _i64),
        message_hashes=tuple(draw(st.lists(st.binary(max_size=40), max_size=5))),
        pagination_cursor=draw(st.none() | st.binary(max_size=40)), pagination_forward=draw(st.booleans()),
        pagination_limit=draw(st.none() | st.integers(0, 2**64 - 1)))


@st.composite
def responses(draw: st.DrawFn) -> StoreResponse:
    items = []
    for payload in draw(st.lists(st.binary(max_size=50), max_size=4)):
        msg = WakuMessage(payload, "/app/1/topic/proto", timestamp=draw(_i64))
        with_data = draw(st.booleans())
        items.append(KeyValue(hashlib.sha256(payload).digest(), msg.encode() if with_data else None,
                              draw(st.none() | _text)))
    return StoreResponse(draw(_text), draw(st.integers(0, 2**32 - 1)), draw(_text), tuple(items),
                         draw(st.none() | _hashes))


@settings(max_examples=300, deadline=None)
@given(queries())
def test_query_round_trip(q: StoreQuery) -> None:
    assert decode_query(encode_query(q)) == q


@settings(max_examples=200, deadline=None)
@given(responses())
def test_response_round_trip(r: StoreResponse) -> None:
    assert decode_response(encode_response(r)) == r


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_raise_only_their_error(data: bytes) -> None:
    for decode in (decode_query, decode_response):
        try:
            decode(data)
        except StoreDecodeError as exc:
            assert isinstance(exc, V2Error)


@settings(max_examples=300, deadline=None)
@given(queries(), st.integers(0, 200), st.binary(min_size=1, max_size=3))
def test_mutated_queries_decode_or_raise_cleanly(q: StoreQuery, pos: int, junk: bytes) -> None:
    raw = bytearray(encode_query(q))
    at = pos % (len(raw) + 1)
    raw[at:at + len(junk)] = junk
    try:
        decode_query(bytes(raw))
    except StoreDecodeError:
        pass


@settings(max_examples=500, deadline=None)
@given(queries())
def test_planner_decides_every_decoded_query(q: StoreQuery) -> None:
    """Whatever a peer sends, the planner returns a plan or a 300/400 rejection, never raises."""
    p = plan_query(q)
    if isinstance(p, Rejection):
        assert p.status in (StatusCode.BAD_REQUEST, StatusCode.BAD_RESPONSE) and p.desc
    else:
        assert 1 <= p.page_size <= 100 and len(p.content_topics) <= 10
