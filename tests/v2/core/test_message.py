"""WakuMessage codec and hash against tests/vectors (RFC 14) and the spec notes' encodings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import decode_or_refuse
from tests.helpers.vectors import load_vectors
from v2.core.message import MessageDecodeError, WakuMessage, message_hash
from v2.core.proto import message_pb2

VECTORS = load_vectors("waku2_message_hash.json")["vectors"]


def _msg(v: dict[str, Any]) -> WakuMessage:
    return WakuMessage(bytes.fromhex(v["payload_hex"]), v["content_topic"],
                       timestamp=int(v["timestamp_hex"], 16),
                       meta=bytes.fromhex(v["meta_hex"]) if v["meta_hex"] is not None else None)


@pytest.mark.parametrize("v", VECTORS, ids=[v["case"] for v in VECTORS])
def test_rfc_message_hash(v: dict[str, Any]) -> None:
    assert message_hash(v["pubsub_topic"], _msg(v)).hex() == v["expected_message_hash"]


def test_nwaku_style_encoding_is_byte_exact() -> None:
    """waku-v2.md §5: nwaku writes version 0, an empty field 21 and ephemeral false."""
    v = VECTORS[0]
    m = WakuMessage(bytes.fromhex(v["payload_hex"]), v["content_topic"], version=0,
                    timestamp=int(v["timestamp_hex"], 16), meta=bytes.fromhex(v["meta_hex"]),
                    ephemeral=False, rate_limit_proof=b"")
    assert m.encode().hex() == (
        "0a0c010203045445535405060708121d2f77616b752f322f64656661756c742d636f6e74656e742f70726f746f1800"
        "508090fca3f4efc4d72e5a0c73757065722d736563726574aa0100f80100")
    assert WakuMessage.decode(m.encode()) == m


def test_timestamp_zero_uses_nwaku_semantics() -> None:
    m = WakuMessage(b"", "/waku/2/default-content/proto", meta=bytes.fromhex("73757065722d736563726574"))
    assert message_hash("/waku/2/default-waku/proto", m).hex() == (
        "58e2fc032a82c4adeb967a8b87086d0d6fb304912f120d4404e6236add8f1f56")


def test_decoder_refuses_what_nwaku_refuses() -> None:
    with pytest.raises(MessageDecodeError):
        WakuMessage.decode(b"\x0a\x01x")  # no content_topic
    with pytest.raises(MessageDecodeError):
        WakuMessage.decode(WakuMessage(b"x", "/a/1/b/c", meta=b"m" * 65).encode())
    with pytest.raises(MessageDecodeError):
        WakuMessage.decode(b"\xff\xff\xff")


msgs = st.builds(
    WakuMessage, st.binary(max_size=300), st.text(min_size=1, max_size=40),
    st.none() | st.integers(0, 2**32 - 1), st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.binary(max_size=64), st.none() | st.booleans(), st.none() | st.binary(max_size=50))


@settings(max_examples=300, deadline=None)
@given(msgs)
def test_roundtrip_and_agreement_with_protobuf(m: WakuMessage) -> None:
    assert WakuMessage.decode(m.encode()) == m
    pb = message_pb2.WakuMessage()
    pb.ParseFromString(m.encode())
    assert pb.SerializeToString() == m.encode()  # our bytes are canonical protobuf


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_decoder(data: bytes) -> None:
    decode_or_refuse((WakuMessage.decode,), data)
