"""Autosharding against tests/vectors/waku2_autosharding.json; topic parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.vectors import load_vectors
from v2.core.topics import ContentTopic, PubsubTopic, TopicError, autoshard

DATA = load_vectors("waku2_autosharding.json")


@pytest.mark.parametrize("v", DATA["vectors"], ids=lambda v: f"{v['content_topic']}/{v['network_shards']}")
def test_autoshard_vectors(v: dict[str, object]) -> None:
    topic = str(v["content_topic"]).replace("<any>", "x")
    assert autoshard(topic, 1, int(v["network_shards"])) == PubsubTopic(1, int(v["expected_shard"]))


@pytest.mark.parametrize("case", DATA["derived_non_power_of_two"]["cases"])
def test_non_power_of_two_uses_last_8_bytes(case: dict[str, object]) -> None:
    assert autoshard(str(case["content_topic"]), 0, int(case["network_shards"])).shard == case["shard_last8_uint64_be"]


def test_bridge_topics_land_on_shard_4_of_8() -> None:
    """bridge-prior-art.md §2: /waku/1/... topics go to shard 4 of 8, 12 of 16, 0 of 1."""
    assert [autoshard("/waku/1/0x1a2b3c4d/rfc26", 16, n).shard for n in (8, 16, 1)] == [4, 12, 0]


def test_pubsub_topic_parse() -> None:
    assert str(PubsubTopic.parse("/waku/2/rs/16/32")) == "/waku/2/rs/16/32"
    for bad in ("/waku/2/default-waku/proto", "/waku/2/rs/70000/1", "/waku/2/rs/1/2000", "/waku/2/rs/1"):
        with pytest.raises(TopicError):
            PubsubTopic.parse(bad)


def test_content_topic_generation() -> None:
    assert ContentTopic.parse("/0/app/1/name/proto") == ContentTopic.parse("/app/1/name/proto")
    for bad in ("/1/app/1/name/proto", "app/1/name/proto", "/app/1/name", "/app//name/proto"):
        with pytest.raises(TopicError):
            ContentTopic.parse(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_parsers(s: str) -> None:
    for fn in (ContentTopic.parse, PubsubTopic.parse):
        try:
            fn(s)
        except TopicError:
            pass


@pytest.mark.parametrize("topic", ["/" + "1" * 5000 + "/app/1/chat/proto", "/²/app/1/chat/proto",
                                   "/٠/app/1/chat/proto"])
def test_a_non_ascii_or_huge_generation_is_a_topic_error(topic: str) -> None:
    """Fuzzing finding (docs/reliability.md): str.isdigit() accepts "²" and int() refuses it (and any
    number over 4 300 digits) with ValueError, out of lightpush's autosharding of a peer's message."""
    with pytest.raises(TopicError):
        ContentTopic.parse(topic)
    with pytest.raises(TopicError):
        autoshard(topic, 1, 8)


def test_generation_zero_may_be_written_with_leading_zeros() -> None:
    assert ContentTopic.parse("/000/app/1/chat/proto") == ContentTopic("app", "1", "chat", "proto", 0)


@pytest.mark.parametrize("topic", ["/waku/2/rs/1/٣", "/waku/2/rs/١/0"])
def test_pubsub_topic_digits_are_ascii(topic: str) -> None:
    """\\d matched Arabic-Indic digits: "/waku/2/rs/1/٣" parsed as shard 3 (and was re-written as
    "/waku/2/rs/1/3" by lightpush)."""
    with pytest.raises(TopicError):
        PubsubTopic.parse(topic)
