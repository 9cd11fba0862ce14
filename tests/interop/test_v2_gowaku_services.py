"""go-waku v0.10.0 (tests/interop/go/wakuv2) against our service node: its store v3 client pages
our archive, our legacy store client pages its store, its filter and lightpush clients use our
servers, peer exchange both ways, and metadata's cluster check on both sides.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.gowaku import STATUS_TOPIC, go_node, our_node, tcp_addr, wait_go_peer, wait_mesh
from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_ports
from tests.helpers.v2host import start_host
from tests.helpers.v2node import metric, start
from v2.core.message import WakuMessage, message_hash
from v2.enr.enr import Enr
from v2.metadata.protocol import MetadataService
from v2.node import V2Node
from v2.peer_exchange.client import PeerExchangeClient, PeerExchangeError
from v2.peer_exchange.rpc_codec import PxStatus
from v2.store.legacy_client import LegacyStoreClient
from v2.store.legacy_codec import HistoryQuery

pytestmark = pytest.mark.interop

A, B, C = "/waku-bridge/1/store-a/proto", "/waku-bridge/1/store-b/proto", "/waku-bridge/1/store-c/proto"


def ours_addr(n: V2Node) -> str:
    return f"{n.listen_addrs[0]}/p2p/{n.peer_id}"


async def fill_archive(node: V2Node) -> list[tuple[bytes, WakuMessage]]:
    """35 on A, 10 on B, 5 on C, interleaved, timestamps 1 ms apart in the last few seconds."""
    base = time.time_ns() - 5_000_000_000
    topics = [A] * 35 + [B] * 10 + [C] * 5
    order = sorted(range(len(topics)), key=lambda i: (i * 7) % len(topics))  # interleave the topics
    out = []
    for k, i in enumerate(order):
        m = WakuMessage(os.urandom(16), topics[i], version=0, timestamp=base + k * 1_000_000, meta=b"m%d" % k)
        out.append(((await node.publish(STATUS_TOPIC, m)).hash, m))
    assert node.archive is not None
    with trio.fail_after(20):
        while node.archive.message_count < len(out):
            await trio.sleep(0.05)
    return out


def flat(pages: list[dict[str, Any]]) -> list[str]:
    return [h for p in pages for h in (p["hashes"] or [])]


async def test_go_waku_store_v3_client_pages_our_archive(nursery: trio.Nursery, tmp_path: Path) -> None:
    ours = our_node(16, (32,), store=True, data_dir=tmp_path, store_message_db_url="sqlite://store.sqlite3")
    await start(nursery, ours)
    go, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-relay=false")
    try:
        msgs = await fill_archive(ours)
        by_ts = [h.hex() for h, _ in sorted(msgs, key=lambda x: x[1].timestamp or 0)]
        a_hashes = [h.hex() for h, m in sorted(msgs, key=lambda x: x[1].timestamp or 0) if m.content_topic == A]
        peer = ours_addr(ours)
        q = {"peer": peer, "pubsub_topic": STATUS_TOPIC}

        # forward, 10 a page: 10, 10, 10, 5 in timestamp order, the last page without a cursor
        fwd = (await go.request("store_query", **q, content_topics=[A], forward=True, page_limit=10))["pages"]
        assert [len(p["hashes"]) for p in fwd] == [10, 10, 10, 5] and fwd[-1]["cursor"] == ""
        assert flat(fwd) == a_hashes
        assert all(p["status_code"] == 200 for p in fwd)
        first = fwd[0]["messages"][0]  # include_data: the whole message comes back, meta too
        m0 = next(m for h, m in msgs if h.hex() == a_hashes[0])
        assert first["payload"] == m0.payload.hex() and first["meta"] == (m0.meta or b"").hex()
        assert first["pubsub_topic"] == STATUS_TOPIC and first["timestamp"] == m0.timestamp

        # backward: newest page first, each page in ascending order (nwaku/our store order)
        bwd = (await go.request("store_query", **q, content_topics=[A], forward=False, page_limit=10))["pages"]
        assert [len(p["hashes"]) for p in bwd] == [10, 10, 10, 5]
        assert bwd[0]["hashes"] == a_hashes[-10:] and bwd[-1]["hashes"] == a_hashes[:5]
        assert sorted(flat(bwd)) == sorted(a_hashes)

        # resuming from a cursor go-waku got from us
        resumed = (await go.request("store_query", **q, content_topics=[A], forward=True, page_limit=10,
                                    cursor=fwd[1]["cursor"]))["pages"]
        assert flat(resumed) == a_hashes[20:]

        # several content topics, and a time range over all of them
        ab = (await go.request("store_query", **q, content_topics=[A, B], page_limit=100))["pages"]
        assert sorted(flat(ab)) == sorted(h.hex() for h, m in msgs if m.content_topic in (A, B))
        ts = sorted(m.timestamp or 0 for _, m in msgs)
        ranged = (await go.request("store_query", **q, content_topics=[A, B, C], time_start=ts[10],
                                   time_end=ts[20], page_limit=100))["pages"]
        assert flat(ranged) == by_ts[10:20]  # start inclusive, end exclusive

        # hash lookups (no pubsub topic, no content topics: go-waku's Validate refuses mixing them)
        want = [by_ts[3], by_ts[17], by_ts[42]]
        found = (await go.request("store_query", peer=peer, hashes=want, page_limit=10))["pages"]
        assert sorted(flat(found)) == sorted(want) and len(found[0]["messages"]) == 3
        assert flat((await go.request("store_query", peer=peer, hashes=[os.urandom(32).hex()]))["pages"]) == []
        no_data = (await go.request("store_query", peer=peer, hashes=want, include_data=False))["pages"]
        assert sorted(flat(no_data)) == sorted(want) and not no_data[0]["messages"]

        # the page limit: go-waku asks for at most 100 (store/client.go MaxPageSize) and we cap at 100 too;
        # 0 means go-waku's default of 20
        big = (await go.request("store_query", **q, content_topics=[A, B, C], page_limit=1000, max_pages=1))["pages"]
        assert len(big[0]["hashes"]) == 50 and big[0]["cursor"] == ""
        dflt = (await go.request("store_query", **q, content_topics=[A, B, C], max_pages=1))["pages"]
        assert len(dflt[0]["hashes"]) == 20 and dflt[0]["cursor"] != ""
    finally:
        await go.aclose()


async def test_our_legacy_store_client_pages_go_waku_store(nursery: trio.Nursery) -> None:
    ours = our_node(16, (32,))
    col = await start(nursery, ours)
    go, ready = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-store")
    try:
        await ours.host.connect(tcp_addr(ready))
        await wait_mesh(ours, STATUS_TOPIC, ready["peer_id"])
        # go-waku archives what it relays, from us and its own; 25 from us, 5 of its own
        sent: dict[bytes, WakuMessage] = {}
        base = time.time_ns() - 3_000_000_000
        for i in range(25):
            m = WakuMessage(os.urandom(12), A if i % 5 else B, version=0, timestamp=base + i * 1_000_000)
            sent[(await ours.publish(STATUS_TOPIC, m)).hash] = m
        for i in range(5):
            m = WakuMessage(os.urandom(12), A, version=0, timestamp=base + (25 + i) * 1_000_000)
            reply = await go.request("publish", pubsub_topic=STATUS_TOPIC, content_topic=A, payload=m.payload.hex(),
                                     timestamp=m.timestamp)
            sent[bytes.fromhex(reply["hash"])] = m
        with trio.fail_after(20):
            while len(col.got) < 5:
                await trio.sleep(0.05)
        client = LegacyStoreClient(ours.host)
        want_a = [h for h, m in sorted(sent.items(), key=lambda x: x[1].timestamp or 0) if m.content_topic == A]

        async def all_pages(q: HistoryQuery) -> list[list[WakuMessage]]:
            return [r.decoded() async for r in client.pages(ready["peer_id"], q)]

        with trio.fail_after(30):  # go-waku archives asynchronously (persistence/store.go Put per message)
            while sum(len(p) for p in await all_pages(HistoryQuery("", STATUS_TOPIC, (A, B), page_size=100))) < 30:
                await trio.sleep(0.2)

        def hashes(pages: list[list[WakuMessage]]) -> list[bytes]:
            return [message_hash(STATUS_TOPIC, m) for p in pages for m in p]

        fwd = await all_pages(HistoryQuery("", STATUS_TOPIC, (A,), page_size=7, forward=True))
        assert [len(p) for p in fwd] == [7, 7, 7, 4] and hashes(fwd) == want_a
        bwd = await all_pages(HistoryQuery("", STATUS_TOPIC, (A,), page_size=7, forward=False))
        assert [len(p) for p in bwd] == [7, 7, 7, 4]
        assert hashes(bwd[:1]) == want_a[-7:]  # newest page first, in ascending order inside
        assert sorted(hashes(bwd)) == sorted(want_a)
        both = await all_pages(HistoryQuery("", STATUS_TOPIC, (A, B), page_size=100))
        assert sorted(hashes(both)) == sorted(sent)
        ts = sorted(m.timestamp or 0 for m in sent.values())
        ranged = await all_pages(HistoryQuery("", STATUS_TOPIC, (A, B), page_size=100, start_time=ts[5],
                                              end_time=ts[14]))
        assert hashes(ranged) == [h for h, m in sorted(sent.items(), key=lambda x: x[1].timestamp or 0)][5:15]
        # every field survives go-waku's archive except meta, which its sqlite schema has no column for
        # (waku/persistence/store.go Put)
        got = {message_hash(STATUS_TOPIC, m): m for p in both for m in p}
        for h, m in sent.items():
            assert got[h].payload == m.payload and got[h].timestamp == m.timestamp
    finally:
        await go.aclose()


async def test_go_waku_filter_client_subscribes_pings_gets_pushes_unsubscribes(nursery: trio.Nursery) -> None:
    ours = our_node(16, (32,), filter=True)
    await start(nursery, ours)
    go, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-relay=false")
    try:
        peer = ours_addr(ours)
        await go.request("filter_subscribe", peer=peer, pubsub_topic=STATUS_TOPIC, content_topics=[A, B])
        with trio.fail_after(10):
            while metric(ours, "waku_filter_subscriptions") < 1:
                await trio.sleep(0.05)
        await go.request("filter_ping", peer=peer)
        sent = []
        for i in range(60):  # go-waku's light node takes 15 pushes/s per peer (burst 20): pace under it
            m = WakuMessage(os.urandom(10), A if i % 2 else B, version=0, timestamp=time.time_ns(), meta=b"f")
            sent.append((await ours.publish(STATUS_TOPIC, m)).hash.hex())
            await trio.sleep(0.1)
        await ours.publish(STATUS_TOPIC, WakuMessage(b"not subscribed", C, version=0, timestamp=time.time_ns()))
        got = await go.wait_event("message", count=60, timeout=30, via="filter")
        assert sorted(e["hash"] for e in got) == sorted(sent)
        assert all(e["pubsub_topic"] == STATUS_TOPIC and e["meta"] == b"f".hex() for e in got)
        await go.request("filter_unsubscribe", peer=peer, pubsub_topic=STATUS_TOPIC, content_topics=[A, B])
        with trio.fail_after(10):
            while metric(ours, "waku_filter_subscriptions") > 0:
                await trio.sleep(0.05)
        await ours.publish(STATUS_TOPIC, WakuMessage(b"after unsubscribe", A, version=0, timestamp=time.time_ns()))
        await trio.sleep(1)
        assert len([e for e in go.events if e.get("event") == "message"]) == 60
        try:  # a ping after unsubscribing: we answer 404 (nwaku's rule), go-waku returns it as an error
            await go.request("filter_ping", peer=peer)
        except AssertionError as exc:
            assert "404" in str(exc) or "NOT_FOUND" in str(exc).upper()
        else:
            raise AssertionError("ping without a subscription succeeded")
    finally:
        await go.aclose()


async def test_go_waku_lightpush_client_publishes_through_us(nursery: trio.Nursery) -> None:
    ours = our_node(16, (32,), lightpush=True)
    col = await start(nursery, ours)
    relay_go, relay_ready = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    light, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-relay=false")
    try:
        await ours.host.connect(tcp_addr(relay_ready))  # a lightpush needs >= 1 relay peer on the shard
        await wait_mesh(ours, STATUS_TOPIC, relay_ready["peer_id"])
        hashes = []
        for i in range(20):
            m = WakuMessage(os.urandom(20), A, version=0, timestamp=time.time_ns(), meta=b"lp%d" % i)
            reply = await light.request("lightpush", peer=ours_addr(ours), pubsub_topic=STATUS_TOPIC, content_topic=A,
                                        payload=m.payload.hex(), timestamp=m.timestamp, meta=m.meta.hex())
            assert reply["hash"] == message_hash(STATUS_TOPIC, m).hex()
            hashes.append(reply["hash"])
        got = await relay_go.wait_event("message", count=20, timeout=30, via="relay")
        assert sorted(e["hash"] for e in got) == sorted(hashes)
        with trio.fail_after(10):
            while len(col.got) < 20:
                await trio.sleep(0.05)
        assert all(r.origin == "lightpush" for r in col.got)
        # go-waku's client speaks only the legacy id (lightpush/waku_lightpush.go LightPushID_v20beta1)
        assert metric(ours, "waku_lightpush_messages_total", type="PushRequest", status="success") == 20
        assert metric(ours, "waku_lightpush_v3_messages_total", type="PushRequest", status="200") == 0
    finally:
        await light.aclose()
        await relay_go.aclose()


async def test_peer_exchange_our_server_to_go_waku_client(nursery: trio.Nursery) -> None:
    server = our_node(16, (32,), peer_exchange=True)
    known = our_node(16, (32,))
    await start(nursery, server)
    await start(nursery, known)
    assert known.enr is not None
    server.peer_manager.add_discovered([Enr.from_text(known.enr)], "dns")  # found by discovery, then dialled
    with trio.fail_after(20):
        while known.peer_id not in [e.peer_id for e in server.peer_manager.enrs()]:
            await trio.sleep(0.1)
    go, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    try:
        await go.request("px_request", peer=ours_addr(server), num_peers=5)
        # go-waku decodes our record of `known` (ENR + ip/tcp) and dials it
        await wait_go_peer(go, known.peer_id)
    finally:
        await go.aclose()


async def test_peer_exchange_go_waku_server_to_our_client(nursery: trio.Nursery) -> None:
    """go-waku's px server answers only from its discv5 cache (peer_exchange/protocol.go iterate):
    G1 runs discv5 with G2 as bootnode and serves px; our client asks G1 and gets G2's record."""
    tcp1, udp1, tcp2, udp2 = free_ports(4)
    g2, r2 = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-port", str(tcp2),
                           "-discv5-port", str(udp2))
    g1, r1 = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-port", str(tcp1), "-discv5-port",
                           str(udp1), "-discv5-bootnodes", r2["enr"], "-peer-exchange")
    ours = our_node(16, (32,))
    await start(nursery, ours)
    try:
        await ours.host.connect(tcp_addr(r1))
        client = PeerExchangeClient(ours.host, ours.registry)
        with trio.fail_after(60):
            while True:
                try:
                    enrs = await client.request(r1["peer_id"], 5)
                except PeerExchangeError as exc:
                    # an empty cache (no status, no peers: 503), or a reset by go-waku's limiter of
                    # 1 request/s per peer (peer_exchange/waku_peer_exchange_option.go WithRateLimiter(1, 1))
                    assert exc.status in (PxStatus.SERVICE_UNAVAILABLE, PxStatus.DIAL_FAILURE), exc
                    enrs = []
                if enrs:
                    break
                await trio.sleep(1.5)
        assert [e.peer_id for e in enrs] == [r2["peer_id"]]
        assert f"/ip4/127.0.0.1/tcp/{tcp2}/p2p/{r2['peer_id']}" in enrs[0].multiaddrs() or \
            any(f"/tcp/{tcp2}" in a for a in enrs[0].multiaddrs())
        assert enrs[0].shards is not None and enrs[0].shards.cluster == 16
    finally:
        await g1.aclose()
        await g2.aclose()


async def go_disconnected(go: JsPeer, peer_id: str) -> None:
    with trio.fail_after(20):
        while any(p["peer_id"] == peer_id and p["connected"] for p in (await go.request("peers"))["peers"]):
            await trio.sleep(0.2)


async def dial_both_ways(ours: V2Node, go: JsPeer, ready: dict[str, Any]) -> None:
    """We dial go-waku, then go-waku dials us; either may fail while the other side hangs up."""
    try:
        await ours.host.connect(tcp_addr(ready))
    except Exception:  # a dial refused mid-handshake surfaces as several types
        pass
    with trio.fail_after(20):
        while ours.peers():
            await trio.sleep(0.1)
    try:
        await go.request("connect", multiaddr=ours_addr(ours))
    except AssertionError:
        pass


async def test_metadata_our_check_disconnects_go_waku_of_another_cluster(nursery: trio.Nursery) -> None:
    """go-waku on cluster 0 checks nobody (protocol/metadata/waku_metadata.go: only cluster-id != 0),
    so only our check acts: both dial directions end in our cluster_mismatch disconnect."""
    ours = our_node(16, (32,))
    await start(nursery, ours)
    go, ready = await go_node(nursery, "-cluster-id", "0", "-pubsub-topics", "/waku/2/rs/0/0")
    try:
        await dial_both_ways(ours, go, ready)
        with trio.fail_after(20):
            while metric(ours, "waku_metadata_rejected_peers_total", reason="cluster_mismatch") < 2 or ours.peers():
                await trio.sleep(0.1)
        await go_disconnected(go, ours.peer_id)
        assert not ours.peer_metadata
        assert "different clusterID" not in go.stderr
    finally:
        await go.aclose()


async def test_metadata_go_waku_check_disconnects_us_on_another_cluster(nursery: trio.Nursery) -> None:
    """go-waku on cluster 17 queries our metadata service (answering cluster 16) and hangs up with
    "different clusterID reported" (protocol/metadata/waku_metadata.go).  Our node would hang up
    first from its own check (previous test), so the service runs on a bare host here."""
    registry = CollectorRegistry()
    host = await start_host(nursery, services=[MetadataService(16, (32,), registry)])
    go, _ = await go_node(nursery, "-cluster-id", "17", "-shards", "32")
    try:
        with contextlib.suppress(AssertionError):  # go-waku may hang up before its dial returns
            await go.request("connect", multiaddr=host.listen_addrs[0])
        with trio.fail_after(20):
            while "different clusterID reported" not in go.stderr or host.connected_peers():
                await trio.sleep(0.1)
        await go_disconnected(go, host.peer_id)
        assert registry.get_sample_value("waku_metadata_requests_total", {"type": "served"}) >= 1
    finally:
        await go.aclose()


async def test_go_waku_clients_parse_our_rate_limit_answers(nursery: trio.Nursery, tmp_path: Path) -> None:
    """nwaku's --rate-limit on our node: go-waku's store v3, lightpush and filter clients get our
    over-limit answers (429 / "TOO_MANY_REQUESTS", request_id "N/A") and surface them as the errors
    they make of nwaku's; their requests within the limit are served."""
    ours = our_node(16, (32,), store=True, lightpush=True, filter=True, data_dir=tmp_path,
                    store_message_db_url="sqlite://store.sqlite3",
                    rate_limits=("storev3:2/1h", "lightpush:2/1h", "filter:2/1h"))
    await start(nursery, ours)
    relay_go, relay_ready = await go_node(nursery, "-cluster-id", "16", "-shards", "32")
    light, _ = await go_node(nursery, "-cluster-id", "16", "-shards", "32", "-relay=false")
    try:
        await ours.host.connect(tcp_addr(relay_ready))  # a lightpush needs >= 1 relay peer on the shard
        await wait_mesh(ours, STATUS_TOPIC, relay_ready["peer_id"])
        peer = ours_addr(ours)
        q = {"peer": peer, "pubsub_topic": STATUS_TOPIC, "content_topics": [A], "max_pages": 1}

        for _ in range(2):
            pages = (await light.request("store_query", **q))["pages"]
            assert pages[0]["status_code"] == 200
        with pytest.raises(AssertionError) as store_exc:
            await light.request("store_query", **q)
        assert "store error 429" in str(store_exc.value) and "TOO_MANY_REQUESTS" in str(store_exc.value)

        def push(i: int) -> dict[str, Any]:
            return {"peer": peer, "pubsub_topic": STATUS_TOPIC, "content_topic": A, "payload": os.urandom(8).hex(),
                    "timestamp": time.time_ns(), "meta": (b"rl%d" % i).hex()}

        for i in range(2):
            await light.request("lightpush", **push(i))
        with pytest.raises(AssertionError) as lp_exc:  # go-waku accepts request_id "N/A" (pb.REQUESTID_RATE_LIMITED)
            await light.request("lightpush", **push(2))
        assert "TOO_MANY_REQUESTS" in str(lp_exc.value)
        await relay_go.wait_event("message", count=2, timeout=30, via="relay")

        await light.request("filter_subscribe", peer=peer, pubsub_topic=STATUS_TOPIC, content_topics=[A])
        await light.request("filter_ping", peer=peer)
        with pytest.raises(AssertionError) as filter_exc:
            await light.request("filter_ping", peer=peer)
        assert "429" in str(filter_exc.value)

        for service in ("storev3", "lightpush", "filter"):
            assert metric(ours, "waku_service_requests_total", service=service, state="served") == 2, service
            assert metric(ours, "waku_service_requests_total", service=service, state="rejected") == 1, service
        assert metric(ours, "waku_lightpush_messages_total", type="PushRequest", status="success") == 2
    finally:
        await light.aclose()
        await relay_go.aclose()
