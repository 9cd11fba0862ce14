"""Filter v2 codec: round trips, nwaku's required fields always written (§3), fuzzed decoders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import FLIPS, decode_or_refuse, mutate
from v2.core.message import WakuMessage
from v2.filter.rpc_codec import (
    FilterDecodeError,
    FilterSubscribeRequest,
    FilterSubscribeResponse,
    FilterSubscribeType,
    MessagePush,
    encode_message_push,
)

text = st.text(max_size=40)
requests = st.builds(FilterSubscribeRequest, text, st.sampled_from(FilterSubscribeType),
                     st.none() | text, st.lists(text, max_size=5).map(tuple))
responses = st.builds(FilterSubscribeResponse, text, st.integers(0, 2**32 - 1), st.none() | text)
messages = st.builds(WakuMessage, st.binary(max_size=100), st.text(min_size=1, max_size=30),
                     st.none() | st.integers(0, 2), st.none() | st.integers(-(2**63), 2**63 - 1))


@settings(max_examples=200, deadline=None)
@given(requests)
def test_request_roundtrip(r: FilterSubscribeRequest) -> None:
    assert FilterSubscribeRequest.decode(r.encode()) == r


@settings(max_examples=200, deadline=None)
@given(responses)
def test_response_roundtrip(r: FilterSubscribeResponse) -> None:
    assert FilterSubscribeResponse.decode(r.encode()) == r


@settings(max_examples=200, deadline=None)
@given(text, messages)
def test_push_roundtrip_keeps_original_bytes(topic: str, m: WakuMessage) -> None:
    p = MessagePush.of(topic, m)
    back = MessagePush.decode(p.encode())
    assert back == p and back.data == m.encode()


def test_required_fields_are_written_even_when_default() -> None:
    # PING with an empty request id: request_id (1) and the type (2) still on the wire.
    assert FilterSubscribeRequest("", FilterSubscribeType.SUBSCRIBER_PING).encode() == bytes.fromhex("0a001000")
    # request_id "", status_code 0, status_desc "": all three tags present.
    assert FilterSubscribeResponse("", 0, "").encode() == bytes.fromhex("0a0050005a00")
    assert encode_message_push("", b"") == bytes.fromhex("0a001200")


def test_absent_type_is_ping_and_unknown_type_is_refused() -> None:
    assert FilterSubscribeRequest.decode(bytes.fromhex("0a0161")).type is FilterSubscribeType.SUBSCRIBER_PING
    with pytest.raises(FilterDecodeError):
        FilterSubscribeRequest.decode(bytes.fromhex("0a01611007"))


@pytest.mark.parametrize("data", [
    b"",  # request_id missing
    bytes.fromhex("1001"),  # SUBSCRIBE without request_id
    b"\xff\xff\xff",
    bytes.fromhex("0a02c328"),  # invalid UTF-8 in request_id
])
def test_request_decoder_refuses(data: bytes) -> None:
    with pytest.raises(FilterDecodeError):
        FilterSubscribeRequest.decode(data)


def test_response_and_push_decoders_refuse_missing_required() -> None:
    with pytest.raises(FilterDecodeError):
        FilterSubscribeResponse.decode(bytes.fromhex("0a0161"))  # no status_code
    with pytest.raises(FilterDecodeError):
        FilterSubscribeResponse.decode(bytes.fromhex("50c801"))  # no request_id
    good = WakuMessage(b"x", "/a/1/b/c").encode()
    with pytest.raises(FilterDecodeError):
        MessagePush.decode(bytes([0x0A, len(good)]) + good)  # no pubsub_topic
    with pytest.raises(FilterDecodeError):
        MessagePush.decode(bytes.fromhex("12026161"))  # no waku_message
    with pytest.raises(FilterDecodeError):
        MessagePush.decode(bytes.fromhex("0a0378797a12026161"))  # waku_message is garbage


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders(data: bytes) -> None:
    decode_or_refuse((FilterSubscribeRequest.decode, FilterSubscribeResponse.decode, MessagePush.decode), data)


@settings(max_examples=300, deadline=None)
@given(requests, messages, FLIPS)
def test_mutated_valid_frames_decode_or_raise_cleanly(r: FilterSubscribeRequest, m: WakuMessage,
                                                      flips: list[tuple[int, int]]) -> None:
    for frame in (r.encode(), MessagePush.of("/waku/2/rs/0/0", m).encode()):
        decode_or_refuse((FilterSubscribeRequest.decode, MessagePush.decode), mutate(frame, flips))
