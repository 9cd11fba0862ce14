"""LightPush codecs: round trips, required fields always written (§3), strict and fuzzed decoders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import FLIPS, decode_or_refuse, mutate
from v2.core.message import WakuMessage
from v2.lightpush.rpc_codec import (
    LightpushDecodeError,
    LightpushRequest,
    LightpushResponse,
    PushRequest,
    PushResponse,
    PushRPC,
)

text = st.text(max_size=40)
u32 = st.integers(0, 2**32 - 1)
messages = st.builds(WakuMessage, st.binary(max_size=100), st.text(min_size=1, max_size=30),
                     st.none() | st.integers(0, 2), st.none() | st.integers(-(2**63), 2**63 - 1),
                     st.none() | st.binary(max_size=64), st.none() | st.booleans())
rpcs = st.builds(PushRPC, text, st.none() | st.builds(PushRequest.of, text, messages),
                 st.none() | st.builds(PushResponse, st.booleans(), st.none() | text))


@settings(max_examples=200, deadline=None)
@given(text, st.none() | text, messages)
def test_v3_request_roundtrip(rid: str, topic: str | None, m: WakuMessage) -> None:
    r = LightpushRequest.of(rid, topic, m)
    assert LightpushRequest.decode(r.encode()) == r


@settings(max_examples=200, deadline=None)
@given(st.builds(LightpushResponse, text, u32, st.none() | text, st.none() | u32))
def test_v3_response_roundtrip(r: LightpushResponse) -> None:
    assert LightpushResponse.decode(r.encode()) == r


@settings(max_examples=200, deadline=None)
@given(rpcs)
def test_legacy_roundtrip(r: PushRPC) -> None:
    assert PushRPC.decode(r.encode()) == r


def test_required_fields_are_written_even_when_default() -> None:
    assert LightpushResponse("", 0).encode() == bytes.fromhex("0a005000")
    # is_success=false is written (nwaku requires the tag): response = 1a 02 08 00
    assert PushRPC("", response=PushResponse(False)).encode() == bytes.fromhex("0a001a020800")
    m = WakuMessage(b"", "/a/1/b/c")
    assert LightpushRequest.of("", None, m).encode() == bytes.fromhex("0a00aa010c0a0012082f612f312f622f63")


@pytest.mark.parametrize("data", [
    b"",
    bytes.fromhex("0a0161"),  # request_id only, no message
    bytes.fromhex("aa01020a00"),  # message without content_topic, and no request_id
    bytes.fromhex("0a0161aa01020a00"),  # message without content_topic
    b"\xff\xff",
])
def test_v3_request_decoder_refuses(data: bytes) -> None:
    with pytest.raises(LightpushDecodeError):
        LightpushRequest.decode(data)


@pytest.mark.parametrize("data", [
    b"",  # no request_id
    bytes.fromhex("0a0161120512036161611200"),  # request without message... (then garbage field)
    bytes.fromhex("0a01611a00"),  # response without is_success
    bytes.fromhex("0a01611200"),  # request without pubsub_topic and message
])
def test_legacy_decoder_refuses(data: bytes) -> None:
    with pytest.raises(LightpushDecodeError):
        PushRPC.decode(data)


def test_v3_response_decoder_refuses_missing_status() -> None:
    with pytest.raises(LightpushDecodeError):
        LightpushResponse.decode(bytes.fromhex("0a0161"))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders(data: bytes) -> None:
    decode_or_refuse((LightpushRequest.decode, LightpushResponse.decode, PushRPC.decode), data)


@settings(max_examples=300, deadline=None)
@given(text, st.none() | text, messages, rpcs, FLIPS)
def test_mutated_valid_frames_decode_or_raise_cleanly(rid: str, topic: str | None, m: WakuMessage, rpc: PushRPC,
                                                      flips: list[tuple[int, int]]) -> None:
    for frame in (LightpushRequest.of(rid, topic, m).encode(), rpc.encode()):
        decode_or_refuse((LightpushRequest.decode, PushRPC.decode), mutate(frame, flips))
