"""The pure subscription table and push dedup: limits, TTL, expiry, exact matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2.filter.subscriptions import (
    CriteriaLimitError,
    NotSubscribedError,
    PeerLimitError,
    PushDedup,
    SubscriptionTable,
    TooManyContentTopicsError,
)

PS = "/waku/2/rs/0/0"


def test_subscribe_match_unsubscribe() -> None:
    t = SubscriptionTable()
    t.subscribe("p1", PS, ["/a/1/x/proto", "/a/1/y/proto"], now=0)
    t.subscribe("p2", PS, ["/a/1/x/proto"], now=0)
    assert sorted(t.match(PS, "/a/1/x/proto", now=1)) == ["p1", "p2"]
    assert t.match("/waku/2/rs/0/1", "/a/1/x/proto", now=1) == []  # exact pairs only
    t.unsubscribe("p1", PS, ["/a/1/x/proto", "/never/1/sub/proto"], now=2)
    assert t.match(PS, "/a/1/x/proto", now=2) == ["p2"]
    t.unsubscribe("p1", PS, ["/a/1/y/proto"], now=3)
    assert not t.is_subscribed("p1", now=3) and len(t) == 1  # last criterion gone: peer gone
    with pytest.raises(NotSubscribedError):
        t.unsubscribe("p1", PS, ["/a/1/y/proto"], now=3)


def test_ping_refreshes_and_expiry() -> None:
    t = SubscriptionTable(ttl=300)
    t.subscribe("p", PS, ["/a/1/x/proto"], now=0)
    t.ping("p", now=200)
    assert t.match(PS, "/a/1/x/proto", now=450) == ["p"]
    assert t.sweep(now=450) == []
    assert t.match(PS, "/a/1/x/proto", now=501) == []  # expired even before the sweep
    with pytest.raises(NotSubscribedError):
        t.ping("p", now=501)
    assert t.sweep(now=501) == ["p"] and len(t) == 0
    with pytest.raises(NotSubscribedError):
        t.unsubscribe_all("p", now=502)


def test_subscribe_refreshes_and_resubscribe_after_expiry_starts_afresh() -> None:
    t = SubscriptionTable(ttl=10)
    t.subscribe("p", PS, ["/a/1/x/proto"], now=0)
    t.subscribe("p", PS, ["/a/1/y/proto"], now=8)
    assert t.is_subscribed("p", now=17)
    t.subscribe("p", PS, ["/a/1/z/proto"], now=100)
    assert t.criteria("p") == {(PS, "/a/1/z/proto")}


def test_limits() -> None:
    t = SubscriptionTable(max_peers=2, max_criteria_per_peer=3, max_content_topics_per_request=2, ttl=10)
    with pytest.raises(TooManyContentTopicsError, match="exceeds maximum content topics: 2"):
        t.subscribe("p1", PS, ["/a/1/1/p", "/a/1/2/p", "/a/1/3/p"], now=0)
    t.subscribe("p1", PS, ["/a/1/1/p", "/a/1/2/p"], now=0)
    t.subscribe("p1", PS, ["/a/1/1/p", "/a/1/3/p"], now=0)  # union is 3: allowed
    with pytest.raises(CriteriaLimitError):
        t.subscribe("p1", PS, ["/a/1/4/p"], now=0)
    assert len(t.criteria("p1")) == 3  # all or nothing
    t.subscribe("p2", PS, ["/a/1/1/p"], now=5)
    with pytest.raises(PeerLimitError, match="maximum number of subscriptions"):
        t.subscribe("p3", PS, ["/a/1/1/p"], now=5)
    t.subscribe("p3", PS, ["/a/1/1/p"], now=12)  # p1 expired at 10: its slot is reusable
    assert sorted(t.peers()) == ["p2", "p3"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["sub", "unsub", "all", "ping"]), st.sampled_from("abc"),
                          st.lists(st.sampled_from(["/x/1/a/p", "/x/1/b/p", "/x/1/c/p"]), min_size=1)),
                max_size=30))
def test_index_agrees_with_criteria(ops: list[tuple[str, str, list[str]]]) -> None:
    t = SubscriptionTable(max_criteria_per_peer=2)
    for i, (op, peer, topics) in enumerate(ops):
        try:
            if op == "sub":
                t.subscribe(peer, PS, topics, now=i)
            elif op == "unsub":
                t.unsubscribe(peer, PS, topics, now=i)
            elif op == "all":
                t.unsubscribe_all(peer, now=i)
            else:
                t.ping(peer, now=i)
        except (NotSubscribedError, CriteriaLimitError):
            pass
    for ct in ["/x/1/a/p", "/x/1/b/p", "/x/1/c/p"]:
        assert sorted(t.match(PS, ct, now=len(ops))) == sorted(p for p in t.peers() if (PS, ct) in t.criteria(p))
    assert all(t.criteria(p) for p in t.peers())


def test_push_dedup_window_and_bound() -> None:
    d = PushDedup(ttl=120, max_entries=3)
    assert d.first_seen(b"h1", now=0)
    assert not d.first_seen(b"h1", now=119)
    assert d.first_seen(b"h1", now=121)  # window over: pushed again
    for i, h in enumerate([b"a", b"b", b"c", b"d"]):
        assert d.first_seen(h, now=200 + i)
    assert len(d) == 3 and d.first_seen(b"a", now=205)  # the oldest was evicted by the bound
