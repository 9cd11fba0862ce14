"""Topic policy: what it lets through, and the v1 topic interest it implies."""

from __future__ import annotations

from bridge.policy import Policy


def test_no_allow_list_means_every_topic() -> None:
    assert Policy.from_lists((), ("1a2b3c4d",)).v1_interest() is None


def test_v1_interest_is_the_allowed_v1_topics_minus_the_denied() -> None:
    p = Policy.from_lists(("0x1A2B3C4D", "/waku/1/0xdeadbeef/rfc26", "00010200", "/toychat/2/huilong/proto"),
                          ("00010200",))
    interest = p.v1_interest()
    assert interest == (bytes.fromhex("1a2b3c4d"), bytes.fromhex("deadbeef"))
    # exactly what the policy lets through on v1
    assert all(p.allows_v1_topic(t) for t in interest)
    assert not p.allows_v1_topic(bytes.fromhex("00010200")) and not p.allows_v1_topic(bytes.fromhex("cafebabe"))


def test_an_allow_list_without_v1_topics_wants_none() -> None:
    assert Policy.from_lists(("/toychat/2/huilong/proto",)).v1_interest() == ()
