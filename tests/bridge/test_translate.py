"""Translation rules both ways, determinism, and the old bridge's topic-conversion cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.payload import padding_length, unwrap_unencrypted, wrap_unencrypted
from bridge.topics import InvalidTopic, NotBridgeable, content_topic_for, v1_topic_of
from bridge.translate import NS, Drop, DropReason, Unsealed, V1ToV2, seal, v1_to_v2, v2_to_v1
from tests.helpers.vectors import load_vectors
from v1.waku.envelope import Envelope
from v1.waku.pow import SizeRule, pow_value
from v2.core.message import WakuMessage

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("topic", "hex_"), [
    ("/waku/1/0x00000000/rfc26", "00000000"), ("/waku/1/0xffffffff/rfc26", "ffffffff"),
    ("/waku/1/0x1a2b3c4d/rfc26", "1a2b3c4d")])
def test_topic_conversion_both_ways(topic: str, hex_: str) -> None:
    assert content_topic_for(bytes.fromhex(hex_)) == topic
    assert v1_topic_of(topic) == bytes.fromhex(hex_)


def test_topic_conversion_edge_cases() -> None:
    assert v1_topic_of("/waku/1/1a2b3c4d/rfc26") == bytes.fromhex("1a2b3c4d")  # 0x optional
    assert v1_topic_of("/waku/1/0x12345678/proto") == bytes.fromhex("12345678")  # encoding not checked
    for bad in ("/waku/1/0x112233/rfc26", "/waku/1/my-content/rfc26", "/waku/1/0x1122334455/rfc26"):
        with pytest.raises(InvalidTopic):  # never truncated (the old bridge truncated)
            v1_topic_of(bad)
    for other in ("this-is-my-content", "/facebook/1/my-content/rfc26", "/waku/2/my-content/rfc26"):
        with pytest.raises(NotBridgeable):
            v1_topic_of(other)


def test_payload_padding_vectors() -> None:
    for v in load_vectors("waku_payload_v1.json")["vectors"]:
        assert padding_length(v["payload_len"], signed=v["signed"]) == v["expected_padding_len"]
    wrapped = wrap_unencrypted(b"hello")
    assert wrapped == bytes.fromhex("0105") + b"hello" + b"\0" * 249 and len(wrapped) == 256
    assert unwrap_unencrypted(wrapped) == b"hello"


def test_v1_to_v2() -> None:
    env = Envelope(1_690_000_005, 5, bytes.fromhex("1a2b3c4d"), b"rfc26 blob", 77)
    out = v1_to_v2(env, cluster_id=16, num_shards=8)
    assert isinstance(out, V1ToV2)
    assert out.message == WakuMessage(b"rfc26 blob", "/waku/1/0x1a2b3c4d/rfc26", version=1,
                                      timestamp=1_690_000_000 * NS)
    assert out.message.timestamp == 1_690_000_000_000_000_000  # not the uint32-wrapped value
    assert out.pubsub_topic == "/waku/2/rs/16/4"
    fixed = v1_to_v2(env, cluster_id=16, num_shards=8, pubsub_topic="/waku/2/rs/16/0")
    assert isinstance(fixed, V1ToV2) and fixed.pubsub_topic == "/waku/2/rs/16/0"
    big = Envelope(1_690_000_005, 5, b"abcd", b"x" * 200_000)
    dropped = v1_to_v2(big, cluster_id=0, num_shards=1)
    assert isinstance(dropped, Drop) and dropped.reason is DropReason.TOO_LARGE


def test_v2_to_v1_and_drops() -> None:
    ts = int(NOW * NS)
    m = WakuMessage(b"blob", "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=ts)
    u = v2_to_v1(m, now=NOW, ttl=10, max_skew=20)
    assert isinstance(u, Unsealed)
    assert (u.expiry, u.ttl, u.topic, u.data) == (int(NOW) + 10, 10, bytes.fromhex("1a2b3c4d"), b"blob")
    v0 = v2_to_v1(WakuMessage(b"plain", m.content_topic, version=0, timestamp=ts), now=NOW, ttl=10, max_skew=20)
    assert isinstance(v0, Unsealed) and unwrap_unencrypted(v0.data) == b"plain"
    cases = {
        DropReason.NOT_BRIDGEABLE: WakuMessage(b"x", "/app/1/chat/proto", timestamp=ts),
        DropReason.INVALID_TOPIC: WakuMessage(b"x", "/waku/1/0x1234/rfc26", timestamp=ts),
        DropReason.NO_TIMESTAMP: WakuMessage(b"x", m.content_topic),
        DropReason.FUTURE_TIMESTAMP: WakuMessage(b"x", m.content_topic, timestamp=ts + 60 * NS),
        DropReason.EXPIRED: WakuMessage(b"x", m.content_topic, timestamp=ts - 60 * NS),
    }
    for reason, msg in cases.items():
        out = v2_to_v1(msg, now=NOW, ttl=10, max_skew=20)
        assert isinstance(out, Drop) and out.reason is reason, (reason, out)


def test_determinism_two_instances() -> None:
    ts = int(NOW * NS) + 123_456_789
    m = WakuMessage(b"same input", "/waku/1/0xdeadbeef/rfc26", version=0, timestamp=ts)
    outs = []
    for _ in range(2):  # two "bridges": fresh objects, same input
        u = v2_to_v1(WakuMessage.decode(m.encode()), now=NOW + 1, ttl=10, max_skew=20)
        assert isinstance(u, Unsealed)
        env = seal(u, 0.2)
        assert isinstance(env, Envelope)
        outs.append(env)
    assert outs[0].encode() == outs[1].encode() and outs[0].hash == outs[1].hash
    assert pow_value(outs[0], SizeRule.STRICT) >= 0.2
    e = Envelope(int(NOW) + 10, 10, b"abcd", b"v1 data", 5)
    a, b = v1_to_v2(e, cluster_id=1, num_shards=8), v1_to_v2(e, cluster_id=1, num_shards=8)
    assert isinstance(a, V1ToV2) and isinstance(b, V1ToV2) and a.message.encode() == b.message.encode()


def test_round_trip_keeps_the_dedup_key() -> None:
    """v2 -> v1 -> v2: the timestamp loses its nanoseconds but the key is the same (loop guard)."""
    m = WakuMessage(b"blob", "/waku/1/0x1a2b3c4d/rfc26", version=1, timestamp=int(NOW * NS) + 999)
    u = v2_to_v1(m, now=NOW, ttl=10, max_skew=20)
    assert isinstance(u, Unsealed)
    env = seal(u, 0.002)
    assert isinstance(env, Envelope)
    back = v1_to_v2(env, cluster_id=0, num_shards=1)
    assert isinstance(back, V1ToV2) and back.key == u.key and back.message.payload == m.payload


def test_pow_budget_miss_is_a_drop() -> None:
    u = Unsealed(int(NOW) + 10, 10, b"abcd", b"x" * 300, b"k")
    assert seal(u, 1e9, max_nonce=10) == Drop(DropReason.POW_FAILED, "no nonce <= 10 meets PoW 1000000000.0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=40), st.none() | st.integers(0, 3),
       st.none() | st.integers(-(2**63), 2**63 - 1))
def test_fuzz_v2_to_v1_never_raises(payload: bytes, topic: str, version: int | None, ts: int | None) -> None:
    if not topic:
        return
    out = v2_to_v1(WakuMessage(payload, topic, version, ts), now=NOW, ttl=10, max_skew=20)
    assert isinstance(out, (Unsealed, Drop))
