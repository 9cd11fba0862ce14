"""Relay interop with go-waku v0.10.0 (tests/interop/go/wakuv2, TCP + noise + yamux, gossipsub
from waku-org/go-libp2p-pubsub v0.13.1-gowaku): meshes both ways on a static shard of Status's
cluster and on autosharding, RFC 14 hashes equal on both sides, 10 000 messages each way.
"""

from __future__ import annotations

import os
import time

import pytest
import trio

from tests.helpers.gowaku import STATUS_TOPIC, go_node, our_node, tcp_addr, wait_go_peer, wait_mesh
from tests.helpers.jsproc import JsPeer
from tests.helpers.v2node import Collector, start
from v2.core.message import WakuMessage, message_hash
from v2.core.topics import autoshard
from v2.node import V2Node

pytestmark = pytest.mark.interop

CONTENT = "/waku-bridge/1/gowaku-relay/proto"


def assert_scored_well(ours: V2Node, *go_peers: str) -> None:
    """Scoring is on (nwaku's parameters, v2/relay/scoring.py): go-waku's score is not negative
    (first deliveries and time in mesh only add), nothing of it is rejected, nobody is graylisted,
    and the default per-peer relay limits (v2/ratelimit.py) never refused a message of it."""
    scores = ours.relay.peer_scores()
    assert all(scores[p] >= 0 and not ours.relay.graylisted(p) for p in go_peers), scores
    assert ours.registry.get_sample_value("waku_relay_graylist_disconnects_total") == 0
    assert sum(ours.registry.get_sample_value("waku_relay_rate_limited_total", {"kind": k}) or 0
               for k in ("messages", "bytes")) == 0
    assert not [s for m in ours.registry.collect() if m.name == "waku_relay_rejected"
                for s in m.samples if s.name.endswith("_total") and s.value]


async def exchange(ours: V2Node, col: Collector, go: JsPeer, topic: str, content: str, n: int = 20) -> None:
    """n messages each way with a meta; each side's hash equals the other's and RFC 14's."""
    sent_go: dict[str, WakuMessage] = {}
    for i in range(n):
        m = WakuMessage(os.urandom(24), content, version=0, timestamp=time.time_ns(), meta=f"m{i}".encode())
        reply = await go.request("publish", pubsub_topic=topic, content_topic=content, payload=m.payload.hex(),
                                 timestamp=m.timestamp, meta=m.meta.hex())
        assert reply["hash"] == message_hash(topic, m).hex()
        sent_go[reply["hash"]] = m
    with trio.fail_after(30):
        while len({r.hash.hex() for r in col.got} & set(sent_go)) < n:
            await trio.sleep(0.05)
    got = {r.hash.hex(): r for r in col.got if r.hash.hex() in sent_go}
    assert all(r.pubsub_topic == topic for r in got.values())
    for h, r in got.items():
        assert r.message.payload == sent_go[h].payload and r.message.meta == sent_go[h].meta
        assert r.message.timestamp == sent_go[h].timestamp

    ours_sent: dict[str, WakuMessage] = {}
    for i in range(n):
        m = WakuMessage(os.urandom(24), content, version=0, timestamp=time.time_ns(), meta=f"o{i}".encode())
        ours_sent[(await ours.publish(topic, m)).hash.hex()] = m
    with trio.fail_after(30):
        while len(events := [e for e in go.events if e.get("event") == "message" and e["hash"] in ours_sent]) < n:
            await trio.sleep(0.05)
    assert len(events) == n and all(e["via"] == "relay" and e["pubsub_topic"] == topic for e in events)
    for e in events:
        m = ours_sent[e["hash"]]
        assert e["payload"] == m.payload.hex() and e["meta"] == (m.meta or b"").hex()
        assert e["content_topic"] == content and e["timestamp"] == m.timestamp


async def test_relay_static_shard_of_status_cluster_both_dial_directions(nursery: trio.Nursery) -> None:
    ours = our_node(16, (32,))
    col = await start(nursery, ours)
    # go-waku dials us
    go1, r1 = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    # we dial go-waku
    go2, r2 = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    try:
        await go1.request("connect", multiaddr=f"{ours.listen_addrs[0]}/p2p/{ours.peer_id}")
        await ours.host.connect(tcp_addr(r2))
        for go, r in ((go1, r1), (go2, r2)):
            await wait_go_peer(go, ours.peer_id)
            await wait_mesh(ours, STATUS_TOPIC, r["peer_id"])
        assert ours.peer_metadata[r1["peer_id"]].cluster_id == 16  # go-waku's metadata answer was kept
        assert 32 in ours.peer_metadata[r2["peer_id"]].shards
        await exchange(ours, col, go1, STATUS_TOPIC, CONTENT)
        # the same messages reached go2 through us (we forward go1's to go2 and vice versa)
        got2 = await go2.wait_event("message", count=40, timeout=30, via="relay", pubsub_topic=STATUS_TOPIC)
        assert {e["hash"] for e in got2} == {e["hash"] for e in go1.events if e.get("event") == "message"}
        assert_scored_well(ours, r1["peer_id"], r2["peer_id"])
    finally:
        await go1.aclose()
        await go2.aclose()


async def test_relay_autosharding_cluster_1_content_topic_to_shard(nursery: trio.Nursery) -> None:
    contents = ["/toychat/2/huilong/proto", "/waku-bridge/1/autoshard/proto", "/status/1/chat/rfc26"]
    shards = {c: autoshard(c, 1, 8) for c in contents}
    ours = our_node(1, tuple(range(8)), 8)
    col = await start(nursery, ours)
    go, ready = await go_node(nursery, "-cluster-id", "1", "-shards", ",".join(str(s) for s in range(8)))
    try:
        await go.request("connect", multiaddr=f"{ours.listen_addrs[0]}/p2p/{ours.peer_id}")
        await wait_go_peer(go, ours.peer_id)
        for c in contents:  # go-waku derives the same shard (RFC 51) from the content topic
            assert (await go.request("subscribe", content_topics=[c]))["pubsub_topic"] == str(shards[c])
        for topic in {str(t) for t in shards.values()}:
            await wait_mesh(ours, topic, ready["peer_id"])
        for c in contents:
            await exchange(ours, col, go, str(shards[c]), c, n=5)
        # go-waku's publish without a pubsub topic autoshards too
        m = WakuMessage(b"autoshard me", contents[0], version=0, timestamp=time.time_ns())
        reply = await go.request("publish", content_topic=contents[0], payload=m.payload.hex(), timestamp=m.timestamp)
        assert reply["hash"] == message_hash(str(shards[contents[0]]), m).hex()
        with trio.fail_after(20):
            while reply["hash"] not in {r.hash.hex() for r in col.got}:
                await trio.sleep(0.05)
    finally:
        await go.aclose()


async def test_relay_10000_messages_each_way(nursery: trio.Nursery) -> None:
    n = 10_000
    ours = our_node(16, (32,))
    col = await start(nursery, ours)
    go, ready = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    try:
        await go.request("connect", multiaddr=f"{ours.listen_addrs[0]}/p2p/{ours.peer_id}")
        await wait_mesh(ours, STATUS_TOPIC, ready["peer_id"])
        await wait_go_peer(go, ours.peer_id)
        # go -> ours.  go-libp2p-pubsub drops an RPC when a peer's outbound queue is full (go-waku
        # sets 1024 RPCs, protocol/relay/config.go DefaultPeerOutboundQSize) and we take ~1000 msg/s,
        # so an unpaced burst of 10 000 (go-waku publishes ~20 000/s) loses about a tenth (measured).
        # go-waku publishes in bursts of 500 (< 1024) at 2000/s, each once we have the previous one.
        t0 = time.monotonic()
        hashes: list[str] = []
        for _ in range(n // 500):
            reply = await go.request("publish_many", pubsub_topic=STATUS_TOPIC, content_topic=CONTENT, count=500,
                                     size=32, rate=2000, timeout=60)
            hashes += reply["hashes"]
            with trio.fail_after(60):
                while len(col.got) < len(hashes):
                    await trio.sleep(0.02)
        go_to_us = n / (time.monotonic() - t0)
        assert sorted(r.hash.hex() for r in col.got) == sorted(hashes)
        # ours -> go
        t0 = time.monotonic()
        sent = []
        for _ in range(n):
            m = WakuMessage(os.urandom(32), CONTENT, version=0, timestamp=time.time_ns())
            sent.append((await ours.publish(STATUS_TOPIC, m)).hash.hex())
        got = await go.wait_event("message", count=n, timeout=120, via="relay", own=False)
        us_to_go = n / (time.monotonic() - t0)
        assert sorted(e["hash"] for e in got) == sorted(sent)
        print(f"\nrelay 10k: go-waku -> ours {go_to_us:.0f} msg/s, ours -> go-waku {us_to_go:.0f} msg/s")
        await trio.sleep(1)
        assert len(col.got) == n  # nothing doubled
        assert_scored_well(ours, ready["peer_id"])
        assert len([e for e in go.events if e.get("event") == "message" and not e["own"]]) == n
    finally:
        await go.aclose()


async def test_relay_over_websocket_both_dial_directions(nursery: trio.Nursery) -> None:
    """go-waku always mounts go-libp2p's ws transport (node/wakunode2.go New); ws + noise + yamux."""
    ours = our_node(16, (32,))
    col = await start(nursery, ours)
    assert ours.ws_addr is not None
    go1, r1 = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-ws-port", "0")
    go2, r2 = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-ws-port", "0")
    try:
        await go1.request("connect", multiaddr=f"{ours.ws_addr}/p2p/{ours.peer_id}")  # go-waku dials our ws
        await ours.host.connect(next(a for a in r2["multiaddrs"] if "/ws/" in a))  # we dial go-waku's ws
        for go, r in ((go1, r1), (go2, r2)):
            await wait_go_peer(go, ours.peer_id)
            await wait_mesh(ours, STATUS_TOPIC, r["peer_id"])
        peers = {p["peer_id"]: p for p in (await go1.request("peers"))["peers"]}
        assert any("/ws" in a for a in peers[ours.peer_id]["addrs"])
        await exchange(ours, col, go1, STATUS_TOPIC, CONTENT, n=10)
        await exchange(ours, col, go2, STATUS_TOPIC, CONTENT, n=10)
    finally:
        await go1.aclose()
        await go2.aclose()
